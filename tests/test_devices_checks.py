"""What a run across devices accepts, at each boundary, before any process starts (fast; the runs themselves:
tests/test_devices.py): a still image (a story too) with at least one cutout per device, on devices that exist;
NCCL only when every device is CUDA; the rendezvous on a free port of 127.0.0.1."""

from __future__ import annotations

import socket
from dataclasses import replace

import pytest

from vqclip.config.job import StoryKeyframe
from vqclip.errors import VqclipError
from vqclip.runs import devices as d
from vqclip.runs.jobs import build_config


@pytest.fixture(scope="module")
def cfg(tiny_job):
    return build_config(base=[("job", {**tiny_job, "prompt": "a red circle", "devices": ["cpu", "cpu"]})])


def test_at_least_one_cutout_per_device(cfg):
    for n, devices in ((2, ["cpu", "cpu"]), (3, ["cpu"] * 3)):
        d.check_devices(replace(cfg, devices=devices, cutouts=replace(cfg.cutouts, n=n)))  # exactly one each
        with pytest.raises(VqclipError, match=rf"^devices: {n} devices need at least as many cutouts \(cutouts.n is "
                                              rf"{n - 1}\)$"):
            d.check_devices(replace(cfg, devices=devices, cutouts=replace(cfg.cutouts, n=n - 1)))
    d.check_devices(replace(cfg, devices=["cpu"], cutouts=replace(cfg.cutouts, n=1)))  # one device: nothing to split


@pytest.mark.parametrize("change, what", [
    (lambda c: replace(c, candidates=replace(c.candidates, n=2)), "best of n"),
    (lambda c: replace(c, animation=replace(c.animation, mode="zoom")), "a zoom video"),
    (lambda c: replace(c, restyle=replace(c.restyle, input="in.mp4")), "a restyle"),
])
def test_only_a_still_image_runs_across_devices(cfg, change, what):
    with pytest.raises(VqclipError, match=f"^devices: {what} runs on one device; give one --device"):
        d.check_devices(change(cfg))
    d.check_devices(replace(change(cfg), devices=["cpu"]))  # on one device it runs
    d.check_devices(replace(cfg, story=[StoryKeyframe(0, "a red circle"), StoryKeyframe(5, "a blue square")]))


def test_each_device_must_exist_and_nccl_is_for_cuda_only(cfg):
    with pytest.raises(VqclipError, match="device: 'cuda:7' asked for but"):
        d.check_devices(replace(cfg, devices=["cpu", "cuda:7"]))
    assert d._backend(replace(cfg, devices=["cuda:0", "cuda:1"])) == "nccl"
    assert d._backend(replace(cfg, devices=["cuda:0", "cpu"])) == "gloo"
    assert d._backend(replace(cfg, devices=["cpu", "cuda:0"])) == "gloo"
    assert d._backend(cfg) == "gloo"


def test_the_rendezvous_port_is_free_on_this_machine_only():
    port = d._free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # free: this binds
