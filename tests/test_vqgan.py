"""The VQGAN against taming's own modules: encode is taming's encoder + quantizer (VQModel) or the noise-free pick of
the Gumbel quantizer, decode is taming's decoder mapped to [0,1], and loading maps Lightning's keys, ignores only the
training-only ones and names what does not fit."""

from __future__ import annotations

import pytest
import torch
import yaml
from safetensors.torch import save_file

from tiny import vqgan_yaml
from vqclip.errors import VqclipError
from vqclip.nets.checkpoints import load_state_dict
from vqclip.nets.vqgan import load_vqgan, vqgan_spec


@pytest.fixture(scope="module")
def models(tiny_vqgan, tiny_gumbel):
    return load_vqgan(*tiny_vqgan), load_vqgan(*tiny_gumbel)


def test_encode_is_tamings_encoder_and_quantizer(models):
    vq = models[0]
    image = torch.rand(2, 3, 32, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        h = vq.quant_conv(vq.encoder(image * 2 - 1))
        z_q, _, (_, _, indices) = vq.quantize(h)  # taming's VectorQuantizer2.forward (straight-through: z + (q - z))
        codes = vq.codebook[indices.view(2, 8, 4)].permute(0, 3, 1, 2)
        assert torch.equal(vq.encode(image), codes)
        torch.testing.assert_close(vq.encode(image), z_q)
        assert torch.equal(vq.encode_continuous(image), h)
    assert len(indices.unique()) > 1  # not one code everywhere


def test_gumbel_encode_is_the_most_likely_code(models):
    vq = models[1]
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        logits = vq.quantize.proj(vq.quant_conv(vq.encoder(image * 2 - 1)))  # [1, n_embed, h, w]
        expected = torch.einsum("bnhw,nd->bdhw", torch.nn.functional.one_hot(logits.argmax(1), vq.n_embed)
                                .permute(0, 3, 1, 2).float(), vq.quantize.embed.weight)
        assert torch.equal(vq.codebook, vq.quantize.embed.weight)
        torch.testing.assert_close(vq.encode(image), expected)
        torch.testing.assert_close(vq.encode_continuous(image), vq.encode(image))


@pytest.mark.parametrize("which", [0, 1])
def test_decode_is_tamings_decoder_mapped_to_0_1(models, which):
    vq = models[which]
    z = torch.randn(1, vq.embed_dim, 2, 3)
    with torch.no_grad():
        assert torch.equal(vq.decode(z), (vq.decoder(vq.post_quant_conv(z)) + 1) / 2)


def test_the_codebook_is_the_quantizers_embedding(models):
    vq = models[0]
    assert torch.equal(vq.codebook, vq.quantize.embedding.weight) and vq.codebook.shape == (vq.n_embed, vq.embed_dim)


def _with_state(tmp_path, tiny_vqgan, change) -> tuple:
    state = load_state_dict(tiny_vqgan[1])
    change(state)
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "w.safetensors")
    return tiny_vqgan[0], tmp_path / "w.safetensors"


@pytest.mark.parametrize("key", ["loss.perceptual.net.w", "quantize.used", "colorize", "temperature_scheduler.x"])
def test_training_only_keys_are_ignored(tmp_path, tiny_vqgan, key):
    cfg, weights = _with_state(tmp_path, tiny_vqgan, lambda s: s.__setitem__(key, torch.zeros(1)))
    assert torch.equal(load_vqgan(cfg, weights).codebook, load_vqgan(*tiny_vqgan).codebook)


@pytest.mark.parametrize("change, counts, example", [
    (lambda s: s.__setitem__("encoder.extra.weight", torch.zeros(1)), "0 missing, 1 unexpected, 0 mis-shaped",
     "e.g. encoder.extra.weight"),
    (lambda s: s.__setitem__("loss_scale", torch.zeros(1)), "0 missing, 1 unexpected, 0 mis-shaped",
     "e.g. loss_scale"),  # not 'loss.'
    (lambda s: s.pop("decoder.conv_out.bias"), "1 missing, 0 unexpected, 0 mis-shaped", "e.g. decoder.conv_out.bias"),
    (lambda s: s.__setitem__("quant_conv.bias", torch.zeros(3)), "0 missing, 0 unexpected, 1 mis-shaped",
     r"quant_conv.bias is \[3\] in the weights but \[8\] in the config"),
])
def test_weights_that_do_not_fit_are_counted_and_one_is_named(tmp_path, tiny_vqgan, change, counts, example):
    cfg, weights = _with_state(tmp_path, tiny_vqgan, change)
    with pytest.raises(VqclipError, match=f"does not match .*{counts} tensors \\({example}") as info:
        load_vqgan(cfg, weights)
    assert "\n" not in str(info.value)


def test_a_wrapped_first_stage_takes_only_its_prefixed_keys(tmp_path, tiny_vqgan):
    inner = yaml.safe_load(tiny_vqgan[0].read_text())["model"]
    wrapped = {"model": {"target": "taming.models.cond_transformer.Net2NetTransformer",
                         "params": {"first_stage_config": inner}}}
    (tmp_path / "wrapped.yaml").write_text(yaml.safe_dump(wrapped))
    state = load_state_dict(tiny_vqgan[1])
    both = {**{f"first_stage_model.{k}": v for k, v in state.items()},
            "cond_stage_model.quant_conv.bias": torch.zeros(8)}  # a key of another stage, same name after its prefix
    save_file({k: v.contiguous() for k, v in both.items()}, tmp_path / "w.safetensors")
    model = load_vqgan(tmp_path / "wrapped.yaml", tmp_path / "w.safetensors")
    assert torch.equal(model.quant_conv.bias, state["quant_conv.bias"])
    assert vqgan_spec(tmp_path / "wrapped.yaml")[4] == "first_stage_model."


@pytest.mark.parametrize("mult, factor", [([1], 1), ([1, 2], 2), ([1, 1, 2, 2, 4], 16)])
def test_the_factor_is_two_to_the_number_of_downsamplings(tmp_path, mult, factor):
    from vqclip.nets.vqgan import VQGAN

    dd = dict(yaml.safe_load(yaml.safe_dump(vqgan_yaml()))["model"]["params"]["ddconfig"], ch_mult=mult)
    assert VQGAN(dd, 8, dd["z_channels"]).factor == factor


def test_a_gumbel_config_whose_embed_dim_differs_from_z_channels_is_one_line(tmp_path):
    data = vqgan_yaml(gumbel=True)
    data["model"]["params"]["embed_dim"] = 4
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(VqclipError, match="GumbelVQ needs embed_dim == ddconfig.z_channels"):
        vqgan_spec(tmp_path / "g.yaml")


@pytest.mark.parametrize("drop", ["n_embed", "embed_dim", "ddconfig.z_channels", "ddconfig.ch_mult"])
def test_a_config_missing_a_key_names_it(tmp_path, drop):
    data = vqgan_yaml()
    params = data["model"]["params"]
    (params["ddconfig"] if drop.startswith("ddconfig.") else params).pop(drop.split(".")[-1])
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(VqclipError, match=f"model.params lacks {drop}; use the YAML published"):
        vqgan_spec(tmp_path / "m.yaml")
