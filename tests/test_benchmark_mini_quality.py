"""The statistics of `benchmarks/mini_quality.py`: interval on a share, paired sign test, reading earlier runs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "mini_quality.py"
_spec = importlib.util.spec_from_file_location("mini_quality", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_wilson_interval_matches_textbook_values_and_holds_the_share():
    assert bench.wilson(24, 48) == pytest.approx((0.3639, 0.6361), abs=1e-4)
    assert bench.wilson(0, 10) == pytest.approx((0.0, 1.96 ** 2 / (10 + 1.96 ** 2)))  # upper bound z^2/(n+z^2)
    assert bench.wilson(10, 10)[1] == 1.0
    for k in range(21):
        lo, hi = bench.wilson(k, 20)
        assert 0.0 <= lo <= k / 20 <= hi <= 1.0
    assert bench.wilson(24, 48)[1] - bench.wilson(24, 48)[0] > bench.wilson(96, 192)[1] - bench.wilson(96, 192)[0]


def test_sign_test_by_hand():
    assert bench.sign_test(5, 0) == pytest.approx(2 / 2 ** 5)  # all five discordant pairs one way
    assert bench.sign_test(0, 5) == bench.sign_test(5, 0)
    assert bench.sign_test(3, 3) == 1.0 and bench.sign_test(0, 0) == 1.0
    assert bench.sign_test(9, 1) == pytest.approx(2 * (1 + 10) / 2 ** 10)


def test_compare_pairs_images_by_prompt_and_seed():
    rows = [{"prompt": "a", "seed": 0, "shape": True}, {"prompt": "a", "seed": 1, "shape": False},
            {"prompt": "b", "seed": 0, "shape": True}, {"prompt": "c", "seed": 0, "shape": True}]
    base = [{"prompt": "a", "seed": 0, "shape": False}, {"prompt": "a", "seed": 1, "shape": True},
            {"prompt": "b", "seed": 0, "shape": False}, {"prompt": "z", "seed": 0, "shape": False}]
    c = bench.compare(rows, base)
    assert (c["pairs"], c["wins"], c["losses"]) == (3, 2, 1) and c["p"] == bench.sign_test(2, 1)


def test_an_unreadable_compare_file_stops_before_the_run(tmp_path):
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"rows": [{"prompt": "a"}]}))
    with pytest.raises(SystemExit, match="not a --json file of this benchmark"):
        bench.read_rows(bad)
    with pytest.raises(SystemExit, match="not a --json file"):
        bench.main(["--compare", str(tmp_path / "missing.json")])
    good = tmp_path / "g.json"
    good.write_text(json.dumps({"rows": [{"prompt": "a", "seed": 0, "shape": True}]}))
    assert bench.read_rows(good) == [{"prompt": "a", "seed": 0, "shape": True}]


def test_summary_counts_what_was_judged_right():
    rows = [{"color": True, "background": True, "shape": False, "seconds": 2.0},
            {"color": True, "background": False, "shape": True, "seconds": 4.0},
            {"color": False, "background": True, "shape": True, "seconds": 6.0}]
    s = bench.summary(rows)
    assert s["right"] == {"color": 2, "background": 2, "shape": 2}
    assert s["shape"] == pytest.approx(2 / 3) and s["all"] == 0.0 and s["seconds"] == pytest.approx(4.0)
    assert bench.summary([])["right"]["shape"] == 0


@pytest.mark.parametrize("argv", [["--limit", "0"], ["--stride", "0"]])
def test_an_empty_prompt_selection_is_refused(argv):
    with pytest.raises(SystemExit, match="at least 1"):
        bench.main(argv)
