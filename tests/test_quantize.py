"""Latent-space math against the reference notebook and taming: the straight-through quantizer and the clamp that
keeps gradients."""

import pytest
import torch

from reference import textbook
from vqclip.nets.quantize import clamp_with_grad, codes_to_latent, nearest_codes, vector_quantize


def test_clamp_gradient_is_the_notebooks_on_every_case():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4000, generator=g, dtype=torch.float64) * 3 - 1  # a third below 0, a third above 1
    upstream = torch.randn(4000, generator=g, dtype=torch.float64)
    ours = x.clone().requires_grad_(True)
    clamp_with_grad(ours, 0.0, 1.0).backward(upstream)
    ref = x.clone().requires_grad_(True)
    textbook.clamp_with_grad(ref, 0.0, 1.0).backward(upstream)
    assert torch.equal(clamp_with_grad(x, 0.0, 1.0), x.clamp(0, 1))
    assert torch.equal(ours.grad, ref.grad)
    out = (x < 0) | (x > 1)  # both kinds of out-of-range gradient occur: some kept, some dropped
    assert (ours.grad[out] != 0).any() and (ours.grad[out] == 0).any() and (ours.grad[~out] == upstream[~out]).all()


def test_descent_brings_out_of_range_pixels_back():
    x = torch.tensor([-0.5, 1.5, 0.3], requires_grad=True)
    ((clamp_with_grad(x, 0, 1) - 0.5) ** 2).sum().backward()
    assert x.grad.tolist() == pytest.approx([-1.0, 1.0, -0.4])  # x - lr * grad moves each towards 0.5
    y = torch.tensor([-0.5, 1.5], requires_grad=True)
    clamp_with_grad(y, 0, 1).mul(torch.tensor([1.0, -1.0])).sum().backward()  # asks them to move further out
    assert y.grad.tolist() == [0.0, 0.0]


def test_clamp_gradcheck_in_range():
    x = (torch.rand(3, 5, dtype=torch.float64) * 0.8 + 0.1).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda t: clamp_with_grad(t, 0.0, 1.0) ** 2, (x,))


def test_nearest_codes_are_the_brute_force_argmin():
    g = torch.Generator().manual_seed(1)
    codebook, z = torch.randn(50, 6, generator=g), torch.randn(2, 6, 4, 3, generator=g)
    flat = z.movedim(1, -1).reshape(-1, 6)
    expected = torch.cdist(flat.double(), codebook.double()).argmin(1).view(2, 4, 3)
    assert torch.equal(nearest_codes(z, codebook), expected)
    assert torch.equal(codes_to_latent(expected, codebook)[1, :, 2, 1], codebook[expected[1, 2, 1]])


def test_vector_quantize_equals_the_notebook_and_taming():
    from taming.modules.vqvae.quantize import VectorQuantizer2

    g = torch.Generator().manual_seed(2)
    codebook, z0 = torch.randn(40, 8, generator=g), torch.randn(1, 8, 5, 4, generator=g)
    upstream = torch.randn(1, 8, 5, 4, generator=g)
    ours, ref = z0.clone().requires_grad_(True), z0.clone().requires_grad_(True)
    out = vector_quantize(ours, codebook)
    expected = textbook.vector_quantize(ref.movedim(1, 3), codebook).movedim(3, 1)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)
    out.backward(upstream)
    expected.backward(upstream)
    assert torch.equal(ours.grad, ref.grad) and torch.equal(ours.grad, upstream)  # straight through
    taming = VectorQuantizer2(40, 8, beta=0.25, legacy=True)
    taming.embedding.weight.data.copy_(codebook)
    torch.testing.assert_close(out, taming(z0)[0], rtol=0, atol=1e-6)

