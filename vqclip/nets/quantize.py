"""Latent-space math: nearest-codebook quantization with straight-through gradients, and a clamp that keeps them."""

from __future__ import annotations

import torch
from torch import Tensor


def nearest_codes(z: Tensor, codebook: Tensor) -> Tensor:
    """Index of the nearest codebook entry for each latent vector: z [B,E,h,w], codebook [N,E] -> [B,h,w] long.
    Always in the codebook's precision, even under autocast: a bf16 distance picks other codes."""
    flat = z.movedim(1, -1).reshape(-1, z.shape[1]).to(codebook.dtype)
    with torch.autocast(z.device.type, enabled=False):
        d = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ codebook.T + codebook.pow(2).sum(1)
    return d.argmin(1).view(z.shape[0], *z.shape[2:])


def codes_to_latent(codes: Tensor, codebook: Tensor) -> Tensor:
    """Codebook vectors for integer codes: [B,h,w] long -> [B,E,h,w]."""
    return codebook[codes].movedim(-1, 1)


def vector_quantize(z: Tensor, codebook: Tensor) -> Tensor:
    """Snap z [B,E,h,w] to its nearest codebook entries; the gradient passes straight through to z."""
    z_q = codes_to_latent(nearest_codes(z.detach(), codebook), codebook).to(z.dtype)
    return z + (z_q - z).detach()


class _ClampWithGrad(torch.autograd.Function):
    """Clamp whose backward keeps the gradient of an out-of-range value when a descent step along it moves the value
    back towards the range (`grad * (x - clamp(x)) >= 0`, as Crowson's notebook's `ClampWithGrad`), and drops it when
    it would push the value further out; in range it is the identity's gradient."""

    @staticmethod
    def forward(ctx, x: Tensor, lo: float, hi: float) -> Tensor:
        ctx.lo, ctx.hi = lo, hi
        ctx.save_for_backward(x)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (x,) = ctx.saved_tensors
        keep = grad * (x - x.clamp(ctx.lo, ctx.hi)) >= 0  # descent x - lr * grad heads back into [lo, hi]
        return grad * keep, None, None


def clamp_with_grad(x: Tensor, lo: float = 0.0, hi: float = 1.0) -> Tensor:
    """`x.clamp(lo, hi)` whose gradient still reaches out-of-range values in the direction that brings them back
    (plain clamp gives them none, so a pixel that left [lo, hi] could never return): any shape, same shape out."""
    return _ClampWithGrad.apply(x, lo, hi)
