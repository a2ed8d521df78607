"""report.html: written at the end of a run (and by `vqclip report RUN`), self-contained (every image a data: URI,
no script, no http(s):// anywhere), with the loss per term (steers and story keyframes marked), the judge's scores
from scores.json beside the guide's (or a line saying there are none), a strip of frames, the job and the speed; an
old run folder still gets what it has, one notice per missing part; not a run folder: one line, exit 2."""

import importlib.util
import json
import re
import shutil

import pytest
from PIL import Image

from vqclip.cli import main
from vqclip.report.page import strip_frames
from vqclip.report.plots import loss_figure, score_figure
from vqclip.report.read import read_run
from vqclip.runs.jobs import build_config
from vqclip.runs.pipeline import run_job

STEPS = 6
pytestmark = pytest.mark.usefixtures("run_reports")


def scores_file(folder, frames, best=None):
    """scores.json in the judge's format (contract 2), written by the test."""
    data = {"judge": {"model": "judge-net", "aesthetic": None}, "guides": ["guide-net"],
            "frames": [{"step": s, "file": f"frames/{s:06d}.png", "judge": j, "aesthetic": None, "guide": g}
                       for s, j, g in frames], "best": best, "stopped_by": None}
    (folder / "scores.json").write_text(json.dumps(data))
    return data


@pytest.fixture(scope="module")
def run(run_reports, tiny_job, tmp_path_factory):
    job = {**tiny_job, "prompt": "a red ball https://example.org <script>", "seed": 5, "steps": STEPS,
           "steer": [{"at": 3, "prompt": "a blue cube"}],
           "output": {"dir": str(tmp_path_factory.mktemp("report") / "run"), "progress": False, "video": False,
                      "save_every": 1}}
    return run_job(build_config(job))


def sections(text):
    return set(re.findall(r'<section id="(\w+)"', text))


def test_a_run_ends_with_its_report_and_plot(run):
    text = (run.dir / "report.html").read_text()
    assert sections(text) == {"loss", "judge", "frames", "job", "speed"}
    assert "no judge scores: run with output.judge" in text
    assert "step 3: steer: a blue cube" in text  # the steer marked on the loss curve
    assert Image.open(run.dir / "report" / "loss.png").format == "PNG"
    assert not (run.dir / "report" / "scores.png").exists()


def test_the_report_is_self_contained(run):
    text = (run.dir / "report.html").read_text()
    assert not re.search(r"https?://", text) and "<script" not in text.lower()  # the prompt's URL and tag too
    sources = re.findall(r'src="([^"]*)"', text)
    assert sources and all(s.startswith("data:image/png;base64,") for s in sources)
    assert len(sources) == 1 + 1 + min(STEPS + 1, 10)  # the loss plot, final.png, the strip of frames
    assert not re.search(r"<link|@import|url\(", text)


def test_vqclip_report_adds_the_judges_scores(run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(run.dir, folder)
    scores_file(folder, [(0, 0.1, 0.5), (3, 0.25, 0.62), (6, 0.2, 0.7)], best={"step": 3, "file": "best.png"})
    assert main(["report", str(folder)]) == 0
    text = (folder / "report.html").read_text()
    assert "no judge scores" not in text and "judge-net" in text and "best frame: step 3" in text
    judge = text[text.index('<section id="judge"'):text.index('<section id="frames"')]
    cells = re.findall(r"<tr><td>(\d+)</td><td>([\d.]+)</td><td></td><td>([\d.]+)</td></tr>", judge)
    assert cells == [("0", "0.1", "0.5"), ("3", "0.25", "0.62"), ("6", "0.2", "0.7")]
    assert Image.open(folder / "report" / "scores.png").format == "PNG"
    assert capsys.readouterr().err == ""  # nothing missing


def test_an_old_run_folder_gets_what_it_has_and_one_line_per_missing_part(run, tmp_path, capsys):
    folder = tmp_path / "old"
    shutil.copytree(run.dir, folder)
    for name in ("losses.csv", "run.json", "report.html"):
        (folder / name).unlink()
    shutil.rmtree(folder / "report")
    assert main(["report", str(folder)]) == 0
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 3 and all(line.startswith(f"note: {folder}: no ") for line in notes)
    assert "state.pt holds no loss history" in notes[0] and "output.judge" in notes[1] and "run.json" in notes[2]
    text = (folder / "report.html").read_text()
    assert sections(text) == {"loss", "judge", "frames", "job", "speed"} and "no losses recorded" in text
    assert not (folder / "report" / "loss.png").exists() and text.count("data:image/png") == 1 + min(STEPS + 1, 10)


def test_a_report_made_again_drops_a_plot_it_can_no_longer_make(run, tmp_path):
    folder = tmp_path / "run"
    shutil.copytree(run.dir, folder)
    scores_file(folder, [(0, 0.1, 0.5)])
    assert main(["report", "--quiet", str(folder)]) == 0 and (folder / "report" / "scores.png").is_file()
    (folder / "scores.json").unlink()
    assert main(["report", "--quiet", str(folder)]) == 0 and not (folder / "report" / "scores.png").exists()


@pytest.mark.parametrize("what", ["empty", "missing", "file"])
def test_a_folder_that_is_not_a_run_is_one_line_exit_2(tmp_path, capsys, what):
    target = tmp_path / "x"
    if what == "empty":
        target.mkdir()
    elif what == "file":
        target.write_text("hi")
    assert main(["report", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {target}: ") and err.count("\n") == 1 and not (tmp_path / "report.html").exists()


def test_without_matplotlib_the_run_ends_fine_with_one_note(tiny_job, tmp_path, monkeypatch, caplog):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    job = {**tiny_job, "prompt": "x", "steps": 1,
           "output": {"dir": str(tmp_path / "r"), "progress": False, "video": False}}
    with caplog.at_level("INFO", logger="vqclip"):
        done = run_job(build_config(job))
    assert done.final.is_file() and not (done.dir / "report.html").exists()
    assert [r.getMessage() for r in caplog.records if "matplotlib" in r.getMessage()] == [
        "no report.html: its plots need matplotlib; pip install 'vqclip[report]', then `vqclip report RUN` makes it"]
    assert main(["report", str(done.dir)]) == 2


def test_no_report_at_the_end_when_it_is_turned_off(tiny_job, tmp_path):
    job = {**tiny_job, "prompt": "x", "steps": 1,
           "output": {"dir": str(tmp_path / "r"), "progress": False, "video": False, "report": False}}
    done = run_job(build_config(job))
    assert (done.dir / "losses.csv").is_file() and not (done.dir / "report.html").exists()


def test_the_loss_plot_draws_each_term_and_marks_each_steer_and_keyframe():
    rows = [{"step": s, "total": 1.0 + s, "clip:a": 0.5 + s, "tv": 0.5} for s in range(4)]
    rows.append({"step": 4, "total": 9.0, "clip:a": 8.0, "tv": 0.5, "guide": 0.5})
    fig = loss_figure(["clip:a", "tv", "guide"], rows, [(1, "story: b"), (3, "steer: c")])
    lines = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in fig.axes[0].lines
             if not ln.get_label().startswith("_")}
    assert lines == {"total": ([0, 1, 2, 3, 4], [1, 2, 3, 4, 9]), "clip:a": ([0, 1, 2, 3, 4], [0.5, 1.5, 2.5, 3.5, 8]),
                     "tv": ([0, 1, 2, 3, 4], [0.5] * 5), "guide": ([4], [0.5])}
    marks = [ln.get_xdata()[0] for ln in fig.axes[0].lines if ln.get_label().startswith("_")]
    assert marks == [1, 3]
    assert [t.get_text().strip() for t in fig.axes[0].texts] == ["story: b", "steer: c"]


def test_the_score_plot_puts_the_judge_beside_the_guide():
    frames = [{"step": 0, "judge": 0.1, "aesthetic": 5.0, "guide": 0.3}, {"step": 4, "judge": 0.4, "aesthetic": None,
                                                                          "guide": 0.2}]
    fig = score_figure(frames, best=4)
    left, right = fig.axes
    data = {ln.get_label(): (list(ln.get_xdata()), list(ln.get_ydata())) for ln in left.lines + right.lines
            if not ln.get_label().startswith("_")}
    assert data == {"judge": ([0, 4], [0.1, 0.4]), "aesthetic": ([0], [5.0]), "guide": ([0, 4], [0.3, 0.2])}
    assert [ln.get_xdata()[0] for ln in left.lines if ln.get_label().startswith("_")] == [4]  # the best frame


def test_markers_are_the_jobs_story_keyframes_and_steers_by_step(tmp_path):
    (tmp_path / "job.yaml").write_text("prompt: a\nstory: [{at: 0, prompt: b}, {at: 8, prompt: c}]\n"
                                       "steer: [{at: 4, lr: 0.2}, {at: 2, prompt: d}, {prompt: no step}]\n")
    assert read_run(tmp_path).markers == [(0, "story: b"), (2, "steer: d"), (4, "steer: lr 0.2"), (8, "story: c")]


@pytest.mark.parametrize("count,picked", [(3, [0, 1, 2]), (10, list(range(10))), (11, [0, 1, 2, 3, 4, 6, 7, 8, 9, 10]),
                                          (28, [0, 3, 6, 9, 12, 15, 18, 21, 24, 27])])
def test_the_strip_holds_the_first_and_last_frames_and_at_most_ten(count, picked):
    assert strip_frames(list(range(count))) == picked


def test_a_zoom_story_run_reports_its_keyframes_and_a_curve_per_step(tiny_job, tmp_path):
    job = {**tiny_job, "prompt": "a", "story": [{"at": 0, "prompt": "a red cat"}, {"at": 3, "prompt": "a blue dog"}],
           "steps": 6, "seed": 1, "animation": {"mode": "zoom", "every": 2, "zoom": 1.1},
           "output": {"dir": str(tmp_path / "z"), "progress": False, "video": False}}
    done = run_job(build_config(job))
    rec = read_run(done.dir)
    assert [r["step"] for r in rec.losses] == list(range(6)) and rec.markers == [(0, "story: a red cat"),
                                                                                 (3, "story: a blue dog")]
    text = (done.dir / "report.html").read_text()
    assert "step 3: story: a blue dog" in text and text.count("<figcaption>step ") == 4  # frames 0, 2, 4, 6


def test_scores_are_read_by_step_and_a_broken_file_is_said_and_left_out(tmp_path, caplog):
    from vqclip.report.read import read_scores
    frame = {"file": "frames/000004.png", "aesthetic": None, "guide": 0.2}
    data = {"judge": {"model": "j", "aesthetic": None}, "guides": ["g"], "best": None, "stopped_by": None,
            "frames": [{**frame, "step": 4, "judge": 0.4}, {**frame, "step": 0, "judge": 0.1}]}
    (tmp_path / "scores.json").write_text(json.dumps(data))
    assert [f["step"] for f in read_scores(tmp_path)["frames"]] == [0, 4]
    for broken in ("{not json", json.dumps({**data, "frames": [{**frame, "step": 2, "judge": None}]})):
        (tmp_path / "scores.json").write_text(broken)
        caplog.clear()
        assert read_scores(tmp_path) is None
        assert "scores.json" in caplog.text  # said, once, and the report goes on without the scores
    (tmp_path / "scores.json").unlink()
    assert read_scores(tmp_path) is None


def test_a_loss_table_cut_short_keeps_the_rows_that_parse(tmp_path):
    from vqclip.report.read import read_losses
    (tmp_path / "l.csv").write_text("step,total,a,b\n0,1.5,1.0,0.5\n1,x,1.0,0.5\n2,1.0,1.0,\n3,0.9,0.8,0.1\n4,0.8,0.")
    terms, rows = read_losses(tmp_path / "l.csv")  # step 4: an append a kill cut short (0.8 might be 0.85)
    assert terms == ["a", "b"] and rows == [{"step": 0, "total": 1.5, "a": 1.0, "b": 0.5},
                                            {"step": 2, "total": 1.0, "a": 1.0},
                                            {"step": 3, "total": 0.9, "a": 0.8, "b": 0.1}]
    (tmp_path / "l.csv").write_text("steps,loss\n0,1\n")
    assert read_losses(tmp_path / "l.csv") == ([], [])


def test_every_folder_is_checked_before_any_report_is_written(run, tmp_path, capsys):
    folder = tmp_path / "run"
    shutil.copytree(run.dir, folder)
    (folder / "report.html").unlink()
    assert main(["report", str(folder), str(tmp_path / "nope")]) == 2
    assert not (folder / "report.html").exists() and "nope: no such folder" in capsys.readouterr().err
