"""Seamless tiles (vqclip.nets.tiling): with circular padding a tiny random taming decoder commutes with rolling,
decode(roll(z)) == roll(decode(z)), through taming's own forward and through the lean decoder alike (zeros padding
does not), its gradient is the one of taming's circular convolution, and the shared model is left as it was."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vqclip.nets.lean import decode_latent, frozen_conv
from vqclip.nets.tiling import circular
from vqclip.nets.vqgan import load_vqgan


@pytest.fixture(scope="module")
def vq(tiny_vqgan):
    return load_vqgan(*tiny_vqgan)


def _roll_error(decode, vq, z) -> float:
    f = vq.factor
    return (decode(z.roll((1, 3), (2, 3))) - decode(z).roll((f, 3 * f), (2, 3))).abs().max().item()


@pytest.mark.parametrize("lean", [True, False])
def test_a_circular_decoder_commutes_with_rolling_the_latent_and_zeros_padding_does_not(vq, lean):
    z = torch.randn(2, vq.codebook.shape[1], 4, 6, generator=torch.Generator().manual_seed(0))
    decode = (lambda t: decode_latent(vq, t)) if lean else vq.decode
    with torch.no_grad():
        zeros = _roll_error(decode, vq, z)
        with circular(vq.decoder):
            wrapped = _roll_error(decode, vq, z)
    assert wrapped < 1e-5 and zeros > 1e-2, (wrapped, zeros)


def test_the_lean_decoder_decodes_a_circular_decoder_as_taming_does(vq):
    z = torch.randn(1, vq.codebook.shape[1], 4, 4, generator=torch.Generator().manual_seed(1))
    with torch.no_grad(), circular(vq.decoder):
        assert torch.allclose(decode_latent(vq, z), vq.decode(z), atol=1e-5)


def test_the_padding_is_restored_after_the_block_even_when_it_fails(vq):
    convs = [m for m in vq.decoder.modules() if isinstance(m, nn.Conv2d)]
    padded = [m for m in convs if any(p > 0 for p in m.padding)]
    assert padded and all(m.padding_mode == "zeros" for m in convs)
    with pytest.raises(RuntimeError), circular(vq.decoder):
        assert all(m.padding_mode == "circular" for m in padded)
        assert all(m.padding_mode == "zeros" for m in convs if m not in padded)  # 1x1 convs need no padding
        raise RuntimeError("a decode fails")
    assert all(m.padding_mode == "zeros" for m in convs)


def test_a_circular_frozen_conv_has_the_value_and_gradient_of_torchs_circular_conv():
    conv = nn.Conv2d(3, 4, 3, padding=1, padding_mode="circular").double().requires_grad_(False)
    x = torch.randn(2, 3, 5, 7, dtype=torch.double, requires_grad=True)
    ref = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="circular"), conv.weight, conv.bias)
    assert torch.allclose(frozen_conv(conv, x, torch.double), ref) and torch.allclose(conv(x), ref)
    g = torch.randn_like(ref)
    mine, = torch.autograd.grad((frozen_conv(conv, x, torch.double) * g).sum(), x)
    theirs, = torch.autograd.grad((ref * g).sum(), x)
    assert torch.allclose(mine, theirs)


def test_a_checkpointed_decoder_recomputes_with_the_padding_of_its_forward(vq):
    """memory: low recomputes each level in backward, after the tile's block has ended: the gradient must be the one
    of the circular forward, as without checkpointing."""
    z = torch.randn(1, vq.codebook.shape[1], 4, 4, generator=torch.Generator().manual_seed(2))
    g = torch.randn(1, 3, 4 * vq.factor, 4 * vq.factor, generator=torch.Generator().manual_seed(3))
    grads = []
    for checkpoint in (False, True):
        leaf = z.clone().requires_grad_(True)
        with circular(vq.decoder):
            out = decode_latent(vq, leaf, checkpoint=checkpoint)
        (out * g).sum().backward()
        grads.append(leaf.grad)
    assert torch.allclose(grads[0], grads[1], atol=1e-5)
    assert all(m.padding_mode == "zeros" for m in vq.decoder.modules() if isinstance(m, nn.Conv2d))
