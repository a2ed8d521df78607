"""Resume: a run killed with SIGKILL (or stopped) and resumed gives the same final image, bit for bit, as an
uninterrupted run; state.pt loads with weights_only=True and never runs code."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vqclip.runs.callbacks import StopAfter
from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.optim.state import STATE_KEYS
from vqclip.runs.statefile import load_state
from vqclip.runs.resume import resume_run, state_path
from vqclip.measure.gpucorrect import killed_run_script

ROOT = Path(__file__).resolve().parents[1]


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def story_zoom_job(tiny_job, out: Path, **over) -> dict:
    """A job that uses everything that carries state: a story, zoom moves, Adam, augments with RNG, noise."""
    return {**tiny_job, "prompt": "a red cat ^ a blue dog", "change_every": 5, "steps": 16, "seed": 21,
            "state_every": 4, "cutouts": {"n": 4, "augments": ["affine", "perspective", "noise"]},
            "animation": {"mode": "zoom", "every": 2, "zoom": 1.1, "rotate": 3},
            "output": {"dir": str(out), "progress": False}, **over}


def story_job(tiny_job, out: Path, **over) -> dict:
    """A story alone (switched keyframes, no zoom)."""
    job = story_zoom_job(tiny_job, out, **over)
    job.pop("animation")
    job["output"]["save_every"] = 2  # the frames a zoom every 2 steps has
    return job


def zoom_job(tiny_job, out: Path, **over) -> dict:
    """Zoom moves alone (a plain prompt)."""
    return story_zoom_job(tiny_job, out, prompt="a red cat", change_every=0, **over)


JOBS = {"story+zoom": story_zoom_job, "story": story_job, "zoom": zoom_job}


def uninterrupted(tiny_job, out: Path, make) -> object:
    """The uninterrupted run of a job (one thread, like every run compared with it)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_job(build_config(make(tiny_job, out)))
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def reference(tiny_job, tmp_path_factory):
    """The uninterrupted run of `story_zoom_job`."""
    return uninterrupted(tiny_job, tmp_path_factory.mktemp("resume") / "whole", story_zoom_job)


@pytest.fixture(scope="module")
def killed_runs(tiny_job, tmp_path_factory, request):
    """Each kind's run in a process of its own, SIGKILLed while it hangs in step 9, and its uninterrupted run: the
    three processes start together and the uninterrupted runs are made here while they load (each spends ~4 s
    importing torch, which this process waited out three times over, one at a time). kind -> (run folder, exit
    code, the uninterrupted run)."""
    root = tmp_path_factory.mktemp("killed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "VQCLIP_HOME": str(root / "vqclip-home")}
    procs = {}
    try:
        for i, (kind, make) in enumerate(JOBS.items()):
            log = (root / f"{i}.log").open("wb")  # a file, not a pipe: a full pipe unread would hold a run up
            procs[kind] = (root / str(i), root / f"{i}.hanging", log, subprocess.Popen(
                [sys.executable, "-c", killed_run_script(False), json.dumps(make(tiny_job, root / str(i))),
                 str(root / f"{i}.hanging"), "9"], env=env, stdout=subprocess.DEVNULL, stderr=log))
        wholes = {kind: request.getfixturevalue("reference") if kind == "story+zoom" else
                  uninterrupted(tiny_job, root / f"whole-{kind}", make) for kind, make in JOBS.items()}
        deadline = time.monotonic() + 180
        for kind, (_, marker, log, proc) in procs.items():
            while not marker.exists():
                assert proc.poll() is None, Path(log.name).read_text(errors="replace")[-2000:]
                assert time.monotonic() < deadline, f"the {kind} run never reached step 9"
                time.sleep(0.05)
    finally:
        for _, _, log, proc in procs.values():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            log.close()
    return {kind: (folder, proc.returncode, wholes[kind]) for kind, (folder, _, _, proc) in procs.items()}


@pytest.mark.parametrize("kind", list(JOBS))
def test_resume_after_sigkill_is_bit_identical(killed_runs, kind):
    killed, code, reference = killed_runs[kind]
    assert code == -signal.SIGKILL
    assert not (killed / "final.png").exists()
    assert load_state(state_path(killed))["step"] == 8  # saved every 4 updates; killed during step 9

    assert main(["resume", str(killed), "--quiet"]) == 0
    assert np.array_equal(pixels(killed / "final.png"), pixels(reference.final))
    assert torch.equal(load_state(state_path(killed))["z"], load_state(state_path(reference.dir))["z"])
    names = sorted(p.name for p in (killed / "frames").iterdir())
    assert names == sorted(p.name for p in (reference.dir / "frames").iterdir()) and len(names) == 9
    assert not np.array_equal(pixels(killed / "frames" / names[1]), pixels(killed / "frames" / names[-1]))
    for name in names:
        assert np.array_equal(pixels(killed / "frames" / name), pixels(reference.dir / "frames" / name))


def test_stopped_run_resumes_and_state_loads_weights_only(tiny_job, reference, tmp_path):
    cut = run_job(build_config(story_zoom_job(tiny_job, tmp_path / "cut")), extra_callbacks=[StopAfter(7)])
    assert cut.interrupted
    state = torch.load(state_path(cut.dir), weights_only=True)  # the state at the stop, not only every 4 steps
    assert set(STATE_KEYS) <= set(state) and state["step"] == 7
    resumed = resume_run(cut.dir)
    assert not resumed.interrupted and resumed.result.steps == 16
    assert np.array_equal(pixels(resumed.final), pixels(reference.final))


def test_resume_without_state_starts_over_with_the_seed(tiny_job, tmp_path):
    job = {**tiny_job, "prompt": "a red circle", "steps": 5, "seed": 3, "output": {"dir": str(tmp_path / "a"),
                                                                                   "progress": False}}
    whole = run_job(build_config(job))
    cut = run_job(build_config({**job, "output": {"dir": str(tmp_path / "b"), "progress": False}}),
                  extra_callbacks=[StopAfter(2)])
    state_path(cut.dir).unlink()  # killed before the first save
    resumed = resume_run(cut.dir)
    assert np.array_equal(pixels(resumed.final), pixels(whole.final))


def test_finished_run_refuses_then_goes_on_with_more_steps(tiny_job, tmp_path, capsys):
    job = {**tiny_job, "prompt": "a red circle", "steps": 4, "seed": 3, "output": {"dir": str(tmp_path / "run"),
                                                                                   "progress": False, "save_every": 2}}
    run = run_job(build_config(job))
    assert main(["resume", str(run.dir)]) == 2
    assert "already finished all 4 steps" in capsys.readouterr().err
    assert main(["resume", str(run.dir), "--steps", "6", "--quiet"]) == 0
    assert load_state(state_path(run.dir))["step"] == 6
    assert sorted(p.name for p in (run.dir / "frames").iterdir()) == ["000000.png", "000002.png", "000004.png",
                                                                     "000006.png"]
    assert "steps: 6" in (run.dir / "job.yaml").read_text()
    assert main(["resume", str(run.dir), "--steps", "3"]) == 2  # fewer steps than done: said so, not "finished all 3"
    assert "the saved state is at step 6, past steps=3" in capsys.readouterr().err
    assert main(["resume", str(run.dir / "final.png")]) == 2
    assert "final.png: is a file, not a run folder" in capsys.readouterr().err


def test_resume_runs_on_the_jobs_thread_count_unless_told(tiny_job, tmp_path, monkeypatch):
    import vqclip.runs.pipeline

    job = {**tiny_job, "prompt": "a red circle", "steps": 2, "seed": 3, "threads": 2,
           "output": {"dir": str(tmp_path / "run"), "progress": False}}
    run = run_job(build_config(job))
    before, seen, real = torch.get_num_threads(), [], vqclip.runs.pipeline.generate

    def spy(*args, **kwargs):  # the resumed run itself
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(vqclip.runs.pipeline, "generate", spy)
    assert main(["resume", str(run.dir), "--steps", "3", "--quiet"]) == 0
    assert main(["resume", str(run.dir), "--steps", "4", "--quiet", "--threads", "1"]) == 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    assert seen == [min(2, cpus), 1] and torch.get_num_threads() == before
    assert "threads: 1" in (run.dir / "job.yaml").read_text()  # what it last ran with, as --steps is recorded


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_state_file_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "state.pt"
    bad.write_bytes(pickle.dumps({"z": _Payload(marker)}, protocol=2))
    with pytest.raises(VqclipError, match="not a readable vqclip state"):
        load_state(bad)
    assert not marker.exists()
    torch.save({"z": torch.zeros(1)}, bad)
    with pytest.raises(VqclipError, match="missing z_init"):
        load_state(bad)


def test_resume_errors_are_one_line(tmp_path, capsys):
    assert main(["resume", str(tmp_path / "nope")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["resume", str(tmp_path / "empty")]) == 2
    assert "holds no job.yaml" in capsys.readouterr().err


def test_a_state_that_does_not_fit_the_job_is_one_line_and_keeps_the_frames(tiny_job, tmp_path, capsys):
    job = {**tiny_job, "prompt": "a red circle", "steps": 8, "seed": 3,
           "output": {"dir": str(tmp_path / "run"), "progress": False, "save_every": 2}}
    cut = run_job(build_config(job), extra_callbacks=[StopAfter(3)])
    frames = sorted(p.name for p in (cut.dir / "frames").iterdir())
    legacy = {k: v for k, v in load_state(state_path(cut.dir)).items() if k != "job"}
    torch.save(legacy, state_path(cut.dir))  # a state that records no job: the state itself must not fit
    job_yaml = cut.dir / "job.yaml"
    job_yaml.write_text(job_yaml.read_text().replace("size:\n- 32\n- 32", "size:\n- 64\n- 64"))
    assert main(["resume", str(cut.dir), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the saved state's latent is" in err[0] and "delete state.pt" in err[0], err
    assert sorted(p.name for p in (cut.dir / "frames").iterdir()) == frames  # the frame at the stop is kept
    job_yaml.write_text(job_yaml.read_text().replace("size:\n- 64\n- 64", "size:\n- 32\n- 32")
                        .replace("name: adam", "name: sgd"))  # another optimizer: torch would fail at the next step
    assert main(["resume", str(cut.dir), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "saved optimizer state is not one of this job's optimizer (sgd)" in err[0], err
    state_path(cut.dir).write_text("this is not a state\n")  # garbage fails inside torch's unpickler
    assert main(["resume", str(cut.dir), "--quiet"]) == 2
    assert "not a readable vqclip state (" in capsys.readouterr().err


def test_a_job_from_another_vqclip_install_finds_the_embedded_clip(tiny_job, tmp_path, monkeypatch):
    from vqclip.models import presets as registry

    here = tmp_path / "new" / "vqclip" / "mini" / "weights"
    here.mkdir(parents=True)
    clip = tiny_job["clip"][0]
    for key in ("model", "pretrained"):
        (here / Path(clip[key]).name).write_bytes(Path(clip[key]).read_bytes())
    monkeypatch.setattr(registry, "EMBEDDED_DIR", here)
    elsewhere = tmp_path / "old" / "vqclip" / "mini" / "weights"  # the install that wrote the job, gone
    moved = [{**clip, "model": str(elsewhere / Path(clip["model"]).name),
              "pretrained": str(elsewhere / Path(clip["pretrained"]).name)}]
    job = {**tiny_job, "clip": moved, "prompt": "a red circle", "steps": 2, "seed": 3,
           "output": {"dir": str(tmp_path / "run"), "progress": False}}
    cfg = build_config(job)
    assert (cfg.clip[0].model, cfg.clip[0].pretrained) == (str(here / Path(clip["model"]).name),
                                                           str(here / Path(clip["pretrained"]).name))
    (here / "guide.json").write_text("{}")  # the guide's files are found the same way
    guide = build_config({**job, "guide": {"model": str(elsewhere / "guide.json"), "weights": str(here / "gone.pt")}})
    assert (guide.guide.model, guide.guide.weights) == (str(here / "guide.json"), str(here / "gone.pt"))
    run = run_job(cfg, extra_callbacks=[StopAfter(1)])
    (run.dir / "job.yaml").write_text((run.dir / "job.yaml").read_text().replace(str(here), str(elsewhere)))
    assert resume_run(run.dir).final.is_file()  # a run folder copied from the other install resumes here
