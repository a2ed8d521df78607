"""The page shows a run's report: its listing links report.html (and a batch's batch.html) and the report's plots,
and the server serves exactly those HTML files (no other .html), every file under a policy that allows no script."""

from __future__ import annotations

import urllib.request

import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web page's server needs vqclip[ui]")
pytest.importorskip("uvicorn", reason="the web page's server needs vqclip[ui]")

from starlette.exceptions import HTTPException  # noqa: E402
from uiserver import LiveServer  # noqa: E402

from vqclip.ui.gallery import run_files, safe_file  # noqa: E402

PAGE = b"<!DOCTYPE html><html><body>report</body></html>"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    outputs = tmp_path_factory.mktemp("reports").resolve()
    run = outputs / "run"
    (run / "report").mkdir(parents=True)
    Image.new("RGB", (4, 4)).save(run / "final.png")
    for name in ("loss.png", "scores.png"):
        Image.new("RGB", (4, 4)).save(run / "report" / name)
    Image.new("RGB", (4, 4)).save(run / "other.png")
    (run / "report.html").write_bytes(PAGE)
    (run / "index.html").write_bytes(PAGE)  # any other HTML: not served
    (run / "report" / "report.html").mkdir()  # a folder of that name: nothing to serve
    (outputs / "batch").mkdir()
    (outputs / "batch" / "batch.html").write_bytes(PAGE)
    return outputs


def test_a_runs_files_list_its_report_and_plots(outputs):
    files = run_files(outputs, outputs / "run")
    assert files["report"] == "/files/run/report.html"
    assert files["plots"] == ["/files/run/report/loss.png", "/files/run/report/scores.png"]
    assert run_files(outputs, outputs / "batch")["ranking"] == "/files/batch/batch.html"
    assert "plots" not in run_files(outputs, outputs / "batch")


@pytest.mark.parametrize("name, status", [("run/report.html", None), ("batch/batch.html", None),
                                          ("run/index.html", 400), ("run/report/report.html", 400),
                                          ("run/REPORT.HTM", 400), ("run/missing/report.html", 400)])
def test_only_report_pages_are_served_as_html(outputs, name, status):
    if status is None:
        assert safe_file(outputs, name) == outputs / name
    else:
        with pytest.raises(HTTPException) as info:
            safe_file(outputs, name)
        assert info.value.status_code == status


def test_the_server_serves_a_report_with_no_script_allowed(outputs):
    server = LiveServer(outputs, device="cpu").start()
    try:
        with urllib.request.urlopen(server.url + "/files/run/report.html", timeout=30) as res:
            policy, body = res.headers["Content-Security-Policy"], res.read()
        with urllib.request.urlopen(server.url + "/files/run/report/loss.png", timeout=30) as res:
            plot_policy = res.headers["Content-Security-Policy"]
        assert body == PAGE and res.status == 200 and plot_policy == policy
        assert "script-src" not in policy and "default-src 'none'" in policy and "sandbox" in policy
        assert server.request("GET", "/files/run/index.html")[0] == 400
    finally:
        server.stop()
