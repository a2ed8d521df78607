"""How CLIP scores cutouts: `prompt_loss` of their image embeddings against the prompts' embeddings, in one pass,
`chunk` cutouts at a time (each chunk back-propagated at once, so only one chunk's CLIP activations are alive), or
this device's share of them in a run across devices. The one scorer of the run's loss and of best-of-n's starts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import Tensor

from ..nets.device import amp_autocast
from .losses import prompt_loss


@dataclass(frozen=True)
class Scorer:
    """Scores cutouts [N,3,S,S] with one CLIP's `encode` ([n,3,S,S] -> embeddings [n,D]) under autocast `amp` on
    `device_type`; `chunk` > 0 scores that many at a time, `shard` (rank, world) only this process's rows."""

    encode: Callable[[Tensor], Tensor]
    amp: Optional[torch.dtype] = None
    device_type: str = "cpu"
    chunk: int = 0
    shard: tuple[int, int] = (0, 1)

    def __call__(self, cutouts: Tensor, targets: Tensor, weights: Tensor, stops: Optional[Tensor] = None,
                 cover: Optional[Tensor] = None) -> Tensor:
        """The loss (a scalar) of cutouts [N,3,S,S] to targets [M,D] with weights [M], stops [M] and per-cutout
        weights cover [N,M] (region prompts); its gradient to the cutouts is that of one pass over all N."""
        if self.shard[1] > 1:
            return self._sharded(cutouts, targets, weights, stops, cover)
        return self._chunked(cutouts, targets, weights, stops, cover)

    def one_pass(self, cutouts: Tensor, targets: Tensor, weights: Tensor, stops: Optional[Tensor] = None,
                 cover: Optional[Tensor] = None) -> Tensor:
        """`prompt_loss` of cutouts [N,3,S,S] embedded all at once under the autocast."""
        with amp_autocast(self.device_type, self.amp):
            embeds = self.encode(cutouts)
        return prompt_loss(embeds, targets, weights, stops, cover)

    def _chunked(self, cutouts: Tensor, targets: Tensor, weights: Tensor, stops: Optional[Tensor],
                 cover: Optional[Tensor] = None) -> Tensor:
        """One pass when `chunk` is 0 or covers all rows; else `chunk` rows at a time, each weighted by its share of
        the rows and back-propagated at once; the returned loss carries the summed gradient to `cutouts`."""
        if not 0 < self.chunk < len(cutouts):
            return self.one_pass(cutouts, targets, weights, stops, cover)
        leaf = cutouts.detach().requires_grad_(cutouts.requires_grad and torch.is_grad_enabled())
        total = cutouts.new_zeros(())
        covers = cover.split(self.chunk) if cover is not None else [None] * len(leaf.split(self.chunk))
        for part, part_cover in zip(leaf.split(self.chunk), covers):
            loss = self.one_pass(part, targets, weights, stops, part_cover) * (len(part) / len(leaf))
            if leaf.requires_grad:
                loss.backward()
            total = total + loss.detach()
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(cutouts)
        return _InjectGrad.apply(cutouts, total, grad) if leaf.requires_grad else total

    def _sharded(self, cutouts: Tensor, targets: Tensor, weights: Tensor, stops: Optional[Tensor],
                 cover: Optional[Tensor] = None) -> Tensor:
        """This device scores and back-propagates its rows lo:hi (as a chunk of a one-device run would), then the
        rows' gradients and the shares' losses are summed over the devices. Each device fills only its own rows, so
        that sum is exact: every device holds the gradient of the one-device run with `chunk = N / devices`, bit for
        bit, and back-propagates it through the same decoder, so the latents never part."""
        rank, world = self.shard
        lo, hi = len(cutouts) * rank // world, len(cutouts) * (rank + 1) // world
        needs = cutouts.requires_grad and torch.is_grad_enabled()
        leaf = cutouts.detach().requires_grad_(needs)
        part = self._chunked(leaf[lo:hi], targets, weights, stops, None if cover is None else cover[lo:hi])
        part = part * ((hi - lo) / len(leaf))
        if needs:
            part.backward()
        total = part.detach().clone()
        torch.distributed.all_reduce(total)
        if not needs:
            return total
        grad = leaf.grad if leaf.grad is not None else torch.zeros_like(cutouts)
        torch.distributed.all_reduce(grad)
        return _InjectGrad.apply(cutouts, total, grad)


def shard_of() -> tuple[int, int]:
    """(rank, world size) of this process in a run across devices; (0, 1) otherwise."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _InjectGrad(torch.autograd.Function):
    """Returns a precomputed loss whose gradient with respect to `source` is the precomputed `grad`."""

    @staticmethod
    def forward(ctx, source: Tensor, loss: Tensor, grad: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(grad)
        return loss.clone()

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        (grad,) = ctx.saved_tensors
        return grad * grad_out, None, None
