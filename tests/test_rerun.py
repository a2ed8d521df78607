"""`vqclip run RUN/job.yaml` runs a run again, as the README says: into a new folder (outputs/<time>-<prompt>, or
`--out`), the same job giving the same pixels, the run it came from untouched; `vqclip run --out` names the folder of
a file's one job (or holds several jobs' folders); a folder that holds a run is refused naming a flag that exists."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

from vqclip.cli import build_parser, main


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture(scope="module")
def first(tmp_path_factory, tiny_args):
    """A finished tiny run, made once for the module: (its folder, final.png's bytes)."""
    folder = tmp_path_factory.mktemp("runs") / "first"
    assert main(["generate", "a red circle", *tiny_args, "--steps", "2", "--seed", "3", "--no-video",
                 "--out", str(folder)]) == 0
    return folder, (folder / "final.png").read_bytes()


def test_running_a_runs_job_yaml_makes_a_new_run_of_the_same_job(first, tmp_path, monkeypatch, capsys):
    folder, before = first
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(folder / "job.yaml")]) == 0, capsys.readouterr().err
    [again] = list((tmp_path / "outputs").iterdir())
    assert again.name.endswith("-a-red-circle") and (again / "job.yaml").is_file()
    assert (folder / "final.png").read_bytes() == before and not (folder / "outputs").exists()  # untouched
    assert np.array_equal(pixels(again / "final.png"), pixels(folder / "final.png"))  # the same job, the same image
    assert (tmp_path / yaml.safe_load((again / "job.yaml").read_text())["output"]["dir"]).resolve() == again.resolve()
    assert main(["run", str(folder / "job.yaml"), "--out", str(tmp_path / "chosen")]) == 0
    assert np.array_equal(pixels(tmp_path / "chosen" / "final.png"), pixels(folder / "final.png"))
    assert main(["generate", "--config", str(folder / "job.yaml"), "--out", str(tmp_path / "viaconfig")]) == 0


def test_a_folder_that_holds_a_run_is_refused_naming_a_flag_that_exists(first, tmp_path, monkeypatch, capsys):
    folder, _ = first
    monkeypatch.chdir(tmp_path)
    job = folder / "mine.yaml"  # a job file of the user's (even beside a run), whose output.dir is kept as written:
    job.write_text(yaml.safe_dump({**yaml.safe_load((folder / "job.yaml").read_text()),  # another job (its own run
                                   "prompt": "a blue square", "output": {"dir": str(folder)}}))  # would be skipped)
    capsys.readouterr()
    assert main(["run", str(job)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run; choose another --out" in err and not (tmp_path / "outputs").exists()
    run_help = build_parser().commands["run"].format_help()
    assert "--out" in run_help and "output.dir" in run_help


def test_out_names_one_jobs_folder_or_holds_several(tmp_path, capsys):
    one = tmp_path / "one.yaml"
    one.write_text("model: mini\nprompt: a red circle\noutput: {dir: elsewhere}\n")
    two = tmp_path / "two.yaml"
    two.write_text("model: mini\njobs:\n  - {prompt: a red circle}\n  - {prompt: a blue square}\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("model: mini\nprompt: a red circle\nsweep: {seed: [1, 2]}\n")
    capsys.readouterr()
    assert main(["run", str(one), "--out", "here", "--dry-run"]) == 0
    assert capsys.readouterr().out.split()[0] == "here"
    assert main(["run", str(two), "--out", "here", "--dry-run"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["here/job-1", "here/job-2"]
    assert main(["run", str(one), str(sweep), "--out", "here", "--dry-run"]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [
        "here/job-1", "here/job-2/seed=1", "here/job-2/seed=2"]
    assert main(["run", str(one), "--dry-run"]) == 0
    assert capsys.readouterr().out.split()[0] == "elsewhere"  # without --out, the file's own


def test_done_goes_to_stderr_from_generate_and_from_run_and_stdout_stays_empty(first, tmp_path, tiny_args, capsys):
    folder, _ = first
    capsys.readouterr()
    assert main(["generate", "a red circle", *tiny_args, "--steps", "1", "--no-video", "--out",
                 str(tmp_path / "g")]) == 0
    generated = capsys.readouterr()
    assert main(["run", str(folder / "job.yaml"), "--out", str(tmp_path / "r"), "--quiet"]) == 0
    ran = capsys.readouterr()
    assert generated.out == ran.out == ""
    assert generated.err.splitlines()[-1].startswith(f"done: {tmp_path / 'g' / 'final.png'} (seed ")
    assert ran.err.splitlines()[-1].startswith(f"done: {tmp_path / 'r' / 'final.png'} (seed 3, 2 steps)")
