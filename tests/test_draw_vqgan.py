"""The VQGAN drawer on the tiny taming model: its box is the codebook's range per channel, its random start is codebook
entries drawn per start from the run's generator, its decode and encode are the VQGAN's (decode_image: nearest codes,
then the decoder), and the lean decoder is chosen for frozen weights."""

from __future__ import annotations

import torch

from vqclip.config import merge_layers
from vqclip.draw.vqgan import VQGANDrawer, decode_image

CPU = torch.device("cpu")


def drawer(tiny_job, tiny_models, **over) -> VQGANDrawer:
    cfg = merge_layers([("t", {**tiny_job, "prompt": "x", **over})])
    return VQGANDrawer(cfg, tiny_models, CPU, 32, 24)


def test_the_box_is_each_channels_codebook_range_and_project_clamps_only_outside_it(tiny_job, tiny_models):
    d, book = drawer(tiny_job, tiny_models), tiny_models.vqgan.codebook
    assert d.factor == tiny_models.vqgan.factor and d.speed_options()["lean_decoder"] is True
    lo, hi = book.min(0).values, book.max(0).values
    assert not torch.equal(lo, lo.min().expand_as(lo))  # the channels' ranges differ: a global box would be wrong
    z = torch.randn(2, book.shape[1], 6, 8, generator=torch.Generator().manual_seed(0)) * 3 * hi.abs().max()
    inside = (z >= lo.view(1, -1, 1, 1)) & (z <= hi.view(1, -1, 1, 1))
    before = z.clone()
    d.project(z)
    torch.testing.assert_close(z, torch.maximum(torch.minimum(before, hi.view(1, -1, 1, 1)), lo.view(1, -1, 1, 1)))
    assert torch.equal(z[inside], before[inside]) and not inside.all()


def test_random_starts_are_codebook_entries_each_start_its_own_from_the_generator(tiny_job, tiny_models):
    d, book = drawer(tiny_job, tiny_models), tiny_models.vqgan.codebook
    z = d.random(3, torch.Generator().manual_seed(4))
    f = tiny_models.vqgan.factor
    assert z.shape == (3, book.shape[1], 24 // f, 32 // f)
    vectors = z.permute(0, 2, 3, 1).reshape(-1, book.shape[1])
    assert torch.cdist(vectors, book).min(1).values.max() < 1e-2  # each cell a codebook entry (cdist: ~1e-3 off)
    assert not torch.equal(z[0], z[1]) and not torch.equal(z[1], z[2])
    assert torch.equal(z, d.random(3, torch.Generator().manual_seed(4)))


def test_decode_and_encode_are_the_vqgans(tiny_job, tiny_models):
    d, vq = drawer(tiny_job, tiny_models), tiny_models.vqgan
    image = torch.rand(1, 3, 24, 32, generator=torch.Generator().manual_seed(2))
    z = d.encode(image)
    assert torch.equal(z, vq.encode(image))
    z = (z + 0.3 * torch.randn(z.shape, generator=torch.Generator().manual_seed(3))).requires_grad_(True)
    out = d.decode(z)
    torch.testing.assert_close(out, decode_image(vq, z.detach()), rtol=0, atol=1e-6)
    book, (b, e, h, w) = vq.codebook, z.shape  # written out: nearest codes, taming's decoder, clamped
    nearest = torch.cdist(z.detach().permute(0, 2, 3, 1).reshape(-1, e), book).argmin(1)
    z_q = book[nearest].reshape(b, h, w, e).permute(0, 3, 1, 2)
    torch.testing.assert_close(out, vq.decode(z_q).clamp(0, 1), rtol=0, atol=1e-4)
    assert (out - vq.decode(z.detach()).clamp(0, 1)).abs().max() > 1e-3  # quantizing mattered here
    out.sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
