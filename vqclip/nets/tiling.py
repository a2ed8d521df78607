"""Seamless tiles: a decoder whose convolutions pad circularly (wrapping around) instead of with zeros, so shifting
the latent shifts the image the same way, around the border, and the image repeats without a seam."""

from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import ContextManager, Iterator

from torch import nn


@contextmanager
def _padding(modes: list[tuple[nn.Conv2d, str]]) -> Iterator[None]:
    """Within the block, each conv pads as `modes` says; restored after it, even when the block fails."""
    before = [(m, m.padding_mode) for m, _ in modes]
    for m, mode in modes:
        m.padding_mode = mode
    try:
        yield
    finally:
        for m, mode in before:
            m.padding_mode = mode


def circular(decoder: nn.Module) -> ContextManager:
    """Within the block, every padded `nn.Conv2d` of `decoder` pads circularly (the lean decoder follows the
    module's `padding_mode`); restored after it, so a model shared by other jobs is left as it was."""
    return _padding([(m, "circular") for m in decoder.modules() if isinstance(m, nn.Conv2d)
                     and isinstance(m.padding, tuple) and any(p > 0 for p in m.padding)])


def padding_as_now(decoder: nn.Module) -> tuple[ContextManager, ContextManager]:
    """`torch.utils.checkpoint`'s `context_fn` for a part of `decoder`: its recomputation in backward (after a
    `circular` block has ended) pads as its forward did."""
    return nullcontext(), _padding([(m, m.padding_mode) for m in decoder.modules() if isinstance(m, nn.Conv2d)])
