"""The value checks of a job (vqclip/config/checks.py), at every boundary: for each limit the value at the limit is
accepted and the first value past it refused, on both sides, with one line naming the key and the value; and
`check_inputs`, which opens the files a job reads before anything heavy runs."""

from __future__ import annotations

import copy
import functools
import struct
import zlib

import pytest
from PIL import Image

from vqclip.config import GenerateConfig, check, check_inputs, merge_layers
from vqclip.config.checks import upscaler_is_path
from vqclip.config.job import ClipConfig, StoryKeyframe
from vqclip.errors import PATH_SHOWN, VqclipError

@functools.cache
def base() -> GenerateConfig:
    """The defaults with a prompt: valid (built once, when first asked: a broken check fails tests, not the import)."""
    return merge_layers([("job", {"prompt": "a red circle"})])


def job(**values) -> GenerateConfig:
    """The defaults with dotted keys set (`cutouts.min_size`, `clip[1].weight`), unchecked."""
    cfg = copy.deepcopy(base())
    for dotted, value in values.items():
        *path, last = dotted.replace("__", ".").split(".")
        node = cfg
        for part in path:
            name, _, index = part.partition("[")
            node = getattr(node, name)
            node = node[int(index[:-1])] if index else node
        name, _, index = last.partition("[")
        if index:
            getattr(node, name)[int(index[:-1])] = value
        else:
            setattr(node, name, value)
    return cfg


def refused(cfg: GenerateConfig) -> str:
    with pytest.raises(VqclipError) as info:
        check(cfg)
    message = str(info.value)
    assert "\n" not in message and len(message) < 300, message
    return message


TWO_CLIPS = {"clip": [ClipConfig(), ClipConfig("ViT-B-16")]}
RESTYLE = {"restyle.input": "in.mp4"}

# (key, other settings the rule needs, values at or inside the limits, the first values past them, message start)
BOUNDARIES = [
    ("seed", {}, [-2**63, 2**63 - 1, 0, None], [2**63, -2**63 - 1], "seed: must be a 64-bit integer"),
    ("threads", {}, [0, 1], [-1], "threads: must be >= 0"),
    ("steps", {}, [0, 1], [-1], "steps: must be >= 0"),
    ("size", {}, [[1, 1], [4096, 4096], [4096, 1], [1, 4096]],
     [[0, 64], [64, 0], [4097, 64], [64, 4097], [64], [64, 64, 64]],
     "size: expected two sides (width height) in 1..4096"),
    ("tv_weight", {}, [0.0, 2.0], [-1e-9], "tv_weight: must be >= 0"),
    ("init.weight", {}, [0.0, 1.0], [-1e-9], "init.weight: must be >= 0"),
    ("cutouts.noise", {}, [0.0, 1.0], [-1e-9], "cutouts.noise: must be >= 0"),
    ("optimizer.min_factor", {}, [0.0, 1.0], [-1e-9], "optimizer.min_factor: must be >= 0"),
    ("clip[1].weight", TWO_CLIPS, [0.0, 0.5], [-0.001], "clip[1].weight: must be >= 0"),
    ("cutouts.n", {}, [1, 2], [0, -1], "cutouts.n: must be >= 1"),
    ("cutouts.pow", {}, [1e-6, 1.0, 3.0], [0.0, -1.0], "cutouts.pow: must be > 0"),
    ("cutouts.min_size", {}, [0.0, 1.0, 0.5], [-0.001, 1.001], "cutouts.min_size: must be in [0, 1]"),
    ("optimizer.lr", {}, [1e-9, 0.1], [0.0, -0.1], "optimizer.lr: must be > 0"),
    ("init.color", {"init.kind": "flat"}, [None, [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]],
     [[-0.01, 0.0, 0.0], [0.0, 0.0, 1.01], [0.5, 0.5], [0.5, 0.5, 0.5, 0.5]], "init.color: expected three values"),
    ("micro_batch", {}, [0, 1], [-1], "micro_batch: must be >= 0"),
    ("output.save_every", {}, [0, 1], [-1], "output.save_every: must be >= 0"),
    ("output.fps", {}, [1, 60], [0, -1], "output.fps: must be >= 1"),
    ("candidates.n", {}, [1, 2], [0], "candidates: n, steps and views must be >= 1"),
    ("candidates.steps", {}, [1], [0], "candidates: n, steps and views must be >= 1"),
    ("candidates.views", {}, [1], [0], "candidates: n, steps and views must be >= 1"),
    ("n", {}, [1, 2], [0, -1], "n: must be >= 1"),
    ("candidates.keep", {"candidates.n": 3, "n": 3}, [1, 3], [0, 4], "candidates.keep: must be in 1..candidates.n (3"),
    ("candidates.rank", {"candidates.n": 3}, [0, 2], [-1, 3], "candidates.rank: must be in 0..candidates.n - 1 (2)"),
    ("n", {"candidates.n": 3, "candidates.keep": 2}, [1, 2], [3], "candidates.keep (2) makes that many images"),
    ("guide.weight", {}, [0.0, 1.0], [-1e-9], "guide.weight: must be >= 0"),
    ("guide.views", {}, [1], [0], "guide.views: must be >= 1"),
    ("change_every", {}, [0, 5], [-1], "change_every: must be >= 0"),
    ("state_every", {}, [0, 5], [-1], "state_every: must be >= 0"),
    ("animation.every", {}, [1, 10], [0], "animation.every: must be >= 1"),
    ("animation.zoom", {}, [1e-6, 1.0, 1.05, "0:1, 10:1e-6"], [0.0, -1.0, "0:1, 10:0"], "animation.zoom: the scale"),
    ("restyle.steps_per_frame", RESTYLE, [1], [0], "restyle.steps_per_frame: must be >= 1"),
    ("restyle.blend", RESTYLE, [0.0, 0.999], [1.0, -0.001], "restyle.blend: must be in [0, 1)"),
    ("restyle.max_frames", RESTYLE, [0, 3], [-1], "restyle.max_frames: must be >= 0"),
    ("restyle.fps", RESTYLE, [None, 1e-6], [0.0, -1.0], "restyle.fps: must be > 0"),
    ("output.video_length", {}, [None, 1e-6], [0.0, -1.0], "output.video_length: must be > 0"),
    ("output.gif_max_side", {}, [None, 8, 512], [7, 0], "output.gif_max_side: must be >= 8"),
    ("output.upscale.scale", {}, [None, 1, 4], [0, -1], "output.upscale.scale: must be >= 1"),
    ("output.upscale.tile", {}, [0, 32, 192], [31, 1, -1], "output.upscale.tile: must be >= 32"),
]


@pytest.mark.parametrize("key, other, good, bad, message", BOUNDARIES, ids=[f"{r[0]}-{i}" for i, r in
                                                                           enumerate(BOUNDARIES)])
def test_each_limit_is_accepted_and_the_first_value_past_it_refused(key, other, good, bad, message):
    for value in good:
        check(job(**other, **{key: value}))
    for value in bad:
        text = refused(job(**other, **{key: value}))
        assert text.startswith(message), (value, text)


ENUMS = [
    ("optimizer.name", ["adam", "adamw", "sgd", "rmsprop", "radam", "nadam", "adamax", "adagrad", "ADAM", "Sgd"],
     ["lbfgs", "", "adam "]),
    ("optimizer.schedule", ["constant", "cosine", "linear"], ["Cosine", "step"]),
    ("init.kind", ["random", "pixels", "gradient", "flat", "background"], ["rand", "Random"]),
    ("precision", ["auto", "fp32", "bf16"], ["fp16", "FP32"]),
    ("memory", ["auto", "normal", "low"], ["lowest"]),
    ("output.video_format", ["mp4", "gif"], ["webm", "MP4"]),
    ("story_mode", ["switch", "blend"], ["fade"]),
    ("animation.mode", ["none", "zoom"], ["pan", "None"]),
    ("animation.padding", ["reflection", "border", "zeros", "outpaint"], ["wrap", "reflect", "Outpaint"]),
    ("cutouts.augments", [[], ["affine"], ["perspective"], ["flip"], ["jitter"], ["sharpness"], ["erasing"], ["noise"],
                          ["noise", "affine", "flip"]], [["blur"], ["affine", "blur"]]),
]


@pytest.mark.parametrize("key, good, bad", ENUMS, ids=[r[0] for r in ENUMS])
def test_a_named_choice_is_one_of_the_documented_names(key, good, bad):
    for value in good:
        check(job(**{key: value}))
    for value in bad:
        text = refused(job(**{key: value}))
        assert text.startswith(f"{key}: unknown value ") and "; use one of " in text, (value, text)


def test_a_device_is_auto_cpu_cuda_cuda_n_or_mps():
    for name in ("auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"):
        check(job(device=name))  # only named here: whether it exists is asked when the run starts
    for name in ("tpu", "cuda:", "cuda:x", "gpu", "CPU", "cpu "):
        assert refused(job(device=name)).startswith("device: unknown device")


FLOATS = ["tv_weight", "init.weight", "cutouts.noise", "cutouts.pow", "cutouts.min_size", "optimizer.lr",
          "optimizer.min_factor", "clip[0].weight", "guide.weight", "restyle.blend", "restyle.fps",
          "output.video_length", "animation.zoom", "animation.rotate"]


@pytest.mark.parametrize("key", FLOATS)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")], ids=["nan", "inf", "-inf"])
def test_no_number_is_nan_or_infinite(key, bad):
    assert refused(job(**{key: bad})).startswith(f"{key}: must be a finite number")


def test_numbers_inside_lists_and_list_items_are_finite_too():
    assert refused(job(**{"init.kind": "flat", "init.color": [0.5, float("nan"), 0.5]})).startswith(
        "init.color: must be a finite number")
    story = [StoryKeyframe(0, "a"), StoryKeyframe(5, "b", float("inf"))]
    assert refused(job(prompt="", story=story)).startswith("story[1].weight: must be a finite number")


@pytest.mark.parametrize("key", ["prompt", "negative", "model", "output.dir", "clip[0].model", "story"])
def test_no_text_holds_a_nul_byte(key):
    value = {"negative": ["a\0b"], "story": [StoryKeyframe(0, "a\0b")]}.get(key, "a\0b")
    extra = {"prompt": ""} if key == "story" else {}
    text = refused(job(**extra, **{key: value}))
    where = {"negative": "negative[0]", "story": "story[0].prompt"}.get(key, key)
    assert text.startswith(f"{where}: 'a\\x00b' contains a NUL byte"), text


PATHS = [("output.dir", {}), ("init.image", {"init.kind": "image"}), ("vqgan.config", {}), ("vqgan.checkpoint", {}),
         ("restyle.input", {}), ("image_prompts", {}), ("clip[0].model", {}), ("clip[0].pretrained", {}),
         ("guide.model", {"guide.weights": "w.safetensors"}), ("guide.weights", {"guide.model": "g.json"}),
         ("candidates.clip", {})]


@pytest.mark.parametrize("key, other", PATHS, ids=[p[0] for p in PATHS])
def test_a_file_name_of_255_bytes_passes_and_256_is_refused(key, other, tmp_path, monkeypatch):
    """NAME_MAX is 255 on Linux filesystems: one byte more can name no file, which the checks say up front."""
    monkeypatch.chdir(tmp_path)

    def named(name):
        if key == "image_prompts":
            return job(**other, image_prompts=[name])
        if key == "candidates.clip":
            return job(**other, **{"candidates.clip": [ClipConfig(name + ".json", None)]})
        return job(**other, **{key: name})

    check(named("a" * 250))
    text = refused(named("a" * 256))
    where = {"image_prompts": "image_prompts[0]", "candidates.clip": "candidates.clip[0].model"}.get(key, key)
    name = "a" * 256 + (".json" if key == "candidates.clip" else "")
    keep = (PATH_SHOWN - 3) // 2  # a name past PATH_SHOWN is shown by its start and its end (errors.cut_path)
    assert text == f"{where}: '{name[:keep]}...{name[-keep:]}' is too long a name for the filesystem; check the path"


def test_the_clip_list_needs_one_model_with_a_positive_weight():
    assert refused(job(clip=[])) == "clip: at least one CLIP model is needed"
    assert refused(job(clip=[ClipConfig(weight=0.0)])) == "clip: at least one CLIP model needs a positive weight"
    check(job(clip=[ClipConfig(weight=0.0), ClipConfig("ViT-B-16", weight=1e-6)]))
    assert refused(job(clip=[ClipConfig("")])).startswith("clip[0]: expected an open_clip name")
    assert refused(job(**{"candidates.clip": [ClipConfig(weight=0.0)]})).startswith(
        "candidates.clip: at least one scoring model needs a positive weight")
    check(job(**{"candidates.clip": [ClipConfig(weight=0.0), ClipConfig(weight=0.1)]}))
    assert refused(job(**{"candidates.clip": [ClipConfig(weight=-1.0), ClipConfig()]})).startswith(
        "candidates.clip[0].weight: must be >= 0")


def test_best_of_n_is_for_a_still_image():
    check(job(**{"candidates.n": 1, "animation.mode": "zoom"}))
    check(job(**{"candidates.n": 1, "restyle.input": "in.mp4"}))
    for other in ({"animation.mode": "zoom"}, {"restyle.input": "in.mp4"}):
        assert refused(job(**{"candidates.n": 2}, **other)).startswith("candidates.n > 1 picks the best start")
    assert refused(job(**{"restyle.input": "in.mp4", "animation.mode": "zoom"})).startswith(
        "restyle.input and animation.mode: zoom cannot be combined")


def test_the_guide_takes_both_files_or_neither():
    check(job(**{"guide.model": "g.json", "guide.weights": "g.safetensors"}))
    for given in ({"guide.model": "g.json"}, {"guide.weights": "g.safetensors"}):
        assert refused(job(**given)).startswith("guide: give both model")


def test_an_init_image_is_the_start_and_the_start_image_needs_an_image():
    check(job(**{"init.kind": "image", "init.image": "x.png"}))
    assert refused(job(**{"init.kind": "image"})).startswith("init.kind is 'image' but init.image is not set")
    assert refused(job(**{"init.kind": "random", "init.image": "x.png"})).startswith(
        "init.kind is 'random' but init.image is set")  # a config built by hand; merged layers never hold it


def test_a_prompt_or_story_that_cannot_run_is_refused_before_the_run():
    assert "empty part between" in refused(job(prompt="a||b"))
    assert "empty story part" in refused(job(prompt="a ^ ^ b"))
    assert refused(job(prompt="a ^ b", story=[StoryKeyframe(0, "c")])).startswith("give the story either as")
    assert "nothing to aim at" in refused(job(prompt="", story=[StoryKeyframe(0, "a:-1")]))
    check(job(prompt="", story=[StoryKeyframe(0, "a:-1")], image_prompts=["ref.png"]))  # the image pulls throughout
    assert "two keyframes at step 3" in refused(job(prompt="", story=[StoryKeyframe(3, "a"), StoryKeyframe(3, "b")]))


@pytest.mark.parametrize("name, is_path", [
    ("4x-ultrasharp", False), ("realesrgan-x4plus", False), ("w.pth", True), ("W.SAFETENSORS", True), ("a/b", True),
    ("a\\b", True), ("./x", True), ("~/x", True), ("x.ckpt", True), ("x.bin", True), ("x.pt", True), (" w.pth ", True),
    ("x.pthx", False),
])
def test_an_upscaler_is_a_path_when_it_looks_like_one(name, is_path):
    assert upscaler_is_path(name) is is_path


# ---- check_inputs: the files a job reads ----

def png_header(path, width: int, height: int):
    """A PNG that claims width x height, with a few bytes of pixel data: what PIL's bomb check reads."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


def inputs_refused(cfg) -> str:
    with pytest.raises(VqclipError) as info:
        check_inputs(cfg)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_inputs_name_both_missing_model_files_at_once(tmp_path):
    cfg = job(**{"vqgan.config": str(tmp_path / "v.yaml"), "vqgan.checkpoint": str(tmp_path / "v.ckpt")})
    text = inputs_refused(cfg)
    assert "vqgan.config:" in text and "vqgan.checkpoint:" in text and text.endswith("check the VQGAN paths")
    (tmp_path / "v.yaml").write_text("model: {}")
    assert inputs_refused(cfg).startswith("vqgan.checkpoint:")
    text = inputs_refused(job(**{"guide.model": str(tmp_path / "g.json"), "guide.weights": str(tmp_path / "g.st")}))
    assert "guide.model:" in text and "guide.weights:" in text and text.endswith("check the guide paths")


def test_an_upscaler_file_must_exist_a_preset_name_is_not_looked_for(tmp_path):
    assert inputs_refused(job(**{"output.upscale.model": str(tmp_path / "w.pth")})).startswith(
        "output.upscale.model:")
    check_inputs(job(**{"output.upscale.model": "realesrgan-x4plus"}))
    (tmp_path / "w.pth").write_bytes(b"weights")
    check_inputs(job(**{"output.upscale.model": str(tmp_path / "w.pth")}))


@pytest.mark.parametrize("width, height, why", [(20000, 20000, "exceeds limit of 178956970 pixels"),
                                                (12000, 12000, "exceeds limit of 89478485 pixels")],
                         ids=["bomb-error", "bomb-warning"])
def test_an_init_image_and_an_image_prompt_are_opened_and_a_bomb_is_refused(tmp_path, width, height, why):
    """Both of PIL's bomb branches (over twice its limit: an error; over it: a warning) are one line here."""
    bomb = png_header(tmp_path / "bomb.png", width, height)
    for cfg in (merge_layers([("job.yaml", {"prompt": "x", "init": {"image": str(bomb)}})]),
                job(image_prompts=[str(bomb)])):
        text = inputs_refused(cfg)
        assert text.startswith(f"{bomb}: not a readable image") and why in text, text


def test_an_image_prompt_with_a_weight_that_is_no_number_says_so(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "ref.png")
    assert inputs_refused(job(image_prompts=[f"{tmp_path / 'ref.png'}:abc"])) == (
        f"image_prompts: '{tmp_path / 'ref.png'}:abc': the weight 'abc' after the image is not a number; write "
        f"PATH:WEIGHT, e.g. {tmp_path / 'ref.png'}:0.5")
    check_inputs(job(image_prompts=[f"{tmp_path / 'ref.png'}:0.5"]))


def test_a_restyle_video_must_exist(tmp_path):
    cfg = job(**{"restyle.input": str(tmp_path / "in.mp4")})
    assert inputs_refused(cfg) == f"restyle.input: {tmp_path / 'in.mp4'}: no such video file; check the path"
    (tmp_path / "in.mp4").write_bytes(b"x")
    check_inputs(cfg)
