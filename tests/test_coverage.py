"""A region prompt's weight per cutout is its coverage: the region's mask seen through each cutout's box (checked here
against torch's own resampling of the cropped mask, and by counting mask pixels) and through the same geometric
augments as the pixels; normalised per start; and the one scorer (one pass, chunks, shards) and the objective weight
each cutout's distance by it, as written out here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vqclip.config import merge_layers
from vqclip.optim.coverage import cover_weights, coverage, region_masks
from vqclip.optim.cutouts import CutoutDraw, Cutouts
from vqclip.optim.objective import Objective
from vqclip.optim.prompts import Prompt
from vqclip.optim.regions import named_mask
from vqclip.optim.scoring import Scorer

CPU = torch.device("cpu")


def crop_seen(mask, box, size):
    """A mask [H,W]'s crop at box (x0, y0, x1, y1) resampled to size x size by torch itself: adaptive average pooling
    when shrinking (the notebook's resize), bilinear when enlarging."""
    x0, y0, x1, y1 = (int(v) for v in box)
    crop = mask[y0:y1, x0:x1][None, None]
    if x1 - x0 >= size:
        return F.adaptive_avg_pool2d(crop, size)[0, 0]
    return F.interpolate(crop, size=(size, size), mode="bilinear", align_corners=False)[0, 0]


def random_masks(h, w, r=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(r, h, w, generator=g).round() * torch.rand(r, 1, 1, generator=g)


def test_coverage_is_the_mean_of_the_mask_through_each_box():
    masks = random_masks(20, 28)
    boxes = torch.tensor([[0, 0, 20, 20], [8, 0, 28, 20], [3, 5, 10, 12], [27, 19, 28, 20], [5, 2, 18, 15],
                          [1, 1, 9, 9]], dtype=torch.float32)
    got = coverage(masks, CutoutDraw(boxes, None, None), 8)
    want = torch.tensor([[crop_seen(m, b, 8).mean().item() for m in masks] for b in boxes])
    torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_a_box_of_whole_blocks_covers_the_count_of_its_mask_pixels():
    """Boxes whose side is a multiple of the cutout: each cutout pixel maps back to a block of whole mask pixels."""
    g = torch.Generator().manual_seed(1)
    mask = (torch.rand(24, 32, generator=g) > 0.6).float()
    boxes = torch.tensor([[0, 0, 24, 24], [8, 0, 32, 24], [5, 3, 13, 11], [20, 12, 32, 24], [0, 16, 4, 20]],
                         dtype=torch.float32)
    got = coverage(mask[None], CutoutDraw(boxes, None, None), 4)[:, 0]
    for k, (x0, y0, x1, y1) in enumerate(boxes.long().tolist()):
        inside = sum(int(mask[y, x]) for y in range(y0, y1) for x in range(x0, x1))
        assert got[k].item() == pytest.approx(inside / (x1 - x0) / (y1 - y0), abs=1e-6)


@pytest.mark.parametrize("augments", [["affine", "perspective", "flip"], ["flip", "affine"], ["erasing"]])
def test_the_mask_follows_the_pixels_through_the_geometric_augments(augments):
    """A picture whose channels all equal the region's mask, cut and augmented as the run does, shows the coverage."""
    torch.manual_seed(3)  # Kornia draws its parameters from the global generator
    cut = Cutouts(8, 6, augments=augments)
    mask = torch.from_numpy(named_mask("left", 24, 16)).float()
    draw = cut.draw(1, 16, 24, torch.Generator().manual_seed(0))
    picture = cut.apply(mask.expand(1, 3, 16, 24), draw)  # [6,3,8,8]
    got = coverage(mask[None], draw, 8, cut.augment)
    torch.testing.assert_close(got[:, 0], picture[:, 0].mean((1, 2)), rtol=0, atol=1e-6)
    if "perspective" in augments:
        assert (got != coverage(mask[None], CutoutDraw(draw.boxes, None, None), 8)).any()  # the augments moved it


def test_colour_augments_leave_the_coverage_alone():
    torch.manual_seed(4)
    cut, plain = Cutouts(8, 6, augments=["affine", "jitter", "sharpness"]), Cutouts(8, 6, augments=["affine"])
    mask = torch.from_numpy(named_mask("top", 20, 20)).float()[None]
    draw = cut.draw(1, 20, 20, torch.Generator().manual_seed(0))
    affine_only = CutoutDraw(draw.boxes, draw.augment[:1], None)
    torch.testing.assert_close(coverage(mask, draw, 8, cut.augment), coverage(mask, affine_only, 8, plain.augment),
                               rtol=0, atol=0)


def test_the_weights_are_the_coverage_over_its_mean_per_start():
    cover = torch.tensor([[0.5, 0.0], [1.0, 0.0], [0.0, 0.0], [0.2, 0.4], [0.2, 0.0], [0.2, 0.2]])
    got = cover_weights(cover, [0, -1, 1, 0], starts=2)
    want = torch.tensor([[1.0, 1, 0, 1], [2, 1, 0, 2], [0, 1, 0, 0], [1, 1, 2, 1], [1, 1, 0, 1], [1, 1, 1, 1]])
    torch.testing.assert_close(got, want)  # start 0 never touches region 1: its prompt weighs 0 there


def test_region_masks_are_shared_by_prompts_of_one_region():
    masks, index = region_masks([Prompt("a", region="left"), Prompt("b"), Prompt("c", region="centre"),
                                 Prompt("d", -1.0, region="left")], 6, 4)
    assert index == [0, -1, 1, 0] and masks.shape == (2, 4, 6) and masks.dtype == torch.float32
    torch.testing.assert_close(masks[1], torch.from_numpy(named_mask("centre", 6, 4)).float())
    assert region_masks([Prompt("a"), Prompt("b")], 6, 4) == (None, [-1, -1])


@pytest.fixture(scope="module")
def scored(tiny_models):
    """Cutouts [6,3,32,32], two targets (one pushed away), per-cutout weights [6,2] and the loss written out:
    sum over cutouts of weight x distance, over N, times the prompt's weight."""
    clip = tiny_models.clips[0][0]
    g = torch.Generator().manual_seed(0)
    cutouts = torch.rand(6, 3, 32, 32, generator=g)
    with torch.no_grad():
        targets = clip.encode_text(["a red square", "a green circle"])
    weights = torch.tensor([1.0, -0.5])
    cover = torch.tensor([[2.0, 1], [0, 1], [1, 1], [0.5, 1], [0.25, 1], [2.25, 1]])

    def reference(c):
        x = clip.encode_image(c)
        x = x / x.norm(dim=-1, keepdim=True)
        d = 2 * torch.arcsin(torch.cdist(x, targets).div(2).clamp(max=1)) ** 2
        return sum(weights[m] * (d[:, m] * cover[:, m]).sum() / len(c) for m in range(2))

    return clip, cutouts, targets, weights, cover, reference


def value_and_grad(fn, cutouts):
    leaf = cutouts.clone().requires_grad_(True)
    loss = fn(leaf)
    (1.5 * loss).backward()
    return loss.detach(), leaf.grad


@pytest.mark.parametrize("chunk", [0, 1, 4, 6])
def test_the_scorer_weights_each_cutout_in_one_pass_and_in_chunks(scored, chunk):
    clip, cutouts, targets, weights, cover, reference = scored
    want, want_grad = value_and_grad(reference, cutouts)
    got, grad = value_and_grad(lambda c: Scorer(clip.encode_image, chunk=chunk)(c, targets, weights, None, cover),
                               cutouts)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad, want_grad, rtol=1e-4, atol=1e-7)
    assert grad[1].abs().sum() < grad[0].abs().sum()  # cutout 1 is outside region 0: only the push of target 1 moves it


def test_shards_of_weighted_cutouts_sum_to_the_one_pass(scored, monkeypatch):
    """Two devices, played one after the other (all_reduce then sums nothing): their losses and gradients add up."""
    clip, cutouts, targets, weights, cover, reference = scored
    monkeypatch.setattr(torch.distributed, "all_reduce", lambda t: t)
    want, want_grad = value_and_grad(reference, cutouts)
    shares = [value_and_grad(lambda c: Scorer(clip.encode_image, chunk=2, shard=(r, 2))(c, targets, weights, None,
                                                                                       cover), cutouts)
              for r in range(2)]
    torch.testing.assert_close(shares[0][0] + shares[1][0], want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(shares[0][1] + shares[1][1], want_grad, rtol=1e-4, atol=1e-7)


def test_the_objective_weights_each_prompt_by_the_coverage_of_every_start(tiny_job, tiny_models):
    """Two starts, a left and a right prompt and one everywhere: the CLIP term is the coverage-weighted mean distance
    per start, computed here from torch's resampling of the masks, averaged over the starts."""
    cfg = merge_layers([("tiny", tiny_job), ("t", {"prompt": "a red square@left|a green circle:0.5@right|a dog:-0.25",
                                                   "size": [48, 32], "cutouts": {"n": 4, "augments": []}})])
    objective = Objective(cfg, tiny_models, CPU, batch=2)
    clip = tiny_models.clips[0][0]
    image = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(2))
    boxes = torch.tensor([[0, 0, 32, 32], [16, 0, 48, 32], [2, 3, 30, 31], [20, 4, 44, 28],
                          [10, 0, 42, 32], [0, 0, 24, 24], [24, 8, 48, 32], [5, 0, 37, 32]], dtype=torch.float32)
    draw = CutoutDraw(boxes, None, None)
    with torch.no_grad():
        got = objective.losses(image, None, None, 0, views=[draw])["clip:" + clip.name]
        crops = torch.stack([crop_seen(image[k // 4, c], b, 32) for k, b in enumerate(boxes) for c in range(3)])
        x = clip.encode_image(crops.view(8, 3, 32, 32))
        x = x / x.norm(dim=-1, keepdim=True)
        t = clip.encode_text(["a red square", "a green circle", "a dog"])
        d = 2 * torch.arcsin(torch.cdist(x, t).div(2).clamp(max=1)) ** 2  # [8,3]
    want = 0.0
    for start in range(2):
        rows = slice(4 * start, 4 * start + 4)
        for m, (region, weight) in enumerate([("left", 1.0), ("right", 0.5), (None, -0.25)]):
            if region is None:
                want += weight * d[rows, m].mean() / 2
                continue
            mask = torch.from_numpy(named_mask(region, 48, 32)).float()
            c = torch.tensor([crop_seen(mask, b, 32).mean().item() for b in boxes[rows]])
            want += weight * (c * d[rows, m]).sum() / c.sum() / 2
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_a_region_story_of_best_of_n_resumes_as_if_never_stopped(tiny_job, tmp_path):
    """Key-framed region prompts (a name, then a mask image) with best of 2: stopped and resumed, the run ends as the
    uninterrupted one; without the regions it ends elsewhere (the regions reach the loss)."""
    from PIL import Image

    from vqclip.runs.pipeline import run_job
    from vqclip.runs.resume import resume_run

    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 0, 8, 16))
    mask.save(tmp_path / "half.png")

    def run(name, steps, regions=("@top", f"@{tmp_path / 'half.png'}")):
        story = [{"at": 0, "prompt": "a red square" + regions[0]}, {"at": 3, "prompt": "a green circle" + regions[1]}]
        return run_job(merge_layers([("tiny", tiny_job), ("t", {
            "story": story, "steps": steps, "seed": 3, "candidates": {"n": 2, "steps": 1, "views": 2},
            "output": {"dir": str(tmp_path / name), "save_every": 0, "video": False}})]))

    first = run("run", 4)
    again = resume_run(first.dir, overrides={"steps": 6})
    whole = run("whole", 6)
    assert again.result.steps == whole.result.steps == 6
    assert torch.equal(again.result.image, whole.result.image)
    plain = run("plain", 6, ("", ""))
    assert not torch.equal(plain.result.image, whole.result.image)


def test_best_of_n_scores_each_start_by_its_views_coverage(tiny_job, tiny_models):
    """The pick's score of a start is the run's region-weighted loss on the views replayed from the seed: for each
    prompt, the coverage-weighted mean distance (coverage from torch's resampling of the mask, written out here)."""
    from vqclip.modes.bestofn import Ranking, start_scores
    from vqclip.nets.device import seeded

    cfg = merge_layers([("tiny", tiny_job), ("t", {"prompt": "a red square@left|a green circle:0.5@top|a dog:-0.25",
                                                   "size": [48, 32], "candidates": {"n": 2, "views": 5},
                                                   "cutouts": {"augments": []}})])
    objective = Objective(cfg, tiny_models, CPU, batch=2)
    clip = tiny_models.clips[0][0]
    ctx = type("Ctx", (), {"cfg": cfg, "models": tiny_models, "device": CPU, "seed": 7})()
    ranking = Ranking(ctx, objective)
    images = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(5))
    got = ranking.scores(images, 0)
    with seeded(CPU, 7):
        draw = ranking.views[32].draw(1, 32, 48)
    masks = [torch.from_numpy(named_mask(r, 48, 32)).float() for r in ("left", "top")]
    c = torch.tensor([[crop_seen(m, b, 32).mean().item() for m in masks] for b in draw.boxes])  # [5,2]
    with torch.no_grad():
        t = clip.encode_text(["a red square", "a green circle", "a dog"])
        for k in range(2):
            x = clip.encode_image(ranking.views[32].apply(images[k:k + 1], draw))
            x = x / x.norm(dim=-1, keepdim=True)
            d = 2 * torch.arcsin(torch.cdist(x, t).div(2).clamp(max=1)) ** 2
            want = ((c[:, 0] * d[:, 0]).sum() / c[:, 0].sum() + 0.5 * (c[:, 1] * d[:, 1]).sum() / c[:, 1].sum()
                    - 0.25 * d[:, 2].mean())
            assert got[k] == pytest.approx(want.item(), rel=1e-5)
    plain = start_scores(images, tiny_models.clips, objective.targets, objective.weights_at(0), ranking.views, CPU,
                         None, 7)
    assert plain != pytest.approx(got, rel=1e-5)  # without the regions the same views score otherwise
