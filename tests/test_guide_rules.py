"""The guide's rules at their edges: each limit of its JSON and the first value past it, what the network computes
(written out here: resize, [-1,1], its layers), and which prompt word names a label."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from vqclip.errors import VqclipError
from vqclip.nets.guide import Guide, GuideSpec, prompt_label, read_spec

OK = {"labels": ["circle", "square"], "widths": [8], "strides": [1], "groups": 4, "image_size": 16}


@pytest.mark.parametrize("change, good", [
    ({"image_size": 8}, True), ({"image_size": 7}, False), ({"image_size": 8.0}, False), ({"image_size": True}, False),
    ({"groups": 8}, True), ({"groups": 0}, False), ({"groups": 16}, False), ({"groups": True}, False),
    ({"strides": [0]}, False), ({"strides": [2]}, True), ({"widths": [0], "groups": 1}, False), ({"widths": []}, False),
    ({"labels": ["_none", "circle"]}, True), ({"labels": ["__x", "circle"]}, False), ({"labels": ["a_b", "c"]}, False),
    ({"labels": ["circle", "square", "Tri9"]}, True), ({"labels": ["circle", 3]}, False), ({"labels": "ab"}, False),
])
def test_each_limit_of_the_json_and_the_first_value_past_it(tmp_path, change, good):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({**OK, **change}))
    if good:
        spec = read_spec(path)
        assert all(getattr(spec, k) == (tuple(v) if isinstance(v, list) else v) for k, v in change.items())
    else:
        with pytest.raises(VqclipError) as info:
            read_spec(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_defaults_and_the_json_round_trip(tmp_path):
    path = tmp_path / "g.json"
    path.write_text(json.dumps({"labels": ["a", "b"], "widths": [8], "strides": [1]}))
    spec = read_spec(path)
    assert (spec.groups, spec.image_size, spec.kind) == (8, 64, "cnn")
    path.write_text(spec.to_json())
    assert read_spec(path) == spec


def test_the_network_is_the_documented_stack():
    """3x3 convs (stride, padding 1) + GroupNorm + SiLU, average pooling, one linear layer; images resized with
    antialiased bilinear to its input size and mapped to [-1, 1]."""
    spec = GuideSpec(labels=("a", "b", "c"), widths=(8, 12), strides=(2, 1), groups=4, image_size=16)
    torch.manual_seed(0)
    guide = Guide(spec).eval()
    image = torch.rand(2, 3, 24, 20)
    x = F.interpolate(image, size=(16, 16), mode="bilinear", align_corners=False, antialias=True) * 2 - 1
    convs = [m for m in guide.net if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in guide.net if isinstance(m, torch.nn.GroupNorm)]
    for conv, norm, stride in zip(convs, norms, spec.strides):
        assert conv.kernel_size == (3, 3) and conv.padding == (1, 1) and norm.num_groups == 4
        x = F.silu(F.group_norm(F.conv2d(x, conv.weight, conv.bias, stride, 1), 4, norm.weight, norm.bias))
    linear = guide.net[-1]
    expected = F.linear(x.mean((2, 3)), linear.weight, linear.bias)
    torch.testing.assert_close(guide(image), expected, rtol=1e-5, atol=1e-6)
    same = torch.rand(1, 3, 16, 16)  # already its size: not resampled
    x = same * 2 - 1
    for conv, norm, stride in zip(convs, norms, spec.strides):
        x = F.silu(F.group_norm(F.conv2d(x, conv.weight, conv.bias, stride, 1), 4, norm.weight, norm.bias))
    torch.testing.assert_close(guide(same), F.linear(x.mean((2, 3)), linear.weight, linear.bias), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("prompt, expected", [
    ("SQUARES and circles", 1), ("circle-ish square", 0), ("a circles2 thing", None), ("a squaress", None),
    ("", None), ("square", 1), ("a big circle", 0)])
def test_the_label_is_the_first_whole_word_naming_one(prompt, expected):
    assert prompt_label(prompt, ("circle", "square", "_none")) == expected
