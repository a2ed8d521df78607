"""`vqclip bench`: build the named architectures (random weights allowed), time optimisation steps, count FLOPs
with torch's FlopCounterMode and read the peak memory (process RSS on CPU, `max_memory_allocated` on CUDA).

The timing helpers are shared with `benchmarks/textbook_loop.py`, so both are measured the same way.
"""

from __future__ import annotations

import contextlib
import io
import logging
import resource
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import torch
from torch.utils.flop_counter import FlopCounterMode

from ..config import CutoutsConfig, merge_layers
from ..errors import VqclipError
from ..nets.clip import load_clip
from ..nets.device import autocast_dtype, pick_device, seeded, usable_threads
from ..nets.load import Models, load_models
from ..nets.vqgan import VQGAN, vqgan_spec
from ..optim.loop import take_step
from ..optim.objective import Objective
from ..optim.state import RunState
from ..runs.jobs import build_config

log = logging.getLogger("vqclip")

IMAGENET_F16 = {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 2, "attn_resolutions": [16], "dropout": 0.0}
OPENIMAGES_F8 = {"double_z": False, "z_channels": 256, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": 128,
                 "ch_mult": [1, 1, 2, 4], "num_res_blocks": 2, "attn_resolutions": [32], "dropout": 0.0}
# name -> (ddconfig, n_embed, embed_dim, gumbel): the published taming architectures, for random-weight benches
VQGAN_ARCHS = {
    "imagenet-16384": (IMAGENET_F16, 16384, 256, False),
    "imagenet-1024": (IMAGENET_F16, 1024, 256, False),
    "wikiart-16384": (IMAGENET_F16, 16384, 256, False),
    "wikiart-1024": (IMAGENET_F16, 1024, 256, False),
    "openimages-8192": (OPENIMAGES_F8, 8192, 256, True),
}
BENCH_PROMPT = "a watercolour painting of a lighthouse at dawn"
AUGMENTS = CutoutsConfig().augments  # vqclip's default cutout augments; the textbook loop uses the same


@dataclass
class BenchResult:
    """One benchmark: median seconds per step, throughput, peak memory and FLOPs of a step."""

    impl: str
    size: int
    cutn: int
    vqgan: str
    clip: str
    device: str
    precision: str
    threads: int
    warmup: int
    step_s: list[float]
    median_s: float
    cpu_s: list[float]  # process CPU seconds per step (user + system, all threads)
    median_cpu_s: float
    it_s: float
    peak_mem_bytes: int
    mem_kind: str  # "rss" (process peak, CPU) or "cuda_max_allocated"
    gflop_per_step: Optional[float]
    gflop_s: Optional[float]
    options: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Plain data for `--json`."""
        return asdict(self)


def build_vqgan(name: str, random_weights: bool, device: torch.device, seed: int = 0) -> VQGAN:
    """A frozen VQGAN of a known architecture or a taming YAML, with random weights."""
    if name in VQGAN_ARCHS:
        dd, n_embed, embed_dim, gumbel = VQGAN_ARCHS[name]
    elif name.endswith((".yaml", ".yml")):
        dd, n_embed, embed_dim, gumbel, _ = vqgan_spec(name)
    else:
        raise VqclipError(f"--vqgan: no built-in architecture '{name}' for random weights; use one of "
                          f"{', '.join(VQGAN_ARCHS)} or the path of a taming model YAML")
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        model = VQGAN(dict(dd), n_embed, embed_dim, gumbel)
    return model.to(device).eval().requires_grad_(False)


def build_clip(name: str, random_weights: bool, device: torch.device, seed: int = 0):
    """A frozen CLIP: an open_clip architecture with random weights, or its OpenAI weights (open_clip's cache)."""
    torch.manual_seed(seed)
    return load_clip(name, None if random_weights else "openai", device)


def bench_models(vqgan: str, clip: Optional[str], random_weights: bool, device: torch.device) -> tuple[Models, str]:
    """The models of a bench run and the CLIP's name: random weights of named architectures, or an installed preset
    (its own CLIP unless `clip` names one) loaded as every job loads its models."""
    if random_weights:
        name = clip or "ViT-B-32"
        return Models(build_vqgan(vqgan, True, device), [(build_clip(name, True, device), 1.0)]), name
    over = {"clip": [{"model": clip, "pretrained": "openai"}]} if clip else {}
    cfg = build_config({"model": vqgan, "device": str(device), "output": {"progress": False},
                        "guide": {"weight": 0}, "candidates": {"n": 1}, **over})  # only the VQGAN and the CLIP
    return load_models(cfg, device), clip or f"{vqgan}'s CLIP"


def rss_peak_bytes() -> int:
    """The process's peak resident set size so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak(device: torch.device) -> None:
    """Start a fresh CUDA peak-memory window (RSS peaks cannot be reset: they cover the whole process)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory(device: torch.device) -> tuple[int, str]:
    """(bytes, kind): `max_memory_allocated` on CUDA, else the process's peak RSS."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_allocated"
    return rss_peak_bytes(), "rss"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], object], warmup: int, steps: int,
               device: torch.device) -> tuple[list[float], list[float]]:
    """(wall seconds, process CPU seconds) of each of `steps` calls of `step` after `warmup` untimed ones.

    CPU seconds are what a step costs on a machine shared with other jobs (wall time includes waiting for a core).
    """
    for _ in range(warmup):
        step()
    _sync(device)
    wall, cpu = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        _sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def count_gflop(step: Callable[[], object]) -> float:
    """GFLOP of one call of `step` (forward and backward matmuls/convolutions), by torch's FlopCounterMode."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops() / 1e9


def summarise(impl: str, times: tuple[list[float], list[float]], gflop: Optional[float], device: torch.device,
              **meta) -> BenchResult:
    """A BenchResult from (wall, CPU) step times, FLOPs and the current peak memory."""
    wall, cpu = times
    median = statistics.median(wall)
    mem, kind = peak_memory(device)
    return BenchResult(impl=impl, step_s=[round(t, 4) for t in wall], median_s=median, it_s=1 / median,
                       cpu_s=[round(t, 4) for t in cpu], median_cpu_s=statistics.median(cpu),
                       peak_mem_bytes=mem, mem_kind=kind, gflop_per_step=gflop,
                       gflop_s=gflop / median if gflop is not None else None, device=str(device), **meta)


def bench_config(size: int, cutn: int, precision: str, device: torch.device, **options):
    """The job config of a bench run: fixed prompt and seed, `size`² image, `cutn` cutouts, default augments."""
    job = {"prompt": BENCH_PROMPT, "size": [size, size], "seed": 0, "steps": 10**6, "precision": precision,
           "device": str(device), "cutouts": {"n": cutn, "augments": list(AUGMENTS)}, "output": {"progress": False}}
    job.update({k: v for k, v in options.items() if v is not None})
    return merge_layers([("bench", job)])


def run_bench(size: int = 256, cutn: int = 16, clip: Optional[str] = None, vqgan: str = "imagenet-16384",
              random_weights: bool = True, device: str = "auto", precision: str = "auto", steps: int = 5,
              warmup: int = 2, threads: Optional[int] = None, flops: bool = True, **options) -> BenchResult:
    """Build the models, run `warmup` + `steps` vqclip optimisation steps and measure them. `clip` None: the CLIP of
    the preset `vqgan` names (real weights), else ViT-B-32."""
    if size < 16 or cutn < 1 or steps < 1 or warmup < 0 or (threads or 0) < 0:
        raise VqclipError("bench: need --size >= 16, --cutn >= 1, --steps >= 1, --warmup >= 0 and --threads >= 0")
    if threads:
        torch.set_num_threads(usable_threads(threads))
    dev = pick_device(device)
    models, clip = bench_models(vqgan, clip, random_weights, dev)
    cfg = bench_config(size, cutn, precision, dev, **options)
    reset_peak(dev)
    with seeded(dev, 0):  # the objective, state and step of a still run, as the pipeline builds them
        objective = Objective(cfg, models, dev)
        state = RunState.initial(cfg, objective.drawer, dev, 0)
        step = lambda: take_step(state, objective, cfg.optimizer.lr, cfg.steps)  # noqa: E731
        times = time_steps(step, warmup, steps, dev)
        mem = peak_memory(dev)
        gflop = count_gflop(step) if flops else None
    amp = autocast_dtype(cfg.precision, dev, size * size)
    result = summarise("vqclip", times, gflop, dev, size=size, cutn=cutn, vqgan=vqgan, clip=clip,
                       precision="bf16" if amp == torch.bfloat16 else "fp32", threads=torch.get_num_threads(),
                       warmup=warmup, options={**{k: v for k, v in options.items() if v is not None},
                                               **objective.speed_options()})
    result.peak_mem_bytes, result.mem_kind = mem
    return result


def format_result(r: BenchResult) -> str:
    """Human-readable lines for one result."""
    gflop = f"{r.gflop_per_step:.0f} GFLOP/step, {r.gflop_s:.1f} GFLOP/s achieved" if r.gflop_per_step else "FLOPs not counted"
    mem = "peak RSS" if r.mem_kind == "rss" else "peak CUDA allocated"
    opts = ", ".join(f"{k}={v}" for k, v in r.options.items())
    return (f"{r.impl}: {r.size}x{r.size}, {r.cutn} cutouts, {r.vqgan} + {r.clip}, {r.device} {r.precision}, "
            f"{r.threads} threads{', ' + opts if opts else ''}\n"
            f"  {r.median_s:.3f} s/step (median of {len(r.step_s)} after {r.warmup} warm-up), {r.it_s:.2f} it/s, "
            f"{r.median_cpu_s:.3f} CPU s/step\n"
            f"  {mem} {r.peak_mem_bytes / 2**30:.2f} GiB\n  {gflop}")
