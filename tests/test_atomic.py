"""Atomic writes: a file appears whole or not at all, through one hidden temporary name beside it (with the writer's
pid and the file's suffix); any failure, an interrupt included, leaves the old file and no temporary one."""

import errno
import os
from pathlib import Path

import pytest

from vqclip.errors import WriteError
from vqclip.files.atomic import TEMP_GLOB, atomic_path, temp_path, write_bytes, write_text


def test_the_temporary_name_is_hidden_beside_the_file_with_the_pid_and_suffix(tmp_path):
    tmp = temp_path(tmp_path / "progress.mp4")
    assert tmp == tmp_path / f".progress.tmp-{os.getpid()}.mp4"
    assert tmp.match(TEMP_GLOB) and not (tmp_path / "progress.mp4").match(TEMP_GLOB)


def test_a_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "job.yaml"
    assert write_text(path, "prompt: é\n") == path
    assert path.read_bytes() == "prompt: é\n".encode("utf-8")
    write_bytes(path, b"second")
    assert path.read_bytes() == b"second" and sorted(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize("failure", [KeyboardInterrupt(), ValueError("a bug"), OSError(errno.ENOSPC, "No space")])
def test_any_failure_keeps_the_old_file_and_removes_the_temporary_one(tmp_path, failure):
    path = tmp_path / "state.pt"
    path.write_bytes(b"the good state")
    expected = WriteError if isinstance(failure, OSError) else type(failure)
    with pytest.raises(expected) as err:
        with atomic_path(path) as tmp:
            tmp.write_bytes(b"half of a new")
            raise failure
    assert path.read_bytes() == b"the good state" and sorted(tmp_path.iterdir()) == [path]
    if expected is WriteError:
        assert str(err.value) == f"cannot write {path}: No space; free some space" and err.value.path == path


def test_fsync_is_done_before_the_rename_when_asked(tmp_path, monkeypatch):
    synced, real = [], os.fsync

    def fsync(fd):
        synced.append(Path(f"/proc/self/fd/{fd}").resolve().name)
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    write_bytes(tmp_path / "a.pt", b"x")
    assert synced == []
    write_bytes(tmp_path / "b.pt", b"x", fsync=True)
    assert synced == [temp_path(tmp_path / "b.pt").name]
