"""`benchmarks/same_pixels.py`: its digests are sha256 of the files and of the decoded pixels, and its comparison
says which job's images changed."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

from PIL import Image

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "same_pixels.py"
_spec = importlib.util.spec_from_file_location("same_pixels", _PATH)
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_one_tiny_job_records_sha256_of_each_png_file_and_of_its_pixels(tmp_path):
    out = tmp_path / "d.json"
    keep = tmp_path / "runs"
    assert bench.main(["--only", "tiny-still", "--no-mini", "--json", str(out), "--out", str(keep)]) == 0
    digests = json.loads(out.read_text())
    assert list(digests) == ["tiny-still"]
    run = keep / "tiny-still"
    pngs = sorted(str(p.relative_to(run)) for p in run.rglob("*.png"))
    assert "final.png" in pngs and len(pngs) >= 3 and sorted(digests["tiny-still"]) == pngs  # frames too
    for name, d in digests["tiny-still"].items():
        assert d["file"] == hashlib.sha256((run / name).read_bytes()).hexdigest()
        image = Image.open(run / name).convert("RGB")
        assert d["pixels"] == hashlib.sha256(f"{image.size}".encode() + image.tobytes()).hexdigest()


def test_compare_names_the_images_whose_pixels_differ_and_ignores_the_file_bytes():
    before = {"a": {"final.png": {"file": "1", "pixels": "p"}, "frames/0.png": {"file": "2", "pixels": "q"}},
              "b": {"final.png": {"file": "3", "pixels": "r"}}, "c": {"final.png": {"file": "4", "pixels": "s"}}}
    now = {"a": {"final.png": {"file": "9", "pixels": "p"}, "frames/0.png": {"file": "2", "pixels": "q"}},
           "b": {"final.png": {"file": "3", "pixels": "x"}}, "d": {"final.png": {"file": "4", "pixels": "s"}}}
    v = bench.compare(now, before)
    assert v["a"] == "equal" and v["b"] == "different: final.png"
    assert v["c"] == "missing now" and v["d"] == "missing before"
    now["a"].pop("frames/0.png")
    assert bench.compare(now, before)["a"] == "different: frames/0.png"
