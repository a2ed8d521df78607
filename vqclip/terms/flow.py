"""The flow term of a stabilised restyle: pulls each frame towards the previous output warped by the input's optical
flow, outside occlusions (pytti's optical-flow loss, as a mean absolute difference). The restyle aims it at each
frame (`aim`); it reads no file and computes no flow itself."""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from .base import Term


def flow_loss(image: Tensor, target: Tensor, keep: Tensor) -> Tensor:
    """The mean of |image - target| over the channels, the B images and the pixels where keep [1,1,H,W] is 1 (not
    occluded); image [B,3,H,W], target [1,3,H,W]. 0 where nothing is kept."""
    b, c = image.shape[:2]
    return (keep * (image - target).abs()).sum() / (keep.sum() * b * c).clamp(min=1)


class FlowTerm(Term):
    """`restyle.flow_weight` x `flow_loss` towards the warped previous output; nothing while not aimed (the first
    frame made has no previous one)."""

    name = "flow"

    def __init__(self, cfg, models, device, amp=None):
        super().__init__(cfg, models, device, amp)
        self.weight = cfg.restyle.flow_weight
        self.target: Optional[Tensor] = None
        self.keep: Optional[Tensor] = None

    @classmethod
    def wanted(cls, cfg, models) -> bool:
        return cfg.restyle.flow != "none" and cfg.restyle.flow_weight > 0

    def aim(self, target: Optional[Tensor], keep: Optional[Tensor]) -> None:
        """Pull towards target [1,3,H,W] in [0,1] where keep [1,1,H,W] is 1; None: pull nowhere."""
        self.target = None if target is None else target.to(self.device)
        self.keep = None if keep is None else keep.to(self.device)

    def __call__(self, image, z, z_init, step):
        if self.target is None:
            return None
        return self.weight * flow_loss(image.float(), self.target.float(), self.keep.float())
