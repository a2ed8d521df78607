"""The optimisers a job can name, and making one: each name is the torch.optim class of the same name.

torch is imported when an optimiser is made, so that the config checks names against this table without it."""

from __future__ import annotations

from ..errors import VqclipError

#: job name -> torch.optim class name
OPTIMIZERS = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop", "radam": "RAdam",
              "nadam": "NAdam", "adamax": "Adamax", "adagrad": "Adagrad"}


def make_optimizer(name: str, params: list, lr: float):
    """A torch optimiser by job name (any case), e.g. make_optimizer('adam', [z], 0.1); unknown names are errors,
    never silently replaced."""
    import torch  # here: see the module docstring

    key = name.lower()
    if key not in OPTIMIZERS:
        raise VqclipError(f"optimizer.name: unknown value '{name}'; use one of {', '.join(OPTIMIZERS)}")
    return getattr(torch.optim, OPTIMIZERS[key])(params, lr=lr)
