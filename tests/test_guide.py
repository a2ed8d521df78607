"""Classifier guidance (vqclip.guide): the file format, the label a prompt names, the loss and its use in a run."""

from __future__ import annotations

import json
import logging
import os
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vqclip.config import check_inputs, merge_layers
from vqclip.errors import VqclipError
from runs import Run
from vqclip.nets.load import Models
from vqclip.nets.guide import Guide, GuideSpec, load_guide, prompt_label, read_spec
from vqclip.optim.guidance import GuideTerm, guide_loss

SPEC = GuideSpec(labels=("circle", "square", "_none"), widths=(8, 8), strides=(2, 2), groups=4, image_size=32)


def write_guide(folder: Path, spec: GuideSpec = SPEC, seed: int = 0) -> tuple[Path, Path, Guide]:
    """A random guide in the published format: architecture JSON + fp16 safetensors of the network."""
    torch.manual_seed(seed)
    guide = Guide(spec).eval()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "guide.json").write_text(spec.to_json())
    save_file({k: v.half().contiguous() for k, v in guide.net.state_dict().items()}, folder / "guide.safetensors")
    return folder / "guide.json", folder / "guide.safetensors", guide


@pytest.fixture
def tiny_guide(tmp_path) -> tuple[Path, Path, Guide]:
    return write_guide(tmp_path / "guide")


def test_a_saved_guide_loads_to_the_same_network(tiny_guide):
    model, weights, original = tiny_guide
    loaded = load_guide(model, weights)
    x = torch.rand(3, 3, 32, 32)
    assert loaded.labels == SPEC.labels and not any(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded(x), original(x), atol=2e-2, rtol=2e-2)  # fp16 weights
    assert loaded(torch.rand(2, 3, 64, 48)).shape == (2, 3)  # other sizes are resized to its input


@pytest.mark.parametrize("text, expected", [
    ({"labels": ["a", "b"], "widths": [8], "strides": [1], "colour": 1}, "unknown key(s) colour"),
    ({"labels": ["a", "b"], "widths": [8]}, "missing strides"),
    ({"labels": ["a"], "widths": [8], "strides": [1]}, "at least two single words"),
    ({"labels": ["red circle", "b"], "widths": [8], "strides": [1]}, "at least two single words"),
    ({"labels": ["a", "b"], "widths": [True], "strides": [1]}, "positive integers"),
    ({"labels": ["a", "b"], "widths": [8, 8], "strides": [1]}, "same length"),
    ({"labels": ["a", "b"], "widths": [6], "strides": [1], "groups": 4}, "divides every width"),
    ({"labels": ["a", "b"], "widths": [8], "strides": [1], "kind": "vit"}, "unknown guide kind"),
    ([1, 2], "a guide JSON is a mapping"),
    ("{not json", "not a readable guide JSON"),
])
def test_bad_architecture_json_is_one_line(tmp_path, text, expected):
    path = tmp_path / "g.json"
    path.write_text(text if isinstance(text, str) else json.dumps(text))
    with pytest.raises(VqclipError, match=expected.replace("(", r"\(").replace(")", r"\)")) as info:
        read_spec(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_or_mismatched_files_are_one_line(tiny_guide, tmp_path):
    model, weights, _ = tiny_guide
    with pytest.raises(VqclipError, match="no such guide architecture JSON"):
        read_spec(tmp_path / "nope.json")
    other = tmp_path / "other.json"
    other.write_text(GuideSpec(labels=("a", "b"), widths=(16,), strides=(1,)).to_json())
    with pytest.raises(VqclipError, match="does not fit the guide architecture"):
        load_guide(other, weights)


class _Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_guide_weights_never_run_code(tiny_guide, tmp_path):
    model, _, _ = tiny_guide
    marker, bad = tmp_path / "pwned", tmp_path / "guide.pt"
    bad.write_bytes(pickle.dumps({"w": _Payload(marker)}, protocol=2))
    with pytest.raises(VqclipError):
        load_guide(model, bad)
    assert not marker.exists()


@pytest.mark.parametrize("prompt, expected", [
    ("a red circle on a blue background", 0), ("Two RED Circles", 0), ("a square, then a circle", 1),
    ("a red blob", None), ("circled wagons", None), ("_none of these", None), ("none", None)])
def test_the_label_is_the_first_label_word_of_the_prompt(prompt, expected):
    assert prompt_label(prompt, SPEC.labels) == expected


def test_the_loss_pulls_the_image_towards_the_label(tiny_guide):
    _, _, guide = tiny_guide
    term = GuideTerm(guide, views=2)
    term.aim(["a red blob", "a yellow square"])
    assert term.label == 1
    image = torch.rand(2, 3, 32, 32, requires_grad=True)
    opt = torch.optim.Adam([image], lr=0.05)
    torch.manual_seed(0)
    before = guide_loss(guide(image.detach()), 1).item()
    for _ in range(30):
        loss = term(image)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            image.clamp_(0, 1)
    assert guide_loss(guide(image.detach()), 1).item() < before - 0.05
    assert guide(image.detach()).argmax(1).eq(1).all()


def test_the_bf16_path_runs_on_cpu(tiny_guide):
    _, _, guide = tiny_guide
    term = GuideTerm(guide, views=3)
    term.aim(["a circle"])
    image = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss = term(image, torch.bfloat16)
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and image.grad.abs().sum() > 0


@pytest.mark.parametrize("layer, expected", [
    ({"guide": {"model": "g.json"}}, "give both model"),
    ({"guide": {"weight": -1}}, "guide.weight: must be >= 0"),
    ({"guide": {"views": 0}}, "guide.views: must be >= 1"),
    ({"guide": {"wieght": 1}}, "did you mean 'guide.weight'"),
    ({"guide": "g.json"}, "guide: expected a section"),
])
def test_bad_guide_settings_are_one_line(tiny_job, layer, expected):
    with pytest.raises(VqclipError, match=expected) as info:
        merge_layers([("defaults", tiny_job), ("job.yaml", layer)])
    assert "\n" not in str(info.value)


def test_missing_guide_files_are_named_before_anything_runs(tiny_job, tmp_path):
    cfg = merge_layers([("d", tiny_job), ("j", {"prompt": "a circle", "guide": {
        "model": str(tmp_path / "g.json"), "weights": str(tmp_path / "g.safetensors")}})])
    with pytest.raises(VqclipError, match="guide.model: .*no such file; guide.weights: .*check the guide paths"):
        check_inputs(cfg)


def _generation(tiny_job, tiny_models, guide, prompt, **guide_cfg):
    cfg = merge_layers([("d", tiny_job), ("j", {"prompt": prompt, "guide": {"model": "g", "weights": "w", **guide_cfg}})])
    models = Models(tiny_models.vqgan, tiny_models.clips, guide=guide)
    return Run(cfg, models, torch.device("cpu"), seed=0)


def test_a_run_adds_the_guide_term_for_the_label_its_prompt_names(tiny_job, tiny_models, tiny_guide):
    _, _, guide = tiny_guide
    gen = _generation(tiny_job, tiny_models, guide, "a red square:1|a circle:-1", weight=2.0)
    parts = gen.losses(gen.decode())
    assert gen.guide.label == 1 and "guide" in parts  # the negative prompt's 'circle' is not the aim
    expected = 2.0 * guide_loss(guide(gen.decode().detach().repeat_interleave(4, 0)), 1)
    assert 0.5 * expected.item() < parts["guide"].item() < 2 * expected.item()  # the same loss, on augmented views
    image, terms = gen.decode().detach(), []
    for g in (gen, _generation(tiny_job, tiny_models, guide, "a red square:1|a circle:-1", weight=0.5)):
        torch.manual_seed(3)
        terms.append(g.losses(image)["guide"].item())
    assert terms[0] == pytest.approx(4 * terms[1], rel=1e-5)  # guide.weight scales the term
    event = gen.step()
    assert "guide" in event.losses and abs(sum(event.losses.values()) - event.loss) < 1e-4  # it is minimised
    pushed = _generation(tiny_job, tiny_models, guide, "a red blob:1|a circle:-1")
    assert pushed.guide.label is None  # a prompt pushed away from is never aimed at, even when nothing else is
    off = _generation(tiny_job, tiny_models, guide, "a red square", weight=0.0)
    assert off.guide is None and "guide" not in off.losses(off.decode())


def test_a_prompt_without_a_label_runs_unguided_with_a_notice(tiny_job, tiny_models, tiny_guide, caplog):
    _, _, guide = tiny_guide
    with caplog.at_level(logging.INFO, logger="vqclip"):
        gen = _generation(tiny_job, tiny_models, guide, "a red blob")
    assert gen.guide.label is None and "guide" not in gen.losses(gen.decode())
    assert "names none of circle, square" in caplog.text and "_none" not in caplog.text
    from vqclip.optim.prompts import parse_job_prompts

    gen.set_prompts(parse_job_prompts("now a circle", [], []))  # a story's next prompt re-aims it
    assert gen.guide.label == 0 and "guide" in gen.losses(gen.decode())


def test_a_job_naming_a_guide_loads_it_records_it_and_resumes_with_it(tiny_job, tiny_guide, tmp_path):
    from vqclip.runs.callbacks import StopAfter
    from vqclip.runs.jobs import build_config
    from vqclip.runs.pipeline import run_job
    from vqclip.runs.resume import resume_run

    model, weights, _ = tiny_guide
    seen = []
    job = {**tiny_job, "prompt": "a square", "steps": 3, "seed": 1, "state_every": 1,
           "guide": {"model": str(model), "weights": str(weights), "weight": 0.5},
           "output": {"dir": str(tmp_path / "run"), "progress": False}}
    run = run_job(build_config(job), extra_callbacks=[StopAfter(2), lambda e: seen.append(e.losses)])
    assert len(seen) >= 2 and all("guide" in losses for losses in seen) and run.interrupted
    recorded = (run.dir / "job.yaml").read_text()
    assert f"model: {model}" in recorded and "weight: 0.5" in recorded
    assert resume_run(run.dir).final.is_file()


def test_a_torch_file_of_the_whole_module_loads_too(tiny_guide, tmp_path):
    model, _, original = tiny_guide
    torch.save(original.state_dict(), tmp_path / "guide.pt")  # keys 'net.0.weight', ...: the module, not its net
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(load_guide(model, tmp_path / "guide.pt")(x), original(x))


def test_the_guide_scores_affine_augmented_noisy_views(tiny_guide):
    """Each image is seen as `views` views: Kornia's RandomAffine of it (from torch's RNG, as Kornia draws) plus
    per-view noise; the loss is the cross-entropy of the aimed label averaged over them."""
    import kornia.augmentation as K

    _, _, guide = tiny_guide
    term = GuideTerm(guide, views=6, noise=0.1)
    term.aim(["a square"])
    image = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    seen = []
    handle = guide.net.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    try:
        torch.manual_seed(7)
        loss = term(image)
    finally:
        handle.remove()
    torch.manual_seed(7)
    affine = K.AugmentationSequential(K.RandomAffine(degrees=15, translate=0.1, p=0.7, padding_mode="border"))
    views = affine(image.repeat_interleave(6, 0))
    views = views + torch.rand(12, 1, 1, 1) * 0.1 * torch.randn(views.shape)
    torch.testing.assert_close(seen[0], views * 2 - 1)  # the guide takes [-1, 1]
    torch.testing.assert_close(loss, guide_loss(guide(views), 1))
    moved = (views[:6] - image[:1]).abs().flatten(1).mean(1)
    assert (moved > 0.05).sum() >= 2  # the views differ from the image by more than the noise


def _story_generation(tiny_job, tiny_models, guide, layer):
    from runs import Run

    cfg = merge_layers([("d", tiny_job), ("j", {"steps": 10, **layer, "guide": {"model": "g", "weights": "w"}})])
    return Run(cfg, Models(tiny_models.vqgan, tiny_models.clips, guide=guide), torch.device("cpu"), 0)


def test_a_story_re_aims_the_guide_at_the_prompt_of_each_step(tiny_job, tiny_models, tiny_guide):
    _, _, guide = tiny_guide
    gen = _story_generation(tiny_job, tiny_models, guide, {"prompt": "a red circle ^ a blue square"})
    labels = []
    for _ in range(10):
        event = gen.step()
        labels.append(gen.guide.label)
        assert "guide" in event.losses
    assert labels == [0] * 5 + [1] * 5  # circle for the first half, square for the second
    gen = _story_generation(tiny_job, tiny_models, guide, {"story": [{"at": 0, "prompt": "a blue square"}, {
        "at": 3, "prompt": "a blue square:-1|a red circle"}]})
    gen.step_count = 4
    gen.losses(gen.decode())
    assert gen.guide.label == 0  # the keyframe pushes away from the square: it aims at the circle it pulls to


def test_in_a_blend_the_guide_follows_the_strongest_prompt(tiny_job, tiny_models, tiny_guide):
    _, _, guide = tiny_guide
    gen = _story_generation(tiny_job, tiny_models, guide, {"story_mode": "blend", "story": [
        {"at": 0, "prompt": "a circle"}, {"at": 8, "prompt": "a square"}]})
    seen = {}
    for step in (0, 3, 5, 8):
        gen.step_count = step
        gen.losses(gen.decode())
        seen[step] = gen.guide.label
    assert seen == {0: 0, 3: 0, 5: 1, 8: 1}
