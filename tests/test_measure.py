"""Measurement apart from CLIP's other jobs (vqclip.measure), and the GPU check runnable from an installed package:
the textbook loop it compares vqclip with is part of the package, not a script found by path."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "vqclip"

CODE = """
import sys, torch
import vqclip.measure.gpucheck as g
assert not any(p.endswith("benchmarks") or p == "{root}" for p in sys.path), sys.path
step = g.textbook_step(g.textbook, "tiny", 32, 2, torch.device("cpu"))
losses = [step(), step()]
print(g.__file__, g.textbook.__file__, losses[0] > 0, losses[1] < losses[0])
"""


@pytest.mark.slow
def test_the_gpu_checks_textbook_loop_runs_from_a_copy_of_the_package_alone(tmp_path):
    """Only the package is copied (no benchmarks/ beside it, the checkout not on sys.path): the check imports its
    textbook loop and two of its steps run (the loss goes down)."""
    shutil.copytree(PACKAGE, tmp_path / "vqclip", ignore=shutil.ignore_patterns("__pycache__", "weights", "train"))
    root = str(PACKAGE.parent)
    done = subprocess.run([sys.executable, "-c", CODE.format(root=root)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={"PYTHONPATH": str(tmp_path), "PATH": "", "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    check, textbook, positive, down = done.stdout.split()
    assert Path(check).is_relative_to(tmp_path) and Path(textbook).is_relative_to(tmp_path)
    assert not (tmp_path / "benchmarks").exists() and (positive, down) == ("True", "True")


def test_the_clip_tasks_and_the_measurement_live_apart():
    tools = {p.stem for p in (PACKAGE / "tools").glob("*.py")}
    measure = {p.stem for p in (PACKAGE / "measure").glob("*.py")}
    assert {"bench", "gpucheck", "gpucorrect", "gpusuite", "gpuargs", "textbook"} <= measure
    assert not tools & {"bench", "gpucheck", "gpucorrect", "gpusuite", "gpuargs", "textbook"}
    assert {"clipjobs", "clipping", "search"} <= tools


def test_the_textbook_cutouts_add_noise_of_up_to_their_factor_per_cutout():
    """The notebook's noise: per cutout a factor drawn from U(0, noise_fac), times standard normal noise; the same
    draws without it give the noiseless cutouts."""
    import torch

    from vqclip.measure.textbook import MakeCutouts

    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    got = []
    for fac in (0.1, 0.0):
        torch.manual_seed(3)
        got.append(MakeCutouts(8, 32, noise_fac=fac)(image))
    spread = (got[0] - got[1]).flatten(1).std(dim=1)  # [32]: each cutout's noise level
    assert spread.max() < 0.1 * 1.2 and spread.mean() > 0.02  # U(0, 0.1) has mean 0.05
