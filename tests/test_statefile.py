"""state.pt on disk: what it records of the job and a resume's refusal of a job.yaml changed since; a damaged or
hand-made state (right keys, wrong types) is one line through `vqclip resume`; the saver's cadence."""

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from vqclip.cli import main
from vqclip.config import GenerateConfig, merge_layers, to_dict
from vqclip.errors import VqclipError
from vqclip.nets.load import ModelCache
from vqclip.optim.loop import StepEvent
from vqclip.runs.callbacks import StopAfter
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job as _run_job
from vqclip.runs.statefile import StateSaver, job_changes, job_settings, load_state

# what docs/animation.md says a resume may change: the steps, where and how it runs, the folder, the progress bar
FREE = {"steps", "device", "devices", "threads", "memory", "micro_batch", "compile", "decoder_layout",
        "cudnn_benchmark", "output.dir", "output.progress",
        "init.mask",  # where the run folder's own mask.png lies (issue 37: a moved folder resumes with it)
        "branch.parent", "branch.step"}  # a branch's record of where it came from (issue 39): no pixel changes


CACHE = ModelCache()  # the tiny models, loaded once for this file's runs (they are frozen)


def run_job(cfg, **kwargs):
    return _run_job(cfg, cache=CACHE, **kwargs)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def job(tiny_job, out: Path) -> dict:
    return {**tiny_job, "prompt": "a red circle", "steps": 6, "seed": 3, "state_every": 2, "init": {"weight": 0.5},
            "output": {"dir": str(out), "progress": False, "save_every": 2, "video": False}}


@pytest.fixture(scope="module")
def runs(tiny_job, tmp_path_factory):
    """A run stopped after 3 of 6 steps (state.pt at step 3), and the uninterrupted run of the same job."""
    root = tmp_path_factory.mktemp("statefile")
    cut = run_job(build_config(job(tiny_job, root / "cut")), extra_callbacks=[StopAfter(3)])
    assert cut.interrupted and load_state(cut.dir / "state.pt")["step"] == 3
    return cut.dir, run_job(build_config(job(tiny_job, root / "whole"))).dir


@pytest.fixture
def cut(runs, tmp_path) -> Path:
    """A fresh copy of the stopped run."""
    return Path(shutil.copytree(runs[0], tmp_path / "run"))


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


def edit_job(folder: Path, **keys) -> None:
    """Set dotted keys of a run's job.yaml."""
    data = yaml.safe_load((folder / "job.yaml").read_text())
    for key, value in keys.items():
        *sections, last = key.split(".")
        node = data
        for s in sections:
            node = node[s]
        node[last] = value
    (folder / "job.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def edit_state(folder: Path, change) -> None:
    state = torch.load(folder / "state.pt", weights_only=True)
    change(state)
    torch.save(state, folder / "state.pt")


def test_the_job_settings_are_every_key_but_those_a_resume_may_change(tiny_job):
    cfg = build_config(job(tiny_job, Path("out")))
    flat = {}

    def walk(d, prefix=""):
        for k, v in d.items():
            if isinstance(v, dict) and k not in ("zoom", "rotate", "shift_x", "shift_y"):
                walk(v, f"{prefix}{k}.")
            else:
                flat[prefix + k] = v

    walk(to_dict(cfg))
    settings = job_settings(cfg)
    assert FREE <= set(flat) and not FREE & set(settings)
    assert settings == {k: (list(v) if isinstance(v, tuple) else v) for k, v in flat.items() if k not in FREE}
    assert settings["cutouts.n"] == 4 and settings["init.weight"] == 0.5 and settings["seed"] == 3
    assert settings["clip"] == [dataclasses.asdict(c) for c in cfg.clip]


def test_a_change_of_one_setting_is_that_key_and_a_free_key_is_none():
    base = merge_layers([("a", {"prompt": "x", "seed": 3})])
    recorded = job_settings(base)
    r = dataclasses.replace
    changes = {"cutouts.n": r(base, cutouts=r(base.cutouts, n=8)), "size": r(base, size=[48, 32]),
               "seed": r(base, seed=4), "state_every": r(base, state_every=3), "prompt": r(base, prompt="y"),
               "output.save_every": r(base, output=r(base.output, save_every=1)),
               "output.upscale.scale": r(base, output=r(base.output, upscale=r(base.output.upscale, scale=2))),
               "clip": r(base, clip=[r(base.clip[0], model="other.json")]),
               "animation.zoom": r(base, animation=r(base.animation, zoom="0:1.0, 4:1.1")),
               "story": merge_layers([("a", {"prompt": "x", "seed": 3, "story": [{"at": 0, "prompt": "x"}]})]),
               "optimizer.name": r(base, optimizer=r(base.optimizer, name="sgd"))}
    for key, cfg in changes.items():
        assert list(job_changes(recorded, cfg)) == [key], key
    free = r(base, steps=9, threads=2, memory="low", micro_batch=2, device="cpu", devices=["cpu", "cpu"],
             compile=True, decoder_layout="nhwc", cudnn_benchmark=True,
             output=r(base.output, dir="x", progress=False))
    assert job_changes(recorded, free) == {}


def test_a_setting_the_state_does_not_record_counts_as_its_default():
    """A key vqclip gained after the state was saved: its default is what the run had, anything else a change; a
    key vqclip no longer has is no change."""
    cfg = merge_layers([("a", {"prompt": "x", "seed": 3})])
    recorded = {k: v for k, v in job_settings(cfg).items() if k != "tv_weight"}
    assert job_changes({**recorded, "gone.key": 1}, cfg) == {}
    assert GenerateConfig().tv_weight == 0.0
    assert job_changes(recorded, merge_layers([("a", {"prompt": "x", "seed": 3, "tv_weight": 0.5})])) == {
        "tv_weight": (0.0, 0.5)}


def test_a_resume_of_a_changed_job_is_refused_naming_the_keys_and_the_fix(cut, capsys):
    def files():
        return [(p.name, p.read_bytes()) for p in sorted([*cut.iterdir(), *(cut / "frames").iterdir()])
                if p.is_file() and p.name != "job.yaml"]

    before = files()
    edit_job(cut, **{"cutouts.n": 8})
    assert main(["resume", str(cut), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert f"{cut / 'state.pt'}: was saved by a run of another job" in line
    assert "cutouts.n: 8 (the run had 4)" in line and "delete state.pt to start the run over" in line
    edit_job(cut, **{"cutouts.n": 4, "state_every": 50, "output.save_every": 1, "init.weight": 0.0})
    assert main(["resume", str(cut), "--quiet", "--steps", "8"]) == 2  # more steps are no excuse
    line = one_error_line(capsys)
    for said in ("state_every: 50 (the run had 2)", "output.save_every: 1 (the run had 2)",
                 "init.weight: 0.0 (the run had 0.5)"):
        assert said in line
    assert "cutouts.n" not in line and "steps" not in line.replace("save_every", "").replace("state_every", "")
    assert files() == before  # state.pt, final.png and the frames as they were


def test_a_resume_may_change_the_steps_the_device_and_how_it_runs(cut, capsys):
    edit_job(cut, memory="low", micro_batch=2, **{"output.progress": True})
    assert main(["resume", str(cut), "--quiet", "--steps", "7", "--threads", "1", "--device", "cpu"]) == 0
    assert load_state(cut / "state.pt")["step"] == 7
    recorded = yaml.safe_load((cut / "job.yaml").read_text())  # what it last ran with
    assert (recorded["steps"], recorded["threads"], recorded["device"]) == (7, 1, "cpu")


def test_the_settings_the_state_records_are_those_it_resumed_under(cut, runs):
    """job.yaml's settings reach state.pt: a resume changes nothing, the same run goes on and ends as the
    uninterrupted one."""
    assert main(["resume", str(cut), "--quiet"]) == 0
    assert load_state(cut / "state.pt")["job"] == load_state(runs[1] / "state.pt")["job"]
    assert np.array_equal(pixels(cut / "final.png"), pixels(runs[1] / "final.png"))


def test_a_state_from_before_the_job_was_recorded_resumes_with_a_notice(cut, runs, capsys):
    edit_state(cut, lambda s: s.pop("job"))
    assert main(["resume", str(cut)]) == 0
    assert f"note: {cut / 'state.pt'} records no job settings (saved by an older vqclip)" in capsys.readouterr().err
    assert np.array_equal(pixels(cut / "final.png"), pixels(runs[1] / "final.png"))


@pytest.mark.parametrize("legacy", [False, True])
def test_a_state_of_another_seed_is_refused(cut, capsys, legacy):
    """The state's own seed is checked whether or not it records its job (a state copied from another run of the
    same job.yaml but another seed)."""
    def change(state):
        state["seed"] = 4
        if legacy:
            state.pop("job")
    edit_state(cut, change)
    assert main(["resume", str(cut), "--quiet"]) == 2
    assert "state.pt: belongs to seed 4, job.yaml says 3" in one_error_line(capsys)


def _set(key, value):
    def change(state):
        state[key] = value(state) if callable(value) else value
    return change


def _opt(change):
    def apply(state):
        change(state["optimizer"])
    return apply


DAMAGED = {
    "step a string": (_set("step", "abc"), "step is 'abc', not a whole number"),
    "step negative": (_set("step", -1), "step is -1"),
    "step a float": (_set("step", 2.5), "step is 2.5"),
    "step a bool": (_set("step", True), "step is true"),
    "seed a string": (_set("seed", "3"), "seed is '3'"),
    "steps a string": (_set("steps", "six"), "steps is 'six'"),
    "version a string": (_set("version", "x"), "its version is 'x'"),
    "z a list": (_set("z", lambda s: s["z"].tolist()), "z is a list"),
    "z integers": (_set("z", lambda s: s["z"].long()), "z is a int64 tensor"),
    "z 3-d": (_set("z", lambda s: s["z"][0]), "not a float tensor [B,E,h,w]"),
    "z_init another shape": (_set("z_init", lambda s: s["z_init"][..., :2]), "not a float tensor of z's shape"),
    "z_init a tuple": (_set("z_init", (1, 2)), "z_init is a tuple"),
    "rng a byte short": (_set("rng", lambda s: s["rng"][:-1]), "rng is a uint8 tensor"),
    "rng floats": (_set("rng", lambda s: s["rng"].float()), "rng is a float32 tensor"),
    "torch_rng a list": (_set("torch_rng", [1, 2]), "torch_rng is a list"),
    "cuda_rng a string": (_set("cuda_rng", "x"), "cuda_rng is a str"),
    "optimizer a list": (_set("optimizer", [1]), "optimizer is a list"),
    "param_groups a dict": (_opt(lambda o: o.__setitem__("param_groups", {})), "optimizer is a dict"),
    "a param group without params": (_opt(lambda o: o["param_groups"][0].pop("params")), "optimizer is a dict"),
    "adam's moments another shape": (_opt(lambda o: o["state"][0].__setitem__("exp_avg", torch.zeros(3))),
                                     "optimizer state exp_avg is a float32 tensor [3], which does not fit z"),
    "a parameter's state a list": (_opt(lambda o: o["state"].__setitem__(0, [1])), "does not fit z"),
    "job a list": (_set("job", ["x"]), "job is a list"),
}


def test_a_state_with_the_right_keys_and_wrong_values_is_one_line(cut):
    good = torch.load(cut / "state.pt", weights_only=True)
    assert load_state(cut / "state.pt")["step"] == 3
    edit_state(cut, lambda s: s.update(step=0, seed=0, version=1))  # each limit: still a state
    assert load_state(cut / "state.pt")["seed"] == 0
    edit_state(cut, lambda s: s.update(version=2))  # the first version past this vqclip's
    with pytest.raises(VqclipError, match="written by a newer vqclip \\(state version 2\\); upgrade vqclip"):
        load_state(cut / "state.pt")
    torch.save(good, cut / "state.pt")
    for case, (change, said) in DAMAGED.items():
        edit_state(cut, change)
        with pytest.raises(VqclipError) as err:
            load_state(cut / "state.pt")
        line = str(err.value)
        assert "\n" not in line and line.startswith(f"{cut / 'state.pt'}: not a") and said in line, (case, line)
        assert line.endswith("delete it to restart the run"), (case, line)
        torch.save(good, cut / "state.pt")


@pytest.mark.parametrize("case", ["step a string", "version a string", "z a list", "z_init another shape",
                                  "rng a byte short", "optimizer a list", "adam's moments another shape"])
def test_a_damaged_state_is_one_line_and_exit_2_through_resume(cut, capsys, case):
    change, said = DAMAGED[case]
    edit_state(cut, change)
    assert main(["resume", str(cut), "--quiet"]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: {cut / 'state.pt'}: not a") and said in line, line
    assert line.endswith("delete it to restart the run")


def test_the_state_is_saved_every_state_every_updates_and_at_the_end(tiny_job, tmp_path):
    """After the update of step s the saver writes when s + 1 is a multiple of state_every; a callback of step s
    sees what was saved before it."""
    path, seen = tmp_path / "run" / "state.pt", []

    def look(event):
        seen.append(load_state(path)["step"] if path.is_file() else None)

    run = run_job(build_config({**job(tiny_job, tmp_path / "run"), "steps": 7, "state_every": 3}),
                  extra_callbacks=[look])
    assert seen == [None, None, None, 3, 3, 3, 6]
    assert load_state(run.dir / "state.pt")["step"] == 7 and load_state(run.dir / "state.pt")["steps"] == 7


def test_the_saver_saves_trial_steps_too_and_nothing_for_state_every_0(tmp_path, monkeypatch):
    import vqclip.runs.statefile as statefile

    saved = []
    monkeypatch.setattr(statefile, "save_state", lambda state, path, steps, job=None: saved.append(state.step))
    state = type("S", (), {"step": 4})()
    event = StepEvent(3, 8, 0.0)
    StateSaver(tmp_path / "s.pt", 2, 8)(state, event)
    StateSaver(tmp_path / "s.pt", 2, 8)(state, dataclasses.replace(event, trial=3))
    StateSaver(tmp_path / "s.pt", 0, 8)(state, event)
    StateSaver(tmp_path / "s.pt", 3, 8)(state, event)
    assert saved == [4, 4]  # a trial step is saved as any other: every start, so that a resume goes on


def test_a_run_whose_final_png_is_unreadable_or_says_stopped_at_its_last_step_goes_on(runs, tmp_path, capsys):
    """At its last step, a run is finished only when final.png says so: a damaged one (killed mid-write by an older
    vqclip) or a stopped one is written again; a job.yaml without a seed cannot be continued."""
    done = Path(shutil.copytree(runs[1], tmp_path / "done"))
    assert main(["resume", str(done), "--quiet"]) == 2
    assert "already finished all 6 steps" in one_error_line(capsys)
    (done / "final.png").write_bytes(b"\x89PNG half")
    assert main(["resume", str(done), "--quiet"]) == 0
    assert np.array_equal(pixels(done / "final.png"), pixels(runs[1] / "final.png"))
    capsys.readouterr()
    edit_job(done, seed=None)
    assert main(["resume", str(done), "--quiet"]) == 2
    assert "job.yaml: records no seed, so the run cannot be continued exactly" in one_error_line(capsys)
