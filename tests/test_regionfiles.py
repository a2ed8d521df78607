"""A job's region mask images are kept in its run folder (regions/<i>.png in order of first appearance) and its job
names the copies: the copies hold the masks' grey levels, a moved folder whose original masks are gone resumes to the
uninterrupted run, `--from final.png` repeats it from another directory, and named regions write no copies."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.config import merge_layers
from vqclip.files.images import read_metadata
from vqclip.runs.callbacks import StopAfter
from vqclip.runs.pipeline import run_job
from vqclip.runs.regionfiles import canonical, copies, mask_files, own_regions, with_masks
from vqclip.runs.resume import resume_run
from vqclip.runs.statefile import job_settings


def grey(path) -> np.ndarray:
    """A mask file's grey levels as the documented rule reads it (PIL's L conversion)."""
    with Image.open(path) as im:
        return np.asarray(im.convert("L"))


def rgb(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_job):
    """One uninterrupted run with two mask images (one a grey 20x16, one a colour 32x32; one used twice), the same
    run stopped at step 2, its masks then deleted and its folder moved, resumed from another directory."""
    root = tmp_path_factory.mktemp("regionfiles")
    masks = root / "masks"
    masks.mkdir()
    rng = np.random.default_rng(1)
    m1, m2 = masks / "left.png", masks / "blob.png"
    Image.fromarray(rng.integers(0, 256, (16, 20), dtype=np.uint8)).save(m1)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(m2)
    prompt = f"a red square:1@{m1}|a green circle@right ^ a blue circle:0.5@{m2}"
    negative = [f"blurry:-1@{m1}"]
    layer = {"prompt": prompt, "negative": negative, "steps": 4, "seed": 5, "threads": 1, "cutouts": {"n": 2}}
    cfg = lambda name: merge_layers([("tiny", tiny_job), ("job", {**layer, "output": {  # noqa: E731
        "dir": str(root / name), "save_every": 0, "video": False, "progress": False}})])
    whole = run_job(cfg("whole"))
    originals = {1: grey(m1), 2: grey(m2)}
    stopped = run_job(cfg("run"), extra_callbacks=[StopAfter(2)])
    shutil.rmtree(masks)  # the named files are gone, and the folder moves: only its own copies are left
    moved = root / "moved"
    stopped.dir.rename(moved)
    elsewhere = root / "elsewhere"
    elsewhere.mkdir()
    here = os.getcwd()
    os.chdir(elsewhere)
    try:
        again = resume_run(moved)
        assert main(["generate", "--from", str(again.final), "--out", str(root / "from"), "--quiet"]) == 0
    finally:
        os.chdir(here)
    return dict(whole=whole, stopped=stopped, again=again, moved=moved, originals=originals, prompt=prompt,
                negative=negative, m1=str(m1), m2=str(m2), root=root, tiny=tiny_job)


def test_the_copies_hold_the_masks_grey_levels_in_order_of_first_appearance(runs):
    folder = runs["whole"].dir / "regions"
    assert sorted(p.name for p in folder.iterdir()) == ["1.png", "2.png"]  # m1 used twice is copied once
    for i, want in runs["originals"].items():
        with Image.open(folder / f"{i}.png") as im:
            assert im.format == "PNG" and im.size == want.shape[::-1]
        assert np.array_equal(grey(folder / f"{i}.png"), want)


def test_job_yaml_and_final_png_name_the_copies(runs):
    folder = runs["whole"].dir
    one, two = str((folder / "regions" / "1.png").absolute()), str((folder / "regions" / "2.png").absolute())
    want_prompt = runs["prompt"].replace(runs["m1"], one).replace(runs["m2"], two)
    job = yaml.safe_load((folder / "job.yaml").read_text())
    assert job["prompt"] == want_prompt and job["negative"] == [f"blurry:-1@{one}"]
    config = read_metadata(folder / "final.png")["config"]
    assert config["prompt"] == want_prompt and config["negative"] == [f"blurry:-1@{one}"]


def test_a_moved_folder_whose_masks_are_gone_resumes_to_the_uninterrupted_run(runs):
    assert runs["stopped"].interrupted and runs["stopped"].result.steps == 2
    assert torch.equal(runs["again"].result.image, runs["whole"].result.image)
    assert np.array_equal(rgb(runs["again"].final), rgb(runs["whole"].final))


def test_from_final_png_in_another_directory_repeats_the_run(runs):
    final = runs["root"] / "from" / "final.png"
    assert np.array_equal(rgb(final), rgb(runs["whole"].final))
    assert sorted(p.name for p in (runs["root"] / "from" / "regions").iterdir()) == ["1.png", "2.png"]
    assert np.array_equal(grey(runs["root"] / "from" / "regions" / "2.png"), runs["originals"][2])


def test_a_job_with_only_named_regions_writes_no_regions_folder(tmp_path, tiny_job):
    prompt = "a red square:1@left|a green circle@center|an @ sign"
    out = {"dir": str(tmp_path / "named"), "save_every": 0, "video": False}
    done = run_job(merge_layers([("tiny", tiny_job), ("job", {"prompt": prompt, "negative": ["dull@border"],
                                                               "steps": 1, "cutouts": {"n": 2}, "output": out})]))
    assert not (done.dir / "regions").exists()
    job = yaml.safe_load((done.dir / "job.yaml").read_text())
    assert job["prompt"] == prompt and job["negative"] == ["dull@border"]


def test_masks_are_found_in_story_keyframes_prompt_and_negatives_in_that_order(tmp_path):
    a, b, c = (str(tmp_path / f"{n}.png") for n in "abc")
    layer = {"story": [{"at": 0, "prompt": f"x@{b}|y@left"}, {"at": 3, "prompt": "z"}], "prompt": f"w:2:-1@{a}",
             "negative": [f"v@{c}", f"u@{b}"]}
    assert mask_files(layer) == [b, a, c]
    names = {a: "/r/1.png", b: "/r/2.png"}
    out = with_masks(layer, names)
    assert out["story"] == [{"at": 0, "prompt": "x@/r/2.png|y@left"}, {"at": 3, "prompt": "z"}]
    assert out["prompt"] == "w:2:-1@/r/1.png" and out["negative"] == [f"v@{c}", "u@/r/2.png"]
    assert layer["prompt"] == f"w:2:-1@{a}"  # the layer given is left as it was
    shorthand = f" p@{a} ^ q @ home|r:1@{b} "
    assert with_masks({"prompt": shorthand}, names)["prompt"] == " p@/r/1.png ^ q @ home|r:1@/r/2.png "


def test_own_regions_takes_a_copy_only_for_a_mask_that_is_gone(tmp_path):
    folder = tmp_path / "run"
    (folder / "regions").mkdir(parents=True)
    there, gone, uncopied = tmp_path / "there.png", tmp_path / "gone.png", tmp_path / "uncopied.png"
    Image.new("L", (4, 4), 255).save(there)
    for i in (1, 2):
        Image.new("L", (4, 4), 255).save(folder / "regions" / f"{i}.png")
    layer = {"prompt": f"a@{there}|b@{gone}|c@{uncopied}"}
    assert own_regions(layer, folder)["prompt"] == f"a@{there}|b@{folder / 'regions' / '2.png'}|c@{uncopied}"


def test_a_copy_a_prompt_cannot_name_keeps_the_original_name(tmp_path):
    layer = {"prompt": f"a@{tmp_path / 'm.png'}"}
    assert copies(layer, tmp_path / "my runs") == {}  # a space would end the region
    assert copies(layer, tmp_path / "runs") == {str(tmp_path / "m.png"): str(tmp_path / "runs" / "regions" / "1.png")}


def test_the_state_records_masks_by_their_order_not_where_they_lie(tiny_job):
    cfg = lambda prompt: merge_layers([("tiny", tiny_job), ("job", {"prompt": prompt})])  # noqa: E731
    here, there = cfg("a@/x/m.png|b@/x/n.png"), cfg("a@/y/regions/1.png|b@/y/regions/2.png")
    assert job_settings(here) == job_settings(there)
    assert job_settings(here) != job_settings(cfg("a@/x/n.png|b@/x/m.png|c@/x/m.png"))
    assert canonical(here).prompt == "a@regions/1.png|b@regions/2.png"
    assert job_settings(cfg("a@left")) != job_settings(cfg("a@right"))


def test_the_page_may_edit_and_rerun_a_run_with_mask_copies(runs):
    from vqclip.ui.gallery import edit_job
    from vqclip.ui.jobs import Uploads, check_safe

    job = edit_job(runs["root"], runs["whole"].dir)["job"]
    copy = str((runs["whole"].dir / "regions" / "1.png").absolute())
    assert copy in job["prompt"] and check_safe(job, Uploads(runs["root"] / ".uploads"))["prompt"] == job["prompt"]
