"""VQGAN from taming YAML + Lightning ckpt/safetensors (VQModel, GumbelVQ, wrapped), CLIP from open_clip JSON."""

import json
import logging
import os

import numpy as np
import pytest
import torch
import yaml

from tiny import CLIP_CFG, DDCONFIG, vqgan_yaml, write_clip, write_vqgan
from vqclip.config import merge_layers
from vqclip.errors import VqclipError
from vqclip.nets.clip import load_clip
from vqclip.nets.vqgan import load_vqgan
from vqclip.nets.quantize import vector_quantize


@pytest.mark.parametrize("gumbel", [False, True])
@pytest.mark.parametrize("fmt", ["ckpt", "safetensors"])
def test_vqgan_loads_published_layouts(tmp_path, gumbel, fmt):
    cfg, ckpt = write_vqgan(tmp_path, gumbel=gumbel, fmt=fmt)
    model = load_vqgan(cfg, ckpt)
    assert model.gumbel is gumbel and model.factor == 4 and model.codebook.shape == (32, 8)
    assert not any(p.requires_grad for p in model.parameters()) and not model.training
    image = torch.rand(2, 3, 32, 48)
    z = model.encode(image)
    assert z.shape == (2, 8, 8, 12)
    # encode returns codebook vectors exactly
    assert torch.equal(vector_quantize(z, model.codebook), z)
    out = model.decode(z)
    assert out.shape == (2, 3, 32, 48) and torch.isfinite(out).all()


def test_weights_really_load(tmp_path):
    cfg, ckpt = write_vqgan(tmp_path, seed=1)
    _, ckpt2 = write_vqgan(tmp_path / "b", seed=2)
    a, b = load_vqgan(cfg, ckpt), load_vqgan(cfg, ckpt2)
    assert not torch.equal(a.codebook, b.codebook)
    assert torch.equal(load_vqgan(cfg, ckpt).decoder.conv_out.weight, a.decoder.conv_out.weight)


def test_factor_and_sizes_come_from_yaml(tmp_path):
    dd = dict(DDCONFIG, ch_mult=[1, 1, 2, 2], z_channels=4)
    (tmp_path / "f8.yaml").write_text(yaml.safe_dump(vqgan_yaml(ddconfig=dd, n_embed=64)))
    from safetensors.torch import save_file

    from vqclip.nets.vqgan import VQGAN

    save_file(VQGAN(dd, 64, 4).state_dict(), tmp_path / "f8.safetensors")
    model = load_vqgan(tmp_path / "f8.yaml", tmp_path / "f8.safetensors")
    assert model.factor == 8 and model.codebook.shape == (64, 4)
    assert model.decode(model.encode(torch.rand(1, 3, 64, 64))).shape == (1, 3, 64, 64)


def test_net2net_wrapper_loads_first_stage(tmp_path):
    cfg, ckpt = write_vqgan(tmp_path)
    inner = yaml.safe_load(cfg.read_text())["model"]
    wrapped = {"model": {"target": "taming.models.cond_transformer.Net2NetTransformer",
                         "params": {"first_stage_config": inner, "cond_stage_config": "__is_unconditional__"}}}
    (tmp_path / "wrapped.yaml").write_text(yaml.safe_dump(wrapped))
    from vqclip.nets.checkpoints import load_state_dict
    from safetensors.torch import save_file

    state = {f"first_stage_model.{k}": v for k, v in load_state_dict(ckpt).items()}
    state["transformer.tok_emb.weight"] = torch.zeros(4, 4)
    save_file(state, tmp_path / "wrapped.safetensors")
    model = load_vqgan(tmp_path / "wrapped.yaml", tmp_path / "wrapped.safetensors")
    assert torch.equal(model.codebook, load_vqgan(cfg, ckpt).codebook)


def test_yaml_weights_mismatch_is_one_line_naming_both(tmp_path):
    cfg, _ = write_vqgan(tmp_path / "a")
    dd = dict(DDCONFIG, ch=64)
    (tmp_path / "big.yaml").write_text(yaml.safe_dump(vqgan_yaml(ddconfig=dd)))
    _, ckpt = write_vqgan(tmp_path / "a")
    with pytest.raises(VqclipError) as info:
        load_vqgan(tmp_path / "big.yaml", ckpt)
    msg = str(info.value)
    assert "\n" not in msg and str(ckpt) in msg and "big.yaml" in msg and "mis-shaped" in msg


@pytest.mark.parametrize("text,match", [
    ("model: {target: taming.models.vqgan.EMAVQ, params: {}}", "EMAVQ"),
    ("model: {target: taming.models.vqgan.VQModel, params: {n_embed: 3}}", "lacks"),
    ("model: [unclosed", "not valid YAML"),
    ("- just a list", "top-level"),
])
def test_bad_vqgan_yaml(tmp_path, tiny_vqgan, text, match):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(VqclipError, match=match):
        load_vqgan(tmp_path / "bad.yaml", tiny_vqgan[1])


@pytest.mark.parametrize("change,match", [
    ({"params": [1, 2]}, "model.params must be a mapping"),
    ({"ddconfig": dict(DDCONFIG, ch_mult=[])}, "do not build a taming VQGAN"),  # taming: UnboundLocalError
    ({"n_embed": 0}, "do not build a taming VQGAN"),  # taming: ZeroDivisionError
    ({"n_embed": -5}, "do not build a taming VQGAN"),
])
def test_vqgan_yaml_with_impossible_params(tmp_path, tiny_vqgan, change, match):
    data = vqgan_yaml(ddconfig=change.get("ddconfig"), n_embed=change.get("n_embed", 32))
    if "params" in change:
        data["model"]["params"] = change["params"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(VqclipError, match=match) as info:
        load_vqgan(tmp_path / "bad.yaml", tiny_vqgan[1])
    assert "\n" not in str(info.value)


def test_clip_from_json_and_weights(tmp_path):
    j, w = write_clip(tmp_path, seed=0)
    clip = load_clip(str(j), str(w))
    assert clip.image_size == 32 and clip.context_length == 16
    text = clip.encode_text(["a red circle", "a blue square"])
    image = clip.encode_image(torch.rand(3, 3, 32, 32))
    assert text.shape == (2, 32) and image.shape == (3, 32)
    assert torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)
    j2, w2 = write_clip(tmp_path / "other", seed=1, fmt="pt")
    other = load_clip(str(j2), str(w2))
    assert not torch.allclose(other.encode_text(["a red circle"]), text[:1])


def test_clip_hf_style_config_and_random_weights(tmp_path, caplog):
    (tmp_path / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CFG,
                                                                "preprocess_cfg": {"mean": [0.5] * 3, "std": [0.5] * 3}}))
    with caplog.at_level(logging.INFO, logger="vqclip"):
        clip = load_clip(str(tmp_path / "open_clip_config.json"))
    assert "random weights" in caplog.text
    assert torch.allclose(clip.mean, torch.full((1, 3, 1, 1), 0.5))


def test_long_prompt_truncated_with_notice(tiny_clip, caplog):
    clip = load_clip(str(tiny_clip[0]), str(tiny_clip[1]))
    with caplog.at_level(logging.INFO, logger="vqclip"):
        emb = clip.encode_text(["a very long prompt " * 20])
    assert emb.shape == (1, 32) and "truncated" in caplog.text


def test_clip_errors(tmp_path, tiny_clip):
    with pytest.raises(VqclipError, match="unknown CLIP model"):
        load_clip("ViT-Nope-99")
    with pytest.raises(VqclipError, match="no such CLIP architecture"):
        load_clip(str(tmp_path / "missing.json"))
    (tmp_path / "bad.json").write_text('{"embed_dim": 8}')
    with pytest.raises(VqclipError, match="needs embed_dim"):
        load_clip(str(tmp_path / "bad.json"))
    with pytest.raises(VqclipError, match="neither a pretrained tag"):
        load_clip("ViT-B-32", "not-a-tag")
    bigger = dict(CLIP_CFG, embed_dim=64)
    (tmp_path / "bigger.json").write_text(json.dumps(bigger))
    with pytest.raises(VqclipError, match="does not match"):
        load_clip(str(tmp_path / "bigger.json"), str(tiny_clip[1]))


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_clip_weights_that_are_unsafe_or_unreadable_say_so(tmp_path, tiny_clip):
    """Weights files are judged by the VQGAN's safe loader: refused or unreadable, not 'does not match' (whose
    open_clip message suggested weights_only=False)."""
    torch.save({"state_dict": {}, "x": _RunsCode()}, tmp_path / "evil.pt")
    (tmp_path / "text.bin").write_text("this is not a checkpoint\n")
    for arch in (str(tiny_clip[0]), "ViT-B-32"):
        with pytest.raises(VqclipError, match="evil.pt: refused: .*could run code"):
            load_clip(arch, str(tmp_path / "evil.pt"))
        with pytest.raises(VqclipError, match="text.bin: not a PyTorch checkpoint"):
            load_clip(arch, str(tmp_path / "text.bin"))


def test_clip_from_a_hugging_face_style_folder(tmp_path):
    _, weights = write_clip(tmp_path / "src", seed=3)
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CFG}))
    (folder / "open_clip_model.safetensors").write_bytes(weights.read_bytes())
    from_folder = load_clip(str(folder))
    direct = load_clip(str(tmp_path / "src" / "clip.json"), str(weights))
    assert torch.equal(from_folder.encode_text(["a red circle"]), direct.encode_text(["a red circle"]))
    (folder / "other.bin").write_bytes(b"x")
    (folder / "open_clip_model.safetensors").rename(folder / "a.safetensors")
    with pytest.raises(VqclipError, match="several weights files"):
        load_clip(str(folder))


def test_clip_towers_needing_timm_or_transformers_fail_in_one_line(tmp_path, monkeypatch):
    """timm / Hugging Face towers and tokenizers without their packages (or hub): a VqclipError, not a traceback."""
    monkeypatch.setattr("open_clip.timm_model.timm", None)
    monkeypatch.setattr("open_clip.hf_model.transformers", None)
    monkeypatch.setitem(__import__("sys").modules, "transformers", None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    configs = {"timm": dict(CLIP_CFG, vision_cfg={"timm_model_name": "resnet18", "image_size": 32}),
               "hf-text": dict(CLIP_CFG, text_cfg={"hf_model_name": "roberta-base", "hf_tokenizer_name": "roberta-base"}),
               "siglip": dict(CLIP_CFG, text_cfg=dict(CLIP_CFG["text_cfg"], hf_tokenizer_name="timm/ViT-B-16-SigLIP"))}
    for name, cfg in configs.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(cfg))
        with pytest.raises(VqclipError, match=f"{name}.json: (open_clip cannot build|cannot load its Hugging)") as info:
            load_clip(str(tmp_path / f"{name}.json"))
        assert "\n" not in str(info.value)


@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch.jit.script is deprecated
def test_openai_torchscript_clip_is_refused_before_open_clip(tmp_path, tiny_clip, recwarn):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "ViT-B-32.pt")
    for arch in (str(tiny_clip[0]), "ViT-B-32"):
        with pytest.raises(VqclipError, match="refused: a TorchScript archive"):
            load_clip(arch, str(tmp_path / "ViT-B-32.pt"))
    assert not [w for w in recwarn if "TorchScript" in str(w.message)]


OFFLINE_SCORE = """
import logging, sys, open_clip
from vqclip.cli import main
def offline(*args, **kwargs):
    logging.info("Parsing model identifier")  # open_clip's style: sets up the root logger unless one exists
    logging.getLogger("huggingface_hub.utils._http").warning("Retrying in 1s [Retry 1/5].")
    logging.error("Failed to download weights")
    raise OSError("Name or service not known")
open_clip.pretrained.download_pretrained = offline
import vqclip.models.clipweights
vqclip.models.clipweights.unreachable_host = lambda url: None  # as if online, so the download is tried and fails
sys.exit(main(["score", sys.argv[1], "--prompt", "x", "--device", "cpu"]))
"""


@pytest.fixture(scope="module", autouse=True)
def _offline_score(request, tmp_path_factory):
    """The process of the failed-download test, started with the module when that test is to run: a fresh
    interpreter importing torch and open_clip (~4 s) runs beside the tests before it instead of being waited out."""
    import sys

    from PIL import Image

    from early import selected, started

    if not selected(request, test="test_a_failed_clip_download_prints_our_error_not_the_librarys_log"):
        yield None
        return
    where = tmp_path_factory.mktemp("offline")
    Image.new("RGB", (8, 8)).save(where / "a.png")
    with started([sys.executable, "-c", OFFLINE_SCORE, str(where / "a.png")], where / "home") as proc:
        yield proc


def test_a_failed_clip_download_prints_our_error_not_the_librarys_log(_offline_score):
    """huggingface_hub's retry warnings and open_clip's root-logger messages stay off the terminal (no network: the
    download is a stand-in that logs as they do and fails)."""
    _, stderr = _offline_score.communicate(timeout=120)
    err = [line for line in stderr.strip().splitlines() if not line.startswith("note: fetching CLIP")]
    assert _offline_score.returncode == 2 and err[0].startswith("error: could not download 1 file"), stderr
    assert not any(word in stderr for word in ("Retrying", "Parsing", "Failed to download")), stderr
    assert "CLIP ViT-B-32 (openai) weights" in err[1] and "Name or service not known" in err[2]


# ---- images are prepared as open_clip prepares them for the model -------------------------------------------------

def _hf_clip(folder, weights, preprocess):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": CLIP_CFG, "preprocess_cfg": preprocess}))
    (folder / "open_clip_model.safetensors").write_bytes(weights.read_bytes())
    return load_clip(str(folder))


def _wide_image(path):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    pixels = (torch.rand(40, 90, 3, generator=g) * 255).byte().numpy()
    pixels[:, :30] = (255, 0, 0)  # a red band that a centre crop drops and a squash keeps
    Image.fromarray(pixels).save(path)
    return path


@pytest.mark.parametrize("preprocess", [{}, {"resize_mode": "squash", "interpolation": "bilinear"},
                                        {"resize_mode": "longest", "fill_color": 255, "mean": [0.5] * 3,
                                         "std": [0.25] * 3}])
def test_image_embeddings_use_open_clips_own_transform(tmp_path, preprocess):
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    _, weights = write_clip(tmp_path / "src", seed=3)
    clip = _hf_clip(tmp_path / "hf", weights, preprocess)
    path = _wide_image(tmp_path / "wide.png")
    transform = image_transform_v2(PreprocessCfg(size=32, **preprocess), is_train=False)
    expected = clip.encode_normalized(transform(Image.open(path).convert("RGB"))[None])
    torch.testing.assert_close(clip.embed_images([Image.open(path).convert("RGB")]), expected)
    tensor = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1) / 255
    if preprocess.get("resize_mode") != "longest":  # open_clip's 'longest' transform takes PIL images only
        torch.testing.assert_close(clip.embed_images(tensor), clip.encode_normalized(transform(tensor)[None]))
    else:
        torch.testing.assert_close(clip.embed_images(tensor), expected, rtol=1e-4, atol=1e-4)


def test_an_image_prompt_is_embedded_through_the_models_preprocessing(tmp_path, tiny_job, tiny_vqgan):
    """A squash model sees the whole image prompt; a shortest-side model its centre (open_clip's default)."""
    from open_clip.transform import PreprocessCfg, image_transform_v2
    from PIL import Image

    from runs import Run
    from vqclip.nets.load import Models

    _, weights = write_clip(tmp_path / "src", seed=3)
    path = _wide_image(tmp_path / "wide.png")
    embeds = {}
    for mode in ("squash", "shortest"):
        clip = _hf_clip(tmp_path / mode, weights, {"resize_mode": mode})
        cfg = merge_layers([("tiny", tiny_job), ("t", {"prompt": "", "image_prompts": [f"{path}:0.5"]})])
        gen = Run(cfg, Models(load_vqgan(*tiny_vqgan), [(clip, 1.0)]), torch.device("cpu"), 0)
        transform = image_transform_v2(PreprocessCfg(size=32, resize_mode=mode), is_train=False)
        expected = clip.encode_normalized(transform(Image.open(path).convert("RGB"))[None])
        torch.testing.assert_close(gen.targets[0], expected)
        embeds[mode] = expected
    assert not torch.allclose(embeds["squash"], embeds["shortest"], atol=1e-3)


def test_a_tags_preprocessing_is_the_one_open_clip_sets_on_the_model(monkeypatch, tmp_path):
    """For a pretrained tag, open_clip.create_model records the tag's preprocessing on `model.visual`; vqclip takes
    that (here a model set up as open_clip sets up a 'squash', bilinear tag)."""
    import open_clip
    from open_clip.model import CLIP

    def create_model(name, pretrained=None, **kwargs):
        model = CLIP(**CLIP_CFG)
        model.visual.preprocess_cfg = {"size": 32, "mode": "RGB", "mean": (0.1, 0.2, 0.3), "std": (0.5, 0.5, 0.5),
                                       "interpolation": "bilinear", "resize_mode": "squash", "fill_color": 0}
        return model

    monkeypatch.setattr(open_clip, "create_model", create_model)
    monkeypatch.setattr(open_clip, "get_pretrained_cfg", lambda name, tag: {"hf_hub": "x/y/", "mean": (0.9,) * 3})
    monkeypatch.setattr(open_clip, "get_tokenizer", lambda name: open_clip.tokenizer.SimpleTokenizer(context_length=16))
    from vqclip.nets.clip import _clip_by_name

    clip = _clip_by_name("ViT-B-32", "some-tag", None)
    pre = clip.preprocess_cfg
    assert (pre.resize_mode, pre.interpolation, tuple(pre.mean)) == ("squash", "bilinear", (0.1, 0.2, 0.3))
    torch.testing.assert_close(clip.mean.flatten(), torch.tensor([0.1, 0.2, 0.3]))
