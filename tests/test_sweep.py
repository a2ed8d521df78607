"""Sweeps (vqclip/config/sweep.py) without models: what a sweep may hold, each job's layer, the names of its folders
(from the documented rule: lower case, runs of anything but a-z 0-9 . + - as one '-', at most 40 characters, 'x'
when nothing is left) and its grid labels."""

from __future__ import annotations

import re

import pytest

from vqclip.config.sweep import NOT_SWEPT, check_sweep, expand, folder_name, labels, short_keys, value_text
from vqclip.errors import VqclipError


def refused(sweep) -> str:
    with pytest.raises(VqclipError) as info:
        check_sweep(sweep, "s.yaml")
    assert "\n" not in str(info.value)
    return str(info.value)


@pytest.mark.parametrize("sweep", [None, [], {}, [1, 2], "seed", 5])
def test_a_sweep_is_a_non_empty_mapping(sweep):
    assert refused(sweep).startswith("s.yaml: sweep: expected a mapping of job keys to lists of values")


@pytest.mark.parametrize("values", [5, "1, 2", [], {"a": 1}, None])
def test_each_key_takes_a_non_empty_list(values):
    assert refused({"seed": [1], "steps": values}).startswith(
        "s.yaml: sweep.steps: expected a non-empty list of values, e.g. [1, 2], got ")


def test_each_key_is_a_job_key_sections_and_their_keys_included():
    assert refused({"optimizer.lrr": [1]}) == "s.yaml: sweep: unknown key 'optimizer.lrr'; did you mean 'optimizer.lr'?"
    assert refused({3: [1]}).startswith("s.yaml: sweep: unknown key 3")
    assert refused({"cutouts.n.x": [1]}).startswith("s.yaml: sweep: unknown key 'cutouts.n.x'")
    ok = {"seed": [1], "optimizer.lr": [0.1], "cutouts": [{"n": 4}], "output.upscale.tile": [0], "clip": ["ViT-B-32"]}
    assert check_sweep(ok, "s.yaml") == ok


@pytest.mark.parametrize("key", sorted(NOT_SWEPT))
def test_the_keys_that_make_batches_or_folders_are_not_swept(key):
    assert refused({"seed": [1], key: [1, 2]}) == f"s.yaml: sweep: {key} cannot be swept: {NOT_SWEPT[key]}"
    assert set(NOT_SWEPT) == {"n", "output.dir", "candidates.keep", "candidates.rank"}


def test_each_job_is_the_job_with_its_values_set_in_nested_sections():
    job = {"prompt": "x", "optimizer": {"name": "sgd"}, "output": {"video": False},
           "sweep": {"output.upscale.tile": [0, 64], "optimizer.lr": [0.1]}}
    jobs = expand(job, "s.yaml")
    assert [v for v, _ in jobs] == [{"output.upscale.tile": 0, "optimizer.lr": 0.1},
                                    {"output.upscale.tile": 64, "optimizer.lr": 0.1}]
    assert jobs[1][1] == {"prompt": "x", "optimizer": {"name": "sgd", "lr": 0.1},
                          "output": {"video": False, "upscale": {"tile": 64}}}
    assert job["optimizer"] == {"name": "sgd"} and "upscale" not in job["output"]  # the file's job is left as it was


def test_the_first_key_varies_slowest_and_values_are_copies():
    jobs = expand({"sweep": {"optimizer.lr": [1, 2], "negative": [[1], [2]], "prompt": ["x", "y", "z"]}}, "s.yaml")
    assert [tuple(v.values()) for v, _ in jobs] == [
        (1, [1], "x"), (1, [1], "y"), (1, [1], "z"), (1, [2], "x"), (1, [2], "y"), (1, [2], "z"),
        (2, [1], "x"), (2, [1], "y"), (2, [1], "z"), (2, [2], "x"), (2, [2], "y"), (2, [2], "z")]
    jobs[0][1]["negative"].append(9)  # one job's list is its own
    assert jobs[6][1]["negative"] == [1] and jobs[0][0]["negative"] == [1]


def test_a_swept_key_under_a_value_that_is_no_section_is_one_line():
    with pytest.raises(VqclipError, match=r"^s\.yaml: sweep: optimizer\.lr: 'optimizer' in the job is not a section"):
        expand({"optimizer": "adam", "sweep": {"optimizer.lr": [0.1]}}, "s.yaml")


def test_short_keys_are_the_last_part_unless_two_share_it():
    assert short_keys(["seed", "optimizer.lr", "cutouts.n"]) == {"seed": "seed", "optimizer.lr": "lr",
                                                                 "cutouts.n": "n"}
    assert short_keys(["init.weight", "tv_weight", "guide.weight", "optimizer.lr"]) == {
        "init.weight": "init.weight", "tv_weight": "tv_weight", "guide.weight": "guide.weight", "optimizer.lr": "lr"}


@pytest.mark.parametrize("value, text", [(0.05, "0.05"), (3, "3"), (True, "true"), (False, "false"), (None, "none"),
                                         ([64, 32], "64 x 32"), ([[1, 2], True], "1 x 2 x true"), ("a b", "a b")])
def test_a_value_reads_as_written(value, text):
    assert value_text(value) == text


def slug(text: str) -> str:
    """The documented folder-name rule, written out independently."""
    out = re.sub(r"[^a-z0-9.+-]+", "-", text.lower())
    out = out.strip("-.")[:40]
    return out.rstrip("-.") or "x"


@pytest.mark.parametrize("value", ["A Red Circle on a Blue Background, please!", "../../etc/passwd", "", "  ",
                                   "日本語", "x" * 100, "a" * 39 + " b", "1e-3", "+1.5", "C:\\temp", ".hidden."])
def test_folder_names_are_safe_slugs_of_the_values(value):
    name = folder_name({"prompt": value, "seed": 3}, {"prompt": "prompt", "seed": "seed"})
    assert name == f"prompt={slug(value)},seed=3"
    part = name.split(",")[0].split("=", 1)[1]
    assert 1 <= len(part) <= 40 and re.fullmatch(r"[a-z0-9.+-]+", part) and part not in (".", "..")
    assert not part.startswith(("-", ".")) and not part.endswith(("-", "."))


def test_folder_names_and_labels_use_the_short_keys_in_sweep_order():
    values = {"optimizer.lr": 0.1, "size": [64, 32], "init.weight": 0.5, "tv_weight": 0.0}
    short = short_keys(list(values))
    assert folder_name(values, short) == "lr=0.1,size=64-x-32,weight=0.5,tv_weight=0.0"
    assert labels(values, short) == {"optimizer.lr": "lr=0.1", "size": "size=64 x 32", "init.weight": "weight=0.5",
                                     "tv_weight": "tv_weight=0.0"}
