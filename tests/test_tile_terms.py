"""A tiled job's terms see no border (vqclip.terms.tv, vqclip.terms.guide): the TV prior smooths the pixel pairs across
the wrap as those inside (so it does not change when the image is rolled), and the guide scores the image rolled
by a random offset as the CLIP cutouts do; a job without a tile keeps the plain TV and the unrolled guide."""

import pytest
import torch

from vqclip.config import merge_layers
from vqclip.optim.guidance import GuideTerm
from vqclip.optim.losses import tv_loss
from vqclip.optim.objective import Objective
from vqclip.terms.guide import GuideLoss
from vqclip.terms.tile import random_roll
from vqclip.terms.tv import circular_tv_loss

CPU = torch.device("cpu")


def job(tiny_job, **over):
    return merge_layers([("tiny", tiny_job), ("t", {"prompt": "a red square", "steps": 4, "seed": 1, **over})])


def wrapped_tv(image):
    """Independent: each pixel against its right and lower neighbour, the last column's and row's taken from the
    first (concatenated, not rolled)."""
    right = torch.cat([image[..., :, 1:], image[..., :, :1]], -1)
    below = torch.cat([image[..., 1:, :], image[..., :1, :]], -2)
    return (right - image).pow(2).mean() + (below - image).pow(2).mean()


def plain_tv(image):
    """Independent: each pixel against its right and lower neighbour inside the image only."""
    return image.diff(dim=-1).pow(2).mean() + image.diff(dim=-2).pow(2).mean()


def test_the_circular_tv_counts_the_pairs_across_the_wrap_and_no_roll_changes_it():
    image = torch.rand(2, 3, 6, 5, generator=torch.Generator().manual_seed(1))
    assert circular_tv_loss(image).item() == pytest.approx(wrapped_tv(image).item(), rel=1e-6)
    for shift in ((0, 1), (2, 0), (5, 3), (-1, -4)):
        rolled = image.roll(shift, (-2, -1))
        assert circular_tv_loss(rolled).item() == pytest.approx(circular_tv_loss(image).item(), rel=1e-6)
    assert tv_loss(image.roll(1, -1)).item() != pytest.approx(tv_loss(image).item(), rel=1e-3)  # the plain TV does
    # a ramp across the width: every step inside 1/4, the wrap's 3/4 (the plain TV sees only the steps inside)
    ramp = torch.arange(4.0).div(4).expand(1, 3, 2, 4)
    assert circular_tv_loss(ramp).item() == pytest.approx((3 * (1 / 4) ** 2 + (3 / 4) ** 2) / 4)
    assert tv_loss(ramp).item() == pytest.approx((1 / 4) ** 2)
    # only the wrap steps: a column alone on the right, a row alone at the bottom
    edge = torch.zeros(1, 1, 4, 4)
    edge[..., :, 3] = 1
    assert circular_tv_loss(edge).item() == pytest.approx(2 * 4 / 16)  # its steps to the left and across the wrap
    edge = torch.zeros(1, 1, 4, 4)
    edge[..., 3, :] = 1
    assert circular_tv_loss(edge).item() == pytest.approx(2 * 4 / 16)


def test_a_tiled_jobs_tv_term_smooths_across_the_wrap_and_a_plain_jobs_does_not(tiny_job, tiny_models):
    z = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(2))
    for tile, expected in ((True, wrapped_tv), (False, plain_tv)):
        objective = Objective(job(tiny_job, tv_weight=0.3, tile=tile), tiny_models, CPU)
        image = objective.decode(z)
        parts = objective.losses(image, z, z, 0)
        assert parts["tv"].item() == pytest.approx(0.3 * expected(image).item(), rel=1e-6), tile
        assert expected(image).item() != pytest.approx((wrapped_tv if not tile else plain_tv)(image).item(), rel=1e-4)


def test_a_tiled_jobs_guide_scores_the_image_rolled_as_the_cutouts_see_it(tiny_job, tiny_models, tmp_path):
    from test_guide import write_guide  # a random guide in the published format
    from vqclip.nets.load import Models

    guide = write_guide(tmp_path)[2]
    models = Models(tiny_models.vqgan, tiny_models.clips, guide=guide)
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    reference = GuideTerm(guide, 4)
    reference.aim(["a red square"])
    values = {}
    for tile in (True, False):
        term = GuideLoss(job(tiny_job, tile=tile, guide={"model": "g", "weights": "w", "weight": 2.0, "views": 4}),
                         models, CPU)
        term.classifier.aim(["a red square"])
        torch.manual_seed(5)
        values[tile] = term(image, image, image, 0).item()
    torch.manual_seed(5)
    rolled = random_roll(image)  # the offset is drawn first, then the guide's augmented views
    assert not torch.equal(rolled, image)
    assert values[True] == pytest.approx(2.0 * reference(rolled).item(), rel=1e-6)
    torch.manual_seed(5)
    assert values[False] == pytest.approx(2.0 * reference(image).item(), rel=1e-6)
    assert values[True] != pytest.approx(values[False], rel=1e-4)
