"""Write trained mini weights as shipped: fp16 safetensors beside their config, each file replaced atomically."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from vqclip.files.atomic import atomic_path, write_text


def export_fp16(model: nn.Module, out_dir: Path, weights_name: str, config_name: str, config_text: str) -> None:
    """Save `model`'s state dict in fp16 as `weights_name` and `config_text` as `config_name` in `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(out_dir / weights_name) as tmp:
        save_file(state, str(tmp))
    write_text(out_dir / config_name, config_text)
