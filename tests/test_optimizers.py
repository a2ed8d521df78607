"""Each optimiser name builds that torch.optim class with the job's learning rate (any case), fused on CUDA only where
torch has the kernel; an unknown name is an error, never replaced by another optimiser."""

import pytest
import torch

from vqclip.errors import VqclipError
from vqclip.optim.optimizers import OPTIMIZERS, fast_kernels, make_optimizer

TORCH = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW, "sgd": torch.optim.SGD, "rmsprop": torch.optim.RMSprop,
         "radam": torch.optim.RAdam, "nadam": torch.optim.NAdam, "adamax": torch.optim.Adamax,
         "adagrad": torch.optim.Adagrad}


@pytest.mark.parametrize("name", sorted(TORCH))
def test_each_name_is_that_torch_optimiser_with_the_lr(name):
    """Two steps from the same start and gradients: the same latents as torch's own optimiser of that name."""
    assert set(OPTIMIZERS) == set(TORCH)
    start = torch.randn(2, 3, generator=torch.Generator().manual_seed(0))
    ours, ref = start.clone().requires_grad_(True), start.clone().requires_grad_(True)
    opt = make_optimizer(name.upper() if name == "sgd" else name, [ours], 0.03)
    assert type(opt) is TORCH[name] and opt.param_groups[0]["lr"] == 0.03
    theirs = TORCH[name]([ref], lr=0.03)
    for k in range(2):
        for x, o in ((ours, opt), (ref, theirs)):
            o.zero_grad()
            (x * torch.arange(6.0).view(2, 3) * (k + 1)).pow(2).sum().backward()
            o.step()
    assert torch.equal(ours, ref) and not torch.equal(ours, start)


def test_an_unknown_optimiser_is_an_error_naming_the_choices():
    with pytest.raises(VqclipError, match="optimizer.name: unknown value 'lbfgs'; use one of adam, adamw, sgd"):
        make_optimizer("lbfgs", [torch.zeros(1, requires_grad=True)], 0.1)


@pytest.mark.parametrize("name", sorted(TORCH))
def test_fused_on_cuda_exactly_where_torch_has_the_option(name):
    import inspect

    accepts = set(inspect.signature(TORCH[name]).parameters)
    assert fast_kernels(name, "cuda", accepts) == ({"fused": True} if "fused" in accepts else {})


def test_fused_kernels_only_on_cuda_and_only_where_torch_has_them():
    fused = {"fused", "foreach"}
    assert fast_kernels("adam", "cuda", fused) == {"fused": True}
    assert fast_kernels("sgd", "cuda", fused) == {"fused": True}
    assert fast_kernels("rmsprop", "cuda", fused) == {}  # no fused RMSprop kernel
    assert fast_kernels("adam", "cpu", fused) == {} and fast_kernels("adam", "mps", fused) == {}
    assert fast_kernels("adam", "cuda", {"foreach"}) == {}  # an older torch without the option
    assert not make_optimizer("adam", [torch.zeros(1, requires_grad=True)], 0.1).defaults.get("fused")  # CPU
