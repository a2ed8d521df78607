"""Each field of the A1111-style `parameters` chunk (vqclip/files/infotext.py) from a run's metadata, read back by
the web UI's reader written out in tests/test_infotext.py (not vqclip's), and vqclip's reader against that one on
hostile chunks."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from vqclip.config import merge_layers, to_dict
from vqclip.files.infotext import format_parameters, job_parameters, parse_parameters

from test_infotext import PAIR, a1111_read


def chunk(layer: dict, **meta) -> tuple[str, str, dict]:
    config = to_dict(merge_layers([("job", {"prompt": "a cat", "seed": 4, **layer})]))
    return a1111_read(job_parameters({"config": config, "seed": config["seed"], "steps_done": config["steps"],
                                      "versions": {"vqclip": "9.9"}, **meta}))


def test_a_plain_run_says_what_it_ran_and_leaves_out_what_it_did_not_use():
    prompt, negative, p = chunk({"steps": 20, "size": [64, 48], "vqgan": {"checkpoint": "/models/vq/f16.ckpt"}})
    assert (prompt, negative) == ("a cat", "")
    assert p == {"Steps": "20", "Seed": "4", "Size-1": "64", "Size-2": "48", "Model": "f16.ckpt",
                 "CLIP models": "ViT-B-32/openai", "Cutouts": "32", "Cut pow": "1", "Optimizer": "adam", "LR": "0.1",
                 "Init": "random", "Version": "vqclip 9.9"}


def test_each_optional_field_appears_when_it_was_used():
    _, negative, p = chunk({"model": "mini", "vqgan": {"checkpoint": "/w/vq.ckpt"}, "negative": ["blurry", "dark"],
                            "clip": [{"model": "ViT-B-16", "pretrained": "laion"},
                                     {"model": "/m/arch.json", "pretrained": "/m/w.safetensors", "weight": 0.5}],
                            "optimizer": {"schedule": "cosine", "lr": 0.05}, "tv_weight": 0.25,
                            "candidates": {"n": 3}, "image_prompts": ["ref.png:0.5"], "init": {"kind": "flat"}},
                           steps_done=7, stopped=True)
    assert negative == "blurry, dark"
    assert (p["Model"], p["VQGAN"]) == ("mini", "vq.ckpt")  # the preset; its VQGAN by file name
    assert p["CLIP models"] == "ViT-B-16/laion; arch.json/w.safetensors x0.5"  # paths as names, weights when not 1
    assert (p["LR schedule"], p["LR"], p["TV weight"], p["Candidates"]) == ("cosine", "0.05", "0.25", "3")
    assert (p["Steps"], p["Steps done"], p["Stopped"], p["Init"]) == ("300", "7", "true", "flat")
    assert p["Image prompts"] == "ref.png:0.5"


def test_a_story_a_zoom_and_a_restyle_are_named():
    assert chunk({"prompt": "a ^ b"})[2]["Story mode"] == "switch"
    assert "Story mode" not in chunk({})[2]
    assert chunk({"animation": {"mode": "zoom"}})[2]["Animation"] == "zoom"
    assert chunk({"restyle": {"input": "/clips/in.mp4"}})[2]["Restyle input"] == "in.mp4"


def test_none_values_are_left_out_nul_bytes_dropped_and_no_empty_negative_line():
    text = format_parameters("a\0b", "  ", {"Steps": 3, "Gone": None, "Seed": 1, "Size": "8x8"})
    assert text == "ab\nSteps: 3, Seed: 1, Size: 8x8"
    assert format_parameters("p", "n", {"A": 1, "B": 2, "C": 3}) == "p\nNegative prompt: n\nA: 1, B: 2, C: 3"


HOSTILE = [
    "just a prompt",
    "a prompt\nSteps: 3, Seed: 1",                       # two pairs: the web UI reads the line as prompt
    "a prompt\nSteps: 3, Seed: 1, Size: 8x8",
    'p\nA: "unclosed, B: 2, C: 3',
    'p\nA: "x\\"y", B: "a, b", C: "not json \\q"',
    "p\nNegative prompt: n1\nn2\nA: 1, B: 2, C: 3",
    "Negative prompt: only\nA: 1, B: 2, C: 3",
    "\n\n\nA: 1, B: 2, C: 3\n\n",
    "p\nA:1,B:2,C:3,D",
    "p\n" + "K: v, " * 2000,
    "p\nSteps: 3, Seed: 1, Size: 8x8\n",
    'p\nA: "", B: 2, C: 3',
    "x" * 2_000,
    "p\nA: 1, A: 2, B: 3",
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_vqclips_reader_reads_any_chunk_as_the_web_ui_does(text):
    prompt, negative, params = parse_parameters(text)
    ui_prompt, ui_negative, ui_params = a1111_read(text)
    assert (prompt, negative) == (ui_prompt, ui_negative)
    for key, value in ui_params.items():  # the UI's reader splits Size into Size-1 and Size-2
        if key.endswith(("-1", "-2")) and key[:-2] in params:
            assert params[key[:-2]].split("x")[int(key[-1]) - 1] == value
        else:
            assert params[key] == value, key


def test_any_pairs_line_is_split_as_the_web_uis_regex_splits_it():
    from vqclip.files.infotext import _pairs

    rng = random.Random(0)
    for alphabet in ('ab :,"\\-/.\t!x1', " \t:a-", 'a :,"', "- :x"):
        for _ in range(2000):
            line = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
            assert _pairs(line) == PAIR.findall(line), repr(line)


def test_a_long_pairs_line_is_read_in_linear_time():
    """The regex tried at every character rescans the run after it: a 200 KB line of letters took ten minutes, 1 MB
    (what a PNG's chunk may hold) hours. Run apart, with a timeout, so a slow reader fails rather than hangs."""
    code = ("from vqclip.files.infotext import parse_parameters\n"
            "for line in ('x' * 200_000, 'a b ' * 50_000, ' -' * 100_000 + ':', '\\t' * 200_000, 'k:v,' * 50_000):\n"
            "    parse_parameters('p\\n' + line)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
