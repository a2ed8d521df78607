"""report.html in a real browser (Playwright driving the system Chromium), opened from file:// as a user opens it:
every section is there, every image decodes, and no request leaves the page (only data: and file: URLs). Skipped
where there is no Chromium.

`VQCLIP_UI_SCREENSHOT=1 pytest tests/test_report_browser.py` also refreshes docs/report.png."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

sync_api = pytest.importorskip("playwright.sync_api",
                               reason="the browser tests need playwright (pip install playwright)")
pytest.importorskip("matplotlib", reason="report.html's plots need vqclip[report]")

from vqclip.runs.jobs import build_config  # noqa: E402
from vqclip.runs.pipeline import run_job  # noqa: E402
from vqclip.report.page import write_report  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or (
    "/usr/bin/chromium" if Path("/usr/bin/chromium").is_file() else None)
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "report.png"

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")]


def test_the_report_opens_offline_with_every_section(run_reports, tiny_job, tmp_path):
    job = {**tiny_job, "prompt": "a red ball on a blue floor", "seed": 2, "steps": 8, "tv_weight": 0.05,
           "steer": [{"at": 4, "prompt": "a green ball on a blue floor"}],
           "output": {"dir": str(tmp_path / "run"), "progress": False, "video": False, "save_every": 2}}
    run = run_job(build_config(job))
    frames = [{"step": s, "file": f"frames/{s:06d}.png", "judge": 0.2 + 0.01 * s - 0.002 * s * s, "aesthetic": None,
               "guide": 0.3 + 0.02 * s} for s in range(0, 9, 2)]  # scripted scores, in the judge's format
    (run.dir / "scores.json").write_text(json.dumps({"judge": {"model": "scripted-judge", "aesthetic": None},
                                                     "guides": ["tiny"], "frames": frames,
                                                     "best": {"step": 2, "file": "best.png"}, "stopped_by": None}))
    page_file = write_report(run.dir, quiet=True)
    requests: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 900})
            page.on("request", lambda req: requests.append(req.url))
            page.goto(page_file.resolve().as_uri())
            page.wait_for_load_state("load")
            assert page.eval_on_selector_all("section", "ss => ss.map(s => s.id)") == [
                "loss", "judge", "frames", "job", "speed"]
            assert page.eval_on_selector_all("img", "is => is.every(i => i.complete && i.naturalWidth > 0)")
            assert page.locator("#judge").inner_text().count("\n") > 3 and "scripted-judge" in page.content()
            assert "a green ball" in page.locator("#loss").inner_text()  # the steer, marked
            shot = tmp_path / "report.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert requests and all(url.split(":", 1)[0] in ("data", "file") for url in requests), requests
    assert Image.open(shot).format == "PNG"
    if os.environ.get("VQCLIP_UI_SCREENSHOT"):
        Image.open(shot).convert("RGB").quantize(128).save(SCREENSHOT, optimize=True)


def test_the_page_shows_a_runs_report_plots_and_links_its_report(tmp_path):
    pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
    pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")
    from uiserver import LiveServer

    from vqclip.report.plots import loss_plot

    run = tmp_path / "outputs" / "run"
    (run / "report").mkdir(parents=True)
    Image.new("RGB", (32, 32), (200, 30, 30)).save(run / "final.png")
    loss_plot(["clip:a"], [{"step": s, "total": 1.0 / (s + 1), "clip:a": 1.0 / (s + 1)} for s in range(5)], [],
              run / "report" / "loss.png")
    (run / "report.html").write_text("<!DOCTYPE html><html><body><section id='loss'>report</section></body></html>")
    srv = LiveServer(tmp_path / "outputs", device="cpu").start()
    try:
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
            try:
                page = browser.new_page(viewport={"width": 1200, "height": 900})
                page.goto(srv.url + "/#browse")
                page.wait_for_selector("body[data-ready='1']", timeout=20_000)
                page.click("#gallery .card[data-name='run']")
                page.wait_for_function("[...document.querySelectorAll('#d-plots img')].length == 1 && "
                                       "[...document.querySelectorAll('#d-plots img')].every(i => i.complete && "
                                       "i.naturalWidth == 720)")
                href = page.get_attribute("#d-links a[href$='report.html']", "href")
                assert href == "/files/run/report.html"
                page.goto(srv.url + href)
                assert page.locator("#loss").inner_text() == "report"
            finally:
                browser.close()
    finally:
        srv.stop()
