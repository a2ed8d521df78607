"""vqclip: text-to-image with VQGAN+CLIP, and CLIP's other jobs.

    import vqclip
    pipe = vqclip.Pipeline.from_preset("mini", device="cpu")
    pipe("a red circle on a blue background", seed=1).images[0]

The Python API (`Pipeline`, `PipelineOutput`, `Stream`, `Steering`) is imported on first use, so that `vqclip --help` and the
config stay free of torch.
"""

from ._version import __version__
from .errors import VqclipError

__all__ = ["Pipeline", "PipelineOutput", "Steering", "Stream", "VqclipError", "__version__"]


def __getattr__(name: str):
    if name in ("Pipeline", "PipelineOutput", "Steering", "Stream"):
        from . import api  # here: importing vqclip must not import torch (the CLI's --help, the config)

        return getattr(api, name)
    raise AttributeError(f"module 'vqclip' has no attribute {name!r}")
