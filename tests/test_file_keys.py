"""The keys that name a file are marked once, on their option (`path=`): the config's path check, the page's job
check and form, and the gallery's reopened jobs all take them from there."""

from __future__ import annotations

import pytest

from vqclip.config import GenerateConfig, merge_layers
from vqclip.config.checks import check, path_options
from vqclip.config.fields import file_keys, values_at
from vqclip.errors import VqclipError
from vqclip.ui import gallery, jobs, options

HEX = "0123456789abcdef" * 2

# the four lists as they were written by hand before (vqclip 0.x, issue 36)
OLD_CHECKED = {"output.dir", "init.image", "vqgan.config", "vqgan.checkpoint", "guide.model", "guide.weights",
               "restyle.input", "image_prompts", "clip[].model", "clip[].pretrained", "candidates.clip[].model",
               "candidates.clip[].pretrained", "palette.image"}  # with the palette's image (merged beside it)
OLD_SERVER_FILES = {"vqgan.config", "vqgan.checkpoint", "guide.model", "guide.weights", "restyle.input", "output.dir"}
OLD_MODEL_NAMES = {"clip.model", "clip.pretrained", "candidates.clip.model", "candidates.clip.pretrained",
                   "output.upscale.model", "model"}
OLD_UPLOADS = {"init.image", "image_prompts", "palette.image"}


def test_the_marked_keys_are_the_lists_written_before():
    """Each kind is one of the old lists; all of them are the old path check's keys and the upscaler's model (a file
    it reads, which that list missed)."""
    assert set(file_keys(GenerateConfig, "server")) == OLD_SERVER_FILES
    assert set(file_keys(GenerateConfig, "image")) == OLD_UPLOADS | {"init.mask"}  # and issue 37's edit mask
    assert {k.replace("[]", "") for k in file_keys(GenerateConfig, "model")} | {"model"} == \
        OLD_MODEL_NAMES | {"animation.depth"}  # and issue 38's depth model (a preset or a weights file)
    assert set(file_keys(GenerateConfig)) == OLD_CHECKED | {"output.upscale.model", "init.mask", "animation.depth"}


def test_each_place_takes_its_list_from_the_fields():
    assert jobs.NO_FILES == file_keys(GenerateConfig, "server")
    assert set(jobs.MODEL_NAMES) == OLD_MODEL_NAMES | {"animation.depth"} and jobs.UPLOAD_KEYS == file_keys(GenerateConfig, "image")
    assert jobs.LISTS == ("image_prompts",)
    assert gallery.UPLOAD_KEYS is jobs.UPLOAD_KEYS
    assert set(file_keys(GenerateConfig, "server", "model")) <= set(options.HIDDEN)
    offered = {o["key"] for o in options.form_options()}
    assert not offered & set(file_keys(GenerateConfig, "server", "model"))
    assert set(file_keys(GenerateConfig, "image")) <= offered  # uploads are on the form


def test_values_at_gives_each_list_item_its_index():
    cfg = merge_layers([("t", {"prompt": "x", "image_prompts": ["a.png", "b.png:2"],
                               "clip": [{"model": "A", "pretrained": None}, {"model": "B"}],
                               "output": {"upscale": {"model": "u.pth"}}})])
    assert values_at(cfg, "image_prompts") == [("image_prompts[0]", "a.png"), ("image_prompts[1]", "b.png:2")]
    assert values_at(cfg, "clip[].model") == [("clip[0].model", "A"), ("clip[1].model", "B")]
    assert values_at(cfg, "clip[].pretrained") == [("clip[0].pretrained", None), ("clip[1].pretrained", "openai")]
    assert values_at(cfg, "output.upscale.model") == [("output.upscale.model", "u.pth")]
    got = dict(path_options(cfg))
    assert got["image_prompts[1]"] == "b.png:2" and got["clip[1].model"] == "B" and got["output.upscale.model"] == "u.pth"
    assert "clip[0].pretrained" not in got and "init.image" not in got  # unset: nothing to check


LONG = "x" * 5000 + ".pth"


@pytest.mark.parametrize("key, job", [
    (r"candidates\.clip\[0\]\.pretrained", {"candidates": {"clip": [{"pretrained": LONG}]}}),
    (r"image_prompts\[1\]", {"image_prompts": ["a.png", LONG]}),
    (r"restyle\.input", {"restyle": {"input": LONG}}),
    (r"output\.upscale\.model", {"output": {"upscale": {"model": LONG}}}),
])
def test_the_path_check_covers_every_marked_key(key, job):
    """A name too long for the filesystem is refused at its key, before anything runs."""
    with pytest.raises(VqclipError, match=rf"^{key}: .* is too long a name for the filesystem; check the path$"):
        check(merge_layers([("t", {"prompt": "x", **job})]))


def test_the_page_refuses_server_files_but_takes_the_other_keys_of_their_sections():
    """guide.weight is on the form, so the page takes it; guide.weights names a file, so it refuses it, as it refuses a
    section given as a text."""
    offered = {o["key"] for o in options.form_options()}
    assert "guide.weight" in offered
    assert jobs.check_safe({"guide": {"weight": 0.5, "views": 2}}, lambda i: i) == {"guide": {"weight": 0.5,
                                                                                               "views": 2}}
    for job, key in (({"guide": {"weights": "g.pt"}}, "guide.weights"), ({"guide": "g.json"}, "guide"),
                     ({"vqgan": "v.yaml"}, "vqgan")):
        with pytest.raises(VqclipError, match=f"^{key}: the page cannot name files of the server"):
            jobs.check_safe(job, lambda i: i)
    assert jobs.check_safe({"init": {"image": f"upload:{HEX}"}, "image_prompts": f"upload:{HEX}:2"},
                           lambda i: f"/up/{i}.png") == {"init": {"image": f"/up/{HEX}.png"},
                                                         "image_prompts": [f"/up/{HEX}.png:2"]}


def test_the_gallery_reopens_a_jobs_upload_keys_as_uploads(tmp_path):
    """Edit and run again: an image key inside the uploads folder comes back as its upload id, one from elsewhere is
    dropped (the page cannot name it)."""
    outputs = (tmp_path / "outputs").resolve()
    (outputs / "run").mkdir(parents=True)
    upload = outputs / gallery.UPLOADS / f"{HEX}.png"
    (outputs / "run" / "job.yaml").write_text(f"model: mini\nprompt: x\ninit:\n  image: {upload}\nimage_prompts: [/etc/a.png]\n")
    got = gallery.edit_job(outputs, outputs / "run")
    assert got["job"]["init"]["image"] == f"upload:{HEX}"
    assert got["dropped"] == ["image_prompts"] and "image_prompts" not in got["job"]
