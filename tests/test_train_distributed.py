"""Data-parallel CLIP training (vqclip.train.distributed): two gloo processes, each with half the global batch and
open_clip's feature gathering, end on the weights of one process trained on the whole batch."""

from __future__ import annotations

import pytest
import torch

from tests.test_train_clip import _cfg, pairs_folder, tiny_source  # noqa: F401 - the shared fixtures
from vqclip.errors import VqclipError
from vqclip.train import clip as T
from vqclip.train.distributed import Group, parse_devices

TOLERANCE = 2e-4  # weights after 5 AdamW steps at lr 1e-3 (each moves up to 5e-3): float32 sums in another order,
# which Adam's normalisation magnifies for the weights with the smallest gradients (measured: 7e-5 at most)
MOMENT_TOLERANCE = 1e-3  # relative: Adam's first moments, a running mean of the gradients (their scale shows)


@pytest.mark.slow
def test_two_gloo_processes_end_on_the_weights_of_one_with_the_same_global_batch(tiny_source, pairs_folder,
                                                                                  tmp_path):
    one = _cfg(tiny_source, pairs_folder, tmp_path / "one", steps=5, amp=False, checkpoint_every=5, val=0.0)
    two = _cfg(tiny_source, pairs_folder, tmp_path / "two", steps=5, amp=False, checkpoint_every=5, val=0.0,
               devices="cpu,cpu")
    T.train_clip(one)
    metrics = T.train_clip(two)
    assert metrics["processes"] == 2
    (a, opt_a), (b, opt_b) = ((c["model"], c["optimizer"]) for c in (T.load_checkpoint(tmp_path / k)
                                                                      for k in ("one", "two")))
    start = T.load_source(str(tiny_source), torch.device("cpu"))[0].model.state_dict()
    assert not torch.equal(a["text_projection"], start["text_projection"])  # it trained
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    assert worst < TOLERANCE, worst
    for k, state in opt_a["state"].items():  # Adam hides a gradient's scale in the step; its moments do not
        m_a, m_b = state["exp_avg"], opt_b["state"][k]["exp_avg"]
        assert (m_a - m_b).abs().max() <= MOMENT_TOLERANCE * m_a.abs().max(), k


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
