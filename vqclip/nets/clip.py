"""CLIP: frozen open_clip models with their tokenizer and open_clip's own preprocessing, built from an open_clip name
and pretrained tag, an architecture JSON and weights file, or a Hugging Face style folder; weights are read without
running code."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import open_clip
import torch
from open_clip.model import CLIP, CustomTextCLIP
from open_clip.tokenizer import HFTokenizer, SimpleTokenizer
from open_clip.transform import PreprocessCfg, image_transform_v2
from torch import Tensor, nn
from torchvision.transforms.v2.functional import to_pil_image

from ..errors import VqclipError, reason
from ..models.clipweights import quiet_hub_logs
from ..models.spec import ClipSpec, canonical_model, check_model_name
from .attention import pack_attention
from .checkpoints import TORCH_SUFFIXES, load_state_dict, refuse_torchscript

log = logging.getLogger("vqclip")

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
            tokenizer = HFTokenizer(hf_name)
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


def _clip_by_name(name: str, pretrained: str | None, cache_dir: str | None, like: str | None = None) -> ClipModel:
    """A CLIP from open_clip's built-in architectures, with a pretrained tag (downloaded by open_clip) or a file;
    `like` names the tag a weights file stands in for, whose preprocessing (mean, std, resize) and QuickGELU apply."""
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


def _clip_from_hub(repo: str, cache_dir: str | None) -> ClipModel:
    """A CLIP from a Hugging Face hub repository in open_clip's layout, loaded by open_clip (`hf-hub:ORG/REPO`)."""
    name = f"hf-hub:{repo}"
    try:
        with quiet_hub_logs():
            model = open_clip.create_model(name, cache_dir=cache_dir)
            tokenizer = open_clip.get_tokenizer(name, cache_dir=cache_dir)
    except Exception as exc:  # the hub client raises anything from OSError to its own errors
        raise VqclipError(f"could not load CLIP {name}: {reason(exc)}; check the name and the connection, or "
                          "download the repository and use local-dir:PATH") from None
    pre = dict(getattr(model.visual, "preprocess_cfg", None) or {})
    return ClipModel(model, tokenizer, repo.rsplit("/", 1)[-1], pre)


def load_clip(model: str, pretrained: str | None = None, device: str | torch.device = "cpu",
              cache_dir: str | Path | None = None, like: str | None = None) -> ClipModel:
    """A frozen CLIP from (model, pretrained) in any form `ClipSpec` reads: an open_clip name with a tag, a weights
    file or None (random weights); an architecture JSON with a weights file; a folder (`local-dir:PATH`) holding
    open_clip_config.json and its weights; `hf-hub:ORG/REPO`. `like` is the tag a weights file stands in for (a
    hand-placed download), so that the tag's preprocessing applies. OpenAI's names (ViT-B/32) are open_clip's."""
    spec = ClipSpec.parse(canonical_model(model), pretrained)
    pretrained = spec.pretrained
    if spec.form == "hub":
        clip = _clip_from_hub(spec.model, str(cache_dir) if cache_dir else None)
        return clip.to(device).eval().requires_grad_(False)
    path = Path(spec.model)
    if spec.form == "dir":
        if path.is_file():  # the path of an architecture file without the .json suffix
            spec = ClipSpec("json", spec.model, pretrained)
        elif not path.is_dir():
            raise VqclipError(f"{path}: no such CLIP folder (a folder holding open_clip_config.json and its weights)")
        else:  # a Hugging Face style folder: open_clip_config.json beside its weights
            path, pretrained = path / "open_clip_config.json", pretrained or _weights_in(path)
    if pretrained and Path(pretrained).is_file():
        refuse_torchscript(Path(pretrained))  # before open_clip, whose torch.load would warn about dispatching to JIT
    if spec.form in ("json", "dir"):
        if not path.is_file():
            raise VqclipError(f"{path}: no such CLIP architecture JSON")
        clip = _clip_from_json(path, pretrained)
    else:
        check_model_name(spec.model)
        clip = _clip_by_name(spec.model, pretrained, str(cache_dir) if cache_dir else None, like)
    return clip.to(device).eval().requires_grad_(False)
