"""Monocular depth for the 3D camera: Depth-Anything-V2-Small (Yang et al. 2024, Apache-2.0), a DINOv2 ViT-S/14
(timm's `vit_small_patch14_dinov2`) and a DPT head, laid out key for key as the published
`depth_anything_v2_vits.pth`, so that file loads with `strict=True`.

timm is an optional extra (`pip install 'vqclip[depth]'`), imported only inside the builder: importing this module,
or running anything but a 3D zoom, loads no timm. Weights are read without running code (`checkpoints`).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import VqclipError, reason
from ..models.auxmodels import aux_file
from .checkpoints import load_state_dict

PATCH = 14
LAYERS = (2, 5, 8, 11)  # the ViT-S blocks whose outputs the DPT head reads (the original's `vits` entry)
FEATURES, OUT_CHANNELS = 64, (48, 96, 192, 384)  # the published Small model's head widths
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet, as the original normalises its input
POS_OFFSET = 0.1  # DINOv2's offset on the target grid when its 37x37 position table is resized (bicubic)


def timm_module():
    """The timm package, or a one-line error saying how to install it."""
    try:
        import timm  # here: an optional extra, loaded only when the depth model is built
    except ImportError:
        raise VqclipError("the 3D camera's depth model needs timm, which is not installed; "
                          "pip install 'vqclip[depth]'") from None
    return timm


class ResidualConvUnit(nn.Module):
    """x + conv2(relu(conv1(relu(x)))) at `features` channels: [B,C,h,w] -> [B,C,h,w]."""

    def __init__(self, features: int):
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + x


class FusionBlock(nn.Module):
    """DPT's feature fusion: (coarser path + refined skip), refined again, resized (bilinear, corners aligned) to
    `size` (default 2x), then a 1x1 conv: [B,C,h,w] -> [B,C,H,W]."""

    def __init__(self, features: int):
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size=None) -> torch.Tensor:
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        resize = {"scale_factor": 2} if size is None else {"size": tuple(size)}
        return self.out_conv(F.interpolate(x, **resize, mode="bilinear", align_corners=True))


class DPTHead(nn.Module):
    """Four ViT token maps [B,N,dim] (N = ph*pw) -> relative inverse depth [B,1,14ph,14pw], >= 0."""

    def __init__(self, dim: int = 384, features: int = FEATURES, out_channels=OUT_CHANNELS):
        super().__init__()
        c1, c2, c3, c4 = out_channels
        self.projects = nn.ModuleList(nn.Conv2d(dim, c, 1) for c in out_channels)
        self.resize_layers = nn.ModuleList([nn.ConvTranspose2d(c1, c1, 4, stride=4),  # 4x, 2x, 1x, 1/2x
                                            nn.ConvTranspose2d(c2, c2, 2, stride=2), nn.Identity(),
                                            nn.Conv2d(c4, c4, 3, stride=2, padding=1)])
        self.scratch = nn.Module()
        for i, c in enumerate(out_channels, 1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(c, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FusionBlock(features))
        self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        self.scratch.output_conv2 = nn.Sequential(nn.Conv2d(features // 2, 32, 3, padding=1), nn.ReLU(True),
                                                  nn.Conv2d(32, 1, 1), nn.ReLU(True), nn.Identity())

    def forward(self, tokens: list[torch.Tensor], ph: int, pw: int) -> torch.Tensor:
        maps = []
        for x, project, resize in zip(tokens, self.projects, self.resize_layers):
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], ph, pw)
            maps.append(resize(project(x)))
        s = self.scratch
        l1, l2, l3, l4 = s.layer1_rn(maps[0]), s.layer2_rn(maps[1]), s.layer3_rn(maps[2]), s.layer4_rn(maps[3])
        path = s.refinenet4(l4, size=l3.shape[2:])
        path = s.refinenet3(path, l3, size=l2.shape[2:])
        path = s.refinenet2(path, l2, size=l1.shape[2:])
        path = s.refinenet1(path, l1)
        out = F.interpolate(s.output_conv1(path), (ph * PATCH, pw * PATCH), mode="bilinear", align_corners=True)
        return s.output_conv2(out)  # ends in the published ReLU: >= 0


def pos_embed_for(table: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """DINOv2's position table [1,1+37*37,dim] for a ph x pw patch grid: [1,1+ph*pw,dim]. The patch part is resized
    bicubically by the scale (ph+0.1)/37, (pw+0.1)/37 as DINOv2 does (not timm's resize to the exact size), so the
    published weights see what they were trained with; the grid it was trained at is returned as is."""
    n = table.shape[1] - 1
    side = int(math.sqrt(n))
    if ph * pw == n and ph == pw:
        return table
    cls, grid = table[:, :1], table[:, 1:].float().reshape(1, side, side, -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((ph + POS_OFFSET) / side, (pw + POS_OFFSET) / side), mode="bicubic",
                         antialias=False)
    if tuple(grid.shape[-2:]) != (ph, pw):
        raise ValueError(f"position table resized to {tuple(grid.shape[-2:])}, not the grid {(ph, pw)}")
    return torch.cat([cls, grid.permute(0, 2, 3, 1).reshape(1, ph * pw, -1).to(table.dtype)], dim=1)


class DepthAnythingV2(nn.Module):
    """Depth-Anything-V2-Small: `pretrained` (timm's DINOv2 ViT-S/14, plus the unused `mask_token` the published
    file holds) and `depth_head` (DPT). Normalised image [B,3,14ph,14pw] -> inverse depth [B,1,14ph,14pw]."""

    def __init__(self):
        super().__init__()
        timm = timm_module()
        self.pretrained = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0,
                                            dynamic_img_size=True)
        self.pretrained.mask_token = nn.Parameter(torch.zeros(1, self.pretrained.embed_dim))
        self.depth_head = DPTHead(self.pretrained.embed_dim)

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The final-norm'd patch tokens [B,ph*pw,dim] after each block of LAYERS (class token dropped)."""
        vit = self.pretrained
        ph, pw = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = vit.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([vit.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + pos_embed_for(vit.pos_embed, ph, pw)
        found = []
        for i, block in enumerate(vit.blocks):
            tokens = block(tokens)
            if i in LAYERS:
                found.append(vit.norm(tokens)[:, 1:])
        return found

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ph, pw = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        return self.depth_head(self.features(x), ph, pw)


def input_size(h: int, w: int, size: int) -> tuple[int, int]:
    """The network's input (H, W) for an h x w image at side `size`: the aspect kept, the shorter side at least
    `size`, each side the nearest multiple of 14 (rounded up where nearest falls below `size`), as the original's
    `Resize(keep_aspect_ratio, lower_bound, ensure_multiple_of=14)`."""
    scale = max(size / h, size / w)

    def multiple(x: float) -> int:
        y = round(x / PATCH) * PATCH
        return y if y >= size else math.ceil(x / PATCH) * PATCH

    return multiple(scale * h), multiple(scale * w)


class DepthModel:
    """A loaded depth model: `model(image [B,3,H,W] in [0,1], size)` -> relative inverse depth [B,1,H,W] (larger is
    nearer, >= 0), one forward pass at input side `size` (a multiple of 14), outside autograd."""

    def __init__(self, net: nn.Module, name: str):
        self.net, self.name = net, name

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def __call__(self, image: torch.Tensor, size: int) -> torch.Tensor:
        if isinstance(size, bool) or not isinstance(size, int) or size < PATCH or size % PATCH:
            raise VqclipError(f"depth input size {size!r}: must be a positive multiple of {PATCH} (e.g. 518)")
        if image.dim() != 4 or image.shape[1] != 3:
            raise ValueError(f"expected an image [B,3,H,W], got {tuple(image.shape)}")
        h, w = image.shape[-2:]
        with torch.no_grad():
            x = image.detach().to(self.device, torch.float32)
            x = F.interpolate(x, input_size(h, w, size), mode="bicubic", align_corners=False)
            mean, std = (torch.tensor(v, device=x.device).view(1, 3, 1, 1) for v in (MEAN, STD))
            depth = self.net((x - mean) / std)
            return F.interpolate(depth, (h, w), mode="bilinear", align_corners=True)


def load_depth(name_or_path: str, device: torch.device | str = "cpu", home_dir: Path | None = None) -> DepthModel:
    """The depth model of a preset name (fetched once and checked, `auxmodels.aux_file`) or a weights file (.pth or
    .safetensors), read without running code; a one-line error for a missing, unsafe or mismatched file."""
    timm_module()  # say a missing extra before reading 99 MB
    path = aux_file(name_or_path, kind="depth", home_dir=home_dir)
    state = load_state_dict(path)  # weights only: a hostile pickle is refused, never run
    with torch.device("meta"):  # no random init of 24.8M weights that the file replaces (seconds on a CPU)
        net = DepthAnythingV2()
    own = net.state_dict()
    lacking, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if lacking or extra:
        what = (f"lacks {len(lacking)} key(s), e.g. '{lacking[0]}'" if lacking
                else f"has {len(extra)} unknown key(s), e.g. '{extra[0]}'")
        raise VqclipError(f"{path}: not Depth-Anything-V2-Small weights ({what}); use depth_anything_v2_vits.pth")
    wrong = next((k for k in own if tuple(state[k].shape) != tuple(own[k].shape)), None)
    if wrong is not None:
        raise VqclipError(f"{path}: not Depth-Anything-V2-Small weights ('{wrong}' is {tuple(state[wrong].shape)}, "
                          f"expected {tuple(own[wrong].shape)}); use depth_anything_v2_vits.pth")
    try:
        net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True, assign=True)
    except RuntimeError as exc:
        raise VqclipError(f"{path}: weights that do not fit Depth-Anything-V2-Small ({reason(exc)})") from None
    net.eval().requires_grad_(False).to(torch.device(device))
    return DepthModel(net, Path(path).name)
