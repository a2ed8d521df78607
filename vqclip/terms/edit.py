"""The edit term: an inpainting or outpainting job changes only the area under its mask. The gradient reaches only
the drawer's cells under the (feathered) mask, and the original is composited over the decoded image, so the
cutouts, the frames and final.png hold the original's pixels outside the mask exactly. It adds nothing to the
loss."""

from __future__ import annotations

from typing import Optional

from torch import Tensor

from ..optim.masks import Edit, composite, edit_of, wants_edit
from .base import Term


class EditTerm(Term):
    """The job's `Edit` (vqclip.optim.masks), made at the drawer's size on first use."""

    name = "edit"

    def __init__(self, cfg, models, device, amp=None):
        super().__init__(cfg, models, device, amp)
        self.edit: Optional[Edit] = None
        self.scale: Optional[Tensor] = None  # the mask at the drawer's cells [1,1,h,w], or None (fft)

    @classmethod
    def wanted(cls, cfg, models) -> bool:
        return wants_edit(cfg.init)

    def _made(self, drawer) -> Edit:
        if self.edit is None:
            edit = edit_of(self.cfg.init, self.cfg.size, drawer.width, drawer.height)
            self.edit = Edit(edit.base.to(self.device), edit.mask.to(self.device), edit.new.to(self.device))
            self.scale = drawer.cells(self.edit.mask)
        return self.edit

    def drawn(self, z: Tensor, drawer) -> Tensor:
        """z itself (exactly), with its gradient scaled by the mask at the drawer's cells."""
        self._made(drawer)
        if self.scale is None:
            return z
        held = z.detach()
        return held + (z - held) * self.scale

    def shown(self, image: Tensor) -> Tensor:
        """The original [1,3,H,W] where the mask is 0 (bit for bit), the image [B,3,H,W] where it is 1 (the edit is
        made by `drawn`, which the objective calls first)."""
        return composite(self.edit.base, image, self.edit.mask)
