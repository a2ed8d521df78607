"""The page's image editor in a real browser (Playwright driving the system Chromium) against a real server on the mini
preset: paint a mask with the mouse (and a finger: touch pointer events) over an uploaded init image and run the
edit, then drag a border to outpaint.
Checked on disk: mask.png holds the strokes, final.png keeps every pixel outside the mask's feather band, the
outpaint keeps the original bit for bit. Skipped where there is no Chromium.

`VQCLIP_UI_SCREENSHOT=1 pytest tests/test_ui_editor_browser.py` also refreshes docs/images/editor.png."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip install playwright)")

from test_edit import band  # noqa: E402
from test_ui_browser import CHROMIUM, browser_page, folders, generate, make  # noqa: E402,F401

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "editor.png"
FEATHER = 2

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")]


def picture() -> np.ndarray:
    """A 32x32 init image [32,32,3] uint8: a blue field with a red square and a gradient, so every pixel differs."""
    y, x = np.mgrid[0:32, 0:32]
    img = np.stack([x * 3, y * 2, np.full_like(x, 200)], -1).astype(np.uint8)
    img[8:20, 8:20] = (220, 30, 30)
    return img


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def read(path: Path, mode: str = "RGB") -> np.ndarray:
    return np.asarray(Image.open(path).convert(mode))


def test_paint_a_mask_run_the_edit_then_drag_a_border_to_outpaint(browser_page):
    srv, page = browser_page
    page.set_viewport_size({"width": 1280, "height": 1200})
    init = picture()
    make(page, "a yellow circle on a blue background", 3)
    page.fill("#f-init-mask_feather", str(FEATHER))
    page.set_input_files("#f-init-image", files=[{"name": "photo.png", "mimeType": "image/png", "buffer": png(init)}])
    page.wait_for_selector("#ed-tools:not([hidden])")  # the upload opened the editor on the image
    page.wait_for_function("document.querySelector('#ed-mask').width === 32")
    page.eval_on_selector("#ed-size", "e => { e.value = 3; e.dispatchEvent(new Event('input')); }")
    page.eval_on_selector("#ed-hardness", "e => { e.value = 100; e.dispatchEvent(new Event('input')); }")

    # two strokes with the mouse: a horizontal one along row 10 from x 6 to 24, a short vertical one at x 12
    page.locator("#ed-frame").scroll_into_view_if_needed()  # the mouse reaches only what is in view
    box = page.locator("#ed-mask").bounding_box()
    at = lambda x, y: (box["x"] + (x + 0.5) * box["width"] / 32, box["y"] + (y + 0.5) * box["height"] / 32)  # noqa
    for (x0, y0), (x1, y1) in (((6, 10), (24, 10)), ((12, 12), (12, 18))):
        page.mouse.move(*at(x0, y0))
        page.mouse.down()
        for k in range(1, 9):
            page.mouse.move(*at(x0 + (x1 - x0) * k / 8, y0 + (y1 - y0) * k / 8))
        page.mouse.up()
    assert "mask painted" in page.text_content("#ed-info")
    # a finger: the pointer events a touch screen sends, down column 26 from row 14 to 20
    page.evaluate("""([x, y0, y1]) => {
        const c = document.querySelector('#ed-mask');
        const send = (type, y) => c.dispatchEvent(new PointerEvent(type, {pointerId: 9, pointerType: 'touch',
            isPrimary: true, clientX: x, clientY: y, bubbles: true, cancelable: true}));
        send('pointerdown', y0);
        for (let k = 1; k <= 8; k++) send('pointermove', y0 + (y1 - y0) * k / 8);
        send('pointerup', y1); }""", [at(26, 14)[0], at(26, 14)[1], at(26, 20)[1]])
    # erase the end of the first stroke again
    page.check("#ed-erase")
    page.mouse.move(*at(23, 10))
    page.mouse.down()
    page.mouse.move(*at(24, 10))
    page.mouse.up()
    page.uncheck("#ed-erase")
    if os.environ.get("VQCLIP_UI_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        page.locator("#editor-box").screenshot(path=str(SCREENSHOT))

    generate(page)
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert page.text_content("#w-state") == "done"
    [run] = folders(srv)
    mask = read(run / "mask.png", "L")
    assert mask.shape == (32, 32)
    # the strokes are there: the stroke lines are white, far from them black, the erased end gone
    assert mask[10, 8:20].min() == 255 and mask[13:18, 12].min() == 255
    assert mask[0:4].max() == 0 and mask[28:].max() == 0 and mask[:, 28:].max() == 0
    assert mask[10, 24] == 0
    assert mask[14:21, 26].min() == 255  # the touch stroke
    final = read(run / "final.png")
    outside = ~band(mask, FEATHER + 1)
    assert outside.sum() > 600  # most of the image is outside the band
    np.testing.assert_array_equal(final[outside], init[outside])  # kept bit for bit
    assert (final[mask == 255] != init[mask == 255]).any()  # and the painted part changed
    page.wait_for_selector("#compare:not([hidden])")  # before and after, side by side on a slider
    assert page.get_attribute("#cmp-before", "src").startswith("/files/.uploads/")

    # outpaint: drag the right border by 16 image pixels (the stage draws the image at a whole scale)
    page.click("#ed-clear")
    page.locator("#ed-frame").scroll_into_view_if_needed()
    box = page.locator("#ed-mask").bounding_box()
    handle = page.locator(".ed-handle[data-side='2']").bounding_box()
    scale = box["width"] / 32
    page.mouse.move(handle["x"] + handle["width"] / 2, handle["y"] + handle["height"] / 2)
    page.mouse.down()
    page.mouse.move(handle["x"] + handle["width"] / 2 + 16 * scale, handle["y"] + handle["height"] / 2, steps=4)
    page.mouse.up()
    if not page.is_visible("#f-init-extend"):
        page.click("#advanced summary")
    assert page.input_value("#f-init-extend") == "0,0,16,0"
    assert "→ 48x32" in page.text_content("#ed-info")
    generate(page)
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    page.wait_for_function("document.querySelector('#w-state').textContent == 'done'")
    wider = folders(srv)[-1]
    assert wider != run
    out = read(wider / "final.png")
    assert out.shape == (32, 48, 3)
    np.testing.assert_array_equal(out[:, :32 - FEATHER - 1], init[:, :32 - FEATHER - 1])  # the original, kept
    assert not (wider / "mask.png").exists() or read(wider / "mask.png", "L")[:, :16].max() == 0
