"""The page in a real browser (Playwright driving the system Chromium) against a real server on the mini preset:
make a run and watch it, stop a second one midway, re-run one from the gallery. Skipped where there is no Chromium.

`VQCLIP_UI_SCREENSHOT=1 pytest tests/test_ui_browser.py` also refreshes docs/images/ui.png."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (pip install playwright)")

from uiserver import LiveServer  # noqa: E402

from vqclip.files.images import read_metadata  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
# the network may be closed: without these, Chromium keeps trying to reach Google's services
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / "ui.png"

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")]


@pytest.fixture
def browser_page(tmp_path):
    srv = LiveServer(tmp_path / "outputs", device="cpu").start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 1000})
                page.goto(srv.url + "/")
                page.wait_for_selector("body[data-ready='1']", timeout=20_000)
                yield srv, page
            finally:
                browser.close()
    finally:
        srv.stop()


def folders(srv) -> list[Path]:
    return sorted((p for p in srv.outputs.iterdir() if p.is_dir() and not p.name.startswith(".")),
                  key=lambda p: p.stat().st_mtime)


def make(page, prompt: str, steps: int) -> None:
    """Type a small mini job into the form."""
    page.fill("#f-prompt", prompt)
    page.fill("#f-size-w", "32")
    page.fill("#f-size-h", "32")
    page.fill("#f-steps", str(steps))
    page.fill("#f-candidates-n", "1")
    page.fill("#f-cutouts-n", "4")
    if not page.is_visible("#f-output-save_every"):
        page.click("#advanced summary")
    page.fill("#f-output-save_every", "1")


def generate(page) -> None:
    """Press Generate and wait until the Watch part follows the new job."""
    before = page.text_content("#w-job")
    page.click("#generate")
    page.wait_for_function("before => { const t = document.querySelector('#w-job').textContent; "
                           "return t !== '' && t !== before; }", arg=before)


def test_make_watch_stop_and_rerun_from_the_gallery(browser_page):
    srv, page = browser_page
    assert page.input_value("#f-model") == "mini"  # an empty home: the page starts on the built-in preset
    assert page.input_value("#f-steps") == "100"  # the preset's default shown in the form
    page.evaluate("""() => { window.previews = new Set();
        new MutationObserver(() => window.previews.add(document.querySelector('#preview').src))
          .observe(document.querySelector('#preview'), {attributes: true, attributeFilter: ['src']}); }""")

    # 1. make a run and watch it
    make(page, "a red circle on a blue background", 40)
    generate(page)
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert page.evaluate("window.previews.size") >= 2  # the live image changed at least twice
    assert page.text_content("#w-state") == "done" and page.text_content("#w-step") == "40"
    page.wait_for_function("document.querySelector('#final').naturalWidth > 0")
    [first] = folders(srv)
    meta = read_metadata(first / "final.png")
    assert meta["prompt"] == "a red circle on a blue background" and meta["steps_done"] == 40
    assert len(list((first / "frames").glob("*.png"))) == 41 and (first / "progress.mp4").is_file()
    assert page.get_attribute("#downloads a[href$='final.png']", "href") == f"/files/{first.name}/final.png"

    # 2. a second run, stopped midway: what it made is kept
    make(page, "a blue toaster on a green background", 100000)
    generate(page)
    page.wait_for_function("Number(document.querySelector('#w-step').textContent) >= 4", timeout=60_000)
    assert "toaster" in page.text_content("#w-notes")  # the vocabulary note, on the page as on a terminal
    page.click("#stop")
    page.wait_for_selector("#result:not([hidden])", timeout=60_000)
    assert page.text_content("#w-state") == "stopped"
    second = folders(srv)[-1]
    meta = read_metadata(second / "final.png")
    assert meta["stopped"] is True and 4 <= meta["steps_done"] < 100000
    assert len(list((second / "frames").glob("*.png"))) >= 4 and (second / "progress.mp4").is_file()

    # 3. the gallery, newest first; re-run the first from it
    page.click("#refresh")
    page.wait_for_function("document.querySelectorAll('#gallery .card').length == 2")
    names = page.eval_on_selector_all("#gallery .card", "cards => cards.map(c => c.dataset.name)")
    assert names == [second.name, first.name]
    page.click(f"#gallery .card[data-name='{first.name}']")
    page.wait_for_function("document.querySelector('#d-job').textContent.includes('red circle')")
    page.click("#d-edit")
    assert page.input_value("#f-prompt") == "a red circle on a blue background"
    assert page.input_value("#f-steps") == "40" and page.input_value("#f-seed") == str(read_metadata(
        first / "final.png")["seed"])
    generate(page)
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    page.wait_for_function("document.querySelector('#w-state').textContent == 'done'")
    third = folders(srv)[-1]
    assert third not in (first, second)
    assert read_metadata(third / "final.png")["seed"] == read_metadata(first / "final.png")["seed"]
    page.click("#refresh")
    page.wait_for_function("document.querySelectorAll('#gallery .card').length == 3")
    page.wait_for_function("[...document.querySelectorAll('#gallery img')].every(i => i.complete && i.naturalWidth)")
    if page.is_visible("#f-output-save_every"):
        page.click("#advanced summary")  # the screenshot shows the main form
    shot = page.screenshot(full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("VQCLIP_UI_SCREENSHOT"):
        SCREENSHOT.parent.mkdir(exist_ok=True)
        SCREENSHOT.write_bytes(shot)


def test_a_typed_error_shows_next_to_its_field_and_the_page_goes_on(browser_page):
    srv, page = browser_page
    make(page, "a red circle", -5)
    page.click("#generate")
    page.wait_for_function("document.querySelector('.err[data-for=steps]').textContent.length > 0")
    assert page.text_content(".err[data-for=steps]") == "steps: must be >= 0, got -5"
    make(page, "", 3)  # an error the form has no field for would read "undefined:job: ..."
    page.click("#generate")
    page.wait_for_function("document.querySelector('.err[data-for=prompt]').textContent.length > 0")
    assert page.text_content(".err[data-for=prompt]") == ("prompt: nothing to aim at: give a prompt (or 'image "
                                                          "prompt') with a positive weight")
    assert page.eval_on_selector_all(".err", "es => es.filter(e => !e.dataset.for).length") == 0
    page.set_viewport_size({"width": 420, "height": 900})  # a phone: every input stays inside its card
    spill = page.evaluate("""() => [...document.querySelectorAll('#make input, #make select, #make textarea')]
        .filter(e => e.offsetParent).filter(e => e.getBoundingClientRect().right >
                                                 document.querySelector('#make').getBoundingClientRect().right)
        .map(e => e.id)""")
    assert spill == []
    page.set_viewport_size({"width": 1280, "height": 1000})
    make(page, "a red circle", 3)
    assert srv.queue.jobs() == []
    page.set_input_files("#f-init-image", files=[{"name": "x.png", "mimeType": "image/png", "buffer": b"not png"}])
    page.wait_for_function("document.querySelector('.err[data-for=\"init.image\"]').textContent.length > 0")
    assert "not an image" in page.text_content(".err[data-for='init.image']")
    page.click("#yaml-box summary")
    page.fill("#f-yaml", "prompt: a red circle\nmodel: mini\nsteps: [1")
    page.click("#yaml-check")
    page.wait_for_function("document.querySelector('.err[data-for=yaml]').textContent.length > 0")
    assert page.text_content(".err[data-for=yaml]").startswith("yaml: not valid YAML at line 3")
    page.fill("#f-yaml", "prompt: a red circle\nmodel: mini\nsteps: 3\ninit:\n  image: /etc/passwd\n")
    page.click("#yaml-check")
    page.wait_for_function("document.querySelector('.err[data-for=yaml]').textContent.includes('init.image')")
    page.fill("#f-yaml", "prompt: a red circle\nmodel: mini\nsteps: 3\n")
    page.click("#yaml-check")
    page.wait_for_function("document.querySelector('.err[data-for=yaml]').textContent.includes('valid job')")
    assert srv.queue.jobs() == []
    page.fill("#f-steps", "3")
    generate(page)
    page.wait_for_selector("#result:not([hidden])", timeout=120_000)
    assert len(folders(srv)) == 1


def test_a_gallery_refresh_keeps_the_card_that_has_the_keyboard_and_an_older_answer_loses(browser_page):
    """Two refreshes in flight (a run ends while the user presses Refresh): the older answer, arriving last, is dropped,
    and the card the keyboard was on is focused again in the new gallery, so Enter still opens it."""
    srv, page = browser_page
    for prompt in ("a red circle on a blue background", "a green square on a white background"):
        make(page, prompt, 2)
        generate(page)
        page.wait_for_function("document.querySelector('#w-state').textContent === 'done'", timeout=120_000)
    older, newer = folders(srv)
    page.click("#refresh")
    page.wait_for_function("document.querySelectorAll('#gallery > .card').length === 2")
    shown = page.evaluate("""async (name) => {
        const real = window.fetch; let first = true;
        window.fetch = async (url, init) => {  // the first /api/runs answer comes late and lists the newest run only
          const res = await real(url, init);
          if (!String(url).endsWith('/api/runs') || !first) return res;
          first = false;
          const runs = (await res.json()).slice(0, 1);
          await new Promise((done) => setTimeout(done, 500));
          return new Response(JSON.stringify(runs), {status: 200, headers: {'Content-Type': 'application/json'}});
        };
        document.querySelector(`#gallery > .card[data-name='${name}']`).focus();
        try { await Promise.all([refreshGallery(), refreshGallery()]); } finally { window.fetch = real; }
        return {cards: [...document.querySelectorAll('#gallery > .card')].map((c) => c.dataset.name),
                focused: document.activeElement.dataset.name || null};
    }""", older.name)
    assert shown == {"cards": [newer.name, older.name], "focused": older.name}
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#d-name').textContent === '{older.name}'")
