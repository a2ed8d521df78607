"""The Python API (`vqclip.Pipeline`): it drives the same run path as the command line, so the same job gives the same
pixels; calls take any job key as a keyword, streams yield live events and can be stopped, runs write run folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import vqclip
from vqclip.cli import main
from vqclip.errors import VqclipError

STORY = {"prompt": "a red cat ^ a blue dog", "change_every": 3, "steps": 6, "seed": 5}
ZOOM = {"prompt": "a tunnel", "steps": 6, "seed": 6, "animation": {"mode": "zoom", "every": 2, "zoom": 1.2,
                                                                    "rotate": 4}}
BEST_OF = {"prompt": "a red circle", "steps": 6, "seed": 7, "candidates": {"n": 3, "steps": 3, "views": 4}}


@pytest.fixture(scope="module")
def pipe(tiny_vqgan, tiny_clip):
    return vqclip.Pipeline.from_files(*tiny_vqgan, clip={"model": str(tiny_clip[0]), "pretrained": str(tiny_clip[1])},
                                      device="cpu")


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else Image.open(image).convert("RGB"))


@pytest.mark.parametrize("job", [STORY, ZOOM, BEST_OF], ids=["story", "zoom", "best-of-n"])
def test_the_cli_and_the_pipeline_give_the_same_pixels(job, pipe, tiny_job, tmp_path):
    """`vqclip run JOB.yaml` and `Pipeline(...)` / `Pipeline.run(...)` on the same job, same seed, CPU."""
    files = {k: v for k, v in tiny_job.items() if k != "output"}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump({**files, **job, "output": {"dir": str(tmp_path / "cli")}}))
    assert main(["run", str(tmp_path / "job.yaml"), "--quiet"]) == 0
    cli = pixels(tmp_path / "cli" / "final.png")
    out = pipe(**{**job, "size": tiny_job["size"], "cutouts": tiny_job["cutouts"]})
    assert np.array_equal(pixels(out.images[0]), cli)
    run = pipe.run({**job, "size": tiny_job["size"], "cutouts": tiny_job["cutouts"]}, out=tmp_path / "api")
    assert np.array_equal(pixels(run.final), cli) and (run.dir / "job.yaml").is_file()
    assert sorted(p.name for p in (tmp_path / "api" / "frames").iterdir()) == \
        sorted(p.name for p in (tmp_path / "cli" / "frames").iterdir())


def test_generate_on_the_command_line_and_a_call_agree(pipe, tiny_args, tmp_path):
    assert main(["generate", "a blue square", *tiny_args, "--steps", "4", "--seed", "9", "--out",
                 str(tmp_path / "run")]) == 0
    out = pipe("a blue square", steps=4, seed=9, size=[32, 32], cutouts={"n": 4})
    assert np.array_equal(pixels(out.images[0]), pixels(tmp_path / "run" / "final.png"))
    assert out.seed == 9 and out.steps == 4 and len(out.losses) == 4 and not out.stopped
    assert tuple(out.latents.shape[-2:]) == (8, 8) and out.config.steps == 4  # 32 / the tiny VQGAN's factor 4


def test_a_call_takes_job_keys_draws_a_seed_and_refuses_bad_ones(pipe):
    out = pipe("a red circle", steps=2, size=32, cutouts={"n": 2}, optimizer={"lr": 0.3})
    assert out.config.optimizer.lr == 0.3 and out.config.size == [32, 32] and isinstance(out.seed, int)
    assert pipe("a red circle", steps=2, size=32, seed=out.seed, cutouts={"n": 2},
                optimizer={"lr": 0.3}).images[0].tobytes() == out.images[0].tobytes()
    with pytest.raises(VqclipError, match="unknown key 'stepz'; did you mean 'steps'"):
        pipe("x", stepz=3)
    with pytest.raises(VqclipError, match="nothing to aim at"):
        pipe("x:-1", steps=1)
    assert out._repr_png_().startswith(b"\x89PNG")  # notebooks show it inline


def test_callbacks_see_events_and_may_stop_a_call(pipe):
    seen = []
    out = pipe("a red circle", steps=10, seed=1, size=32, cutouts={"n": 2},
               callbacks=[lambda e: seen.append((e.step, e.total)) or e.step == 3])
    assert seen == [(s, 10) for s in range(4)] and out.stopped and out.steps == 4


def test_a_stream_yields_live_events_and_stops(pipe):
    stream = pipe.stream("a red cat ^ a blue dog", steps=8, seed=3, size=32, cutouts={"n": 2})
    events = []
    for event in stream:
        events.append(event)
        assert event.preview.size == (32, 32)
        if event.step == 2:
            stream.stop()
    steps = [e.step for e in events]  # the run ends at the end of the step under way when stop() came
    assert steps in ([0, 1, 2], [0, 1, 2, 3]) and stream.result.stopped and stream.result.steps == len(steps)
    whole = pipe.stream("a red cat ^ a blue dog", steps=8, seed=3, size=32, cutouts={"n": 2})
    assert len(list(whole)) == 8 and not whole.result.stopped
    assert whole.result.images[0].tobytes() == pipe("a red cat ^ a blue dog", steps=8, seed=3, size=32,
                                                    cutouts={"n": 2}).images[0].tobytes()


def test_a_stream_raises_the_runs_error(pipe, tmp_path):
    stream = pipe.stream("x", steps=2, image_prompts=[str(tmp_path / "missing.png")])
    with pytest.raises(VqclipError, match="missing.png"):
        list(stream)


def test_a_job_file_with_several_jobs_runs_into_one_folder(pipe, tiny_job, tmp_path):
    files = {k: v for k, v in tiny_job.items() if k != "output"}
    (tmp_path / "jobs.yaml").write_text(yaml.safe_dump({**files, "steps": 2, "seed": 1, "output": {"video": False},
                                                        "jobs": [{"prompt": "a"}, {"prompt": "b"}]}))
    runs = pipe.run(tmp_path / "jobs.yaml", out=tmp_path / "out")
    assert [r.dir for r in runs] == [tmp_path / "out" / "job-1", tmp_path / "out" / "job-2"]
    assert all(r.final.is_file() and r.video is None for r in runs)


@pytest.mark.slow
def test_the_mini_preset_runs_offline_from_the_package():
    pipe = vqclip.Pipeline.from_preset("mini", device="cpu")
    out = pipe("a red circle on a blue background", steps=4, seed=1, candidates={"n": 2, "steps": 2})
    assert out.images[0].size == (64, 64) and out.config.guide.weight > 0
    assert Path(out.config.clip[0].model).parent.name == "weights"


def test_the_package_imports_the_api_on_first_use(fresh_process):
    """`import vqclip` loads no torch; vqclip.Pipeline, touched, loads the API (one fresh process, shared)."""
    assert "torch" not in fresh_process["first"] and "torch" in fresh_process["api"]
