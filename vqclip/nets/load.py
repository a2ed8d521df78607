"""Loading gives models: the frozen networks of a job from its resolved files, each loaded once per process and
device (`ModelCache`), for every entry point (the CLI, the Python API, the CLIP commands, bench)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import torch

from ..models.resolve import ClipFiles, JobFiles, job_files
from .clip import ClipModel, load_clip
from .guide import Guide, load_guide
from .vqgan import VQGAN, load_vqgan


@dataclass
class Models:
    """The frozen networks of a run: one VQGAN (None for a drawer that uses none) and one or more weighted CLIP
    models."""

    vqgan: Optional[VQGAN]
    clips: list[tuple[ClipModel, float]]
    judges: list[tuple[ClipModel, float]] = field(default_factory=list)  # score best-of-n starts (default: clips)
    guide: Optional[Guide] = None  # classifier guidance (vqclip.nets.guide), when the job names one


@dataclass
class ModelCache:
    """Loaded models by their files and device, so a batch of jobs loads each network once."""

    vqgans: dict = field(default_factory=dict)
    clips: dict = field(default_factory=dict)
    guides: dict = field(default_factory=dict)

    def vqgan(self, config: str, checkpoint: str, device: torch.device) -> VQGAN:
        key = (str(config), str(checkpoint), str(device))
        if key not in self.vqgans:
            self.vqgans[key] = load_vqgan(config, checkpoint, device)
        return self.vqgans[key]

    def clip(self, files: ClipFiles, device: torch.device) -> ClipModel:
        key = (files.model, files.pretrained, str(device))
        if key not in self.clips:
            self.clips[key] = load_clip(files.model, files.pretrained, device, files.cache_dir, like=files.like)
        return self.clips[key]

    def guide(self, model: str, weights: str, device: torch.device) -> Guide:
        key = (str(model), str(weights), str(device))
        if key not in self.guides:
            self.guides[key] = load_guide(model, weights, device)
        return self.guides[key]

    def models(self, files: JobFiles, device: torch.device) -> Models:
        """The networks of a job's resolved files."""
        return Models(self.vqgan(files.vqgan_config, files.vqgan_checkpoint, device) if files.vqgan_config else None,
                      [(self.clip(c, device), c.weight) for c in files.clips],
                      [(self.clip(c, device), c.weight) for c in files.judges],
                      self.guide(*files.guide, device) if files.guide else None)


def load_models(cfg, device: torch.device, cache: Optional[ModelCache] = None) -> Models:
    """The VQGAN (named files, else the preset's, fetched once), the weighted CLIP models and the guide of a job
    (`GenerateConfig`)."""
    return (cache or ModelCache()).models(job_files(cfg), device)
