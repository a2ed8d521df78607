"""The run's mutable state: the drawer's parameters z [B,...] (B starts; VQGAN: latents [B,E,h,w]), their init
targets, the optimiser, the step and the RNG. It is saved and restored whole (`state_dict`), and changed only through
its own methods: a zoom move, a restyle frame and best-of-n's pick ask the state to change; nothing writes into it
from outside."""

from __future__ import annotations

import copy
from typing import Callable, Optional

import torch
from torch import Tensor

from ..errors import VqclipError
from .inits import initial_image
from .masks import edit_of, start_image, wants_edit
from .optimizers import make_optimizer

STATE_KEYS = ("z", "z_init", "step", "optimizer", "rng", "torch_rng", "seed")
# device RNG states, saved when the run is on that device (a state from another device type ignores them)
DEVICE_RNG_KEYS = {"cuda": "cuda_rng", "mps": "mps_rng"}


def device_rng_state(device: torch.device) -> dict:
    """The generator state of the run's accelerator: {"cuda_rng": ...} on CUDA, {"mps_rng": ...} on MPS, else {}."""
    if device.type == "cuda":
        return {"cuda_rng": torch.cuda.get_rng_state(device)}
    if device.type == "mps" and hasattr(getattr(torch, "mps", None), "get_rng_state"):
        return {"mps_rng": torch.mps.get_rng_state()}
    return {}


def set_device_rng_state(device: torch.device, state: dict) -> None:
    """Restore what `device_rng_state` saved, when the state was saved on this kind of device."""
    saved = state.get(DEVICE_RNG_KEYS.get(device.type, ""))
    if saved is None:
        return
    if device.type == "cuda":
        torch.cuda.set_rng_state(saved, device)
    elif device.type == "mps" and hasattr(getattr(torch, "mps", None), "set_rng_state"):
        torch.mps.set_rng_state(saved)


def initial_params(cfg, drawer, device: torch.device, rng: torch.Generator, starts: int = 1) -> Tensor:
    """The job's start parameters [starts,...] of its drawer: each start its own random draw, or the init image (an
    edit's start image) through the drawer's encoder (the starts then part through their own cutouts)."""
    init = cfg.init
    with torch.no_grad():
        if wants_edit(init):  # an edit: the original, and under its mask what mask_init says
            edit = edit_of(init, cfg.size, drawer.width, drawer.height, notice=False)  # the term says it
            image = start_image(edit.base, edit.mask, edit.new, init.mask_init, rng)
        else:
            image = initial_image(init.kind, drawer.width, drawer.height, rng, init.image, init.color, cfg.prompt)
        if image is None:
            return drawer.random(starts, rng)
        z = drawer.encode(image.to(device))
        return z.repeat(starts, *[1] * (z.dim() - 1))


class RunState:
    """Latents z [B,E,h,w] being optimised, z_init (the target of the init term), the optimiser over z, the number of
    updates done, the run's seed and its generator; `start` is which best-of-n start this run went on with."""

    def __init__(self, z: Tensor, optimizer: str, lr: float, seed: int, rng: Optional[torch.Generator] = None):
        self.optimizer_name, self.lr, self.seed = optimizer, lr, seed
        self.z = z.detach().clone().requires_grad_(True)
        self.z_init = z.detach().clone()
        self.optimizer = make_optimizer(optimizer, [self.z], lr)
        self.rng = rng if rng is not None else torch.Generator().manual_seed(seed)
        self.step = 0
        self.start = 0

    @classmethod
    def initial(cls, cfg, drawer, device: torch.device, seed: int, starts: int = 1) -> "RunState":
        """The state a job starts from (`initial_params` of its drawer), its generator seeded with `seed`."""
        rng = torch.Generator().manual_seed(seed)
        z = initial_params(cfg, drawer, device, rng, starts)
        return cls(z, cfg.optimizer.name, cfg.optimizer.lr, seed, rng)

    @property
    def starts(self) -> int:
        """How many latents are optimised together (best of n), 1 otherwise."""
        return self.z.shape[0]

    def set_lr(self, lr: float) -> None:
        """The learning rate of the next update."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def update(self, project: Callable[[Tensor], None]) -> None:
        """Apply the optimiser to the gradient in z.grad, bring z back into its drawer's box in place (`project`;
        VQGAN: the codebook's range per channel, as the notebook does), and count the step."""
        self.optimizer.step()
        with torch.no_grad():
            project(self.z)
        self.step += 1

    def move_to(self, z: Tensor, reset_optimizer: bool = True) -> None:
        """Go on from latent z [B,E,h,w], which also becomes the init target (a zoom move); optionally restart the
        optimiser (no stale momentum)."""
        with torch.no_grad():
            self.z.copy_(z)
            self.z_init.copy_(z)
        if reset_optimizer:
            self.optimizer = make_optimizer(self.optimizer_name, [self.z], self.lr)

    def restart(self, z: Tensor, seed: int) -> None:
        """Start over from latent z at step 0 with a fresh optimiser and the generator seeded with `seed` (each frame
        of a restyle)."""
        self.move_to(z, reset_optimizer=True)
        self.step = 0
        self.rng.manual_seed(seed)

    def keep(self, start: int) -> None:
        """Go on with one of the starts alone: its latent, its init target and its rows of the optimiser's state."""
        rows = self.z.shape[0]
        state = self.optimizer.state_dict()
        for values in state["state"].values():
            for key, v in values.items():
                if torch.is_tensor(v) and v.dim() and v.shape[0] == rows:
                    values[key] = v[start:start + 1].clone()
        self.z = self.z.detach()[start:start + 1].clone().requires_grad_(True)
        self.z_init = self.z_init[start:start + 1].clone()
        self.optimizer = make_optimizer(self.optimizer_name, [self.z], self.lr)
        self.optimizer.load_state_dict(state)
        self.start += start

    def state_dict(self) -> dict:
        """Everything needed to continue this run bit-exactly, as a copy (the run going on changes none of it):
        latents, init targets, optimiser, step, the best-of-n start and RNG states (torch's global RNG too: Kornia
        draws the augment parameters from it; and the CUDA or MPS generator of the run's device)."""
        return {"z": self.z.detach().cpu().clone(), "z_init": self.z_init.cpu().clone(), "step": self.step,
                "optimizer": copy.deepcopy(self.optimizer.state_dict()), "rng": self.rng.get_state(),
                "torch_rng": torch.get_rng_state(), "seed": self.seed, "start": self.start,
                **device_rng_state(self.z.device)}

    def load_state_dict(self, state: dict) -> None:
        """Continue from `state_dict()` (a copy of it: the same state may be loaded again); a state from another
        size, model or optimiser is a one-line error."""
        if tuple(state["z"].shape) != tuple(self.z.shape):
            raise VqclipError(f"the saved state's latent is {list(state['z'].shape)} but this job's is "
                              f"{list(self.z.shape)} (size or model changed since it was saved); "
                              "restore them, or delete state.pt to start over")
        with torch.no_grad():
            self.z.copy_(state["z"].to(self.z.device))
            self.z_init.copy_(state["z_init"].to(self.z.device))
        saved, own = state["optimizer"]["param_groups"], self.optimizer.state_dict()["param_groups"]
        if [set(g) for g in saved] != [set(g) for g in own]:  # torch would fail only at the next step, on a KeyError
            raise VqclipError(f"the saved optimizer state is not one of this job's optimizer "
                              f"({self.optimizer_name}); restore optimizer.name in job.yaml, or delete state.pt "
                              "to start over")
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))  # torch keeps the given tensors
        self.step = int(state["step"])
        self.start = int(state.get("start", 0))  # which best-of-n start this is (a state from before: not recorded)
        self.rng.set_state(state["rng"])
        torch.set_rng_state(state["torch_rng"])
        set_device_rng_state(self.z.device, state)
