"""The speed work changes no result: fp32 output equals the pre-speed-work reference, the lean decoder equals taming's,
micro-batching equals one pass, and bf16 stays within a stated tolerance of fp32.

tests/data/perf_reference.pt was recorded by `reference_run()` below at commit 62a2048 (before any speed change),
with torch 2.14 on CPU and one thread: the fp32 image, latent and loss curve of a 6-step run on the tiny models.
Tolerances: fp32 image max |diff| <= 1e-4 and latent <= 5e-3 (float summation order differs in the lean backward,
and Adam amplifies ~1e-7 gradient differences); bf16 vs fp32: decoded image mean |diff| <= 0.02, loss within 2%,
gradient cosine >= 0.95, and after 6 steps the image mean |diff| <= 0.05.
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tiny import write_clip, write_vqgan
from vqclip.config import merge_layers
from vqclip.generator import Generation, Models, generate
from vqclip.models import load_clip, load_vqgan
from vqclip.speed import decode_latent, frozen_conv, lean_decode, norm_swish

REFERENCE = Path(__file__).parent / "data" / "perf_reference.pt"


@pytest.fixture(scope="module")
def ref_models(tmp_path_factory):
    """The tiny models exactly as the reference was recorded with (write_vqgan/write_clip, seed 0)."""
    tmp = tmp_path_factory.mktemp("ref")
    cj, cw = write_clip(tmp / "clip")
    return Models(load_vqgan(*write_vqgan(tmp / "vq")), [(load_clip(str(cj), str(cw)), 1.0)])


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def reference_run(models, **over):
    """The recorded job (see tests/data/perf_reference.pt), optionally with overrides."""
    ref = torch.load(REFERENCE, weights_only=True)
    return ref, generate(merge_layers([("ref", ref["job"]), ("test", over)]), models)


def test_fp32_output_equals_pre_speed_work_reference(ref_models, one_thread):
    ref, res = reference_run(ref_models)
    assert (res.image - ref["image"]).abs().max() <= 1e-4
    assert (res.z - ref["z"]).abs().max() <= 5e-3
    assert torch.allclose(torch.tensor(res.losses), ref["losses"], rtol=1e-5)


def test_micro_batches_and_low_memory_match_the_reference(ref_models, one_thread):
    for over in ({"micro_batch": 4}, {"memory": "low"}):
        ref, res = reference_run(ref_models, **over)
        assert (res.image - ref["image"]).abs().max() <= 1e-4, over
        assert torch.allclose(torch.tensor(res.losses), ref["losses"], rtol=1e-5), over


def _decode_and_grad(fn, vq, z0):
    z = z0.clone().requires_grad_(True)
    image = fn(z)
    (image.float() ** 2).mean().backward()
    return image.detach().float(), z.grad


def test_lean_decoder_is_taming_decoder_in_fp32(ref_models):
    vq = ref_models.vqgan
    z0 = torch.randn(2, vq.embed_dim, 3, 5, generator=torch.Generator().manual_seed(0))
    img_ref, g_ref = _decode_and_grad(vq.decode, vq, z0)
    img, g = _decode_and_grad(lambda z: decode_latent(vq, z), vq, z0)
    img_ck, g_ck = _decode_and_grad(lambda z: decode_latent(vq, z, checkpoint=True), vq, z0)
    assert torch.equal(img, img_ref) and torch.equal(img_ck, img_ref)
    assert torch.allclose(g, g_ref, rtol=1e-5, atol=1e-9) and torch.allclose(g_ck, g_ref, rtol=1e-5, atol=1e-9)


def _saved_bytes(fn, z):
    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(z)
    return sum(storages.values())


def test_lean_decoder_keeps_far_less_for_backward(ref_models):
    vq = ref_models.vqgan
    z = torch.randn(1, vq.embed_dim, 8, 8).requires_grad_(True)
    plain = _saved_bytes(vq.decode, z)
    lean = _saved_bytes(lambda x: decode_latent(vq, x), z)
    ckpt = _saved_bytes(lambda x: decode_latent(vq, x, checkpoint=True), z)
    assert lean < 0.6 * plain  # no convolution inputs kept
    assert ckpt < 0.35 * lean  # GroupNorm+swish recomputed, only level inputs kept


def test_frozen_conv_and_norm_swish_gradients_are_exact():
    conv = torch.nn.Conv2d(4, 6, 3, padding=1, stride=2).double().requires_grad_(False)
    norm = torch.nn.GroupNorm(2, 4).double().requires_grad_(False)
    x = torch.randn(2, 4, 7, 6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: frozen_conv(conv, t, torch.double), (x,))
    assert torch.autograd.gradcheck(lambda t: norm_swish(norm, t, torch.double), (x,))
    x32, norm32 = x.detach().float(), norm.float()
    h = norm32(x32)
    assert torch.equal(norm_swish(norm32, x32, torch.float32), h * torch.sigmoid(h))  # taming's exact fp32 ops


def test_trainable_decoder_weights_fall_back_to_taming(ref_models):
    vq = ref_models.vqgan
    cfg = merge_layers([("ref", torch.load(REFERENCE, weights_only=True)["job"]), ("t", {"steps": 1})])
    assert Generation(cfg, ref_models, torch.device("cpu"), 0).lean
    vq.decoder.conv_out.weight.requires_grad_(True)
    try:
        assert not Generation(cfg, ref_models, torch.device("cpu"), 0).lean
    finally:
        vq.decoder.conv_out.weight.requires_grad_(False)


def test_bf16_stays_within_tolerance_of_fp32(ref_models, one_thread):
    job = torch.load(REFERENCE, weights_only=True)["job"]
    out = {}
    for precision in ("fp32", "bf16"):
        gen = Generation(merge_layers([("ref", job), ("t", {"precision": precision})]), ref_models,
                         torch.device("cpu"), 11)
        torch.manual_seed(0)
        image = gen.decode()
        loss = torch.stack(list(gen.losses(image).values())).sum()
        loss.backward()
        out[precision] = (image.detach(), loss.item(), gen.z.grad.flatten().clone())
    (i32, l32, g32), (i16, l16, g16) = out["fp32"], out["bf16"]
    assert (i16 - i32).abs().mean() <= 0.02
    assert abs(l16 - l32) <= 0.02 * abs(l32)
    assert F.cosine_similarity(g16, g32, dim=0) >= 0.95
    ref, res = reference_run(ref_models, precision="bf16")
    assert (res.image - ref["image"]).abs().mean() <= 0.05


def test_lean_decode_under_autocast_returns_bf16_close_to_fp32(ref_models):
    vq = ref_models.vqgan
    z = torch.randn(1, vq.embed_dim, 4, 4, generator=torch.Generator().manual_seed(1))
    h = vq.post_quant_conv(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = lean_decode(vq.decoder, h)
    assert low.dtype == torch.bfloat16
    full = vq.decoder(h)
    assert (low.float() - full).abs().mean() <= 0.02 * full.abs().mean() + 1e-3
