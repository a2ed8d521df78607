"""The page's uploads go only where a key names an image (`option(path="image")`: init.image, image_prompts,
palette.image): there an upload id becomes the uploaded file and a path is refused; a key that names a file of the
server refuses an upload id as any other value; the form offers an upload button for exactly those keys."""

from __future__ import annotations

import pytest

from vqclip.config.fields import file_keys
from vqclip.config.job import GenerateConfig
from vqclip.ui.jobs import check_safe
from vqclip.ui.options import form_options

from test_ui_jobs import HEX, refused, upload  # noqa: E402


def test_the_palette_image_is_an_upload_by_id():
    assert check_safe({"palette": {"image": f"upload:{HEX}", "size": 4}}, upload) == {
        "palette": {"image": f"/srv/outputs/.uploads/{HEX}.png", "size": 4}}
    assert check_safe({"palette": {"image": ""}}, upload) == {"palette": {"image": None}}
    for value in ("/etc/passwd", f"/srv/outputs/.uploads/{HEX}.png", f"upload:{HEX[:31]}", [f"upload:{HEX}"], 3):
        refused({"palette": {"image": value}}, "palette.image: the page can use only images uploaded to it (upload:ID)")
    refused({"prompt": "x", "sweep": {"palette.image": ["/etc/passwd"]}}, "palette.image: the page can use only")


@pytest.mark.parametrize("key", ["vqgan.checkpoint", "vqgan.config", "guide.weights", "restyle.input", "output.dir"])
def test_an_upload_id_is_refused_where_a_key_names_a_file_of_the_server(key):
    section, leaf = key.split(".")
    refused({section: {leaf: f"upload:{HEX}"}}, f"{key}: ")


def test_an_upload_id_in_a_key_that_names_no_file_is_no_upload():
    job = {"palette": {"colors": [f"upload:{HEX}"]}, "prompt": f"upload:{HEX}"}
    assert check_safe(job, upload) == job  # left as text: the config's checks judge it (not a colour)


def test_the_form_offers_an_upload_button_for_exactly_the_keys_that_name_images():
    offered = [o["key"] for o in form_options() if o["upload"]]
    assert sorted(offered) == sorted(file_keys(GenerateConfig, "image")) and "palette.image" in offered
    assert not any(o["upload"] for o in form_options() if o["key"] in ("palette.colors", "prompt", "output.dir"))
