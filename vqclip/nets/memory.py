"""Memory planning: estimates of what the decoder and CLIP keep for backward, and the choice of decoder checkpointing
and cutout micro-batches (`memory: auto|normal|low`).

torch is imported inside the functions, so that the config checks `memory` against MEMORY_MODES without it."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional

log = logging.getLogger("vqclip")

MEMORY_MODES = ("auto", "normal", "low")


def available_memory(device) -> Optional[int]:
    """Bytes free for this run: free CUDA memory, or MemAvailable on Linux; None when unknown."""
    if device.type == "cuda":
        import torch  # here: see the module docstring

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def decoder_activation_bytes(decoder, h: int, w: int, elem: int, checkpoint: bool) -> int:
    """Estimated bytes the lean decoder keeps for backward for a latent of h x w (2 tensors per ResnetBlock); 0 for
    no decoder (a drawer without one)."""
    if decoder is None:
        return 0
    levels = []
    for i_level in range(decoder.num_resolutions):
        scale = 2 ** (decoder.num_resolutions - 1 - i_level)
        channels = decoder.up[i_level].block[-1].out_channels
        levels.append((decoder.num_res_blocks + 1) * 2 * channels * h * scale * w * scale * elem)
    if checkpoint:  # each level's input is kept, and one level is rebuilt at a time in backward
        return max(levels) + sum(levels) // (2 * (decoder.num_res_blocks + 1))
    return sum(levels)


def clip_activation_bytes(clip, elem: int) -> int:
    """Estimated bytes the CLIP image tower keeps for backward per cutout (about 16 values per token and width)."""
    visual = getattr(getattr(clip, "model", None), "visual", None)
    transformer = getattr(visual, "transformer", None)
    grid = getattr(visual, "grid_size", None)
    if transformer is None or grid is None:
        return 32 * 2**20
    tokens = int(grid[0]) * int(grid[1]) + 1
    return tokens * int(transformer.width) * len(transformer.resblocks) * 16 * elem


def plan_memory(mode: str, decoder, latent_hw: tuple[int, int], clips: list, cutn: int,
                micro_batch: int, elem: int, device, batch: int = 1) -> tuple[bool, int]:
    """(checkpoint the decoder?, cutouts per CLIP pass; 0 = all) for `batch` latents of `cutn` cutouts each: `low`
    forces both, `normal` neither, `auto` turns them on (with a notice) only when the estimate exceeds 70% of the
    free memory."""
    cutn, latent_hw = cutn * batch, (latent_hw[0] * batch, latent_hw[1])  # a batch costs as one taller latent
    if mode == "normal":
        return False, micro_batch
    if mode == "low":
        return True, micro_batch or min(cutn, 8)
    free = available_memory(device)
    per_cut = max(clip_activation_bytes(c, elem) for c in clips)
    need = decoder_activation_bytes(decoder, *latent_hw, elem, False) + per_cut * (micro_batch or cutn)
    if free is None or need <= 0.7 * free:
        return False, micro_batch
    budget = 0.7 * free - decoder_activation_bytes(decoder, *latent_hw, elem, True)
    chosen = micro_batch or max(1, min(cutn, int(budget // per_cut)))
    log.info("memory is short (about %.1f GiB needed, %.1f GiB free): checkpointing the decoder and scoring "
             "%d cutouts per CLIP pass; set memory: normal to turn this off", need / 2**30, free / 2**30, chosen)
    return True, chosen




def is_out_of_memory(exc: BaseException) -> bool:
    """Whether an exception is an allocation failure: torch.OutOfMemoryError (CUDA, MPS), MemoryError, or the CPU
    allocator's RuntimeError."""
    import torch  # here: see the module docstring

    oom = getattr(torch, "OutOfMemoryError", None) or getattr(torch.cuda, "OutOfMemoryError", MemoryError)
    if isinstance(exc, (oom, MemoryError)):
        return True
    return isinstance(exc, RuntimeError) and bool(re.search(r"out of memory|can't allocate memory", str(exc)))


def out_of_memory_message(width: int, height: int, cutn: int, exc: BaseException, mode: str = "auto") -> str:
    """One line for a run that ran out of memory: what it tried, its size and cutouts, and the options that lower
    the memory a step needs."""
    asked = re.search(r"tried to allocate [\d.]+ ?\w+", str(exc), re.IGNORECASE)
    where = "CUDA " if "CUDA" in str(exc) else ""
    low = "" if mode == "low" else "--set memory=low, "
    return (f"{where}out of memory{f' ({asked.group(0)})' if asked else ''} at {width}x{height} with {cutn} "
            f"cutouts; lower it with {low}--set micro_batch=4, a smaller --size or fewer --cutn")
