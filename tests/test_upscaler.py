"""Upscaling: weights read without running code, spandrel's detection of the published layouts, tiles that agree with
one pass, presets fetched once and checked, and `vqclip upscale` / `output.upscale` end to end with one-line errors."""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

from tiny_upscaler import compact_state, rrdb_state, save_upscaler
from vqclip.cli import main
from vqclip.errors import UnsafeCheckpointError, VqclipError
from vqclip.files.images import read_metadata
from vqclip.models import upscalers as registry
from vqclip.models.integrity import CorruptFileError, Manifest, sha256_file
from vqclip.nets.upscaler import OVERLAP, load_upscaler, upscale, upscale_tiled


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def random_png(path: Path, w: int = 40, h: int = 30, seed: int = 0) -> Path:
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def compact(tmp_path_factory) -> Path:
    """A random SRVGGNetCompact x4 with 4 body convs: receptive field 6 input pixels from its centre."""
    return save_upscaler(tmp_path_factory.mktemp("up") / "compact_x4.pth", compact_state(num_conv=4), ema=True)


def test_bare_and_params_ema_files_are_the_same_network(tmp_path):
    state = compact_state(seed=3)
    bare = load_upscaler(save_upscaler(tmp_path / "bare.pth", state))
    ema = load_upscaler(save_upscaler(tmp_path / "ema.pth", state, ema=True))
    x = torch.rand(1, 3, 12, 10)
    assert bare.scale == ema.scale == 4 and "Compact" in bare.name
    assert torch.equal(bare(x), ema(x))
    # the network is the published SRVGGNetCompact: conv/PReLU body, pixel shuffle, plus the nearest-upsampled input
    h = x
    for i in range(0, 10, 2):
        h = F.conv2d(h, state[f"body.{i}.weight"], state[f"body.{i}.bias"], padding=1)
        h = F.prelu(h, state[f"body.{i + 1}.weight"])
    h = F.pixel_shuffle(F.conv2d(h, state["body.10.weight"], state["body.10.bias"], padding=1), 4)
    expected = (h + F.interpolate(x, scale_factor=4, mode="nearest")).clamp(0, 1)
    assert torch.allclose(bare(x), expected, atol=1e-5)


def test_a_safetensors_upscaler_loads_like_its_pth(tmp_path):
    from safetensors.torch import save_file

    state = compact_state(seed=4)
    save_file(state, tmp_path / "c.safetensors")
    x = torch.rand(1, 3, 8, 8)
    assert torch.equal(load_upscaler(tmp_path / "c.safetensors")(x),
                       load_upscaler(save_upscaler(tmp_path / "c.pth", state))(x))


@pytest.mark.parametrize("scale", [4, 2])
def test_realesrgan_rrdb_layouts_are_detected_with_their_scale(tmp_path, scale):
    up = load_upscaler(save_upscaler(tmp_path / f"rrdb_x{scale}.pth", rrdb_state(scale=scale), ema=True))
    assert up.scale == scale and up.name.startswith("ESRGAN")
    assert tuple(up(torch.rand(1, 3, 16, 12)).shape) == (1, 3, 16 * scale, 12 * scale)


def test_tiles_give_the_untiled_result_when_the_overlap_covers_the_receptive_field(compact):
    """Tolerance 1e-5 (float rounding): the Compact net sees 6 px (its 6 convs of 3x3) and each tile keeps only pixels
    >= overlap/4 = 8 px from an edge another tile covers, so no kept pixel saw a tile's padding. Tiles of 48 on a
    70x90 image: 2x3 tiles, the last row and column flush with the edge (uneven overlaps)."""
    up = load_upscaler(compact)
    x = torch.rand(1, 3, 70, 90, generator=torch.Generator().manual_seed(1))
    whole = upscale_tiled(up, x, tile=0)
    tiled = upscale_tiled(up, x, tile=48, overlap=32)
    assert tuple(tiled.shape) == (1, 3, 280, 360)
    assert (tiled - whole).abs().max() < 1e-5
    hard = upscale_tiled(up, x, tile=48, overlap=0)  # tiles butted together: their padded edges show as seams
    assert (hard - whole).abs().max() > 0.05


def test_a_deep_rrdb_agrees_closely_across_tiles(tmp_path):
    """RRDBNet (1 block: 17 convs at input resolution, 4 more above it) sees further than overlap/4, so pixels near
    a kept region's edge feel the tile padding through many layers, attenuated: the mean difference stays < 1e-4 and
    the largest < 0.01 (under 3/255, invisible in an 8-bit PNG); butted tiles differ by far more."""
    up = load_upscaler(save_upscaler(tmp_path / "rrdb.pth", rrdb_state(), ema=True))
    x = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(2))
    whole = upscale_tiled(up, x, tile=0)
    diff = (upscale_tiled(up, x, tile=48, overlap=32) - whole).abs()
    assert diff.mean() < 1e-4 and diff.max() < 0.01
    assert (upscale_tiled(up, x, tile=24, overlap=0) - whole).abs().max() > 0.1


def test_a_lower_scale_resizes_the_models_output_and_a_higher_one_is_refused(compact):
    up = load_upscaler(compact)
    x = torch.rand(1, 3, 20, 24)
    two = upscale(up, x, scale=2)
    assert tuple(two.shape) == (1, 3, 40, 48)
    # an antialiased downsample of the 4x output, close to its 2x2 box average
    assert (two - F.avg_pool2d(upscale(up, x), 2)).abs().mean() < 0.05
    with pytest.raises(VqclipError, match="makes 4x; use a scale from 1 to 4"):
        upscale(up, x, scale=8)


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def test_a_hostile_pickle_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"params_ema": compact_state(), "x": _RunsCode(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_upscaler(tmp_path / "evil.pth")
    assert not marker.exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated
def test_a_torchscript_pt_is_refused_not_compiled(tmp_path):
    """spandrel's own loader would `torch.jit.load` a .pt; vqclip never runs code from a weights file."""
    torch.jit.script(torch.nn.Conv2d(3, 48, 3)).save(str(tmp_path / "scripted.pt"))
    with pytest.raises(UnsafeCheckpointError, match="TorchScript"):
        load_upscaler(tmp_path / "scripted.pt")


def test_missing_spandrel_names_the_extra(compact, monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)  # any import of it now fails
    with pytest.raises(VqclipError, match=r"pip install 'vqclip\[upscale\]'"):
        load_upscaler(compact)


@pytest.mark.slow  # a fresh interpreter importing torch and the CLI
def test_the_core_never_imports_spandrel(fresh_process):
    """Not the package, the CLI and its parser, the pipeline, the API, nor a run (one fresh process, shared)."""
    assert fresh_process["code"] == 0
    assert "spandrel" not in fresh_process["parser"] and "spandrel" not in fresh_process["run"]


def test_the_presets_are_the_published_real_esrgan_files():
    presets = registry.load_upscalers_file()
    assert set(presets) == {"RealESRGAN_x4plus", "RealESRGAN_x2plus", "RealESRGAN_x4plus_anime_6B",
                            "realesr-general-x4v3"}
    for p in presets.values():
        release = "https://github.com/xinntao/Real-ESRGAN/releases/download/"
        assert p.file.urls[0].startswith(release) and p.file.urls[0].endswith("/" + p.file.filename)
        assert p.file.sha256 is None and p.file.approx_size  # nothing published to pin: recorded on first download
    assert presets["RealESRGAN_x2plus"].scale == 2 and registry.get_upscaler("realesrgan_X4PLUS").scale == 4


def test_a_preset_is_fetched_once_recorded_and_checked(tmp_path, server, monkeypatch):
    data = io.BytesIO()
    torch.save({"params_ema": compact_state()}, data)
    url = server.add("/tiny_x4.pth", data.getvalue())
    listing = {"version": 1, "upscalers": {"tiny_x4": {"description": "test", "scale": 4,
                                                       "file": {"filename": "tiny_x4.pth", "urls": [url]}}}}
    (tmp_path / "ups.yaml").write_text(yaml.safe_dump(listing))
    monkeypatch.setattr(registry, "BUILTIN_FILE", tmp_path / "ups.yaml")
    home = tmp_path / "home"
    path = registry.upscaler_file("tiny_x4", progress=False, home_dir=home)
    assert path == home / "upscalers" / "tiny_x4.pth" and load_upscaler(path).scale == 4
    entry = Manifest(home / "manifest.json").entry(path)
    assert entry["sha256"] == sha256_file(path) and entry["source"] == url
    assert registry.upscaler_file("tiny_x4", progress=False, home_dir=home) == path  # no second request
    assert server.ranges("/tiny_x4.pth") == [None]
    path.write_bytes(path.read_bytes()[:-1] + b"x")
    with pytest.raises(CorruptFileError, match="first download recorded"):
        registry.upscaler_file("tiny_x4", progress=False, home_dir=home)


def test_upscale_command_writes_the_result_with_the_metadata(tmp_path, compact, tiny_args):
    assert main(["generate", "a red circle", *tiny_args, "--steps", "2", "--save-every", "0", "--no-video",
                 "--out", str(tmp_path / "run")]) == 0
    final = tmp_path / "run" / "final.png"
    assert main(["upscale", str(final), str(random_png(tmp_path / "plain.png")), "--model", str(compact),
                 "--quiet"]) == 0
    big = tmp_path / "run" / "final_x4.png"
    assert pixels(big).shape == (128, 128, 3) and pixels(tmp_path / "plain_x4.png").shape == (120, 160, 3)
    meta, source = read_metadata(big), read_metadata(final)
    assert meta["config"] == source["config"] and meta["upscaled"]["scale"] == 4
    assert main(["upscale", str(final), "--model", str(compact), "--scale", "2", "--out", str(tmp_path / "o"),
                 "--quiet"]) == 0
    assert pixels(tmp_path / "o" / "final_x2.png").shape == (64, 64, 3)


def test_output_upscale_adds_final_xn_as_the_command_makes_it(tmp_path, compact, tiny_args):
    out = tmp_path / "run"
    assert main(["generate", "a red circle", *tiny_args, "--steps", "2", "--save-every", "0", "--no-video",
                 "--out", str(out), "--set", f"output.upscale.model={compact}", "--set", "output.upscale.tile=32"]) == 0
    assert pixels(out / "final.png").shape == (32, 32, 3)
    made = pixels(out / "final_x4.png")
    assert main(["upscale", str(out / "final.png"), "--model", str(compact), "--tile", "32", "--out",
                 str(tmp_path / "again"), "--quiet"]) == 0
    assert np.array_equal(made, pixels(tmp_path / "again" / "final_x4.png"))
    assert read_metadata(out / "final_x4.png")["config"] == read_metadata(out / "final.png")["config"]


def _bad_upscales(tmp_path: Path, compact: Path) -> dict:
    image = random_png(tmp_path / "img.png")
    (tmp_path / "notes.pth").write_text("not weights")
    torch.save({"encoder.conv_in.weight": torch.zeros(4, 3, 3, 3)}, tmp_path / "vqgan.pth")
    torch.save({"params_ema": compact_state(), "x": _RunsCode(str(tmp_path / "pwned"))}, tmp_path / "evil.pth")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    save_upscaler(tmp_path / "denoise_x1.pth", compact_state(scale=1))
    random_png(tmp_path / "done.png")
    random_png(tmp_path / "done_x4.png")
    return {
        "missing upscaler": ([str(image), "--model", str(tmp_path / "nope.pth")], "no such upscaler weights file"),
        "unknown preset": ([str(image), "--model", "RealESRGAN_x4plu"], "did you mean 'RealESRGAN_x4plus'"),
        "not weights": ([str(image), "--model", str(tmp_path / "notes.pth")], "not a PyTorch checkpoint"),
        "not an upscaler": ([str(image), "--model", str(tmp_path / "vqgan.pth")], "not an upscaler spandrel knows"),
        "same-size network": ([str(image), "--model", str(tmp_path / "denoise_x1.pth")], "not an RGB upscaler"),
        "wrong format": ([str(image), "--model", str(image)], "unknown upscaler weights format '.png'"),
        "hostile pickle": ([str(image), "--model", str(tmp_path / "evil.pth")], "refused"),
        "not an image": ([str(tmp_path / "broken.png"), "--model", str(compact)], "not a readable image"),
        "missing image": ([str(tmp_path / "gone.png"), "--model", str(compact)], "no such image file"),
        "scale it lacks": ([str(image), "--model", str(compact), "--scale", "8"], "use a scale from 1 to 4"),
        "tiny tile": ([str(image), "--model", str(compact), "--tile", "8"], "--tile: must be >= 32"),
        "would overwrite": ([str(tmp_path / "done.png"), "--model", str(compact)], "pass --force"),
    }


@pytest.mark.parametrize("case", ["missing upscaler", "unknown preset", "not weights", "not an upscaler",
                                  "same-size network", "wrong format",
                                  "hostile pickle", "not an image", "missing image", "scale it lacks", "tiny tile",
                                  "would overwrite"])
def test_bad_upscale_input_is_one_line_and_exit_2(tmp_path, compact, capsys, case):
    argv, expected = _bad_upscales(tmp_path, compact)[case]
    assert main(["upscale", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "img_x4.png").exists()


def test_missing_spandrel_is_one_line_exit_2(tmp_path, compact, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "spandrel", None)
    assert main(["upscale", str(random_png(tmp_path / "a.png")), "--model", str(compact)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'vqclip[upscale]'" in err[0]


@pytest.mark.parametrize("setting, expected", [
    ("output.upscale.model={missing}", "output.upscale.model: {missing}: no such upscaler weights file"),
    ("output.upscale.model=NoSuchUpscaler", "unknown upscaler 'NoSuchUpscaler'"),
    ("output.upscale.scale=0", "output.upscale.scale: must be >= 1"),
])
def test_a_bad_upscaler_fails_before_the_run(tmp_path, tiny_args, capsys, setting, expected):
    missing = tmp_path / "gone.pth"
    out = tmp_path / "run"
    assert main(["generate", "a red circle", *tiny_args, "--steps", "2", "--out", str(out),
                 "--set", setting.format(missing=missing)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expected.format(missing=missing) in err[0], err
    assert not out.exists()


def test_overlap_default_keeps_more_margin_than_real_esrgan():
    """Real-ESRGAN's tiler crops 10 px of padding per tile side; the default blend keeps >= OVERLAP/4 px away."""
    assert OVERLAP // 4 >= 10


def test_a_stopped_run_is_not_upscaled_and_a_finished_one_reports_its_file(tmp_path, compact, tiny_job):
    import threading

    from vqclip.config import merge_layers
    from vqclip.runs.pipeline import run_job

    def job(name):
        output = {**tiny_job["output"], "dir": str(tmp_path / name), "video": False, "save_every": 0,
                  "upscale": {"model": str(compact), "tile": 32}}
        return merge_layers([("tiny", tiny_job), ("test", {"prompt": "a red circle", "steps": 3, "output": output})])

    stop = threading.Event()
    stop.set()  # as Ctrl-C before the first step ends
    stopped = run_job(job("stopped"), stop=stop)
    assert stopped.interrupted and stopped.final.is_file() and stopped.upscaled is None
    assert not list((tmp_path / "stopped").glob("final_x*.png"))
    done = run_job(job("done"))
    assert done.upscaled == tmp_path / "done" / "final_x4.png" and pixels(done.upscaled).shape == (128, 128, 3)
