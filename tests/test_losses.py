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


class _ReplaceGrad(torch.autograd.Function):
    """The notebook's replace_grad: the value of `fwd`, the gradient of `bwd`."""

    @staticmethod
    def forward(ctx, fwd, bwd):
        return fwd

    @staticmethod
    def backward(ctx, grad):
        return None, grad


def _notebook_prompt(embeds, embed, weight, stop):
    """Crowson's / nerdyrodent's Prompt.forward for one target embed [1,D], written as there."""
    input_normed = torch.nn.functional.normalize(embeds.unsqueeze(1), dim=2)
    embed_normed = torch.nn.functional.normalize(embed.unsqueeze(0), dim=2)
    dists = input_normed.sub(embed_normed).norm(dim=2).div(2).arcsin().pow(2).mul(2)
    dists = dists * weight.sign()
    return weight.abs() * _ReplaceGrad.apply(dists, torch.maximum(dists, stop)).mean()


def test_stops_cut_the_gradient_as_the_notebook_and_keep_the_value():
    """Random embeddings, targets with stops that cut some cutouts' gradient and not others (signed distances of these
    unit vectors lie near 2.4; the stops sit inside that range), against the notebook's formula."""
    from vqclip.optim.losses import stops_tensor
    from vqclip.optim.prompts import Prompt

    raw, targets = _unit(12, 16, 7), _unit(4, 16, 8)
    weights = torch.tensor([1.0, -0.5, 2.0, 1.5], dtype=torch.float64)
    d = spherical_distance(raw, targets) * weights.sign()
    mid = d.sort(0).values[5:7].mean(0)  # between two cutouts' distances: no ties (where `maximum` splits)
    stops = torch.stack([mid[0], mid[1], torch.tensor(-10.0, dtype=torch.float64),
                         d[:, 3].max() - 1e-9])  # half cut, half cut, none cut, all but one cut
    hit = d < stops
    assert 0 < hit.sum() < hit.numel() and not hit[:, 2].any() and hit[:, 0].any() and not hit[:, 0].all()

    def grad_of(loss_fn):
        x = raw.clone().requires_grad_(True)
        loss = loss_fn(x)
        loss.backward()
        return loss.detach(), x.grad

    ours, g_ours = grad_of(lambda x: prompt_loss(torch.nn.functional.normalize(x, dim=-1), targets, weights, stops))
    ref, g_ref = grad_of(lambda x: sum(_notebook_prompt(x, targets[j:j + 1], weights[j], stops[j]) for j in range(4)))
    plain, g_plain = grad_of(lambda x: prompt_loss(torch.nn.functional.normalize(x, dim=-1), targets, weights))
    torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(ours, plain, rtol=0, atol=0)  # a stop changes no value
    assert not torch.allclose(g_ours, g_plain)  # but it changes the gradient
    # the prompts' own stops, as the objective builds them: -inf where none
    prompts = [Prompt("a", stop=0.5), Prompt("b"), Prompt("c", -1.0, stop=-2.0)]
    assert stops_tensor(prompts, torch.device("cpu")).tolist() == [0.5, -math.inf, -2.0]
    assert stops_tensor([Prompt("a"), Prompt("b")], torch.device("cpu")) is None


def test_a_stop_above_every_distance_leaves_no_gradient():
    x = _unit(6, 16, 9).requires_grad_(True)
    targets = _unit(2, 16, 10)
    prompt_loss(x, targets, torch.tensor([1.0, -1.0], dtype=torch.float64),
                torch.tensor([5.0, 5.0], dtype=torch.float64)).backward()
    assert torch.count_nonzero(x.grad) == 0
