"""Steering negatives, image prompts, the guide weight and the edit mask (vqclip/optim/steer.py): each holds from its
step on, rebuilds the objective there, is recorded in job.yaml, and the recorded job replays (and resumes) the steered
run bit for bit; bad values are one-line errors, in a live steer and in a job's `steer:` list; best of n takes its
steers after the pick."""

from __future__ import annotations

import re
import shutil
import threading
from dataclasses import replace

import numpy as np
import pytest
import yaml
from PIL import Image

from test_guide import write_guide
from vqclip.cli import main
from vqclip.config import GenerateConfig, SteerEntry
from vqclip.errors import VqclipError
from vqclip.modes.bestofn import trial_steps
from vqclip.optim.steer import Steered, Steering, job_at
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.runs.resume import resume_run

RED, YELLOW = "a red circle on a blue background", "a yellow circle on a blue background"


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """An init image, an image prompt, a mask (left half kept), an all-black mask, a text file and a tiny guide."""
    root = tmp_path_factory.mktemp("keys")
    rng = np.random.default_rng(0)
    for name in ("init", "target"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / f"{name}.png")
    mask = np.zeros((32, 32), np.uint8)
    mask[:, 16:] = 255
    Image.fromarray(mask).save(root / "mask.png")
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(root / "black.png")
    (root / "notes.txt").write_text("not an image")
    model, weights, _ = write_guide(root / "guide")
    return {"root": root, "init": root / "init.png", "target": root / "target.png", "mask": root / "mask.png",
            "black": root / "black.png", "text": root / "notes.txt", "guide": (model, weights)}


def job(tiny_job, files, out, **over) -> dict:
    """A 10-step tiny edit-ready run (an init image, a guide, a negative) saving its state every 4 steps."""
    model, weights = files["guide"]
    return {**tiny_job, "prompt": RED, "steps": 10, "seed": 3, "state_every": 4, "negative": ["a green square"],
            "init": {"image": str(files["init"]), "mask_feather": 0},
            "guide": {"model": str(model), "weights": str(weights), "weight": 0.1},
            "output": {"dir": str(out), "progress": False, "video": False, "save_every": 0}, **over}


class Wheel:
    """Steers each key after a step of its own (so it takes effect at the next): negatives after 0, image prompts
    after 2, the guide weight after 4, the mask after 5; copies the folder at step 8 as a SIGKILL would leave it;
    keeps each step's loss terms."""

    def __init__(self, steering: Steering, files: dict, copy: tuple):
        self.steering, self.files, self.copy, self.losses = steering, files, copy, []

    def __call__(self, event) -> None:
        self.losses.append({k: float(v) for k, v in event.losses.items()})
        change = {0: {"negative": ["a blue square", "a yellow circle:-0.5"]},
                  2: {"images": [f"{self.files['target']}:0.5"]}, 4: {"guide_weight": 2.0},
                  5: {"mask": str(self.files["mask"])}}.get(event.step)
        if change:
            self.steering.steer(**change)
        if event.step == 8:  # state.pt of step 8, after all four steers; no final.png yet
            shutil.copytree(*self.copy)


@pytest.fixture(scope="module")
def steered(tiny_job, files):
    """The live run steered on all four keys, its job.yaml replayed by `vqclip run`, and the unsteered run."""
    root = files["root"]
    steering = Steering()
    wheel = Wheel(steering, files, (root / "live", root / "killed"))
    live = run_job(build_config(job(tiny_job, files, root / "live")), steering=steering, extra_callbacks=[wheel])
    recorded = yaml.safe_load((live.dir / "job.yaml").read_text())
    recorded["output"]["dir"] = str(root / "replay")
    (root / "replay.yaml").write_text(yaml.safe_dump(recorded))
    assert main(["run", str(root / "replay.yaml")]) == 0
    plain = run_job(build_config(job(tiny_job, files, root / "plain")))
    return {"live": live, "replay": root / "replay", "plain": plain, "steering": steering, "wheel": wheel,
            "root": root}


WANT = [{"at": 1, "negative": ["a blue square", "a yellow circle:-0.5"]}, {"at": 3, "images": ["TARGET:0.5"]},
        {"at": 5, "guide_weight": 2.0}, {"at": 6, "mask": "MASK"}]


def wanted(files) -> list[dict]:
    out = [dict(e) for e in WANT]
    out[1]["images"], out[3]["mask"] = [f"{files['target']}:0.5"], str(files["mask"])
    return out


def test_each_key_is_recorded_at_the_step_it_took_effect(steered, files):
    assert steered["steering"].entries == wanted(files)
    recorded = yaml.safe_load((steered["live"].dir / "job.yaml").read_text())["steer"]
    assert [{k: v for k, v in e.items() if v not in (None, "")} for e in recorded] == wanted(files)


def test_vqclip_run_of_the_recorded_job_replays_all_four_bit_for_bit(steered):
    assert np.array_equal(pixels(steered["replay"] / "final.png"), pixels(steered["live"].final))
    assert not np.array_equal(pixels(steered["plain"].final), pixels(steered["live"].final))


def test_the_run_is_the_plain_one_until_the_first_steer(steered):
    live, plain = steered["live"].result.losses, steered["plain"].result.losses
    assert live[:1] == plain[:1] and live[1] != plain[1]


def test_the_guide_weight_scales_the_guide_term_from_its_step(steered):
    losses = steered["wheel"].losses
    assert all("guide" in parts for parts in losses)  # the prompt names the guide's "circle"
    # the guide term is weight x cross-entropy; a cross-entropy of a 3-label guide near chance is ~ln 3 either way
    assert all(parts["guide"] < 0.5 for parts in losses[:5])  # 0.1 x CE
    assert all(parts["guide"] > 1.0 for parts in losses[5:])  # 2.0 x CE


def test_the_steered_mask_keeps_the_original_where_it_is_black(steered, files):
    final, original = pixels(steered["live"].final), pixels(files["init"])
    assert np.array_equal(final[:, :16], original[:, :16])  # black: kept exactly
    assert not np.array_equal(final[:, 16:], original[:, 16:])
    assert not np.array_equal(pixels(steered["plain"].final)[:, :16], original[:, :16])  # unmasked, it moved


def test_a_run_killed_after_the_steers_resumes_to_the_same_image(steered):
    resumed = resume_run(steered["root"] / "killed")  # from step 8: the objective rebuilt with all four
    assert np.array_equal(pixels(resumed.final), pixels(steered["live"].final))


def test_each_key_reaches_the_objective_built_at_its_step():
    """As `Steered` builds the objective: the job as of each step, rebuilt only when one of its values changes."""
    cfg = GenerateConfig(prompt="a", negative=["n"], image_prompts=["i.png"], steer=[
        SteerEntry(1, negative=[]), SteerEntry(2, images=["j.png:0.5"]), SteerEntry(3, guide_weight=0.5),
        SteerEntry(4, mask="m.png"), SteerEntry(5, lr=0.05), SteerEntry(6, negative=["o"], prompt="b")])
    built = []
    steered = Steered(cfg, lambda job: built.append(job) or len(built))
    objective, seen = 0, []
    for step in range(8):
        objective = steered.before(step, objective)
        seen.append(objective)
    assert seen == [0, 1, 2, 3, 4, 4, 5, 5]  # step 5 changes only the lr: nothing to rebuild
    assert [(j.prompt, j.negative, j.image_prompts, j.guide.weight, j.init.mask) for j in built] == [
        ("a", [], ["i.png"], 0.1, None), ("a", [], ["j.png:0.5"], 0.1, None), ("a", [], ["j.png:0.5"], 0.5, None),
        ("a", [], ["j.png:0.5"], 0.5, "m.png"), ("b", ["o"], ["j.png:0.5"], 0.5, "m.png")]
    assert cfg.negative == ["n"] and job_at(cfg, {}) == cfg  # the job itself is left as it was


def test_a_steer_that_clears_the_negatives_replays(tiny_job, files, tmp_path):
    steering = Steering()
    live = run_job(build_config(job(tiny_job, files, tmp_path / "live", steps=4, guide={})), steering=steering,
                   extra_callbacks=[lambda e: steering.steer(negative=[]) if e.step == 1 else None])
    assert steering.entries == [{"at": 2, "negative": []}]
    recorded = yaml.safe_load((live.dir / "job.yaml").read_text())
    assert recorded["steer"][0]["negative"] == []  # cleared, not "unchanged"
    recorded["output"]["dir"] = str(tmp_path / "replay")
    assert np.array_equal(pixels(run_job(build_config(recorded)).final), pixels(live.final))
    plain = run_job(build_config(job(tiny_job, files, tmp_path / "plain", steps=4, guide={})))
    assert live.result.losses[:2] == plain.result.losses[:2] and live.result.losses[2] != plain.result.losses[2]


def live_steering(tiny_job, files, **over) -> Steering:
    """A Steering as a run of the job has it once started."""
    steering = Steering()
    steering.job = build_config(job(tiny_job, files, files["root"] / "unused", **over))
    return steering


@pytest.mark.parametrize("change, message", [
    ({"images": ["MISSING"]}, r"steer\.images\[0\]: .*no such image file"),
    ({"images": ["TEXT"]}, r"steer\.images\[0\]: .*not a readable image"),
    ({"images": "TARGET"}, r"steer\.images: expected a list"),
    ({"negative": "blurry"}, r"steer\.negative: expected a list"),
    ({"negative": ["blurry:"]}, "empty weight"), ({"negative": [" "]}, r"steer\.negative: expected a list"),
    ({"guide_weight": -0.1}, r"steer\.guide_weight: expected a weight >= 0"),
    ({"guide_weight": float("inf")}, "guide_weight"), ({"guide_weight": True}, "guide_weight"),
    ({"mask": "TEXT"}, "not a readable image"), ({"mask": "BLACK"}, r"steer\.mask: .* is all black"),
    ({"mask": "MISSING"}, r"steer\.mask: .*no such image file"), ({"mask": 3}, "expected the path"),
    ({"prompt": "blurry:-1", "negative": []}, "nothing to aim at"),
])
def test_a_bad_value_is_one_line_and_leaves_nothing_queued(tiny_job, files, change, message):
    names = {"MISSING": str(files["root"] / "nope.png"), "TEXT": str(files["text"]), "BLACK": str(files["black"]),
             "TARGET": str(files["target"])}
    change = {k: [names.get(x, x) for x in v] if isinstance(v, list) else names.get(v, v) if isinstance(v, str)
              else v for k, v in change.items()}
    steering = live_steering(tiny_job, files)
    with pytest.raises(VqclipError, match=message) as err:
        steering.steer(**change)
    assert "\n" not in str(err.value) and steering.take() == []


def test_the_guide_weight_and_the_mask_are_checked_against_the_job(tiny_job, files):
    bare = live_steering(tiny_job, files, guide={}, init={})
    with pytest.raises(VqclipError, match="no classifier guide"):
        bare.steer(guide_weight=0.5)
    with pytest.raises(VqclipError, match="has none"):
        bare.steer(mask=str(files["mask"]))
    steering = live_steering(tiny_job, files, image_prompts=[str(files["target"])])
    steering.steer(guide_weight=0.0)  # the boundary: no guidance from here
    steering.steer(prompt="blurry:-1")  # the job's image prompt still pulls
    with pytest.raises(VqclipError, match="nothing to aim at"):
        steering.steer(images=[])  # ... until the queued steers would leave nothing


@pytest.mark.parametrize("entry, message", [
    ({"at": 2, "guide_weight": -1}, r"steer\[0\]\.guide_weight"), ({"at": 2, "negative": "x"}, r"steer\[0\]\.negative"),
    ({"at": 2, "mask": str(__file__)}, r"steer\[0\]\.mask: .*not a readable image"),
    ({"at": 2, "images": ["nope.png"]}, r"steer\[0\]\.images\[0\]: .*no such image"),
])
def test_vqclip_run_of_a_bad_steer_entry_is_exit_2_and_one_line(tiny_job, files, tmp_path, capsys, entry, message):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**job(tiny_job, files, tmp_path / "x"), "steer": [entry]}))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "x").exists()


def test_a_steer_entry_inside_best_of_n_trials_is_refused_and_one_after_them_taken(tiny_job, files, tmp_path):
    cfg = build_config(job(tiny_job, files, tmp_path / "a", candidates={"n": 2, "steps": 3}, guide={}))
    assert trial_steps(cfg) == 3
    with pytest.raises(VqclipError, match=r"steer\[0\]\.at: 2 falls in best-of-n's trials \(steps 0\.\.2\)"):
        Steered(replace(cfg, steer=[SteerEntry(2, lr=0.05)]), None, None, trial_steps(cfg))
    Steered(replace(cfg, steer=[SteerEntry(3, lr=0.05)]), None, None, trial_steps(cfg))


class Held(Steering):
    """A Steering that says when the loop waits on it while paused."""

    def __init__(self):
        super().__init__()
        self.held = threading.Event()

    def wait(self) -> None:
        if self.paused:
            self.held.set()
        super().wait()


class TrialWheel:
    """During best-of-n's trials (it sees them: `trials`): after trial step 0 a new prompt and a pause, lifted by
    another thread once the loop waits; notes whether step 1 ran only after that."""

    trials = True

    def __init__(self, steering: Held):
        self.steering, self.lifted, self.order = steering, threading.Event(), []

    def __call__(self, event) -> None:
        self.order.append((event.step, event.trial, self.lifted.is_set()))
        if event.step == 0:
            self.steering.steer(prompt=YELLOW)
            self.steering.pause()
            threading.Thread(target=self.lift, daemon=True).start()

    def lift(self) -> None:
        self.steering.held.wait(10)
        self.lifted.set()
        self.steering.resume()


def test_best_of_n_takes_a_steer_sent_in_its_trials_after_the_pick_and_replays(tiny_job, files, tmp_path):
    over = {"steps": 5, "candidates": {"n": 2, "steps": 2}, "guide": {}, "init": {}, "negative": []}
    steering = Held()
    wheel = TrialWheel(steering)
    live = run_job(build_config(job(tiny_job, files, tmp_path / "live", **over)), steering=steering,
                   extra_callbacks=[wheel])
    assert steering.entries == [{"at": 2, "prompt": YELLOW}]  # the first step after the 2 trial steps
    assert wheel.order[:2] == [(0, 2, False), (1, 2, True)]  # the pause held the trials until lifted
    recorded = yaml.safe_load((live.dir / "job.yaml").read_text())
    recorded["output"]["dir"] = str(tmp_path / "replay")
    assert np.array_equal(pixels(run_job(build_config(recorded)).final), pixels(live.final))
    plain = run_job(build_config(job(tiny_job, files, tmp_path / "plain", **over)))
    assert live.result.losses[:2] == plain.result.losses[:2] and live.result.losses[2] != plain.result.losses[2]


def test_a_story_is_steered_by_its_lr_only_live_and_in_its_job(tiny_job, files):
    """A rebuilt objective would drop the story's keyframes: every key that rebuilds it is refused."""
    told = live_steering(tiny_job, files, prompt="a red circle ^ a blue square")
    for change in ({"negative": []}, {"guide_weight": 0.5}, {"prompt": RED}):
        with pytest.raises(VqclipError, match=rf"steer\.{next(iter(change))}: this run tells a story"):
            told.steer(**change)
    told.steer(lr=0.05)
    keyed = {**job(tiny_job, files, files["root"] / "unused"), "prompt": "",
             "story": [{"at": 0, "prompt": RED}, {"at": 5, "prompt": YELLOW}]}
    with pytest.raises(VqclipError, match=r"steer\[0\]\.images: this run tells a story"):
        build_config({**keyed, "steer": [{"at": 2, "images": [str(files["target"])]}]})
    assert build_config({**keyed, "steer": [{"at": 2, "lr": 0.05}]}).steer[0].lr == 0.05
