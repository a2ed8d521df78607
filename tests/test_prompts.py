"""Prompt syntax and the spherical-distance loss."""

import math

import pytest
import torch

from vqclip.errors import VqclipError
from vqclip.prompts import (Prompt, parse_image_prompt, parse_negatives, parse_prompts, prompt_loss,
                            spherical_distance, tv_loss)


def test_weighted_prompts():
    assert parse_prompts("toaster forest") == [Prompt("toaster forest", 1.0)]
    assert parse_prompts("a:1|b:-0.5| c :2e-1") == [Prompt("a", 1.0), Prompt("b", -0.5), Prompt("c", 0.2)]
    # a colon not followed by a number belongs to the text
    assert parse_prompts("photo: a cat") == [Prompt("photo: a cat", 1.0)]
    assert parse_prompts("time 12:30:2") == [Prompt("time 12:30", 2.0)]


@pytest.mark.parametrize("bad,match", [("a||b", "empty part"), ("|a", "empty part"), ("a:", "empty weight"),
                                       ("a:nan", "finite"), (":2", "no text"), ("a:inf", "finite")])
def test_bad_prompt_syntax(bad, match):
    with pytest.raises(VqclipError, match=match):
        parse_prompts(bad)


def test_negatives_and_image_prompts():
    assert parse_negatives(["blurry", "text:0.5", "x:-2"]) == [Prompt("blurry", -1.0), Prompt("text", -0.5),
                                                             Prompt("x", -2.0)]
    assert parse_image_prompt("dir/img.png:0.3") == Prompt("dir/img.png", 0.3, image=True)
    assert parse_image_prompt("C:/img.png") == Prompt("C:/img.png", 1.0, image=True)


def test_spherical_distance_range_and_values():
    x = torch.nn.functional.normalize(torch.randn(5, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    d = spherical_distance(x, x)
    assert torch.allclose(d.diagonal(), torch.zeros(5), atol=1e-5)
    # antipodes: arcsin is steep at 1, so float rounding of the norm moves the value by up to ~1e-3
    assert torch.isclose(spherical_distance(x[:1], -x[:1]), torch.tensor(math.pi**2 / 2), atol=5e-3)
    assert (d >= 0).all() and (d <= math.pi**2 / 2 + 1e-5).all()


def test_negative_weight_pushes_away():
    target = torch.nn.functional.normalize(torch.randn(1, 8), dim=-1)
    start = torch.nn.functional.normalize(torch.randn(1, 8), dim=-1)
    for weight, closer in ((1.0, True), (-1.0, False)):
        x = start.clone().requires_grad_(True)
        loss = prompt_loss(torch.nn.functional.normalize(x, dim=-1), target, torch.tensor([weight]))
        loss.backward()
        moved = torch.nn.functional.normalize(x.detach() - 0.1 * x.grad, dim=-1)
        before = spherical_distance(start, target).item()
        after = spherical_distance(moved, target).item()
        assert (after < before) == closer


def test_tv_loss_zero_for_flat_positive_for_noise():
    assert tv_loss(torch.full((1, 3, 8, 8), 0.4)).item() == 0
    assert tv_loss(torch.rand(1, 3, 8, 8)).item() > 0.01


# ---- against independent references ----------------------------------------------------------------------------

def _unit(n, d, seed):
    return torch.nn.functional.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed),
                                                     dtype=torch.float64), dim=-1)


def test_spherical_distance_is_half_the_squared_angle():
    """The notebook's 2 * arcsin(|x - y| / 2)^2 is the great-circle angle theta squared, halved: theta = arccos(x.y)."""
    x, y = _unit(6, 16, 1), _unit(5, 16, 2)
    theta = (x @ y.T).clamp(-1, 1).arccos()
    torch.testing.assert_close(spherical_distance(x, y), theta.pow(2) / 2, rtol=1e-9, atol=1e-12)


def test_prompt_loss_equals_the_notebooks_prompts_with_signed_weights():
    from reference import textbook

    embeds, targets = _unit(7, 16, 3).float(), _unit(3, 16, 4).float()
    weights = torch.tensor([1.0, -0.5, 2.0])
    expected = sum(textbook.Prompt(targets[j:j + 1], float(w))(embeds) for j, w in enumerate(weights))
    torch.testing.assert_close(prompt_loss(embeds, targets, weights), expected, rtol=1e-6, atol=1e-7)


def test_tv_loss_is_the_mean_squared_difference_along_both_axes():
    image = torch.rand(2, 3, 9, 7, generator=torch.Generator().manual_seed(5))
    expected = torch.diff(image, dim=-1).pow(2).mean() + torch.diff(image, dim=-2).pow(2).mean()
    torch.testing.assert_close(tv_loss(image), expected)
    rows = torch.arange(8.0).view(1, 1, 8, 1).expand(1, 3, 8, 8) / 8  # varies down the image only
    torch.testing.assert_close(tv_loss(rows), torch.tensor(1 / 64))
    torch.testing.assert_close(tv_loss(rows.transpose(-1, -2)), torch.tensor(1 / 64))
