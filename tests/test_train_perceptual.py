"""The perceptual term of `vqclip train vqgan` (vqclip.train.perceptual): taming's LPIPS built without downloads, its
VGG16 slices given torchvision's `features.N` weights (checked against running torchvision's layers in order), the
linear layers loaded, bad files refused, and nothing on disk said in one line."""

from __future__ import annotations

import logging

import pytest
import torch
import taming.modules.losses.lpips as taming_lpips
from torchvision.models import vgg as tv_vgg

from vqclip.errors import VqclipError
from vqclip.train.perceptual import build_lpips, find_lpips

CHANNELS = (64, 128, 256, 512, 512)
SLICE_ENDS = (4, 9, 16, 23, 30)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3: the layers LPIPS compares


class _Features:
    """torchvision's VGG16 without its 100M-parameter classifier (what taming's vgg16 keeps: `.features`)."""

    def __init__(self, pretrained=False):
        self.features = tv_vgg.make_layers(tv_vgg.cfgs["D"])


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """(lin file, vgg file, the VGG16 features they hold, the lin weights): random, in the published layouts."""
    folder = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    features = tv_vgg.make_layers(tv_vgg.cfgs["D"]).eval()
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, folder / "vgg16.pth")
    lin = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(CHANNELS)}
    torch.save(lin, folder / "vgg.pth")
    return folder / "vgg.pth", folder / "vgg16.pth", features, lin


@pytest.fixture()
def quick_vgg(monkeypatch):
    monkeypatch.setattr(taming_lpips.models, "vgg16", _Features)


def test_the_vgg_slices_hold_torchvisions_layers_in_order(weights, quick_vgg):
    lin_path, vgg_path, features, lin = weights
    lp = build_lpips(lin_path, vgg_path)
    x = torch.rand(1, 3, 32, 32)
    outs = lp.net(x)
    with torch.no_grad():
        for out, end in zip(outs, SLICE_ENDS):
            assert torch.allclose(out, features[:end](x), atol=1e-5)
    for i in range(5):
        assert torch.equal(getattr(lp, f"lin{i}").model[1].weight, lin[f"lin{i}.model.1.weight"])
    assert not lp.training and not any(p.requires_grad for p in lp.parameters())
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    assert lp(y, y).item() == 0 and lp(y, -y).item() > 0


def test_files_that_do_not_fit_are_one_line(weights, quick_vgg, tmp_path):
    lin_path, vgg_path, _, lin = weights
    torch.save({**lin, "lin4.model.1.weight": torch.rand(1, 256, 1, 1)}, tmp_path / "bad.pth")
    with pytest.raises(VqclipError, match="do not fit taming's LPIPS"):
        build_lpips(tmp_path / "bad.pth", vgg_path)
    torch.save({k: v for k, v in lin.items() if not k.startswith("lin0")}, tmp_path / "short.pth")
    with pytest.raises(VqclipError, match="do not fit taming's LPIPS"):
        build_lpips(tmp_path / "short.pth", vgg_path)
    (tmp_path / "torn.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(VqclipError, match="not readable"):
        build_lpips(lin_path, tmp_path / "torn.pth")


def test_without_the_files_it_is_none_and_says_how_to_add_them(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="vqclip"):
        assert find_lpips(tmp_path) is None
    assert "vqclip models download lpips-vgg vgg16-imagenet" in caplog.text


def test_both_files_on_disk_are_found_and_built(weights, quick_vgg, tmp_path, monkeypatch):
    lin_path, vgg_path, _, _ = weights
    import vqclip.train.perceptual as P

    asked = []
    monkeypatch.setattr(P, "aux_file", lambda name, **kw: asked.append((name, kw["download"])) or
                        {"lpips-vgg": lin_path, "vgg16-imagenet": vgg_path}[name])
    lp = find_lpips(tmp_path)
    assert isinstance(lp, taming_lpips.LPIPS)
    assert asked == [("lpips-vgg", False), ("vgg16-imagenet", False)]  # never a download during training


def test_the_presets_pin_the_files_taming_expects():
    import hashlib
    from pathlib import Path

    from taming.util import MD5_MAP

    from vqclip.models.auxmodels import get_aux

    lin, vgg = get_aux("lpips-vgg", kind="lpips"), get_aux("vgg16-imagenet", kind="lpips")
    assert vgg.file.filename == f"vgg16-{vgg.sha256_prefix}.pth"  # torchvision's name carries its sha256's start
    assert lin.file.size is not None and lin.file.sha256 is not None
    torchmetrics = pytest.importorskip("torchmetrics")  # ships the same LPIPS layers: taming's md5 says which file
    copy = Path(torchmetrics.__file__).parent / "functional" / "image" / "lpips_models" / "vgg.pth"
    if not copy.is_file():
        pytest.skip("torchmetrics without its LPIPS weights")
    data = copy.read_bytes()
    assert hashlib.md5(data).hexdigest() == MD5_MAP["vgg_lpips"]
    assert (hashlib.sha256(data).hexdigest(), len(data)) == (lin.file.sha256, lin.file.size)
