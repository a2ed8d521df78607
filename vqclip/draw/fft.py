"""The fft drawer: the image as a Fourier spectrum with decorrelated colour, as Lucid's `fft_image` and aphantasia
draw it. The parameters are the real parts (channels 0-2) and imaginary parts (3-5) of each colour channel's rfft2
spectrum, [B,6,H,W//2+1] (four dimensions, as every drawer's parameters and state.pt are); each frequency f is scaled
by 1 / max(f, 1/max(H,W))^decay * sqrt(H*W) (low frequencies move first), inverted with irfft2, divided by 4, mixed
by Lucid's colour decorrelation matrix and squashed by a sigmoid into [0,1].

Two departures from Lucid, measured on mini (benchmarks/mini_quality.py, docs/looks.md): each column of the colour
matrix has unit length (Lucid divides by the largest, which leaves the two colour directions at 0.28 and 0.13 of the
brightness one, so brightness moves 3.6-7.5x faster than hue and objects come out the background's mix or black),
and frequencies above `drawer.cutoff` cycles per pixel keep their start values (no gradient reaches them: decoding
and encoding stay exact, only the optimiser leaves fine detail alone)."""

from __future__ import annotations

import torch
from torch import Tensor

from .base import Drawer

#: Lucid's square root of the ImageNet colour correlation (rows: R, G, B); each column is normalised to unit length
COLOR_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
MAGIC = 4.0  # Lucid's divisor of the inverse transform
START_SD = 0.01  # Lucid's standard deviation of a random spectrum
EDGE = 0.05  # an image encoded as a start is kept within [EDGE, 1 - EDGE]: its logits stay where the sigmoid moves


def color_matrix(device=None) -> Tensor:
    """The colour mixing matrix [3,3]: decorrelated channels -> RGB logits, each channel's column of unit length (so
    brightness and the two colour directions move at the same speed)."""
    m = torch.tensor(COLOR_SQRT, dtype=torch.float32, device=device)
    return m / m.norm(dim=0)


def frequencies(height: int, width: int, device=None) -> Tensor:
    """The radial frequency [H,W//2+1] of each rfft2 coefficient, in cycles per pixel."""
    fy = torch.fft.fftfreq(height, device=device)[:, None]
    fx = torch.fft.rfftfreq(width, device=device)[None, :]
    return (fx * fx + fy * fy).sqrt()


def spectrum_scale(height: int, width: int, decay: float, device=None) -> Tensor:
    """The scale [H,W//2+1] of each rfft2 frequency: 1 / max(f, 1/max(H,W))^decay * sqrt(H*W)."""
    return frequencies(height, width, device).clamp(min=1.0 / max(width, height)).pow(-decay) * (width * height) ** 0.5


def moving(height: int, width: int, cutoff: float, device=None) -> Tensor:
    """[H,W//2+1] bool: the rfft2 frequencies at most `cutoff` cycles per pixel (radially), the ones a run moves."""
    return frequencies(height, width, device) <= cutoff


def fft_image(params: Tensor, scale: Tensor, height: int, width: int, moves: Tensor | None = None) -> Tensor:
    """Spectrum [B,6,H,W//2+1] (3 real, 3 imaginary parts) -> image [B,3,H,W] in (0,1); with `moves` [H,W//2+1]
    (bool) the gradient reaches only the frequencies it marks (the value is the same)."""
    if moves is not None:
        params = torch.where(moves, params, params.detach())
    spectrum = torch.complex(params[:, :3], params[:, 3:]) * scale
    x = torch.fft.irfft2(spectrum, s=(height, width)) / MAGIC
    return torch.sigmoid(torch.einsum("ij,bjhw->bihw", color_matrix(params.device), x))


def fft_params(image: Tensor, scale: Tensor) -> Tensor:
    """The inverse of `fft_image`: image [B,3,H,W] in [0,1] (kept within [EDGE, 1-EDGE]) -> spectrum
    [B,6,H,W//2+1]."""
    logits = torch.logit(image.float().clamp(EDGE, 1 - EDGE))
    x = torch.einsum("ij,bjhw->bihw", torch.linalg.inv(color_matrix(image.device)), logits) * MAGIC
    spectrum = torch.fft.rfft2(x) / scale
    return torch.cat([spectrum.real, spectrum.imag], 1).contiguous()


class FFTDrawer(Drawer):
    """A Fourier-parameterised image; `drawer.decay` sets how much faster low frequencies move than high ones."""

    name = "fft"

    def setup(self) -> None:
        self.scale = spectrum_scale(self.height, self.width, self.cfg.drawer.decay, self.device)
        self.moves = moving(self.height, self.width, self.cfg.drawer.cutoff, self.device)

    def random(self, starts: int, rng: torch.Generator) -> Tensor:
        """A small random spectrum (sd 0.01 before scaling): a grey image with faint low-frequency colour."""
        shape = (starts, 6, self.height, self.width // 2 + 1)
        return (torch.randn(shape, generator=rng) * START_SD).to(self.device)

    def encode(self, image: Tensor) -> Tensor:
        return fft_params(image, self.scale)

    def decode(self, params: Tensor) -> Tensor:
        return fft_image(params, self.scale, self.height, self.width, self.moves)

    def cells(self, mask: Tensor) -> None:
        """Every frequency moves every pixel: an edit's mask cannot hold part of the spectrum still (the composite
        alone keeps the pixels outside it)."""
        return None

    def speed_options(self) -> dict:
        return {"decay": self.cfg.drawer.decay, "cutoff": self.cfg.drawer.cutoff}
