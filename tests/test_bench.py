"""`vqclip bench` and its library: it times real steps, counts FLOPs, reads memory, and plans memory options."""

import json
import logging
import sys
from pathlib import Path

import pytest
import torch

from vqclip.nets import memory as speed
from vqclip.measure.bench import count_gflop, format_result, run_bench, time_steps
from vqclip.cli import main
from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.nets.device import autocast_dtype

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def tiny_archs(tiny_vqgan, tiny_clip):
    """Architecture files of the tiny models: bench builds them with random weights."""
    return str(tiny_vqgan[0]), str(tiny_clip[0])


def test_run_bench_times_counts_and_measures(tiny_archs):
    vq, clip = tiny_archs
    r = run_bench(size=32, cutn=2, vqgan=vq, clip=clip, device="cpu", steps=2, warmup=1)
    assert len(r.step_s) == 2 and r.median_s > 0 and r.it_s == pytest.approx(1 / r.median_s)
    assert r.gflop_per_step > 0 and r.gflop_s == pytest.approx(r.gflop_per_step / r.median_s)
    assert r.mem_kind == "rss" and r.peak_mem_bytes > 50 * 2**20
    assert r.options["lean_decoder"] is True and r.precision == "fp32"
    assert "s/step" in format_result(r) and "GFLOP/s" in format_result(r)


def test_cli_bench_json(tiny_archs, capsys):
    vq, clip = tiny_archs
    code = main(["bench", "--random-weights", "--vqgan", vq, "--clip", clip, "--size", "32", "--cutn", "2",
                 "--steps", "1", "--warmup", "0", "--device", "cpu", "--memory", "low", "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["impl"] == "vqclip" and data["size"] == 32 and len(data["step_s"]) == 1
    assert data["options"]["checkpoint"] is True and data["options"]["micro_batch"] == 2


def test_bench_of_a_preset_uses_its_own_clip(monkeypatch):
    """`--vqgan mini` times the mini CLIP, offline; the ViT-B-32 default would reach for open_clip's download."""
    import open_clip

    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: pytest.fail("reached for open_clip's weights"))
    r = run_bench(size=64, cutn=2, vqgan="mini", random_weights=False, device="cpu", steps=1, warmup=0, flops=False)
    assert r.clip == "mini's CLIP" and r.vqgan == "mini" and r.median_s > 0


def test_bench_of_a_downloadable_preset_asks_for_its_clip(monkeypatch):
    """imagenet-16384 is a preset as well as an architecture name: with real weights its CLIP comes from the preset
    (vqclip's CLIP cache), not open_clip's own download."""
    import open_clip

    import vqclip.measure.bench as bench

    monkeypatch.setattr(open_clip, "create_model", lambda *a, **k: pytest.fail("reached for open_clip's weights"))
    asked = []

    def load_models(cfg, device, cache=None):  # the one loader of every job: the preset's files, fetched once
        asked.append((cfg.model, [(c.model, c.pretrained) for c in cfg.clip]))
        raise VqclipError("stop here")

    monkeypatch.setattr(bench, "load_models", load_models)
    with pytest.raises(VqclipError, match="stop here"):
        run_bench(vqgan="imagenet-16384", random_weights=False, device="cpu")
    assert asked == [("imagenet-16384", [("ViT-B-32", "openai")])]


def test_cli_bench_unknown_architecture_is_one_line(capsys):
    assert main(["bench", "--random-weights", "--vqgan", "no-such-vqgan", "--steps", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: --vqgan: no built-in architecture 'no-such-vqgan'")


def test_cli_bench_negative_threads_is_one_line(capsys):
    assert main(["bench", "--random-weights", "--threads", "-2", "--steps", "1"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: bench: need --size >= 16, --cutn >= 1, --steps >= 1, --warmup >= 0 and --threads >= 0"]


def test_count_gflop_counts_a_matmul():
    a, b = torch.randn(64, 128), torch.randn(128, 32)
    assert count_gflop(lambda: a @ b) == pytest.approx(2 * 64 * 128 * 32 / 1e9)


def test_time_steps_runs_warmup_untimed():
    calls = []
    wall, cpu = time_steps(lambda: calls.append(1), warmup=2, steps=3, device=torch.device("cpu"))
    assert len(calls) == 5 and len(wall) == len(cpu) == 3 and all(t >= 0 for t in wall + cpu)


def test_memory_modes(tiny_models, caplog):
    vq, clip = tiny_models.vqgan, tiny_models.clips[0][0]
    args = (vq.decoder, (4, 4), [clip], 16)
    assert speed.plan_memory("normal", *args, 0, 4, torch.device("cpu")) == (False, 0)
    assert speed.plan_memory("low", *args, 0, 4, torch.device("cpu")) == (True, 8)
    assert speed.plan_memory("low", *args, 3, 4, torch.device("cpu")) == (True, 3)
    assert speed.plan_memory("auto", *args, 0, 4, torch.device("cpu")) == (False, 0)


def test_auto_memory_turns_options_on_with_a_notice_when_short(tiny_models, monkeypatch, caplog):
    vq, clip = tiny_models.vqgan, tiny_models.clips[0][0]
    need_one = speed.clip_activation_bytes(clip, 4)
    dec_ck = speed.decoder_activation_bytes(vq.decoder, 64, 64, 4, True)
    monkeypatch.setattr(speed, "available_memory", lambda device: int((dec_ck + 5.5 * need_one) / 0.7))
    with caplog.at_level(logging.INFO, logger="vqclip"):
        ck, mb = speed.plan_memory("auto", vq.decoder, (64, 64), [clip], 64, 0, 4, torch.device("cpu"))
    assert ck is True and mb == 5
    assert "memory is short" in caplog.text
    # a batch of starts costs as much as one taller latent: 2 latents of 32 x 64 plan like one of 64 x 64
    assert speed.plan_memory("auto", vq.decoder, (32, 64), [clip], 32, 0, 4, torch.device("cpu"), batch=2) == (ck, mb)
    assert speed.plan_memory("auto", vq.decoder, (32, 64), [clip], 32, 0, 4, torch.device("cpu")) == (False, 0)


def test_estimates_grow_with_size_and_shrink_with_checkpointing(tiny_models):
    dec = tiny_models.vqgan.decoder
    small, big = (speed.decoder_activation_bytes(dec, s, s, 4, False) for s in (4, 8))
    assert big == 4 * small
    assert speed.decoder_activation_bytes(dec, 8, 8, 4, True) < big


def test_config_validates_speed_options(tiny_job):
    base = [("tiny", tiny_job), ("p", {"prompt": "x"})]
    with pytest.raises(VqclipError, match="memory: unknown value 'huge'"):
        merge_layers(base + [("t", {"memory": "huge"})])
    with pytest.raises(VqclipError, match="micro_batch: must be >= 0"):
        merge_layers(base + [("t", {"micro_batch": -1})])
    cfg = merge_layers(base + [("t", {"compile": True, "memory": "low", "micro_batch": 2})])
    assert cfg.compile and cfg.memory == "low" and cfg.micro_batch == 2


def test_auto_precision(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert autocast_dtype("auto", cuda) == torch.bfloat16 and autocast_dtype("fp32", cuda) is None
    assert autocast_dtype("bf16", cpu) == torch.bfloat16
    monkeypatch.setattr("vqclip.nets.device.cpu_native_bf16", lambda: True)
    assert autocast_dtype("auto", cpu, 256 * 256) == torch.bfloat16
    assert autocast_dtype("auto", cpu, 32 * 32) is None
    monkeypatch.setattr("vqclip.nets.device.cpu_native_bf16", lambda: False)
    assert autocast_dtype("auto", cpu, 256 * 256) is None


def test_auto_precision_counts_every_start_of_a_batch(monkeypatch, tiny_job, tiny_models):
    """Best of n runs n images per step: on a CPU with native bf16, 16 starts of 32 x 32 are 128^2 pixels a step."""
    from runs import Run

    monkeypatch.setattr("vqclip.nets.device.cpu_native_bf16", lambda: True)
    cfg = merge_layers([("tiny", tiny_job), ("t", {"prompt": "x", "size": [32, 32], "precision": "auto"})])
    assert Run(cfg, tiny_models, torch.device("cpu"), 0).amp is None
    assert Run(cfg, tiny_models, torch.device("cpu"), 0, starts=16).amp == torch.bfloat16


def test_compile_falls_back_to_eager_with_a_notice(monkeypatch, caplog):
    def broken(fn):
        raise RuntimeError("no backend here")

    monkeypatch.setattr(torch, "compile", broken)
    from vqclip.nets.device import compiled

    fn = compiled(lambda x: x * 2, "doubler")
    with caplog.at_level(logging.INFO, logger="vqclip"):
        assert fn(torch.tensor(3.0)).item() == 6.0
        assert fn(torch.tensor(4.0)).item() == 8.0
    assert caplog.text.count("torch.compile of the doubler failed (no backend here); running it eagerly") == 1


@pytest.mark.slow
def test_compiled_generation_matches_eager(tiny_job, tiny_models, caplog):
    base = [("tiny", tiny_job), ("p", {"prompt": "a red circle", "steps": 2, "seed": 3, "precision": "fp32"})]
    from vqclip.runs.pipeline import generate

    eager = generate(merge_layers(base), tiny_models)
    # inductor's whole path (capture, autograd, C++ codegen and build) with scalar C++ in one file per graph (its C++
    # wrapper): g++ builds SIMD kernels about twice as slowly, and a file per kernel (51 here) spends most of each
    # build reading torch's headers again (cold caches: 98 -> 28 s of g++); those are torch's to test (the GPU check
    # compiles with every default on the real models)
    import torch._inductor.config as inductor
    from torch._dynamo.utils import counters

    graphs = counters["stats"]["unique_graphs"]
    with inductor.patch({"cpp.vec_isa_ok": False, "cpp_wrapper": True}), caplog.at_level(logging.INFO, "vqclip"):
        fast = generate(merge_layers(base + [("c", {"compile": True})]), tiny_models)
    assert "torch.compile of the" not in caplog.text  # compiled, not the eager fallback
    assert counters["stats"]["unique_graphs"] - graphs >= 2  # the decoder's and CLIP's
    assert (eager.image - fast.image).abs().max() <= 1e-3


@pytest.mark.slow
def test_textbook_loop_runs_and_reports_json(monkeypatch, capsys):
    """The script as `python benchmarks/textbook_loop.py ...` runs it, in this process (a fresh one spent ~4 s of the
    test's 7 importing torch and torchvision again); its seed and sys.path change are undone afterwards."""
    import runpy

    script = str(ROOT / "benchmarks" / "textbook_loop.py")
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "argv", [script, "--size", "32", "--cutn", "1", "--steps", "1", "--warmup", "0",
                                      "--threads", "1", "--json"])
    with torch.random.fork_rng(), pytest.raises(SystemExit) as done:
        runpy.run_path(script, run_name="__main__")
    assert done.value.code == 0
    data = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert data["impl"] == "textbook" and data["gflop_per_step"] > 8.7  # at least one ViT-B/32 forward
