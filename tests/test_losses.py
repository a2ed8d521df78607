"""The loss math against independent references: the spherical distance is half the squared great-circle angle, the
prompt loss is the notebook's prompts with signed weights, TV is the mean squared neighbour difference."""

import math

import torch

from vqclip.optim.losses import prompt_loss, spherical_distance, tv_loss


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
