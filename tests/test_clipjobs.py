"""CLIP's other jobs as a library: zero-shot classification, scores, image-file embedding and the search index."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tiny import write_clip
from vqclip.tools.clipjobs import check_templates, embed_image_files, encode_images, load_image_file, logit_scale, prompt_scores, scan_images, score, text_classifier, zero_shot
from vqclip.errors import VqclipError
from vqclip.files.atomic import TEMP_GLOB
from vqclip.mini import world
from vqclip.nets.clip import load_clip
from vqclip.tools.search import ImageIndex, clip_fingerprint, index_file

MINI_DIR = Path(world.__file__).resolve().parent / "weights"
MINI_CLIP = MINI_DIR / "clip.safetensors"
needs_mini = pytest.mark.skipif(not (MINI_CLIP.is_file() and (MINI_DIR / "clip.json").is_file()),
                                reason="the trained mini CLIP (vqclip/mini/weights/clip.safetensors) is not built yet")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The tiny random CLIP (image_size 32), for tests where the answer does not matter."""
    cfg, weights = write_clip(tmp_path_factory.mktemp("tinyclip"))
    return load_clip(str(cfg), str(weights))


@pytest.fixture(scope="module")
def mini():
    """The trained mini CLIP shipped with the package."""
    return load_clip(str(MINI_DIR / "clip.json"), str(MINI_CLIP))


def scene(color: str, shape: str, bg: str, size: int = 64, r: float = 18.0, at: tuple = (32.0, 32.0)) -> np.ndarray:
    """A mini-world image uint8 [size,size,3] of one shape (coordinates given at 64 px)."""
    s = size / 64
    return world.render(world.Scene(bg, (world.Shape(shape, color, at[0] * s, at[1] * s, r * s),)), size)


def to_tensor(arrays: list[np.ndarray]) -> torch.Tensor:
    """uint8 [H,W,3] arrays -> [B,3,H,W] in [0,1]."""
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


def save(img: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path)
    return path


# ---- classification and scores ----------------------------------------------------------------------------------

def test_check_templates_wants_one_slot():
    assert check_templates(["{}", "a photo of a {}."]) == ["{}", "a photo of a {}."]
    for bad in ([], ["a photo"], ["{} and {}"], ["a {x}"], ["{0}"]):
        with pytest.raises(VqclipError, match="template"):
            check_templates(bad)


def test_text_classifier_averages_templates(clip):
    labels, templates = ["cat", "dog"], ["a photo of a {}.", "art of a {}."]
    got = text_classifier(clip, labels, templates)
    for i, label in enumerate(labels):
        each = clip.encode_text([t.format(label) for t in templates])
        want = torch.nn.functional.normalize(each.mean(0), dim=-1)
        torch.testing.assert_close(got[i], want)
    assert torch.allclose(got.norm(dim=-1), torch.ones(2))
    with pytest.raises(VqclipError, match="repeat"):
        text_classifier(clip, ["cat", "cat"], templates)


def test_zero_shot_is_a_softmax_of_scaled_cosines(clip):
    images = torch.rand(3, 3, 48, 40, generator=torch.Generator().manual_seed(0))
    probs = zero_shot(clip, images, ["red", "green", "blue", "dog"], ["{}"])
    assert probs.shape == (3, 4)
    torch.testing.assert_close(probs.sum(-1), torch.ones(3))
    from open_clip.transform import image_transform_v2

    transform = image_transform_v2(clip.preprocess_cfg, is_train=False)  # open_clip's eval transform of the model
    emb = clip.encode_normalized(torch.stack([transform(im) for im in images]))
    want = (logit_scale(clip) * emb @ clip.encode_text(["red", "green", "blue", "dog"]).t()).softmax(-1)
    torch.testing.assert_close(probs, want)
    assert 1 < logit_scale(clip) <= 100


def test_score_is_the_cosine_per_image(clip):
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    one = score(clip, images, "a red circle")
    emb, txt = clip.encode_image(images), clip.encode_text(["a red circle", "a blue square"])
    torch.testing.assert_close(one, emb @ txt[0])
    pair = score(clip, images, ["a red circle", "a blue square"])
    torch.testing.assert_close(pair, (emb * txt).sum(-1))
    with pytest.raises(VqclipError, match="one text or one per image"):
        score(clip, images, ["a", "b", "c"])


def test_prompt_scores_weigh_the_parts(clip):
    emb = encode_images(clip, torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2)))
    a, b = clip.encode_text(["a red circle", "blurry"])
    torch.testing.assert_close(prompt_scores(clip, emb, ["a red circle"] * 2), emb @ a)
    mixed = prompt_scores(clip, emb, ["a red circle:2|blurry:-1", "a red circle"])
    torch.testing.assert_close(mixed[0], (2 * emb[0] @ a - emb[0] @ b) / 2)
    with pytest.raises(VqclipError, match="positive weight"):
        prompt_scores(clip, emb[:1], ["blurry:-1"])


@needs_mini
@pytest.mark.parametrize("shape", world.SHAPES)
def test_mini_classifies_every_colour(mini, shape):
    labels = list(world.COLORS)
    images, truth = [], []
    for i, color in enumerate(labels):
        bg = labels[(i + 3) % len(labels)]
        images.append(scene(color, shape, bg))
        truth.append(i)
    probs = zero_shot(mini, to_tensor(images), [f"{world._a(c)} {c} {shape}" for c in labels], ["{}"])
    assert probs.argmax(-1).tolist() == truth


@needs_mini
@pytest.mark.parametrize("color", list(world.COLORS))
def test_mini_classifies_every_shape(mini, color):
    bg = "white" if color != "white" else "black"
    images = [scene(color, s, bg, r=16 + 2 * i, at=(30 + 2 * i, 34)) for i, s in enumerate(world.SHAPES)]
    labels = [f"{world._a(color)} {color} {s}" for s in world.SHAPES]
    probs = zero_shot(mini, to_tensor(images), labels, ["{}"])
    assert probs.argmax(-1).tolist() == [0, 1, 2]
    assert probs.diagonal().min() > 0.5


# ---- image files ------------------------------------------------------------------------------------------------

def test_image_files_are_prepared_by_open_clips_transform_of_the_model(clip, tmp_path):
    from open_clip.transform import image_transform_v2

    img = np.zeros((40, 80, 3), np.uint8)
    img[:, :20] = 255  # the left quarter is cropped away by the centre crop, the rest is black
    img[:, 60:] = (0, 255, 0)
    p = save(img, tmp_path / "wide.png")
    kept, emb = embed_image_files(clip, [p])
    transform = image_transform_v2(clip.preprocess_cfg, is_train=False)
    torch.testing.assert_close(emb, clip.encode_normalized(transform(Image.open(p).convert("RGB"))[None]))
    assert load_image_file(p, 20).size == (80, 40)  # decoded whole: the transform resizes and crops
    Image.fromarray(img).convert("L").save(tmp_path / "grey.jpg")
    assert load_image_file(tmp_path / "grey.jpg", 16).mode == "RGB"


def test_embed_files_skips_bad_images_with_a_warning(clip, tmp_path, caplog):
    arrays = [scene(c, "circle", "black", size=32) for c in ("red", "green", "blue")]
    paths = [save(a, tmp_path / f"{i}.png") for i, a in enumerate(arrays)]
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "trunc.jpg").write_bytes(Path(save(arrays[0], tmp_path / "x.jpg")).read_bytes()[:200])
    files = [paths[0], tmp_path / "broken.png", paths[1], tmp_path / "trunc.jpg", tmp_path / "missing.png", paths[2]]
    with caplog.at_level(logging.WARNING, logger="vqclip"):
        kept, emb = embed_image_files(clip, files, batch_size=2)
    assert kept == paths
    torch.testing.assert_close(emb, encode_images(clip, to_tensor(arrays)))
    skipped = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(skipped) == 3 and all(m.startswith("skipping ") and "\n" not in m for m in skipped)
    assert embed_image_files(clip, [tmp_path / "broken.png"])[0] == []


def test_scan_images_is_recursive_and_skips_hidden_and_other_files(tmp_path):
    img = scene("red", "square", "blue", size=8)
    want = [save(img, tmp_path / "a.png"), save(img, tmp_path / "sub" / "deeper" / "b.JPG"),
            save(img, tmp_path / "sub" / "c.webp")]
    save(img, tmp_path / ".hidden" / "d.png")
    save(img, tmp_path / ".e.png")
    (tmp_path / "notes.txt").write_text("x")
    assert scan_images(tmp_path) == sorted(want)
    with pytest.raises(VqclipError, match="no such folder"):
        scan_images(tmp_path / "nope")


# ---- the search index -------------------------------------------------------------------------------------------

@pytest.fixture
def folder(tmp_path):
    """Six small mini-world images in a folder tree."""
    combos = [("red", "circle", "blue"), ("green", "square", "black"), ("blue", "triangle", "white"),
              ("yellow", "circle", "purple"), ("white", "square", "red"), ("orange", "triangle", "green")]
    for i, (c, s, b) in enumerate(combos):
        save(scene(c, s, b, size=32), tmp_path / "imgs" / ("sub" if i % 2 else "") / f"{i}.png")
    return tmp_path / "imgs"


def test_index_embeds_once_and_reuses_the_cache(clip, folder):
    before = sorted(folder.iterdir())  # the user's folder gets nothing new
    first = ImageIndex(folder, clip)
    assert first.update(batch_size=4) == 6 and first.embedded == 6 and len(first) == 6
    assert index_file(folder).is_file() and not list(folder.glob(TEMP_GLOB)) and sorted(folder.iterdir()) == before
    second = ImageIndex(folder, clip)
    assert second.update() == 0 and second.embedded == 0 and len(second) == 6
    paths, mat = second.matrix()
    assert paths == first.matrix()[0]
    torch.testing.assert_close(mat, first.matrix()[1])
    torch.testing.assert_close(mat, embed_image_files(clip, paths)[1])


def test_index_notices_changed_added_and_removed_files(clip, folder):
    ImageIndex(folder, clip).update()
    changed = folder / "sub" / "1.png"
    save(scene("purple", "circle", "yellow", size=32), changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    save(scene("black", "square", "white", size=32), folder / "new.png")
    (folder / "2.png").unlink()
    index = ImageIndex(folder, clip)
    assert index.update() == 2 and index.embedded == 2
    names = [p.relative_to(folder).as_posix() for p in index.matrix()[0]]
    assert "2.png" not in names and "new.png" in names and len(names) == 6
    want = embed_image_files(clip, [changed])[1][0]
    torch.testing.assert_close(index.vectors["sub/1.png"], want)
    assert ImageIndex(folder, clip).update() == 0


def test_index_keeps_one_section_per_model(clip, folder, tmp_path):
    cfg, weights = write_clip(tmp_path / "other", seed=1)
    other = load_clip(str(cfg), str(weights))
    assert clip_fingerprint(other) != clip_fingerprint(clip)
    assert clip_fingerprint(load_clip(str(cfg), str(weights))) == clip_fingerprint(other)
    assert ImageIndex(folder, clip).update() == 6
    assert ImageIndex(folder, other).update() == 6  # a different model does not reuse the first one's vectors
    assert ImageIndex(folder, clip).update() == 0 and ImageIndex(folder, other).update() == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated", "mismatch"])
def test_corrupt_index_is_rebuilt_with_one_warning(clip, folder, caplog, damage):
    ImageIndex(folder, clip).update()
    path = index_file(folder)
    if damage == "garbage":
        path.write_bytes(b"\x00\xff" * 50)
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-100])
    else:  # a valid safetensors file whose metadata does not match its tensor
        from safetensors.torch import save_file

        index = ImageIndex(folder, clip)
        save_file({index.key: torch.zeros(2, 32)}, str(path), metadata={"format": "vqclip-image-index/1",
                                                                           index.key: '{"paths": ["a.png"]}'})
    with caplog.at_level(logging.WARNING, logger="vqclip"):
        index = ImageIndex(folder, clip)
        assert index.update() == 6
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "corrupt" in warnings[0] and "rebuilding" in warnings[0]
    caplog.clear()
    assert ImageIndex(folder, clip).update() == 0 and not caplog.records


def test_corrupt_image_is_skipped_and_the_rest_indexed(clip, folder, caplog):
    (folder / "sub" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with caplog.at_level(logging.WARNING, logger="vqclip"):
        index = ImageIndex(folder, clip)
        assert index.update() == 6
    assert index.skipped == ["sub/bad.jpg"] and len(index) == 6
    assert any("bad.jpg" in r.getMessage() for r in caplog.records)


def test_interrupted_indexing_keeps_finished_batches(clip, folder, monkeypatch):
    calls = {"n": 0}
    real = clip.encode_normalized

    def flaky(x):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(x)

    with monkeypatch.context() as m, pytest.raises(KeyboardInterrupt):  # undone alone: the test's home stays
        m.setattr(clip, "encode_normalized", flaky)
        ImageIndex(folder, clip).update(batch_size=4)
    assert not list(folder.glob(TEMP_GLOB)) and not list(index_file(folder).parent.glob(TEMP_GLOB))
    resumed = ImageIndex(folder, clip)
    assert len(resumed) == 4 and resumed.update() == 2


def test_failed_save_leaves_the_old_index_intact(clip, folder, monkeypatch, caplog):
    ImageIndex(folder, clip).update()
    before = index_file(folder).read_bytes()
    for i in range(3):
        save(scene("black", "circle", "red", size=32), folder / f"new{i}.png")

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("vqclip.tools.search.save_file", full_disk)
    with caplog.at_level(logging.WARNING, logger="vqclip"):
        index = ImageIndex(folder, clip)
        assert index.update(batch_size=1, save_every=1) == 3
    assert caplog.text.count("could not write the search index") == 1
    assert index_file(folder).read_bytes() == before and not list(index_file(folder).parent.glob(TEMP_GLOB))


def test_search_ranks_by_cosine(clip, folder):
    index = ImageIndex(folder, clip)
    index.update()
    target = folder / "sub" / "3.png"
    query = embed_image_files(clip, [target])[1][0]
    hits = index.search(query, top_k=3)
    assert hits[0][0] == target and hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert len(hits) == 3 and hits[0][1] >= hits[1][1] >= hits[2][1]


@needs_mini
def test_mini_search_finds_the_match_among_distractors(mini, tmp_path):
    targets = [("red", "circle", "blue"), ("green", "triangle", "white"), ("yellow", "square", "black")]
    rng = np.random.default_rng(0)
    for i in range(30):  # distractors: random scenes that do not show any target's colour + shape
        sc = world.sample_scene(rng)
        if any((sc.shapes[0].color, sc.shapes[0].kind) == t[:2] for t in targets):
            continue
        save(world.render(sc), tmp_path / "lib" / f"distractor{i:02d}.png")
    for c, s, b in targets:
        save(scene(c, s, b, r=15, at=(28, 36)), tmp_path / "lib" / "deep" / f"{c}-{s}.png")
    index = ImageIndex(tmp_path / "lib", mini)
    index.update(batch_size=16)
    for c, s, b in targets:
        query = mini.encode_text([f"{world._a(c)} {c} {s} on {world._a(b)} {b} background"])[0]
        assert index.search(query, 1)[0][0].name == f"{c}-{s}.png"



def test_progress_bar_only_when_asked_and_on_a_terminal(clip, folder, monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    paths = scan_images(folder)
    for stream, progress, shown in ((Terminal(), True, True), (Terminal(), False, False), (io.StringIO(), True, False)):
        monkeypatch.setattr(sys, "stderr", stream)
        embed_image_files(clip, paths, batch_size=2, progress=progress)
        assert ("embedding:" in stream.getvalue() and "/6 [" in stream.getvalue()) is shown, stream.getvalue()
