"""Downloads against a local HTTP server on 127.0.0.1: progress, resume, corruption, mirrors, stalls, offline."""

from __future__ import annotations

import json
import time

import pytest

from fileserver import STALL_LIMIT_S, dead_url, payload, sha

from vqclip.models.download import DownloadError, fetch
from vqclip.models.integrity import CorruptFileError, Manifest, verify_file
from vqclip.errors import VqclipError
from vqclip.models.presets import FileSpec

def test_download_shows_progress_and_records_sha256(server, tmp_path, capsys):
    data = payload()
    spec = FileSpec("model.ckpt", (server.add("/model.ckpt", data),))
    path = fetch(spec, tmp_path, progress=True, timeout=5)
    assert path == tmp_path / "model.ckpt" and path.read_bytes() == data
    assert not list(tmp_path.glob("*.part*"))
    err = capsys.readouterr().err
    assert "model.ckpt" in err and "100%" in err and "B/s" in err and "<" in err  # name, size, rate, ETA
    entry = json.loads((tmp_path / "manifest.json").read_text())["files"]["model.ckpt"]
    assert entry["sha256"] == sha(data) and entry["size"] == len(data) and entry["source"] == spec.urls[0]


def test_no_progress_bar_when_disabled(server, tmp_path, capsys):
    fetch(FileSpec("a.bin", (server.add("/a.bin", payload(5000)),)), tmp_path, progress=False, timeout=5)
    assert "100%" not in capsys.readouterr().err


def test_transfer_cut_mid_file_resumes_with_range(server, tmp_path):
    data = payload()
    url = server.add("/cut.ckpt", data, mode="cut", cut_after=100_000, times=1)
    path = fetch(FileSpec("cut.ckpt", (url,)), tmp_path, progress=False, timeout=5, retries=2)
    assert path.read_bytes() == data
    assert server.ranges("/cut.ckpt") == [None, "bytes=100000-"]


def test_interrupted_download_resumes_in_a_later_run(server, tmp_path):
    data = payload()
    spec = FileSpec("later.ckpt", (server.add("/later.ckpt", data, mode="cut", cut_after=123_456, times=1),))
    with pytest.raises(DownloadError):
        fetch(spec, tmp_path, progress=False, timeout=5, retries=0)
    assert not (tmp_path / "later.ckpt").exists(), "an incomplete file must never get the final name"
    assert (tmp_path / "later.ckpt.part").stat().st_size == 123_456
    assert fetch(spec, tmp_path, progress=False, timeout=5).read_bytes() == data
    assert server.ranges("/later.ckpt")[-1] == "bytes=123456-"
    assert not (tmp_path / "later.ckpt.part").exists() and not (tmp_path / "later.ckpt.part.json").exists()


def test_server_ignoring_range_restarts_from_zero(server, tmp_path):
    data = payload()
    (tmp_path / "nr.ckpt.part").write_bytes(b"stale bytes from an earlier attempt")
    url = server.add("/nr.ckpt", data, mode="norange")
    assert fetch(FileSpec("nr.ckpt", (url,)), tmp_path, progress=False, timeout=5).read_bytes() == data
    assert server.ranges("/nr.ckpt") == ["bytes=35-"]


def test_complete_part_file_is_finished_without_refetching_body(server, tmp_path):
    data = payload(4000)
    (tmp_path / "done.bin.part").write_bytes(data)
    url = server.add("/done.bin", data)
    assert fetch(FileSpec("done.bin", (url,), size=len(data)), tmp_path, progress=False, timeout=5).read_bytes() == data
    assert server.ranges("/done.bin") == []


def test_pinned_sha256_mismatch_is_refused(server, tmp_path):
    data = payload()
    spec = FileSpec("pinned.ckpt", (server.add("/pinned.ckpt", data),), sha256=sha(b"something else"))
    with pytest.raises(DownloadError, match="sha256") as info:
        fetch(spec, tmp_path, progress=False, timeout=5)
    assert not list(tmp_path.glob("pinned.ckpt*")), "a bad download leaves neither the file nor its .part"
    assert str(tmp_path / "pinned.ckpt") in str(info.value)


def test_bad_bytes_kept_from_an_earlier_attempt_are_refetched_whole(server, tmp_path):
    data = payload()
    (tmp_path / "mix.ckpt.part").write_bytes(payload(1000, seed=5))  # e.g. left by a host serving another file
    spec = FileSpec("mix.ckpt", (server.add("/mix.ckpt", data),), sha256=sha(data))
    assert fetch(spec, tmp_path, progress=False, timeout=5).read_bytes() == data
    assert server.ranges("/mix.ckpt") == ["bytes=1000-", None]


def test_pinned_sha256_match_is_accepted_and_not_recorded(server, tmp_path):
    data = payload()
    spec = FileSpec("ok.ckpt", (server.add("/ok.ckpt", data),), size=len(data), sha256=sha(data))
    assert fetch(spec, tmp_path, progress=False, timeout=5).read_bytes() == data
    assert not (tmp_path / "manifest.json").exists()


def test_wrong_size_is_refused(server, tmp_path):
    spec = FileSpec("sz.bin", (server.add("/sz.bin", payload(1000)),), size=999)
    with pytest.raises(DownloadError, match="999"):
        fetch(spec, tmp_path, progress=False, timeout=5)
    assert not (tmp_path / "sz.bin").exists()


@pytest.mark.parametrize("damage", ["flip", "swap", "truncate"])
def test_corrupted_or_swapped_file_on_disk_is_caught(server, tmp_path, damage):
    data = payload()
    spec = FileSpec("c.ckpt", (server.add("/c.ckpt", data),))
    path = fetch(spec, tmp_path, progress=False, timeout=5)
    manifest = Manifest(tmp_path / "manifest.json")
    assert verify_file(path, spec, manifest) == sha(data)
    bad = {"flip": data[:1000] + bytes([data[1000] ^ 1]) + data[1001:], "swap": payload(len(data), seed=1),
           "truncate": data[:-1]}[damage]
    path.write_bytes(bad)
    with pytest.raises(CorruptFileError, match="corrupt or was replaced"):
        verify_file(path, spec, manifest)
    with pytest.raises(CorruptFileError):
        fetch(spec, tmp_path, progress=False, timeout=5)  # an existing file is checked, never trusted


def test_redownload_must_match_first_recorded_sha256(server, tmp_path):
    spec = FileSpec("r.ckpt", (server.add("/r.ckpt", payload()),))
    fetch(spec, tmp_path, progress=False, timeout=5).unlink()
    server.add("/r.ckpt", payload(seed=7))  # the host now serves a different file
    with pytest.raises(DownloadError, match="first download recorded"):
        fetch(spec, tmp_path, progress=False, timeout=5)


@pytest.mark.parametrize("failure", ["fail", "close", "dead", "html"])
def test_mirror_takes_over_from_failing_host(server, tmp_path, failure):
    data = payload()
    if failure == "dead":
        first = dead_url()
    elif failure == "html":
        first = server.add("/bad", b"<!DOCTYPE html><html><body>File not found</body></html>", content_type="text/html")
    else:
        first = server.add("/bad", data, mode=failure)
    mirror = server.add("/mirror.ckpt", data)
    path = fetch(FileSpec("m.ckpt", (first, mirror)), tmp_path, progress=False, timeout=5)
    assert path.read_bytes() == data
    assert server.ranges("/mirror.ckpt") == [None]
    entry = Manifest(tmp_path / "manifest.json").entry(path)
    assert entry["source"] == mirror and entry["sha256"] == sha(data)


def test_stalled_host_times_out_and_mirror_takes_over(server, tmp_path):
    data = payload()
    stalled = server.add("/stall.ckpt", data, mode="stall", cut_after=50_000)
    mirror = server.add("/good.ckpt", data)
    start = time.monotonic()
    path = fetch(FileSpec("s.ckpt", (stalled, mirror)), tmp_path, progress=False, timeout=0.3, retries=1)
    assert path.read_bytes() == data
    assert time.monotonic() - start < STALL_LIMIT_S - 1, "the stall must be cut by the timeout, not the server"
    assert server.ranges("/stall.ckpt") == [None, "bytes=50000-"]  # one resume (it stalls again), then the mirror
    assert server.ranges("/good.ckpt") == ["bytes=100000-"]  # the mirror continues the same partial file


def test_offline_message_names_file_urls_and_destination(tmp_path):
    urls = (dead_url("/a.ckpt"), dead_url("/b.ckpt"))
    with pytest.raises(DownloadError) as info:
        fetch(FileSpec("vqgan.ckpt", urls), tmp_path / "home", progress=False, timeout=2)
    message = str(info.value)
    assert "vqgan.ckpt" in message and all(u in message for u in urls)
    assert f"put it at {(tmp_path / 'home' / 'vqgan.ckpt').absolute()}" in message
    assert isinstance(info.value, VqclipError) and len(info.value.missing) == 1
    assert not (tmp_path / "home" / "vqgan.ckpt").exists()


def test_offline_says_nothing_before_the_error_which_names_each_host_once(tmp_path, caplog):
    urls = (dead_url("/a.ckpt"), dead_url("/b.ckpt"))
    with caplog.at_level("INFO", logger="vqclip"), pytest.raises(DownloadError) as info:
        fetch(FileSpec("vqgan.ckpt", urls), tmp_path / "home", progress=False, timeout=2)
    assert [r.getMessage() for r in caplog.records if r.levelname == "INFO"] == []  # no host answered: no note
    assert all(str(info.value).count(u) == 1 for u in urls)  # each host and its reason once, in the error


def test_file_without_urls_explains_where_to_put_it(tmp_path):
    with pytest.raises(DownloadError, match="no download URL") as info:
        fetch(FileSpec("own.ckpt"), tmp_path, progress=False)
    assert str(tmp_path / "own.ckpt") in str(info.value)


def test_concurrent_runs_download_a_file_once(server, tmp_path):
    import threading

    data = payload()
    spec = FileSpec("shared.ckpt", (server.add("/shared.ckpt", data, mode="slow"),))
    results, errors = [], []

    def run():
        try:
            results.append(fetch(spec, tmp_path, progress=False, timeout=5))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors and results == [tmp_path / "shared.ckpt"] * 3
    assert (tmp_path / "shared.ckpt").read_bytes() == data
    assert server.ranges("/shared.ckpt") == [None], "the others waited for the first download instead of fetching"
    assert not list(tmp_path.glob("*.part*"))
    files = json.loads((tmp_path / "manifest.json").read_text())["files"]
    assert files["shared.ckpt"]["sha256"] == sha(data)


def test_read_only_model_store_still_loads_with_a_warning(tmp_path, caplog):
    data = payload(5000)
    path = tmp_path / "store" / "model.ckpt"
    path.parent.mkdir()
    path.write_bytes(data)
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the manifest's folder should be, so nothing can be written there")
    manifest = Manifest(blocker / "manifest.json")
    with caplog.at_level("WARNING", logger="vqclip"):
        assert verify_file(path, FileSpec("model.ckpt", ()), manifest) == sha(data)
    assert "could not record the sha256 of model.ckpt" in caplog.text
    assert manifest.entry(path) is None


def test_unwritable_model_folder_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "home"
    blocker.write_text("a file where the model folder should be")
    spec = FileSpec("m.ckpt", (dead_url("/m.ckpt"),))
    with pytest.raises(VqclipError, match="cannot write .*VQCLIP_HOME") as info:
        fetch(spec, blocker / "checkpoints", progress=False, timeout=1)
    assert "\n" not in str(info.value)
