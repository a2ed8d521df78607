"""Data-parallel VQGAN training (`vqclip train vqgan --devices cpu,cpu`): two gloo processes, each with half the global
batch, end on the VQGAN and discriminator weights of one process trained on the whole batch (the discriminator's
BatchNorm over the global batch, the adaptive weight from the global gradients); only the first process writes."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import signal

import numpy as np
import pytest
import torch
from PIL import Image

from tests.spawned import fail_on_the_second, interrupt_the_parent
from tests.test_train_vqgan import _cfg, images_folder  # noqa: F401 - the shared fixture
from vqclip.cli import main
from vqclip.errors import VqclipError
from vqclip.train import distributed as P
from vqclip.train import vqgan as V

WEIGHT_TOLERANCE = 2e-4  # weights after 4 Adam steps at lr 1e-4 (each moves up to 4e-4): float32 sums in another
# order, which Adam's normalisation magnifies where a gradient is float noise (the biases a GroupNorm cancels, the
# attention's key bias); measured 9.5e-5 for the VQGAN, 4.4e-5 for the discriminator, 1.3e-6 for its BatchNorm
# statistics
MOMENT_TOLERANCE = 1e-3  # Adam's first moments (running means of the gradients, their scale kept), against the
# optimiser's largest one: measured 1.5e-5 (VQGAN) and 3.6e-5 (discriminator); at lr 1e-3 the float noise above grows
# through the steps to 1e-2, so the test trains at 1e-4


def _command(cfg: V.VqganTrainConfig) -> list[str]:
    """The `vqclip train vqgan` arguments that ask for `cfg`."""
    return ["train", "vqgan", "--data", cfg.data, "--from", cfg.source, "--out", cfg.out, "--steps", str(cfg.steps),
            "--batch", str(cfg.batch), "--size", str(cfg.size), "--lr", str(cfg.lr), "--disc-start",
            str(cfg.disc_start), "--disc-ndf", str(cfg.disc_ndf), "--val", str(cfg.val), "--checkpoint-every",
            str(cfg.checkpoint_every), "--grid-every", str(cfg.grid_every), "--log-every", str(cfg.log_every),
            *(["--devices", cfg.devices] if cfg.devices else [])]


@pytest.fixture(scope="module")
def pair(tiny_vqgan, images_folder, tmp_path_factory):  # noqa: F811 - the imported fixture
    """One process and two gloo processes through the command, the same 4 steps of batch 4, the discriminator from
    step 2: (base folder, the metrics of each, what each said on stderr)."""
    base = tmp_path_factory.mktemp("vqdist")
    kw = {"steps": 4, "batch": 4, "lr": 1e-4, "disc_start": 2, "checkpoint_every": 4, "grid_every": 4}
    said = {}
    for name, devices in (("one", ""), ("two", "cpu,cpu")):
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            assert main(_command(_cfg(tiny_vqgan, images_folder, base / name, devices=devices, **kw))) == 0
        said[name] = err.getvalue()
    one, two = (json.loads((base / k / V.METRICS_FILE).read_text()) for k in ("one", "two"))
    return base, one, two, said


@pytest.mark.slow
def test_two_gloo_processes_end_on_the_weights_of_one_with_the_same_global_batch(pair, tiny_vqgan):
    base, one, two, _ = pair
    assert (one["processes"], two["processes"]) == (1, 2)
    a, b = (V.load_checkpoint(base / k) for k in ("one", "two"))
    assert a["step"] == b["step"] == 4
    start = V.load_source(f"{tiny_vqgan[0]}+{tiny_vqgan[1]}", torch.device("cpu"))[0].state_dict()
    assert not torch.equal(a["model"]["decoder.conv_out.weight"], start["decoder.conv_out.weight"])  # it trained
    for net in ("model", "disc"):  # the discriminator's BatchNorm running statistics included
        worst = max((a[net][k].double() - b[net][k].double()).abs().max().item() for k in a[net])
        assert worst < WEIGHT_TOLERANCE, (net, worst)
    for opt in ("opt_g", "opt_d"):  # Adam hides a gradient's scale in the step; its first moments do not
        assert a[opt]["state"] and a[opt]["state"].keys() == b[opt]["state"].keys()
        largest = max(state["exp_avg"].abs().max().item() for state in a[opt]["state"].values())
        for k, state in a[opt]["state"].items():
            m_a, m_b = state["exp_avg"], b[opt]["state"][k]["exp_avg"]
            assert (m_a - m_b).abs().max() <= MOMENT_TOLERANCE * largest, (opt, k)
    # the first process alone wrote the run folder: one grid per 4 steps, metrics, the export
    assert sorted(p.name for p in (base / "two" / V.GRID_DIR).iterdir()) == ["step_000004.png"]
    assert (base / "two" / V.EXPORT_DIR).is_dir() and two["after"]["l1"] is not None


@pytest.mark.slow
def test_two_processes_log_what_one_process_logs_once(pair):
    base, _, _, said = pair
    assert re.search(r"^note: step 4/4 loss [\d.]+ .* img/s +ETA 0s$", said["two"], re.M)  # live, as the CLI formats
    assert re.search(r"^note: exported the VQGAN preset to \S+two", said["two"], re.M)
    shape = [re.sub(r"\d+(\.\d+)?(e[+-]\d+)?", "#", line.replace(str(base / "one"), str(base / "two")))
             for line in said["one"].splitlines()]
    assert [re.sub(r"\d+(\.\d+)?(e[+-]\d+)?", "#", line) for line in said["two"].splitlines()] == shape


def test_a_batch_the_devices_cannot_share_is_one_line_and_exit_2(tiny_vqgan, images_folder, tmp_path,  # noqa: F811
                                                                  capsys):
    src = f"{tiny_vqgan[0]}+{tiny_vqgan[1]}"
    common = ["train", "vqgan", "--data", str(images_folder), "--from", src, "--size", "32", "--steps", "1"]
    assert main([*common, "--out", str(tmp_path / "r"), "--batch", "3", "--devices", "cpu,cpu"]) == 2
    err = capsys.readouterr().err
    assert "--batch 3 must split evenly into 2 processes" in err and len(err.strip().splitlines()) == 1
    assert main([*common, "--out", str(tmp_path / "m"), "--batch", "2", "--devices", "cpu,cuda:0"]) == 2
    assert "--devices cpu,cuda:0" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "m").exists()


@pytest.mark.parametrize("rank", ["0", "1"])
def test_a_batch_torchrun_s_processes_cannot_share_is_one_line_and_the_first_alone_logs(  # noqa: F811
        rank, tiny_vqgan, images_folder, tmp_path, monkeypatch, caplog):  # noqa: F811
    data = shutil.copytree(images_folder, tmp_path / "data")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(data / "tiny.png")
    monkeypatch.setenv("RANK", rank)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with caplog.at_level(logging.INFO, logger="vqclip"):
        with pytest.raises(VqclipError, match=r"^--batch 3 must split evenly into the 2 processes torchrun started$"):
            V.train_vqgan(_cfg(tiny_vqgan, data, tmp_path / "r", batch=3))
        assert logging.getLogger("vqclip").level == logging.INFO  # the second's errors-only level undone after
    assert ("skipped 1 of 11 images" in caplog.text) == (rank == "0")
    assert not (tmp_path / "r").exists()


class _NoteHeard(logging.Handler):
    """Writes FOLDER/heard when the first process's error reaches this process's log."""

    def __init__(self, folder):
        super().__init__()
        self.folder = folder

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == "error from process 0":
            (self.folder / "heard").write_text("")


@pytest.mark.slow
def test_an_error_in_one_process_stops_them_all_in_one_line(tmp_path, caplog):
    heard = _NoteHeard(tmp_path)
    logging.getLogger("vqclip").addHandler(heard)
    try:
        with pytest.raises(VqclipError) as err, caplog.at_level(logging.INFO, logger="vqclip"):
            P.spawn(fail_on_the_second, ["cpu", "cpu"], tmp_path, "im3.png", str(tmp_path))
    finally:
        logging.getLogger("vqclip").removeHandler(heard)
    assert str(err.value) == "cpu: im3.png: unreadable"  # the second heard that the first's log had arrived
    assert not (tmp_path / ".rendezvous").exists()
    # the first process's log reaches this one's handlers (its level here); the second says its errors only
    assert sorted((r.getMessage(), r.levelno) for r in caplog.records if r.name == "vqclip") == [
        ("error from process 0", logging.ERROR), ("error from process 1", logging.ERROR),
        ("info from process 0", logging.INFO), ("warning from process 0", logging.WARNING)]


@pytest.mark.slow
def test_ctrl_c_ends_every_process(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(P, "RELAY_EVERY", 600.0)  # no look at the log while they run: only the one after they end
    with pytest.raises(KeyboardInterrupt), caplog.at_level(logging.INFO, logger="vqclip"):
        P.spawn(interrupt_the_parent, ["cpu", "cpu"], tmp_path, str(tmp_path))
    assert [r.getMessage() for r in caplog.records if r.name == "vqclip"] == ["process 0 sends Ctrl-C"]  # still said
    alive = []
    for pid in (int((tmp_path / f"pid{r}").read_text()) for r in range(2)):
        try:
            os.kill(pid, 0)  # still there: not ended (or not reaped)
            alive.append(pid)
        except ProcessLookupError:
            pass
    for pid in alive:  # the processes this test started, ended here should spawn have left them
        os.kill(pid, signal.SIGKILL)
    assert not alive
