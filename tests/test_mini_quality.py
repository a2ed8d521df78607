"""The shipped mini weights: real-checkpoint formats, loaded by the real loaders, and measurably good."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from vqclip.cli import main as vqclip_main
from vqclip.mini import WEIGHTS_DIR, judge, world
from vqclip.nets.clip import load_clip
from vqclip.nets.vqgan import load_vqgan, vqgan_spec

SHIPPED = {"vqgan.yaml", "vqgan.safetensors", "clip.json", "clip.safetensors", "guide.json", "guide.safetensors",
           "judge.json", "judge.safetensors", "MODEL_CARD.md", "defaults.yaml"}


def _tensors(path):
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_weights_are_in_the_formats_of_real_checkpoints():
    assert {p.name for p in WEIGHTS_DIR.iterdir()} <= SHIPPED
    assert {"vqgan.yaml", "vqgan.safetensors", "clip.json", "clip.safetensors", "MODEL_CARD.md"} <= {
        p.name for p in WEIGHTS_DIR.iterdir()}
    ddconfig, n_embed, embed_dim, gumbel, prefix = vqgan_spec(WEIGHTS_DIR / "vqgan.yaml")
    assert (ddconfig["resolution"], len(ddconfig["ch_mult"]), gumbel, prefix) == (64, 4, False, "")  # f8 at 64 px
    vq = _tensors(WEIGHTS_DIR / "vqgan.safetensors")
    assert all(t.dtype == torch.float16 for t in vq.values())
    assert vq["quantize.embedding.weight"].shape == (n_embed, embed_dim)
    assert {k.split(".")[0] for k in vq} == {"encoder", "decoder", "quant_conv", "post_quant_conv", "quantize"}
    cfg = json.loads((WEIGHTS_DIR / "clip.json").read_text())
    assert cfg["vision_cfg"]["image_size"] == 64 and cfg["text_cfg"]["vocab_size"] == 49408
    clip = _tensors(WEIGHTS_DIR / "clip.safetensors")
    assert all(t.dtype == torch.float16 for t in clip.values())
    assert "token_embedding.weight" in clip and "visual.conv1.weight" in clip
    assert all(t.dtype == torch.float16 for t in _tensors(WEIGHTS_DIR / "guide.safetensors").values())
    size = sum((WEIGHTS_DIR / n).stat().st_size for n in ("vqgan.safetensors", "clip.safetensors", "guide.safetensors"))
    assert size <= 40 * 2**20


@pytest.fixture(scope="module")
def mini_clip():
    return load_clip(str(WEIGHTS_DIR / "clip.json"), str(WEIGHTS_DIR / "clip.safetensors"))


def test_mini_clip_zero_shot_on_held_out_scenes(mini_clip):
    imgs, _, scenes = world.make_dataset(96, seed=2024)
    prompts = world.all_prompts()
    with torch.no_grad():
        t = mini_clip.encode_text(prompts)
        f = mini_clip.encode_image(torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255)
    pred = [world.parse_caption(prompts[k]) for k in (f @ t.t()).argmax(1).tolist()]
    truth = [world.attributes(s) for s in scenes]
    for key in ("color", "background", "shape"):
        assert np.mean([getattr(p, key) == getattr(a, key) for p, a in zip(pred, truth)]) >= 0.9, key


def test_mini_clip_prefers_one_object_to_copies(mini_clip):
    """The hard negatives worked: 'a red circle' matches one red circle better than two."""
    one = world.render(world.Scene("blue", (world.Shape("circle", "red", 32, 32, 14),)))
    two = world.render(world.Scene("blue", (world.Shape("circle", "red", 18, 18, 10),
                                            world.Shape("circle", "red", 46, 44, 10)), 2))
    x = torch.from_numpy(np.stack([one, two])).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        s = mini_clip.encode_image(x) @ mini_clip.encode_text(["a red circle on a blue background"]).t()
    assert s[0, 0] > s[1, 0]


def test_mini_guide_tells_the_kinds_from_near_misses():
    """The shipped guide, on held-out scenes as generation shows them (through the VQGAN): kinds right, near misses
    (lumpy outlines, rectangles) called near misses far more often than proper shapes are."""
    from vqclip.nets.guide import load_guide
    from vqclip.mini.train import guide as tg

    guide = load_guide(WEIGHTS_DIR / "guide.json", WEIGHTS_DIR / "guide.safetensors")
    vq = load_vqgan(WEIGHTS_DIR / "vqgan.yaml", WEIGHTS_DIR / "vqgan.safetensors")
    imgs, _, scenes = world.make_dataset(60, seed=2025)
    rng = np.random.default_rng(2025)
    near = np.stack([tg.lumpy_scene(rng) for _ in range(30)] + [tg.rectangle_scene(rng) for _ in range(30)])
    with torch.no_grad():
        x = torch.from_numpy(np.concatenate([imgs, near])).permute(0, 3, 1, 2).float() / 255
        pred = guide(vq.decode(vq.encode(x)).clamp(0, 1)).argmax(1)
    kinds = torch.tensor([world.SHAPES.index(s.shapes[0].kind) for s in scenes])
    assert (pred[:60] == kinds).float().mean() >= 0.9
    assert (pred[60:] == tg.NONE).float().mean() >= (pred[:60] == tg.NONE).float().mean() + 0.3


def test_mini_vqgan_reconstructs_held_out_scenes():
    vq = load_vqgan(WEIGHTS_DIR / "vqgan.yaml", WEIGHTS_DIR / "vqgan.safetensors")
    imgs, caps, _ = world.make_dataset(16, seed=2024)
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        rec = vq.decode(vq.encode(x)).clamp(0, 1)
    psnr = 10 * torch.log10(1 / ((rec - x) ** 2).flatten(1).mean(1))
    assert psnr.mean() >= 22
    assert sum(judge.judge(r, c).all for r, c in zip(rec, caps)) >= 14


@pytest.mark.slow
# one prompt (a 15 s run, the suite's longest): every prompt runs the same code (the green circle on blue that ran
# beside it took the same branches); the triangle is the shape the guide had to pull clean, the benchmark the rest
def test_generate_with_the_mini_preset_is_judged_right(tmp_path):
    """`vqclip generate --model mini` end to end, judged in pixel space (a prompt the benchmark gets right on 2
    seeds)."""
    prompt = "a blue triangle on a black background"
    code = vqclip_main(["generate", prompt, "--model", "mini", "--seed", "0", "--out", str(tmp_path / "run"),
                        "--save-every", "0", "--no-video", "--quiet"])
    assert code == 0
    image = Image.open(tmp_path / "run" / "final.png")
    assert image.size == (64, 64)
    v = judge.judge(image, prompt)
    assert v.all, v
