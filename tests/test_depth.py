"""The 3D camera's depth model: Depth-Anything-V2-Small in the published checkpoint's exact layout (the key list
recorded from the original project), loaded weights-only and strictly, its backbone equal to timm's, DINOv2's
position-table resize, the input rule (aspect kept, multiples of 14, ImageNet normalisation) and the output contract
(image size, >= 0, no autograd). Random weights in the published layout; one file written per session."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from vqclip.errors import UnsafeCheckpointError, VqclipError
from vqclip.nets import depth as depth_mod
from vqclip.nets.depth import DepthAnythingV2, DepthModel, input_size, load_depth, pos_embed_for

ROOT = Path(__file__).resolve().parents[1]
PUBLISHED = json.loads((Path(__file__).parent / "data" / "depth_anything_v2_vits_keys.json").read_text())["keys"]
MEAN, STD = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])  # ImageNet


def _random_state() -> dict[str, torch.Tensor]:
    """Seeded random tensors in the published layout (norm scales and layer scales near 1, the rest small)."""
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=g) * 0.05 + (1.0 if k.endswith((".gamma", "norm1.weight", "norm2.weight",
                                                                           "norm.weight")) else 0.0)
            for k, shape in PUBLISHED.items()}


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    """(a .pth in the published layout written with torch.save, its tensors)."""
    state = _random_state()
    path = tmp_path_factory.mktemp("depth") / "depth_anything_v2_vits.pth"
    torch.save(state, path)
    return path, state


@pytest.fixture(scope="module")
def model(weights) -> DepthModel:
    return load_depth(str(weights[0]))


def test_our_model_has_the_published_checkpoints_keys_and_shapes_exactly():
    with torch.device("meta"):
        net = DepthAnythingV2()
    assert {k: list(v.shape) for k, v in net.state_dict().items()} == PUBLISHED
    assert len(PUBLISHED) == 239 and sum(torch.Size(s).numel() for s in PUBLISHED.values()) == 24_785_089  # 24.8M


def test_a_random_checkpoint_in_that_layout_loads_weights_only_and_strictly(weights, model, monkeypatch):
    path, state = weights
    loaded = model.net.state_dict()
    assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
    assert all(not p.requires_grad for p in model.net.parameters()) and not model.net.training
    assert model.device == torch.device("cpu") and model.name == path.name
    seen = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: seen.append(k.get("weights_only")) or real(*a, **k))
    small = {k: v[..., :1].contiguous() for k, v in state.items()}  # a wrong file: shapes do not fit
    torch.save(small, path.with_name("small.pth"))
    with pytest.raises(VqclipError, match=r"small.pth: not Depth-Anything-V2-Small weights \('pretrained.cls_token' "
                                          r"is \(1, 1, 1\), expected \(1, 1, 384\)\)"):
        load_depth(str(path.with_name("small.pth")))
    assert seen == [True]  # read with torch's weights-only unpickler, never the full one


def test_the_same_weights_as_safetensors_load_too(weights, tmp_path, model):
    path = tmp_path / "depth.safetensors"
    save_file(weights[1], path)
    image = torch.rand(1, 3, 28, 28)
    assert torch.equal(load_depth(str(path))(image, 28), model(image, 28))


class _System:
    """Unpickling this runs a shell command that makes the marker file."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_hostile_pickle_is_refused_in_one_line_and_nothing_runs(tmp_path, legacy):
    marker, path = tmp_path / "pwned", tmp_path / "evil.pth"
    torch.save({"pretrained.cls_token": torch.zeros(1, 1, 384), "x": _System(marker)}, path,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(UnsafeCheckpointError, match="refused") as info:
        load_depth(str(path))
    assert not marker.exists() and "\n" not in str(info.value)


@pytest.mark.parametrize("change, named", [
    (lambda s: s.pop("depth_head.scratch.refinenet2.out_conv.bias"),
     "lacks 1 key\\(s\\), e.g. 'depth_head.scratch.refinenet2.out_conv.bias'"),
    (lambda s: s.update({"pretrained.register_tokens": torch.zeros(1, 4, 384)}),
     "has 1 unknown key\\(s\\), e.g. 'pretrained.register_tokens'"),
    (lambda s: s.update({"depth_head.projects.0.weight": torch.zeros(96, 384, 1, 1)}),
     "'depth_head.projects.0.weight' is \\(96, 384, 1, 1\\), expected \\(48, 384, 1, 1\\)"),
], ids=["missing", "extra", "shape"])
def test_a_file_with_a_missing_extra_or_misshapen_key_is_one_line_naming_it(weights, monkeypatch, change, named):
    state = dict(weights[1])
    change(state)
    monkeypatch.setattr(depth_mod, "load_state_dict", lambda path: state)
    with pytest.raises(VqclipError, match=f"^{weights[0]}: not Depth-Anything-V2-Small weights \\({named}\\); use "
                                          "depth_anything_v2_vits.pth$"):
        load_depth(str(weights[0]))


def test_a_missing_file_is_one_line(tmp_path):
    with pytest.raises(VqclipError, match="nope.pth: no such depth model weights file; check the path"):
        load_depth(str(tmp_path / "nope.pth"))


def test_the_backbone_features_are_timms_dinov2_on_the_same_weights(model):
    import timm

    vit = model.net.pretrained
    with torch.device("meta"):
        ref = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=28)
    own = {k: v for k, v in vit.state_dict().items() if k != "mask_token"}
    own["pos_embed"] = pos_embed_for(vit.pos_embed, 2, 2)  # timm's table for its 2x2 grid: no resize inside
    ref.load_state_dict(own, strict=True, assign=True)
    x = torch.randn(2, 3, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model.net.features(x)
        theirs = ref.get_intermediate_layers(x, n=[2, 5, 8, 11], norm=True)
    assert len(ours) == 4 and all(a.shape == (2, 4, 384) for a in ours)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def _reference_head(w: dict[str, torch.Tensor], tokens: list[torch.Tensor], ph: int, pw: int) -> torch.Tensor:
    """The published DPT head written out with torch's functional ops on the state dict's tensors (the original's
    dpt.py and util/blocks.py): projections, resizes (4x, 2x, 1x, 1/2x), 3x3 `layerN_rn`, fusion from the coarsest
    (residual units, bilinear corners-aligned upsampling, 1x1 out conv), output convs, ReLUs: [B,1,14ph,14pw]."""
    def conv(x, name, **kw):
        return F.conv2d(x, w[f"depth_head.{name}.weight"], w.get(f"depth_head.{name}.bias"), **kw)

    def unit(x, name):
        return conv(F.relu(conv(F.relu(x), f"{name}.conv1", padding=1)), f"{name}.conv2", padding=1) + x

    def fuse(name, x, skip=None, size=None):
        if skip is not None:
            x = x + unit(skip, f"scratch.{name}.resConfUnit1")
        x = unit(x, f"scratch.{name}.resConfUnit2")
        x = F.interpolate(x, size=size, scale_factor=None if size else 2, mode="bilinear", align_corners=True)
        return conv(x, f"scratch.{name}.out_conv")

    maps = []
    for i, t in enumerate(tokens):
        x = conv(t.transpose(1, 2).reshape(t.shape[0], -1, ph, pw), f"projects.{i}")
        r = f"depth_head.resize_layers.{i}"
        x = (F.conv_transpose2d(x, w[f"{r}.weight"], w[f"{r}.bias"], stride=4 if i == 0 else 2) if i < 2 else
             x if i == 2 else conv(x, f"resize_layers.{i}", stride=2, padding=1))
        maps.append(conv(x, f"scratch.layer{i + 1}_rn", padding=1))
    path = fuse("refinenet4", maps[3], size=maps[2].shape[2:])
    path = fuse("refinenet3", path, maps[2], size=maps[1].shape[2:])
    path = fuse("refinenet2", path, maps[1], size=maps[0].shape[2:])
    path = fuse("refinenet1", path, maps[0])
    out = F.interpolate(conv(path, "scratch.output_conv1", padding=1), (ph * 14, pw * 14), mode="bilinear",
                        align_corners=True)
    return F.relu(conv(F.relu(conv(out, "scratch.output_conv2.0", padding=1)), "scratch.output_conv2.2"))


@pytest.mark.parametrize("ph, pw", [(2, 2), (3, 2)])
def test_the_head_is_the_published_dpt_head_on_the_same_weights(model, weights, ph, pw):
    g = torch.Generator().manual_seed(4)
    tokens = [torch.randn(2, ph * pw, 384, generator=g) for _ in range(4)]
    with torch.no_grad():
        ours = model.net.depth_head(tokens, ph, pw)
    want = _reference_head(weights[1], tokens, ph, pw)
    assert ours.shape == (2, 1, 14 * ph, 14 * pw) and (want < 0).sum() == 0 and want.max() > 0
    torch.testing.assert_close(ours, want, atol=1e-5, rtol=1e-4)


def _keys_cubic(x: torch.Tensor, a: float = -0.75) -> torch.Tensor:
    x = x.abs()
    return torch.where(x <= 1, (a + 2) * x**3 - (a + 3) * x**2 + 1,
                       torch.where(x < 2, a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a, torch.zeros_like(x)))


def _dinov2_resize_matrix(side: int, out: int) -> torch.Tensor:
    """[out, side]: DINOv2's bicubic resize of `side` cells by the scale (out + 0.1) / side (half-pixel centres,
    Keys' cubic a = -0.75, edges clamped), written out."""
    m = torch.zeros(out, side, dtype=torch.float64)
    for i in range(out):
        src = (i + 0.5) * side / (out + 0.1) - 0.5
        base = int(torch.floor(torch.tensor(src)))
        for j in range(base - 1, base + 3):
            m[i, min(max(j, 0), side - 1)] += _keys_cubic(torch.tensor(src - j, dtype=torch.float64))
    return m


def test_the_position_table_is_resized_by_dinov2s_rule():
    g = torch.Generator().manual_seed(2)
    table = torch.randn(1, 1 + 37 * 37, 8, generator=g)
    assert pos_embed_for(table, 37, 37) is table  # the grid it was trained at: as is
    for ph, pw in ((2, 3), (5, 5), (40, 37)):
        got = pos_embed_for(table, ph, pw)
        grid = table[0, 1:].double().reshape(37, 37, 8)
        want = torch.einsum("ia,abc,jb->ijc", _dinov2_resize_matrix(37, ph), grid, _dinov2_resize_matrix(37, pw))
        assert got.shape == (1, 1 + ph * pw, 8) and torch.equal(got[:, 0], table[:, 0])
        torch.testing.assert_close(got[0, 1:].double(), want.reshape(ph * pw, 8), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("h, w, size, expected", [(32, 48, 28, (28, 42)), (48, 32, 28, (42, 28)),
                                                  (30, 30, 28, (28, 28)), (100, 30, 28, (98, 28)),
                                                  (64, 64, 518, (518, 518)), (1080, 1920, 518, (518, 924))])
def test_the_input_keeps_the_aspect_with_the_shorter_side_at_size_in_multiples_of_14(h, w, size, expected):
    assert input_size(h, w, size) == expected


class _Recorder(torch.nn.Module):
    """Records the input it gets; returns its first channel minus 1 (negative where the input is)."""

    def __init__(self):
        super().__init__()
        self.p = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def forward(self, x):
        self.seen.append(x)
        return x[:, :1] * 2 + self.p


def test_the_model_sees_the_image_normalised_at_the_input_size_and_answers_at_the_images():
    net = _Recorder()
    colour = torch.tensor([0.2, 0.5, 0.9])
    image = colour.view(1, 3, 1, 1).expand(2, 3, 30, 44).clone().requires_grad_(True)
    out = DepthModel(net, "rec")(image, 28)
    [seen] = net.seen
    assert seen.shape == (2, 3, 28, 42)  # 30x44 at side 28: shorter side 28, the other 41.07 -> 42
    torch.testing.assert_close(seen, ((colour - MEAN) / STD).view(1, 3, 1, 1).expand(2, 3, 28, 42))
    assert out.shape == (2, 1, 30, 44) and not out.requires_grad  # outside autograd, at the image's size
    torch.testing.assert_close(out, torch.full_like(out, float((0.2 - 0.485) / 0.229 * 2)))


@pytest.mark.parametrize("size, ok", [(14, True), (13, False), (15, False), (28, True), (0, False), (-14, False),
                                      (True, False), (28.0, False)])
def test_the_input_side_must_be_a_positive_multiple_of_14(model, size, ok):
    image = torch.rand(1, 3, 20, 20)
    if ok:
        assert model(image, size).shape == (1, 1, 20, 20)
    else:
        with pytest.raises(VqclipError, match=f"depth input size {size!r}: must be a positive multiple of 14"):
            model(image, size)


def test_depth_is_nonnegative_at_the_images_size_deterministic_and_image_dependent(model):
    g = torch.Generator().manual_seed(3)
    a, b = torch.rand(1, 3, 30, 44, generator=g), torch.rand(1, 3, 30, 44, generator=g)
    both = model(torch.cat([a, b]).requires_grad_(True), 28)
    assert both.shape == (2, 1, 30, 44) and not both.requires_grad and both.min() >= 0 and both.max() > 0
    torch.testing.assert_close(both[:1], model(a, 28), atol=1e-5, rtol=1e-5)  # one pass per image, batch or not
    assert torch.equal(model(a, 28), model(a, 28))
    assert (both[0] - both[1]).abs().max() > 1e-4  # another image, another map


def test_the_features_are_the_normed_patch_tokens_after_blocks_2_5_8_11(model):
    net, x = model.net, torch.randn(1, 3, 28, 28)
    with torch.no_grad():
        feats = net.features(x)
        out = net(x)
    with torch.no_grad():  # block i's output, normed, without the class token, is feature k
        patches = net.pretrained.patch_embed.proj(x).flatten(2).transpose(1, 2)
        tokens = torch.cat([net.pretrained.cls_token, patches], 1)
        tokens = tokens + pos_embed_for(net.pretrained.pos_embed, 2, 2)
        taken = []
        for i, blk in enumerate(net.pretrained.blocks):
            tokens = blk(tokens)
            taken.append(net.pretrained.norm(tokens)[:, 1:])
    for k, i in enumerate((2, 5, 8, 11)):
        torch.testing.assert_close(feats[k], taken[i])
    assert out.shape == (1, 1, 28, 28) and out.min() >= 0


BLOCK = """
import importlib.abc, sys
class NoTimm(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("timm blocked by the test")
sys.meta_path.insert(0, NoTimm())
"""


def test_importing_the_depth_model_or_building_a_job_imports_no_timm_and_without_it_loading_says_how(tmp_path):
    code = BLOCK + f"""
import vqclip, vqclip.nets.depth, vqclip.models.auxmodels
from vqclip.config import merge_layers
merge_layers([("t", {{"prompt": "x", "animation": {{"mode": "zoom"}}}})])
assert "timm" not in sys.modules
from vqclip.errors import VqclipError
try:
    vqclip.nets.depth.load_depth({str(tmp_path / 'w.pth')!r})
except VqclipError as exc:
    print("ERROR:", exc)
"""
    (tmp_path / "w.pth").write_bytes(b"")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == ("ERROR: the 3D camera's depth model needs timm, which is not installed; "
                           "pip install 'vqclip[depth]'\n")


def test_a_run_without_the_3d_camera_needs_no_timm(tmp_path, tiny_args, monkeypatch):
    from vqclip.cli import main

    monkeypatch.setitem(sys.modules, "timm", None)  # `import timm` now fails, as where it is not installed
    assert main(["generate", "a red circle", "--steps", "2", "--out", str(tmp_path / "out"), *tiny_args]) == 0
    assert (tmp_path / "out" / "final.png").is_file()
