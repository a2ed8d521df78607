"""The vocabulary notice of a steered run (vqclip/runs/pipeline.py `note_vocabulary`): a steered prompt's or
negative's words that the preset's CLIP does not know get the same one notice when the steer is taken, and a job's
`steer:` entries are noted with its own texts."""

from __future__ import annotations

import torch

from vqclip.modes.base import GenerateResult, Mode
from vqclip.optim.steer import Steered, Steering
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import generate, note_vocabulary

KNOWN = "a red circle on a blue background"


def notes(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "preset knows only" in r.getMessage()]


class Taking(Mode):
    """A mode whose loop only takes steers: step 0, then `changes` sent, then steps 1 and 2; `sent` is the notices
    there were once the steers were sent (before the loop took them)."""

    steerable = True

    def __init__(self, changes: list[dict], caplog):
        self.changes, self.caplog, self.sent = changes, caplog, None

    def run(self, ctx):
        steer = Steered(ctx.cfg, lambda job: job.prompt, ctx.steering)
        steer.before(0, None)
        for change in self.changes:
            ctx.steering.steer(**change)
        self.sent = notes(self.caplog)
        for step in (1, 2):
            steer.before(step, None)
        return GenerateResult(torch.zeros(1, 3, 2, 2), torch.zeros(1), ctx.seed, 3)


def steered_notes(caplog, changes: list[dict]) -> list[str]:
    caplog.clear()
    mode = Taking(changes, caplog)
    with caplog.at_level("INFO", logger="vqclip"):
        generate(build_config({"model": "mini", "prompt": KNOWN, "seed": 1}), None, device=torch.device("cpu"),
                 mode=mode, steering=Steering())
    assert mode.sent == []  # a steer is noted when the loop takes it
    return notes(caplog)


def test_a_steered_prompt_with_unknown_words_gets_one_notice_when_taken(caplog):
    (note,) = steered_notes(caplog, [{"prompt": "a toaster on a blue background"}])
    assert "'toaster' is not among its words" in note
    (note,) = steered_notes(caplog, [{"negative": ["a dragon", "a blue square"]}, {"lr": 0.05}])
    assert "'dragon' is not among its words" in note
    assert steered_notes(caplog, [{"prompt": "a yellow circle on a blue background"}, {"lr": 0.05}]) == []


def test_a_jobs_steer_entries_are_noted_with_its_own_texts(caplog):
    caplog.clear()
    job = {"model": "mini", "prompt": KNOWN, "steps": 10,
           "steer": [{"at": 2, "negative": ["a toaster"]}, {"at": 5, "prompt": "a green moon"}]}
    with caplog.at_level("INFO", logger="vqclip"):
        note_vocabulary(build_config(job))
    (note,) = notes(caplog)
    assert "'toaster', 'moon' are not among its words" in note
