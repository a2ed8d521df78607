"""The CUDA path, checked without a GPU: the device RNG in state.pt, out-of-memory as one line, no host sync inside
a step, fused optimisers only on CUDA, the decoder layout and cuDNN autotuning options (equivalent results on CPU),
and device placement: every mode's objective, state and steps on torch's `meta` device, where any tensor made on
the CPU by mistake fails."""

import contextlib
import copy
import os
import sys

import pytest
import torch

import vqclip.optim.loop as loop
import vqclip.optim.state as state_mod
from vqclip.cli import main
from vqclip.modes.zoom import Motion, ZoomMoves
from vqclip.nets.device import cudnn_benchmark, seeded
from vqclip.nets.lean import decode_latent
from vqclip.nets.memory import is_out_of_memory, out_of_memory_message
from vqclip.optim.loop import StepEvent, loss_numbers, run_steps, take_step
from vqclip.optim.optimizers import fast_kernels, make_optimizer
from vqclip.optim.state import RunState
from vqclip.runs.jobs import build_config
from vqclip.runs.statefile import load_state, save_state

from runs import Run

META = torch.device("meta")


# ---- the device RNG in state.pt ----

def test_cuda_rng_state_is_saved_and_restored(monkeypatch, tmp_path):
    """On CUDA the state carries the CUDA generator and a resume sets it back (torch.cuda faked: no GPU here)."""
    saved_rng, restored = torch.arange(16, dtype=torch.uint8), []
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device="cuda": saved_rng.clone())
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda s, device="cuda": restored.append((s.clone(), device)))
    cuda = torch.device("cuda")
    assert torch.equal(state_mod.device_rng_state(cuda)["cuda_rng"], saved_rng)
    assert state_mod.device_rng_state(torch.device("cpu")) == {}
    state_mod.set_device_rng_state(cuda, {"cuda_rng": saved_rng})
    assert torch.equal(restored[-1][0], saved_rng) and restored[-1][1] == cuda
    state_mod.set_device_rng_state(cuda, {})  # a state saved on the CPU: the CUDA generator is left alone
    assert len(restored) == 1

    # the run's state: taken with the device's generator, through state.pt (weights_only) and back
    run = RunState(torch.zeros(1, 4, 2, 2), "adam", 0.1, seed=3)
    monkeypatch.setattr(state_mod, "device_rng_state", lambda device: {"cuda_rng": saved_rng.clone()})
    save_state(run, tmp_path / "state.pt", steps=10)
    loaded = load_state(tmp_path / "state.pt")
    assert torch.equal(loaded["cuda_rng"], saved_rng)
    seen = []
    monkeypatch.setattr(state_mod, "set_device_rng_state", lambda device, state: seen.append(state.get("cuda_rng")))
    RunState(torch.zeros(1, 4, 2, 2), "adam", 0.1, seed=3).load_state_dict(loaded)
    assert torch.equal(seen[0], saved_rng)


def test_mps_rng_state_when_torch_has_it(monkeypatch):
    if not hasattr(getattr(torch, "mps", None), "get_rng_state"):
        pytest.skip("this torch has no torch.mps.get_rng_state")
    monkeypatch.setattr(torch.mps, "get_rng_state", lambda: torch.ones(4, dtype=torch.uint8))
    assert torch.equal(state_mod.device_rng_state(torch.device("mps"))["mps_rng"], torch.ones(4, dtype=torch.uint8))


# ---- out of memory ----

def test_cuda_out_of_memory_is_one_line_naming_size_cutouts_and_options(tiny_args, tmp_path, monkeypatch, capsys):
    calls = []

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) > 3:  # after a few steps (a frame and state.pt written), the card runs out
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.50 GiB. GPU 0 has ...\nmore")
        return real(*args, **kwargs)

    real = loop.take_step
    monkeypatch.setattr(loop, "take_step", step)  # the step run_steps calls
    out = tmp_path / "run"
    code = main(["generate", "a red cat", *tiny_args, "--steps", "8", "--out", str(out), "--set", "state_every=2",
                 "--set", "output.save_every=1"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: CUDA out of memory (Tried to allocate 2.50 GiB) at 32x32 with 4 cutouts")
    assert "--set memory=low" in err and "--set micro_batch=" in err and "smaller --size" in err
    assert (out / "state.pt").is_file() and any((out / "frames").iterdir())  # what was written is kept
    assert "vqclip resume" in err


def test_out_of_memory_recognised_and_worded():
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory")) and is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried ..."))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    low = out_of_memory_message(512, 256, 64, MemoryError(), mode="low")
    assert "512x256 with 64 cutouts" in low and "memory=low" not in low and "micro_batch" in low


# ---- no host sync inside a step ----

def test_a_step_reads_no_number_unless_asked(tiny_job, tiny_models, monkeypatch):
    """No vqclip code turns a tensor into a Python number during the steps (on CUDA each would wait for the GPU);
    the curve read once at the end equals the per-step numbers."""
    cfg = build_config({**tiny_job, "prompt": "a red cat", "steps": 4, "seed": 1})
    with seeded(torch.device("cpu"), 0):
        eager = Run(cfg, tiny_models)
        expected = [eager.step().loss_value.item() for _ in range(4)]
    synced = []
    for name in ("item", "tolist", "__float__", "__bool__", "__int__"):
        real = getattr(torch.Tensor, name)

        def spy(self, *args, _real=real, _name=name):
            caller = sys._getframe(1).f_code.co_filename
            if f"{os.sep}vqclip{os.sep}" in caller and "site-packages" not in caller:
                synced.append((_name, caller, sys._getframe(1).f_lineno))
            return _real(self, *args)

        monkeypatch.setattr(torch.Tensor, name, spy)
    events = []
    with seeded(torch.device("cpu"), 0):
        run = Run(cfg, tiny_models)
        curve, stopped = run_steps(run.state, run.objective, run.lr_at, 4, 4, [events.append])
    monkeypatch.undo()
    assert [s for s in synced if not s[1].endswith(f"optim{os.sep}loop.py")] == []  # nothing inside the steps
    assert len(synced) == 1 and synced[0][0] == "tolist"  # the curve, once, at the end
    assert curve == pytest.approx(expected, rel=1e-6, abs=1e-7) and not stopped
    assert events[0].loss == pytest.approx(expected[0], rel=1e-6)  # read only when a callback asks
    assert sum(events[1].losses.values()) == pytest.approx(events[1].loss, rel=1e-5)
    assert loss_numbers([1.5, torch.tensor(2.5)]) == [1.5, 2.5]
    assert StepEvent(0, 1, 3.0, {"a": 1.0}).losses == {"a": 1.0}


# ---- kernels and layouts ----

def test_fused_optimiser_only_on_cuda():
    assert fast_kernels("adam", "cuda", {"fused", "lr"}) == {"fused": True}
    assert fast_kernels("adam", "cpu", {"fused", "lr"}) == {} and fast_kernels("rmsprop", "cuda", {"lr"}) == {}
    assert make_optimizer("adam", [torch.zeros(2, requires_grad=True)], 0.1).defaults["fused"] in (None, False)


def test_fused_adam_makes_the_same_updates():
    """torch's fused Adam (what CUDA runs) against the default one (what the CPU runs), on CPU."""
    z1 = torch.randn(1, 8, 4, 4, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    z2 = z1.detach().clone().requires_grad_(True)
    a, b = make_optimizer("adam", [z1], 0.1), torch.optim.Adam([z2], lr=0.1, fused=True)
    for i in range(5):
        for z, opt in ((z1, a), (z2, b)):
            opt.zero_grad()
            (z.sin() * (i + 1)).sum().backward()
            opt.step()
    assert torch.allclose(z1, z2, atol=1e-6)


def test_channels_last_decoder_gives_the_same_image_and_gradient(tiny_models):
    vq = tiny_models.vqgan
    z = torch.randn(1, vq.codebook.shape[1], 8, 8, generator=torch.Generator().manual_seed(2))
    out = {}
    for layout in (False, True):
        zz = z.clone().requires_grad_(True)
        image = decode_latent(vq, zz, channels_last=layout)
        image.square().sum().backward()
        out[layout] = (image.detach(), zz.grad)
    assert torch.allclose(out[False][0], out[True][0], atol=1e-5)
    assert torch.allclose(out[False][1], out[True][1], atol=1e-4, rtol=1e-4)


def test_decoder_layout_option_reaches_the_objective(tiny_job, tiny_models):
    base = {**tiny_job, "prompt": "a red cat", "steps": 2, "seed": 4}
    cpu = Run(build_config(base), tiny_models)
    forced = Run(build_config({**base, "decoder_layout": "channels_last"}), tiny_models)
    assert cpu.objective.speed_options()["decoder_layout"] == "nchw"
    assert forced.objective.speed_options()["decoder_layout"] == "channels_last"
    assert torch.allclose(cpu.decode(), forced.decode(), atol=1e-5)


def test_cudnn_benchmark_is_scoped():
    before = torch.backends.cudnn.benchmark
    with cudnn_benchmark(True):
        assert torch.backends.cudnn.benchmark
    with cudnn_benchmark(False):
        assert torch.backends.cudnn.benchmark == before
    assert torch.backends.cudnn.benchmark == before
    assert build_config({"prompt": "x", "cudnn_benchmark": True}).cudnn_benchmark is True


# ---- device placement on `meta` ----

@pytest.fixture
def on_meta(tiny_models, monkeypatch):
    """The tiny models moved to `meta` (a copy); autocast, which has no meta backend, becomes a no-op there, and
    the curve is left on the device (meta tensors hold no numbers to read)."""
    real_autocast, real_enabled = torch.autocast, torch.is_autocast_enabled

    def autocast(device_type, *args, **kwargs):
        return contextlib.nullcontext() if device_type == "meta" else real_autocast(device_type, *args, **kwargs)

    monkeypatch.setattr(torch, "autocast", autocast)
    monkeypatch.setattr(torch, "is_autocast_enabled",
                        lambda *a: False if a and a[0] == "meta" else real_enabled(*a))
    monkeypatch.setattr(loop, "loss_numbers", lambda curve: curve)
    models = copy.deepcopy(tiny_models)
    models.vqgan.to(META)
    for clip, _ in models.clips:
        clip.to(META)
    return models


def meta_job(tiny_job, **over) -> dict:
    return {**tiny_job, "prompt": "a red cat", "steps": 6, "seed": 2,
            "cutouts": {"n": 4, "augments": ["affine", "perspective", "noise"]}, **over}


def assert_on_meta(run, events) -> None:
    assert run.state.z.device == META and run.state.z_init.device == META
    assert all(e.loss_value.device == META and e.image.device == META for e in events)


@pytest.mark.parametrize("mode", ["still", "story", "init+tv"])
def test_modes_step_on_meta(mode, tiny_job, on_meta, tmp_path):
    over = {"story": {"prompt": "a red cat ^ a blue dog", "change_every": 2},
            "init+tv": {"init": {"kind": "gradient", "weight": 0.5}, "tv_weight": 0.1}}.get(mode, {})
    run = Run(build_config(meta_job(tiny_job, **over)), on_meta, META)
    events = []
    run_steps(run.state, run.objective, run.lr_at, 4, 6, [events.append])
    assert len(events) == 4 and run.state.step == 4
    assert_on_meta(run, events)


def test_best_of_n_steps_on_meta_and_keeps_one_start(tiny_job, on_meta):
    run = Run(build_config(meta_job(tiny_job, candidates={"n": 3})), on_meta, META, starts=3)
    events = [run.step(), run.step()]
    assert run.state.z.shape[0] == 3 and events[-1].image.shape[0] == 3
    run.state.keep(1)
    events.append(run.step())
    assert run.state.z.shape[0] == 1
    assert_on_meta(run, events)


def test_zoom_moves_on_meta(tiny_job, on_meta):
    cfg = build_config(meta_job(tiny_job, animation={"mode": "zoom", "every": 2, "zoom": 1.1, "rotate": 3}))
    run = Run(cfg, on_meta, META)
    hook = ZoomMoves(Motion.from_config(cfg.animation), 2, run.objective)
    events = []
    run_steps(run.state, run.objective, run.lr_at, 4, 6, [events.append], [hook])
    assert hook.moves == 2
    assert_on_meta(run, events)


def test_restyle_restart_on_meta(tiny_job, on_meta):
    run = Run(build_config(meta_job(tiny_job)), on_meta, META)
    frame = torch.rand(1, 3, 32, 32).to(META)  # an input frame, as restyle moves it to the device
    with torch.no_grad():
        z = on_meta.vqgan.encode(frame)
    run.state.restart(z.to(run.state.z.dtype), seed=5)
    events = [run.step(), run.step()]
    assert run.state.step == 2
    assert_on_meta(run, events)


def test_resume_onto_meta(tiny_job, tiny_models, on_meta):
    """A state saved from a CPU run (as state.pt holds it) loads onto the device and the run goes on there."""
    cfg = build_config(meta_job(tiny_job))
    cpu = Run(cfg, tiny_models)
    cpu.step()
    saved = cpu.state.state_dict()
    run = Run(cfg, on_meta, META)
    run.state.load_state_dict(saved)
    assert run.state.step == 1
    events = [run.step()]
    exp = run.state.optimizer.state[run.state.z]["exp_avg"]
    assert exp.device == META
    assert_on_meta(run, events)


def test_take_step_on_meta_with_sgd(tiny_job, on_meta):
    run = Run(build_config(meta_job(tiny_job, optimizer={"name": "sgd", "lr": 0.5})), on_meta, META)
    event = take_step(run.state, run.objective, 0.5, 6)
    assert event.loss_value.device == META and set(event.loss_terms) == set(run.objective.clip_terms)


# ---- MPS ----

def test_mps_stays_selectable(monkeypatch):
    from vqclip.errors import VqclipError
    from vqclip.nets.device import pick_device

    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert pick_device("mps") == torch.device("mps")
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(VqclipError, match="MPS is not available here; use --device cpu"):
        pick_device("mps")


def test_mps_fallback_is_turned_on_before_torch_loads_on_macos(monkeypatch):
    from vqclip.nets.device import MPS_FALLBACK, enable_mps_fallback

    monkeypatch.delenv(MPS_FALLBACK, raising=False)
    monkeypatch.setattr(sys, "platform", "darwin")
    assert enable_mps_fallback() is False  # torch is loaded already here: too late, nothing set
    monkeypatch.delitem(sys.modules, "torch")
    assert enable_mps_fallback() is True and os.environ[MPS_FALLBACK] == "1"
    monkeypatch.setenv(MPS_FALLBACK, "0")  # the user's choice is kept
    assert enable_mps_fallback() is False


def test_an_op_missing_on_mps_is_one_line(monkeypatch, capsys):
    def missing(args):
        raise NotImplementedError("The operator 'aten::_upsample_bicubic2d_aa.out' is not currently implemented "
                                  "for the MPS device. If you want this op to be added ...")

    import vqclip.cli as cli

    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    parser.commands["bench"].set_defaults(func=missing)  # any command: its op fails on MPS
    assert main(["bench"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: aten::_upsample_bicubic2d_aa.out is not implemented on MPS; set "
                   "PYTORCH_ENABLE_MPS_FALLBACK=1 (it then runs on the CPU) or use --device cpu\n")
