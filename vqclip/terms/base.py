"""What a loss term is: a name, a weight, the term's value from the image, the latents and the step, and three hooks
for the looks that change more than the loss (the image a run shows, the image its cutouts see, the decoding)."""

from __future__ import annotations

from contextlib import nullcontext
from typing import ContextManager, Optional

import torch
from torch import Tensor

from .registry import TERMS, load


class Term:
    """One named term of a job's loss, built only when the job asks for it (`wanted`), so an unused term leaves the
    loss unchanged. Subclasses set `name` and `weight` and compute the term; the hooks default to doing nothing."""

    name = ""

    def __init__(self, cfg, models, device: torch.device, amp: Optional[torch.dtype] = None):
        self.cfg, self.device, self.amp = cfg, device, amp
        self.weight = 0.0

    @classmethod
    def wanted(cls, cfg, models) -> bool:
        """Whether the job `cfg` (with its loaded `models`) uses this term."""
        raise NotImplementedError

    def __call__(self, image: Tensor, z: Tensor, z_init: Tensor, step: int) -> Optional[Tensor]:
        """The weighted term, a 0-d tensor (the mean over the B starts) for images [B,3,H,W] in [0,1] decoded from
        latents z [B,E,h,w] (z_init: their start) at `step`; None: nothing to add at this step."""
        return None

    def drawn(self, z: Tensor, drawer) -> Tensor:
        """The parameters [B,...] the drawer decodes, made from the run's z (an edit scales their gradient)."""
        return z

    def shown(self, image: Tensor) -> Tensor:
        """The image [B,3,H,W] the run scores and shows (frames, final.png) made from the decoded one."""
        return image

    def viewed(self, image: Tensor) -> Tensor:
        """The image [B,3,H,W] the CLIP cutouts are drawn from at this step."""
        return image

    def decoding(self, drawer) -> ContextManager:
        """A context the image model (`vqclip.draw.base.Drawer`) decodes in (the default: none)."""
        return nullcontext()


def build_terms(cfg, models, device: torch.device, amp: Optional[torch.dtype] = None) -> list[Term]:
    """The terms job `cfg` uses, in the registry's order (the order their values are summed)."""
    classes = [load(name) for name in TERMS]
    return [cls(cfg, models, device, amp) for cls in classes if cls.wanted(cfg, models)]
