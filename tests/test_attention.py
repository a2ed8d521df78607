"""The packed attention and the patch matmul compute what torch's stock modules compute (nn.MultiheadAttention,
nn.Conv2d with the same weights), values and gradients, on every path they take or hand back; pack_attention swaps
only what it should."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from vqclip.nets.attention import PackedSelfAttention, PatchConv, pack_attention


def _pair(embed=16, heads=4, batch_first=True, **kwargs):
    """(stock, packed) nn.MultiheadAttention with the same random weights (biases made non-zero)."""
    torch.manual_seed(0)
    stock = nn.MultiheadAttention(embed, heads, batch_first=batch_first, **kwargs)
    with torch.no_grad():
        for p in stock.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    packed = copy.deepcopy(stock)
    packed.__class__ = PackedSelfAttention
    return stock, packed


def _grad(module, x, **kwargs):
    x = x.clone().requires_grad_(True)
    out = module(x, x, x, **kwargs)[0]
    (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return out.detach(), x.grad


@pytest.mark.parametrize("training", [False, True])  # eval on the CPU: the plain softmax; training: SDPA
def test_packed_self_attention_is_multihead_attention(training):
    stock, packed = _pair()
    stock.train(training), packed.train(training)
    x = torch.randn(3, 7, 16)
    ref, ref_grad = _grad(stock, x, need_weights=False)
    out, grad = _grad(packed, x, need_weights=False)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-6)


def test_packed_attention_is_the_textbook_formula():
    """softmax(q k^T / sqrt(d)) v per head, written out from the projection weights."""
    stock, packed = _pair(embed=8, heads=2)
    packed.eval()
    x = torch.randn(2, 5, 8)
    w, b = packed.in_proj_weight, packed.in_proj_bias
    q, k, v = (x @ w[i * 8:(i + 1) * 8].T + b[i * 8:(i + 1) * 8] for i in range(3))
    heads = []
    for h in range(2):
        s = slice(h * 4, (h + 1) * 4)
        heads.append(torch.softmax(q[..., s] @ k[..., s].transpose(1, 2) / 4 ** 0.5, -1) @ v[..., s])
    expected = torch.cat(heads, -1) @ packed.out_proj.weight.T + packed.out_proj.bias
    out, weights = packed(x, x, x, need_weights=False)
    assert weights is None
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("case", ["need_weights", "attn_mask", "key_padding_mask", "causal", "cross", "not batch first"])
def test_every_other_call_is_the_stock_one(case):
    stock, packed = _pair(batch_first=case != "not batch first")
    stock.eval(), packed.eval()
    x, y = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    mask = torch.triu(torch.ones(5, 5, dtype=torch.bool), 1)
    args, kwargs = (x, x, x), {"need_weights": case == "need_weights"}
    if case == "attn_mask":
        kwargs["attn_mask"] = mask
    elif case == "key_padding_mask":
        kwargs["key_padding_mask"] = torch.tensor([[False] * 4 + [True]] * 2)
    elif case == "causal":
        kwargs.update(attn_mask=mask, is_causal=True)
    elif case == "cross":
        args = (x, y, y)
    ref, packed_out = stock(*args, **kwargs), packed(*args, **kwargs)
    torch.testing.assert_close(packed_out[0], ref[0])
    if case == "need_weights":
        torch.testing.assert_close(packed_out[1], ref[1])


def _conv_pair(out_ch=6, kernel=4, stride=4, padding=0, in_ch=3):
    torch.manual_seed(1)
    stock = nn.Conv2d(in_ch, out_ch, kernel, stride, padding)
    patch = copy.deepcopy(stock)
    patch.__class__ = PatchConv
    return stock, patch


@pytest.mark.parametrize("shape", [(2, 3, 8, 12), (1, 3, 4, 4)])
def test_the_patch_matmul_is_the_convolution(shape):
    stock, patch = _conv_pair()
    x = torch.randn(*shape, requires_grad=True)
    x2 = x.detach().clone().requires_grad_(True)
    ref, out = stock(x), patch(x2)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    weights = torch.randn_like(ref)
    (ref * weights).sum().backward(), (out * weights).sum().backward()
    torch.testing.assert_close(x2.grad, x.grad, rtol=1e-5, atol=1e-6)


def test_the_patch_matmul_uses_rectangular_patches_the_right_way_round():
    stock, patch = _conv_pair(kernel=(2, 4), stride=(2, 4))
    x = torch.randn(1, 3, 6, 8)
    torch.testing.assert_close(patch(x), stock(x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 3, 9, 8), (1, 3, 8, 10)])  # sizes the kernel does not divide
def test_a_size_the_patches_do_not_tile_is_the_stock_convolution(shape):
    stock, patch = _conv_pair()
    x = torch.randn(*shape)
    assert torch.equal(patch(x), stock(x))


def test_pack_attention_swaps_attention_and_patch_embeddings_only():
    model = nn.Sequential(nn.MultiheadAttention(8, 2, batch_first=True), nn.Conv2d(3, 8, 4, 4), nn.Conv2d(3, 8, 3, 1),
                          nn.Conv2d(8, 8, 1, 1), nn.Conv2d(3, 8, 4, 2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pack_attention(model)
    assert [type(m) for m in model] == [PackedSelfAttention, PatchConv, nn.Conv2d, nn.Conv2d, nn.Conv2d]
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_a_packed_open_clip_vit_embeds_as_the_stock_one():
    from open_clip.model import CLIP

    from tiny import CLIP_CFG

    torch.manual_seed(2)
    stock = CLIP(**CLIP_CFG).eval()
    packed = pack_attention(copy.deepcopy(stock))
    image, text = torch.randn(2, 3, 32, 32), torch.randint(0, 49408, (2, 16))
    torch.testing.assert_close(packed.encode_image(image), stock.encode_image(image), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(packed.encode_text(text), stock.encode_text(text), rtol=1e-4, atol=1e-5)


def test_dropout_applies_in_training_only_as_in_the_stock_module():
    stock, packed = _pair(dropout=0.5)
    x = torch.randn(2, 5, 16)
    packed.eval()
    assert torch.equal(packed(x, x, x, need_weights=False)[0], packed(x, x, x, need_weights=False)[0])
    torch.testing.assert_close(packed(x, x, x, need_weights=False)[0], stock.eval()(x, x, x, need_weights=False)[0])
    packed.train()
    assert not torch.equal(packed(x, x, x, need_weights=False)[0], packed(x, x, x, need_weights=False)[0])


def test_a_grouped_patch_convolution_is_the_stock_one():
    torch.manual_seed(3)
    stock = nn.Conv2d(4, 8, 2, 2, groups=2)
    patch = copy.deepcopy(stock)
    patch.__class__ = PatchConv
    x = torch.randn(1, 4, 6, 6)
    torch.testing.assert_close(patch(x), stock(x))
