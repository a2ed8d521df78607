"""The lean VQGAN decoder: what taming's `Decoder.forward` computes (the same ops in fp32; tested), with a fraction of
the activation memory for frozen weights:
- a convolution with frozen weights keeps nothing for backward (the input gradient needs only the weight), and
- in bf16, GroupNorm + swish keeps only its input and recomputes itself in backward (one GroupNorm forward),
so a ResnetBlock holds 2 bf16 activations for backward instead of 8 fp32 ones; `checkpoint=True` keeps only each
level's input.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint as _checkpoint

from .tiling import padding_as_now


class _FrozenConv(torch.autograd.Function):
    """conv2d with a frozen weight: backward returns only the input gradient, so the input is not kept."""

    @staticmethod
    def forward(ctx, x: Tensor, conv: nn.Conv2d, dtype: torch.dtype, padding) -> Tensor:  # type: ignore[override]
        ctx.conv, ctx.shape, ctx.in_dtype, ctx.dtype, ctx.padding = conv, x.shape, x.dtype, dtype, padding
        bias = conv.bias.to(dtype) if conv.bias is not None else None
        return F.conv2d(x.to(dtype), conv.weight.to(dtype), bias, conv.stride, padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        conv = ctx.conv
        gx = torch.nn.grad.conv2d_input(ctx.shape, conv.weight.to(ctx.dtype), grad.to(ctx.dtype), conv.stride,
                                        ctx.padding, conv.dilation, conv.groups)
        return gx.to(ctx.in_dtype), None, None, None


def frozen_conv(conv: nn.Conv2d, x: Tensor, dtype: torch.dtype) -> Tensor:
    """`conv(x)` in `dtype` for a conv whose weights need no gradient: [B,C,H,W] -> [B,C',H',W'], input not kept.
    A conv set to pad circularly (seamless tiles, `vqclip.nets.tiling`) wraps its input around first."""
    if conv.padding_mode == "circular":
        return _FrozenConv.apply(F.pad(x, conv._reversed_padding_repeated_twice, mode="circular"), conv, dtype, 0)
    return _FrozenConv.apply(x, conv, dtype, conv.padding)


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
                h = _checkpoint(_level, decoder, i_level, h, dtype, True, use_reentrant=False,
                                context_fn=lambda: padding_as_now(decoder))  # a tile's padding in backward too
            else:
                h = _level(decoder, i_level, h, dtype, recompute)
        if decoder.give_pre_end:
            return h
        h = frozen_conv(decoder.conv_out, norm_swish(decoder.norm_out, h, dtype, recompute), dtype)
        return torch.tanh(h) if getattr(decoder, "tanh_out", False) else h


def decode_latent(vqgan: nn.Module, z_q: Tensor, checkpoint: bool = False,
                  channels_last: Optional[bool] = None) -> Tensor:
    """`VQGAN.decode` through the lean decoder: quantized latent [B,E,h,w] -> image [B,3,H,W], nominally [0,1]. The
    decoder's activations follow the latent's layout: channels_last (default off the CPU) or NCHW (default on the CPU,
    where latents built with movedim, channels-last strided, ran 30% slower)."""
    dtype = torch.get_autocast_dtype(z_q.device.type) if torch.is_autocast_enabled(z_q.device.type) else z_q.dtype
    if channels_last is None:
        channels_last = z_q.device.type != "cpu"
    z_q = z_q.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
    with torch.autocast(z_q.device.type, enabled=False):
        h = frozen_conv(vqgan.post_quant_conv, z_q, dtype)
    return lean_decode(vqgan.decoder, h, checkpoint).add(1).div(2)


def is_frozen(module: nn.Module) -> bool:
    """True when no parameter of `module` wants a gradient (the lean decoder relies on it)."""
    return not any(p.requires_grad for p in module.parameters())


