"""Region prompts from the page: a named region passes, a mask is an upload (resolved to its file), and a mask image
of the server is refused in every place a prompt can stand (prompt, its YAML list, negatives, story keyframes,
sweeps), so the page still reads no file of the server but its uploads."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from vqclip.errors import VqclipError
from vqclip.ui.jobs import Uploads, check_safe, plan

UID = "ab" * 16


@pytest.fixture
def uploads(tmp_path):
    folder = tmp_path / "up"
    folder.mkdir()
    mask = np.zeros((32, 32), np.uint8)
    mask[:, :16] = 255
    Image.fromarray(mask).convert("RGB").save(folder / f"{UID}.png")
    return Uploads(folder)


@pytest.mark.parametrize("job", [
    {"prompt": "a red square:1@/etc/secret.png"},
    {"prompt": "a red circle|a red square:1@../../x.png"},
    {"prompt": [{"text": "a red square", "mask": "/etc/secret.png"}]},
    {"prompt": ["a red square@/etc/secret.png"]},
    {"negative": ["blurry@/etc/secret.png"]},
    {"story": [{"at": 0, "prompt": "a red square@/etc/secret.png"}]},
    {"story": [{"at": 0, "prompt": [{"text": "a", "mask": "/tmp/m.png"}]}]},
    {"sweep": {"prompt": ["a red circle", "a red square@/etc/secret.png"]}},
])
def test_a_mask_file_of_the_server_is_refused(job, uploads):
    with pytest.raises(VqclipError) as err:
        check_safe(job, uploads)
    assert "upload" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("prompt", ["a red square:1@left|a green circle:1@right", "a red square@center",
                                    [{"text": "a red square", "mask": "border"}], "no region at all"])
def test_named_regions_pass_unchanged(prompt, uploads):
    assert check_safe({"prompt": prompt}, uploads)["prompt"] == prompt


def test_an_uploaded_mask_is_its_file_and_the_job_checks_with_it(uploads):
    job = {"prompt": [{"text": "a red square", "mask": f"upload:{UID}"}, "a blue background"], "model": "mini",
           "size": [32, 32], "steps": 2}
    safe = check_safe(job, uploads)
    assert safe["prompt"][0]["mask"] == uploads(UID) and safe["prompt"][1] == "a blue background"
    cfg = plan(job, uploads)
    assert uploads(UID) in cfg.prompt and "a blue background" in cfg.prompt


def test_a_mask_upload_that_does_not_exist_is_one_line(uploads):
    with pytest.raises(VqclipError, match="no such upload"):
        check_safe({"prompt": [{"text": "a", "mask": "upload:" + "cd" * 16}]}, uploads)


def test_a_rerun_may_name_an_uploaded_mask_by_its_file_and_nothing_else(uploads):
    own = uploads(UID)  # as a run's job.yaml names it
    assert check_safe({"prompt": f"a red square:1@{own}"}, uploads)["prompt"] == f"a red square:1@{own}"
    folder = str(uploads.folder)
    for other in (f"/tmp/{UID}.png", f"{folder}/../{UID}.png", f"{folder}/sub/{UID}.png", f"{folder}/secret.png"):
        with pytest.raises(VqclipError, match="cannot read mask files"):
            check_safe({"prompt": f"a red square:1@{other}"}, uploads)
