"""The held-out judge: a CLIP that did not guide the run scores whole images against the prompt (cosine), optionally
with a LAION aesthetic head (one linear layer on its unit image embedding), beside the guides' own cosine; all under
no_grad, off the loss."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor, nn

from ..errors import VqclipError
from .checkpoints import load_state_dict
from .clip import ClipModel


class AestheticHead(nn.Module):
    """LAION-AI/aesthetic-predictor's head: `nn.Linear(D, 1)` on a unit CLIP image embedding [B,D] -> scores [B]."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 1)

    def forward(self, feats: Tensor) -> Tensor:
        return self.linear(feats.to(self.linear.weight.dtype)).squeeze(-1)


def load_aesthetic(path: str | Path, dim: int, device: torch.device | str = "cpu") -> AestheticHead:
    """An aesthetic head from its published file (a torch state dict {weight [1,D], bias [1]}, read weights-only, or
    the same in .safetensors) for a judge whose embedding has `dim` dimensions; one line of error when it does not
    fit."""
    state = load_state_dict(path)
    weight, bias = state.get("weight"), state.get("bias")
    if weight is None or bias is None or set(state) != {"weight", "bias"}:
        raise VqclipError(f"{path}: not an aesthetic head (expected exactly the tensors weight [1,D] and bias [1], got "
                          f"{', '.join(sorted(state)) or 'none'})")
    if tuple(weight.shape) != (1, dim) or tuple(bias.shape) != (1,):
        raise VqclipError(f"{path}: an aesthetic head for a {weight.shape[-1]}-d embedding, but the judge's is "
                          f"{dim}-d; use the head made for the judge's CLIP")
    head = AestheticHead(dim)
    head.linear.load_state_dict({"weight": weight.float(), "bias": bias.float()})
    return head.to(device).eval().requires_grad_(False)


@dataclass
class Judge:
    """Scores images against the job's texts: the judge CLIP's cosine (and the aesthetic head's score, when there
    is one), and the guides' weighted cosine for comparison. `texts` are (text, weight) with weight > 0."""

    clip: ClipModel
    texts: list[tuple[str, float]]
    guides: list[tuple[ClipModel, float]]
    aesthetic: Optional[AestheticHead] = None
    name: str = ""
    aesthetic_name: Optional[str] = None

    def __post_init__(self):
        if not self.texts:
            raise VqclipError("output.judge: the prompt has no text with a positive weight for the judge to score")
        self._targets: dict[int, Tensor] = {}

    def _cosine(self, clip: ClipModel, feats: Tensor) -> Tensor:
        """Weighted mean cosine [B] of one CLIP's unit image embeddings [B,D] to the texts."""
        if id(clip) not in self._targets:  # each CLIP embeds the texts once
            weights = torch.tensor([w for _, w in self.texts], device=clip.mean.device)
            self._targets[id(clip)] = (clip.encode_text([t for t, _ in self.texts]), weights / weights.sum())
        target, weights = self._targets[id(clip)]
        return (feats @ target.t()) @ weights

    @staticmethod
    def _embed(clip: ClipModel, images: Tensor) -> Tensor:
        """Unit embeddings [B,D] of whole images [B,3,H,W] in [0,1], prepared as open_clip's eval transform does."""
        return clip.embed_images(images.to(clip.mean.device).float().clamp(0, 1))

    @torch.no_grad()
    def score(self, images: Tensor) -> list[dict]:
        """{judge, aesthetic, guide} per image of a batch [B,3,H,W] in [0,1] (aesthetic None without a head, guide
        None without guides)."""
        feats = self._embed(self.clip, images)
        judge = self._cosine(self.clip, feats).tolist()
        aesthetic = [None] * len(judge)
        if self.aesthetic is not None:
            aesthetic = self.aesthetic(feats).tolist()
        guide: list = [None] * len(judge)
        total = sum(w for _, w in self.guides if w > 0)
        if total > 0:
            parts = [self._cosine(clip, self._embed(clip, images)) * (w / total) for clip, w in self.guides if w > 0]
            guide = torch.stack(parts).sum(0).tolist()
        return [{"judge": float(j), "aesthetic": a, "guide": g} for j, a, g in zip(judge, aesthetic, guide)]
