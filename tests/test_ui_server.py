"""`vqclip ui`'s server through its own HTTP API on a real uvicorn (127.0.0.1, a free port): the queue runs one job at
a time in order, cancel and stop keep to their promises, and hostile requests are refused with a clear message while
the server stays up."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")

from uiserver import LiveServer  # noqa: E402

from vqclip.files.images import read_metadata  # noqa: E402
from vqclip.nets.load import ModelCache  # noqa: E402

MINI = {"model": "mini", "size": [32, 32], "steps": 3, "candidates": {"n": 1}, "cutouts": {"n": 4},
        "output": {"save_every": 1}}


@pytest.fixture(scope="module")
def cache():
    return ModelCache()


@pytest.fixture
def tiny_server(tmp_path, tiny_job, cache):
    """A server that may run jobs naming the tiny model files (the test hook `allow_paths`)."""
    srv = LiveServer(tmp_path / "outputs", device="cpu", cache=cache, allow_paths=True).start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def page_server(tmp_path, cache):
    """A server as `vqclip ui` serves it: presets and uploads only; uploads capped at 64 KB."""
    srv = LiveServer(tmp_path / "outputs", device="cpu", cache=cache, max_upload=64 << 10).start()
    try:
        yield srv
    finally:
        srv.stop()


def tiny(tiny_job, **keys) -> dict:
    job = json.loads(json.dumps(tiny_job))
    job.update({"prompt": "a red circle", "steps": 3, "output": {"progress": False, "save_every": 1}}, **keys)
    return job


def run_folders(outputs: Path) -> list[Path]:
    return sorted(p for p in outputs.iterdir() if p.is_dir() and not p.name.startswith("."))


def wait_for(check, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def png_bytes(size=(16, 16), color=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_eight_submissions_at_once_all_finish_in_order_one_at_a_time(tiny_server, tiny_job):
    barrier, answers = threading.Barrier(8), [None] * 8

    def submit(i):
        barrier.wait()
        answers[i] = tiny_server.request("POST", "/api/jobs", {"job": tiny(tiny_job, seed=100 + i, prompt=f"job {i}")})

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(status == 200 for status, _ in answers), answers
    ids = [body["id"] for _, body in answers]
    assert len(set(ids)) == 8
    ended = [tiny_server.wait(i) for i in ids]
    assert [j["state"] for j in ended] == ["done"] * 8
    jobs = sorted(ended, key=lambda j: j["submitted"])
    for before, after in zip(jobs, jobs[1:]):  # started in submission order, never two at once
        assert before["ended"] <= after["started"]
    dirs = [tiny_server.outputs / j["dir"] for j in ended]
    assert len(set(dirs)) == 8 and set(dirs) == set(run_folders(tiny_server.outputs))
    for i, folder in enumerate(dirs):  # each folder holds its own job, complete
        meta = read_metadata(folder / "final.png")
        assert (meta["prompt"], meta["seed"], meta["steps_done"]) == (f"job {i}", 100 + i, 3)
        assert len(list((folder / "frames").glob("*.png"))) == 4 and (folder / "progress.mp4").is_file()
        assert (folder / "job.yaml").is_file() and (folder / "state.pt").is_file()


def test_cancel_of_a_queued_job_leaves_no_folder_and_stop_keeps_the_run(tiny_server, tiny_job):
    _, first = tiny_server.request("POST", "/api/jobs", {"job": tiny(tiny_job, steps=100000, prompt="long")})
    _, second = tiny_server.request("POST", "/api/jobs", {"job": tiny(tiny_job, prompt="cancelled")})
    assert second["state"] == "queued" and second["position"] == 1
    job = tiny_server.queue.get(first["id"])
    wait_for(lambda: job.step >= 4)
    status, cancelled = tiny_server.request("DELETE", f"/api/jobs/{second['id']}")
    assert status == 200 and cancelled["state"] == "cancelled"
    status, stopping = tiny_server.request("DELETE", f"/api/jobs/{first['id']}")
    assert status == 200
    stopped = tiny_server.wait(first["id"])
    assert stopped["state"] == "stopped"
    assert tiny_server.wait(second["id"])["dir"] is None
    [folder] = run_folders(tiny_server.outputs)  # the stopped run's, and none for the cancelled job
    assert folder.name == stopped["dir"] and "cancelled" not in folder.name
    meta = read_metadata(folder / "final.png")
    assert meta["stopped"] is True and 4 <= meta["steps_done"] < 100000
    assert len(list((folder / "frames").glob("*.png"))) >= 4 and (folder / "progress.mp4").is_file()
    assert tiny_server.request("DELETE", "/api/jobs/nope")[0] == 404


def test_events_stream_progress_previews_and_the_files_on_the_mini_preset(page_server):
    status, job = page_server.request("POST", "/api/jobs", {"job": {**MINI, "prompt": "a red circle", "seed": 5}})
    assert status == 200, job
    events = []
    with urllib.request.urlopen(f"{page_server.url}/api/jobs/{job['id']}/events", timeout=60) as res:
        assert res.headers["Content-Type"].startswith("text/event-stream")
        for line in res:
            if line.startswith(b"data: "):
                events.append(json.loads(line[6:]))
    assert events[-1]["state"] == "done" and events[-1]["step"] == 3 and events[-1]["total"] == 3
    previews = [e["preview"] for e in events if "preview" in e]
    assert previews and all(p.startswith("data:image/png;base64,") for p in previews)
    curve = [x for e in events for x in e["curve"]]
    assert len(curve) == 3 and all(isinstance(x, float) for x in curve)
    files = events[-1]["files"]
    folder = page_server.outputs / files["name"]
    assert read_metadata(folder / "final.png")["seed"] == 5
    with urllib.request.urlopen(page_server.url + files["final"]) as res:  # served, byte for byte
        assert res.read() == (folder / "final.png").read_bytes()
    status, runs = page_server.request("GET", "/api/runs")
    assert [r["name"] for r in runs] == [files["name"]] and runs[0]["seed"] == 5 and runs[0]["steps"] == 3
    status, again = page_server.request("GET", f"/api/runs/{files['name']}")  # "edit and run again"
    assert status == 200 and again["job"]["prompt"] == "a red circle" and again["job"]["seed"] == 5
    assert "vqgan" not in again["job"] and "clip" not in again["job"]  # the preset's, not files
    status, rerun = page_server.request("POST", "/api/jobs", {"job": again["job"]})
    assert status == 200, rerun
    done = page_server.wait(rerun["id"])
    assert done["state"] == "done" and done["dir"] != files["name"]
    assert read_metadata(page_server.outputs / done["dir"] / "final.png")["seed"] == 5


def alive(srv) -> bool:
    return srv.request("GET", "/api/presets")[0] == 200


@pytest.mark.parametrize("path, status, message", [
    ("/files/..%2F..%2F..%2Fetc%2Fpasswd", 400, "not a path inside the outputs folder"),
    ("/files/../../etc/passwd", 400, "not a path inside the outputs folder"),
    ("/files/%2Fetc%2Fpasswd", 400, "not a path inside the outputs folder"),
    ("/files/run/x%00.png", 400, "not a path inside the outputs folder"),
    ("/files/link.png", 400, "leads out of the outputs folder"),
    ("/files/linkdir/secret.png", 400, "leads out of the outputs folder"),
    ("/files/run/state.pt", 400, "only images, videos and job files are served"),
    ("/files/run/missing.png", 404, "no such file"),
    ("/api/runs/..%2F..", 400, "not a path inside the outputs folder"),
    ("/api/runs/linkdir", 400, "leads out of the outputs folder"),
])
def test_file_urls_outside_the_outputs_folder_are_refused(page_server, tmp_path, path, status, message):
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.png").write_bytes(png_bytes())
    (page_server.outputs / "run").mkdir()
    (page_server.outputs / "run" / "state.pt").write_bytes(b"x")
    os.symlink(outside / "secret.png", page_server.outputs / "link.png")
    os.symlink(outside, page_server.outputs / "linkdir")
    got, body = page_server.request("GET", path)
    assert got == status and message in body["error"], body
    assert alive(page_server)


def test_uploads_are_capped_checked_and_used_only_by_id(page_server):
    status, body = page_server.upload(os.urandom(65 << 10) + b"x", "big.png")
    assert status == 413 and body["error"] == "upload: big.png is over the 64 KB limit; upload a smaller image"
    status, body = page_server.upload(b"#!/bin/sh\necho not an image\n", "evil.png")
    assert status == 400 and "not an image" in body["error"]
    status, up = page_server.upload(png_bytes(), "red.png")
    assert status == 200 and up["id"].startswith("upload:") and (up["width"], up["height"]) == (16, 16)
    stored = page_server.outputs / up["url"].removeprefix("/files/")
    assert Image.open(stored).getpixel((0, 0)) == (200, 30, 30)
    ok = {**MINI, "prompt": "a red circle", "init": {"image": up["id"]}, "image_prompts": [up["id"] + ":0.5"]}
    assert page_server.request("POST", "/api/jobs", {"job": ok, "check": True}) == (200, {"ok": True})
    unknown = {**MINI, "init": {"image": "upload:" + "0" * 32}}
    status, body = page_server.request("POST", "/api/jobs", {"job": unknown})
    assert status == 400 and "no such upload" in body["error"]
    assert alive(page_server) and page_server.queue.jobs() == []


@pytest.mark.parametrize("body, field, message", [
    ({"job": {**MINI, "init": {"image": "/etc/passwd"}}}, "init.image", "only images uploaded to it"),
    ({"job": {**MINI, "image_prompts": ["/etc/passwd:1"]}}, "image_prompts", "only images uploaded to it"),
    ({"job": {**MINI, "vqgan": {"checkpoint": "/etc/passwd"}}}, "vqgan.checkpoint", "cannot name files"),
    ({"job": {**MINI, "clip": [{"model": "/etc/passwd"}]}}, "clip", "is not a model name"),
    ({"job": {**MINI, "clip": [{"model": "ViT-B-32", "pretrained": "../../w.pt"}]}}, "clip", "not a model name"),
    ({"job": {**MINI, "clip": ["/srv/clip.json"]}}, "clip", "is not a model name"),
    ({"job": {**MINI, "candidates": {"clip": [{"model": "local-dir:/srv"}]}}}, "candidates.clip", "not a model name"),
    ({"job": {**MINI, "output": {"upscale": {"model": "/srv/4x.pth"}}}}, "output.upscale.model", "not a model name"),
    ({"job": {**MINI, "guide": {"weights": "/root/x.safetensors"}}}, "guide.weights", "cannot name files"),
    ({"job": {**MINI, "output": {"dir": "/tmp/elsewhere"}}}, "output.dir", "outputs folder"),
    ({"job": {**MINI, "restyle": {"input": "/etc/passwd"}}}, "restyle.input", "cannot name files"),
    ({"job": {**MINI, "model": "../../presets"}}, "model", "not a model name"),
    ({"job": {**MINI, "sweep": {"init.image": ["/etc/passwd"]}}}, "init.image", "only images uploaded"),
    ({"job": {**MINI, "steps": -1}}, "steps", "steps: must be >= 0"),
    ({"job": {**MINI, "cutouts": {"n": "many"}}}, "cutouts.n", "number of cutouts: "),  # the field's label
    ({"job": {**MINI, "bogus": 1}}, None, "unknown key 'bogus'"),
    ({"yaml": "prompt: [unclosed"}, "yaml", "not valid YAML at line 1"),
    ({"yaml": "- a\n- b\n"}, "yaml", "a job is a mapping"),
    ({"yaml": "jobs:\n  - prompt: a\n"}, "yaml", "one job (or a sweep)"),
    ({"yaml": "prompt: x\nmodel: mini\ninit:\n  image: /etc/shadow\n"}, "init.image", "only images uploaded"),
    ({"job": "prompt: x"}, None, 'send {"job"'),
    ([1, 2], None, 'send {"job"'),
])
def test_malformed_and_path_naming_jobs_are_refused_with_one_line(page_server, body, field, message):
    status, answer = page_server.request("POST", "/api/jobs", body)
    assert status == 400 and message in answer["error"] and "\n" not in answer["error"], answer
    assert answer.get("field") == field
    assert alive(page_server) and page_server.queue.jobs() == [] and not run_folders(page_server.outputs)


def test_a_batch_from_the_page_makes_its_grid_and_is_browsed_as_one(tiny_server, tiny_job):
    status, job = tiny_server.request("POST", "/api/jobs", {"job": tiny(tiny_job, n=2, seed=7, steps=2)})
    assert status == 200 and job["batch"] is True, job
    done = tiny_server.wait(job["id"])
    assert done["state"] == "done"
    root = tiny_server.outputs / done["dir"]
    assert (root / "grid.png").is_file() and (root / "batch.yaml").is_file()
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["seed=7", "seed=8"]
    status, [batch] = tiny_server.request("GET", "/api/runs")
    assert batch["kind"] == "batch" and batch["thumb"] == f"/files/{done['dir']}/grid.png"
    assert [r["seed"] for r in batch["runs"]] == [7, 8]
    status, again = tiny_server.request("GET", "/api/runs/" + batch["runs"][1]["name"])
    assert status == 200 and again["job"]["seed"] == 8 and again["job"].get("n", 1) == 1


def test_not_json_and_oversized_bodies_are_refused(page_server):
    status, body = page_server.request("POST", "/api/jobs", data=b"{not json", headers={"Content-Type": "text/plain"})
    assert status == 400 and "not valid JSON" in body["error"]
    status, body = page_server.request("POST", "/api/jobs", {"yaml": "prompt: " + "a" * (300 << 10)})
    assert status == 413 and "KB" in body["error"]
    status, body = page_server.request("GET", "/api/nothing-here")
    assert status == 404 and "error" in body
    assert alive(page_server)


def test_options_and_presets_come_from_the_definitions(page_server):
    from vqclip.config.fields import walk
    from vqclip.config.job import GenerateConfig

    status, options = page_server.request("GET", "/api/options")
    defined = {o.key: o for o in walk(GenerateConfig)}
    assert status == 200 and {o["key"] for o in options} <= set(defined)
    for o in options:
        assert o["help"] == defined[o["key"]].help
        assert o["default"] == (list(defined[o["key"]].default) if isinstance(defined[o["key"]].default, tuple)
                                else defined[o["key"]].default)
    keys = {o["key"] for o in options}
    assert {"prompt", "steps", "cutouts.n", "optimizer.lr", "animation.zoom"} <= keys
    assert not keys & {"output.dir", "vqgan.checkpoint", "guide.weights", "restyle.input"}
    status, presets = page_server.request("GET", "/api/presets")
    names = {p["name"]: p for p in presets["presets"]}
    assert presets["default"] == "mini" and names["mini"]["state"] == "built-in"  # an empty home: offline, mini
    assert names["imagenet-16384"]["state"] == "downloadable"


def test_cli_ui_without_the_extra_says_what_to_install(monkeypatch, capsys):
    import sys

    from vqclip.cli import main

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    assert main(["ui"]) == 2
    assert "pip install 'vqclip[ui]'" in capsys.readouterr().err


def test_cli_ui_warns_off_loopback_and_prints_the_url(monkeypatch, capsys, tmp_path):
    import uvicorn

    from vqclip.cli import main
    from vqclip.cli.ui import loopback

    served = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: served.append(sockets[0].getsockname()))
    assert main(["ui", "--outputs", str(tmp_path / "o"), "--host", "127.0.0.1"]) == 0
    out = capsys.readouterr()
    assert f"http://127.0.0.1:{served[0][1]}/" in out.out and "warning" not in out.err
    assert main(["ui", "--outputs", str(tmp_path / "o"), "--host", "0.0.0.0"]) == 0
    assert "anyone who can reach this machine" in capsys.readouterr().err
    assert loopback("::1") and loopback("localhost") and not loopback("192.168.1.2")
    assert main(["ui", "--port", "70000"]) == 2


def test_one_queue_per_physical_device(monkeypatch):
    import torch

    from vqclip.runs.queue import device_key

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert device_key(torch.device("cuda")) == device_key(torch.device("cuda:0")) == "cuda:0"
    assert device_key(torch.device("cuda:1")) == "cuda:1" and device_key(torch.device("cpu")) == "cpu"


def test_edit_and_run_again_keeps_uploads_and_drops_other_files(page_server, tiny_server, tiny_job, tmp_path):
    _, up = page_server.upload(png_bytes(), "red.png")
    _, job = page_server.request("POST", "/api/jobs", {"job": {**MINI, "prompt": "a red circle",
                                                             "init": {"image": up["id"]}}})
    name = page_server.wait(job["id"])["dir"]
    _, again = page_server.request("GET", f"/api/runs/{name}")
    assert again["job"]["init"]["image"] == up["id"] and again["dropped"] == []
    assert page_server.request("POST", "/api/jobs", {"job": again["job"], "check": True}) == (200, {"ok": True})
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_bytes(png_bytes())
    _, job = tiny_server.request("POST", "/api/jobs", {"job": tiny(tiny_job, init={"image": str(elsewhere)})})
    name = tiny_server.wait(job["id"])["dir"]
    _, again = tiny_server.request("GET", f"/api/runs/{name}")
    assert again["dropped"] == ["init.image"] and "image" not in again["job"].get("init", {})
