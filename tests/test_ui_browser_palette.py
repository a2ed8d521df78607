"""The palette's image on the page in a real browser (Playwright driving the system Chromium): an upload button like
the init image's, whose upload goes into the job as its id and which the server reads as the uploaded file; a file
that is no image shows its error by the field; a re-run's palette image is kept until the button is cleared.
Skipped where there is no Chromium."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip install playwright)")

from test_ui_browser import ARGS, CHROMIUM  # noqa: E402
from uiserver import LiveServer  # noqa: E402

from vqclip.ui.gallery import UPLOADS  # noqa: E402
from vqclip.ui.jobs import Uploads, check_job  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")]


def png_bytes() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 40)).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def page_of(tmp_path_factory):
    srv = LiveServer(tmp_path_factory.mktemp("ui") / "outputs", device="cpu").start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                sent = []

                def hold(route):  # what the page sends; answered here, so no run starts
                    if route.request.method != "POST":
                        return route.continue_()
                    sent.append(json.loads(route.request.post_data))
                    route.fulfill(status=400, content_type="application/json", body='{"error": "held by the test"}')

                page.route("**/api/jobs", hold)
                page.goto(srv.url + "/")
                page.wait_for_selector("body[data-ready='1']", timeout=20_000)
                yield srv, page, sent
            finally:
                browser.close()
    finally:
        srv.stop()


def test_the_palette_image_is_an_upload_that_goes_into_the_job_as_the_uploaded_file(page_of):
    srv, page, sent = page_of
    page.click("#advanced summary")
    assert page.is_visible("#f-palette-image") and page.get_attribute("#f-palette-image", "type") == "file"
    assert page.get_attribute("#f-palette-image", "accept") == "image/*"
    assert page.locator("[data-key='palette.image']").count() == 0  # no text field for a path of the server
    page.fill("#f-prompt", "a red circle")
    page.set_input_files("#f-palette-image", files=[{"name": "p.png", "mimeType": "image/png", "buffer": png_bytes()}])
    page.wait_for_function("() => !!state.uploads['palette.image']")
    page.fill("#f-palette-size", "4")
    sent.clear()
    page.click("#generate")
    page.wait_for_function("() => document.querySelector('#form-error').textContent.includes('held by the test')")
    job = sent[-1]["job"]
    ident = job["palette"]["image"]
    assert ident.startswith("upload:") and job["palette"]["size"] == 4
    stored = srv.outputs / UPLOADS / f"{ident[len('upload:'):]}.png"
    assert stored.is_file()
    planned = check_job({"job": job}, Uploads(srv.outputs / UPLOADS))
    assert planned.palette.image == str(stored)


def test_a_file_that_is_no_image_shows_by_the_field_and_is_not_sent(page_of):
    srv, page, sent = page_of
    page.set_input_files("#f-palette-image", files=[{"name": "x.png", "mimeType": "image/png", "buffer": b"not png"}])
    page.wait_for_function("document.querySelector('.err[data-for=\"palette.image\"]').textContent.length > 0")
    assert "not an image" in page.text_content(".err[data-for='palette.image']")
    assert "palette.image" not in page.evaluate("() => state.uploads")
    assert "image" not in (page.evaluate("() => readForm()").get("palette") or {})


def test_a_reruns_palette_image_is_kept_until_the_button_is_cleared(page_of):
    srv, page, sent = page_of
    ident = "upload:" + "ab" * 16
    page.evaluate("id => fillForm({prompt: 'x', palette: {image: id, size: 3}})", ident)
    job = page.evaluate("() => readForm()")
    assert job["palette"] == {"image": ident, "size": 3}
    page.set_input_files("#f-palette-image", files=[])  # the user clears the button
    page.wait_for_function("() => !state.uploads['palette.image']")
    assert "image" not in page.evaluate("() => readForm()").get("palette", {})
