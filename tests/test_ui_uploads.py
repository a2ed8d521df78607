"""What the page's server accepts, with hostile requests: uploads at and past their byte cap (the request refused
before it is read), their pixel cap and Pillow's decompression-bomb limits, files that are no image (or a format
Pillow may not parse: EPS would run Ghostscript), any name; job bodies past their cap, nested too deeply or with
YAML aliases that expand to billions; and the server listens on 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import http.client
import io
import json
import re
import struct
import zlib

import pytest
from PIL import Image, PngImagePlugin

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")

from uiserver import LiveServer  # noqa: E402

CAP = 64 << 10  # the test server's upload cap, bytes
TOO_LARGE = "is too large an image (at most 16,777,216 pixels, e.g. 4096x4096)"
NOT_AN_IMAGE = "is not an image (PNG, JPEG, WebP, GIF or BMP)"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("uploads") / "outputs", device="cpu", max_upload=CAP).start()
    try:
        yield server
    finally:
        server.stop()


def encoded(im: Image.Image, fmt: str = "PNG", **options) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header(width: int, height: int) -> bytes:
    """A PNG that says it is width x height (1 bit grey) and holds almost nothing: a bomb's header."""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 8)) + chunk(b"IEND", b""))


def png_of_size(total: int) -> bytes:
    """A valid 8x8 PNG of exactly `total` bytes (a text chunk pads it)."""
    plain = len(encoded(Image.new("RGB", (8, 8), (10, 20, 30))))
    info = PngImagePlugin.PngInfo()
    info.add_text("pad", "x" * (total - plain - 12 - len("pad\0")))
    data = encoded(Image.new("RGB", (8, 8), (10, 20, 30)), pnginfo=info)
    assert len(data) == total
    return data


def stored(srv, body: dict) -> bytes:
    assert re.fullmatch(r"upload:[0-9a-f]{32}", body["id"]) and body["url"] == f"/files/.uploads/{body['id'][7:]}.png"
    return (srv.outputs / ".uploads" / f"{body['id'][7:]}.png").read_bytes()


def test_an_upload_of_exactly_the_cap_is_taken_and_one_byte_more_is_not(srv):
    status, body = srv.upload(png_of_size(CAP), "edge.png")
    assert status == 200, body
    kept = stored(srv, body)
    with Image.open(io.BytesIO(kept)) as im:  # re-encoded: the pixels, none of the uploaded chunks
        assert im.getpixel((0, 0)) == (10, 20, 30) and "pad" not in im.info and len(kept) < 1000
    status, body = srv.upload(png_of_size(CAP + 1), "edge.png")
    assert status == 413 and body["error"] == "upload: edge.png is over the 64 KB limit; upload a smaller image"


def test_a_request_longer_than_any_upload_is_refused_before_it_is_read(srv):
    host, port = srv.url.removeprefix("http://").split(":")
    for headers, status in (({"Content-Length": str(10**12)}, 413), ({"Transfer-Encoding": "chunked"}, 411)):
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.putrequest("POST", "/api/uploads")
        conn.putheader("Content-Type", "multipart/form-data; boundary=b")
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        conn.send(b"--b\r\n" if status == 413 else b"5\r\n--b\r\n\r\n")  # and nothing more: it is not waited for
        res = conn.getresponse()
        assert res.status == status, res.read()
        assert json.loads(res.read())["error"].startswith("upload: ")
        conn.close()


@pytest.mark.parametrize("data, message", [
    (png_header(4097, 4096), f"upload: x.png {TOO_LARGE}: it is 4097x4096"),
    (png_header(5000, 5000), f"upload: x.png {TOO_LARGE}: it is 5000x5000"),
    (png_header(10_000, 10_000), f"upload: x.png {TOO_LARGE}"),  # past Pillow's bomb warning
    (png_header(20_000, 20_000), f"upload: x.png {TOO_LARGE}"),  # past Pillow's bomb error
    (png_header(100_000_000, 1), f"upload: x.png {TOO_LARGE}"),
    (b"#!/bin/sh\nrm -rf ~\n", f"upload: x.png {NOT_AN_IMAGE}"),
    (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", f"upload: x.png {NOT_AN_IMAGE}"),
    (b"", f"upload: x.png {NOT_AN_IMAGE}"),
    (encoded(Image.new("RGB", (8, 8)))[:60], f"upload: x.png {NOT_AN_IMAGE}"),  # cut short
    (encoded(Image.new("RGB", (8, 8)), "TGA"), f"upload: x.png {NOT_AN_IMAGE}"),  # a format not parsed here
], ids=["4097x4096", "5000x5000", "bomb-warning", "bomb-error", "1e8x1", "script", "svg", "empty", "cut-short",
        "tga"])
def test_images_too_large_and_files_that_are_no_image_are_refused(srv, data, message):
    status, body = srv.upload(data, "x.png")
    assert (status, body["error"]) == (400, message)


def test_an_image_of_exactly_the_pixel_cap_is_taken(srv):
    status, body = srv.upload(encoded(Image.new("1", (4096, 4096), 1)), "big.png")
    assert status == 200 and (body["width"], body["height"]) == (4096, 4096)
    with Image.open(io.BytesIO(stored(srv, body))) as im:
        assert im.mode == "RGB" and im.size == (4096, 4096) and im.getpixel((4095, 4095)) == (255, 255, 255)


def test_eps_is_never_handed_to_ghostscript(srv, monkeypatch):
    from PIL import EpsImagePlugin

    calls = []

    def ghostscript(*args, **kwargs):
        calls.append(args)
        raise OSError("no Ghostscript in this test")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", ghostscript)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n%%EndComments\nnewpath\nshowpage\n%%EOF\n"
    status, body = srv.upload(eps, "x.eps")
    assert (status, body["error"]) == (400, f"upload: x.eps {NOT_AN_IMAGE}") and calls == []


@pytest.mark.parametrize("fmt, name, mode", [
    ("JPEG", "photo.png", "RGB"),  # the name does not decide: the bytes do
    ("PNG", "photo.exe", "RGBA"),
    ("GIF", "../../../etc/x.png", "P"),
    ("WEBP", "a\tb\x7f\u00e9 .webp", "RGB"),
    ("BMP", "", "L"),
])
def test_any_name_and_the_shown_formats_are_kept_as_a_png_under_a_random_id(srv, fmt, name, mode):
    before = sorted(p.name for p in (srv.outputs / ".uploads").glob("*")) if (srv.outputs / ".uploads").exists() else []
    image = Image.new(mode, (6, 5), 7 if mode in ("P", "L") else (7, 7, 7) if mode == "RGB" else (7, 7, 7, 255))
    status, body = srv.upload(encoded(image, fmt) + b"<?php system($_GET['c']); ?>", name)
    assert status == 200, body
    kept = stored(srv, body)
    assert b"<?php" not in kept and Image.open(io.BytesIO(kept)).size == (6, 5)
    after = sorted(p.name for p in (srv.outputs / ".uploads").iterdir())
    assert len(after) == len(before) + 1 and not list(srv.outputs.parent.rglob("x.png"))


def test_a_name_shows_on_one_line_and_a_form_without_its_file_is_refused(srv):
    status, body = srv.upload(b"not an image", "evil\tname \x0b " + "n" * 200 + ".png")
    assert status == 400 and body["error"] == f"upload: evil name {'n' * 50} {NOT_AN_IMAGE}"
    boundary = "b0undary"
    form = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"other\"\r\n\r\nx\r\n--{boundary}--\r\n").encode()
    status, body = srv.request("POST", "/api/uploads", data=form,
                               headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert status == 400 and body["error"] == "upload: send the image as the form's `file` field"


def laughs(levels: int) -> str:
    """A YAML of a few hundred bytes whose aliases stand for 9**levels values."""
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join([*lines, f"prompt: *l{levels - 1}", "model: mini"])


@pytest.mark.parametrize("request_body, status, message", [
    ({"yaml": laughs(9)}, 400, "yaml: uses "),  # refused by the bounded YAML loader, before the job's own count
    ({"yaml": "model: mini\nprompt: " + "[" * 600 + "]" * 600}, 400, "yaml: nests lists and mappings more than"),
    ('{"job": {"prompt": ' + "[" * 50_000 + "]" * 50_000 + "}}", 400, "job: nested too deeply to be a job"),
    ('{"job": {"model": "mini", "cutouts": ' + '{"a": ' * 20 + "1" + "}" * 20 + "}}", 400,
     "nested over 16 levels deep"),
    ({"job": {"model": "mini", "negative": ["x"] * 10_001}}, 400, "holds over 10000 values"),
], ids=["yaml-aliases", "deep-yaml", "deep-json", "deep-keys", "long-list"])
def test_job_bodies_that_would_pin_or_crash_the_server_are_one_line(srv, request_body, status, message):
    if isinstance(request_body, str):
        got, body = srv.request("POST", "/api/jobs", data=request_body.encode(),
                                headers={"Content-Type": "application/json"})
    else:
        got, body = srv.request("POST", "/api/jobs", request_body)
    assert got == status and body["error"].startswith(message) and "\n" not in body["error"], body
    assert srv.queue.jobs() == []


def test_a_job_at_the_limits_is_taken_and_a_chunked_body_is_capped_as_it_streams(srv):
    deep = {"model": "mini", "prompt": "x", "sweep": {"seed": [1]}}
    assert srv.request("POST", "/api/jobs", {"job": deep, "check": True}) == (200, {"ok": True})
    aliased = "model: mini\nprompt: &p a red circle\nnegative: [*p, *p]\n"  # a job may use aliases
    assert srv.request("POST", "/api/jobs", {"yaml": aliased, "check": True}) == (200, {"ok": True})
    host, port = srv.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.request("POST", "/api/jobs", body=iter([b'{"yaml": "', b"a" * (300 << 10), b'"}']),
                 headers={"Content-Type": "application/json"}, encode_chunked=True)
    res = conn.getresponse()
    assert res.status == 413 and json.loads(res.read())["error"] == "job: the request is over 256 KB"
    conn.close()


def test_the_page_listens_on_this_machine_only_unless_told(monkeypatch, capsys, tmp_path):
    import uvicorn

    from vqclip.cli import main

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append(sockets[0].getsockname()))
    assert main(["ui", "--outputs", str(tmp_path / "o")]) == 0  # no --host
    assert served[0][0] == "127.0.0.1" and "warning" not in capsys.readouterr().err
