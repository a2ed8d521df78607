"""The correctness sections of the GPU check: bf16 against fp32 after N steps, the same seed twice in deterministic
mode (with the ops torch reports as non-deterministic there), and `vqclip resume` after a SIGKILL against the
uninterrupted run (the embedded mini preset, in a subprocess)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..nets.device import seeded
from ..nets.load import Models
from ..runs.jobs import build_config
from ..runs.pipeline import run_job
from ..runs.resume import resume_run
from .gpucheck import Budget, free_memory, vqclip_run

# a run that hangs at a step (after state.pt of the step before was written) until it is killed; it says so through a
# marker file (argv: job JSON, marker path, step); also the resume tests' run to kill
KILLED_RUN = """
import json, sys, time
from pathlib import Path
import torch
if DETERMINISTIC:
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
job, marker, hang_at = json.loads(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
def hang(event):
    if event.step == hang_at:
        marker.write_text(str(event.step))
        time.sleep(600)
run_job(build_config(job), extra_callbacks=[hang])
"""


def killed_run_script(deterministic: bool) -> str:
    """`python -c` source of the run to kill, in torch's deterministic mode or not."""
    return f"DETERMINISTIC = {deterministic}\n" + KILLED_RUN


@contextlib.contextmanager
def deterministic(device: torch.device) -> Iterator[list[str]]:
    """torch's deterministic mode (warn_only: an op without a deterministic kernel warns and runs anyway) and cuDNN
    without autotuning; yields the list the non-deterministic ops' warnings are collected into. Restores the modes.
    cuBLAS also needs CUBLAS_WORKSPACE_CONFIG set before its first use (`run_check` sets it at its start)."""
    before = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),
              torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    seen: list[str] = []
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield seen
        for w in caught:
            text = str(w.message).split("\n")[0][:200]
            if "deterministic" in text and text not in seen:
                seen.append(text)
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[2], before[3]


def run_curve(models: Models, size: int, cutn: int, precision: str, steps: int, device: torch.device,
              seed: int = 0) -> tuple[torch.Tensor, list[float]]:
    """The image [1,3,H,W] (CPU, fp32) after `steps` updates of a still run and its loss curve."""
    with seeded(device, seed):
        state, objective, step = vqclip_run(models, size, cutn, precision, device, seed=seed)
        curve = [step().loss for _ in range(steps)]
        with torch.no_grad():
            image = objective.decode(state.z).float().cpu()
    return image, curve


def bf16_vs_fp32(models: Models, size: int, cutn: int, steps: int, device: torch.device) -> dict:
    """Mean and max |Δ| per pixel (in [0,1]) between the bf16 and fp32 images after `steps` updates from the same
    seed, and both loss curves."""
    a, curve32 = run_curve(models, size, cutn, "fp32", steps, device)
    b, curve16 = run_curve(models, size, cutn, "bf16", steps, device)
    free_memory(device)
    diff = (a - b).abs()
    return {"size": size, "cutn": cutn, "steps": steps, "mean_abs_diff": round(float(diff.mean()), 5),
            "max_abs_diff": round(float(diff.max()), 5),
            "final_loss_rel_diff": round(abs(curve16[-1] - curve32[-1]) / max(abs(curve32[-1]), 1e-12), 5),
            "loss_fp32": [round(x, 5) for x in curve32], "loss_bf16": [round(x, 5) for x in curve16]}


def same_seed_twice(models: Models, size: int, cutn: int, steps: int, device: torch.device) -> dict:
    """Two runs from one seed in deterministic mode (fp32): identical images? and the ops torch flagged."""
    with deterministic(device) as flagged:
        a, curve_a = run_curve(models, size, cutn, "fp32", steps, device, seed=7)
        b, curve_b = run_curve(models, size, cutn, "fp32", steps, device, seed=7)
    free_memory(device)
    return {"size": size, "cutn": cutn, "steps": steps, "identical": bool(torch.equal(a, b)),
            "max_abs_diff": float((a - b).abs().max()), "same_loss_curve": curve_a == curve_b,
            "nondeterministic_ops": flagged}


def pixels(path: Path) -> np.ndarray:
    """An image file's RGB pixels."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def resume_after_kill(device: torch.device, steps: int, budget: Budget) -> dict:
    """The mini preset run whole, then run in a subprocess killed (SIGKILL) mid-run after its state.pt was written,
    then `vqclip resume`d: the same final image bit for bit? (deterministic mode in all three)."""
    every = max(1, steps // 3)
    hang_at = 2 * every + 1
    with tempfile.TemporaryDirectory(prefix="vqclip-gpucheck-") as tmp:
        def job(name: str) -> dict:
            return {"model": "mini", "prompt": "a red circle", "steps": steps, "seed": 11, "state_every": every,
                    "device": str(device), "cutouts": {"n": 8}, "candidates": {"n": 1},
                    "output": {"dir": str(Path(tmp) / name), "progress": False}}

        marker = Path(tmp) / "hanging"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                                             os.environ.get("PYTHONPATH", "")])}
        # started first: it loads while the whole run runs here, and it waits at its step until it is killed; its
        # stderr goes to a file (a pipe nobody reads while the whole run runs could fill and hold it up)
        errors = (Path(tmp) / "killed.err").open("wb")
        proc = subprocess.Popen([sys.executable, "-c", killed_run_script(True), json.dumps(job("killed")), str(marker),
                                 str(hang_at)], env=env, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            with deterministic(device) as flagged:
                whole = run_job(build_config(job("whole")))
            while not marker.exists():
                if proc.poll() is not None:
                    errors.flush()
                    tail = ((Path(tmp) / "killed.err").read_text(errors="replace").strip().splitlines()[-1:]
                            or [f"exit code {proc.returncode}"])
                    return {"skipped": f"skipped: the run to kill ended before step {hang_at}: {tail[0][:300]}"}
                if not budget.allows(5):
                    return {"skipped": "skipped: budget spent before the run to kill reached its step"}
                time.sleep(0.05)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            errors.close()
        killed = Path(tmp) / "killed"
        with deterministic(device):
            resumed = resume_run(killed)
        a, b = pixels(whole.final), pixels(resumed.final)
        return {"model": "mini", "steps": steps, "killed_at_step": hang_at, "state_every": every,
                "identical": bool(np.array_equal(a, b)),
                "max_abs_diff_8bit": int(np.abs(a.astype(int) - b.astype(int)).max()), "nondeterministic_ops": flagged}
