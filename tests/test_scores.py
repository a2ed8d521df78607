"""scores.json (the judge engineers' contract with the report): written atomically in exactly its layout, read back
checked; a file that is not one is a one-line error naming the place; a run without one reads as None."""

import json

import pytest

from vqclip.errors import VqclipError
from vqclip.files.atomic import TEMP_GLOB
from vqclip.files.scores import SCORES_FILE, final_score, read_scores, write_scores


def good() -> dict:
    return {"judge": {"model": "ViT-L-14 openai", "aesthetic": "sa_0_4_vit_l_14_linear.pth"},
            "guides": ["ViT-B-32 openai"],
            "frames": [{"step": 0, "file": "frames/000000.png", "judge": 0.1, "aesthetic": 4.5, "guide": 0.2},
                       {"step": 5, "file": "frames/000005.png", "judge": 1, "aesthetic": None, "guide": None}],
            "best": {"step": 5, "file": "best.png"}, "stopped_by": "patience"}


def test_written_in_the_contract_layout_and_read_back(tmp_path):
    write_scores(tmp_path, good())
    raw = json.loads((tmp_path / SCORES_FILE).read_text())
    assert set(raw) == {"judge", "guides", "frames", "best", "stopped_by"}
    assert set(raw["frames"][0]) == {"step", "file", "judge", "aesthetic", "guide"}
    assert raw["frames"][1]["judge"] == 1.0 and isinstance(raw["frames"][1]["judge"], float)
    assert read_scores(tmp_path) == raw
    assert not list(tmp_path.glob(TEMP_GLOB))


def test_a_run_without_scores_reads_as_none(tmp_path):
    assert read_scores(tmp_path) is None


def test_optional_keys_default_to_null(tmp_path):
    data = good()
    del data["best"], data["stopped_by"]
    (tmp_path / SCORES_FILE).write_text(json.dumps(data))
    got = read_scores(tmp_path)
    assert got["best"] is None and got["stopped_by"] is None


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("frames"), "not a vqclip scores file"),
    (lambda d: d.update(judge="x"), "judge: expected"),
    (lambda d: d.update(guides=[1]), "guides: expected a list of model names"),
    (lambda d: d["frames"][0].update(judge=float("nan")), r"frames\[0\].judge: expected a finite number"),
    (lambda d: d["frames"][1].update(judge=True), r"frames\[1\].judge: expected a finite number"),
    (lambda d: d["frames"][0].update(aesthetic="high"), r"frames\[0\].aesthetic: expected a finite number"),
    (lambda d: d["frames"][0].update(step=-1), r"frames\[0\].step: expected a step"),
    (lambda d: d["frames"][0].update(step=1.5), r"frames\[0\].step: expected a step"),
    (lambda d: d["frames"].append("x"), r"frames\[2\]: expected"),
    (lambda d: d.update(best={"step": 1}), "best: expected"),
    (lambda d: d.update(stopped_by="user"), "stopped_by: expected"),
])
def test_a_bad_record_is_never_written_and_never_read(tmp_path, change, message):
    data = good()
    change(data)
    with pytest.raises(VqclipError, match=message):
        write_scores(tmp_path, data)
    assert not (tmp_path / SCORES_FILE).exists()
    (tmp_path / SCORES_FILE).write_text(json.dumps(data, allow_nan=True))
    with pytest.raises(VqclipError, match=message):
        read_scores(tmp_path)


def test_unreadable_json_is_one_line(tmp_path):
    (tmp_path / SCORES_FILE).write_text("{not json")
    with pytest.raises(VqclipError, match="scores.json: not readable JSON"):
        read_scores(tmp_path)


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    write_scores(tmp_path, good())
    before = (tmp_path / SCORES_FILE).read_bytes()

    def full_disk(self, data):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("pathlib.Path.write_bytes", full_disk)
    with pytest.raises(VqclipError):
        write_scores(tmp_path, {**good(), "stopped_by": None})
    monkeypatch.undo()
    assert (tmp_path / SCORES_FILE).read_bytes() == before and not list(tmp_path.glob(TEMP_GLOB))


def test_final_score_is_the_latest_frames_judge_score():
    assert final_score(good()) == 1.0
