"""`vqclip classify / search / score / rank` end to end through the CLI dispatcher (tiny CLIP, or the mini one)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from vqclip.cli import main
from vqclip.mini import world
from vqclip.tools.search import INDEX_NAME, index_file

MINI_DIR = Path(world.__file__).resolve().parent / "weights"
needs_mini = pytest.mark.skipif(not (MINI_DIR / "clip.safetensors").is_file() or not (MINI_DIR / "clip.json").is_file(),
                                reason="the trained mini CLIP (vqclip/mini/weights/clip.safetensors) is not built yet")


def scene(color: str, shape: str, bg: str, size: int = 64) -> np.ndarray:
    s = size / 64
    return world.render(world.Scene(bg, (world.Shape(shape, color, 32 * s, 32 * s, 18 * s),)), size)


def save(img: np.ndarray, path: Path, meta: dict | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = None
    if meta is not None:
        info = PngImagePlugin.PngInfo()
        info.add_text("vqclip", json.dumps(meta))
    Image.fromarray(img).save(path, pnginfo=info)
    return path


@pytest.fixture
def tiny(tiny_clip):
    """CLI options that select the tiny random CLIP on the CPU."""
    cfg, weights = tiny_clip
    return ["--clip-model", str(cfg), "--clip-pretrained", str(weights), "--device", "cpu"]


@pytest.fixture
def images(tmp_path):
    """Four images plus one corrupt file in a folder tree."""
    folder = tmp_path / "imgs"
    for i, (c, s, b) in enumerate([("red", "circle", "blue"), ("green", "square", "white"),
                                   ("blue", "triangle", "black"), ("yellow", "circle", "red")]):
        save(scene(c, s, b, 32), folder / ("sub" if i % 2 else "") / f"{i}.png")
    (folder / "sub" / "broken.png").write_bytes(b"this is not an image")
    return folder


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_json_and_table(capsys, tiny, images):
    code, out, err = run(capsys, "classify", images, "--labels", "cat, dog,human", "--json", *tiny)
    assert code == 0
    rows = json.loads(out)
    assert [Path(r["image"]).name for r in rows] == ["0.png", "2.png", "1.png", "3.png"]
    for r in rows:
        assert list(r["probs"]) == ["cat", "dog", "human"]
        assert sum(r["probs"].values()) == pytest.approx(1, abs=1e-5)
        assert r["label"] == max(r["probs"], key=r["probs"].get) == r["top"][0][0]
    assert err.count("warning: skipping") == 1 and "broken.png" in err
    code, out, _ = run(capsys, "classify", images / "0.png", "--labels", "cat,dog,human", "--top", "2", "--quiet",
                       *tiny)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["image", "#1", "p", "#2", "p"] and len(lines) == 2
    code, out, _ = run(capsys, "classify", images / "0.png", "--labels", "cat,dog", "--quiet", *tiny)
    assert out.splitlines()[0].split() == ["image", "best", "cat", "dog"]


def test_classify_reads_labels_and_templates_files(capsys, tiny, images, tmp_path):
    (tmp_path / "labels.txt").write_text("# animals\na cat, sitting\n\na dog\n")
    (tmp_path / "templates.txt").write_text("a photo of {}.\n{}, drawn\n")
    code, out, _ = run(capsys, "classify", images / "0.png", "--labels-file", tmp_path / "labels.txt",
                       "--templates-file", tmp_path / "templates.txt", "--json", "--quiet", *tiny)
    assert code == 0 and list(json.loads(out)[0]["probs"]) == ["a cat, sitting", "a dog"]


@pytest.mark.parametrize("argv, message", [
    (["--labels", "cat"], "at least two labels"),
    (["--labels", "cat,dog", "--templates", "a photo"], "exactly one '{}'"),
    (["--labels-file", "missing.txt"], "cannot read the labels file"),
])
def test_classify_bad_input_is_one_line(capsys, tiny, images, argv, message):
    code, out, err = run(capsys, "classify", images / "0.png", *argv, *tiny)
    assert code == 2 and message in err and err.count("\n") == 1 and not out


@pytest.mark.parametrize("command", [["classify", "{img}", "--labels", "a,b"], ["score", "{img}", "--prompt", "x"],
                                     ["search", "{dir}", "x"]])
@pytest.mark.parametrize("device", ["tpu", "cuda:x"])
def test_an_unknown_device_is_one_line(capsys, tiny, images, command, device):
    argv = [a.format(img=images / "0.png", dir=images) for a in command]
    code, out, err = run(capsys, *argv, *tiny[:-1], device)
    assert code == 2 and err.strip().splitlines()[-1] == (f"error: device: unknown device '{device}'; use auto, cpu, "
                                                          "cuda, cuda:N or mps"), err
    assert "Traceback" not in err


def test_unreadable_everything_and_missing_files_are_errors(capsys, tiny, images):
    code, _, err = run(capsys, "score", images / "sub" / "broken.png", "--prompt", "x", "--quiet", *tiny)
    assert code == 2 and "none of the 1 images could be read" in err
    code, _, err = run(capsys, "score", images / "nope.png", "--prompt", "x", *tiny)
    assert code == 2 and "no such file or folder" in err


def test_search_in_a_folder_without_images_is_an_error(capsys, tiny, images, tmp_path):
    """Like classify and score, search with nothing to search exits 2 with one line (it printed a warning, exit 0)."""
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "notes.txt").write_text("not an image")
    code, out, err = run(capsys, "search", tmp_path / "none", "x", "--json", *tiny)
    assert code == 2 and not out and err.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'none'}: no readable images")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "broken.png").write_bytes((images / "sub" / "broken.png").read_bytes())
    code, out, err = run(capsys, "search", tmp_path / "bad", "x", *tiny)  # only an unreadable file in it
    assert code == 2 and "(1 could not be read)" in err


def test_search_caches_and_reembeds_only_changes(capsys, tiny, images):
    code, out, err = run(capsys, "search", images, "a red circle", "--json", *tiny)
    first = json.loads(out)
    assert code == 0 and first["embedded"] == 4 and first["indexed"] == 4 and first["skipped"] == ["sub/broken.png"]
    assert index_file(images).is_file() and not (images / INDEX_NAME).exists() and "images/s" in err
    scores = [r["score"] for r in first["results"]]
    assert scores == sorted(scores, reverse=True) and len(scores) == 4
    code, out, _ = run(capsys, "search", images, "a red circle", "--json", "--quiet", *tiny)
    second = json.loads(out)
    assert second["embedded"] == 0 and second["results"] == first["results"]
    changed = images / "2.png"
    save(scene("purple", "square", "green", 32), changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    code, out, _ = run(capsys, "search", images, "a red circle", "--json", "--quiet", *tiny)
    assert json.loads(out)["embedded"] == 1
    code, out, _ = run(capsys, "search", images, "a red circle", "--json", "--quiet", "--rebuild", *tiny)
    assert json.loads(out)["embedded"] == 4


def test_search_by_image_and_table(capsys, tiny, images):
    code, out, _ = run(capsys, "search", images, "--image", images / "sub" / "3.png", "--top", "2", "--quiet", *tiny)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["rank", "score", "image"] and len(lines) == 3
    rank, value, path = lines[1].split()
    assert rank == "1" and float(value) == pytest.approx(1.0, abs=1e-3) and path.endswith("sub/3.png")


def test_search_survives_a_corrupt_index(capsys, tiny, images):
    (images / INDEX_NAME).write_bytes(b"{not safetensors")
    code, out, err = run(capsys, "search", images, "a dog", "--json", *tiny)
    assert code == 0 and json.loads(out)["embedded"] == 4
    assert "warning: search index" in err and "corrupt" in err


@pytest.mark.parametrize("extra,expected", [([], "exactly one query"), (["a dog", "--image", "x.png"], "exactly one query"),
                                            (["  "], "the query text is empty")])
def test_search_needs_exactly_one_query(capsys, tiny, images, extra, expected):
    code, _, err = run(capsys, "search", images, *extra, *tiny)
    assert code == 2 and expected in err


@pytest.mark.parametrize("case", ["missing folder", "a file as the folder", "unreadable query image"])
def test_search_checks_folder_and_query_image_before_loading_a_model(capsys, tiny, images, monkeypatch, case):
    import vqclip.tools.clipping as clipping

    monkeypatch.setattr(clipping, "load_clips", lambda choice: pytest.fail("CLIP loaded first"))
    argv, says = {"missing folder": ([images / "nope", "a dog"], "nope: no such folder"),
                  "a file as the folder": ([images / "0.png", "a dog"], "0.png: is a file, not a folder"),
                  "unreadable query image": ([images, "--image", images / "sub" / "broken.png"],
                                             "broken.png: the query image cannot be read")}[case]
    code, out, err = run(capsys, "search", *argv, *tiny)
    assert code == 2 and not out and err.count("\n") == 1 and err.startswith("error: ") and says in err, err


def test_classify_missing_image_is_one_line_without_notices(capsys, images):
    code, out, err = run(capsys, "classify", images / "nope.png", "--labels", "a red circle,a blue square",
                         "--model", "mini")
    assert code == 2 and not out and err.splitlines() == [f"error: {images / 'nope.png'}: no such file or folder"]


def test_score_sorts_and_cuts(capsys, tiny, images):
    code, out, _ = run(capsys, "score", images, "--prompt", "a red circle", "--json", "--quiet", *tiny)
    res = json.loads(out)["results"]
    assert code == 0 and [r["rank"] for r in res] == [1, 2, 3, 4]
    assert [r["score"] for r in res] == sorted((r["score"] for r in res), reverse=True)
    code, out, _ = run(capsys, "score", images, "--prompt", "a red circle", "--top", "1", "--quiet", *tiny)
    assert len(out.splitlines()) == 2 and out.splitlines()[1].split()[2] == res[0]["image"]


def test_rank_reads_each_runs_prompt(capsys, tiny, tmp_path):
    out_dir = tmp_path / "outputs"
    save(scene("red", "circle", "blue", 32), out_dir / "run-a" / "final.png", {"prompt": "a red circle", "steps": 5})
    save(scene("green", "square", "white", 32), out_dir / "run-b" / "final.png", {"prompt": "a green square"})
    save(scene("green", "square", "white", 32), out_dir / "run-c" / "final.png")  # no metadata
    save(scene("green", "square", "white", 32), out_dir / "run-d" / "final.png", {"steps": 3})  # no prompt
    save(scene("green", "square", "white", 32), out_dir / "run-e" / "final.png", {"prompt": "blurry:-1"})
    save(scene("green", "square", "white", 32), out_dir / "run-a" / "step_0001.png")  # not a final image
    code, out, err = run(capsys, "rank", out_dir, "--json", *tiny)
    res = json.loads(out)
    assert code == 0 and sorted(Path(r["run"]).name for r in res) == ["run-a", "run-b"]
    assert err.count("warning: skipping") == 3 and all(f"run-{x}" in err for x in "cde")
    assert "positive weight" in err
    for r in res:  # each run is scored against its own prompt, exactly like `score` does
        code, single, _ = run(capsys, "score", r["image"], "--prompt", r["prompt"], "--json", "--quiet", *tiny)
        assert json.loads(single)["results"][0]["score"] == pytest.approx(r["score"], abs=1e-5)
    code, _, err = run(capsys, "rank", tmp_path / "empty", *tiny)
    assert code == 2 and "no such folder" in err


def test_model_options(capsys, images):
    code, _, err = run(capsys, "classify", images / "0.png", "--labels", "a,b", "--model", "no-such-preset")
    assert code == 2 and "unknown model preset" in err
    code, _, err = run(capsys, "classify", images / "0.png", "--labels", "a,b", "--clip-model", "no-such-clip")
    assert code == 2 and "unknown CLIP model" in err



def test_embedded_preset_loads_only_its_clip_files(capsys, tiny_clip, images, tmp_path, monkeypatch):
    from vqclip.models import presets as registry

    weights = tmp_path / "weights"
    weights.mkdir()
    monkeypatch.setattr(registry, "EMBEDDED_DIR", weights)  # an empty package folder: the CLIP files are missing
    code, _, err = run(capsys, "score", images / "0.png", "--prompt", "x", "--model", "mini")
    assert code == 2 and "embedded 'mini' CLIP is missing" in err
    for src, name in zip(tiny_clip, ("clip.json", "clip.safetensors")):  # CLIP only: no VQGAN files needed
        (weights / name).write_bytes(Path(src).read_bytes())
    code, out, err = run(capsys, "score", images / "0.png", "--prompt", "x", "--model", "mini", "--json",
                         "--device", "cpu")
    assert code == 0 and "CLIP of preset mini (clip.json) on cpu" in err
    code, ref, _ = run(capsys, "score", images / "0.png", "--prompt", "x", "--json", "--clip-model",
                       tiny_clip[0], "--clip-pretrained", tiny_clip[1])
    assert json.loads(out)["results"] == json.loads(ref)["results"]

@needs_mini
def test_mini_preset_classifies_and_searches(capsys, tmp_path):
    folder = tmp_path / "lib"
    truth = {}
    for i, (c, s, b) in enumerate([("red", "circle", "blue"), ("green", "square", "white"),
                                   ("blue", "triangle", "yellow"), ("orange", "square", "black")]):
        truth[save(scene(c, s, b), folder / f"{i}.png").name] = f"{world._a(c)} {c} {s}"
    labels = ",".join(truth.values())
    code, out, err = run(capsys, "classify", folder, "--labels", labels, "--model", "mini", "--json")
    assert code == 0 and {Path(r["image"]).name: r["label"] for r in json.loads(out)} == truth
    assert "labels are used as written" in err  # the mini CLIP gets the bare labels, not 'a photo of ...'
    code, out, _ = run(capsys, "classify", folder, "--labels", labels, "--model", "mini", "--json", "--quiet",
                       "--templates", "a photo of a {}.;a rendering of a {}.")
    assert code == 0 and len(json.loads(out)) == 4  # explicit templates win
    code, out, _ = run(capsys, "search", folder, "a blue triangle on a yellow background", "--model", "mini",
                       "--top", "1", "--json", "--quiet")
    assert code == 0 and Path(json.loads(out)["results"][0]["path"]).name == "2.png"


@needs_mini
def test_mini_rank_puts_the_faithful_run_first(capsys, tmp_path):
    prompt = {"prompt": "a red circle on a blue background"}
    save(scene("green", "square", "white"), tmp_path / "out" / "run-1" / "final.png", prompt)
    save(scene("red", "circle", "blue"), tmp_path / "out" / "run-2" / "final.png", prompt)
    save(scene("red", "triangle", "blue"), tmp_path / "out" / "run-3" / "final.png", prompt)
    code, out, _ = run(capsys, "rank", tmp_path / "out", "--model", "mini", "--json", "--quiet")
    assert code == 0 and [Path(r["run"]).name for r in json.loads(out)][0] == "run-2"
    code, out, _ = run(capsys, "score", tmp_path / "out", "--prompt", "a green square", "--model", "mini", "--top", "1",
                       "--json", "--quiet")
    assert Path(json.loads(out)["results"][0]["image"]).parent.name == "run-1"


@pytest.fixture
def two_clips(tiny_clip, tmp_path):
    """CLI options naming two different tiny CLIPs (the session one and another seed)."""
    from tiny import write_clip

    other = write_clip(tmp_path / "clip2", seed=1)
    return ["--clip-model", str(tiny_clip[0]), "--clip-pretrained", str(tiny_clip[1]),
            "--clip-model", str(other[0]), "--clip-pretrained", str(other[1]), "--device", "cpu"]


def _alone(two_clips: list[str], k: int) -> list[str]:
    """The options of the k-th CLIP of `two_clips` alone."""
    return two_clips[4 * k:4 * k + 4] + ["--device", "cpu"]


def test_several_clips_average_classify_and_score(capsys, images, two_clips):
    labels = ["--labels", "a red circle,a green square,a blue triangle"]
    probs = []
    for opts in (_alone(two_clips, 0), _alone(two_clips, 1), two_clips):
        code, out, _ = run(capsys, "classify", images, *labels, "--json", "--quiet", *opts)
        assert code == 0
        probs.append({r["image"]: r["probs"] for r in json.loads(out)})
    assert probs[0] != probs[1], "the two CLIPs must disagree for the average to mean anything"
    for image, both in probs[2].items():
        for label, p in both.items():
            assert p == pytest.approx((probs[0][image][label] + probs[1][image][label]) / 2, abs=1e-6)
    scores = []
    for opts in (_alone(two_clips, 0), _alone(two_clips, 1), two_clips):
        code, out, err = run(capsys, "score", images, "--prompt", "a red circle", "--json", "--quiet", *opts)
        scores.append({r["image"]: r["score"] for r in json.loads(out)["results"]})
    assert scores[2] == pytest.approx({k: (scores[0][k] + scores[1][k]) / 2 for k in scores[0]}, abs=1e-6)
    assert len(scores[2]) == 4 and err.count("warning: skipping") == 1  # skipped for both CLIPs, warned about once


def test_several_clips_search_with_one_cached_index_each(capsys, images, two_clips):
    code, out, err = run(capsys, "search", images, "a red circle", "--json", *two_clips)
    both = json.loads(out)
    assert code == 0 and both["embedded"] == 8 and both["indexed"] == 4
    alone = []
    for k in (0, 1):
        code, out, _ = run(capsys, "search", images, "a red circle", "--json", "--quiet", *_alone(two_clips, k))
        assert json.loads(out)["embedded"] == 0, "each CLIP's section of the shared index file is reused"
        alone.append({r["path"]: r["score"] for r in json.loads(out)["results"]})
    mean = {p: (alone[0][p] + alone[1][p]) / 2 for p in alone[0]}
    assert [r["path"] for r in both["results"]] == sorted(mean, key=lambda p: (-mean[p], p))
    assert {r["path"]: r["score"] for r in both["results"]} == pytest.approx(mean, abs=1e-6)


def test_clip_pretrained_count_must_match_clip_models(capsys, images, tiny_clip):
    code, _, err = run(capsys, "score", images, "--prompt", "x", "--clip-model", tiny_clip[0], "--clip-model",
                       tiny_clip[0], "--clip-pretrained", tiny_clip[1], "--device", "cpu")
    assert code == 2 and "one per --clip-model" in err and "Traceback" not in err
