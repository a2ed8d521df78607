"""Optical flow estimators behind one interface: `load_flow(method, device)` gives a `FlowModel` that maps two frames
a, b [B,3,H,W] in [0,1] to the flow a->b [B,2,H,W] in pixels (a(p) ~ b(p + flow(p)), `vqclip.optim.flowwarp`).

`dis` and `farneback` are OpenCV's (no weights; `pip install 'vqclip[flow]'`), run on the frames' grey images at
their own size, on the CPU, deterministic; `raft-small` is torchvision's RAFT (Teed and Deng, 2020) with the
weights of the `raft-small` auxiliary preset, read weights-only. cv2 and torchvision are imported only when a method
that needs them is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import VqclipError
from .checkpoints import load_state_dict

FLOW_METHODS = ("dis", "farneback", "raft-small")
RAFT_MULTIPLE = 8  # RAFT's feature maps are 1/8 of the image: its sides must be multiples of 8
RAFT_MIN_SIDE = 128  # and its 4-level correlation pyramid needs feature maps of at least 16 (torchvision's check)
RAFT_UPDATES = 12  # refinement iterations: torchvision's default, the one its published weights were tested with


def import_cv2():
    """OpenCV, or a one-line error saying how to get it."""
    try:
        import cv2  # an optional extra, only for the OpenCV flow methods
    except ImportError:
        raise VqclipError("restyle.flow dis and farneback need OpenCV: pip install 'vqclip[flow]'") from None
    return cv2


def grey_u8(image: Tensor) -> list[np.ndarray]:
    """[B,3,H,W] in [0,1] as B grey uint8 images [H,W] (ITU-R BT.601 luma, as OpenCV's RGB2GRAY)."""
    rgb = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    cv2 = import_cv2()
    return [cv2.cvtColor(np.ascontiguousarray(one), cv2.COLOR_RGB2GRAY) for one in rgb]


class FlowModel:
    """A flow estimator: `model(a, b)` [B,3,H,W] in [0,1] each -> the flow a->b [B,2,H,W] in pixels, float32 on a's
    device, computed without autograd."""

    method = ""

    def __call__(self, a: Tensor, b: Tensor) -> Tensor:
        if a.shape != b.shape or a.dim() != 4 or a.shape[1] != 3:
            raise VqclipError(f"flow: expected two frames [B,3,H,W] of one shape, got {list(a.shape)} and "
                              f"{list(b.shape)}")
        with torch.no_grad():
            return self.estimate(a, b).to(device=a.device, dtype=torch.float32)

    def estimate(self, a: Tensor, b: Tensor) -> Tensor:
        raise NotImplementedError


class OpenCVFlow(FlowModel):
    """OpenCV's DIS (Kroeger et al. 2016, the medium preset) or Farneback (2003) flow on the grey frames."""

    def __init__(self, method: str):
        self.method = method
        self.cv2 = import_cv2()

    def one(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The flow [H,W,2] (x, y) from the grey image a to b."""
        cv2 = self.cv2
        if self.method == "dis":
            return cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(a, b, None)
        return cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5,
                                            poly_sigma=1.2, flags=0)

    def estimate(self, a, b):
        flows = [self.one(x, y) for x, y in zip(grey_u8(a), grey_u8(b))]
        return torch.from_numpy(np.stack(flows)).permute(0, 3, 1, 2).contiguous()


class RaftFlow(FlowModel):
    """torchvision's RAFT-small: frames scaled to [-1,1], padded (edge pixels repeated, right and bottom) to sides
    that are multiples of 8 and at least 128; the last of its refined flows, cropped back to the frames' size."""

    method = "raft-small"

    def __init__(self, weights: Path, device: torch.device):
        from torchvision.models.optical_flow import raft_small  # only for this method: torchvision's RAFT

        self.net = raft_small(weights=None, progress=False)
        try:
            self.net.load_state_dict(load_state_dict(weights), strict=True)
        except RuntimeError as exc:
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            problem = lines[-1][:160]  # torch's first line only says that it failed; the next ones say how
            raise VqclipError(f"{weights}: not torchvision's raft_small weights ({problem}); fetch them again: "
                              "vqclip models download raft-small") from None
        self.net.eval().requires_grad_(False).to(device)
        self.device = device

    def estimate(self, a, b):
        _, _, h, w = a.shape
        ph = max(RAFT_MIN_SIDE, -(-h // RAFT_MULTIPLE) * RAFT_MULTIPLE) - h
        pw = max(RAFT_MIN_SIDE, -(-w // RAFT_MULTIPLE) * RAFT_MULTIPLE) - w
        x, y = (F.pad(t.to(self.device, torch.float32) * 2 - 1, (0, pw, 0, ph), mode="replicate") for t in (a, b))
        return self.net(x, y, num_flow_updates=RAFT_UPDATES)[-1][:, :, :h, :w]


def raft_weights(home_dir: Optional[Path] = None) -> Path:
    """The `raft-small` preset's weights file (fetched once, checked by sha256; offline and absent: one line)."""
    from ..models.auxmodels import aux_file  # only for raft-small: the auxiliary models' presets

    return aux_file("raft-small", home_dir=home_dir)


def load_flow(method: str, device, home_dir: Optional[Path] = None, *, weights: Optional[os.PathLike] = None
              ) -> FlowModel:
    """The flow estimator `method` (dis, farneback, raft-small) on `device` (OpenCV's run on the CPU); raft-small
    reads `weights` when given, else its preset's file."""
    if method in ("dis", "farneback"):
        return OpenCVFlow(method)
    if method == "raft-small":
        return RaftFlow(Path(weights) if weights else raft_weights(home_dir), torch.device(device))
    raise VqclipError(f"restyle.flow: unknown flow method {method!r}; use one of {', '.join(FLOW_METHODS)}")
