"""CLIP's other jobs from Python, with plain arguments (no argparse namespace): which CLIPs, classify, score, rank and
search; the math checked against an independent computation on the tiny CLIP's own embeddings."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from vqclip.errors import VqclipError
from vqclip.tools.clipping import ClipChoice, classify, clip_specs, load_clips, rank_runs, score_images, search

IMAGES = [((200, 30, 30), "red.png"), ((30, 200, 30), "green.png"), ((30, 30, 200), "blue.png")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three flat 32x32 images, and two runs (final.png with the prompt recorded as a run records it)."""
    root = tmp_path_factory.mktemp("clipping")
    (root / "imgs").mkdir()
    for rgb, name in IMAGES:
        Image.new("RGB", (32, 32), rgb).save(root / "imgs" / name)
    for k, (rgb, prompt) in enumerate([((200, 30, 30), "a red square"), ((30, 30, 200), "a green square")]):
        info = PngImagePlugin.PngInfo()
        info.add_text("vqclip", json.dumps({"prompt": prompt}))
        (root / "runs" / f"run{k}").mkdir(parents=True)
        Image.new("RGB", (32, 32), rgb).save(root / "runs" / f"run{k}" / "final.png", pnginfo=info)
    return root


@pytest.fixture(scope="module")
def tiny(tiny_clip):
    cfg, weights = tiny_clip
    return ClipChoice(clip_models=(str(cfg),), clip_pretrained=(str(weights),), device="cpu")


def embeddings(clip, folder):
    """Unit image embeddings [3,D] of the three images, as CLIP's eval transform prepares them (32x32 already)."""
    batch = torch.stack([torch.from_numpy(np.array(Image.open(folder / "imgs" / n).convert("RGB"))).permute(2, 0, 1)
                         for _, n in IMAGES]).float() / 255
    with torch.no_grad():
        return clip.encode_image(batch)


def test_classify_gives_each_images_softmax_over_the_labels(folder, tiny):
    """p = softmax(scale x cos(image, mean template embedding of each label)), computed here from the CLIP's own
    text and image embeddings."""
    labels, templates = ["a red thing", "a green thing", "a blue thing"], ["{}", "a photo of {}"]
    got = classify([folder / "imgs"], labels, templates, clips=tiny)
    (clip,) = load_clips(tiny)
    with torch.no_grad():
        text = torch.stack([clip.encode_text([t.format(lab) for t in templates]).mean(0) for lab in labels])
    text = text / text.norm(dim=-1, keepdim=True)
    scale = min(float(clip.model.logit_scale.exp()), 100.0)
    want = torch.softmax(scale * embeddings(clip, folder) @ text.T, dim=-1)
    by_name = {r["image"].rsplit("/", 1)[-1]: r for r in got}
    for row, (_, name) in zip(want.tolist(), IMAGES):
        assert list(by_name[name]["probs"].values()) == pytest.approx(row, abs=1e-4)
        assert by_name[name]["label"] == labels[int(np.argmax(row))]
    assert [len(r["top"]) for r in classify([folder / "imgs" / "red.png"], labels, templates, tiny, top=2)] == [2]


def test_score_ranks_by_cosine_best_first_and_top_cuts(folder, tiny):
    got = score_images([folder / "imgs"], "a red thing", clips=tiny)
    (clip,) = load_clips(tiny)
    with torch.no_grad():
        cos = (embeddings(clip, folder) @ clip.encode_text(["a red thing"]).T)[:, 0].tolist()
    want = sorted(zip([n for _, n in IMAGES], cos), key=lambda x: -x[1])
    assert [(r["image"].rsplit("/", 1)[-1], r["rank"]) for r in got] == [(n, i + 1) for i, (n, _) in enumerate(want)]
    assert [r["score"] for r in got] == pytest.approx([c for _, c in want], abs=1e-5)
    assert len(score_images([folder / "imgs"], "a red thing", tiny, top=1)) == 1


def test_rank_scores_each_run_against_its_own_prompt(folder, tiny):
    got = rank_runs(folder / "runs", tiny)
    (clip,) = load_clips(tiny)
    assert {r["prompt"] for r in got} == {"a red square", "a green square"} and [r["rank"] for r in got] == [1, 2]
    for r in got:
        img = torch.from_numpy(np.array(Image.open(r["image"]).convert("RGB"))).permute(2, 0, 1)[None].float() / 255
        with torch.no_grad():
            want = (clip.encode_image(img) @ clip.encode_text([r["prompt"]]).T).item()
        assert r["score"] == pytest.approx(want, abs=1e-5)


def test_search_finds_by_text_and_checks_its_query_first(folder, tiny, monkeypatch, tmp_path):
    monkeypatch.setenv("VQCLIP_HOME", str(tmp_path / "home"))
    data = search(folder / "imgs", "a red thing", clips=tiny, top=2)
    assert data["indexed"] == 3 and [r["rank"] for r in data["results"]] == [1, 2]
    assert data["results"][0]["path"] == score_images([folder / "imgs"], "a red thing", tiny)[0]["image"]
    with pytest.raises(VqclipError, match="exactly one query"):
        search(folder / "imgs", "a", image=folder / "imgs" / "red.png", clips=tiny)


def test_a_choice_names_its_clips_in_plain_arguments(tiny_clip):
    cfg, weights = map(str, tiny_clip)
    two = clip_specs(ClipChoice(clip_models=(cfg, cfg), clip_pretrained=(weights, "none")))
    assert [(c.model, c.pretrained) for c in two] == [(cfg, weights), (cfg, None)]  # none: random weights
    with pytest.raises(VqclipError, match="--clip-pretrained: give one per --clip-model"):
        clip_specs(ClipChoice(clip_models=(cfg, cfg), clip_pretrained=(weights,)))
    with pytest.raises(VqclipError, match="at least two labels"):
        classify(["x.png"], ["one"])
