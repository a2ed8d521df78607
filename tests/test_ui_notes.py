"""What a run says reaches the page as it reaches a terminal (the notes of the run's own thread, whatever the
terminal's level), and the page's errors name the page's fields: the field's label, not its YAML key, and never a
command-line flag; the YAML box names keys."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")

from uiserver import LiveServer  # noqa: E402

from vqclip.config import GenerateConfig  # noqa: E402
from vqclip.config.fields import walk  # noqa: E402
from vqclip.nets.load import ModelCache  # noqa: E402
from vqclip.runs.queue import RunQueue  # noqa: E402
from vqclip.ui.options import form_options  # noqa: E402

MINI = {"model": "mini", "size": [32, 32], "steps": 2, "candidates": {"n": 1}, "cutouts": {"n": 4}}


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    server = LiveServer(tmp_path_factory.mktemp("notes") / "outputs", device="cpu", cache=ModelCache()).start()
    try:
        yield server
    finally:
        server.stop()


def test_the_vocabulary_note_of_a_mini_run_reaches_the_page(srv):
    status, job = srv.request("POST", "/api/jobs", {"job": {**MINI, "prompt": "toaster forest"}})
    assert status == 200, job
    done = srv.wait(job["id"])
    assert done["state"] == "done"
    [vocabulary] = [n for n in done["notes"] if "not among its words" in n]
    assert "toaster" in vocabulary and "forest" in vocabulary  # the words the terminal's note names
    assert all("\n" not in n for n in done["notes"])


@dataclass
class _Result:
    dir: Path
    interrupted: bool = False


def test_notes_are_the_run_threads_own_at_any_terminal_level_and_the_level_comes_back(tmp_path, monkeypatch):
    logger = logging.getLogger("vqclip")
    monkeypatch.setattr(logger, "level", logging.WARNING)  # as `vqclip ui --quiet` leaves it

    def run(cfg, **_):
        logger.info("a note of the run")
        other = threading.Thread(target=lambda: logger.info("a note of another job's thread"))
        other.start()
        other.join()
        logging.getLogger("vqclip.pipeline").warning("a warning of the run")
        logging.getLogger("elsewhere").warning("not vqclip's")
        return _Result(Path(cfg.output.dir))

    queue = RunQueue(tmp_path, cache=object(), run=run)
    job = queue.submit(GenerateConfig(prompt="x", device="cpu"), notes=["a note of the check"])
    assert queue.wait(job, 60) and job.state == "done", job.error
    assert job.notes == ["a note of the check", "a note of the run", "warning: a warning of the run"]
    assert job.summary()["notes"] == job.notes
    assert logger.level == logging.WARNING
    queue.close()


@pytest.mark.parametrize("body, field, shown, hidden", [
    ({"job": {**MINI, "prompt": ""}}, "prompt", "prompt: nothing to aim at: give a prompt (or 'image prompt')",
     "--image-prompt"),
    ({"job": {**MINI, "prompt": "x", "cutouts": {"n": "many"}}}, "cutouts.n", "number of cutouts: ", "cutouts.n"),
    ({"job": {**MINI, "prompt": "x", "steps": -1}}, "steps", "steps: must be >= 0", "job:"),
    ({"yaml": "model: mini\nprompt: ''\n"}, "prompt", "prompt: nothing to aim at: give a prompt (or image_prompts)",
     "--image-prompt"),  # the YAML box: keys
    ({"yaml": "model: mini\nprompt: x\ncutouts: {n: many}\n"}, "cutouts.n", "cutouts.n: ", "number of"),
])
def test_errors_name_the_pages_fields_not_flags(srv, body, field, shown, hidden):
    status, answer = srv.request("POST", "/api/jobs", {**body, "check": True})
    assert status == 400 and answer["field"] == field, answer
    assert answer["error"].startswith(shown) and hidden not in answer["error"], answer


def test_every_field_of_the_form_has_a_label_in_words():
    options = form_options()
    keys = {o.key for o in walk(GenerateConfig)}
    for o in options:
        assert o["label"] and o["label"] not in keys - {"prompt", "steps", "seed", "size", "negative", "memory",
                                                       "precision", "compile"}, o
        assert "." not in o["label"] and "_" not in o["label"], o
    labels = {o["key"]: o["label"] for o in options}
    assert labels["cutouts.n"] == "number of cutouts" and labels["optimizer.lr"] == "learning rate"
    assert labels["output.save_every"] == "save every (output)"  # no label given: the key's words, then its section
    assert len(set(labels.values())) == len(labels)  # no two fields read the same
