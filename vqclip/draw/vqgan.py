"""The VQGAN drawer: latents z [B,E,h,w] kept in the codebook's box, quantized to their nearest codes and decoded by
the taming decoder (the lean one when its weights are frozen), under the run's autocast."""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor

from ..nets.device import amp_autocast, channels_last_decoder, compiled
from ..nets.lean import decode_latent, is_frozen
from ..nets.quantize import clamp_with_grad, codes_to_latent, vector_quantize
from .base import Drawer


def decode_image(vqgan, z: Tensor, amp: Optional[torch.dtype] = None,
                 decode: Optional[Callable[[Tensor], Tensor]] = None) -> Tensor:
    """Latent [B,E,h,w] -> image [B,3,H,W] in [0,1] as generation sees it: nearest codes in fp32 (straight-through
    gradient), then `decode` (default: the lean decoder) under autocast `amp`, clamped with gradient."""
    z_q = vector_quantize(z, vqgan.codebook)
    with amp_autocast(z_q.device.type, amp):
        image = decode(z_q) if decode else decode_latent(vqgan, z_q)
    return clamp_with_grad(image.float(), 0, 1)


def random_codes(codebook: Tensor, h: int, w: int, generator: torch.Generator) -> Tensor:
    """Uniformly random codebook entries: codebook [N,E] -> latent [1,E,h,w]."""
    codes = torch.randint(codebook.shape[0], (1, h, w), generator=generator)
    return codes_to_latent(codes.to(codebook.device), codebook)


class VQGANDrawer(Drawer):
    """Latents of the job's VQGAN; each channel kept within the codebook's range, as the notebook does."""

    name = "vqgan"

    @classmethod
    def size_factor(cls, cfg, models) -> int:
        return models.vqgan.factor

    def setup(self) -> None:
        vq = self.vqgan = self.models.vqgan
        # the latents' box: each channel within the codebook's range
        self.z_min = vq.codebook.min(0).values.view(1, -1, 1, 1).to(self.device)
        self.z_max = vq.codebook.max(0).values.view(1, -1, 1, 1).to(self.device)
        # speed: the lean decoder (frozen weights), its activations' layout
        self.lean = is_frozen(vq)
        self.channels_last = channels_last_decoder(self.cfg.decoder_layout, self.device)
        self.decoder = vq.decoder

    def plan(self) -> None:
        self._decode = compiled(self.vqgan.decode, "VQGAN decoder") if self.cfg.compile else self._decode_eager

    def _decode_eager(self, z_q: Tensor) -> Tensor:
        vq = self.vqgan
        if self.lean:
            return decode_latent(vq, z_q, self.checkpoint, self.channels_last)
        return vq.decode(z_q.contiguous(memory_format=torch.channels_last if self.channels_last
                                        else torch.contiguous_format))

    def random(self, starts: int, rng: torch.Generator) -> Tensor:
        """Each start its own uniformly random codes: [starts,E,h,w]."""
        h, w = self.height // self.factor, self.width // self.factor
        return torch.cat([random_codes(self.vqgan.codebook, h, w, rng) for _ in range(starts)]).to(self.device)

    def encode(self, image: Tensor) -> Tensor:
        """The encoder's latent [B,E,h,w] of image [B,3,H,W] in [0,1]."""
        return self.vqgan.encode(image)

    def decode(self, params: Tensor) -> Tensor:
        """The images [B,3,H,W] in [0,1] of latents [B,E,h,w], quantized straight-through."""
        return decode_image(self.vqgan, params, self.amp, self._decode)

    @torch.no_grad()
    def project(self, params: Tensor) -> None:
        """Keep each channel inside the codebook's box [z_min, z_max]."""
        params.copy_(params.maximum(self.z_min).minimum(self.z_max))

    def speed_options(self) -> dict:
        return {"lean_decoder": self.lean, "checkpoint": self.checkpoint,
                "decoder_layout": "channels_last" if self.channels_last else "nchw"}
