"""What the commands do with their options, with the run itself stood in (no model loads): each flag maps to its job
key (zoom's --frames to steps, restyle's --steps to steps per frame, a flag not given leaves the YAML's value), each
limit refuses exactly past its boundary with a one-line error and exit 2, and a stopped run exits 130."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from vqclip.cli import main
from vqclip.runs import pipeline

MINI = ["--model", "mini", "--quiet"]


def one_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(autouse=True)
def presets_read_once(monkeypatch):
    """Each presets file parsed once for this module (a command reads the built-in one about seven times, most of a
    stood-in run's time); a copy of the dict each call, as the loader gives a new one."""
    import vqclip.models.presets as presets

    real = presets.load_presets_file

    def load(path, *, builtin=False):
        key = (str(path), builtin, Path(path).stat().st_mtime_ns if Path(path).is_file() else None)
        if key not in _PRESETS:
            _PRESETS[key] = real(path, builtin=builtin)
        return dict(_PRESETS[key])

    monkeypatch.setattr(presets, "load_presets_file", load)


_PRESETS: dict = {}


@pytest.fixture
def ran(monkeypatch):
    """The configs the commands run (the run stood in); `ran.stop = True` makes the run a stopped one."""
    seen = SimpleNamespace(configs=[], stop=False)

    def run_job(cfg, **kwargs):
        seen.configs.append(cfg)
        return SimpleNamespace(interrupted=seen.stop, final=Path("final.png"), video=None, frames=[], config=cfg,
                               result=SimpleNamespace(steps=cfg.steps))

    monkeypatch.setattr(pipeline, "run_job", run_job)
    return seen


# ---- zoom, restyle, resume (cli/animate.py)

@pytest.mark.parametrize("frames, steps", [(2, 4), (3, 8)])
def test_zoom_frames_set_steps_to_frames_less_one_times_every(ran, frames, steps):
    assert main(["zoom", "x", *MINI, "--every", "4", "--frames", str(frames)]) == 0
    assert ran.configs[-1].steps == steps and ran.configs[-1].animation.mode == "zoom"


@pytest.mark.parametrize("frames", [1, -3])
def test_zoom_of_fewer_than_two_frames_is_one_line(ran, capsys, frames):
    assert main(["zoom", "x", *MINI, "--frames", str(frames)]) == 2
    assert f"--frames: needs at least 2 frames, got {frames}" in one_error(capsys) and ran.configs == []


def test_restyle_steps_count_per_frame_fps_overrides_and_size_is_exact(ran):
    assert main(["restyle", "in.mp4", "x", *MINI, "--steps", "5", "--fps", "12"]) == 0
    cfg = ran.configs[-1]
    assert (cfg.restyle.input, cfg.restyle.steps_per_frame, cfg.restyle.fps) == ("in.mp4", 5, 12)
    assert cfg.steps != 5 and cfg.restyle.keep_aspect is True  # no --size: the video's aspect
    assert main(["restyle", "in.mp4", "x", *MINI, "--size", "32", "48"]) == 0
    assert ran.configs[-1].restyle.keep_aspect is False and ran.configs[-1].size == [32, 48]


def test_zoom_and_restyle_without_a_prompt_are_one_line(ran, capsys):
    assert main(["zoom", *MINI]) == 2
    assert "give a PROMPT" in one_error(capsys)
    assert main(["restyle", "in.mp4", *MINI]) == 2
    assert "give a PROMPT" in one_error(capsys) and ran.configs == []


@pytest.mark.parametrize("argv", [["zoom", "x", *MINI], ["generate", "x", *MINI]])  # restyle: zoom's _run
def test_a_stopped_run_exits_130_and_a_finished_one_0(ran, argv):
    assert main(argv) == 0
    ran.stop = True
    assert main(argv) == 130


def test_resume_passes_its_options_and_exits_130_when_stopped_again(monkeypatch, tmp_path):
    import vqclip.runs.resume as resume

    calls = []

    def resume_run(run_dir, overrides=None, stop=None, **kw):
        calls.append((run_dir, overrides))
        return SimpleNamespace(interrupted=len(calls) > 1, final=Path("final.png"), video=None,
                               config=SimpleNamespace(seed=1), result=SimpleNamespace(steps=9))

    monkeypatch.setattr(resume, "resume_run", resume_run)
    assert main(["resume", str(tmp_path), "--steps", "9"]) == 0
    assert main(["resume", str(tmp_path)]) == 130
    assert calls == [(str(tmp_path), {"steps": 9}), (str(tmp_path), None)]


# ---- generate and run (cli/generate.py), the options (cli/options.py)

def test_generate_takes_an_image_prompt_alone_and_refuses_nothing_to_aim_at(ran, capsys, tmp_path):
    assert main(["generate", *MINI, "--image-prompt", "ref.png"]) == 0
    assert ran.configs[-1].image_prompts == ["ref.png"]
    capsys.readouterr()
    assert main(["generate", *MINI]) == 2
    assert "give a PROMPT (or --config JOB.yaml, --from PNG, --image-prompt PATH)" in one_error(capsys)


def test_run_dry_run_lists_the_jobs_and_runs_none(ran, tmp_path, capsys):
    path = tmp_path / "j.yaml"
    path.write_text(yaml.safe_dump({"model": "mini", "prompt": "x", "seed": 3, "n": 2, "output": {"dir": "b"}}))
    assert main(["run", str(path), "--dry-run"]) == 0
    assert capsys.readouterr().out.splitlines() == ["b/seed=3  seed=3", "b/seed=4  seed=4"] and ran.configs == []


def test_a_flag_not_given_leaves_the_yamls_value_and_a_given_one_overrides_it(ran, tmp_path):
    path = tmp_path / "j.yaml"
    path.write_text(yaml.safe_dump({"model": "mini", "prompt": "x", "tile": True, "output": {"video": False},
                                    "palette": {"colors": ["red", "blue"], "hard": True}}))
    assert main(["generate", "--config", str(path), "--quiet"]) == 0
    cfg = ran.configs[-1]
    assert cfg.tile is True and cfg.palette.hard is True and cfg.output.video is False
    assert main(["generate", "x", *MINI]) == 0 and ran.configs[-1].output.video is True
    assert main(["generate", "x", *MINI, "--no-video", "--tile"]) == 0
    assert ran.configs[-1].output.video is False and ran.configs[-1].tile is True


def test_clip_models_from_flags_have_no_pretrained_unless_given(ran):
    assert main(["generate", "x", *MINI, "--clip-model", "a.json", "--clip-model", "b.json", "--clip-pretrained",
                 "w.pt"]) == 0
    assert [(c.model, c.pretrained) for c in ran.configs[-1].clip] == [("a.json", "w.pt"), ("b.json", None)]


@pytest.mark.parametrize("items, message", [
    (["=5"], "--set '=5': expected KEY=VALUE"),
    (["steps"], "--set 'steps': expected KEY=VALUE"), (["clip.0.model=a"], "--set clip.0.model: --set cannot index"),
    (["steps=5", "steps.x=1"], "--set steps.x: 'steps' is not a section"),
])
def test_a_bad_set_is_one_line(ran, capsys, items, message):
    assert main(["generate", "x", *MINI, *[a for item in items for a in ("--set", item)]]) == 2
    assert message in one_error(capsys) and ran.configs == []


def test_set_reaches_nested_keys(ran):
    assert main(["generate", "x", *MINI, "--set", "cutouts.noise=0.05", "--set", "steps=7"]) == 0
    assert ran.configs[-1].cutouts.noise == 0.05 and ran.configs[-1].steps == 7


# ---- bench (cli/bench.py)

@pytest.fixture
def bench(monkeypatch):
    import vqclip.measure.bench as measure
    import vqclip.measure.gpusuite as gpusuite

    calls = SimpleNamespace(bench=[], check=[])
    monkeypatch.setattr(measure, "run_bench", lambda **kw: calls.bench.append(kw) or SimpleNamespace(
        to_dict=lambda: {"s_per_step": 0.5}))
    monkeypatch.setattr(measure, "format_result", lambda r: "a table")
    monkeypatch.setattr(gpusuite, "run_check", lambda *a: calls.check.append(a))
    return calls


def test_bench_passes_its_options_and_prints_json_or_a_table(bench, capsys):
    assert main(["bench", "--random-weights", "--size", "64", "--micro-batch", "4", "--threads", "2"]) == 0
    kw = bench.bench[-1]
    assert (kw["size"], kw["micro_batch"], kw["threads"], kw["flops"], kw["random_weights"]) == (64, 4, 2, True, True)
    assert capsys.readouterr().out.strip() == "a table"
    assert main(["bench", "--no-flops", "--json"]) == 0
    assert bench.bench[-1]["flops"] is False and json.loads(capsys.readouterr().out) == {"s_per_step": 0.5}


@pytest.mark.parametrize("budget, ok", [("0", False), ("0.5", True)])
def test_the_gpu_checks_budget_must_be_positive(bench, capsys, budget, ok):
    assert main(["bench", "--suite", "gpu", "--quick", "--budget", budget]) == (0 if ok else 2)
    if ok:
        assert bench.check[-1][2] == 0.5 and bench.check[-1][4] == "tiny"
    else:
        assert "--budget: need a positive number of seconds" in one_error(capsys) and bench.check == []


# ---- classify, search (cli/clipjobs.py)

@pytest.fixture
def clipping(monkeypatch):
    import vqclip.tools.clipping as tools

    calls = []

    def classify(images, labels, templates, clips, batch_size, top, progress=False):
        calls.append((labels, templates, top))
        probs = {lab: round(1 / len(labels), 3) for lab in labels}
        return [{"image": "a.png", "label": labels[0], "probs": probs, "top": list(probs.items())[:top or len(labels)]}]

    monkeypatch.setattr(tools, "classify", classify)
    monkeypatch.setattr(tools, "search", lambda folder, query, image, clips, top, *a, **k: calls.append(top) or {
        "results": []})
    return calls


@pytest.mark.parametrize("labels, ok", [("cat,,", False), ("cat,dog", True)])
def test_classify_needs_two_labels(clipping, capsys, labels, ok):
    assert main(["classify", "a.png", "--labels", labels]) == (0 if ok else 2)
    if not ok:
        assert "classify needs at least two labels" in one_error(capsys) and clipping == []


@pytest.mark.parametrize("top, ok", [("0", False), ("1", True)])
def test_top_is_a_whole_number_from_1(clipping, capsys, top, ok):
    if ok:
        assert main(["classify", "a.png", "--labels", "a,b", "--top", top]) == 0 and clipping[-1][2] == 1
        return
    with pytest.raises(SystemExit) as info:
        main(["classify", "a.png", "--labels", "a,b", "--top", top])
    assert info.value.code == 2 and f"must be >= 1, got {top}" in one_error(capsys)


def test_labels_and_templates_files_skip_comments_and_blank_lines(clipping, tmp_path):
    (tmp_path / "l.txt").write_text("# animals\ncat\n\n  dog  \n  # not a label\n")
    assert main(["classify", "a.png", "--labels-file", str(tmp_path / "l.txt"), "--templates", "a {};  ;b {}"]) == 0
    assert clipping[-1][:2] == (["cat", "dog"], ["a {}", "b {}"])


@pytest.mark.parametrize("n, full", [(8, True), (9, False)])
def test_up_to_eight_labels_show_as_one_column_each(clipping, capsys, n, full):
    labels = [f"l{i}" for i in range(n)]
    assert main(["classify", "a.png", "--labels", ",".join(labels)]) == 0
    header = capsys.readouterr().out.splitlines()[0].split()
    assert header == (["image", "best", *labels] if full else ["image", *[h for i in range(n) for h in (f"#{i + 1}",
                                                                                                         "p")]])


def test_search_shows_ten_unless_told(clipping, tmp_path):
    assert main(["search", str(tmp_path), "a cat"]) == 0 and clipping[-1] == 10
    assert main(["search", str(tmp_path), "a cat", "--top", "3"]) == 0 and clipping[-1] == 3


# ---- models (cli/models.py)

@pytest.mark.parametrize("timeout, ok", [("0", False), ("inf", False), ("0.001", True)])
def test_the_download_timeout_is_a_positive_number_of_seconds(capsys, tmp_path, timeout, ok):
    code = main(["models", "--home", str(tmp_path), "download", "mini", "--timeout", timeout])  # mini: built in
    if ok:
        assert code == 0
    else:
        assert code == 2 and "--timeout: must be a number of seconds > 0" in one_error(capsys)
