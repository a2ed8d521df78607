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


def test_an_edit_with_a_region_prompt_on_two_devices_is_one_scoring_half_the_cutouts(steered_edit_on_two_devices):
    """A masked edit (VQGAN) whose prompt pulls in a region: the mask, the composite and the coverage weights are the
    same on each device, so two gloo processes give the one-device image and loss curve, and keep the outside (the
    run, steered by its job's entries, is shared with tests/test_steer_devices.py: conftest.py)."""
    run = steered_edit_on_two_devices
    two, halves = run.two, run.halves
    assert len(two.result.losses) == 3 and two.result.losses == halves.result.losses
    assert np.array_equal(pixels(two.final), pixels(halves.final))
    far = np.ones((32, 32), bool)
    far[5:27, 1:23] = False  # the mask widened by its feather and a pixel
    assert np.array_equal(pixels(two.final)[far], run.photo[far])
