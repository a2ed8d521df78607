"""The guide term: classifier guidance (`vqclip.optim.guidance.GuideTerm`) towards the label the prompts name; the
objective aims it as the prompts change (`Objective._aim_guide`). For a tile it sees the image rolled by a random
offset, as the CLIP cutouts do, so its views do not treat the wrap as a border."""

from __future__ import annotations

from ..optim.guidance import GuideTerm
from .base import Term
from .tile import random_roll


class GuideLoss(Term):
    """`guide.weight` x the guide's cross-entropy for its aimed label; nothing while no label is aimed."""

    name = "guide"

    def __init__(self, cfg, models, device, amp=None):
        super().__init__(cfg, models, device, amp)
        self.weight = cfg.guide.weight
        self.classifier = GuideTerm(models.guide, cfg.guide.views)
        self.tile = bool(cfg.tile)

    @classmethod
    def wanted(cls, cfg, models) -> bool:
        return bool(models.guide) and cfg.guide.weight > 0

    def __call__(self, image, z, z_init, step):
        if self.classifier.label is None:
            return None
        return self.weight * self.classifier(random_roll(image) if self.tile else image, self.amp)
