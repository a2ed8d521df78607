"""The flow estimators (vqclip/nets/flow.py): OpenCV's DIS and Farneback recover a known shift of a textured image in
the documented direction (a(p) ~ b(p + flow(p))); RAFT-small, with random weights in torchvision's layout, gets its
input as RAFT needs it (in [-1,1], sides multiples of 8 and >= 128), gives the last refined flow cropped back, without
autograd, and loads strictly; a missing OpenCV or an unknown method is one line."""

import ast
import sys
import types
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchvision.models.optical_flow import raft_large, raft_small

from vqclip.errors import VqclipError
from vqclip.nets import flow as flow_mod
from vqclip.nets.flow import load_flow

SHIFT = (3, -2)  # (dx, dy) in pixels
ROOT = Path(__file__).resolve().parent.parent


def shifted_pair(dx: int, dy: int, side: int = 48):
    """Two crops a, b [1,3,side,side] of one smooth random texture with b(p + (dx, dy)) = a(p)."""
    g = torch.Generator().manual_seed(0)
    big = F.interpolate(torch.rand(1, 3, 24, 24, generator=g), size=(side + 16, side + 16), mode="bicubic",
                        align_corners=False).clamp(0, 1)
    a = big[:, :, 8:8 + side, 8:8 + side]
    b = big[:, :, 8 - dy:8 - dy + side, 8 - dx:8 - dx + side]
    return a, b


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_opencv_flow_recovers_a_known_shift(method):
    a, b = shifted_pair(*SHIFT)
    flow = load_flow(method, "cpu")(a, b)
    assert flow.shape == (1, 2, 48, 48) and flow.dtype == torch.float32
    inner = flow[0, :, 8:-8, 8:-8]  # away from the edges, where the shift brings in what a does not show
    assert (inner[0] - SHIFT[0]).abs().mean() < 0.25 and (inner[1] - SHIFT[1]).abs().mean() < 0.25
    back = load_flow(method, "cpu")(b, a)[0, :, 8:-8, 8:-8]  # the other way: the opposite shift
    assert (back[0] + SHIFT[0]).abs().mean() < 0.25 and (back[1] + SHIFT[1]).abs().mean() < 0.25
    assert torch.equal(load_flow(method, "cpu")(a, b), flow)  # deterministic on the CPU: a resume sees the same flow


def test_opencv_flow_runs_per_frame_of_a_batch():
    a1, b1 = shifted_pair(2, 1)
    a2, b2 = shifted_pair(-1, 3)
    flow = load_flow("dis", "cpu")(torch.cat([a1, a2]), torch.cat([b1, b2]))[:, :, 8:-8, 8:-8]
    assert flow.shape[0] == 2
    assert (flow[0, 0] - 2).abs().mean() < 0.25 and (flow[1, 0] + 1).abs().mean() < 0.25
    assert (flow[0, 1] - 1).abs().mean() < 0.25 and (flow[1, 1] - 3).abs().mean() < 0.25


def test_a_missing_opencv_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    with pytest.raises(VqclipError, match=r"pip install 'vqclip\[flow\]'"):
        load_flow("dis", "cpu")


def test_unknown_method_and_mismatched_frames_are_one_line():
    with pytest.raises(VqclipError, match="unknown flow method 'raft'.*dis, farneback, raft-small"):
        load_flow("raft", "cpu")
    with pytest.raises(VqclipError, match="one shape"):
        load_flow("dis", "cpu")(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 24))


@pytest.fixture(scope="module")
def raft_file(tmp_path_factory):
    """Random RAFT-small weights in torchvision's state-dict layout, as the published file holds them."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("raft") / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), path)
    return path


def test_raft_weights_load_strictly_from_the_preset(raft_file, monkeypatch, tmp_path):
    asked = []
    monkeypatch.setattr(flow_mod, "raft_weights", lambda home: asked.append(home) or raft_file)
    model = load_flow("raft-small", "cpu", home_dir=tmp_path)
    assert asked == [tmp_path]
    want = torch.load(raft_file, weights_only=True)
    got = model.net.state_dict()
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    assert not model.net.training


def test_raft_small_reads_the_raft_small_preset(raft_file, monkeypatch, tmp_path):
    """Without a weights file, the preset's file (`vqclip.models.auxmodels.aux_file`, stood in here) is read."""
    asked = []
    fake = types.ModuleType("vqclip.models.auxmodels")
    fake.aux_file = lambda name, **kw: asked.append((name, kw)) or raft_file
    monkeypatch.setitem(sys.modules, "vqclip.models.auxmodels", fake)
    load_flow("raft-small", "cpu", home_dir=tmp_path)
    assert asked == [("raft-small", {"home_dir": tmp_path})]


def test_raft_refuses_weights_of_another_layout(tmp_path):
    wrong = tmp_path / "large.pth"
    torch.save(raft_large(weights=None).state_dict(), wrong)
    with pytest.raises(VqclipError, match="not torchvision's raft_small weights") as err:
        load_flow("raft-small", "cpu", weights=wrong)
    assert "\n" not in str(err.value)
    partial = tmp_path / "partial.pth"
    state = raft_small(weights=None).state_dict()
    state.pop(next(iter(state)))
    torch.save(state, partial)
    with pytest.raises(VqclipError, match="Missing key"):
        load_flow("raft-small", "cpu", weights=partial)


def test_raft_pads_scales_and_crops(raft_file):
    model = load_flow("raft-small", "cpu", weights=raft_file)
    seen = []

    def fake(x, y, num_flow_updates):
        """Records RAFT's input; its flows: a ramp over the padded image (the last one, x 2, is the one to use)."""
        seen.append((x.clone(), y.clone(), num_flow_updates))
        n, _, h, w = x.shape
        ramp = torch.arange(h * w, dtype=torch.float32).reshape(1, 1, h, w).expand(n, 2, h, w)
        return [ramp, ramp * 2]

    model.net.forward = fake
    a, b = torch.zeros(1, 3, 30, 130), torch.ones(1, 3, 30, 130)
    out = model(a, b)
    x, y, updates = seen[0]
    assert x.shape == y.shape == (1, 3, 128, 136) and updates == 12
    assert torch.all(x == -1) and torch.all(y == 1)  # [0,1] scaled to [-1,1], padding repeats the edge
    ramp = torch.arange(128 * 136, dtype=torch.float32).reshape(128, 136)
    assert out.shape == (1, 2, 30, 130) and torch.equal(out[0, 1], 2 * ramp[:30, :130])  # top left: the frame


def test_raft_runs_without_autograd(raft_file):
    model = load_flow("raft-small", "cpu", weights=raft_file)
    a = torch.rand(2, 3, 24, 40, requires_grad=True)
    out = model(a, torch.rand(2, 3, 24, 40))
    assert out.shape == (2, 2, 24, 40) and out.dtype == torch.float32
    assert not out.requires_grad and torch.isfinite(out).all()


@pytest.mark.parametrize("module", ["nets/flow.py", "terms/flow.py", "modes/stabilise.py", "optim/flowwarp.py"])
def test_the_flow_modules_import_neither_opencv_nor_torchvision_at_module_level(module):
    """A restyle imports these: OpenCV and RAFT load only when a method that needs them is loaded (a static check of
    the module's top-level imports; a subprocess importing torch would cost seconds of the suite)."""
    tree = ast.parse((ROOT / "vqclip" / module).read_text())
    top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    names = [a.name for n in top if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
    assert not [n for n in names if n.split(".")[0] in ("cv2", "torchvision")], names
