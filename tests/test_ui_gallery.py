"""The page's view of the outputs folder with hostile contents and requests: only files that resolve inside it, of the
kinds it shows, are served, listed or read (`..` anywhere, absolute and drive paths, backslashes, symlinks leading
out or in a loop, symlinked run folders, names too long); the listing is the runs and batches newest first, and what
it skips it skips. A module-scoped server on 127.0.0.1 serves a folder laid out once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")

from uiserver import LiveServer  # noqa: E402

from vqclip.errors import VqclipError  # noqa: E402
from vqclip.ui.gallery import edit_job, list_runs  # noqa: E402


def png(path: Path, meta: dict | None = None, color=(200, 30, 30)) -> Path:
    """A small PNG, with vqclip's metadata (prompt, seed, steps, the job) when given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    info = PngImagePlugin.PngInfo()
    if meta is not None:
        info.add_text("vqclip", json.dumps({"steps_done": 3, "stopped": False, "config": {"prompt": meta["prompt"], "model": "mini"},
                                            **meta}))
    Image.new("RGB", (4, 4), color).save(path, pnginfo=info)
    return path


def run(outputs: Path, name: str, prompt: str, mtime: float | None = None) -> Path:
    folder = outputs / name
    png(folder / "final.png", {"prompt": prompt, "seed": 1})
    if mtime is not None:
        os.utime(folder, (mtime, mtime))
    return folder


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """outputs/ with a run, files of every kind, symlinks in and out, a loop; private/ beside it."""
    root = tmp_path_factory.mktemp("gallery")
    private = root / "private"
    png(private / "secret.png", {"prompt": "SECRET", "seed": 42})
    (private / "job.yaml").write_text("prompt: SECRET\nseed: 42\n")
    outputs = (root / "outputs").resolve()
    folder = run(outputs, "run", "a red circle")
    (folder / "job.yaml").write_text("prompt: a red circle\n")
    (folder / "state.pt").write_bytes(b"x")
    (folder / "progress.mp4").write_bytes(b"not checked")
    png(folder / "UPPER.PNG")
    (folder / "dir.png").mkdir()
    os.symlink("final.png", folder / "inner.png")  # inside: served as the file it names
    os.symlink(private / "secret.png", folder / "out.png")
    os.symlink("state.pt", folder / "pt.png")  # an image's name for a file the page does not show
    os.symlink("loop.png", folder / "loop.png")
    os.symlink(private, outputs / "linkrun")
    return outputs


@pytest.fixture(scope="module")
def srv(layout):
    server = LiveServer(layout, device="cpu").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("path, status, message", [
    ("/files/run/final.png", 200, "final.png"),
    ("/files/run/UPPER.PNG", 200, "UPPER.PNG"),
    ("/files/run/inner.png", 200, "final.png"),
    ("/files/run/job.yaml", 200, "job.yaml"),
    ("/files/run/progress.mp4", 200, "progress.mp4"),
    ("/files/run/out.png", 400, "leads out of the outputs folder"),
    ("/files/linkrun/secret.png", 400, "leads out of the outputs folder"),
    ("/files/linkrun/job.yaml", 400, "leads out of the outputs folder"),
    ("/files/run/pt.png", 400, "only images, videos and job files are served"),
    ("/files/run/state.pt", 400, "only images, videos and job files are served"),
    ("/files/run", 400, "only images, videos and job files are served"),
    ("/files/", 400, "only images, videos and job files are served"),
    ("/files/run/loop.png", 404, "no such file"),
    ("/files/run/dir.png", 404, "no such file"),
    ("/files/run/missing.png", 404, "no such file"),
    ("/files/run/" + "a" * 300 + ".png", 404, "no such file"),  # longer than a file name may be
    ("/files/" + "a/" * 509 + "xx.png", 404, "no such file"),  # 1024 characters: looked for
    ("/files/" + "a/" * 509 + "xxx.png", 400, "too long a path (1025 characters; at most 1024)"),
    ("/files/run%2F..%2Frun%2Ffinal.png", 400, "not a path inside the outputs folder"),  # `..` even if it stays in
    ("/files/run/..%2F..%2Fprivate%2Fsecret.png", 400, "not a path inside the outputs folder"),
    ("/files/..%5Cprivate%5Csecret.png", 400, "not a path inside the outputs folder"),
    ("/files/run%5C..%5C..%5Cprivate%5Csecret.png", 400, "not a path inside the outputs folder"),
    ("/files/C:%5Cwindows%5Cx.png", 400, "not a path inside the outputs folder"),
    ("/files/c:/x.png", 400, "not a path inside the outputs folder"),
    ("/files/%2F%2Fetc%2Fx.png", 400, "not a path inside the outputs folder"),
    ("/files/run/final.png%00.yaml", 400, "not a path inside the outputs folder"),
    ("/files/%252e%252e/private/secret.png", 404, "no such file"),  # decoded once: a name, not `..`
    ("/api/runs/run", 200, None),
    ("/api/runs/linkrun", 400, "leads out of the outputs folder"),
    ("/api/runs/run%2F..%2F..%2Fprivate", 400, "not a path inside the outputs folder"),
    ("/api/runs/run/final.png", 404, "no such run"),
    ("/api/runs/.", 404, "no such run"),
    ("/api/runs/" + "a" * 300, 404, "no such run"),
    ("/api/runs/" + "a" * 1100, 400, "too long a path"),
])
def test_only_files_inside_the_outputs_folder_of_the_shown_kinds_are_served(srv, layout, path, status, message):
    got, body = srv.request("GET", path)
    assert got == status, (path[:80], body)
    if status == 200 and path.startswith("/files/"):
        assert body == (layout / "run" / message).read_bytes()  # the file named (a symlink inside: its target)
    elif status == 200:
        assert body["job"]["prompt"] == "a red circle"
    else:
        assert message in body["error"] and "\n" not in body["error"] and len(body["error"]) < 200
    assert srv.request("GET", "/api/presets")[0] == 200  # still up


def test_the_listing_is_runs_and_batches_newest_first_and_skips_what_it_may_not_show(tmp_path):
    outputs = (tmp_path / "outputs").resolve()
    private = tmp_path / "private"
    run(private, "elsewhere", "SECRET")
    png(private / "secret.png", {"prompt": "SECRET", "seed": 42})
    (private / "job.yaml").write_text("prompt: SECRET\n")
    run(outputs, "old", "old one", mtime=1_000)
    run(outputs, "new", "new one", mtime=3_000)
    (outputs / "running").mkdir()
    (outputs / "running" / "job.yaml").write_text("prompt: still running\nseed: 5\nsteps: 9\n")
    os.utime(outputs / "running", (2_000, 2_000))
    (outputs / "damaged").mkdir()
    (outputs / "damaged" / "final.png").write_bytes(b"not a png")
    os.utime(outputs / "damaged", (500, 500))
    batch = outputs / "batch"
    png(batch / "grid.png")
    (batch / "batch.yaml").write_text("keys: [seed]\nruns:\n  - {folder: seed=1}\n  - {folder: seed=2}\n")
    run(batch, "seed=2", "member two")
    run(batch, "seed=1", "member one")
    os.symlink(private / "elsewhere", batch / "seed=3")
    os.symlink(outputs / "old", batch / "seed=4")  # a run of the folder, linked in: listed once, as itself
    (batch / "empty").mkdir()
    os.utime(batch, (2_500, 2_500))
    # what is not listed: hidden folders, files, folders with nothing to show, symlinked run folders (in or out),
    # a folder whose final.png and job.yaml are symlinks leading out
    run(outputs, ".hidden", "hidden")
    png(outputs / "loose.png", {"prompt": "loose", "seed": 1})
    (outputs / "nothing").mkdir()
    (outputs / "nothing" / "state.pt").write_bytes(b"x")
    os.symlink(private / "elsewhere", outputs / "linked-out")
    os.symlink(outputs / "new", outputs / "linked-in")
    (outputs / "leaky").mkdir()
    os.symlink(private / "secret.png", outputs / "leaky" / "final.png")
    os.symlink(private / "job.yaml", outputs / "leaky" / "job.yaml")
    os.symlink(private / "secret.png", outputs / "new" / "progress.mp4")  # a video that leads out: no video

    listed = list_runs(outputs)
    assert [r["name"] for r in listed] == ["new", "batch", "running", "old", "damaged"]
    new, batch_info, running, old, damaged = listed
    assert (new["kind"], new["prompt"], new["seed"], new["steps"], new["stopped"]) == ("run", "new one", 1, 3, False)
    assert new["thumb"] == new["final"] == "/files/new/final.png" and "video" not in new
    assert (running["prompt"], running["seed"], running["steps"], running["running"]) == ("still running", 5, 9, True)
    assert running["thumb"] is None and running["job"] == "/files/running/job.yaml"
    assert damaged["kind"] == "run" and "prompt" not in damaged  # listed, without its details
    assert batch_info["kind"] == "batch" and batch_info["thumb"] == "/files/batch/grid.png"
    assert batch_info["members"] == ["seed=1", "seed=2"] and batch_info["keys"] == ["seed"]
    assert [r["name"] for r in batch_info["runs"]] == ["batch/seed=1", "batch/seed=2"]
    assert "SECRET" not in json.dumps(listed)
    with pytest.raises(VqclipError, match="holds no job"):  # its job.yaml and final.png lead out: nothing is read
        edit_job(outputs, outputs / "leaky")


def test_a_runs_files_offer_the_visible_video_and_the_thumb_falls_back(tmp_path):
    outputs = (tmp_path / "outputs").resolve()
    folder = outputs / "zoom"
    png(folder / "latest.png")
    (folder / ".progress.tmp-1234.mp4").write_bytes(b"a write in progress")
    (folder / "zoom.gif").write_bytes(b"x")
    (folder / "zoom.mp4").write_bytes(b"x")
    (folder / "job.yaml").write_text("prompt: z\n")
    [info] = list_runs(outputs)
    assert info["video"] == "/files/zoom/zoom.gif" and info["thumb"] == "/files/zoom/latest.png"
