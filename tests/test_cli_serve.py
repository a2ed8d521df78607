"""`vqclip ui` and `vqclip upscale` up to the work itself (the server and the network stood in): each limit refuses
exactly past its boundary with a one-line error and exit 2 before anything is served or loaded; the page warns when
others can reach it; upscale never overwrites without --force, never writes two results to one file, and keeps a
vqclip PNG's job in its result."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.files.images import read_png_json, save_png

from test_cli_rules import presets_read_once  # noqa: F401  (autouse: the presets file parsed once)

pytest.importorskip("uvicorn", reason="vqclip ui needs vqclip[ui]")


def error_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().err.splitlines() if line.strip()]


# ---- ui (cli/ui.py)

@pytest.mark.parametrize("host, mine", [("localhost", True), ("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                                        ("0.0.0.0", False), ("192.168.1.4", False), ("::", False), ("example.org", False)])
def test_only_loopback_addresses_are_this_machine_only(host, mine):
    from vqclip.cli.ui import loopback

    assert loopback(host) is mine


@pytest.fixture
def served(monkeypatch):
    """The page's app stood in: reaching it (past every check, the socket bound) ends the command with 'served'."""
    import vqclip.ui.server as server

    made = []

    def create_app(outputs, device=None):
        made.append(outputs)
        raise VqclipError("served")

    monkeypatch.setattr(server, "create_app", create_app)
    return made


@pytest.mark.parametrize("port, ok", [("-1", False), ("0", True), ("65535", True), ("65536", False)])
def test_the_port_is_0_to_65535(served, capsys, tmp_path, port, ok):
    assert main(["ui", "--port", port, "--outputs", str(tmp_path / "o")]) == 2
    err = error_lines(capsys)
    if ok:  # past the check: served, or the port is taken on this machine
        assert err[-1] == "error: served" or err[-1].startswith("error: cannot listen on 127.0.0.1:65535")
    else:
        assert err == [f"error: --port: must be 0..65535 (0: a free one), got {port}"] and served == []


def test_outputs_that_is_a_file_is_one_line(served, capsys, tmp_path):
    (tmp_path / "f").write_text("x")
    assert main(["ui", "--outputs", str(tmp_path / "f")]) == 2
    assert error_lines(capsys) == [f"error: --outputs: {tmp_path / 'f'} is a file, not a folder"] and served == []


@pytest.mark.parametrize("host, warned", [("127.0.0.1", False), ("localhost", False), ("0.0.0.0", True), ("::1", False)])
def test_the_page_warns_when_others_can_reach_it_and_listens_on_ipv6_too(served, capsys, tmp_path, host, warned):
    assert main(["ui", "--host", host, "--outputs", str(tmp_path)]) == 2
    err = error_lines(capsys)
    assert err[-1] == "error: served" and served == [tmp_path]  # bound: an IPv6 address on an IPv6 socket
    assert any(line.startswith(f"warning: listening on {host}: anyone") for line in err) is warned


# ---- upscale (cli/upscale.py)

@pytest.fixture
def upscaler(monkeypatch):
    """The upscaler stood in (a 4x model); the results it is asked to write."""
    import vqclip.runs.upscale as upscale

    written = []
    monkeypatch.setattr(upscale, "prepare_upscaler", lambda model, scale, device, progress=True: SimpleNamespace(
        scale=4))
    monkeypatch.setattr(upscale, "write_upscaled", lambda up, image, target, **kw: written.append((target, kw)))
    return written


def png(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (9, 99, 199)).save(path)
    return str(path)


@pytest.mark.parametrize("option, value, message", [
    ("--scale", "0", "--scale: must be >= 1 (default: the model's own), got 0"), ("--scale", "1", None),
    ("--tile", "31", "--tile: must be >= 32 pixels (0 = the whole image at once), got 31"), ("--tile", "32", None),
    ("--tile", "0", None), ("--tile", "-1", "--tile: must be >= 32 pixels"),
])
def test_upscale_limits_hold_at_their_boundaries(upscaler, capsys, tmp_path, option, value, message):
    code = main(["upscale", png(tmp_path / "a.png"), "--model", "x", option, value])
    if message is None:
        target, kw = upscaler[-1]
        assert code == 0 and kw["scale" if option == "--scale" else "tile"] == int(value)
        assert target == tmp_path / f"a_x{kw['scale']}.png"
    else:
        err = error_lines(capsys)
        assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {message}"), err
        assert upscaler == []


def test_upscale_never_overwrites_without_force(upscaler, capsys, tmp_path):
    image = png(tmp_path / "a.png")
    (tmp_path / "a_x4.png").write_text("kept")
    assert main(["upscale", image, "--model", "x"]) == 2
    assert error_lines(capsys) == [f"error: {tmp_path / 'a_x4.png'} exists already; pass --force to replace it, or "
                                   "--out DIR"] and upscaler == []
    assert main(["upscale", image, "--model", "x", "--force"]) == 0 and upscaler[-1][0] == tmp_path / "a_x4.png"


def test_two_images_never_go_to_one_file_and_out_must_be_a_folder(upscaler, capsys, tmp_path):
    a, b = png(tmp_path / "a" / "x.png"), png(tmp_path / "b" / "x.png")
    assert main(["upscale", a, b, "--model", "x", "--out", str(tmp_path / "out")]) == 2
    assert "two images would be written to the same file" in error_lines(capsys)[0] and upscaler == []
    (tmp_path / "file").write_text("x")
    assert main(["upscale", a, "--model", "x", "--out", str(tmp_path / "file")]) == 2
    assert error_lines(capsys) == [f"error: --out: {tmp_path / 'file'} is a file, not a folder"]
    assert main(["upscale", a, b, "--model", "x"]) == 0  # beside each image: two files
    assert [t for t, _ in upscaler] == [tmp_path / "a" / "x_x4.png", tmp_path / "b" / "x_x4.png"]


def test_a_vqclip_pngs_job_goes_into_its_result_and_another_png_gives_none(upscaler, tmp_path):
    job = {"prompt": "a cat", "config": {"steps": 3}}
    ours = save_png(torch.full((1, 3, 8, 8), 0.5), tmp_path / "final.png", job)
    assert main(["upscale", str(ours), png(tmp_path / "other.png"), "--model", "x"]) == 0
    (_, first), (_, second) = upscaler
    assert first["metadata"] == read_png_json(ours) == job and first["source"] == "final.png"
    assert second["metadata"] is None and second["source"] == "other.png"
