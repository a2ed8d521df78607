"""What a run records for its report: losses.csv (the loss of each step per term of the objective, and their sum)
and run.json (its speed: it/s, peak memory, device), both in the run folder.

A step costs one list append (the terms stay device tensors); they are read from the device in one transfer when
the file is written: at each saved frame or state, and at the end, appended (a kill leaves every row up to the last
save; a line it cut short is not read; an fsync with each saved state and at the end). A resume keeps the rows
before its saved step and writes the rest again, so no step is there twice.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import time
from pathlib import Path
from typing import Optional

import torch

from ..errors import write_error
from ..files.atomic import write_text
from ..optim.loop import StepEvent, loss_numbers
from ..report.read import LOSSES_FILE, SPEED_FILE, STEP, TOTAL, read_losses

log = logging.getLogger("vqclip")

MAX_PENDING = 1000  # steps held on the device at most (a run that saves no frames and no state): then written


class LossLog:
    """The callback that records each step's loss terms and the run's pace, and writes losses.csv (`flush`) with
    each saved frame (every `frames` steps, step 0 included), each saved state (after every `states` updates) and at
    the end. `start`: the step a resume goes on from (rows from it on are dropped and made again)."""

    trials = True  # best-of-n's trial steps count for the speed; only the run's own steps are recorded

    def __init__(self, folder: Path, frames: int = 0, states: int = 0, start: int = 0):
        self.path, self.frames, self.states = Path(folder) / LOSSES_FILE, frames, states
        self.terms: list[str] = []
        self.rows: list[tuple[int, dict]] = []  # (step, {term: number}) already read from the device
        self.pending: list[tuple[int, dict]] = []  # (step, {term: 0-d device tensor or float}) not yet read
        self.written: Optional[list[str]] = None  # the columns of the file on disk, once this log wrote it whole
        self.events = 0
        self.began = time.perf_counter()
        if start > 0 and self.path.is_file():
            terms, rows = read_losses(self.path)
            self.terms = list(terms)
            self.rows = [(int(r["step"]), {k: v for k, v in r.items() if k in terms}) for r in rows
                         if r["step"] < start]

    def __call__(self, event: StepEvent) -> None:
        self.events += 1
        if event.trial or event.frame is not None:  # a trial of best-of-n, a restyle's frame: not the run's curve
            return
        self.pending.append((event.step, event.loss_terms))
        at_frame = self.frames > 0 and event.step % self.frames == 0
        at_state = self.states > 0 and (event.step + 1) % self.states == 0
        if at_frame or at_state or len(self.pending) >= MAX_PENDING:
            self.flush(sync=at_state)

    def flush(self, sync: bool = True) -> Optional[Path]:
        """Read the pending steps from the device (one transfer) and write them to losses.csv: appended to the rows
        there (one write), or the file rewritten whole, atomically, at its first write, when a term appears (a new
        column) and at a resume's first write (the rows past its saved step dropped). `sync`: fsync it too (with
        each saved state and at the end: a system crash then loses no row a resume needs; a killed process loses
        nothing written either way, and a save without the fsync costs a frame's save a few ms less)."""
        new: list[tuple[int, dict]] = []
        if self.pending:
            names = [k for _, terms in self.pending for k in terms]
            values = iter(numbers([v for _, terms in self.pending for v in terms.values()]))
            new = [(step, {k: next(values) for k in terms}) for step, terms in self.pending]
            self.rows += new
            self.terms += [k for k in dict.fromkeys(names) if k not in self.terms]
            self.pending = []
        if not self.rows:
            return None
        if self.written != self.terms:
            write_text(self.path, self._text([[STEP, TOTAL, *self.terms]], self.rows), fsync=sync)
            self.written = list(self.terms)
        elif new:
            try:
                with open(self.path, "a", encoding="utf-8", newline="") as f:
                    f.write(self._text([], new))
                    if sync:
                        f.flush()
                        os.fsync(f.fileno())
            except OSError as exc:
                raise write_error(self.path, exc) from None
        return self.path

    def _text(self, head: list[list[str]], rows: list[tuple[int, dict]]) -> str:
        """CSV lines: `head`, then a line per row (step, total, each term or empty)."""
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerows(head)
        for step, terms in rows:
            writer.writerow([step, repr(sum(terms.values())), *(repr(terms[k]) if k in terms else "" for k in
                                                                 self.terms)])
        return out.getvalue()

    def speed(self, device: torch.device, first: int, last: int) -> dict:
        """This process's part of the run: steps `first` to `last`, seconds, it/s (every step it ran, best-of-n's
        trials included), the device and its peak memory."""
        seconds = time.perf_counter() - self.began
        peak, kind = peak_memory(device)
        return {"from_step": first, "to_step": last, "steps": self.events, "seconds": round(seconds, 3),
                "it_per_s": round(self.events / seconds, 3) if seconds > 0 else None, "device": device_name(device),
                "peak_memory_mb": peak, "memory": kind}


def numbers(values: list) -> list[float]:
    """0-d tensors (and/or floats) as floats, read from the device in one transfer: one stack when all are 0-d
    tensors (5x faster than `loss_numbers`' reshape of each), else `loss_numbers`."""
    if values and all(torch.is_tensor(v) and v.dim() == 0 for v in values):
        return torch.stack(values).float().tolist()
    return loss_numbers(values)


def device_name(device: torch.device) -> str:
    """The device as a user knows it: cuda:0 (NVIDIA H100 80GB HBM3), cpu, mps."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def peak_memory(device: torch.device) -> tuple[Optional[float], str]:
    """(MB, what was measured): on CUDA the most memory torch held allocated on the device since the run began
    (`start_memory` resets it), elsewhere the process's peak resident memory (the OS's count, since it started)."""
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1), "cuda max allocated"
    try:
        import resource  # here: not on Windows
    except ImportError:
        return None, "not measured"
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "process peak RSS"


def start_memory(device: torch.device) -> None:
    """Count the device's peak memory from now (CUDA; the CPU's is the process's own)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def write_speed(folder: Path, part: dict) -> Path:
    """Add this process's part (`LossLog.speed`) to run.json's "parts" (a resume adds one), atomically."""
    path = Path(folder) / SPEED_FILE
    parts = []
    if path.is_file():
        try:
            parts = [p for p in json.loads(path.read_text(encoding="utf-8")).get("parts", []) if isinstance(p, dict)
                     and isinstance(p.get("from_step"), int) and p["from_step"] < part["from_step"]]
        except (ValueError, AttributeError, OSError):
            log.info("%s: not readable; written again with this run's part only", path)
    return write_text(path, json.dumps({"parts": [*parts, part]}, indent=1) + "\n")
