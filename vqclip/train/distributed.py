"""Data-parallel training over several processes (`--devices cpu,cpu` with gloo, `cuda:0,cuda:1` with nccl, or
torchrun): one process per device, each with its share of the global batch; open_clip's ClipLoss gathers the features
of all processes (with grad for the local part) and the gradients are averaged, so the step is the one-process step
on the whole batch."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import pickle
import warnings
from dataclasses import dataclass
from logging.handlers import QueueHandler
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from vqclip.errors import VqclipError

LOGGER = "vqclip"  # the logger whose records the spawned processes send to the parent's handlers
RELAY_EVERY = 0.1  # seconds between the parent's looks for the processes' log records (progress lines arrive live)


@dataclass(frozen=True)
class Group:
    """Where this process stands: its rank among `size` processes and its device."""

    rank: int = 0
    size: int = 1
    device: str = "cpu"

    @property
    def main(self) -> bool:
        """The process that evaluates, writes checkpoints and logs."""
        return self.rank == 0

    def part(self, items: list) -> list:
        """This process's contiguous share of a global batch (the batch divides evenly)."""
        n = len(items) // self.size
        return items[self.rank * n:(self.rank + 1) * n]


def parse_devices(text: str) -> list[str]:
    """The devices of `--devices` ('cpu,cpu', 'cuda:0,cuda:1'); a one-line error for a mix or an empty entry."""
    devices = [d.strip() for d in text.split(",")]
    if not all(devices) or len({torch.device(d).type for d in devices}) != 1:
        raise VqclipError(f"--devices {text}: give devices of one kind separated by commas, e.g. cpu,cpu or "
                          "cuda:0,cuda:1")
    return devices


@contextlib.contextmanager
def _quiet_gather():
    """open_clip's gather calls torch's deprecated all_gather: its business, not the user's; that warning only."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "torch.distributed.nn.functional.all_gather is deprecated", FutureWarning)
        yield


def from_torchrun() -> Group | None:
    """The group torchrun started this process in (RANK, WORLD_SIZE, LOCAL_RANK set), not joined yet; None outside
    torchrun."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return None
    rank, size, local = (int(os.environ.get(k, 0)) for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))
    return Group(rank, size, f"cuda:{local}" if torch.cuda.is_available() else "cpu")


class _ToParent(QueueHandler):
    """Sends each log record, its message formatted, through a multiprocessing SimpleQueue to the parent."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put(record)


@contextlib.contextmanager
def quiet_unless_main(group: Group):
    """In every process but the first, vqclip's log says errors only (the first speaks for all); the level restored
    after."""
    logger = logging.getLogger(LOGGER)
    level = logger.level
    if not group.main:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.ERROR))
    try:
        yield
    finally:
        logger.setLevel(level)


def run_joined(group: Group, fn: Callable, *args):
    """fn(group, *args) inside torchrun's process group (env:// rendezvous), left afterwards."""
    dist.init_process_group("nccl" if group.device.startswith("cuda") else "gloo")
    try:
        if group.device.startswith("cuda"):
            torch.cuda.set_device(group.device)
        with _quiet_gather():
            return fn(group, *args)
    finally:
        dist.destroy_process_group()


def _worker(rank: int, devices: list[str], init: str, threads: int, logs, level: int, fn: Callable,
            args: tuple) -> None:
    """One spawned process: join the group, run fn(group, *args), leave (`threads`: its share of the CPU threads);
    vqclip's log records at `level` go to the queue `logs`, for the parent's handlers (the first process's: the
    others say errors only)."""
    torch.set_num_threads(threads)
    logger = logging.getLogger(LOGGER)
    logger.addHandler(_ToParent(logs))
    logger.setLevel(level)
    logger.propagate = False
    backend = "nccl" if devices[rank].startswith("cuda") else "gloo"
    dist.init_process_group(backend, init_method=init, rank=rank, world_size=len(devices))
    try:
        if devices[rank].startswith("cuda"):
            torch.cuda.set_device(devices[rank])
        group = Group(rank, len(devices), devices[rank])
        with _quiet_gather(), quiet_unless_main(group):
            fn(group, *args)
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, group: Group, devices: list[str], run: Path, metrics: Path, args: tuple,
           on_step: Optional[Callable], *rest) -> Optional[dict]:
    """fn(group, *args, on_step, *rest), the training of one run: in one spawned process per device when `devices`
    names several (no `on_step` there; the metrics the first one wrote are read back), joined when torchrun started
    this process as one of several, else here alone."""
    if len(devices) > 1 and group.size == 1:
        spawn(fn, devices, run, *args, None, *rest)
        return json.loads(metrics.read_text())
    if group.size > 1:
        return run_joined(group, fn, *args, on_step, *rest)
    return fn(group, *args, on_step, *rest)


def spawn(fn: Callable, devices: list[str], rendezvous: Path, *args) -> None:
    """Run fn(group, *args) in one process per device, joined through a file in `rendezvous` (removed after). All
    stop together: an error in one ends the others (torch's join), Ctrl-C ends those still running; a VqclipError in
    one is raised here as its one line. The first process logs here as it would alone: its records pass through
    this process's vqclip logger (its handlers, format and level)."""
    store = rendezvous / ".rendezvous"
    store.unlink(missing_ok=True)
    threads = max(1, torch.get_num_threads() // len(devices))
    logs = mp.get_context("spawn").SimpleQueue()
    level = logging.getLogger(LOGGER).getEffectiveLevel()
    context = mp.spawn(_worker, args=(devices, f"file://{store.absolute()}", threads, logs, level, fn, args),
                       nprocs=len(devices), join=False)
    try:
        while not context.join(RELAY_EVERY):
            _relay(logs)
    except (mp.ProcessRaisedException, mp.ProcessExitedException):
        _end(context)
        said = _one_line(context.error_files)  # the cause, though a peer's broken collective may have been seen first
        if said is not None:
            raise VqclipError(f"{devices[said[0]]}: {said[1]}") from None
        raise
    finally:
        _end(context)  # after Ctrl-C too
        _relay(logs)  # the last lines (the export, or what the first process said as it stopped)
        logs.close()
        store.unlink(missing_ok=True)


def _relay(logs) -> None:
    """Hand the log records the processes sent to this process's loggers, in the order they came."""
    while not logs.empty():
        record = logs.get()
        logging.getLogger(record.name).handle(record)


def _end(context) -> None:
    """End the spawned processes still running and wait for each."""
    for process in context.processes:
        if process.is_alive():
            process.terminate()
        process.join()


def _one_line(error_files: list[str]) -> tuple[int, str] | None:
    """(rank, message) of the first process that ended on a VqclipError, from the traceback text torch's spawn wrote
    for each failed process (a pickled string of our own children); None without one."""
    prefix = f"{VqclipError.__module__}.{VqclipError.__name__}: "
    for rank, path in enumerate(error_files):
        try:
            with open(path, "rb") as fh:
                lines = str(pickle.load(fh)).strip().splitlines()
        except (OSError, EOFError, pickle.UnpicklingError):
            continue
        if lines and lines[-1].startswith(prefix):
            return rank, lines[-1][len(prefix):]
    return None


def average_gradients(model: nn.Module, group: Group) -> None:
    """Average the gradients of all processes in place (what DistributedDataParallel does after backward)."""
    if group.size == 1:
        return
    for p in model.parameters():
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(group.size)


def average(t: Tensor, group: Group) -> Tensor:
    """The mean of `t` over all processes, in place (alone: t)."""
    if group.size > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        t.div_(group.size)
    return t


class _SumAll(torch.autograd.Function):
    """The sum of a tensor over all processes; its gradient the sum of all processes' gradients (what each process's
    loss owes to every process's input)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        x = x.clone()
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
        return x

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


class SyncedBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the global batch (torch's SyncBatchNorm takes GPUs only):
    each process's mean and mean square over its equal share, averaged with gradient; the running statistics as
    BatchNorm2d keeps them for the whole batch."""

    size: int = 1

    def forward(self, x: Tensor) -> Tensor:
        """[B,C,H,W] -> [B,C,H,W], normalised with the statistics of every process's batch."""
        if not self.training or self.size == 1:
            return super().forward(x)
        stats = _SumAll.apply(torch.stack([x.mean((0, 2, 3)), (x * x).mean((0, 2, 3))])) / self.size
        mean, var = stats[0], (stats[1] - stats[0] ** 2).clamp_min(0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
                n = x.numel() // x.shape[1] * self.size
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / max(n - 1, 1))
        shape = (1, -1, 1, 1)
        y = (x - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        return y * self.weight.view(shape) + self.bias.view(shape) if self.affine else y


def sync_batch_norms(model: nn.Module, group: Group) -> nn.Module:
    """The model with each BatchNorm2d normalising over the global batch of `group` (same parameters and state
    names, so checkpoints move between one process and several); alone: unchanged."""
    if group.size > 1:
        for m in model.modules():
            if type(m) is nn.BatchNorm2d:
                m.__class__, m.size = SyncedBatchNorm2d, group.size
    return model


def barrier(group: Group) -> None:
    """Wait for every process (a no-op alone)."""
    if group.size > 1:
        dist.barrier()
