"""`vqclip generate` and `vqclip run` end to end on tiny models: outputs, metadata, re-runs, bad input, Ctrl-C."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from PIL import Image

from early import selected, started
from vqclip.cli import main
from vqclip.files.atomic import TEMP_GLOB
from vqclip.files.images import read_metadata
from vqclip.files.video import read_video_frames


def pixels(path):
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def test_generate_writes_a_complete_run(tmp_path, tiny_args):
    out = tmp_path / "run"
    code = main(["generate", "a red circle", *tiny_args, "--steps", "6", "--save-every", "2", "--seed", "5",
                 "--out", str(out)])
    assert code == 0
    frames = sorted(p.name for p in (out / "frames").iterdir())
    assert frames == ["000000.png", "000002.png", "000004.png", "000006.png"]
    assert np.array_equal(pixels(out / "frames" / "000006.png"), pixels(out / "final.png"))
    video, fps = read_video_frames(out / "progress.mp4")
    assert len(video) == 4 and video[0].shape == (32, 32, 3) and fps == 30
    meta = read_metadata(out / "final.png")
    job = yaml.safe_load((out / "job.yaml").read_text())
    assert meta["config"] == job and job["prompt"] == "a red circle" and job["seed"] == 5
    assert meta["versions"]["vqclip"] and meta["prompt"] == "a red circle"


def test_from_png_reruns_the_same_image(tmp_path, tiny_args):
    main(["generate", "a blue square", *tiny_args, "--steps", "3", "--out", str(tmp_path / "a"), "--no-video"])
    assert main(["generate", "--from", str(tmp_path / "a" / "final.png"), "--out", str(tmp_path / "b")]) == 0
    assert np.array_equal(pixels(tmp_path / "a" / "final.png"), pixels(tmp_path / "b" / "final.png"))
    assert read_metadata(tmp_path / "b" / "final.png")["seed"] == read_metadata(tmp_path / "a" / "final.png")["seed"]
    # CLI values override the embedded job
    main(["generate", "--from", str(tmp_path / "a" / "final.png"), "--steps", "1", "--out", str(tmp_path / "c")])
    assert read_metadata(tmp_path / "c" / "final.png")["config"]["steps"] == 1


def test_gif_video_and_no_frames(tmp_path, tiny_args):
    main(["generate", "x", *tiny_args, "--steps", "2", "--save-every", "1", "--video-format", "gif",
          "--out", str(tmp_path / "g")])
    with Image.open(tmp_path / "g" / "progress.gif") as im:  # identical frames merge; their time adds up
        total = 0
        for i in range(im.n_frames):
            im.seek(i)
            total += im.info["duration"]
    assert abs(total - 3 * 1000 / 30) <= 3 * 10  # GIF stores durations in 10 ms units
    main(["generate", "x", *tiny_args, "--steps", "2", "--save-every", "0", "--out", str(tmp_path / "n")])
    assert (tmp_path / "n" / "final.png").is_file() and not (tmp_path / "n" / "progress.mp4").exists()


def test_existing_run_is_never_overwritten(tmp_path, tiny_args, capsys):
    out = tmp_path / "run"
    main(["generate", "x", *tiny_args, "--steps", "1", "--out", str(out), "--no-video"])
    before = (out / "final.png").read_bytes()
    assert main(["generate", "y", *tiny_args, "--steps", "1", "--out", str(out)]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "final.png").read_bytes() == before


def test_run_yaml_jobs_list_with_shared_keys(tmp_path, tiny_job):
    shared = {**tiny_job, "steps": 2, "output": {"progress": False, "video": False}}
    jobs = {**shared, "jobs": [{"prompt": "one", "output": {"dir": str(tmp_path / "one")}},
                               {"prompt": "two", "seed": 3, "output": {"dir": str(tmp_path / "two")}}]}
    (tmp_path / "batch.yaml").write_text(yaml.safe_dump(jobs))
    single = {**shared, "prompt": "three", "output": {"dir": str(tmp_path / "three"), "progress": False}}
    (tmp_path / "single.yaml").write_text(yaml.safe_dump(single))
    assert main(["run", str(tmp_path / "batch.yaml"), str(tmp_path / "single.yaml")]) == 0
    assert read_metadata(tmp_path / "two" / "final.png")["seed"] == 3
    assert [read_metadata(tmp_path / n / "final.png")["prompt"] for n in ("one", "two", "three")] == \
        ["one", "two", "three"]


def test_run_checks_every_job_before_starting(tmp_path, tiny_job, capsys):
    good = {**tiny_job, "prompt": "ok", "steps": 1, "output": {"dir": str(tmp_path / "good"), "progress": False}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(good))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({**tiny_job, "prompt": "bad", "stepz": 1}))
    assert main(["run", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]) == 2
    assert "unknown key 'stepz'" in capsys.readouterr().err and not (tmp_path / "good").exists()


def test_run_finds_a_missing_image_prompt_before_the_first_job(tmp_path, tiny_job, capsys):
    good = {**tiny_job, "prompt": "ok", "steps": 1, "output": {"dir": str(tmp_path / "good"), "progress": False}}
    (tmp_path / "a.yaml").write_text(yaml.safe_dump(good))
    bad = {**good, "image_prompts": [str(tmp_path / "gone.png")], "output": {"dir": str(tmp_path / "bad")}}
    (tmp_path / "b.yaml").write_text(yaml.safe_dump(bad))
    assert main(["run", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'b.yaml'} job 1: image_prompts: {tmp_path / 'gone.png'}: no such image file; "
                   "check the path"]
    assert not (tmp_path / "good").exists() and not (tmp_path / "bad").exists()
    (tmp_path / "gone.png").write_text("not an image")  # a corrupt image is found up front too
    assert main(["run", str(tmp_path / "a.yaml"), str(tmp_path / "b.yaml")]) == 2
    assert "not a readable image" in capsys.readouterr().err
    assert not (tmp_path / "good").exists() and not (tmp_path / "bad").exists()


def _bad_inputs(tmp_path, tiny_args, tiny_vqgan):
    (tmp_path / "unknown.yaml").write_text("prompt: x\nstepz: 3\n")
    (tmp_path / "type.yaml").write_text("prompt: x\nsteps: lots\n")
    (tmp_path / "broken.yaml").write_text("prompt: [x\n")
    (tmp_path / "batch.yaml").write_text("jobs:\n  - {prompt: a}\n  - {prompt: b}\n")
    import torch

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"state_dict": {}, "x": Evil()}, tmp_path / "evil.ckpt")
    (tmp_path / "text.png").write_text("not an image")
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "clip.yaml").write_text(yaml.safe_dump({"clip": {"model": tiny_args[5], "pretrained": tiny_args[7]}}))
    return {
        "unknown key": (["x", "--config", str(tmp_path / "unknown.yaml"), *tiny_args], "unknown key 'stepz'"),
        "wrong type": (["x", "--config", str(tmp_path / "type.yaml"), *tiny_args], "steps:"),
        "malformed yaml": (["x", "--config", str(tmp_path / "broken.yaml"), *tiny_args], "malformed YAML"),
        "missing job": (["x", "--config", str(tmp_path / "nope.yaml"), *tiny_args], "no such job file"),
        "missing ckpt": (["x", *tiny_args, "--vqgan-checkpoint", str(tmp_path / "gone.ckpt")], "no such file"),
        "bad prompt": (["a||b", *tiny_args], "empty part"),
        "impossible size": (["x", *tiny_args, "--size", "0", "64"], "size:"),
        "unsafe ckpt": (["x", *tiny_args, "--vqgan-checkpoint", str(tmp_path / "evil.ckpt")], "refused"),
        "unknown optimizer": (["x", *tiny_args, "--optimizer", "lbfgsx"], "optimizer.name"),
        "missing init image": (["x", *tiny_args, "--init-image", str(tmp_path / "no.png")], "no such image"),
        "bad --set": (["x", *tiny_args, "--set", "novalue"], "KEY=VALUE"),
        "no prompt": ([*tiny_args], "give a PROMPT"),
        "corrupt init image": (["x", *tiny_args, "--init-image", str(tmp_path / "text.png")], "not a readable image"),
        "corrupt image prompt": (["x", *tiny_args, "--image-prompt", str(tmp_path / "text.png")], "not a readable"),
        "nan lr": (["x", *tiny_args, "--lr", "nan"], "optimizer.lr: must be a finite number"),
        "huge seed": (["x", *tiny_args, "--seed", str(2**70)], "seed: must be a 64-bit integer"),
        "negative only": (["x:-1", *tiny_args], "nothing to aim at"),
        "set into a list": (["x", *tiny_args, "--set", "clip.0.weight=2"], "--set cannot index a list"),
        "init contradicts init image": (["x", *tiny_args, "--init", "flat", "--init-image", str(tmp_path / "text.png")],
                                        "--init flat and --init-image contradict each other"),
        "clip weight without clip model": (["x", "--config", str(tmp_path / "clip.yaml"), *tiny_args[:4],
                                            *tiny_args[8:], "--clip-weight", "-1"], "give one per --clip-model"),
        "negative tv weight": (["x", *tiny_args, "--tv-weight", "-5"], "tv_weight: must be >= 0"),
        "missing vqgan pair": (["x", *tiny_args, "--vqgan-config", str(tmp_path / "no.yaml"), "--vqgan-checkpoint",
                                str(tmp_path / "no.ckpt")], "no.yaml: no such file; vqgan.checkpoint: "),
        "image prompt weight not a number": (["x", *tiny_args, "--image-prompt", f"{tmp_path / 'ok.png'}:abc"],
                                             "the weight 'abc' after the image is not a number"),
        "jobs list to --config": (["--config", str(tmp_path / "batch.yaml"), *tiny_args],
                                  f"run it with `vqclip run {tmp_path / 'batch.yaml'}`"),
    }


@pytest.mark.parametrize("case", ["unknown key", "wrong type", "malformed yaml", "missing job", "missing ckpt",
                                  "bad prompt", "impossible size", "unsafe ckpt", "unknown optimizer",
                                  "missing init image", "bad --set", "no prompt", "corrupt init image",
                                  "corrupt image prompt", "nan lr", "huge seed", "negative only",
                                  "init contradicts init image", "set into a list", "clip weight without clip model",
                                  "negative tv weight", "jobs list to --config",
                                  "missing vqgan pair", "image prompt weight not a number"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, tiny_args, tiny_vqgan, capsys, case):
    argv, expected = _bad_inputs(tmp_path, tiny_args, tiny_vqgan)[case]
    assert main(["generate", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "out").exists()  # refused before a run folder was made


def test_a_run_folder_that_cannot_be_made_is_one_line_before_models_load(tmp_path, tiny_args, capsys, monkeypatch):
    import vqclip.runs.pipeline

    monkeypatch.setattr(vqclip.runs.pipeline, "load_models", lambda *a, **k: pytest.fail("models loaded first"))
    (tmp_path / "file.txt").write_text("a file, not a folder")
    assert main(["generate", "x", *tiny_args, "--out", str(tmp_path / "file.txt" / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'file.txt' / 'run'}: {tmp_path / 'file.txt'} is not a folder; "
                   "choose another --out"]


def test_out_of_memory_is_one_line(tmp_path, tiny_args, capsys, monkeypatch):
    import vqclip.runs.pipeline as gen  # the command looks run_job up there when it runs

    def failing(message):
        def run_job(cfg, **kwargs):
            raise RuntimeError(message)
        return run_job

    monkeypatch.setattr(gen, "run_job", failing("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: "
                                                "can't allocate memory: you tried to allocate 274877906944 bytes."))
    assert main(["generate", "x", *tiny_args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: out of memory (tried to allocate 274877906944 bytes); try")
    monkeypatch.setattr(gen, "run_job", failing("some other bug"))
    with pytest.raises(RuntimeError, match="some other bug"):  # anything else is not disguised as a user error
        main(["generate", "x", *tiny_args])


def test_from_an_image_too_large_to_open_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    Image.new("RGB", (20, 20)).save(tmp_path / "big.png")
    assert main(["generate", "--from", str(tmp_path / "big.png")]) == 2
    assert "not a readable PNG" in capsys.readouterr().err


@pytest.mark.parametrize("argv,prog", [(["generate", "x", "--stepz", "3"], "vqclip generate"),
                                       (["zoom", "x", "--save-every", "3"], "vqclip zoom"),  # one frame per move
                                       (["restyle", "a.mp4", "x", "--candidates", "2"], "vqclip restyle"),
                                       (["score", "a.png", "--prompt", "x", "--bogus"], "vqclip score"), (["--bogus"], "vqclip")])
def test_an_unknown_option_points_at_its_commands_help(argv, prog, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1, err
    assert err[0].startswith(f"error: {prog}: unrecognized arguments: ") and err[0].endswith(f"see `{prog} --help`")


@pytest.fixture(scope="module", autouse=True)
def _console_script(request, tmp_path_factory, tiny_args):
    """`python -m vqclip generate` of a bad job file, started with the module when its test is to run: a fresh
    interpreter (~3 s) runs beside the tests before it instead of being waited out."""
    if not selected(request, test="test_bad_input_from_the_console_script_has_no_traceback"):
        yield None
        return
    where = tmp_path_factory.mktemp("console")
    (where / "job.yaml").write_text("prompt: x\nsteps: banana\n")
    with started([sys.executable, "-m", "vqclip", "generate", "--config", str(where / "job.yaml"), *tiny_args],
                 where / "home") as proc:
        yield proc


def test_bad_input_from_the_console_script_has_no_traceback(_console_script):
    _, stderr = _console_script.communicate(timeout=120)
    assert _console_script.returncode == 2
    assert "Traceback" not in stderr and stderr.strip().startswith("error: ")


def test_ctrl_c_keeps_frames_writes_final_and_exits_130(tmp_path, tiny_args):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "vqclip", "generate", "x", *tiny_args, "--steps", "100000",
                             "--save-every", "1", "--out", str(out)], stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "frames" / "000002.png").exists():
        assert time.time() < deadline and proc.poll() is None, "run did not start"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "stopped early" in err
    meta = read_metadata(out / "final.png")
    assert meta["stopped"] is True and 3 <= meta["steps_done"] < 100000
    frames = sorted((out / "frames").iterdir())
    assert len(frames) == meta["steps_done"] + 1
    assert len(read_video_frames(out / "progress.mp4")[0]) == len(frames)
    assert not list(out.rglob(TEMP_GLOB)) and not list(out.rglob("*.part*"))


def test_help_and_option_errors_do_not_load_torch():
    """`vqclip --help` and a mistyped option answer at once: torch (seconds to import) loads only to run a job."""
    code = ("import sys\nfrom vqclip.cli import main\nfor argv in (['--help'], ['zoom', '--help'], ['generate', '--bad']):\n"
            "    try:\n        main(argv)\n    except SystemExit:\n        pass\nprint('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "False", proc.stderr


def test_closed_pipe_is_quiet(monkeypatch, capsys):
    """`vqclip models | head`: a reader that left ends the command quietly (exit 141), not with a traceback."""
    with capsys.disabled():
        read_end, write_end = os.pipe()
        os.close(read_end)
        out = os.fdopen(write_end, "w", buffering=1)
        monkeypatch.setattr(sys, "stdout", out)
        try:
            assert main(["models"]) == 141
        finally:
            out.close()


def test_threads_option_is_recorded_and_restored(tmp_path, tiny_args, capsys, monkeypatch):
    import torch

    import vqclip.runs.pipeline as gen

    before, seen, real = torch.get_num_threads(), [], gen.generate

    def spy(cfg, *args, **kwargs):  # the run itself, inside run_job
        seen.append(torch.get_num_threads())
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(gen, "generate", spy)
    assert main(["generate", "x", *tiny_args, "--steps", "1", "--threads", "2", "--out", str(tmp_path / "t")]) == 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert seen == [min(2, cpus)] and torch.get_num_threads() == before
    assert read_metadata(tmp_path / "t" / "final.png")["config"]["threads"] == 2
    assert main(["generate", "x", *tiny_args, "--threads", "-1"]) == 2
    assert "threads: must be >= 0" in capsys.readouterr().err
    assert tiny_args[-1] == "--quiet"  # without it, to see the note
    assert main(["generate", "x", *tiny_args[:-1], "--steps", "1", "--threads", "100000", "--out",
                 str(tmp_path / "u")]) == 0  # torch would crash, or crawl, on 100000 threads
    assert seen[-1] == cpus and f"threads 100000 is more than the {cpus} CPUs here: using {cpus}" in \
        capsys.readouterr().err


def test_set_reads_values_as_a_job_file_does():
    from vqclip.cli import build_parser
    from vqclip.cli.generate import cli_overrides

    args = build_parser().parse_args(["generate", "--set", "prompt=2024-01-01", "--set", "optimizer.lr=1e-3"])
    assert cli_overrides(args) == {"prompt": "2024-01-01", "optimizer": {"lr": 0.001}}  # text, and a number


@pytest.mark.parametrize("argv,expected", [(["generate", "x", "--size", "64"], "--size: expected 2 arguments"),
                                           (["generate", "x", "--steps", "abc"], "invalid int value"),
                                           (["nosuch"], "invalid choice")])
def test_argument_errors_are_one_line(argv, expected, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2 and len(err) == 1 and expected in err[0] and "--help" in err[0]


def test_a_run_that_fails_before_making_anything_leaves_no_folder(tiny_job, tmp_path, monkeypatch):
    """A failure mid-run (out of memory, a bug) must not leave a job.yaml-only folder that blocks the same --out;
    a folder that already holds frames is kept."""
    import vqclip.runs.pipeline as pipeline
    from vqclip.runs.jobs import build_config

    def fails(cfg, models, callbacks, device, **kw):
        raise RuntimeError("boom")

    def fails_after_a_frame(cfg, models, callbacks, device, **kw):
        (out / "frames" / "000000.png").write_bytes(b"frame")
        raise RuntimeError("boom")

    out = tmp_path / "run"
    cfg = build_config({**tiny_job, "prompt": "a cat", "steps": 2, "output": {"dir": str(out), "progress": False}})
    monkeypatch.setattr(pipeline, "generate", fails)
    with pytest.raises(RuntimeError, match="boom"):
        pipeline.run_job(cfg)
    assert not out.exists()
    monkeypatch.setattr(pipeline, "generate", fails_after_a_frame)
    with pytest.raises(RuntimeError, match="boom"):
        pipeline.run_job(cfg)
    assert (out / "job.yaml").is_file() and (out / "frames" / "000000.png").is_file()


def test_run_names_the_file_and_job_of_a_bad_value(tmp_path, tiny_job, capsys):
    (tmp_path / "neg.yaml").write_text(yaml.safe_dump({**tiny_job, "prompt": "x", "jobs": [{"steps": 2}, {"steps": -5}]}))
    assert main(["run", str(tmp_path / "neg.yaml")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {tmp_path / 'neg.yaml'} job 2: steps: must be >= 0, got -5"]


def test_notes_do_not_tear_the_progress_bar(tmp_path, tiny_args, capsys):
    args = [a for a in tiny_args if a != "--quiet"]
    assert main(["generate", "a red circle", *args, "--init", "background", "--steps", "2", "--no-video",
                 "--out", str(tmp_path / "run")]) == 0
    err = capsys.readouterr().err
    notes = [line for line in err.split("\n") if "init background:" in line]
    assert notes and all(line.split("\r")[-1].startswith("note: init background:") for line in notes), err
