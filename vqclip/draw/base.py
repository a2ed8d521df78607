"""What every image model ("drawer") gives the run: parameters [B,...] that the optimiser changes, a random start, a
start from an image, the image [B,3,H,W] in [0,1] they show (with gradient), the projection after each step, and its
speed/memory plan. A drawer is built once per job; it holds no run state (the parameters live in `RunState`)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..nets.memory import plan_memory
from ..optim.masks import to_cells


class Drawer:
    """The base of every drawer: the job's size, device and precision, and the memory plan of its CLIP scoring.

    Args:
        cfg: the resolved job (`GenerateConfig`).
        models: its loaded networks (`models.vqgan` is None for a drawer that needs none).
        device: where the parameters live.
        width, height: the image size, a multiple of `size_factor`.
        amp: the run's autocast dtype, or None for fp32.
        batch: how many starts are optimised together (best of n).
    """

    name = ""
    decoder = None  # a network whose activations the memory plan counts (the VQGAN's decoder), or None
    lean = False  # decodes with vqclip.nets.lean (frozen VQGAN weights)
    channels_last = False

    @classmethod
    def size_factor(cls, cfg, models) -> int:
        """Image pixels per parameter cell: the job's size is rounded to a multiple of it."""
        return 1

    def __init__(self, cfg, models, device: torch.device, width: int, height: int, amp: Optional[torch.dtype] = None,
                 batch: int = 1):
        self.cfg, self.models, self.device = cfg, models, device
        self.width, self.height, self.amp = width, height, amp
        self.factor = self.size_factor(cfg, models)
        self.setup()
        # CLIP's share of a step's memory, and the decoder's where there is one: checkpointing and micro-batches
        self.checkpoint, self.micro_batch = plan_memory(
            cfg.memory, self.decoder, (height // self.factor, width // self.factor),
            [clip for clip, _ in models.clips], cfg.cutouts.n, cfg.micro_batch, 2 if amp else 4, device, batch=batch)
        self.plan()

    def setup(self) -> None:
        """What the drawer reads from the job and models before the memory plan (its decoder, its constants)."""

    def plan(self) -> None:
        """What the drawer prepares once the memory plan is known (a compiled decoder)."""

    def random(self, starts: int, rng: torch.Generator) -> Tensor:
        """`starts` random starts [starts,...] on the device, drawn from the run's generator."""
        raise NotImplementedError

    def encode(self, image: Tensor) -> Tensor:
        """The parameters [B,...] that show image [B,3,H,W] in [0,1] (as near as the drawer can)."""
        raise NotImplementedError

    def decode(self, params: Tensor) -> Tensor:
        """The image [B,3,H,W] in [0,1] of parameters [B,...], differentiable in them."""
        raise NotImplementedError

    @torch.no_grad()
    def project(self, params: Tensor) -> None:
        """Bring the parameters back into their box in place after an optimiser step (default: no box)."""

    def cells(self, mask: Tensor) -> Optional[Tensor]:
        """An edit's mask [1,1,H,W] at the parameters' cells [1,1,H/f,W/f] (each the largest value it covers), which
        scales their gradient; None where a parameter is no place in the image (fft: each moves every pixel)."""
        return to_cells(mask, self.factor)

    def speed_options(self) -> dict:
        """The drawer's speed/memory choices in effect (for benchmarks and logs); none of its own by default."""
        return {}
