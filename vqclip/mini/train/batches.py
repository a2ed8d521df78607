"""Scenes as training batches: uint8 images to tensors, and CLIP's input normalisation."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from vqclip.nets.clip import OPENAI_MEAN, OPENAI_STD

_MEAN, _STD = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1), torch.tensor(OPENAI_STD).view(1, 3, 1, 1)


def to_tensor(imgs: np.ndarray) -> Tensor:
    """uint8 images [B,H,W,3] -> float [B,3,H,W] in [0,1] (read-only arrays are copied, not warned about)."""
    return torch.from_numpy(imgs if imgs.flags.writeable else imgs.copy()).permute(0, 3, 1, 2).float() / 255


def normalize(x: Tensor) -> Tensor:
    """Images [B,3,H,W] in [0,1] -> the CLIP input (OpenAI mean/std), as `ClipModel.encode_image` does it."""
    return (x - _MEAN) / _STD


