"""Seamless tiles: a decoder whose convolutions pad circularly (wrapping around) instead of with zeros, so shifting
the latent shifts the image the same way, around the border, and the image repeats without a seam."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def circular(decoder: nn.Module) -> Iterator[nn.Module]:
    """Within the block, every padded `nn.Conv2d` of `decoder` pads circularly (the lean decoder follows the
    module's `padding_mode`); restored after it, so a model shared by other jobs is left as it was."""
    convs = [m for m in decoder.modules() if isinstance(m, nn.Conv2d) and isinstance(m.padding, tuple)
             and any(p > 0 for p in m.padding)]
    before = [m.padding_mode for m in convs]
    for m in convs:
        m.padding_mode = "circular"
    try:
        yield decoder
    finally:
        for m, mode in zip(convs, before):
            m.padding_mode = mode
