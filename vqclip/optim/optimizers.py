"""The optimisers a job can name, and making one: each name is the torch.optim class of the same name.

torch is imported when an optimiser is made, so that the config checks names against this table without it."""

from __future__ import annotations

from ..errors import VqclipError

#: job name -> torch.optim class name
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "radam": "RAdam",
              "nadam": "NAdam", "adamax": "Adamax", "adagrad": "Adagrad"}
FUSED_ON_CUDA = ("adam", "adamw", "sgd", "adagrad")  # torch.optim classes with a fused CUDA kernel (one launch)


def fast_kernels(key: str, device_type: str, accepts: set) -> dict:
    """The kernel options for an optimiser on a device: fused on CUDA where torch has it, else torch's default
    (foreach on CUDA); nothing changes on the CPU."""
    if device_type == "cuda" and key in FUSED_ON_CUDA and "fused" in accepts:
        return {"fused": True}
    return {}


def make_optimizer(name: str, params: list, lr: float):
    """A torch optimiser by job name (any case), e.g. make_optimizer('adam', [z], 0.1); unknown names are errors,
    never silently replaced. On CUDA it uses the fused kernel where torch has one (see `fast_kernels`)."""
    import inspect

    import torch  # here: see the module docstring

    key = name.lower()
    if key not in OPTIMIZERS:
        raise VqclipError(f"optimizer.name: unknown value '{name}'; use one of {', '.join(OPTIMIZERS)}")
    cls = getattr(torch.optim, OPTIMIZERS[key])
    types = {p.device.type for p in params}
    extra = fast_kernels(key, types.pop(), set(inspect.signature(cls).parameters)) if len(types) == 1 else {}
    return cls(params, lr=lr, **extra)
