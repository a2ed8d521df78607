"""The HTTP side of a download against a scripted server on 127.0.0.1: resume asks If-Range with the validator the
host gave, 416 and inconsistent ranges start over, a host that sends more than it announced or offers the wrong size
is refused, a short disk is one line, and nothing gets the final name before it is verified."""

from __future__ import annotations

import hashlib
import json
import threading
from collections import namedtuple
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fileserver import payload
from vqclip.errors import VqclipError
from vqclip.models import download
from vqclip.models.download import DownloadError, _content_range, fetch, human_size
from vqclip.models.presets import FileSpec

Reply = namedtuple("Reply", "status headers body")


class Scripted:
    """Serves `data` (Range honoured, ETag/Last-Modified as given); `script` replies, in order, take over first.
    Records each request's headers."""

    def __init__(self, data: bytes, etag: str | None = None, modified: str | None = None):
        self.data, self.etag, self.modified, self.script, self.seen = data, etag, modified, [], []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.seen.append(dict(self.headers))
                reply = server.script.pop(0) if server.script else server.reply(self.headers.get("Range"))
                self.send_response(reply.status)
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(reply.body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/m.ckpt"

    def reply(self, wanted: str | None) -> Reply:
        headers = {k: v for k, v in (("ETag", self.etag), ("Last-Modified", self.modified)) if v}
        start = int(wanted[6:-1]) if wanted else 0
        body = self.data[start:]
        headers["Content-Length"] = str(len(body))
        if wanted:
            headers["Content-Range"] = f"bytes {start}-{len(self.data) - 1}/{len(self.data)}"
        return Reply(206 if wanted else 200, headers, body)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def host():
    made = []

    def make(data, **kwargs):
        made.append(Scripted(data, **kwargs))
        return made[-1]

    yield make
    for server in made:
        server.stop()


DATA = payload(50_000)


def _partial(tmp_path, upto: int, **meta):
    (tmp_path / "m.ckpt.part").write_bytes(DATA[:upto])
    if meta:
        (tmp_path / "m.ckpt.part.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("meta, if_range", [
    ({"etag": '"abc"', "last_modified": "Mon, 01 Jan 2024 00:00:00 GMT"}, '"abc"'),  # a strong ETag first
    ({"etag": 'W/"abc"', "last_modified": "Mon, 01 Jan 2024 00:00:00 GMT"}, "Mon, 01 Jan 2024 00:00:00 GMT"),
    ({"etag": None, "last_modified": None}, None),
])
def test_a_resume_asks_if_range_with_the_hosts_validator(tmp_path, host, meta, if_range):
    srv = host(DATA)
    _partial(tmp_path, 20_000, url=srv.url, total=len(DATA), **meta)
    assert fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5).read_bytes() == DATA
    assert srv.seen[0]["Range"] == "bytes=20000-" and srv.seen[0].get("If-Range") == if_range
    assert not (tmp_path / "m.ckpt.part").exists() and not (tmp_path / "m.ckpt.part.json").exists()


def test_a_validator_from_another_host_is_not_sent(tmp_path, host):
    srv = host(DATA)
    _partial(tmp_path, 20_000, url="http://elsewhere/m.ckpt", total=len(DATA), etag='"abc"')
    fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5)
    assert "If-Range" not in srv.seen[0]


def test_a_part_longer_than_the_file_starts_over(tmp_path, host):
    srv = host(DATA)
    (tmp_path / "m.ckpt.part").write_bytes(DATA + b"extra")
    assert fetch(FileSpec("m.ckpt", (srv.url,), size=len(DATA)), tmp_path, progress=False,
                 timeout=5).read_bytes() == DATA
    assert "Range" not in srv.seen[0]


def test_416_for_a_complete_part_finishes_it(tmp_path, host):
    srv = host(DATA)
    _partial(tmp_path, len(DATA))
    srv.script = [Reply(416, {"Content-Range": f"bytes */{len(DATA)}", "Content-Length": "0"}, b"")]
    assert fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5).read_bytes() == DATA
    assert len(srv.seen) == 1


def test_416_for_a_part_of_another_size_starts_over(tmp_path, host):
    srv = host(DATA)
    _partial(tmp_path, 10_000)
    srv.script = [Reply(416, {"Content-Range": "bytes */999", "Content-Length": "0"}, b"")]
    assert fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5).read_bytes() == DATA
    assert [s.get("Range") for s in srv.seen] == ["bytes=10000-", None]


def test_416_with_no_retries_left_hands_over_to_the_mirror(tmp_path, host):
    srv, mirror = host(DATA), host(DATA)
    _partial(tmp_path, 10_000)
    srv.script = [Reply(416, {"Content-Range": "bytes */999", "Content-Length": "0"}, b"")]
    assert fetch(FileSpec("m.ckpt", (srv.url, mirror.url)), tmp_path, progress=False, timeout=5,
                 retries=0).read_bytes() == DATA
    assert len(srv.seen) == 1 and [s.get("Range") for s in mirror.seen] == [None]


def test_a_range_the_host_did_not_ask_for_starts_over(tmp_path, host):
    srv = host(DATA)
    _partial(tmp_path, 20_000)
    srv.script = [Reply(206, {"Content-Range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}",
                              "Content-Length": str(len(DATA))}, DATA)]
    assert fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5).read_bytes() == DATA
    assert [s.get("Range") for s in srv.seen] == ["bytes=20000-", None]


def test_a_range_that_starts_past_the_part_is_not_appended(tmp_path, host):
    """Appending bytes 30000- to a part of 20000 would make a file of the right size and the wrong content."""
    srv = host(DATA)
    _partial(tmp_path, 20_000)
    srv.script = [Reply(206, {"Content-Range": f"bytes 30000-{len(DATA) - 1}/{len(DATA)}",
                              "Content-Length": str(len(DATA) - 30_000)}, DATA[30_000:])]
    assert fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5).read_bytes() == DATA


def test_a_part_of_another_version_of_the_file_starts_over(tmp_path, host):
    """The host's length changed since the part was fetched (no validator to tell): the old bytes are not kept."""
    srv = host(DATA)
    (tmp_path / "m.ckpt.part").write_bytes(payload(20_000, seed=9))
    (tmp_path / "m.ckpt.part.json").write_text(json.dumps({"url": srv.url, "total": 60_000}))
    assert fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5).read_bytes() == DATA
    assert [s.get("Range") for s in srv.seen] == ["bytes=20000-", None]


def test_a_cut_download_remembers_the_hosts_length_and_validator_for_the_next_run(tmp_path, host):
    srv = host(DATA, etag='"v1"')
    srv.script = [Reply(200, {"Content-Length": str(len(DATA)), "ETag": '"v1"'}, DATA[:12_345])]  # then it closes
    with pytest.raises(DownloadError, match="closed early after 12345"):
        fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5, retries=0)
    meta = json.loads((tmp_path / "m.ckpt.part.json").read_text())
    assert (meta["url"], meta["total"], meta["etag"]) == (srv.url, len(DATA), '"v1"')
    assert fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5).read_bytes() == DATA
    assert (srv.seen[-1]["Range"], srv.seen[-1]["If-Range"]) == ("bytes=12345-", '"v1"')


def test_more_bytes_than_announced_are_refused_and_discarded(tmp_path, host):
    srv = host(DATA)
    srv.script = [Reply(206, {"Content-Range": "bytes 0-29999/30000", "Content-Length": str(len(DATA))}, DATA)]
    with pytest.raises(DownloadError, match=f"the host sent {len(DATA)} bytes after announcing 30000"):
        fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5)
    assert not list(tmp_path.glob("m.ckpt*"))


def test_a_host_offering_another_size_than_the_pin_is_skipped_for_the_mirror(tmp_path, host):
    srv, mirror = host(DATA + b"x"), host(DATA)
    path = fetch(FileSpec("m.ckpt", (srv.url, mirror.url), size=len(DATA)), tmp_path, progress=False, timeout=5)
    assert path.read_bytes() == DATA
    assert len(mirror.seen) == 1


def test_the_offered_size_that_differs_is_named(tmp_path, host):
    srv = host(DATA + b"x")
    with pytest.raises(DownloadError, match=f"the host offers {len(DATA) + 1} bytes, but the file must be {len(DATA)}"):
        fetch(FileSpec("m.ckpt", (srv.url,), size=len(DATA)), tmp_path, progress=False, timeout=5)


def test_a_disk_too_small_is_one_line_naming_what_is_needed(tmp_path, host, monkeypatch):
    srv = host(DATA)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage(10**9, 10**9, len(DATA) - 1))
    with pytest.raises(VqclipError, match="not enough disk space for m.ckpt .*needs 50.0 KB, 50.0 KB free") as info:
        fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5)
    assert "\n" not in str(info.value) and not (tmp_path / "m.ckpt").exists()
    monkeypatch.setattr(download.shutil, "disk_usage", lambda path: usage(10**9, 10**9, len(DATA)))
    assert fetch(FileSpec("m.ckpt", (srv.url,)), tmp_path, progress=False, timeout=5).read_bytes() == DATA


def test_force_fetches_again_over_a_file_on_disk(tmp_path, host):
    srv = host(DATA)
    (tmp_path / "m.ckpt").write_bytes(b"old")
    spec = FileSpec("m.ckpt", (srv.url,), sha256=hashlib.sha256(DATA).hexdigest())
    assert fetch(spec, tmp_path, progress=False, timeout=5, force=True).read_bytes() == DATA


@pytest.mark.parametrize("value, expected", [("bytes 100-199/200", (100, 200)), ("bytes */200", (None, 200)),
                                             ("bytes 0-9/*", (0, None)), (" bytes 5-9/10 ", (5, 10)),
                                             ("items 0-9/10", (None, None)), (None, (None, None))])
def test_content_range(value, expected):
    assert _content_range(value) == expected


@pytest.mark.parametrize("n, text", [(None, "?"), (0, "0 B"), (999, "999 B"), (1000, "1.0 KB"), (99_949, "99.9 KB"),
                                     (123_456, "123 KB"), (980_000_000, "980 MB"), (5 * 10**9, "5.0 GB"),
                                     (2 * 10**12, "2000 GB")])
def test_human_sizes(n, text):
    assert human_size(n) == text
