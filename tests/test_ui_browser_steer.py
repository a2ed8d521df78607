"""Issue 39's "steering works in a real browser" on the mini preset: a run of "a red circle on a blue background" is
steered from the page's prompt box (Enter) to "a yellow circle on a blue background" mid-run; the preview the page
shows moves toward yellow (its pixels measured here, from the PNG the page shows); the run is branched once from the
page (stopping the parent); both runs are in the gallery, the branch under its parent with the step it branched at."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import yaml
from PIL import Image

sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright")

from test_ui_browser import CHROMIUM, browser_page, folders, generate, make  # noqa: E402,F401

from vqclip.files.images import read_metadata  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")]

RED, YELLOW = "a red circle on a blue background", "a yellow circle on a blue background"
STEPS, SWITCH, BRANCH = 32, 8, 16  # the prompt changes at step 8 or soon after, the branch at 16 or soon after


def shares(page) -> dict:
    """The shares of red and of yellow pixels in the preview the page shows (decoded here from its PNG)."""
    src = page.get_attribute("#preview", "src")
    assert src.startswith("data:image/png;base64,")
    with Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))) as im:
        rgb = np.asarray(im.convert("RGB")).astype(int).reshape(-1, 3)
    r, g, b = rgb.T
    return {"red": float(((r > g + 40) & (r > b + 40)).mean()), "yellow": float(((r > b + 60) & (g > b + 60)).mean()),
            "step": int(page.get_attribute("#preview", "data-step"))}


def step_at_least(page, n: int, timeout: int = 120_000) -> None:
    page.wait_for_function(f"Number(document.querySelector('#w-step').textContent) >= {n}", timeout=timeout)


def test_steer_the_prompt_from_the_page_see_the_colour_move_branch_and_find_both_in_the_gallery(browser_page):
    srv, page = browser_page
    make(page, RED, STEPS)
    page.fill("#f-seed", "1")
    generate(page)
    parent_id = page.text_content("#w-job")
    page.wait_for_selector("#steer:not([hidden])", timeout=60_000)
    step_at_least(page, SWITCH)
    assert page.input_value("#s-prompt") == RED and float(page.input_value("#s-lr")) > 0  # the settings in effect
    before = shares(page)

    # 1. change the prompt in the box, Enter: recorded at the step it took effect, shown in the history and the curve
    page.fill("#s-prompt", YELLOW)
    page.press("#s-prompt", "Enter")
    page.wait_for_function("document.querySelectorAll('#s-history li').length === 1")
    [steer] = srv.queue.get(parent_id).steering.entries
    assert steer["prompt"] == YELLOW and steer["at"] >= before["step"]
    assert page.text_content("#s-history li") == f"step {steer['at']}: prompt → {YELLOW}"
    assert page.get_attribute("#curve-marks line.steer", "data-step") == str(steer["at"])
    assert page.text_content("#s-error") == ""
    page.fill("#s-prompt", "a yellow circle:2|a blue background")  # a slider for the weighted part, not sent yet
    assert page.eval_on_selector_all("#s-weights input[type=range]", "s => s.map(i => i.getAttribute('aria-label'))") \
        == ['weight of "a yellow circle"']
    page.eval_on_selector("#s-weights input", "i => { i.value = '0.5'; i.dispatchEvent(new Event('input')); }")
    assert page.input_value("#s-prompt") == "a yellow circle:0.5|a blue background"
    page.fill("#s-prompt", YELLOW)
    page.click("#s-apply")  # the prompt in effect, the lr in effect: nothing to send
    page.wait_for_function("document.querySelector('#s-error').textContent.startsWith('nothing changed')")

    # 2. pause and continue from the page; then branch once, stopping the parent, and watch the branch to its end
    page.click("#s-pause")
    page.wait_for_function("document.querySelector('#s-pause').textContent === 'Continue'")
    assert srv.queue.get(parent_id).steering.paused
    page.click("#s-pause")
    page.wait_for_function("document.querySelector('#s-pause').textContent === 'Pause'")
    step_at_least(page, BRANCH)
    page.check("#s-branch-stop")
    page.click("#s-branch")
    page.wait_for_selector("#s-branched button")
    assert len(srv.queue.get(parent_id).steering.entries) == 1
    child_id = page.get_attribute("#s-branched", "data-child")
    page.wait_for_function("document.querySelector('#w-state').textContent === 'stopped'", timeout=60_000)
    page.click("#s-branched button")
    page.wait_for_function(f"document.querySelector('#w-job').textContent === '{child_id}'")
    page.wait_for_function("document.querySelector('#w-state').textContent === 'done'", timeout=180_000)
    assert page.text_content("#w-step") == str(STEPS)
    page.wait_for_function("document.querySelectorAll('#s-history li').length >= 1")  # the parent's steer, recorded
    assert YELLOW in page.text_content("#s-history")

    # 3. the preview moved toward yellow: yellow pixels where there were none, more of them than red ones
    after = shares(page)
    assert after["step"] == STEPS - 1 and before["yellow"] < 0.01
    assert after["yellow"] >= before["yellow"] + 0.02 and after["yellow"] > after["red"], (steer, before, after)

    # 4. both runs in the gallery, the branch under its parent, its parent and step recorded in its job.yaml
    parent, child = folders(srv)
    assert child.name == parent.name + "-b1"
    branch = yaml.safe_load((child / "job.yaml").read_text())["branch"]
    assert branch["parent"] == parent.name and BRANCH <= branch["step"] < STEPS
    assert read_metadata(parent / "final.png")["stopped"] is True
    assert read_metadata(child / "final.png")["steps_done"] == STEPS
    page.click("#refresh")
    nested = f"#gallery > .card[data-name='{parent.name}'] .branches .card[data-name='{child.name}']"
    page.wait_for_selector(nested)
    assert page.eval_on_selector_all("#gallery > .card", "cs => cs.map(c => c.dataset.name)") == [parent.name]
    assert page.text_content(f"{nested} .m").startswith(f"branched at step {branch['step']} · ")
    page.focus(nested)  # keyboard: Enter on the branch's card opens the branch
    page.keyboard.press("Enter")
    page.wait_for_function(f"document.querySelector('#d-name').textContent === '{child.name}'")
