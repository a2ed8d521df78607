"""latest.png: the newest saved frame of a run, replaced atomically (never half a PNG), in still, resumed, zoom and
restyle runs; and the Python API's results shown inline in notebooks."""

import io
import threading

import numpy as np
import pytest
from PIL import Image

import vqclip
from test_restyle import make_video, restyle_args
from vqclip.cli import main
from vqclip.runs.callbacks import StopAfter
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job
from vqclip.runs.resume import resume_run


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def last_frame(run_dir):
    return max((run_dir / "frames").glob("*.png"))


def test_latest_is_the_last_frame_after_a_run_and_after_a_resume(tiny_job, tmp_path):
    job = {**tiny_job, "prompt": "a red circle", "steps": 6, "seed": 3, "state_every": 2,
           "output": {"progress": False, "save_every": 2, "video": False, "dir": str(tmp_path / "run")}}
    run = run_job(build_config(job), extra_callbacks=[StopAfter(3)])
    assert run.interrupted and last_frame(run.dir).name == "000003.png"  # the image it stopped at is the last frame
    assert np.array_equal(pixels(run.dir / "latest.png"), pixels(run.dir / "frames" / "000003.png"))
    done = resume_run(run.dir)
    assert last_frame(done.dir).name == "000006.png"
    assert np.array_equal(pixels(done.dir / "latest.png"), pixels(last_frame(done.dir)))
    assert np.array_equal(pixels(done.dir / "latest.png"), pixels(done.final))


def test_latest_is_never_half_written(tiny_job, tmp_path):
    out = tmp_path / "run"
    seen, bad, stop = [], [], threading.Event()

    def watch():  # a file browser refreshing its thumbnail as fast as it can
        while not stop.is_set():
            try:
                with Image.open(out / "latest.png") as im:
                    im.load()
                seen.append(im.size)
            except FileNotFoundError:
                if seen:  # once there, it is replaced, never removed
                    bad.append("gone")
            except Exception as exc:  # noqa: BLE001 - a truncated PNG, whatever PIL says about it
                bad.append(repr(exc))

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        job = {**tiny_job, "prompt": "x", "steps": 30, "seed": 1,
               "output": {"progress": False, "save_every": 1, "video": False, "dir": str(out)}}
        run_job(build_config(job))
    finally:
        stop.set()
        watcher.join()
    assert seen and not bad, bad[:3]


def test_latest_follows_zoom_frames(tiny_job, tmp_path):
    job = {**tiny_job, "prompt": "x", "steps": 6, "seed": 2, "animation": {"mode": "zoom", "every": 2, "zoom": 1.1},
           "output": {"progress": False, "video": False, "dir": str(tmp_path / "zoom")}}
    run = run_job(build_config(job))
    assert last_frame(run.dir).name == "000006.png"
    assert np.array_equal(pixels(run.dir / "latest.png"), pixels(last_frame(run.dir)))


def test_latest_follows_restyled_frames(tiny_args, tmp_path):
    video = make_video(tmp_path, n=3, audio=False)
    out = tmp_path / "restyle"
    assert main(["restyle", str(video), "an oil painting", *restyle_args(tiny_args), "--no-video",
                 "--out", str(out)]) == 0
    assert last_frame(out).name == "000002.png"
    assert np.array_equal(pixels(out / "latest.png"), pixels(last_frame(out)))


def test_no_frames_no_latest(tiny_args, tmp_path):
    out = tmp_path / "run"
    assert main(["generate", "x", *tiny_args, "--steps", "2", "--save-every", "0", "--out", str(out)]) == 0
    assert (out / "final.png").is_file() and not (out / "latest.png").exists()


@pytest.fixture(scope="module")
def pipe(tiny_vqgan, tiny_clip):
    return vqclip.Pipeline.from_files(*tiny_vqgan, clip={"model": str(tiny_clip[0]), "pretrained": str(tiny_clip[1])},
                                      device="cpu")


def test_results_of_the_api_show_inline_as_their_image(pipe, tmp_path):
    out = pipe("a red circle", steps=2, size=32, cutouts={"n": 2}, seed=4)
    shown = Image.open(io.BytesIO(out._repr_png_()))
    assert shown.format == "PNG" and np.array_equal(np.asarray(shown.convert("RGB")), np.asarray(out.images[0]))
    run = pipe.run({"prompt": "a red circle", "steps": 2, "size": 32, "seed": 4, "output": {"video": False}},
                   out=tmp_path / "run")
    shown = Image.open(io.BytesIO(run._repr_png_()))
    assert np.array_equal(np.asarray(shown.convert("RGB")), pixels(run.final))
