"""Faults of the world during a run: a full disk, no permission, the run folder removed, impossible paths. Each is one
line and exit 2; every file written before is intact, and the run resumes once the fault is gone."""

import errno
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vqclip.cli import main
from vqclip.files.atomic import TEMP_GLOB, write_text
from vqclip.errors import VqclipError, WriteError
from vqclip.runs.statefile import load_state


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def intact_png(path: Path) -> bool:
    with Image.open(path) as im:
        im.load()  # a truncated PNG fails here
        return im.format == "PNG"


class Faults:
    """Make a write whose file name contains `name` (the first, or the one after `skip` such writes) fail as a full
    disk (or `code`) would: half of the data reaches the file, then OSError. Writes go through PIL's save (PNGs) and
    Path.write_bytes (state.pt, job.yaml)."""

    def __init__(self, monkeypatch):
        self.rules: list[list] = []  # [name, code, action, writes to let through first]
        self.hits: list[str] = []
        save, write_bytes = Image.Image.save, Path.write_bytes

        def fake_save(im, fp, *args, **kwargs):
            if not isinstance(fp, (str, os.PathLike)):  # encoding into memory (a GIF before its atomic write)
                return save(im, fp, *args, **kwargs)
            self._write(Path(fp), lambda: save(im, fp, *args, **kwargs))

        def fake_write_bytes(path, data):
            return self._write(Path(path), lambda: write_bytes(path, data))

        monkeypatch.setattr(Image.Image, "save", fake_save)
        monkeypatch.setattr(Path, "write_bytes", fake_write_bytes)

    def fail(self, name: str, code: int = errno.ENOSPC, action=None, skip: int = 0) -> "Faults":
        self.rules.append([name, code, action, skip])
        return self

    def _write(self, path: Path, write):
        name = re.sub(r"^\.(.*)\.tmp-\d+", r"\1", path.name)  # the file an atomic write's temp becomes
        rule = next((r for r in self.rules if r[0] in name and r[3] >= 0), None)
        if rule is None:
            return write()
        rule[3] -= 1
        if rule[3] >= 0:
            return write()
        self.hits.append(path.name)
        if rule[2] is not None:
            rule[2]()
            return write()  # the world changed under the write (the folder removed): the real error follows
        result = write()
        with open(path, "r+b") as f:  # the disk filled up half-way through
            f.truncate(max(1, path.stat().st_size // 2))
        raise OSError(rule[1], {errno.ENOSPC: "No space left on device", errno.EACCES: "Permission denied"}[rule[1]])


@pytest.fixture
def faults(monkeypatch):
    return Faults(monkeypatch)


def run_args(tiny_args, out: Path, steps: int = 6) -> list[str]:
    return ["generate", "a red circle", *tiny_args, "--steps", str(steps), "--save-every", "1", "--seed", "4",
            "--set", "state_every=2", "--no-video", "--out", str(out)]


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def uninterrupted(tiny_args, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "run"
    assert main(run_args(tiny_args, out)) == 0
    return out


def test_a_full_disk_at_a_frame_is_one_line_keeps_the_frames_and_resumes(tiny_args, uninterrupted, tmp_path, faults,
                                                                         capsys):
    out = tmp_path / "run"
    faults.fail("000004.png")
    assert main(run_args(tiny_args, out)) == 2
    line = one_error_line(capsys)
    assert f"cannot write {out / 'frames' / '000004.png'}: No space left on device; free some space" in line
    assert f"`vqclip resume {out}`" in line
    frames = sorted(p.name for p in (out / "frames").iterdir())
    assert frames == [f"{i:06d}.png" for i in range(4)]  # the half-written one is gone, with its temp
    assert all(intact_png(p) for p in (out / "frames").iterdir())
    assert not list(out.glob(TEMP_GLOB)) and not list((out / "frames").glob(TEMP_GLOB))
    assert int(load_state(out / "state.pt")["step"]) == 4  # saved after step 4's update, before frame 4
    assert np.array_equal(pixels(out / "latest.png"), pixels(out / "frames" / "000003.png"))
    assert not (out / "final.png").exists()
    # once there is room, the run goes on and ends as the uninterrupted run does
    assert main(["resume", str(out), "--quiet"]) == 0
    assert np.array_equal(pixels(out / "final.png"), pixels(uninterrupted / "final.png"))
    assert sorted(p.name for p in (out / "frames").iterdir()) == [f"{i:06d}.png" for i in range(7)]
    assert np.array_equal(pixels(out / "latest.png"), pixels(out / "frames" / "000006.png"))


def test_a_failed_state_write_keeps_the_previous_state(tiny_args, uninterrupted, tmp_path, faults, capsys):
    out = tmp_path / "run"
    faults.fail("state.pt", skip=1)  # the first save (step 2) goes through, the second (step 4) fails half-way
    assert main(run_args(tiny_args, out)) == 2
    line = one_error_line(capsys)
    assert f"cannot write {out / 'state.pt'}: No space left on device" in line and "vqclip resume" in line
    assert int(load_state(out / "state.pt")["step"]) == 2  # the good one from before, not half of the new one
    assert all(intact_png(p) for p in (out / "frames").iterdir())
    assert main(["resume", str(out), "--quiet"]) == 0
    assert np.array_equal(pixels(out / "final.png"), pixels(uninterrupted / "final.png"))


def test_a_full_disk_at_final_png_resumes_to_the_end(tiny_args, uninterrupted, tmp_path, faults, capsys):
    out = tmp_path / "run"
    faults.fail("final.png")
    assert main(run_args(tiny_args, out)) == 2
    assert f"cannot write {out / 'final.png'}" in one_error_line(capsys)
    assert not (out / "final.png").exists() and int(load_state(out / "state.pt")["step"]) == 6
    assert main(["resume", str(out), "--quiet"]) == 0  # not taken for a finished run: final.png is written last
    assert np.array_equal(pixels(out / "final.png"), pixels(uninterrupted / "final.png"))


def test_a_full_disk_at_the_video_is_not_taken_for_a_finished_run(tiny_args, uninterrupted, tmp_path, faults,
                                                                    capsys):
    out = tmp_path / "run"
    faults.fail("progress.gif")
    args = [a for a in run_args(tiny_args, out) if a != "--no-video"] + ["--video-format", "gif"]
    assert main(args) == 2
    assert f"cannot write {out / 'progress.gif'}: No space left on device" in one_error_line(capsys)
    assert not (out / "final.png").exists()  # final.png comes last: the run is not done
    assert main(["resume", str(out), "--quiet"]) == 0
    assert (out / "progress.gif").is_file()
    assert np.array_equal(pixels(out / "final.png"), pixels(uninterrupted / "final.png"))


def test_permission_denied_is_one_line_naming_the_file_and_fix(tiny_args, tmp_path, faults, capsys):
    out = tmp_path / "run"
    faults.fail("000002.png", errno.EACCES)  # as root, chmod does not stop a write: the error is simulated
    assert main(run_args(tiny_args, out)) == 2
    line = one_error_line(capsys)
    assert f"cannot write {out / 'frames' / '000002.png'}: Permission denied; make its folder writable" in line
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["000000.png", "000001.png"]


def test_the_run_folder_removed_mid_run_is_one_line_and_not_made_again(tiny_args, tmp_path, faults, capsys):
    out = tmp_path / "run"
    faults.fail("000003.png", action=lambda: shutil.rmtree(out))
    assert main(run_args(tiny_args, out)) == 2
    line = one_error_line(capsys)
    assert f"cannot write {out / 'frames' / '000003.png'}: No such file or directory" in line
    assert "run the job again" in line and not out.exists()


def test_a_full_disk_at_job_yaml_leaves_no_folder(tiny_args, tmp_path, faults, capsys):
    out = tmp_path / "run"
    faults.fail("job.yaml")
    assert main(run_args(tiny_args, out)) == 2
    assert f"cannot write {out / 'job.yaml'}: No space left on device" in one_error_line(capsys)
    assert not out.exists()  # nothing of the run was made: the same --out works once there is room


def test_atomic_write_failure_keeps_the_old_file_and_removes_the_temp(tmp_path, faults):
    target = tmp_path / "note.txt"
    write_text(target, "old")
    faults.fail("note")
    with pytest.raises(WriteError) as caught:
        write_text(target, "new text")
    assert isinstance(caught.value, OSError) and caught.value.errno == errno.ENOSPC  # OSError callers still work
    assert isinstance(caught.value, VqclipError) and str(target) in str(caught.value)
    assert target.read_text() == "old" and not list(tmp_path.glob(TEMP_GLOB))


@pytest.mark.parametrize("where", ["out", "job"])
def test_a_nul_byte_in_a_path_is_one_line(tiny_args, tiny_job, tmp_path, capsys, where):
    if where == "out":
        code = main(["generate", "x", *tiny_args, "--steps", "1", "--out", str(tmp_path / "a\0b")])
    else:
        job = tmp_path / "job.yaml"
        job.write_text('prompt: x\nsteps: 1\noutput: {dir: "a\\0b"}\n')
        code = main(["run", str(job)])
    assert code == 2
    assert "output.dir" in (line := one_error_line(capsys)) and "NUL byte" in line


@pytest.mark.parametrize("key, flag", [("init.image", "--init-image"), ("vqgan.checkpoint", "--vqgan-checkpoint"),
                                       ("image_prompts[0]", "--image-prompt")])
def test_every_path_option_refuses_a_nul_byte_and_a_name_too_long(tiny_args, tmp_path, capsys, key, flag):
    for bad, why in ((str(tmp_path / "x\0.png"), "NUL byte"), (str(tmp_path / ("n" * 300 + ".png")), "too long")):
        assert main(["generate", "x", *tiny_args, "--steps", "1", flag, bad, "--out", str(tmp_path / "r")]) == 2
        line = one_error_line(capsys)
        assert line.startswith(f"error: {key}: ") and why in line, line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("key, yaml_text", [
    ("clip[0].pretrained", 'clip: [{model: ViT-B-32, pretrained: "w\\0.bin"}]'),
    ("guide.weights", 'guide: {model: g.json, weights: "w\\0.bin"}'),
    ("restyle.input", 'restyle: {input: "v\\0.mp4"}'),
    ("candidates.clip[0].model", 'candidates: {clip: [{model: "m\\0.json"}]}')])
def test_path_keys_of_a_job_file_refuse_a_nul_byte(tiny_job, tmp_path, capsys, key, yaml_text):
    job = tmp_path / "job.yaml"
    job.write_text(f"prompt: x\nsteps: 1\n{yaml_text}\n")
    assert main(["run", str(job)]) == 2
    line = one_error_line(capsys)
    assert f"{key}: " in line and "NUL byte" in line, line


def test_other_path_arguments_refuse_a_nul_byte(tmp_path, capsys):
    for argv in (["generate", "--from", "a\0.png"], ["generate", "--config", "a\0.yaml"], ["resume", "a\0b"],
                 ["run", "a\0.yaml"]):
        assert main(argv) == 2, argv
        one_error_line(capsys)


def _mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a tmpfs here ({exc})")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip() or done.returncode}")


@pytest.mark.slow
def test_a_real_full_disk_is_one_line_and_resumes_once_there_is_room(tiny_args, uninterrupted, tmp_path, capsys):
    disk = tmp_path / "disk"
    _mount_tmpfs(disk, "120k")
    try:
        (disk / "filler").write_bytes(b"\0" * (120 * 1024 - 48 * 1024))  # leave room for a few frames and a state
        out = disk / "run"
        assert main(run_args(tiny_args, out, steps=6)) == 2
        line = one_error_line(capsys)
        assert "No space left on device; free some space" in line and f"`vqclip resume {out}`" in line
        assert all(intact_png(p) for p in (out / "frames").iterdir())
        if (out / "state.pt").exists():
            load_state(out / "state.pt")
        (disk / "filler").unlink()  # room again
        assert main(["resume", str(out), "--quiet"]) == 0
        assert np.array_equal(pixels(out / "final.png"), pixels(uninterrupted / "final.png"))
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=20)


def test_a_write_fault_outside_the_atomic_helpers_is_one_line_too(tiny_args, tmp_path, capsys, monkeypatch):
    import vqclip.runs.pipeline as pipeline

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "somefile"))

    monkeypatch.setattr(pipeline, "run_job", full)
    assert main(["generate", "x", *tiny_args, "--out", str(tmp_path / "r")]) == 2
    expected = f"error: cannot write {tmp_path / 'somefile'}: No space left on device; free some space"
    assert one_error_line(capsys) == expected

    def bug(*args, **kwargs):  # an OSError that is no fault of the disk stays a traceback: it is vqclip's to fix
        raise OSError(errno.EINVAL, "Invalid argument")

    monkeypatch.setattr(pipeline, "run_job", bug)
    with pytest.raises(OSError, match="Invalid argument"):
        main(["generate", "x", *tiny_args, "--out", str(tmp_path / "r")])
