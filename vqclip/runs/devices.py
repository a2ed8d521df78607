"""One run across several devices (`devices: [cuda:0, cuda:1]`; `cpu,cpu` to try it): vqclip starts a process per
further device itself (torch.multiprocessing spawn, no torchrun) joined by torch.distributed (NCCL on CUDA, gloo
otherwise, on 127.0.0.1). Every process holds the models, decodes the same latent and draws the same cutouts; each
scores its share of them and the shares' gradients are summed (`vqclip.optim.scoring.Scorer`), so every process holds the
gradient of one device scoring the cutouts a share at a time, bit for bit. This process is rank 0 and writes the run
folder."""

from __future__ import annotations

import contextlib
import datetime
import logging
import socket
from dataclasses import replace
from typing import Callable, Iterator, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ..config import GenerateConfig
from ..errors import VqclipError
from ..modes.registry import rules_of
from ..nets.device import pick_device
from ..nets.load import load_models

log = logging.getLogger("vqclip")
TIMEOUT = datetime.timedelta(minutes=10)  # a process lost mid-step: gloo's wait for it


def check_devices(cfg: GenerateConfig) -> None:
    """A run across devices is a still image (story included) with at least one cutout per device."""
    if len(cfg.devices) < 2:
        return
    rules = rules_of(cfg)  # the job's mode: a still image's cutouts can be shared out, a video's cannot
    what = (rules.title if not rules.across_devices else "best of n" if cfg.candidates.n > 1 else None)
    if what:
        raise VqclipError(f"devices: {what} runs on one device; give one --device, or run a still image")
    if cfg.cutouts.n < len(cfg.devices):
        raise VqclipError(f"devices: {len(cfg.devices)} devices need at least as many cutouts (cutouts.n is "
                          f"{cfg.cutouts.n})")
    for name in cfg.devices:
        pick_device(name)  # each must exist: a one-line error naming it


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _backend(cfg: GenerateConfig) -> str:
    return "nccl" if all(torch.device(d).type == "cuda" for d in cfg.devices) else "gloo"


@contextlib.contextmanager
def across_devices(cfg: GenerateConfig, saved: Optional[dict], generate: Callable) -> Iterator[torch.device]:
    """Start the other devices' processes, each running the job in memory with `generate` (the pipeline's), and join
    this one as rank 0; yields its device. A process that fails ends the run with one error."""
    port, world = _free_port(), len(cfg.devices)
    procs = mp.start_processes(_rank, args=(cfg, saved, port, generate), nprocs=world - 1, join=False,
                               start_method="spawn")
    try:
        dist.init_process_group(_backend(cfg), init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=world,
                                timeout=TIMEOUT)
        try:
            yield pick_device(cfg.devices[0])
        except RuntimeError as exc:  # a lost peer shows here as gloo's or NCCL's error in a collective
            raise VqclipError(f"devices: a device process ended mid-run ({_first_line(exc)}); the frames, "
                              "state.pt and final.png of the last step are kept: `vqclip resume` goes on") from None
        finally:
            dist.destroy_process_group()
    finally:  # rank 0's run is over (done, stopped or failed): the others have nothing more to give it
        for p in procs.processes:
            p.join(timeout=30)
            if p.is_alive():
                p.terminate()
                p.join()


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _rank(index: int, cfg: GenerateConfig, saved: Optional[dict], port: int, generate: Callable) -> None:
    """Rank index+1: the job in memory on its device, its share of the cutouts at each step; writes nothing."""
    rank = index + 1  # the job's CPU threads: `generate` sets them, as in every run
    device = pick_device(cfg.devices[rank])
    dist.init_process_group(_backend(cfg), init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=len(cfg.devices), timeout=TIMEOUT)
    try:
        cfg = replace(cfg, device=cfg.devices[rank], output=replace(cfg.output, progress=False))
        generate(cfg, load_models(cfg, device), device=device, saved=saved)
    finally:
        dist.destroy_process_group()
