"""The modes as plug-ins: the `mode:` key takes its choices from the registry, `auto` resolves in one place as the
job's sections imply it, each mode's checks refuse what it cannot run (both sides of each rule), a restyle reads
its whole video once per run, and its frame range makes exactly the frames of the whole run."""

from dataclasses import fields, replace

import pytest

from vqclip.config import GenerateConfig, merge_layers
from vqclip.errors import VqclipError
from vqclip.modes import registry
from vqclip.modes.restyle import Restyle
from vqclip.modes.still import Still
from vqclip.modes.zoom import Zoom
from vqclip.runs.devices import check_devices
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import mode_for, run_job

from test_restyle_frames import Folder, make_video, png


def job(**layer) -> GenerateConfig:
    return merge_layers([("t", {"prompt": "x", **layer})])


def refused(**layer) -> str:
    with pytest.raises(VqclipError) as info:
        job(**layer)
    return str(info.value)


def test_the_config_choices_are_the_registry_names_and_each_loads_its_class():
    field = next(f for f in fields(GenerateConfig) if f.name == "mode")
    assert field.metadata["choices"] == ("auto", "still", "zoom", "restyle") and field.default == "auto"
    assert [registry.load(n) for n in ("still", "zoom", "restyle")] == [Still, Zoom, Restyle]
    assert [registry.rules(n).name for n in registry.MODES] == list(registry.MODES)
    with pytest.raises(VqclipError, match=r"^mode: unknown mode 'spin'; use one of auto, still, zoom, restyle$"):
        registry.load("spin")
    assert refused(mode="spin").startswith("mode: unknown value 'spin'; use one of auto, still, zoom, restyle")


@pytest.mark.parametrize("mode, zoom, video, name", [
    ("auto", False, False, "still"), ("auto", True, False, "zoom"), ("auto", False, True, "restyle"),
    ("auto", True, True, "restyle"), (None, True, False, "zoom"), ("still", False, False, "still"),
    ("zoom", False, False, "zoom"), ("restyle", False, True, "restyle"), ("spin", False, True, "restyle"),
])
def test_auto_resolves_as_the_sections_imply_and_a_named_mode_is_taken_as_named(mode, zoom, video, name):
    assert registry.resolve(mode, zoom, video) == name


def test_every_place_reads_the_one_resolved_mode():
    """The pipeline runs it, a job of it drops a preset's best of n (a video has no start to pick), and the devices
    check names it."""
    assert type(mode_for(job())) is Still and type(mode_for(job(animation={"mode": "zoom"}))) is Zoom
    assert type(mode_for(job(mode="zoom"))) is Zoom  # `mode: zoom` alone makes a zoom video
    assert type(mode_for(job(restyle={"input": "in.mp4"}))) is Restyle
    assert build_config({"prompt": "x", "model": "mini"}).candidates.n == 6  # the preset's best of n, for a still
    assert build_config({"prompt": "x", "model": "mini", "mode": "zoom"}).candidates.n == 1
    assert build_config({"prompt": "x", "model": "mini", "mode": "still"}).candidates.n == 6
    two = {"devices": ["cpu", "cpu"], "cutouts": {"n": 2}}
    check_devices(job(**two))
    with pytest.raises(VqclipError, match="^devices: a zoom video runs on one device"):
        check_devices(job(mode="zoom", **two))
    with pytest.raises(VqclipError, match="^devices: a restyle runs on one device"):
        check_devices(job(restyle={"input": "in.mp4"}, **two))


def test_each_mode_refuses_what_it_cannot_run():
    """Both sides of each rule: still with a video section, zoom with a video to restyle, restyle without one."""
    job(mode="still"), job(mode="zoom"), job(mode="restyle", restyle={"input": "in.mp4"})
    assert refused(mode="still", animation={"mode": "zoom"}).startswith(
        "mode: still makes one image, but animation.mode: zoom asks for a video")
    assert refused(mode="still", restyle={"input": "in.mp4"}).startswith(
        "mode: still makes one image, but restyle.input asks for a video")
    assert refused(mode="zoom", restyle={"input": "in.mp4"}).startswith("mode: zoom moves an image of its own")
    assert refused(mode="restyle").startswith("mode: restyle needs the video to restyle; set restyle.input")
    job(mode="zoom", candidates={"n": 1}), job(mode="still", candidates={"n": 2})
    assert refused(mode="zoom", candidates={"n": 2}).startswith("candidates.n > 1 picks the best start")
    assert refused(mode="restyle", animation={"mode": "zoom"}, restyle={"input": "in.mp4"}).startswith(
        "restyle.input and animation.mode: zoom cannot be combined")
    job(mode="restyle", restyle={"input": "in.mp4", "blend": 0.999})
    assert refused(mode="restyle", restyle={"input": "in.mp4", "blend": 1.0}).startswith("restyle.blend: must be")
    job(restyle={"blend": 1.0})  # a still job's restyle section is not its mode's: not checked


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("in") / "in.mp4", 3)


def restyle(tiny_job, video, out, **over):
    return merge_layers([("tiny", tiny_job), ("t", {
        "prompt": "a red cat", "seed": 5, "size": [16, 16], "cutouts": {"n": 2},
        "restyle": {"input": str(video), "steps_per_frame": 1, "blend": 0.0, **over},
        "output": {"dir": str(out), "progress": False, "video": False}})])


@pytest.fixture(scope="module")
def whole(tiny_job, video, tmp_path_factory):
    """A whole 3-frame restyle run into its folder, ffmpeg's frame counts of it counted: (its job, run, counts)."""
    from vqclip.modes import rules

    counted, real = [], rules.count_frames
    cfg = restyle(tiny_job, video, tmp_path_factory.mktemp("whole") / "r")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rules, "count_frames", lambda path: counted.append(path) or real(path))
        run = run_job(cfg)
    return cfg, run, counted


def test_a_restyle_reads_its_whole_video_once_per_run(whole):
    _, run, counted = whole
    assert len(run.frames) == 3 and len(counted) == 1


def test_a_restyles_frame_range_makes_the_frames_of_the_whole_run(whole, tiny_models, tmp_path):
    """Frames [1, 3) made alone (the share a cluster worker makes) are those frames of the whole run, bit for bit,
    and no frame before the range is made or needed."""
    from vqclip.runs.pipeline import generate

    cfg, run, _ = whole
    part = Restyle(first=1)
    cfg = part.prepare(cfg, tiny_models)
    result = generate(cfg, tiny_models, frames=Folder(tmp_path / "part"), mode=part)
    assert [p.name for p in result.frames] == ["000001.png", "000002.png"] and result.steps == 2
    assert part.total(cfg) == 2 and part.frames_total == 3  # its progress counts its own frames
    for i in (1, 2):
        assert (tmp_path / "part" / f"{i:06d}.png").read_bytes() == run.frames[i].read_bytes()
    assert png(tmp_path / "part" / "000001.png").shape[-2:] == (16, 16)


def test_a_cluster_workers_share_of_a_restyle_is_those_frames_of_the_whole_run(whole):
    """A worker given frames [1, 3) of a blend-0 restyle sends back exactly those frames, as the whole run makes
    them, and the whole job's job.yaml (no frame of another share, no stand-in)."""
    from vqclip.runs.clusterwork import Task, Worker

    cfg, run, _ = whole
    made = []
    task = Task("r frames 1-2", replace(cfg, output=replace(cfg.output, dir=None)), "dest", "dest",
                frames=(1, 3), callbacks=[lambda event: made.append(event.frame)])
    back = Worker(1).run(task)
    assert sorted(set(made)) == [1, 2]  # only its share is made: no step of frame 0
    assert sorted(back["files"]) == ["frames/000001.png", "frames/000002.png", "job.yaml"]
    for i in (1, 2):
        assert back["files"][f"frames/{i:06d}.png"] == run.frames[i].read_bytes()
