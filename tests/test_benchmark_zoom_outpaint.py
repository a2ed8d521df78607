"""`benchmarks/zoom_outpaint.py`: the border it judges is the band a zoom-out move uncovers, computed here from the
move's rule (pixel centre i + 0.5 about the centre, divided by the zoom, lands past the outer pixel centres)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "zoom_outpaint.py"
_spec = importlib.util.spec_from_file_location("zoom_outpaint_bench", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.parametrize("zoom", [0.85, 0.7, 0.6])
def test_the_judged_border_is_what_a_zoom_out_move_uncovers(zoom):
    size = 64
    source = (np.arange(size) + 0.5 - size / 2) / zoom + size / 2 - 0.5  # the index each pixel samples
    out = (source < 0) | (source > size - 1)
    assert np.array_equal(bench.border(size, zoom), out[:, None] | out[None, :])
