"""The GPU check (benchmarks/gpu_check.py, `vqclip bench --suite gpu`): its CPU quick mode runs every section and
writes numbers or an explicit "skipped: reason" for each; a budget stops it cleanly; the bounded size search finds
the largest size that fits; on CUDA the full check runs (gpu marker)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vqclip.cli import main
from vqclip.measure import gpucheck
from vqclip.measure.gpucheck import Budget, largest_size
from vqclip.measure.gpusuite import SECTIONS, run_check, table

ROOT = Path(__file__).resolve().parent.parent


def assert_complete(results: dict) -> None:
    """Every section is there, with results (a dict or a list of rows) or a 'skipped: reason' line."""
    for name in SECTIONS:
        value = results[name]
        assert isinstance(value, (dict, list)) or str(value).startswith("skipped: "), (name, value)


@pytest.mark.slow
def test_quick_check_on_cpu_measures_and_checks_everything(tmp_path):
    out = tmp_path / "results_gpu.json"
    results = run_check("cpu", quick=True, budget=600, out=out, models="tiny", echo=lambda line: None)
    assert json.loads(out.read_text()) == json.loads(json.dumps(results, default=str))
    assert_complete(results)
    assert results["bf16_peak"]["tflop_s"] > 0
    rows = {r["impl"]: r for r in results["speed"]}
    assert set(rows) == set(gpucheck.IMPLS)
    for impl in ("textbook", "fp32", "bf16"):
        assert rows[impl]["it_s"] > 0 and rows[impl]["peak_mem_gib"] > 0 and rows[impl]["gflop_per_step"] > 0
    assert rows["fp32"]["options"]["precision"] == "fp32" and rows["bf16"]["options"]["precision"] == "bf16"
    assert rows["bf16+compile"]["skipped"].startswith("skipped: --quick")
    assert results["largest_size"]["largest"] == 64  # the quick search's bound: a CPU does not run out at 64²
    bf16 = results["bf16_vs_fp32"]
    assert len(bf16["loss_fp32"]) == len(bf16["loss_bf16"]) == bf16["steps"]
    assert 0 < bf16["mean_abs_diff"] < 0.1  # bf16 differs, a little
    assert results["same_seed_twice"]["identical"] and results["same_seed_twice"]["same_loss_curve"]
    assert results["resume_after_kill"]["identical"], results["resume_after_kill"]
    assert results["devices"].startswith("skipped: ")
    text = table(results)
    assert "| 32² | 4 | textbook |" in text and "same_seed_twice" in text


def test_budget_stops_cleanly_and_says_what_was_skipped(tmp_path):
    out = tmp_path / "r.json"
    results = run_check("cpu", quick=True, budget=0.5, out=out, models="tiny", echo=lambda line: None)
    saved = json.loads(out.read_text())
    assert_complete(saved)
    assert isinstance(saved["device"], dict) and saved["device"]["device"] == "cpu"
    assert saved["resume_after_kill"] == "skipped: budget spent" and results["elapsed_s"] < 30
    assert saved["devices"].startswith("skipped: 0 GPU(s)")  # instant sections still report


class FakeModels:
    """Models whose VQGAN has the factor the search rounds to."""

    class vqgan:  # noqa: N801
        factor = 16


def test_largest_size_doubles_then_bisects_to_the_limit(monkeypatch):
    limit, tried = 1100, []

    def fits(models, size, cutn, device):
        tried.append(size)
        return size <= limit

    monkeypatch.setattr(gpucheck, "fits", fits)
    cfg = {"largest_cutn": 32, "largest_start": 256, "largest_max": 4096, "row_s": 0}
    found = largest_size(FakeModels, cfg, torch.device("cpu"), Budget(60))
    assert found["largest"] == 1088 and found["largest"] % 16 == 0  # the largest multiple of 16 <= 1100
    assert tried[:4] == [256, 512, 1024, 2048] and "1104² ran out of memory" == found["note"]
    assert all(s % 16 == 0 for s in tried) and len(tried) <= 12
    capped = largest_size(FakeModels, {**cfg, "largest_max": 512}, torch.device("cpu"), Budget(60))
    assert capped["largest"] == 512 and "at least" in capped["note"]


def test_fits_catches_out_of_memory(monkeypatch):
    def boom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(gpucheck, "vqclip_run", boom)
    assert gpucheck.fits(None, 4096, 32, torch.device("cpu")) is False


def test_cli_suite_gpu_and_script_share_the_check(tmp_path, monkeypatch):
    import vqclip.measure.gpusuite as suite

    seen = []
    monkeypatch.setattr(suite, "run_check", lambda *a, **k: seen.append(a) or {})
    assert main(["bench", "--suite", "gpu", "--device", "cpu", "--quick", "--budget", "5",
                 "--out", str(tmp_path / "x.json")]) == 0
    assert main(["bench", "--suite", "gpu", "--budget", "9", "--models", "imagenet", "--real-weights"]) == 0
    assert seen == [("cpu", True, 5.0, tmp_path / "x.json", "tiny", False),  # --quick: tiny models unless told
                    ("auto", False, 9.0, suite.DEFAULT_OUT, "imagenet", True)]
    assert main(["bench", "--suite", "gpu", "--budget", "0"]) == 2
    script = str(ROOT / "benchmarks" / "gpu_check.py")  # run as `python benchmarks/gpu_check.py --help` runs it
    code = (f"import runpy, sys\nsys.argv = [{script!r}, '--help']\ntry:\n    runpy.run_path(sys.argv[0], "
            "run_name='__main__')\nexcept SystemExit as e:\n    assert not e.code\nprint('torch' in sys.modules)")
    help_text = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                               env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert help_text.returncode == 0 and "--budget" in help_text.stdout and "--quick" in help_text.stdout
    assert help_text.stdout.split()[-1] == "False"  # the options are shown before torch loads


@pytest.mark.gpu
@pytest.mark.slow
def test_full_check_on_cuda(tmp_path):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device here: run `python benchmarks/gpu_check.py` on a GPU machine")
    results = run_check("cuda", budget=480, out=tmp_path / "results_gpu.json")
    assert_complete(results)
    for name in ("same_seed_twice", "resume_after_kill"):  # bit-exact unless torch flagged a kernel it cannot repeat
        check = results[name]
        assert check["identical"] or check["nondeterministic_ops"], check
    assert results["bf16_vs_fp32"]["mean_abs_diff"] < 0.05
    assert all(any(r["impl"] == impl and "it_s" in r for r in results["speed"]) for impl in ("textbook", "bf16"))
