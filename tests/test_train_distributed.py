"""Data-parallel CLIP training (vqclip.train.distributed): two gloo processes, spawned or started by torchrun, each
with half the global batch and open_clip's feature gathering, end on the weights of one process trained on the whole
batch; the first process alone writes and logs."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_train_clip import _cfg, pairs_folder, tiny_source  # noqa: F401 - the shared fixtures
from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.train import clip as T
from vqclip.train.distributed import Group, parse_devices

TOLERANCE = 2e-4  # weights after 5 AdamW steps at lr 1e-3 (each moves up to 5e-3): float32 sums in another order,
# which Adam's normalisation magnifies for the weights with the smallest gradients (measured: 7e-5 at most)
MOMENT_TOLERANCE = 1e-3  # relative: Adam's first moments, a running mean of the gradients (their scale shows)


ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = ["checkpoint.pt", "clip", "metrics.json", "split.json", "train.json"]
FIVE = {"steps": 5, "amp": False, "checkpoint_every": 5, "val": 0.0}  # 5 float32 steps of batch 4, all pairs trained


def _command(cfg: T.TrainConfig) -> list[str]:
    """The `vqclip train clip` arguments that ask for `cfg` (float32)."""
    return ["train", "clip", "--data", cfg.data, "--from", cfg.source, "--out", cfg.out, "--steps", str(cfg.steps),
            "--batch", str(cfg.batch), "--lr", str(cfg.lr), "--warmup", str(cfg.warmup), "--val", str(cfg.val),
            "--checkpoint-every", str(cfg.checkpoint_every), "--log-every", str(cfg.log_every), "--no-amp",
            *(["--devices", cfg.devices] if cfg.devices else [])]


@pytest.fixture(scope="module")
def five_steps(tiny_source, pairs_folder, tmp_path_factory):  # noqa: F811 - the imported fixtures
    """The 5 float32 steps of batch 4 each test compares with: one process trained through the API, in BASE/one."""
    base = tmp_path_factory.mktemp("clipdist")
    T.train_clip(_cfg(tiny_source, pairs_folder, base / "one", **FIVE))
    return base


@pytest.fixture(scope="module")
def with_a_speck(pairs_folder, tmp_path_factory):  # noqa: F811 - the imported fixture
    """The pairs and one tiny image, which every process reads and the first alone counts as skipped."""
    data = shutil.copytree(pairs_folder, tmp_path_factory.mktemp("speck") / "data")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(data / "tiny.png")
    (data / "tiny.txt").write_text("a speck")
    return data


def _same_weights(one: Path, other: Path, tiny_source: Path) -> None:  # noqa: F811 - the imported fixture
    """The checkpoints of `one` and `other` hold the same weights and AdamW moments, up to float rounding."""
    (a, opt_a), (b, opt_b) = ((c["model"], c["optimizer"]) for c in map(T.load_checkpoint, (one, other)))
    start = T.load_source(str(tiny_source), torch.device("cpu"))[0].model.state_dict()
    assert not torch.equal(a["text_projection"], start["text_projection"])  # it trained
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < TOLERANCE, worst
    for k, state in opt_a["state"].items():  # Adam hides a gradient's scale in the step; its moments do not
        m_a, m_b = state["exp_avg"], opt_b["state"][k]["exp_avg"]
        assert (m_a - m_b).abs().max() <= MOMENT_TOLERANCE * m_a.abs().max(), k


@pytest.mark.slow
def test_two_gloo_processes_end_on_the_weights_of_one_with_the_same_global_batch(five_steps, tiny_source,  # noqa: F811
                                                                                  pairs_folder, capsys):  # noqa: F811
    two = _cfg(tiny_source, pairs_folder, five_steps / "two", devices="cpu,cpu", **FIVE)
    assert main([*_command(two), "--quiet"]) == 0
    said = capsys.readouterr()
    assert said.out.startswith("done: 5 steps") and "note:" not in said.err  # --quiet: no progress lines
    assert T.load_checkpoint(five_steps / "two")["step"] == 5
    _same_weights(five_steps / "one", five_steps / "two", tiny_source)


@pytest.mark.slow
def test_torchrun_on_cpu_ends_on_the_weights_of_one_process_and_only_the_first_writes_and_logs(  # noqa: F811
        five_steps, tiny_source, with_a_speck):  # noqa: F811
    cfg = _cfg(tiny_source, with_a_speck, five_steps / "torchrun", **FIVE)  # the same 24 pairs trained
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "vqclip", *_command(cfg), "--threads", "1"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    notes = [line for line in done.stderr.splitlines() if line.startswith("note: ")]
    assert [n.split()[1] for n in notes] == ["skipped", "training", "step", "step", "exported"], notes  # once each
    assert notes[3].startswith("note: step 5/5 loss") and done.stdout.startswith("done: 5 steps")
    assert done.stdout.count("done:") == 1  # the other process returns None and says nothing
    assert sorted(p.name for p in (five_steps / "torchrun").iterdir()) == RUN_FILES
    assert T.load_checkpoint(five_steps / "torchrun")["step"] == 5
    _same_weights(five_steps / "one", five_steps / "torchrun", tiny_source)


def test_a_process_takes_its_own_share_of_the_batch():
    items = list(range(8))
    assert [Group(r, 2).part(items) for r in range(2)] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert Group(2, 4).part(items) == [4, 5]
    assert Group().part(items) == items and Group().main and not Group(1, 2).main


def test_devices_are_one_kind_and_the_batch_splits_evenly(tiny_source, pairs_folder, tmp_path):
    assert parse_devices("cpu, cpu") == ["cpu", "cpu"]
    for bad in ("cpu,", "cpu,cuda:0"):
        with pytest.raises(VqclipError, match="--devices"):
            parse_devices(bad)
    with pytest.raises(VqclipError, match="split evenly into 2 process"):
        T.train_clip(_cfg(tiny_source, pairs_folder, tmp_path / "r", batch=6, accum=2, devices="cpu,cpu"))


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_batch_torchrun_s_processes_cannot_share_is_one_line_and_the_first_alone_logs(  # noqa: F811
        rank, tiny_source, with_a_speck, tmp_path, monkeypatch, caplog):  # noqa: F811
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with caplog.at_level(logging.INFO, logger="vqclip"):
        with pytest.raises(VqclipError, match=r"^--batch 6 must split evenly into the 2 processes torchrun started x "
                                              r"--accum 2 micro-batches$"):
            T.train_clip(_cfg(tiny_source, with_a_speck, tmp_path / "r", batch=6, accum=2))  # 6 = 2 x 3, not 2 x 2
        assert logging.getLogger("vqclip").level == logging.INFO  # the second's errors-only level undone after
    assert ("skipped 1 of 25 images" in caplog.text) == (rank == "0")
    assert not (tmp_path / "r").exists()


def test_launch_spawns_one_process_per_device_joins_under_torchrun_and_else_trains_here(tmp_path, monkeypatch):
    """Where a training runs: `--devices` naming several → spawned (no step callback in the processes; the first
    one's metrics read back), a process torchrun started → joined, else here; each given
    (group, *args, on_step, *rest)."""
    from vqclip.train import distributed as P

    calls = []
    fn = lambda group, *a: calls.append(("here", group, a)) or {"here": True}  # noqa: E731
    monkeypatch.setattr(P, "spawn", lambda f, devices, run, *a: calls.append(("spawn", f, devices, run, a)))
    monkeypatch.setattr(P, "run_joined", lambda group, f, *a: calls.append(("joined", group, f, a)) or {"joined": 1})
    (tmp_path / "metrics.json").write_text('{"after": 1}')
    step = lambda i, loss: None  # noqa: E731
    metrics = tmp_path / "metrics.json"
    assert P.launch(fn, Group(), ["cpu", "cpu"], tmp_path, metrics, ("a", 1), step, "x") == {"after": 1}
    assert calls.pop() == ("spawn", fn, ["cpu", "cpu"], tmp_path, ("a", 1, None, "x"))
    two = Group(rank=1, size=2)
    assert P.launch(fn, two, [], tmp_path, tmp_path / "metrics.json", ("a", 1), step, "x") == {"joined": 1}
    assert calls.pop() == ("joined", two, fn, ("a", 1, step, "x"))
    for devices in ([], ["cpu"]):  # none named, or one: here
        assert P.launch(fn, Group(), devices, tmp_path, tmp_path / "metrics.json", ("a", 1), step) == {"here": True}
        assert calls.pop() == ("here", Group(), ("a", 1, step))
    assert calls == []
