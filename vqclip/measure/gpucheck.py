"""`vqclip bench --suite gpu` / `python benchmarks/gpu_check.py`: one run that measures vqclip on a GPU (speed
against the textbook loop, peak memory, FLOPs, the share of the card's bf16 peak, the largest size that fits) and
checks it (bf16 against fp32, repeatability, resume after a kill); every section stops cleanly when `--budget`
runs out and the JSON written after each section holds what was done ("skipped: reason" for the rest).
"""

from __future__ import annotations

import contextlib
import gc
import io
import time
from typing import Callable, Optional

import torch
from open_clip.model import CLIP
from open_clip.tokenizer import SimpleTokenizer

from ..config.job import GenerateConfig
from ..nets.clip import ClipModel
from ..nets.device import cudnn_benchmark, seeded
from ..nets.load import Models
from ..nets.vqgan import VQGAN
from ..optim.loop import take_step
from ..optim.objective import Objective
from ..optim.state import RunState
from . import textbook
from .bench import bench_config, bench_models, count_gflop, peak_memory, reset_peak, time_steps

TINY_DD = {"double_z": False, "z_channels": 8, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
           "ch_mult": [1, 1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
TINY_CLIP = {"embed_dim": 32, "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32,
                                             "patch_size": 8, "mlp_ratio": 2.0},
             "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
# vqclip's rows: precision and options (the layout and cuDNN rows measure the choices issue 30 asks about)
VARIANTS = {"fp32": ("fp32", {}), "bf16": ("bf16", {}), "bf16+nchw": ("bf16", {"decoder_layout": "nchw"}),
            "bf16+cudnn_benchmark": ("bf16", {"cudnn_benchmark": True}), "bf16+compile": ("bf16", {"compile": True})}
IMPLS = ("textbook", *VARIANTS)


def oom_errors() -> tuple[type, ...]:
    """The exceptions an allocation failure raises: torch's OutOfMemoryError (CUDA) and MemoryError (CPU)."""
    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", MemoryError)
    return (oom, MemoryError)


def free_memory(device: torch.device) -> None:
    """Drop what a failed or finished attempt left: Python garbage and the CUDA caching allocator's free blocks."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()


class Budget:
    """The check's wall-clock allowance: sections ask whether the time they need is left."""

    def __init__(self, seconds: float):
        self.seconds, self.start = seconds, time.monotonic()

    def left(self) -> float:
        return self.seconds - (time.monotonic() - self.start)

    def allows(self, need: float) -> bool:
        return self.left() >= need


# ---- models ----

def tiny_clip():
    """A tiny random open_clip CLIP (raw) and its tokenizer, for the CPU test of the check."""
    return CLIP(**TINY_CLIP), SimpleTokenizer(context_length=TINY_CLIP["text_cfg"]["context_length"])


def vqclip_models(arch: str, device: torch.device, real_weights: bool) -> tuple[Models, str]:
    """vqclip's models: 'imagenet' = the ImageNet f16 16384 VQGAN + ViT-B/32 (random weights, or the installed preset's
    with `real_weights`), 'tiny' = tiny random ones (the suite's CPU run)."""
    if arch == "imagenet":
        models, clip = bench_models("imagenet-16384", None if real_weights else "ViT-B-32", not real_weights, device)
        return models, f"imagenet-16384 + {clip}" + ("" if real_weights else " (random weights)")
    torch.manual_seed(0)
    with contextlib.redirect_stdout(io.StringIO()):
        vq = VQGAN(dict(TINY_DD), 64, TINY_DD["z_channels"], False)
    with torch.no_grad():
        vq.codebook.normal_(0, 1)
    model, tokenizer = tiny_clip()
    clip = ClipModel(model, tokenizer, "tiny").to(device).eval().requires_grad_(False)
    return Models(vq.to(device).eval().requires_grad_(False), [(clip, 1.0)]), "tiny VQGAN + tiny CLIP (random)"


def textbook_step(tb, arch: str, size: int, cutn: int, device: torch.device) -> Callable[[], float]:
    """One step of the textbook loop on the same architecture (random weights, as its script builds them)."""
    if arch == "imagenet":
        model, perceptor, tokenizer = tb.build("imagenet-16384", "ViT-B-32", device)
    else:
        torch.manual_seed(0)
        with contextlib.redirect_stdout(io.StringIO()):
            model = tb.TextbookVQGAN(dict(TINY_DD), 64, TINY_DD["z_channels"])
        perceptor, tokenizer = tiny_clip()
        model = model.to(device).eval().requires_grad_(False)
        perceptor = perceptor.to(device).eval().requires_grad_(False)
    torch.manual_seed(0)
    return tb.make_loop(model, perceptor, tokenizer, size, cutn, device)


def vqclip_run(models: Models, size: int, cutn: int, precision: str, device: torch.device, seed: int = 0,
               **options) -> tuple[RunState, Objective, Callable]:
    """The state, objective and one-step function of a still run as the pipeline builds them (bench settings)."""
    cfg = bench_config(size, cutn, precision, device, seed=seed, **options)
    objective = Objective(cfg, models, device)
    state = RunState.initial(cfg, objective.drawer, device, seed)
    return state, objective, lambda: take_step(state, objective, cfg.optimizer.lr, cfg.steps)


# ---- sections ----

def matmul_peak(device: torch.device, quick: bool) -> dict:
    """The card's bf16 matmul throughput, measured: the best of a few n x n bf16 matmuls (n = 8192 on CUDA)."""
    n = 8192 if device.type == "cuda" and not quick else 512
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    reps = 20 if device.type == "cuda" else 3
    times, _ = time_steps(lambda: a @ b, 2, reps, device)
    best = min(times)
    return {"n": n, "dtype": "bf16", "tflop_s": round(2 * n**3 / best / 1e12, 3), "repeats": reps}


def speed_rows(cfg: dict, models: Models, arch: str, device: torch.device, budget: Budget, peak_tflops: float,
               report: Callable[[list], None]) -> list:
    """it/s, peak memory and GFLOP/step of the textbook loop and vqclip fp32 / bf16 / bf16 + compile per case."""
    tb, rows = textbook, []  # the package's own copy of the notebook's loop: an installed vqclip has it
    for size, cutn in cfg["cases"]:
        counted: dict = {}  # GFLOP/step counted once per case for each implementation: the textbook's, vqclip's
        for impl in IMPLS:
            row = {"size": size, "cutn": cutn, "impl": impl}
            rows.append(row)
            if impl == "bf16+compile" and cfg["quick"]:
                row["skipped"] = "skipped: --quick (compiling takes minutes on a CPU)"
                continue
            if impl in ("bf16+nchw", "bf16+cudnn_benchmark") and device.type != "cuda":
                row["skipped"] = "skipped: not on CUDA (the CPU's decoder is NCHW already; cuDNN is CUDA's)"
                continue
            if not budget.allows(cfg["row_s"]):
                row["skipped"] = "skipped: budget spent"
                continue
            try:
                family = "textbook" if impl == "textbook" else "vqclip"
                row.update(measure(impl, tb, models, arch, size, cutn, device, cfg, counted.get(family)))
                counted[family] = counted.get(family) or row.get("gflop_per_step")
                if row.get("gflop_per_step") and peak_tflops:
                    row["share_of_bf16_peak"] = round(row["gflop_per_step"] * row["it_s"] / (peak_tflops * 1e3), 4)
            except oom_errors():
                row["skipped"] = "skipped: out of memory"
            finally:
                free_memory(device)
            report(rows)
    return rows


def measure(impl: str, tb, models: Models, arch: str, size: int, cutn: int, device: torch.device, cfg: dict,
            gflop: Optional[float]) -> dict:
    """Time one implementation: median it/s after warm-up, peak memory, GFLOP/step (`gflop`: counted already for
    this case; vqclip's variants do the same FLOPs, compile included)."""
    reset_peak(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0  # vqclip's models, resident all along
    with seeded(device, 0):
        if impl == "textbook":
            step = textbook_step(tb, arch, size, cutn, device)
            extra = {}
        else:
            precision, options = VARIANTS[impl]
            options = {k: v for k, v in options.items() if k != "cudnn_benchmark"}  # a context, not a job option
            _, objective, step = vqclip_run(models, size, cutn, precision, device, **options)
            extra = {"options": {**objective.speed_options(), "cudnn_benchmark": impl == "bf16+cudnn_benchmark"}}
        warmup = cfg["warmup"] + (2 if impl.endswith("compile") else 0)
        with cudnn_benchmark(impl == "bf16+cudnn_benchmark"):
            wall, _ = time_steps(step, warmup, cfg["steps"], device)
        mem, kind = peak_memory(device)
        if gflop is None and not impl.endswith("compile"):  # FlopCounterMode counts eager ops only
            gflop = count_gflop(step)
    wall.sort()
    median = wall[len(wall) // 2]
    return {"it_s": round(1 / median, 3), "median_s": round(median, 4), "steps": len(wall),
            "peak_mem_gib": round(mem / 2**30, 3), "mem_kind": kind, "resident_before_gib": round(before / 2**30, 3),
            "gflop_per_step": float(f"{gflop:.4g}") if gflop else None, **extra}


def two_steps(models: Models, size: int, cutn: int, device: torch.device) -> None:
    """Two steps of a still run at size² with `cutn` cutouts and `memory: auto` (its tensors die on return)."""
    with seeded(device, 0):
        _, _, step = vqclip_run(models, size, cutn, "auto", device, memory="auto")
        step()
        step()


def fits(models: Models, size: int, cutn: int, device: torch.device) -> bool:
    """Whether two steps at size² with `cutn` cutouts and `memory: auto` run without running out of memory."""
    try:
        two_steps(models, size, cutn, device)
        return True
    except oom_errors():
        return False
    finally:
        free_memory(device)


def largest_size(models: Models, cfg: dict, device: torch.device, budget: Budget) -> dict:
    """The largest square size (a multiple of 16 and of the VQGAN's factor) that runs at cutn 32 with `memory: auto`:
    doubling from `start`, then bisection, never above `max_size`; a search cut by the budget says so."""
    unit = max(16, models.vqgan.factor)
    cutn, lo, cap = cfg["largest_cutn"], cfg["largest_start"], cfg["largest_max"]
    tried: list = []

    def attempt(size: int) -> Optional[bool]:
        if not budget.allows(cfg["row_s"]):
            return None
        ok = fits(models, size, cutn, device)
        tried.append([size, ok])
        return ok

    first = attempt(lo)
    if not first:
        return {"cutn": cutn, "largest": None, "tried": tried,
                "note": "budget spent" if first is None else f"{lo}² does not fit"}
    hi = None
    while lo * 2 <= cap:
        ok = attempt(lo * 2)
        if ok is None:
            return {"cutn": cutn, "largest": lo, "tried": tried, "note": "at least (budget spent)"}
        if not ok:
            hi = lo * 2
            break
        lo *= 2
    if hi is None:
        return {"cutn": cutn, "largest": lo, "tried": tried, "note": f"at least (the search stops at {cap})"}
    while hi - lo > unit:
        mid = (lo + hi) // 2 // unit * unit
        ok = attempt(mid)
        if ok is None:
            return {"cutn": cutn, "largest": lo, "tried": tried, "note": "at least (budget spent)"}
        lo, hi = (mid, hi) if ok else (lo, mid)
    return {"cutn": cutn, "largest": lo, "tried": tried, "note": f"{hi}² ran out of memory"}


def devices_section() -> str:
    """The multi-GPU speed-up of issue 12, when it can be measured."""
    if torch.cuda.device_count() < 2:
        return f"skipped: {torch.cuda.device_count()} GPU(s) here; the --devices speed-up needs two or more"
    if "devices" not in getattr(GenerateConfig, "__dataclass_fields__", {}):
        return "skipped: no --devices option yet (issue 12)"
    return "skipped: --devices exists but this check does not measure it yet"
