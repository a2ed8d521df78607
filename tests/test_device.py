"""Devices and precision: the device a name picks on machines with and without CUDA / MPS, the one-line refusals,
when autocast is bf16, the decoder layout, a seeded block that leaves the caller's RNG alone. CUDA and MPS are
simulated (torch's own availability checks patched), so this runs on any CPU."""

from __future__ import annotations

import pytest
import torch

from vqclip.errors import VqclipError
from vqclip.nets import device as dev


@pytest.fixture
def machine(monkeypatch):
    """Pretend this machine has `cuda` CUDA devices (0 = no CUDA) and MPS or not."""

    def make(cuda: int = 0, mps: bool = False):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: cuda)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)

    return make


@pytest.mark.parametrize("cuda, mps, expected", [(2, True, "cuda"), (1, False, "cuda"), (0, True, "mps"),
                                                 (0, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(machine, cuda, mps, expected):
    machine(cuda, mps)
    assert dev.pick_device("auto") == torch.device(expected)


@pytest.mark.parametrize("name", ["cpu", "cuda", "cuda:0", "cuda:1", "mps"])
def test_an_explicit_device_that_exists_is_used_as_named(machine, name):
    machine(cuda=2, mps=True)
    assert dev.pick_device(name) == torch.device(name)


@pytest.mark.parametrize("cuda, mps, name, expected", [
    (0, True, "cuda", "'cuda' asked for but CUDA is not available here; use --device cpu or auto"),
    (0, True, "cuda:0", "CUDA is not available"),
    (2, False, "cuda:2", "this machine has 2 CUDA device\\(s\\), cuda:0 to cuda:1"),  # the first index past the end
    (1, False, "cuda:1", "has 1 CUDA device\\(s\\), cuda:0 to cuda:0"),
    (2, False, "mps", "'mps' asked for but MPS is not available here"),
])
def test_a_device_this_machine_lacks_is_one_line(machine, cuda, mps, name, expected):
    machine(cuda, mps)
    with pytest.raises(VqclipError, match=expected) as info:
        dev.pick_device(name)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["gpu", "CUDA", "cuda:", "cuda:x", "cuda:0:1", "xla", "cpu ", "", "meta", "cuda0"])
def test_an_unknown_device_name_is_one_line_naming_the_known_ones(name):
    with pytest.raises(VqclipError, match=f"device: unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps"):
        dev.check_device(name)
    with pytest.raises(VqclipError, match="unknown device"):
        dev.pick_device(name)


@pytest.mark.parametrize("name", ["auto", "cpu", "mps", "cuda", "cuda:0", "cuda:12"])
def test_known_device_names_pass_the_check(name):
    dev.check_device(name)


def test_auto_precision_on_the_cpu_starts_at_128_by_128_pixels(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(dev, "cpu_native_bf16", lambda: True)
    assert dev.autocast_dtype("auto", cpu, 128 * 128) == torch.bfloat16
    assert dev.autocast_dtype("auto", cpu, 128 * 128 - 1) is None
    assert dev.autocast_dtype("fp32", cpu, 10**8) is None
    for kind in ("mps", "meta"):  # auto is bf16 on CUDA and on native-bf16 CPUs only
        assert dev.autocast_dtype("auto", torch.device(kind), 10**8) is None
    assert dev.autocast_dtype("bf16", torch.device("mps")) == torch.bfloat16


@pytest.mark.parametrize("flags, native", [("fpu sse avx512f avx512_bf16", True), ("fpu amx_bf16 amx_tile", True),
                                           ("fpu sse avx512f avx2", False), ("fpu avx512_bf16x", False)])
def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch, tmp_path, flags, native):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}\nbugs\t\t: avx512_bf16\n")
    real = dev.Path

    monkeypatch.setattr(dev, "Path", lambda p: real(info) if p == "/proc/cpuinfo" else real(p))
    dev.cpu_native_bf16.cache_clear()
    try:
        assert dev.cpu_native_bf16() is native
    finally:
        dev.cpu_native_bf16.cache_clear()


def test_training_recipes_take_bf16_only_where_the_hardware_does_it(monkeypatch):
    """native_bf16: bf16 on CUDA and on native-bf16 CPUs; fp32 (None) on other CPUs, where it is emulated, and on MPS."""
    monkeypatch.setattr(dev, "cpu_native_bf16", lambda: True)
    assert dev.native_bf16("cpu") == torch.bfloat16 and dev.native_bf16("cuda") == torch.bfloat16
    assert dev.native_bf16("mps") is None
    monkeypatch.setattr(dev, "cpu_native_bf16", lambda: False)
    assert dev.native_bf16("cpu") is None and dev.native_bf16() is None and dev.native_bf16("cuda") == torch.bfloat16


def test_autocast_context_is_off_for_fp32_and_bf16_when_asked():
    with dev.amp_autocast("cpu", None):
        assert not torch.is_autocast_enabled("cpu")
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with dev.amp_autocast("cpu", torch.bfloat16):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


@pytest.mark.parametrize("layout, kind, expected", [("auto", "cpu", False), ("auto", "cuda", True),
                                                    ("auto", "mps", True), ("nchw", "cuda", False),
                                                    ("channels_last", "cpu", True)])
def test_the_decoder_layout(layout, kind, expected):
    assert dev.channels_last_decoder(layout, torch.device(kind)) is expected


def test_a_seeded_block_repeats_and_leaves_the_callers_rng_alone():
    cpu = torch.device("cpu")
    torch.manual_seed(123)
    expected_after = torch.rand(3)
    torch.manual_seed(123)
    with dev.seeded(cpu, 7):
        first = torch.rand(4)
    with dev.seeded(cpu, 7):
        again = torch.rand(4)
    torch.manual_seed(7)
    assert torch.equal(first, again) and torch.equal(first, torch.rand(4))  # the seed given, exactly
    torch.manual_seed(123)
    with dev.seeded(cpu, 7):
        torch.rand(100)
    assert torch.equal(torch.rand(3), expected_after)


def test_the_mps_fallback_is_set_only_on_macos_before_torch_and_a_users_value_is_kept(monkeypatch):
    import sys

    monkeypatch.delenv(dev.MPS_FALLBACK, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    assert dev.enable_mps_fallback() is False and dev.MPS_FALLBACK not in __import__("os").environ
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv(dev.MPS_FALLBACK, "0")
    assert dev.enable_mps_fallback() is False  # the user's "0" stands


def test_compiled_code_runs_for_grad_steps_and_eager_code_without_grad(monkeypatch):
    """The training step's graph is compiled once; a call without grad (a frame, the final image) runs the function
    itself, so that grad mode flipping never costs a second compile."""
    from vqclip.nets.device import compiled

    made, ran = [], []

    def fake_compile(fn):
        made.append(fn)
        return lambda *a: ran.append("compiled") or fn(*a)

    monkeypatch.setattr(torch, "compile", fake_compile)
    fn = compiled(lambda x: x * 2, "doubler")
    x = torch.tensor(3.0, requires_grad=True)
    with torch.no_grad():
        assert fn(x).item() == 6.0
    assert made == [] and ran == []  # no compile for a call without grad
    y = fn(x)
    assert y.item() == 6.0 and y.requires_grad and len(made) == 1 and ran == ["compiled"]
    with torch.no_grad():
        fn(x)
    assert ran == ["compiled"]  # still the function itself without grad, the compiled one kept for the next step
    fn(x)
    assert len(made) == 1 and ran == ["compiled", "compiled"]
