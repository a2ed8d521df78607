"""The two frozen networks: a taming VQGAN (from its YAML + weights) and one or more open_clip CLIP models."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from .checkpoints import TORCH_SUFFIXES, load_state_dict, refuse_torchscript
from .errors import VqclipError, missing, reason
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
        from taming.modules.diffusionmodules.model import Decoder, Encoder
        from taming.modules.vqvae.quantize import GumbelQuantize, VectorQuantizer2

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
        data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    except Exception as exc:  # omegaconf and yaml raise many types
        raise VqclipError(f"{path}: not valid YAML ({reason(exc)})") from None
    if not isinstance(data, dict):
        raise VqclipError(f"{path}: expected a taming model YAML with a top-level `model:` mapping")
    return data


def vqgan_spec(config_path: str | Path) -> tuple[dict, int, int, bool, str]:
    """(ddconfig, n_embed, embed_dim, gumbel, state-dict prefix) from a taming model YAML, without importing taming."""
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


OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def _unit(feats: Tensor) -> Tensor:
    """Rows scaled to unit length, in float32 at least (bf16 and fp16 autocast outputs are promoted)."""
    return nn.functional.normalize(feats.to(torch.promote_types(feats.dtype, torch.float32)), dim=-1)


PREPROCESS_KEYS = ("mean", "std", "interpolation", "resize_mode", "fill_color")  # of open_clip's PreprocessCfg


class ClipModel(nn.Module):
    """A frozen open_clip model with its tokenizer and preprocessing: texts and images in, unit vectors out.

    `preprocess` holds open_clip's own settings for the model (mean, std, interpolation, resize_mode: the tag's, or
    the architecture JSON's `preprocess_cfg`); images of any size are prepared by open_clip's eval transform built
    from them, as open_clip's `create_model_and_transforms` would prepare them."""

    def __init__(self, model: nn.Module, tokenizer, name: str, preprocess: dict | None = None):
        super().__init__()
        from open_clip.transform import PreprocessCfg, image_transform_v2

        from .speed import pack_attention  # same function, plain matmuls instead of per-token weight copies

        self.model, self.tokenizer, self.name = pack_attention(model), tokenizer, name
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        given = {k: v for k, v in (preprocess or {}).items() if k in PREPROCESS_KEYS and v is not None}
        self.preprocess_cfg = PreprocessCfg(size=self.image_size, **given)
        self.transform = image_transform_v2(self.preprocess_cfg, is_train=False)
        self.register_buffer("mean", torch.tensor(self.preprocess_cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.preprocess_cfg.std).view(1, 3, 1, 1), persistent=False)
        self.context_length = int(getattr(tokenizer, "context_length", 77))

    def tokenize(self, texts: list[str]) -> Tensor:
        """Token ids [N, context]; texts longer than CLIP's context are truncated, with a notice."""
        encode = getattr(self.tokenizer, "encode", None)
        for text in texts:
            if encode is not None and len(encode(text)) + 2 > self.context_length:
                log.info("prompt %r is longer than %s's %d tokens; it is truncated", text[:60], self.name,
                         self.context_length)
        return self.tokenizer(texts).to(self.mean.device)

    def encode_text(self, texts: list[str]) -> Tensor:
        """Texts -> unit embeddings [N,D], float32 (float64 for a float64 model)."""
        return _unit(self.model.encode_text(self.tokenize(list(texts))))

    def encode_image(self, images: Tensor) -> Tensor:
        """Images [B,3,S,S] in [0,1] at `image_size` (cutouts) -> unit embeddings [B,D], float32."""
        return self.encode_normalized((images - self.mean.to(images.dtype)) / self.std.to(images.dtype))

    def encode_normalized(self, x: Tensor) -> Tensor:
        """Images [B,3,S,S] already normalised by `preprocess` -> unit embeddings [B,D], float32 (float64 for a float64
        model and input: gradcheck)."""
        return _unit(self.model.encode_image(x))

    def preprocess(self, images) -> Tensor:
        """PIL images, or [3,H,W] / [B,3,H,W] tensors in [0,1] of any size -> [B,3,S,S] normalised as open_clip's eval
        transform of this model does it (its resize mode and interpolation), ready for `encode_normalized`. Tensors go
        through it as tensors, except for resize_mode 'longest', whose transform takes PIL images only (8-bit)."""
        if isinstance(images, Tensor):
            images = list(images) if images.dim() == 4 else [images]
        elif not isinstance(images, (list, tuple)):
            images = [images]
        if self.preprocess_cfg.resize_mode == "longest":
            from torchvision.transforms.v2.functional import to_pil_image

            images = [to_pil_image(im.detach().float().clamp(0, 1).mul(255).round().byte().cpu())
                      if isinstance(im, Tensor) else im for im in images]
        return torch.stack([self.transform(im) for im in images]).to(self.mean.device)

    def embed_images(self, images) -> Tensor:
        """PIL images or tensors in [0,1] of any size (see `preprocess`) -> unit embeddings [B,D], float32."""
        return self.encode_normalized(self.preprocess(images))


def _clip_from_json(path: Path, pretrained: str | None) -> ClipModel:
    """A CLIP built from an open_clip architecture JSON (plain or HF-style `model_cfg`) and optional weights."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise VqclipError(f"{path}: not a readable JSON architecture ({reason(exc)})") from None
    cfg = dict(data.get("model_cfg", data)) if isinstance(data, dict) else None
    if not cfg or not {"embed_dim", "vision_cfg", "text_cfg"} <= cfg.keys():
        raise VqclipError(f"{path}: an open_clip architecture needs embed_dim, vision_cfg and text_cfg")
    pre = data.get("preprocess_cfg", {}) if isinstance(data, dict) else {}
    return _clip_from_cfg(cfg, pre, pretrained, path.stem, str(path))


def _clip_from_cfg(cfg: dict, pre: dict, pretrained: str | None, name: str, source: str) -> ClipModel:
    """A CLIP built directly from an open_clip model config (no hub, no download), with optional weights."""
    import open_clip
    from open_clip.model import CLIP, CustomTextCLIP
    from open_clip.tokenizer import SimpleTokenizer

    cfg = dict(cfg)
    custom = cfg.pop("custom_text", False) or "hf_model_name" in cfg["text_cfg"]
    try:
        model = (CustomTextCLIP if custom else CLIP)(**cfg)
    except Exception as exc:  # bad keys, or timm / transformers towers (RuntimeError when missing, hub errors)
        raise VqclipError(f"{source}: open_clip cannot build this architecture ({reason(exc)})") from None
    if pretrained:
        weights = Path(pretrained)
        if not weights.is_file():
            raise VqclipError(f"{weights}: no such CLIP weights file")
        try:
            open_clip.load_checkpoint(model, str(weights), strict=True)
        except Exception as exc:  # open_clip raises RuntimeError/KeyError/UnpicklingError
            raise _weights_problem(weights, source, exc) from None
    else:
        log.info("CLIP %s has no weights: using random weights", name)
    if "hf_tokenizer_name" in cfg["text_cfg"]:
        hf_name = cfg["text_cfg"]["hf_tokenizer_name"]
        try:
            tokenizer = open_clip.tokenizer.HFTokenizer(hf_name)
        except Exception as exc:  # transformers missing, or the tokenizer not cached and no hub access
            raise VqclipError(f"{source}: cannot load its Hugging Face tokenizer '{hf_name}' ({reason(exc)}); "
                              "it needs the transformers package and the tokenizer in the local HF cache") from None
    else:
        tokenizer = SimpleTokenizer(context_length=cfg["text_cfg"].get("context_length", 77))
    pre = {**pre, "mean": pre.get("mean") or cfg["vision_cfg"].get("image_mean") or OPENAI_MEAN,
           "std": pre.get("std") or cfg["vision_cfg"].get("image_std") or OPENAI_STD}
    return ClipModel(model, tokenizer, name, pre)


def _weights_problem(weights: Path, source: str, exc: Exception) -> VqclipError:
    """Why open_clip could not load a weights file: unreadable or unsafe (as vqclip's own safe loader finds), else
    a mismatch with the architecture `source`."""
    if weights.suffix.lower() in (".safetensors", *TORCH_SUFFIXES):
        try:
            load_state_dict(weights)
        except VqclipError as problem:
            return problem
    return VqclipError(f"{weights} does not match {source}: {reason(exc, whole=True)}")


@contextlib.contextmanager
def quiet_hub_logs():
    """While open_clip fetches weights: no huggingface_hub retry warnings, and no root logger set up by open_clip's
    `logging.info()` calls (it would print every library's log lines); a failure is reported once, as a VqclipError."""
    hub, root, mute = logging.getLogger("huggingface_hub"), logging.getLogger(), logging.NullHandler()
    level = hub.level
    hub.setLevel(logging.ERROR)
    root.addHandler(mute)  # root has a handler: logging.info() and friends no longer call basicConfig()
    try:
        yield
    finally:
        hub.setLevel(level)
        root.removeHandler(mute)


def _clip_by_name(name: str, pretrained: str | None, cache_dir: str | None, like: str | None = None) -> ClipModel:
    """A CLIP from open_clip's built-in architectures, with a pretrained tag (downloaded by open_clip) or a file;
    `like` names the tag a weights file stands in for, whose preprocessing (mean, std, resize) and QuickGELU apply."""
    import open_clip

    if not pretrained:  # random weights (benchmarks): build from the config, so open_clip neither warns nor fetches
        return _clip_from_cfg(open_clip.get_model_config(name), {}, None, name, name)
    tag_cfg = open_clip.get_pretrained_cfg(name, pretrained)
    if pretrained and not tag_cfg and not Path(pretrained).is_file():
        tags = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
        raise VqclipError(f"CLIP {name}: '{pretrained}' is neither a pretrained tag (known: {tags}) nor a file")
    like_cfg = tag_cfg or (open_clip.get_pretrained_cfg(name, like) if like else {})
    preprocess = {k: like_cfg[k] for k in ("mean", "std", "interpolation", "resize_mode") if like_cfg.get(k)}
    try:
        with quiet_hub_logs():
            model = open_clip.create_model(name, pretrained=pretrained, cache_dir=cache_dir,
                                           force_quick_gelu=bool(like_cfg.get("quick_gelu")),
                                           force_preprocess_cfg=preprocess or None)
    except Exception as exc:  # downloads raise anything from OSError to huggingface_hub errors
        if not tag_cfg:  # a local weights file
            raise _weights_problem(Path(pretrained), name, exc) from None
        raise VqclipError(
            f"could not load CLIP {name} weights '{pretrained}': {reason(exc)}; check the "
            "connection, or run `vqclip models download`, or pass a local weights file as the pretrained value"
        ) from None
    pre = {**preprocess, **(getattr(model.visual, "preprocess_cfg", None) or {})}  # open_clip's, as it would use it
    pre["mean"] = pre.get("mean") or getattr(model.visual, "image_mean", None) or OPENAI_MEAN
    pre["std"] = pre.get("std") or getattr(model.visual, "image_std", None) or OPENAI_STD
    return ClipModel(model, open_clip.get_tokenizer(name), name, pre)


WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.safetensors", "open_clip_pytorch_model.bin",
                "model.safetensors", "pytorch_model.bin")


def _weights_in(folder: Path) -> str | None:
    """The CLIP weights file of a model folder: a known open_clip/HF name, else the only weights file there."""
    for name in WEIGHT_NAMES:
        if (folder / name).is_file():
            return str(folder / name)
    found = [p for ext in (".safetensors", ".bin", ".pt", ".pth") for p in sorted(folder.glob(f"*{ext}"))]
    if len(found) > 1:
        raise VqclipError(f"{folder}: several weights files ({', '.join(p.name for p in found)}); name one as pretrained")
    return str(found[0]) if found else None


def load_clip(model: str, pretrained: str | None = None, device: str | torch.device = "cpu",
              cache_dir: str | Path | None = None, like: str | None = None) -> ClipModel:
    """A frozen CLIP: `model` is an open_clip name (ViT-B-32), an architecture JSON, or a folder holding
    open_clip_config.json and its weights; `pretrained` is a tag, a weights file, or None (random weights); `like`
    is the tag a weights file stands in for (a hand-placed download), so that the tag's preprocessing applies."""
    import open_clip

    path = Path(model)
    if path.is_dir():  # a Hugging Face style folder: open_clip_config.json beside its weights
        path, pretrained = path / "open_clip_config.json", pretrained or _weights_in(path)
    if pretrained and Path(pretrained).is_file():
        refuse_torchscript(Path(pretrained))  # before open_clip, whose torch.load would warn about dispatching to JIT
    if path.suffix.lower() == ".json" or path.is_file():
        if not path.is_file():
            raise VqclipError(f"{path}: no such CLIP architecture JSON")
        clip = _clip_from_json(path, pretrained)
    elif model in open_clip.list_models():
        clip = _clip_by_name(model, pretrained, str(cache_dir) if cache_dir else None, like)
    else:
        raise VqclipError(f"unknown CLIP model '{model}': use an open_clip name such as ViT-B-32 "
                          "(see `open_clip.list_models()`) or the path of an architecture JSON")
    return clip.to(device).eval().requires_grad_(False)
