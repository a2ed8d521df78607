"""The run folder: locked while a run writes it (a second run of it is one line; the lock is released on any exit and
a killed run's is taken over), the temp files of killed writes removed by the next resume, never a run overwritten,
and what a failed write says `vqclip resume` will do."""

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_write_faults import Faults
from vqclip.cli import main
from vqclip.errors import VqclipError, WriteError
from vqclip.files.runfolder import LOCK_FILE, RunFolder, default_run_dir
from vqclip.nets.load import ModelCache
from vqclip.runs.callbacks import StopAfter
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job as _run_job
from vqclip.runs.resume import resume_run as _resume_run
from vqclip.runs.statefile import load_state

ROOT = Path(__file__).resolve().parents[1]
HOLD = ("import sys; from vqclip.files.runfolder import RunFolder; held = RunFolder(sys.argv[1]).lock(); "
        "print('held', flush=True); sys.stdin.read()")
CACHE = ModelCache()  # the tiny models, loaded once for this file's runs (they are frozen)


def run_job(cfg, **kwargs):
    return _run_job(cfg, cache=CACHE, **kwargs)


def resume_run(folder, **kwargs):
    return _resume_run(folder, cache=CACHE, **kwargs)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def job(tiny_job, out: Path, **over) -> dict:
    return {**tiny_job, "prompt": "a red circle", "steps": 5, "seed": 6, "state_every": 2,
            "output": {"dir": str(out), "progress": False, "save_every": 1, "video": False}, **over}


@pytest.fixture(scope="module")
def runs(tiny_job, tmp_path_factory):
    """A run stopped after 2 of 5 steps, and the uninterrupted run."""
    root = tmp_path_factory.mktemp("runfolder")
    cut = run_job(build_config(job(tiny_job, root / "cut")), extra_callbacks=[StopAfter(2)])
    return cut.dir, run_job(build_config(job(tiny_job, root / "whole"))).dir


@pytest.fixture
def cut(runs, tmp_path) -> Path:
    return Path(shutil.copytree(runs[0], tmp_path / "run"))


class Holder:
    """Another process that holds a folder's lock, as a run writing it does, until it ends or is killed."""

    def __init__(self, folder: Path):
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert self.proc.stdout.readline() == b"held\n", self.proc.stderr.read().decode()[-2000:]

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        assert self.proc.returncode == -signal.SIGKILL

    def end(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def snapshot(folder: Path) -> list:
    return [(p.relative_to(folder), p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()]


def test_a_resume_while_another_process_writes_the_folder_is_one_line_then_a_killed_ones_lock_is_taken_over(
        cut, runs, capsys):
    holder = Holder(cut)
    try:
        (cut / ".state.tmp-424242.pt").write_bytes(b"half of a state the other run is writing")
        before = snapshot(cut)
        assert main(["resume", str(cut), "--quiet"]) == 2
        line = one_error_line(capsys)
        assert f"{cut}: another vqclip run is writing this folder now" in line
        assert snapshot(cut) == before  # nothing touched, not even the other run's temp file
    finally:
        holder.kill()
    assert (cut / LOCK_FILE).is_file()  # what the killed run left: taken over
    assert main(["resume", str(cut), "--quiet"]) == 0
    assert np.array_equal(pixels(cut / "final.png"), pixels(runs[1] / "final.png"))


def test_a_lock_file_left_by_a_dead_process_is_taken_over(cut, runs):
    (cut / LOCK_FILE).write_text("999999999\nanother-host\n")  # whatever a run left behind, it holds no lock
    resume_run(cut)
    assert np.array_equal(pixels(cut / "final.png"), pixels(runs[1] / "final.png"))


def test_a_second_resume_during_a_resume_is_refused_and_the_first_ends_as_the_uninterrupted_run(cut, runs, capsys):
    codes = []

    def second(event):
        if event.step == 3:
            codes.append(main(["resume", str(cut), "--quiet"]))
            codes.append(one_error_line(capsys))

    resume_run(cut, extra_callbacks=[second])
    assert codes[0] == 2 and "another vqclip run is writing this folder now" in codes[1]
    assert np.array_equal(pixels(cut / "final.png"), pixels(runs[1] / "final.png"))


def test_a_run_given_a_folder_to_go_on_in_takes_its_lock_too(cut, tiny_job):
    """`run_job(folder=...)` (the library's resume) refuses a folder another process writes, before loading models."""
    holder = Holder(cut)
    try:
        with pytest.raises(VqclipError, match="another vqclip run is writing this folder now"):
            run_job(build_config(job(tiny_job, cut)), folder=RunFolder(cut), saved=load_state(cut / "state.pt"))
    finally:
        holder.end()


def test_default_folders_of_one_prompt_in_one_second_are_numbered(tmp_path, monkeypatch):
    monkeypatch.setattr("time.strftime", lambda fmt: "20240101-120000")
    first = default_run_dir("A red circle!", tmp_path)
    assert first == tmp_path / "20240101-120000-a-red-circle"
    first.mkdir()
    second = default_run_dir("a red circle", tmp_path)
    second.mkdir()
    assert second.name == first.name + "-2" and default_run_dir("a red circle", tmp_path).name == first.name + "-3"


def test_a_new_run_cannot_claim_a_folder_another_run_holds(tiny_job, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = Holder(out)  # another run of the same --out, between its lock and its job.yaml
    try:
        with pytest.raises(VqclipError, match="another vqclip run is writing this folder now"):
            run_job(build_config(job(tiny_job, out)))
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]  # its folder is left to it
    finally:
        holder.end()
    assert run_job(build_config(job(tiny_job, out, steps=1))).final.is_file()


class Boom(Exception):
    pass


def raise_at(step: int, exc: BaseException):
    def callback(event):
        if event.step == step:
            raise exc
    return callback


def test_the_lock_is_released_on_any_exit(tiny_job, tmp_path):
    """A run that fails, a resume aborted (a second Ctrl-C), one stopped (Ctrl-C once) and one finished: each leaves
    the folder free for the next run."""
    out = tmp_path / "run"
    with pytest.raises(Boom):
        run_job(build_config(job(tiny_job, out)), extra_callbacks=[raise_at(2, Boom("a bug"))])
    RunFolder(out).lock().unlock()
    with pytest.raises(KeyboardInterrupt):
        resume_run(out, extra_callbacks=[raise_at(3, KeyboardInterrupt())])
    RunFolder(out).lock().unlock()
    flag = threading.Event()
    flag.set()
    assert resume_run(out, stop=flag).interrupted  # stopped at the end of the step
    RunFolder(out).lock().unlock()
    assert not resume_run(out).interrupted
    RunFolder(out).lock().unlock()


def test_the_lock_is_counted_per_folder_object_and_held_against_others(tmp_path):
    one, other = RunFolder(tmp_path), RunFolder(tmp_path)
    one.lock().lock()
    one.unlock()
    with pytest.raises(VqclipError, match="another vqclip run"):
        other.lock()
    one.unlock()
    assert not one.locked
    other.lock()
    with pytest.raises(VqclipError, match="another vqclip run"):
        one.lock()
    other.unlock()
    other.unlock()  # one more than taken: nothing to do


def test_a_resume_removes_the_temp_files_of_killed_writes_and_nothing_else(cut, runs, capsys):
    temps = [cut / ".progress.tmp-4242.mp4", cut / ".state.tmp-4242.pt", cut / ".latest.tmp-17.png",
             cut / "frames" / ".000003.tmp-4242.png", cut / ".progress.noaudio.mp4",
             cut / "..progress.noaudio.tmp-99.mp4"]
    kept = [cut / "notes.txt", cut / ".hidden", cut / "frames" / "keep.tmp.png", cut / "state.tmp-1.pt"]
    for p in [*temps, *kept]:
        p.write_bytes(b"x")
    assert sorted(RunFolder(cut).leftovers()) == sorted(temps)
    assert main(["resume", str(cut)]) == 0
    assert "removed 6 temporary files of writes cut short" in capsys.readouterr().err
    assert not any(p.exists() for p in temps) and all(p.read_bytes() == b"x" for p in kept)
    assert np.array_equal(pixels(cut / "final.png"), pixels(runs[1] / "final.png"))


@pytest.mark.parametrize("marker", ["final.png", "job.yaml", "frames"])  # docs/outputs.md: any of them
def test_a_folder_with_any_mark_of_a_run_is_never_overwritten(tiny_job, tmp_path, marker):
    out = tmp_path / "run"
    out.mkdir()
    (out / marker).mkdir() if marker == "frames" else (out / marker).write_text("a run")
    with pytest.raises(VqclipError, match="already holds a run; choose another --out"):
        run_job(build_config(job(tiny_job, out)))
    assert sorted(p.name for p in out.iterdir()) == [marker]


def test_a_folder_with_other_files_or_a_left_lock_is_claimed(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / LOCK_FILE).write_text("")
    folder = RunFolder(out).claim("prompt: x\n")
    assert folder.locked and (out / "job.yaml").read_text() == "prompt: x\n" and (out / "frames").is_dir()
    folder.unlock()


def test_release_undoes_only_its_own_claim(tmp_path):
    theirs = tmp_path / "theirs"
    (theirs / "frames").mkdir(parents=True)
    (theirs / "job.yaml").write_text("prompt: x\n")
    RunFolder(theirs).release()  # not claimed by this object: another run's folder stays
    assert (theirs / "job.yaml").is_file()
    mine = RunFolder(tmp_path / "mine").claim("prompt: x\n")
    mine.release()
    assert not mine.path.exists() and not mine.locked
    again = RunFolder(tmp_path / "again").claim("prompt: x\n")
    (again.frames_dir / "000000.png").write_bytes(b"a frame")
    again.release()  # a frame was made: all kept
    assert (again.path / "job.yaml").is_file() and (again.frames_dir / "000000.png").is_file()


def test_a_failed_write_says_what_resume_will_do(tiny_job, tmp_path, monkeypatch):
    """With no state.pt saved yet (state_every 0: only at the end) a resume starts over, and says so; with one, it
    goes on from it; either way it ends as the uninterrupted run."""
    def attempt(name, every):
        with pytest.raises(WriteError) as err:
            run_job(build_config(job(tiny_job, tmp_path / name, state_every=every)))
        return str(err.value)

    whole = run_job(build_config(job(tiny_job, tmp_path / "whole", state_every=0)))
    faults = Faults(monkeypatch).fail("000003.png")
    line = attempt("never", 0)
    assert line.endswith(f"; then `vqclip resume {tmp_path / 'never'}` starts the run over from step 0 (no state.pt "
                         "yet: state_every 0 saves it only at the end of a run)"), line
    faults.fail("000001.png")
    assert attempt("early", 2).endswith("starts the run over from step 0 (no state.pt yet: state_every 2 saves it "
                                        "first after step 2)")
    faults.fail("000004.png")
    assert attempt("later", 2).endswith(f"then `vqclip resume {tmp_path / 'later'}` goes on from the last saved state "
                                        "(state.pt)")
    assert load_state(tmp_path / "later" / "state.pt")["step"] == 4
    monkeypatch.undo()
    for name in ("never", "later"):
        assert np.array_equal(pixels(resume_run(tmp_path / name).final), pixels(whole.final))
