"""Devices and precision: the device a job names, bf16 autocast where it pays off, CPU threads, torch.compile with
an eager fallback.

torch is imported inside the functions, so that the config checks `device` and `precision` without it."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import threading
from pathlib import Path
from typing import Callable, Iterator

from ..errors import VqclipError, reason, shown

log = logging.getLogger("vqclip")

PRECISIONS = ("auto", "fp32", "bf16")
DECODER_LAYOUTS = ("auto", "nchw", "channels_last")
MPS_FALLBACK = "PYTORCH_ENABLE_MPS_FALLBACK"  # torch reads it when it loads: ops without an MPS kernel run on the CPU


def enable_mps_fallback() -> bool:
    """On macOS, before torch is imported, let ops that MPS lacks run on the CPU (torch warns once per op) instead of
    failing mid-run; a value the user set is kept. True when the fallback is on."""
    import sys

    if sys.platform == "darwin" and "torch" not in sys.modules:
        os.environ.setdefault(MPS_FALLBACK, "1")
    return os.environ.get(MPS_FALLBACK, "0") not in ("", "0")


OMP_WAIT = "OMP_WAIT_POLICY"  # OpenMP reads it when torch loads: PASSIVE = threads waiting for work sleep, not spin


def passive_omp_wait() -> bool:
    """Before torch is imported, let torch's idle CPU threads sleep rather than spin (OMP_WAIT_POLICY=PASSIVE): with
    spinning threads, one core taken by another program stalls every parallel op (measured: benchmarks/threads_load.py);
    a value the user set is kept. True when the policy is passive."""
    import sys

    if "torch" not in sys.modules:
        os.environ.setdefault(OMP_WAIT, "PASSIVE")
    return os.environ.get(OMP_WAIT, "").upper() == "PASSIVE"
AUTO_BF16_CPU_PIXELS = 128 * 128  # on CPUs with native bf16, 'auto' uses it from this image size (measured faster)


def check_device(name: str) -> None:
    """A device name vqclip knows (auto, cpu, mps, cuda, cuda:N), else one line saying which ones it knows."""
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", str(name)):
        raise VqclipError(f"device: unknown device {shown(name)}; use auto, cpu, cuda, cuda:N or mps")


def pick_device(name: str):
    """'auto' -> cuda, else mps, else cpu; an explicit device must exist (a one-line error naming what there is)."""
    import torch  # here: see the module docstring

    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    check_device(name)
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise VqclipError(f"device: '{name}' asked for but CUDA is not available here; use --device cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise VqclipError(f"device: '{name}' asked for but this machine has {torch.cuda.device_count()} CUDA "
                          f"device(s), cuda:0 to cuda:{torch.cuda.device_count() - 1}")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise VqclipError(f"device: '{name}' asked for but MPS is not available here; use --device cpu or auto")
    return device


def autocast_dtype(precision: str, device, pixels: int = 0):
    """The autocast dtype for a precision setting: bf16 on CUDA, and on CPUs with native bf16 (AVX512-BF16/AMX) when
    a step decodes at least 128x128 pixels (all starts together); fp32 (None) elsewhere unless asked."""
    import torch  # here: see the module docstring

    if precision == "bf16":
        return torch.bfloat16
    if precision == "auto" and (device.type != "cpu" or pixels >= AUTO_BF16_CPU_PIXELS):
        return native_bf16(device.type)
    return None


def native_bf16(device_type: str = "cpu"):
    """torch.bfloat16 where the device does bf16 in hardware (CUDA; CPUs with AVX512-BF16 or AMX), else None (fp32):
    the rule behind `autocast_dtype`'s auto and the training recipes that run the VQGAN under autocast for speed,
    since emulated bf16 on other CPUs is ~40x slower than fp32, not faster."""
    import torch  # here: see the module docstring

    return torch.bfloat16 if device_type == "cuda" or (device_type == "cpu" and cpu_native_bf16()) else None


def amp_autocast(device_type: str, amp=None):
    """Autocast to `amp` on `device_type`, or a no-op context for fp32 (amp None)."""
    import torch  # here: see the module docstring

    return torch.autocast(device_type, dtype=amp or torch.float32, enabled=amp is not None)


def usable_threads(n: int) -> int:
    """`n` torch CPU threads, at most the CPUs this process may run on (more only slow every step down); 0 stays 0."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if n > cpus:
        log.info("threads %d is more than the %d CPUs here: using %d", n, cpus, cpus)
        return cpus
    return n


class _Held:
    """The runs holding torch's thread count now (`threads`), and the count the process had before the first began."""

    lock = threading.Lock()
    runs = 0
    base = 0
    depth = threading.local()  # per Python thread: how many `threads` blocks it is inside


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """torch's CPU threads `n` while a run is inside (0: left as they are), as every entry point runs a job (CLI, API,
    the page's workers, Ray workers, --devices processes). torch's count belongs to the Python thread that sets it and
    seeds threads started later, so on leaving, a block inside another of the same thread restores that one's count and
    any other the count from before the first of the runs that overlap began: runs in the page's worker threads never
    leave theirs behind. Overlapping runs each keep their own count (torch's OpenMP count is per thread)."""
    if n <= 0:
        yield
        return
    import torch  # here: see the module docstring

    with _Held.lock:
        if _Held.runs == 0:
            _Held.base = torch.get_num_threads()
        _Held.runs += 1
        outer = getattr(_Held.depth, "n", 0)
        _Held.depth.n = outer + 1
        before = torch.get_num_threads()
        torch.set_num_threads(usable_threads(n))
    try:
        yield
    finally:
        with _Held.lock:
            _Held.runs -= 1
            _Held.depth.n = outer
            torch.set_num_threads(before if outer else _Held.base)


@functools.lru_cache(maxsize=1)
def cpu_native_bf16() -> bool:
    """True when this CPU does bf16 dot products in hardware (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def compiled(fn: Callable, name: str) -> Callable:
    """`torch.compile(fn)`, falling back to `fn` (with a notice) if compiling or running the compiled code fails.

    Calls without grad (a frame, the final image, a score) run `fn` eagerly: the compiled graph is the training step's,
    and a second one for grad mode off would cost a whole compile (dynamo guards on grad mode) to save milliseconds."""
    import torch  # here: see the module docstring

    state: dict = {"fn": None}

    def run(*args, **kwargs):
        if not torch.is_grad_enabled():
            return fn(*args, **kwargs)
        if state["fn"] is None:
            try:
                state["fn"] = torch.compile(fn)
                return state["fn"](*args, **kwargs)
            except Exception as exc:  # backends fail in many ways (no compiler, unsupported op, ...)
                log.info("torch.compile of the %s failed (%s); running it eagerly", name,
                         reason(exc, 160))
                state["fn"] = fn
        return state["fn"](*args, **kwargs)

    return run


@contextlib.contextmanager
def seeded(device, seed: int) -> Iterator[None]:
    """Fork the global RNG (CPU, and CUDA when used) and seed it: what runs inside is repeatable, the caller's RNG
    untouched."""
    import torch  # here: see the module docstring

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else [], device_type=device.type):
        torch.manual_seed(seed)
        yield


def channels_last_decoder(layout: str, device) -> bool:
    """Whether the decoder runs channels_last: asked for, or 'auto' off the CPU (there the latent comes from the
    quantizer channels-last strided, as it always ran on CUDA; on CPU NCHW measured 30% faster)."""
    return layout == "channels_last" or (layout == "auto" and device.type != "cpu")


@contextlib.contextmanager
def cudnn_benchmark(enabled: bool) -> Iterator[None]:
    """While active, cuDNN autotunes its convolution algorithms when `enabled`; torch's setting is restored after (and
    left alone when not enabled)."""
    import torch  # here: see the module docstring

    before = torch.backends.cudnn.benchmark
    if enabled:
        torch.backends.cudnn.benchmark = True
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before
