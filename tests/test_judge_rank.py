"""Picking by the judge across runs: `vqclip rank` ranks judged runs by their judge's score of the final image (runs
without scores, or of different judges, as before: by CLIP), and a --n batch's grid prints each tile's score."""

import json
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from vqclip.cli import main
from vqclip.files.scores import final_score, read_scores, write_scores
from vqclip.runs import batch as batch_module, pipeline
from vqclip.tools.clipping import ClipChoice, rank_runs


def make_run(root: Path, name: str, prompt: str, scores: list[float] | None, judge: str = "judge.json") -> Path:
    """A run folder: final.png recording its prompt, and scores.json of its frames (steps 0, 5, ...) when given."""
    folder = root / name
    folder.mkdir(parents=True)
    info = PngImagePlugin.PngInfo()
    info.add_text("vqclip", json.dumps({"prompt": prompt}))
    Image.new("RGB", (32, 32), (200, 30, 30)).save(folder / "final.png", pnginfo=info)
    if scores is not None:
        write_scores(folder, {"judge": {"model": judge, "aesthetic": None}, "guides": ["clip.json"],
                              "frames": [{"step": 5 * i, "file": f"frames/{5 * i:06d}.png", "judge": s,
                                          "aesthetic": None, "guide": 0.3} for i, s in enumerate(scores)],
                              "best": None, "stopped_by": None})
    return folder


@pytest.fixture(scope="module")
def tiny(tiny_clip):
    cfg, weights = tiny_clip
    return ClipChoice(clip_models=(str(cfg),), clip_pretrained=(str(weights),), device="cpu")


def test_rank_uses_the_judges_score_of_the_final_image(tmp_path, tiny, capsys):
    make_run(tmp_path, "a", "a red circle", [0.9, 0.2])  # its best frame was early: the final image scores 0.2
    make_run(tmp_path, "b", "a red circle", [0.1, 0.5])
    make_run(tmp_path, "c", "a red circle", [0.3, 0.4, 0.35])
    got = rank_runs(tmp_path, tiny)
    assert [(Path(r["run"]).name, r["score"], r["rank"]) for r in got] == [("b", 0.5, 1), ("c", 0.35, 2),
                                                                           ("a", 0.2, 3)]
    assert {r["by"] for r in got} == {"judge.json"}
    assert main(["rank", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "ranked by the runs' held-out judge, judge.json" in captured.err


@pytest.mark.parametrize("second", [None, "other.json"])  # a run without scores; one of another judge
def test_rank_falls_back_to_clip_unless_one_judge_scored_every_run(tmp_path, tiny, second):
    make_run(tmp_path, "a", "a red circle", [0.9])
    make_run(tmp_path, "b", "a red circle", None if second is None else [0.1], judge=second or "judge.json")
    got = rank_runs(tmp_path, tiny)
    assert all("by" not in r for r in got) and len(got) == 2
    assert {r["score"] for r in got} != {0.9, 0.1}  # CLIP's cosines, not the judge's numbers


def test_final_score_is_the_last_frames():
    data = {"frames": [{"step": 10, "judge": 0.1}, {"step": 0, "judge": 0.9}, {"step": 5, "judge": 0.5}]}
    assert final_score(data) == 0.1 and final_score(None) is None and final_score({"frames": []}) is None


class Steady:
    """A judge whose score is the image's mean red (a function of the pixels, so each run its own)."""

    name, aesthetic_name = "steady", None

    def score(self, images):
        return [{"judge": float(im[0].mean()), "aesthetic": None, "guide": None} for im in images]


def test_batch_grid_prints_each_tiles_judge_score(tiny_args, tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "load_judge", lambda *a, **k: Steady())
    seen = []
    real = batch_module.contact_sheet
    monkeypatch.setattr(batch_module, "contact_sheet", lambda tiles, rows, cols, captions, title: seen.append(
        captions) or real(tiles, rows, cols, captions, title))
    out = tmp_path / "b"
    assert main(["generate", "a red circle", *tiny_args, "--steps", "2", "--no-video", "--n", "2", "--seed", "3",
                 "--save-every", "1", "--judge", "--out", str(out)]) == 0
    (captions,) = seen
    runs = sorted(p.parent for p in out.glob("*/scores.json"))
    want = {f"{r.name} judge {final_score(read_scores(r)):.3f}" for r in runs}  # its name, then its score
    assert len(runs) == 2 and set(captions.values()) == want and len(want) == 2  # each tile its own run's score
    assert (out / "grid.png").is_file()
