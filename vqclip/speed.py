"""Fast paths for the frozen networks: a memory-lean VQGAN decoder forward, native-bf16 detection, memory planning
and an optional `torch.compile` wrapper that falls back to eager.

The lean decoder computes what taming's `Decoder.forward` computes (the same ops in fp32; tested), but
- a convolution with frozen weights keeps nothing for backward (the input gradient needs only the weight), and
- in bf16, GroupNorm + swish keeps only its input and recomputes itself in backward (one GroupNorm forward),
so a ResnetBlock holds 2 bf16 activations for backward instead of 8 fp32 ones; `checkpoint=True` keeps only
each level's input. It also fixes two CPU slow paths of open_clip's ViT (see `PackedSelfAttention`, `PatchConv`).
"""

from __future__ import annotations

import functools
import logging
import os
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from .errors import reason

log = logging.getLogger("vqclip")


class _FrozenConv(torch.autograd.Function):
    """conv2d with a frozen weight: backward returns only the input gradient, so the input is not kept."""

    @staticmethod
    def forward(ctx, x: Tensor, conv: nn.Conv2d, dtype: torch.dtype) -> Tensor:  # type: ignore[override]
        ctx.conv, ctx.shape, ctx.in_dtype, ctx.dtype = conv, x.shape, x.dtype, dtype
        bias = conv.bias.to(dtype) if conv.bias is not None else None
        return F.conv2d(x.to(dtype), conv.weight.to(dtype), bias, conv.stride, conv.padding, conv.dilation,
                        conv.groups)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        conv = ctx.conv
        gx = torch.nn.grad.conv2d_input(ctx.shape, conv.weight.to(ctx.dtype), grad.to(ctx.dtype), conv.stride,
                                        conv.padding, conv.dilation, conv.groups)
        return gx.to(ctx.in_dtype), None, None


def frozen_conv(conv: nn.Conv2d, x: Tensor, dtype: torch.dtype) -> Tensor:
    """`conv(x)` in `dtype` for a conv whose weights need no gradient: [B,C,H,W] -> [B,C',H',W'], input not kept."""
    return _FrozenConv.apply(x, conv, dtype)


def _norm_swish(x: Tensor, norm: nn.GroupNorm, dtype: torch.dtype) -> Tensor:
    """swish(GroupNorm(x)) in `dtype`: exactly taming's fp32 ops (x * sigmoid(x)) for fp32; for bf16/fp16 the
    native mixed-precision GroupNorm (statistics accumulated in fp32) and SiLU, 4x less memory traffic on CPU."""
    if dtype == torch.float32:
        h = F.group_norm(x.float(), norm.num_groups, norm.weight, norm.bias, norm.eps)
        return h * torch.sigmoid(h)
    return F.silu(F.group_norm(x.to(dtype), norm.num_groups, norm.weight, norm.bias, norm.eps))


class _NormSwish(torch.autograd.Function):
    """GroupNorm + swish that keeps only its input and recomputes itself in backward.

    In bf16/fp16 the backward calls the native kernels directly (GroupNorm forward again, then SiLU and GroupNorm
    backward), so the recompute costs one GroupNorm forward; in fp32 it replays taming's exact ops under autograd.
    """

    @staticmethod
    def forward(ctx, x: Tensor, norm: nn.GroupNorm, dtype: torch.dtype) -> Tensor:  # type: ignore[override]
        ctx.norm, ctx.dtype = norm, dtype
        ctx.save_for_backward(x)
        return _norm_swish(x, norm, dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        norm, dtype = ctx.norm, ctx.dtype
        if dtype == torch.float32:
            with torch.enable_grad():
                xr = x.detach().requires_grad_(True)
                (gx,) = torch.autograd.grad(_norm_swish(xr, norm, dtype), xr, grad.to(dtype))
            return gx.to(x.dtype), None, None
        xd = x.to(dtype).contiguous()
        n, c = xd.shape[:2]
        hw = xd[0, 0].numel()
        h, mean, rstd = torch.native_group_norm(xd, norm.weight, norm.bias, n, c, hw, norm.num_groups, norm.eps)
        dh = torch.ops.aten.silu_backward(grad.to(dtype).contiguous(), h)
        gx = torch.ops.aten.native_group_norm_backward(dh, xd, mean, rstd, norm.weight, n, c, hw, norm.num_groups,
                                                       [True, False, False])[0]
        return gx.to(x.dtype), None, None


def norm_swish(norm: nn.GroupNorm, x: Tensor, dtype: torch.dtype, recompute: bool = True) -> Tensor:
    """swish(norm(x)) for [B,C,H,W] in `dtype` (statistics in fp32); `recompute` keeps only x for backward
    (half the memory, about twice the time of this cheap op), else autograd keeps what it needs."""
    return _NormSwish.apply(x, norm, dtype) if recompute else _norm_swish(x, norm, dtype)


def _resblock(block: nn.Module, x: Tensor, dtype: torch.dtype, recompute: bool) -> Tensor:
    """taming ResnetBlock.forward (no timestep embedding; dropout is the identity in eval)."""
    h = frozen_conv(block.conv1, norm_swish(block.norm1, x, dtype, recompute), dtype)
    h = frozen_conv(block.conv2, norm_swish(block.norm2, h, dtype, recompute), dtype)
    if block.in_channels != block.out_channels:
        x = frozen_conv(block.conv_shortcut if block.use_conv_shortcut else block.nin_shortcut, x, dtype)
    return x + h


def _attn(block: nn.Module, x: Tensor, dtype: torch.dtype) -> Tensor:
    """taming AttnBlock.forward, under autocast when `dtype` is a low precision (it sits at the lowest resolution)."""
    low = dtype in (torch.bfloat16, torch.float16)
    with torch.autocast(x.device.type, dtype=dtype if low else torch.bfloat16, enabled=low):
        return block(x).to(dtype)


def _level(decoder: nn.Module, i_level: int, h: Tensor, dtype: torch.dtype, recompute: bool) -> Tensor:
    """One resolution level of the decoder: its ResnetBlocks (+ attention), then the upsampling."""
    up = decoder.up[i_level]
    for i_block in range(decoder.num_res_blocks + 1):
        h = _resblock(up.block[i_block], h, dtype, recompute)
        if len(up.attn) > 0:
            h = _attn(up.attn[i_block], h, dtype)
    if i_level != 0:
        h = F.interpolate(h, scale_factor=2.0, mode="nearest")
        if up.upsample.with_conv:
            h = frozen_conv(up.upsample.conv, h, dtype)
    return h


def lean_decode(decoder: nn.Module, z: Tensor, checkpoint: bool = False) -> Tensor:
    """taming `Decoder.forward(z)` for frozen weights with a fraction of the activation memory.

    z [B,z_channels,h,w] -> [B,out_ch,h*f,w*f] (fp32 when not under autocast, else the autocast dtype).
    `checkpoint=True` also recomputes GroupNorm+swish and each level in backward (least memory, about one more
    forward of time).
    """
    kind = z.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else z.dtype
    with torch.autocast(kind, enabled=False):
        recompute = checkpoint or dtype != torch.float32  # cheap in bf16/fp16 (one GroupNorm forward)
        h = frozen_conv(decoder.conv_in, z, dtype)
        h = _resblock(decoder.mid.block_1, h, dtype, recompute)
        h = _attn(decoder.mid.attn_1, h, dtype)
        h = _resblock(decoder.mid.block_2, h, dtype, recompute)
        for i_level in reversed(range(decoder.num_resolutions)):
            if checkpoint and torch.is_grad_enabled() and h.requires_grad:
                h = _checkpoint(_level, decoder, i_level, h, dtype, True, use_reentrant=False)
            else:
                h = _level(decoder, i_level, h, dtype, recompute)
        if decoder.give_pre_end:
            return h
        h = frozen_conv(decoder.conv_out, norm_swish(decoder.norm_out, h, dtype, recompute), dtype)
        return torch.tanh(h) if getattr(decoder, "tanh_out", False) else h


def decode_latent(vqgan: nn.Module, z_q: Tensor, checkpoint: bool = False) -> Tensor:
    """`VQGAN.decode` through the lean decoder: quantized latent [B,E,h,w] -> image [B,3,H,W], nominally [0,1]."""
    dtype = torch.get_autocast_dtype(z_q.device.type) if torch.is_autocast_enabled(z_q.device.type) else z_q.dtype
    if z_q.device.type == "cpu":  # latents built with movedim are channels-last strided: 30% slower on CPU
        z_q = z_q.contiguous()
    with torch.autocast(z_q.device.type, enabled=False):
        h = frozen_conv(vqgan.post_quant_conv, z_q, dtype)
    return lean_decode(vqgan.decoder, h, checkpoint).add(1).div(2)


def amp_autocast(device_type: str, amp: Optional[torch.dtype]):
    """Autocast to `amp` on `device_type`, or a no-op context for fp32 (amp None)."""
    return torch.autocast(device_type, dtype=amp or torch.float32, enabled=amp is not None)


def is_frozen(module: nn.Module) -> bool:
    """True when no parameter of `module` wants a gradient (the lean decoder relies on it)."""
    return not any(p.requires_grad for p in module.parameters())


def usable_threads(n: int) -> int:
    """`n` torch CPU threads, at most the CPUs this process may run on (more only slow every step down); 0 stays 0."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    if n > cpus:
        log.info("threads %d is more than the %d CPUs here: using %d", n, cpus, cpus)
        return cpus
    return n


@functools.lru_cache(maxsize=1)
def cpu_native_bf16() -> bool:
    """True when this CPU does bf16 dot products in hardware (AVX512-BF16 or AMX), where bf16 autocast pays off."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = next((line for line in text.splitlines() if line.startswith("flags")), "")
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


def available_memory(device: torch.device) -> Optional[int]:
    """Bytes free for this run: free CUDA memory, or MemAvailable on Linux; None when unknown."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def decoder_activation_bytes(decoder: nn.Module, h: int, w: int, elem: int, checkpoint: bool) -> int:
    """Estimated bytes the lean decoder keeps for backward for a latent of h x w (2 tensors per ResnetBlock)."""
    levels = []
    for i_level in range(decoder.num_resolutions):
        scale = 2 ** (decoder.num_resolutions - 1 - i_level)
        channels = decoder.up[i_level].block[-1].out_channels
        levels.append((decoder.num_res_blocks + 1) * 2 * channels * h * scale * w * scale * elem)
    if checkpoint:  # each level's input is kept, and one level is rebuilt at a time in backward
        return max(levels) + sum(levels) // (2 * (decoder.num_res_blocks + 1))
    return sum(levels)


def clip_activation_bytes(clip: nn.Module, elem: int) -> int:
    """Estimated bytes the CLIP image tower keeps for backward per cutout (about 16 values per token and width)."""
    visual = getattr(getattr(clip, "model", None), "visual", None)
    transformer = getattr(visual, "transformer", None)
    grid = getattr(visual, "grid_size", None)
    if transformer is None or grid is None:
        return 32 * 2**20
    tokens = int(grid[0]) * int(grid[1]) + 1
    return tokens * int(transformer.width) * len(transformer.resblocks) * 16 * elem


def plan_memory(mode: str, decoder: nn.Module, latent_hw: tuple[int, int], clips: list[nn.Module], cutn: int,
                micro_batch: int, elem: int, device: torch.device, batch: int = 1) -> tuple[bool, int]:
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


def compiled(fn: Callable, name: str) -> Callable:
    """`torch.compile(fn)`, falling back to `fn` (with a notice) if compiling or running the compiled code fails."""
    state: dict = {"fn": None}

    def run(*args, **kwargs):
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


class PackedSelfAttention(nn.MultiheadAttention):
    """nn.MultiheadAttention whose batch-first self-attention runs as one packed projection + SDPA.

    The stock path transposes to [L,N,E] first, so each projection becomes a bmm with the weight copied per token
    (most of a ViT's step time on CPU); this computes the same function with plain matmuls. Other calls
    (masks, weights, cross-attention) go to the stock implementation. Installed per instance by `pack_attention`.
    """

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if (need_weights or attn_mask is not None or key_padding_mask is not None or is_causal
                or not self.batch_first or query is not key or key is not value or query.dim() != 3
                or not self._qkv_same_embed_dim or self.bias_k is not None or self.add_zero_attn):
            return super().forward(query, key, value, key_padding_mask, need_weights, attn_mask,
                                   average_attn_weights, is_causal)
        n, length, embed = query.shape
        qkv = F.linear(query, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(n, length, 3, self.num_heads, embed // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        if query.device.type == "cpu" and not self.training:  # CPU flash kernel: slow for ViT's ~50 tokens
            out = ((q @ k.transpose(-2, -1)) * (q.shape[-1] ** -0.5)).softmax(-1).to(v.dtype) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(n, length, embed)
        return F.linear(out, self.out_proj.weight, self.out_proj.bias), None


class PatchConv(nn.Conv2d):
    """A ViT patch embedding (kernel == stride, no padding) as one matmul over the patches: same function, but its
    input gradient is a matmul too instead of CPU's slow strided transposed convolution."""

    def forward(self, x: Tensor) -> Tensor:
        kh, kw = self.kernel_size
        b, c, h, w = x.shape
        if (tuple(self.stride) != (kh, kw) or self.padding != (0, 0) or self.dilation != (1, 1) or self.groups != 1
                or h % kh or w % kw or x.device.type != "cpu"):
            return super().forward(x)
        patches = x.reshape(b, c, h // kh, kh, w // kw, kw).permute(0, 2, 4, 1, 3, 5).reshape(b, -1, c * kh * kw)
        out = F.linear(patches, self.weight.reshape(self.out_channels, -1), self.bias)  # [B, h'w', C_out]
        return out.permute(0, 2, 1).reshape(b, self.out_channels, h // kh, w // kw)


def pack_attention(model: nn.Module) -> nn.Module:
    """Switch `model`'s nn.MultiheadAttention to `PackedSelfAttention` and its patch-embedding convolutions to
    `PatchConv`, in place (same weights, same state_dict, same function)."""
    for module in model.modules():
        if type(module) is nn.MultiheadAttention:
            module.__class__ = PackedSelfAttention
        elif type(module) is nn.Conv2d and module.kernel_size == module.stride and module.kernel_size != (1, 1):
            module.__class__ = PatchConv
    return model
