"""Is a file the file it must be: the size pin, the sha256 pin (hashlib's digest of the bytes), the manifest's record
of a first download (sha256 AND size), web pages refused, a damaged manifest one line; records keyed by place."""

from __future__ import annotations

import hashlib
import json

import pytest

from vqclip.errors import VqclipError
from vqclip.models.integrity import (CorruptFileError, IntegrityError, Manifest, check_bytes, looks_like_web_page,
                                     sha256_file, verify_file)
from vqclip.models.presets import FileSpec

DATA = bytes(range(256)) * 5000  # 1.28 MB: more than one read block


def _file(tmp_path, data=DATA, name="m.ckpt"):
    (tmp_path / name).write_bytes(data)
    return tmp_path / name


def test_the_sha256_is_hashlibs_of_the_whole_file(tmp_path):
    assert sha256_file(_file(tmp_path)) == hashlib.sha256(DATA).hexdigest()
    assert sha256_file(_file(tmp_path, b"")) == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize("size, ok", [(len(DATA), True), (len(DATA) - 1, False), (len(DATA) + 1, False), (None, True)])
def test_the_size_pin_holds_exactly(tmp_path, size, ok):
    path = _file(tmp_path)
    if ok:
        assert check_bytes(path, FileSpec("m.ckpt", size=size), None) == (hashlib.sha256(DATA).hexdigest(), len(DATA))
    else:
        with pytest.raises(IntegrityError, match=f"{len(DATA)} bytes, but it must be {size}"):
            check_bytes(path, FileSpec("m.ckpt", size=size), None)


def test_the_sha256_pin_holds_and_a_pinned_file_ignores_the_manifest(tmp_path):
    path, digest = _file(tmp_path), hashlib.sha256(DATA).hexdigest()
    other = {"sha256": "0" * 64, "size": 1}
    assert check_bytes(path, FileSpec("m.ckpt", sha256=digest), other)[0] == digest
    flipped = digest[:-1] + ("0" if digest[-1] != "0" else "1")
    with pytest.raises(IntegrityError, match=f"but the preset pins {flipped[:16]}"):
        check_bytes(path, FileSpec("m.ckpt", sha256=flipped), None)


@pytest.mark.parametrize("entry, ok", [
    ({"sha256": hashlib.sha256(DATA).hexdigest(), "size": len(DATA)}, True),
    ({"sha256": hashlib.sha256(DATA).hexdigest(), "size": len(DATA) + 1}, False),  # the size recorded differs
    ({"sha256": "0" * 64, "size": len(DATA)}, False),
    ({}, False),  # a record without its values matches nothing
    (None, True),  # nothing recorded yet
])
def test_an_unpinned_file_must_match_its_first_downloads_record(tmp_path, entry, ok):
    path = _file(tmp_path)
    if ok:
        check_bytes(path, FileSpec("m.ckpt"), entry)
    else:
        with pytest.raises(IntegrityError, match="but the first download recorded"):
            check_bytes(path, FileSpec("m.ckpt"), entry)


@pytest.mark.parametrize("head, page", [(b"<!DOCTYPE html><html>", True), (b"  \n<html lang=en>", True),
                                        (b"<HTML><BODY>", True), (b"\x80\x02<html>", False), (b"PK\x03\x04", False),
                                        (b"<?xml version", False)])
def test_a_web_page_is_refused_by_its_start(tmp_path, head, page):
    path = _file(tmp_path, head + b" rest of the page" * 10)
    assert looks_like_web_page(path) is page
    if page:
        with pytest.raises(IntegrityError, match="a web page"):
            check_bytes(path, FileSpec("m.ckpt"), None)


def test_verify_records_a_new_file_once_then_checks_it(tmp_path):
    path, manifest = _file(tmp_path), Manifest(tmp_path / "manifest.json")
    assert verify_file(path, FileSpec("m.ckpt"), manifest) == hashlib.sha256(DATA).hexdigest()
    entry = manifest.entry(path)
    assert entry["sha256"] == hashlib.sha256(DATA).hexdigest() and entry["size"] == len(DATA)
    assert entry["source"] == "found on disk"
    verify_file(path, FileSpec("m.ckpt"), manifest)
    assert manifest.entry(path) == entry  # not recorded again
    path.write_bytes(DATA[:-1] + b"\x00")
    with pytest.raises(CorruptFileError, match="m.ckpt is corrupt or was replaced: .*delete it and run"):
        verify_file(path, FileSpec("m.ckpt"), manifest)


def test_a_pinned_file_is_never_recorded(tmp_path):
    path, manifest = _file(tmp_path), Manifest(tmp_path / "manifest.json")
    verify_file(path, FileSpec("m.ckpt", sha256=hashlib.sha256(DATA).hexdigest()), manifest)
    assert not (tmp_path / "manifest.json").exists()


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(VqclipError, match="gone.ckpt: missing; run `vqclip models download`"):
        verify_file(tmp_path / "gone.ckpt", FileSpec("gone.ckpt"))


def test_records_are_keyed_relative_to_the_manifest_and_absolute_outside(tmp_path):
    manifest = Manifest(tmp_path / "home" / "manifest.json")
    assert manifest.key(tmp_path / "home" / "upscalers" / "x.pth") == "upscalers/x.pth"
    assert manifest.key(tmp_path / "elsewhere" / "x.pth") == str(tmp_path / "elsewhere" / "x.pth")
    manifest.record(tmp_path / "home" / "a.ckpt", "1" * 64, 5, source="u")
    manifest.record(tmp_path / "home" / "b.ckpt", "2" * 64, 6, source="v")
    files = json.loads((tmp_path / "home" / "manifest.json").read_text())["files"]
    assert set(files) == {"a.ckpt", "b.ckpt"} and files["a.ckpt"]["source"] == "u"
    assert manifest.forget(tmp_path / "home" / "a.ckpt") and not manifest.forget(tmp_path / "home" / "a.ckpt")
    assert manifest.entry(tmp_path / "home" / "a.ckpt") is None and manifest.entry(tmp_path / "home" / "b.ckpt")


@pytest.mark.parametrize("text", ["{not json", "[]", '{"version": 1}', '{"files": [1]}'])
def test_a_damaged_manifest_is_one_line_saying_what_to_do(tmp_path, text):
    (tmp_path / "manifest.json").write_text(text)
    with pytest.raises(VqclipError, match="unreadable checksum manifest .*delete it and run `vqclip models verify`"):
        Manifest(tmp_path / "manifest.json").entry(tmp_path / "m.ckpt")
