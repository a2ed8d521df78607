"""The lean decoder is taming's `Decoder.forward` in every configuration taming builds (attention at a level,
upsampling without a convolution, two res blocks, give_pre_end, a tanh output), in value and in gradient, with and
without checkpointing, in either memory layout."""

from __future__ import annotations

import contextlib
import io

import pytest
import torch
from taming.modules.diffusionmodules.model import Decoder

from vqclip.nets.lean import decode_latent, is_frozen, lean_decode

BASE = {"ch": 32, "out_ch": 3, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0,
        "in_channels": 3, "resolution": 16, "z_channels": 4}
CONFIGS = {
    "attention at the low level": {"attn_resolutions": [8]},
    "attention at the high level": {"attn_resolutions": [16]},
    "upsampling without a convolution": {"resamp_with_conv": False},
    "two res blocks, three levels": {"num_res_blocks": 2, "ch_mult": [1, 1, 2], "resolution": 32},
    "give_pre_end": {"give_pre_end": True},
}


def _decoder(over: dict, seed: int = 0) -> Decoder:
    torch.manual_seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):  # taming prints the latent shape
        dec = Decoder(**{**BASE, **over})
    with torch.no_grad():  # GroupNorm's affine off its defaults, so that a dropped weight or bias shows
        for m in dec.modules():
            if isinstance(m, torch.nn.GroupNorm):
                m.weight.normal_(1, 0.2), m.bias.normal_(0, 0.2)
    return dec.eval().requires_grad_(False)


def _value_and_grad(fn, z):
    z = z.clone().requires_grad_(True)
    out = fn(z)
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), z.grad


@pytest.mark.parametrize("checkpoint", [False, True])
@pytest.mark.parametrize("config", list(CONFIGS))
def test_the_lean_decoder_is_tamings_decoder(config, checkpoint):
    dec = _decoder(CONFIGS[config])
    z = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(1))
    ref, ref_grad = _value_and_grad(dec, z)
    out, grad = _value_and_grad(lambda t: lean_decode(dec, t, checkpoint), z)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_a_tanh_output_is_applied():
    dec = _decoder({})
    dec.tanh_out = True  # taming's later Decoder option: tanh on the output
    z = torch.randn(1, 4, 2, 2)
    with torch.no_grad():
        torch.testing.assert_close(lean_decode(dec, z), torch.tanh(Decoder.forward(dec, z)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("channels_last", [False, True])
def test_decode_latent_is_the_vqgans_decode_in_either_layout(tiny_models, channels_last):
    vq = tiny_models.vqgan
    z = torch.randn(1, vq.embed_dim, 3, 4, generator=torch.Generator().manual_seed(2))
    ref, ref_grad = _value_and_grad(vq.decode, z)
    out, grad = _value_and_grad(lambda t: decode_latent(vq, t, channels_last=channels_last), z)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-4, atol=1e-6)


def test_is_frozen_sees_any_trainable_parameter():
    dec = _decoder({})
    assert is_frozen(dec)
    dec.up[0].block[0].norm2.bias.requires_grad_(True)
    assert not is_frozen(dec)
