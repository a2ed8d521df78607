"""vqclip's step against the reference, and the speed work changes no result.

One whole fp32 step of vqclip (the same latent, boxes, Kornia parameters and noise) gives the loss, the latent
gradient and the updated latent of the textbook step (benchmarks/textbook_loop.py: the notebook's quantizer, clamp,
cutouts by adaptive average pooling and prompt loss on taming's Decoder and stock open_clip modules) within 1e-5
relative. The lean decoder equals taming's; micro-batching and `memory: low` equal one pass; bf16 stays within a
stated tolerance of fp32 (decoded image mean |diff| <= 0.02, loss within 2%, gradient cosine >= 0.95, and after 6
steps the image mean |diff| <= 0.05).
"""

import pytest
import torch
import torch.nn.functional as F

from reference import textbook
from tiny import CLIP_CFG, write_clip, write_vqgan
from vqclip.nets.checkpoints import load_state_dict
from vqclip.config import merge_layers
from runs import Run
from vqclip.nets.load import Models
from vqclip.runs.pipeline import generate
from vqclip.nets.clip import load_clip
from vqclip.nets.vqgan import load_vqgan, vqgan_spec
from vqclip.nets.lean import decode_latent, frozen_conv, lean_decode, norm_swish

JOB = {"prompt": "a red circle:1|blurry:-0.3", "steps": 6, "seed": 11, "size": [64, 48], "precision": "fp32",
       "device": "cpu", "cutouts": {"n": 6, "augments": ["affine", "perspective", "noise"]}, "optimizer": {"lr": 0.2},
       "tv_weight": 0.05}


@pytest.fixture(scope="module")
def ref_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ref")
    return write_vqgan(tmp / "vq"), write_clip(tmp / "clip")


@pytest.fixture(scope="module")
def ref_models(ref_files):
    (vq_yaml, vq_ckpt), (cj, cw) = ref_files
    return Models(load_vqgan(vq_yaml, vq_ckpt), [(load_clip(str(cj), str(cw)), 1.0)])


@pytest.fixture
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def run(models, **over):
    return generate(merge_layers([("ref", JOB), ("test", over)]), models)


@pytest.fixture(scope="module")
def textbook_models(ref_files, ref_models):
    """The same weights in the reference's own modules: taming's Encoder/Decoder and an unmodified open_clip CLIP."""
    from open_clip.model import CLIP
    from open_clip.tokenizer import SimpleTokenizer

    (vq_yaml, _), (_, cw) = ref_files
    dd, n_embed, embed_dim, _, _ = vqgan_spec(vq_yaml)
    vq = ref_models.vqgan
    model = textbook.TextbookVQGAN(dd, n_embed, embed_dim)
    state = {k: v for k, v in vq.state_dict().items() if not k.startswith("quantize.")}
    model.load_state_dict({**state, "embedding.weight": vq.codebook}, strict=True)
    perceptor = CLIP(**CLIP_CFG)
    perceptor.load_state_dict(load_state_dict(cw))
    return (model.eval().requires_grad_(False), perceptor.eval().requires_grad_(False),
            SimpleTokenizer(context_length=CLIP_CFG["text_cfg"]["context_length"]))


@pytest.mark.parametrize("over", [{}, {"init": {"weight": 0.4}}])
def test_one_fp32_step_is_the_textbook_step(ref_models, textbook_models, one_thread, over):
    model, perceptor, tokenizer = textbook_models
    cfg = merge_layers([("ref", {**JOB, "tv_weight": 0.0}), ("test", over)])  # the notebook has no TV term
    gen = Run(cfg, ref_models, torch.device("cpu"), 11)
    clip = ref_models.clips[0][0]
    torch.manual_seed(0)
    draw = gen.cutouts[clip.image_size].draw(1, gen.height, gen.width, torch.Generator().manual_seed(1))
    sides = (draw.boxes[:, 2] - draw.boxes[:, 0]).tolist()
    assert min(sides) > clip.image_size and len(set(sides)) > 1  # every cutout is resampled, at several scales
    z0 = gen.z.detach().clone()
    with torch.no_grad():  # start away from z_init, so that the init term has a gradient
        gen.z.add_(0.1 * torch.randn(z0.shape, generator=torch.Generator().manual_seed(2)))
    z = gen.z.detach().clone().requires_grad_(True)

    event = gen.step(views=[draw])

    cuts = textbook.MakeCutouts(clip.image_size, cfg.cutouts.n)
    prompts = [textbook.Prompt(perceptor.encode_text(tokenizer([text])).float(), weight)
               for text, weight in (("a red circle", 1.0), ("blurry", -0.3))]
    mean, std = clip.mean, clip.std
    loss = textbook.textbook_loss(model, perceptor, z, prompts, cuts, mean, std,
                                  fixed=(draw.boxes, [p.data for p in draw.augment], draw.noise),
                                  z_orig=z0, init_weight=2 * cfg.init.weight)  # vqclip's init.weight is half of it
    opt = torch.optim.Adam([z], lr=cfg.optimizer.lr)
    loss.backward()
    opt.step()
    cb = model.embedding.weight
    with torch.no_grad():
        z.copy_(z.maximum(cb.min(0).values[None, :, None, None]).minimum(cb.max(0).values[None, :, None, None]))

    assert event.loss == pytest.approx(loss.item(), rel=1e-5)
    assert ("init" in event.losses) == bool(over)
    assert (gen.z.grad - z.grad).norm() <= 1e-5 * z.grad.norm()
    # Adam's first update is lr * g / (|g| + eps): the same wherever g is not within rounding of eps
    clear = z.grad.abs() > 1e-6
    assert clear.float().mean() > 0.9
    torch.testing.assert_close(gen.z.detach()[clear], z.detach()[clear], rtol=0, atol=1e-5)
    assert (gen.z.detach() - z.detach()).abs().max() <= 1e-3 * cfg.optimizer.lr


def test_micro_batches_and_low_memory_match_one_pass(ref_models, one_thread):
    plain = run(ref_models)
    for over in ({"micro_batch": 4}, {"memory": "low"}):
        res = run(ref_models, **over)
        assert (res.image - plain.image).abs().max() <= 1e-4, over
        assert torch.allclose(torch.tensor(res.losses), torch.tensor(plain.losses), rtol=1e-5), over


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
    cfg = merge_layers([("ref", JOB), ("t", {"steps": 1})])
    assert Run(cfg, ref_models, torch.device("cpu"), 0).lean
    vq.decoder.conv_out.weight.requires_grad_(True)
    try:
        assert not Run(cfg, ref_models, torch.device("cpu"), 0).lean
    finally:
        vq.decoder.conv_out.weight.requires_grad_(False)


def test_bf16_stays_within_tolerance_of_fp32(ref_models, one_thread):
    job = JOB
    out = {}
    for precision in ("fp32", "bf16"):
        gen = Run(merge_layers([("ref", job), ("t", {"precision": precision})]), ref_models,
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
    full, low = run(ref_models), run(ref_models, precision="bf16")
    assert 0 < (low.image - full.image).abs().mean() <= 0.05


def test_lean_decode_under_autocast_returns_bf16_close_to_fp32(ref_models):
    vq = ref_models.vqgan
    z = torch.randn(1, vq.embed_dim, 4, 4, generator=torch.Generator().manual_seed(1))
    h = vq.post_quant_conv(z)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = lean_decode(vq.decoder, h)
    assert low.dtype == torch.bfloat16
    full = vq.decoder(h)
    assert (low.float() - full).abs().mean() <= 0.02 * full.abs().mean() + 1e-3
