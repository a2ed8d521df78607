"""Classifier guidance as a loss term (vqclip.optim.guidance): the cross-entropy written out, the label of the
strongest text that names one, and the job's number of views."""

import pytest
import torch

from vqclip.config import merge_layers
from vqclip.nets.guide import Guide, GuideSpec
from vqclip.nets.load import Models
from vqclip.optim.guidance import GuideTerm, guide_loss
from vqclip.optim.objective import Objective

SPEC = GuideSpec(labels=("circle", "square", "_none"), widths=(8,), strides=(2,), groups=4, image_size=32)


@pytest.fixture(scope="module")
def guide():
    torch.manual_seed(0)
    return Guide(SPEC).eval()


def test_the_loss_is_the_mean_negative_log_likelihood_of_the_label():
    logits = torch.randn(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for label in (0, 2):
        expected = -(logits.exp() / logits.exp().sum(1, keepdim=True))[:, label].log().mean()
        torch.testing.assert_close(guide_loss(logits, label), expected.float(), rtol=1e-6, atol=1e-7)


def test_it_aims_at_the_first_text_that_names_a_label(guide):
    term = GuideTerm(guide)
    term.aim(["a red blob", "a yellow square", "a circle"])
    assert term.label == 1
    term.aim(["a blob"])
    assert term.label is None


def test_a_run_scores_the_jobs_number_of_views_aimed_at_its_strongest_pulling_prompt(tiny_job, tiny_models, guide):
    """guide.views 3: each image is seen 3 times; the aim is the strongest positive text ('square' at weight 2 before
    'circle' at 1), never a pushed one."""
    cfg = merge_layers([("tiny", tiny_job), ("t", {"prompt": "a circle:1|a square:2|a triangle:-3", "steps": 2,
                                                   "guide": {"model": "g", "weights": "w", "views": 3}})])
    objective = Objective(cfg, Models(tiny_models.vqgan, tiny_models.clips, guide=guide), torch.device("cpu"))
    assert objective.guide.label == 1
    seen = []
    hook = guide.net.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    try:
        z = torch.zeros(2, 8, 8, 8)
        parts = objective.losses(objective.decode(z), z, z, 0)
    finally:
        hook.remove()
    assert seen == [6] and "guide" in parts  # 2 images x 3 views
