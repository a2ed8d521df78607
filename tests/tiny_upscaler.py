"""Random-weight upscalers in the key layouts Real-ESRGAN publishes (SRVGGNetCompact `body.N.*`; RRDBNet
`conv_first`, `body.N.rdbM.convK`, `conv_body`, `conv_up1/2`, `conv_hr`, `conv_last`), written with torch.save as
bare state dicts or wrapped in `params_ema`, so the loader and spandrel's detection run offline."""

from __future__ import annotations

from pathlib import Path

import torch


def _conv(g: torch.Generator, out_ch: int, in_ch: int, std: float) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(out_ch, in_ch, 3, 3, generator=g) * std, torch.randn(out_ch, generator=g) * 0.01


def compact_state(num_feat: int = 8, num_conv: int = 4, scale: int = 4, seed: int = 0) -> dict[str, torch.Tensor]:
    """SRVGGNetCompact (realesr-general-x4v3's network): conv, PReLU, num_conv x (conv, PReLU), conv, pixel shuffle."""
    g = torch.Generator().manual_seed(seed)
    state, index, in_ch = {}, 0, 3
    for _ in range(num_conv + 1):
        state[f"body.{index}.weight"], state[f"body.{index}.bias"] = _conv(g, num_feat, in_ch, (2 / (9 * in_ch)) ** .5)
        state[f"body.{index + 1}.weight"] = torch.full((num_feat,), 0.25)  # PReLU
        index, in_ch = index + 2, num_feat
    state[f"body.{index}.weight"], state[f"body.{index}.bias"] = _conv(g, 3 * scale * scale, num_feat, 0.05)
    return state


def rrdb_state(num_feat: int = 8, num_block: int = 1, grow: int = 32, scale: int = 4,
               seed: int = 0) -> dict[str, torch.Tensor]:
    """RRDBNet as Real-ESRGAN's RealESRGAN_x4plus (23 blocks, 64 features, 32 growth) with these sizes; scale 2 takes
    a pixel-unshuffled input (12 channels), as RealESRGAN_x2plus does. spandrel reads only grow = 32 (as published)."""
    g = torch.Generator().manual_seed(seed)
    in_ch = 3 * (4 // scale) ** 2
    state = {}
    he = lambda fan_in: (2 / (9 * fan_in)) ** .5  # noqa: E731 - activations keep their scale through the blocks
    state["conv_first.weight"], state["conv_first.bias"] = _conv(g, num_feat, in_ch, he(in_ch))
    for b in range(num_block):
        for r in (1, 2, 3):
            for k in range(1, 6):
                out_ch = num_feat if k == 5 else grow
                key = f"body.{b}.rdb{r}.conv{k}"
                state[f"{key}.weight"], state[f"{key}.bias"] = _conv(g, out_ch, num_feat + (k - 1) * grow,
                                                                   he(num_feat + (k - 1) * grow))
    for name in ("conv_body", "conv_up1", "conv_up2", "conv_hr"):
        state[f"{name}.weight"], state[f"{name}.bias"] = _conv(g, num_feat, num_feat, he(num_feat))
    state["conv_last.weight"], state["conv_last.bias"] = _conv(g, 3, num_feat, 0.3 * he(num_feat))
    state["conv_last.bias"] += 0.5  # outputs around mid-grey, not clamped to black
    return state


def save_upscaler(path: Path, state: dict[str, torch.Tensor], ema: bool = False) -> Path:
    """`state` saved as Real-ESRGAN releases it: torch.save of the dict, or of {'params_ema': dict}."""
    torch.save({"params_ema": state} if ema else state, path)
    return Path(path)
