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
