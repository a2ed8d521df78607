"""The VQGAN: a taming VQModel or GumbelVQ built from its published YAML (taming.modules only) and weights read
without running code, reduced to what generation needs."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import torch
import yaml
from taming.modules.diffusionmodules.model import Decoder, Encoder
from taming.modules.vqvae.quantize import GumbelQuantize, VectorQuantizer2
from torch import Tensor, nn

from ..errors import VqclipError, missing, reason
from ..files.jobyaml import load_value
from .checkpoints import load_state_dict
from .quantize import codes_to_latent, nearest_codes

log = logging.getLogger("vqclip")

VQ_TARGETS = ("taming.models.vqgan.VQModel", "taming.models.vqgan.GumbelVQ")
WRAPPER_TARGET = "taming.models.cond_transformer.Net2NetTransformer"  # sflckr/coco: the VQGAN is its first stage
TRAINING_ONLY = ("loss.", "quantize.used", "colorize", "temperature_scheduler")
DDCONFIG_KEYS = ("ch", "out_ch", "ch_mult", "num_res_blocks", "attn_resolutions", "in_channels", "resolution",
                 "z_channels")


class VQGAN(nn.Module):
    """A taming VQModel/GumbelVQ reduced to what generation needs (no training loss): encode, codebook, decode."""

    def __init__(self, ddconfig: dict, n_embed: int, embed_dim: int, gumbel: bool = False):
        super().__init__()
        z_channels = ddconfig["z_channels"]
        self.encoder = Encoder(**ddconfig)
        with contextlib.redirect_stdout(io.StringIO()):  # taming's Decoder prints the latent shape
            self.decoder = Decoder(**ddconfig)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        if gumbel:
            self.quantize = GumbelQuantize(z_channels, embed_dim, n_embed=n_embed)
        else:
            self.quantize = VectorQuantizer2(n_embed, embed_dim, beta=0.25)
        self.gumbel = gumbel
        self.factor = 2 ** (len(ddconfig["ch_mult"]) - 1)
        self.n_embed, self.embed_dim = n_embed, embed_dim

    @property
    def codebook(self) -> Tensor:
        """The code vectors, [n_embed, embed_dim]."""
        return (self.quantize.embed if self.gumbel else self.quantize.embedding).weight

    def encode(self, image: Tensor) -> Tensor:
        """Image [B,3,H,W] in [0,1] (H, W multiples of `factor`) -> nearest code vectors [B,E,H/f,W/f]."""
        h = self.quant_conv(self.encoder(image * 2 - 1))
        codes = self.quantize.proj(h).argmax(1) if self.gumbel else nearest_codes(h, self.codebook)
        return codes_to_latent(codes, self.codebook).to(image.dtype)

    def encode_continuous(self, image: Tensor) -> Tensor:
        """Image [B,3,H,W] in [0,1] -> the encoder's pre-quantization latent [B,E,H/f,W/f] (VQModel only)."""
        if self.gumbel:
            return self.encode(image)
        return self.quant_conv(self.encoder(image * 2 - 1))

    def decode(self, z_q: Tensor) -> Tensor:
        """Quantized latent [B,E,h,w] -> image [B,3,h*f,w*f], nominally in [0,1] (not clamped)."""
        return self.decoder(self.post_quant_conv(z_q)).add(1).div(2)


def _read_yaml(path: Path) -> dict:
    """A YAML file as plain containers, or a one-line error."""
    if not path.is_file():
        raise VqclipError(f"{missing(path, 'file')}; check the VQGAN config path")
    try:
        data = load_value(path.read_text(encoding="utf-8"), str(path))  # bounded: no alias bomb
    except (yaml.YAMLError, ValueError, OSError) as exc:
        raise VqclipError(f"{path}: not valid YAML ({reason(exc)})") from None
    if not isinstance(data, dict):
        raise VqclipError(f"{path}: expected a taming model YAML with a top-level `model:` mapping")
    return data


def vqgan_spec(config_path: str | Path) -> tuple[dict, int, int, bool, str]:
    """(ddconfig, n_embed, embed_dim, gumbel, state-dict prefix) from a taming model YAML."""
    path = Path(config_path)
    model = _read_yaml(path).get("model")
    prefix = ""
    if isinstance(model, dict) and model.get("target") == WRAPPER_TARGET:
        wrapper = model.get("params")
        model, prefix = wrapper.get("first_stage_config") if isinstance(wrapper, dict) else None, "first_stage_model."
    if not isinstance(model, dict) or model.get("target") not in VQ_TARGETS:
        target = model.get("target") if isinstance(model, dict) else None
        raise VqclipError(f"{path}: model.target is {target!r}; vqclip loads {', '.join(VQ_TARGETS)} "
                          f"(or {WRAPPER_TARGET} wrapping one)")
    params = model.get("params") or {}
    if not isinstance(params, dict):
        raise VqclipError(f"{path}: model.params must be a mapping; use the YAML published with the checkpoint")
    dd = params.get("ddconfig")
    missing = [k for k in ("n_embed", "embed_dim") if not isinstance(params.get(k), int)]
    missing += [f"ddconfig.{k}" for k in DDCONFIG_KEYS if not isinstance(dd, dict) or k not in dd]
    if missing:
        raise VqclipError(f"{path}: model.params lacks {', '.join(missing)}; use the YAML published with the checkpoint")
    gumbel = model["target"].endswith("GumbelVQ")
    if gumbel and params["embed_dim"] != dd["z_channels"]:
        raise VqclipError(f"{path}: GumbelVQ needs embed_dim == ddconfig.z_channels")
    return dict(dd), params["n_embed"], params["embed_dim"], gumbel, prefix


def load_vqgan(config_path: str | Path, checkpoint_path: str | Path, device: str | torch.device = "cpu") -> VQGAN:
    """A frozen VQGAN from a taming YAML + `.ckpt`/`.safetensors`; training-only keys are ignored, a mismatch is one line."""
    ddconfig, n_embed, embed_dim, gumbel, prefix = vqgan_spec(config_path)
    state = load_state_dict(checkpoint_path, cache=True)
    if prefix:
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    try:
        model = VQGAN(ddconfig, n_embed, embed_dim, gumbel)
    except Exception as exc:  # taming checks nothing: odd values fail anywhere (ch_mult: [], n_embed: 0, ...)
        raise VqclipError(f"{config_path}: model.params do not build a taming VQGAN ({reason(exc)})") from None
    expected = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(TRAINING_ONLY)}
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        first = (f"{wrong[0]} is {list(state[wrong[0]].shape)} in the weights but {list(expected[wrong[0]].shape)} "
                 "in the config" if wrong else f"e.g. {(missing or unexpected)[0]}")
        raise VqclipError(
            f"{checkpoint_path} does not match {config_path}: {len(missing)} missing, {len(unexpected)} unexpected, "
            f"{len(wrong)} mis-shaped tensors ({first}); use the YAML published with this checkpoint"
        )
    model.load_state_dict({k: state[k] for k in expected})
    return model.to(device).eval().requires_grad_(False)
