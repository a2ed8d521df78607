"""Tiny random VQGAN and CLIP checkpoints written in the published formats (taming YAML + Lightning .ckpt,
open_clip JSON + weights), so every loader path runs offline in seconds."""

from __future__ import annotations

import contextlib
import json
import sys
import types
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import save_file

DDCONFIG = {"double_z": False, "z_channels": 8, "resolution": 32, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
CLIP_CFG = {"embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "head_width": 32, "patch_size": 8,
                           "mlp_ratio": 2.0},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
LIGHTNING_MODULE = "pytorch_lightning.callbacks.model_checkpoint"


@contextlib.contextmanager
def fake_lightning():
    """Make `pytorch_lightning...ModelCheckpoint` picklable by reference, as the published checkpoints hold it."""
    parts = LIGHTNING_MODULE.split(".")
    names = [".".join(parts[: i + 1]) for i in range(len(parts))]
    saved = {n: sys.modules.get(n) for n in names}
    cls = type("ModelCheckpoint", (), {"__module__": LIGHTNING_MODULE})
    for n in names:
        sys.modules[n] = types.ModuleType(n)
    sys.modules[LIGHTNING_MODULE].ModelCheckpoint = cls
    try:
        yield cls
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod


def vqgan_yaml(gumbel: bool = False, ddconfig: dict | None = None, n_embed: int = 32) -> dict:
    """A taming model YAML as published (lossconfig included; vqclip never builds it)."""
    dd = dict(ddconfig or DDCONFIG)
    params = {"embed_dim": dd["z_channels"], "n_embed": n_embed, "ddconfig": dd,
              "lossconfig": {"target": "taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator",
                             "params": {"disc_conditional": False, "disc_in_channels": 3, "disc_start": 10000,
                                        "disc_weight": 0.8, "codebook_weight": 1.0}}}
    if gumbel:
        params["kl_weight"] = 1.0e-08
        params["temperature_scheduler_config"] = {
            "target": "taming.lr_scheduler.LambdaWarmUpCosineScheduler",
            "params": {"warm_up_steps": 0, "max_decay_steps": 1000001, "lr_start": 0.9, "lr_max": 0.9,
                       "lr_min": 1.0e-06}}
    target = "taming.models.vqgan.GumbelVQ" if gumbel else "taming.models.vqgan.VQModel"
    return {"model": {"base_learning_rate": 4.5e-06, "target": target, "params": params}}


def write_vqgan(folder: Path, gumbel: bool = False, fmt: str = "ckpt", seed: int = 0, name: str = "vqgan") -> tuple[Path, Path]:
    """Write `<name>.yaml` + a Lightning-1.x `.ckpt` (or `.safetensors`) of a tiny random VQGAN; return both paths."""
    from vqclip.nets.vqgan import VQGAN, vqgan_spec

    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / f"{name}.yaml"
    cfg_path.write_text(yaml.safe_dump(vqgan_yaml(gumbel)))
    torch.manual_seed(seed)
    dd, n_embed, embed_dim, gumbel_, _ = vqgan_spec(cfg_path)
    model = VQGAN(dd, n_embed, embed_dim, gumbel_)
    with torch.no_grad():  # spread the codebook so that codes differ visibly
        model.codebook.normal_(0, 1)
    state = dict(model.state_dict())
    state["loss.discriminator.main.0.weight"] = torch.randn(4, 3, 4, 4)  # training-only keys, as published
    state["loss.logvar"] = torch.zeros(())
    if fmt == "safetensors":
        ckpt = folder / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, ckpt)
        return cfg_path, ckpt
    ckpt = folder / f"{name}.ckpt"
    with fake_lightning() as model_checkpoint:
        torch.save({"epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.0.8",
                    "callbacks": {model_checkpoint: {"monitor": "val/rec_loss", "best_model_score": torch.tensor(0.3),
                                                     "best_model_path": "logs/last.ckpt", "np": np.float64(0.3)}},
                    "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-06, "params": [0, 1]}]}],
                    "lr_schedulers": [], "state_dict": state}, ckpt)
    return cfg_path, ckpt


def write_clip(folder: Path, seed: int = 0, fmt: str = "safetensors", name: str = "clip") -> tuple[Path, Path]:
    """Write an open_clip architecture JSON + random weights (`.safetensors` or `.pt`) of a tiny CLIP."""
    from open_clip.model import CLIP

    folder.mkdir(parents=True, exist_ok=True)
    cfg_path = folder / f"{name}.json"
    cfg_path.write_text(json.dumps(CLIP_CFG, indent=2))
    torch.manual_seed(seed)
    state = CLIP(**CLIP_CFG).state_dict()
    weights = folder / f"{name}.{fmt}"
    if fmt == "safetensors":
        save_file({k: v.contiguous() for k, v in state.items()}, weights)
    else:
        torch.save(state, weights)
    return cfg_path, weights
