"""The drawers that are not VQGAN across devices (`devices: [cpu, cpu]`): two gloo processes give, bit for bit, the
image and loss curve of one device scoring the cutouts half at a time, as for VQGAN (tests/test_devices.py)."""

from __future__ import annotations

import numpy as np
import pytest

from test_batch import pixels
from test_devices import _run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("drawer", ["pixel", "fft"])
def test_two_devices_are_one_scoring_half_the_cutouts_at_a_time(tiny_job, tmp_path, drawer):
    half = tiny_job["cutouts"]["n"] // 2
    job = {k: v for k, v in tiny_job.items() if k != "vqgan"}  # no VQGAN named: the drawer needs none
    draw = {"name": drawer, "pixel_size": 4}
    two = _run(job, tmp_path / "two", ["cpu", "cpu"], 4, drawer=draw)
    halves = _run(job, tmp_path / "halves", [], 4, drawer=draw, micro_batch=half)
    assert len(two.result.losses) == 4 and two.result.losses == halves.result.losses
    assert np.array_equal(pixels(two.final), pixels(halves.final))


def test_an_edit_with_a_region_prompt_on_two_devices_is_one_scoring_half_the_cutouts(tiny_job, tmp_path):
    """A masked edit (VQGAN) whose prompt pulls in a region: the mask, the composite and the coverage weights are the
    same on each device, so two gloo processes give the one-device image and loss curve, and keep the outside."""
    from PIL import Image

    photo = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 4:20] = 255
    Image.fromarray(photo).save(tmp_path / "photo.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    edit = {"prompt": "a red circle:1@left|a blue square:1@right",
            "init": {"image": str(tmp_path / "photo.png"), "mask": str(tmp_path / "mask.png"), "mask_feather": 2}}
    half = tiny_job["cutouts"]["n"] // 2
    two = _run(tiny_job, tmp_path / "two", ["cpu", "cpu"], 3, **edit)
    halves = _run(tiny_job, tmp_path / "halves", [], 3, micro_batch=half, **edit)
    assert len(two.result.losses) == 3 and two.result.losses == halves.result.losses
    assert np.array_equal(pixels(two.final), pixels(halves.final))
    far = np.ones((32, 32), bool)
    far[5:27, 1:23] = False  # the mask widened by its feather and a pixel
    assert np.array_equal(pixels(two.final)[far], photo[far])
