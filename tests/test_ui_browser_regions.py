"""Regions painted on the page: on a blank canvas, region 1 painted over the left half with "a red square", region 2
over the right half with "a green circle"; the run's job holds both prompts, each with its uploaded mask, and the
masks are what was painted. Skipped where there is no Chromium."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from PIL import Image

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip install playwright)")

from test_ui_browser import CHROMIUM, browser_page, folders, generate, make  # noqa: E402,F401

from vqclip.optim.prompts import parse_prompts  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")]


def test_regions_painted_on_a_blank_canvas_become_region_prompts(browser_page):
    srv, page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1200})
    make(page, "a blue background", 2)  # 32x32
    if not page.is_visible("#ed-blank"):
        page.click("#editor-box summary")
    page.click("#ed-blank")
    page.wait_for_selector("#ed-tools:not([hidden])")
    page.wait_for_function("document.querySelector('#ed-r1').width === 32")
    page.locator("#ed-frame").scroll_into_view_if_needed()
    box = page.locator("#ed-mask").bounding_box()
    at = lambda x, y: (box["x"] + (x + 0.5) * box["width"] / 32, box["y"] + (y + 0.5) * box["height"] / 32)  # noqa
    page.eval_on_selector("#ed-size", "e => { e.value = 4; e.dispatchEvent(new Event('input')); }")
    page.eval_on_selector("#ed-hardness", "e => { e.value = 100; e.dispatchEvent(new Event('input')); }")
    for name, x, text in (("r1", 6, "a red square"), ("r2", 25, "a green circle")):
        page.select_option("#ed-layer", name)
        page.fill(f"#ed-{name}-text", text)
        page.mouse.move(*at(x, 4))
        page.mouse.down()
        for k in range(1, 9):
            page.mouse.move(*at(x, 4 + 3 * k))
        page.mouse.up()
    generate(page)
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    page.wait_for_function("document.querySelector('#w-state').textContent == 'done'")
    run = folders(srv)[-1]
    job = yaml.safe_load((run / "job.yaml").read_text())
    assert "init" not in job or not job["init"].get("image")  # a blank canvas edits nothing
    prompts = parse_prompts(job["prompt"])
    assert [p.text for p in prompts] == ["a blue background", "a red square", "a green circle"]
    assert prompts[0].region is None
    masks = [np.asarray(Image.open(p.region).convert("L")) for p in prompts[1:]]
    for mask, x in zip(masks, (6, 25)):
        assert mask.shape == (32, 32)
        assert mask[6:26, x].min() == 255  # the stroke
        assert mask[:, 12:20].max() == 0  # nothing in the middle
    assert masks[0][:, 22:].max() == 0 and masks[1][:, :10].max() == 0  # each region where it was painted
