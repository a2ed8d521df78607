"""The page's form follows an image model's own defaults as the server applies them: choosing `pixel` on mini shows
its TV weight 0 instead of the preset's 40, keeps what the user changed, and a value the user types (even the
preset's 40) is what the run gets; its steps are twice the preset's. Skipped where there is no Chromium."""

from __future__ import annotations

import pytest
import yaml

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip install playwright)")

from test_ui_browser import CHROMIUM, browser_page, folders, generate, make  # noqa: E402,F401

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")]


def run_job(page, srv) -> dict:
    generate(page)
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    page.wait_for_function("document.querySelector('#w-state').textContent == 'done'")
    return yaml.safe_load((folders(srv)[-1] / "job.yaml").read_text())


def test_the_form_shows_and_sends_the_image_models_own_defaults(browser_page):
    srv, page = browser_page
    assert page.input_value("#f-steps") == "100"
    if not page.is_visible("#f-drawer-name"):
        page.click("#advanced summary")
    page.select_option("#f-drawer-name", "pixel")
    assert page.input_value("#f-steps") == "200"  # pixel takes twice the preset's steps (each costs a third)
    page.select_option("#f-drawer-name", "vqgan")
    assert page.input_value("#f-steps") == "100"
    page.select_option("#f-animation-mode", "zoom")  # a zoom's steps set the video's length: pixel keeps them
    page.select_option("#f-drawer-name", "pixel")
    assert page.input_value("#f-steps") == "100" and page.input_value("#f-tv_weight") == "0"
    page.select_option("#f-drawer-name", "vqgan")
    page.select_option("#f-animation-mode", "none")
    make(page, "a red circle on a blue background", 2)
    assert page.input_value("#f-tv_weight") == "40"  # mini's TV, for its VQGAN
    page.select_option("#f-drawer-name", "pixel")
    assert page.input_value("#f-tv_weight") == "0"  # pixel's own default, over the preset's
    assert page.input_value("#f-steps") == "2"  # what the user typed stays
    page.select_option("#f-drawer-name", "vqgan")
    assert page.input_value("#f-tv_weight") == "40"
    page.select_option("#f-drawer-name", "pixel")
    job = run_job(page, srv)
    assert job["drawer"]["name"] == "pixel" and job["tv_weight"] == 0
    page.fill("#f-tv_weight", "40")  # typed by the user: the run gets it, though it is the preset's value
    job = run_job(page, srv)
    assert job["drawer"]["name"] == "pixel" and job["tv_weight"] == 40
    page.select_option("#f-drawer-name", "vqgan")
    page.fill("#f-tv_weight", "7")
    page.select_option("#f-drawer-name", "pixel")
    assert page.input_value("#f-tv_weight") == "7"  # a changed field is the user's, whatever the drawer
