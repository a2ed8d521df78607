"""The upscale step of a run: the upscaler made ready (and its scale checked, both ends) before anything long runs,
and the image written beside its source as `<stem>_xN.png` with the source's metadata and a record of what made it."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tiny_upscaler import compact_state, save_upscaler
from vqclip.errors import VqclipError
from vqclip.files.images import load_image, read_metadata
from vqclip.nets.upscaler import upscale
from vqclip.runs.upscale import prepare_upscaler, upscaled_name, write_upscaled


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return save_upscaler(tmp_path_factory.mktemp("up") / "compact_x4.pth", compact_state(num_conv=1), ema=True)


@pytest.mark.parametrize("scale", [None, 1, 2, 4])
def test_a_scale_from_1_to_the_models_own_is_taken(weights, scale):
    assert prepare_upscaler(str(weights), scale).scale == 4


@pytest.mark.parametrize("scale", [0, 5, 8])
def test_a_scale_outside_1_to_the_models_own_is_refused_before_the_run(weights, scale):
    with pytest.raises(VqclipError, match=f"upscale scale {scale}: .* is a 4x .*use a scale from 1 to 4"):
        prepare_upscaler(str(weights), scale)


def test_the_upscaled_file_is_beside_its_source_named_by_the_scale():
    assert upscaled_name(Path("runs/a/final.png"), 4) == Path("runs/a/final_x4.png")
    assert upscaled_name(Path("x.y.png"), 2) == Path("x.y_x2.png")


def test_the_written_image_is_the_upscalers_with_the_sources_record(weights, tmp_path):
    up = prepare_upscaler(str(weights), None)
    image = torch.rand(1, 3, 12, 16, generator=torch.Generator().manual_seed(0))
    meta = {"prompt": "a red circle", "seed": 3, "config": {"steps": 4}}
    path = write_upscaled(up, image, tmp_path / "final_x2.png", scale=2, tile=0, metadata=meta, source="final.png")
    out = load_image(path)
    assert out.shape == (1, 3, 24, 32)
    assert (out - upscale(up, image, 2, 0)).abs().max() <= 0.5 / 255 + 1e-6  # the same pixels, to 8 bits
    assert (out - F.interpolate(image, scale_factor=2)).abs().mean() > 0.01  # not a plain resize of the input
    assert read_metadata(path) == {**meta, "upscaled": {"from": "final.png", "model": up.name, "scale": 2,
                                                        "tile": 0}}
    own = write_upscaled(up, image, tmp_path / "plain.png")
    assert load_image(own).shape == (1, 3, 48, 64)
