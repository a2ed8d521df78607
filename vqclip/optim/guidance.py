"""Classifier guidance as a loss term: the guide classifier (vqclip.nets.guide) pulls the image towards the label the
prompts name, beside CLIP, as classifier guidance does in diffusion models."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..nets.device import amp_autocast
from ..nets.guide import Guide, prompt_label
from .augments import build_augments
from .cutouts import add_noise


def guide_loss(logits: Tensor, label: int) -> Tensor:
    """Mean cross-entropy of logits [N,L] against one label: small when every view shows the named label."""
    return F.cross_entropy(logits.float(), torch.full((len(logits),), label, device=logits.device))


class GuideTerm:
    """A run's classifier guidance: the label its prompts name, scored on `views` augmented views of each image
    (affine + noise, as CLIP's cutouts are, so the pull is on the shape and not on single pixels)."""

    def __init__(self, guide: Guide, views: int = 4, noise: float = 0.1):
        self.guide, self.views, self.noise = guide, views, noise
        self.augment = build_augments(["affine"])
        self.label: int | None = None

    def aim(self, texts: list[str]) -> None:
        """Take the label from the run's positive text prompts (the first label any of them names)."""
        found = [i for i in (prompt_label(t, self.guide.labels) for t in texts) if i is not None]
        self.label = found[0] if found else None

    def __call__(self, image: Tensor, amp: torch.dtype | None = None) -> Tensor:
        """Mean cross-entropy of the aimed label over the views of images [B,3,H,W] in [0,1]."""
        views = add_noise(self.augment(image.float().repeat_interleave(self.views, 0)), self.noise)
        with amp_autocast(image.device.type, amp):
            logits = self.guide(views)
        return guide_loss(logits, self.label)
