"""Shared fixtures: tiny models in the published formats, written once per session; CPU only, offline."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fileserver import FixtureServer  # noqa: E402
from tiny import write_clip, write_vqgan  # noqa: E402


@pytest.fixture(scope="session")
def tiny_vqgan(tmp_path_factory) -> tuple[Path, Path]:
    """(yaml, ckpt) of a tiny random taming VQModel in the Lightning 1.x layout."""
    return write_vqgan(tmp_path_factory.mktemp("vqgan"))


@pytest.fixture(scope="session")
def tiny_gumbel(tmp_path_factory) -> tuple[Path, Path]:
    """(yaml, ckpt) of a tiny random taming GumbelVQ in the Lightning 1.x layout."""
    return write_vqgan(tmp_path_factory.mktemp("gumbel"), gumbel=True)


@pytest.fixture(scope="session")
def tiny_clip(tmp_path_factory) -> tuple[Path, Path]:
    """(architecture json, safetensors weights) of a tiny random open_clip CLIP."""
    return write_clip(tmp_path_factory.mktemp("clip"))


@pytest.fixture(scope="session", autouse=True)
def _ctrl_c_delivered():
    """The Ctrl-C tests send SIGINT to this process and to the ones it starts. A suite started in the background of a
    non-interactive shell (`cmd &`, nohup) inherits SIGINT ignored, and Python then installs no KeyboardInterrupt
    handler, here or in its children (a spawned process would wait for an hour): give this process Python's own
    handler, which a started process's exec resets to the default."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models run fastest on one thread, and the suite shares 2 cores; restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def _no_run_reports():
    """The suite's runs end without report.html (its plots cost ~0.2 s a run, and the suite makes hundreds of runs);
    the report's own tests turn it back on with `run_reports`."""
    from vqclip.runs import pipeline

    real = pipeline.write_report_at_end
    pipeline.write_report_at_end = _no_report
    yield real
    pipeline.write_report_at_end = real


def _no_report(folder):
    return None


@pytest.fixture(scope="module")
def run_reports(_no_run_reports):
    """Runs of this module end with their report.html, as outside the suite."""
    from vqclip.runs import pipeline

    pipeline.write_report_at_end = _no_run_reports
    yield
    pipeline.write_report_at_end = _no_report


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """Each test gets its own VQCLIP_HOME, so nothing touches ./checkpoints or a user cache."""
    monkeypatch.setenv("VQCLIP_HOME", str(tmp_path / "vqclip-home"))


@pytest.fixture(scope="session")
def tiny_job(tiny_vqgan, tiny_clip) -> dict:
    """A job layer that points at the tiny models; small and fast on CPU."""
    return {"vqgan": {"config": str(tiny_vqgan[0]), "checkpoint": str(tiny_vqgan[1])},
            "clip": [{"model": str(tiny_clip[0]), "pretrained": str(tiny_clip[1])}],
            "size": [32, 32], "cutouts": {"n": 4}, "output": {"progress": False}}


@pytest.fixture(scope="session")
def tiny_args(tiny_vqgan, tiny_clip) -> list[str]:
    """CLI options that point `vqclip generate` at the tiny models."""
    return ["--vqgan-config", str(tiny_vqgan[0]), "--vqgan-checkpoint", str(tiny_vqgan[1]),
            "--clip-model", str(tiny_clip[0]), "--clip-pretrained", str(tiny_clip[1]),
            "--size", "32", "32", "--cutn", "4", "--quiet"]


@pytest.fixture(scope="session")
def tiny_models(tiny_vqgan, tiny_clip):
    """Loaded tiny models (shared; they are frozen)."""
    from vqclip.nets.load import Models
    from vqclip.nets.clip import load_clip
    from vqclip.nets.vqgan import load_vqgan

    return Models(load_vqgan(*tiny_vqgan), [(load_clip(str(tiny_clip[0]), str(tiny_clip[1])), 1.0)])


@pytest.fixture
def server():
    """A local fixture HTTP server, always shut down after the test."""
    srv = FixtureServer().start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def offline_hub(monkeypatch):
    """huggingface.co does not resolve (as on a machine offline), and open_clip's downloader must not be reached."""
    import socket

    from open_clip import pretrained

    resolve = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(-2, "Name or service not known")
        return resolve(host, *args, **kwargs)

    def no_download(*args, **kwargs):
        raise AssertionError("open_clip's downloader retries for about 50 s offline; it must not be called")

    for name in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(pretrained, "download_pretrained", no_download)


@pytest.fixture
def no_chosen_home(tmp_path, monkeypatch) -> dict:
    """As for a user who set no VQCLIP_HOME: run in an empty folder, the per-user cache and the Hugging Face cache
    in tmp folders, the hub offline. The folders by name: cwd, user_cache (vqclip's default home), hf (hub cache)."""
    import huggingface_hub.constants

    where = {"cwd": tmp_path / "cwd", "user_cache": tmp_path / "xdg" / "vqclip", "hf": tmp_path / "hf-cache"}
    where["cwd"].mkdir()
    monkeypatch.delenv("VQCLIP_HOME", raising=False)
    monkeypatch.chdir(where["cwd"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # platformdirs' user_cache_dir on Linux
    monkeypatch.setenv("HF_HUB_CACHE", str(where["hf"]))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, at import
    return where


FRESH = """import json, sys
def names():
    return sorted({m.split('.')[0] for m in sys.modules})
seen = {}
import vqclip
seen['first'] = names()
vqclip.Pipeline
seen['api'] = names()
import vqclip.cli, vqclip.runs.pipeline, vqclip.api
vqclip.cli.build_parser()
seen['parser'] = names()
seen['code'] = vqclip.cli.main(['run', sys.argv[1]])
seen['run'] = names()
print(json.dumps(seen))
"""


@pytest.fixture(scope="session", autouse=True)
def _fresh_process_started(request, tmp_path_factory):
    """The interpreter of `fresh_process`, started before the session's first test when one of its tests is to run:
    it runs on the CPU the suite (one torch thread) leaves idle; killed at the end if never read."""
    import yaml

    from early import selected, started

    if not selected(request, fixture="fresh_process"):
        yield None
        return
    tiny_job = request.getfixturevalue("tiny_job")
    where = tmp_path_factory.mktemp("fresh")
    job = where / "job.yaml"
    job.write_text(yaml.safe_dump({**tiny_job, "prompt": "a red circle", "steps": 1, "output": {
        "dir": str(where / "out"), "video": False, "progress": False}}))
    with started([sys.executable, "-c", FRESH, str(job)], where / "vqclip-home") as proc:
        yield proc


@pytest.fixture(scope="session")
def fresh_process(_fresh_process_started) -> dict:
    """The top-level modules a fresh interpreter holds at each point of a user's way in: 'first' after `import
    vqclip`, 'api' after touching vqclip.Pipeline, 'parser' after importing the CLI, the pipeline and the API and
    building the parser, 'run' after `vqclip run` of a 1-step tiny job ('code': its exit code). One process (~4 s,
    started before the first test) shared by the tests of lazy and optional imports instead of one each."""
    import json

    out, err = _fresh_process_started.communicate(timeout=300)
    assert _fresh_process_started.returncode == 0, err[-2000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def steered_edit_on_two_devices(tiny_job, tmp_path_factory):
    """A masked edit (VQGAN) whose prompt pulls in regions, steered by its job's entries (the prompt at step 1, the lr
    and a negative at 2), 3 steps on two gloo processes ('two') and on one device scoring the cutouts half at a time
    ('halves'); 'photo' [32,32,3] is the edited image. One spawned run (~4 s) read by the tests of edits and of steer
    entries across devices (tests/test_draw_devices.py, tests/test_steer_devices.py) instead of one each."""
    from types import SimpleNamespace

    import numpy as np
    from PIL import Image

    from vqclip.runs.jobs import build_config
    from vqclip.runs.pipeline import run_job

    where = tmp_path_factory.mktemp("steered-edit")
    photo = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 4:20] = 255
    Image.fromarray(photo).save(where / "photo.png")
    Image.fromarray(mask).save(where / "mask.png")
    job = {**tiny_job, "prompt": "a red circle:1@left|a blue square:1@right", "seed": 1, "steps": 3, "threads": 1,
           "init": {"image": str(where / "photo.png"), "mask": str(where / "mask.png"), "mask_feather": 2},
           "steer": [{"at": 1, "prompt": "a yellow circle"}, {"at": 2, "lr": 0.05, "negative": ["a blue square"]}]}
    runs = {"photo": photo}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("VQCLIP_HOME", str(where / "vqclip-home"))
        for name, over in (("two", {"devices": ["cpu", "cpu"]}),
                           ("halves", {"devices": [], "micro_batch": tiny_job["cutouts"]["n"] // 2})):
            output = {"dir": str(where / name), "video": False, "progress": False}
            runs[name] = run_job(build_config(base=[("job", {**job, **over, "output": output})]))
    return SimpleNamespace(**runs)
