"""The page's server answers within a bound: a job whose check runs away is killed at the time limit and refused in
one line while the server goes on, and `vqclip ui` stops at the first Ctrl-C, with a page watching a run and a
runaway check in flight, without a traceback, its run stopped as Ctrl-C stops a CLI run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")

from uiserver import LiveServer  # noqa: E402

from vqclip.errors import VqclipError  # noqa: E402
from vqclip.files.images import read_metadata  # noqa: E402
from vqclip.ui.bounded import Checker  # noqa: E402
from vqclip.ui.jobs import Uploads, check_job  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MINI = {"model": "mini", "prompt": "a red circle", "size": [32, 32], "steps": 3, "candidates": {"n": 1},
        "cutouts": {"n": 4}}
RUNAWAY = {**MINI, "n": 10**8}  # planning 10^8 images runs for minutes: a check that must be cut off


@pytest.fixture(scope="module")
def quick():
    """Checking processes with a 1 s limit (shared by the module's servers), killed at the end."""
    checker = Checker(seconds=1.0, at_once=1, wait=0.2)
    yield checker
    checker.close()


@pytest.fixture
def srv(tmp_path, quick):
    server = LiveServer(tmp_path / "outputs", device="cpu", checker=quick).start()
    try:
        yield server
    finally:
        server.stop()


def timed(srv, body) -> tuple[float, int, dict]:
    t0 = time.monotonic()
    status, answer = srv.request("POST", "/api/jobs", body)
    return time.monotonic() - t0, status, answer


def test_a_runaway_check_is_refused_at_the_bound_and_the_server_goes_on(srv):
    took, status, answer = timed(srv, {"job": RUNAWAY, "check": True})
    assert status == 400 and took < 6, (took, answer)
    assert answer["error"].startswith("checking it took over 1 s") and "\n" not in answer["error"]
    assert timed(srv, {"job": MINI, "check": True})[1:] == (200, {"ok": True})  # a new checking process answers
    status, answer = srv.request("POST", "/api/jobs", {"job": {**MINI, "steps": -1}})  # errors still name the key
    assert status == 400 and answer["field"] == "steps"
    assert srv.queue.jobs() == []


def test_a_run_whose_job_yaml_expands_without_end_is_answered_within_the_bound(srv):
    folder = srv.outputs / "20260101-000000-bomb"
    folder.mkdir()
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"] + [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]"
                                                  for p, c in zip("abcdefgh", "bcdefghi")]
    (folder / "job.yaml").write_text("\n".join(lines) + "\nprompt: x\nmodel: mini\n")  # 9^9 leaves, 300 bytes
    t0 = time.monotonic()
    status, answer = srv.request("GET", f"/api/runs/{folder.name}")
    assert status == 400 and time.monotonic() - t0 < 6, answer
    assert srv.request("GET", "/api/runs")[0] == 200  # the gallery lists it as it is


def test_checks_beyond_the_slots_are_answered_busy_not_queued_without_end(srv, quick):
    answers = []
    runaway = {"yaml": "prompt: x\nmodel: mini\nn: 100000000\n", "check": True}  # the YAML box's, this time
    first = threading.Thread(target=lambda: answers.append(timed(srv, runaway)))
    first.start()
    deadline = time.monotonic() + 30
    while not quick.running:  # the first holds the only slot
        assert time.monotonic() < deadline and first.is_alive()
        time.sleep(0.01)
    took, status, answer = timed(srv, {"job": MINI, "check": True})
    first.join()
    assert status == 503 and "busy" in answer["error"] and took < 6
    assert answers[0][1] == 400 and "took over 1 s" in answers[0][2]["error"]


def test_json_nested_past_the_parser_is_refused_in_one_line(srv):
    status, answer = srv.request("POST", "/api/jobs", data=b"[" * 100_000, headers={"Content-Type": "application/json"})
    assert status == 400 and "nested too deeply" in answer["error"]


def test_the_checking_process_sees_the_callers_environment_and_folder(tmp_path, monkeypatch, quick):
    quick.run("job", os.getcwd)  # a checking process started here, kept for the checks below
    (tmp_path / "job").mkdir()
    monkeypatch.chdir(tmp_path / "job")
    monkeypatch.setenv("VQCLIP_HOME", str(tmp_path / "elsewhere"))
    assert quick.run("job", os.getcwd) == (str(tmp_path / "job"), [])
    assert quick.run("job", os.getenv, "VQCLIP_HOME")[0] == str(tmp_path / "elsewhere")
    (tmp_path / "up").mkdir()
    missing = {"job": {**MINI, "init": {"image": "upload:" + "0" * 32}}}
    with pytest.raises(VqclipError, match="^upload:0{32}: no such upload"):
        quick.run("job", check_job, missing, Uploads(tmp_path / "up"), False, None)


@pytest.mark.slow
def test_vqclip_ui_stops_at_the_first_ctrl_c_with_a_page_watching_and_a_check_running(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "vqclip", "ui", "--outputs", str(tmp_path / "out")], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    try:
        url = proc.stdout.readline().split("http://")[1].split("/")[0]
        base = f"http://{url}"

        def post(body):
            req = urllib.request.Request(base + "/api/jobs", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req, timeout=120) as res:
                    return json.loads(res.read())
            except urllib.error.HTTPError as exc:
                return json.loads(exc.read())
            except OSError as exc:  # the server went before answering
                return {"error": str(exc)}

        job = post({"job": {**MINI, "steps": 100_000}})
        deadline = time.monotonic() + 120
        while not any(j["step"] >= 1 for j in json.loads(urllib.request.urlopen(base + "/api/jobs").read())):
            assert time.monotonic() < deadline and proc.poll() is None, "the run did not start"
            time.sleep(0.2)
        events, checks = [], []
        watcher = threading.Thread(target=lambda: events.extend(urllib.request.urlopen(
            f"{base}/api/jobs/{job['id']}/events", timeout=120)))
        checker = threading.Thread(target=lambda: checks.append(post({"job": RUNAWAY, "check": True})))
        watcher.start()
        checker.start()
        time.sleep(1.0)  # the page is watching, the runaway check is running
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    watcher.join(10)
    checker.join(10)
    assert "Traceback" not in out and "ERROR" not in out, out
    # the old server never stopped while a check ran; 30 s allows for torch's teardown on a busy machine (~1 s idle)
    assert proc.returncode == 130 and took < 30, (proc.returncode, took, out)
    assert not watcher.is_alive() and events and not checker.is_alive()
    [folder] = [p for p in (tmp_path / "out").iterdir() if p.is_dir() and not p.name.startswith(".")]
    meta = read_metadata(folder / "final.png")  # stopped as Ctrl-C stops a CLI run: the image and its state kept
    assert meta["stopped"] is True and meta["steps_done"] >= 1 and (folder / "state.pt").is_file()
