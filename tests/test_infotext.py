"""The A1111-style `parameters` chunk of final.png, read by a parser written here from the web UI's format (not
vqclip's own), and `--from` on PNGs that are not what it expects: each one line, exit 2."""

import json
import re

import pytest
from PIL import Image, PngImagePlugin

from vqclip.cli import main
from vqclip.files.images import read_metadata
from vqclip.files.infotext import format_parameters, parse_parameters

# The web UI's reading of the chunk (modules/infotext_utils.py parse_generation_parameters), written out here.
PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')


def a1111_read(text: str) -> tuple[str, str, dict]:
    *lines, last = text.strip().split("\n")
    if len(PAIR.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, done = "", "", False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            done, line = True, line[16:].strip()
        if done:
            negative += ("" if negative == "" else "\n") + line
        else:
            prompt += ("" if prompt == "" else "\n") + line
    res = {}
    for k, v in PAIR.findall(last):
        if v[:1] == '"' and v[-1:] == '"':
            v = json.loads(v)
        size = re.match(r"^(\d+)x(\d+)$", v)
        if size:
            res[f"{k}-1"], res[f"{k}-2"] = size.group(1), size.group(2)
        else:
            res[k] = v
    return prompt, negative, res


def png_with(path, **texts):
    info = PngImagePlugin.PngInfo()
    for key, value in texts.items():
        info.add_text(key, value)
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path, pnginfo=info)
    return path


def one_error_line(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and err[0].startswith("error: ") and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture(scope="module")
def run(tiny_args, tmp_path_factory):
    out = tmp_path_factory.mktemp("infotext") / "run"
    code = main(["generate", "a red circle, bright: 2|sky", *tiny_args, "--negative", 'dull, "grey"', "--steps", "3",
                 "--seed", "11", "--size", "32", "48", "--no-video", "--out", str(out)])
    assert code == 0
    return out


def test_final_png_carries_a_parameters_chunk_the_web_ui_reads(run):
    with Image.open(run / "final.png") as im:
        text = im.text["parameters"]
    prompt, negative, params = a1111_read(text)
    assert prompt == "a red circle, bright: 2|sky"
    assert negative == 'dull, "grey"'
    assert params["Steps"] == "3" and params["Seed"] == "11"
    assert (params["Size-1"], params["Size-2"]) == ("32", "48")
    assert params["Version"].startswith("vqclip ") and params["Cutouts"] == "4" and params["Optimizer"] == "adam"
    assert params["LR"] == "0.1" and "clip" in params["CLIP models"] and params["Model"] == "vqgan.ckpt"


def test_from_still_reads_the_whole_job_from_the_json_chunk(run, tmp_path):
    meta = read_metadata(run / "final.png")
    assert main(["generate", "--from", str(run / "final.png"), "--out", str(tmp_path / "again"), "--quiet"]) == 0
    again = read_metadata(tmp_path / "again" / "final.png")["config"]
    assert {k: v for k, v in again.items() if k != "output"} == {k: v for k, v in meta["config"].items()
                                                                 if k != "output"}


def test_values_with_commas_colons_or_quotes_are_json_strings():
    text = format_parameters("p", "", {"Aa": "x, y", "Bb": 'say "hi"', "Cc": "k: v", "Dd": 3, "Ee": None})
    assert text.splitlines()[-1] == 'Aa: "x, y", Bb: "say \\"hi\\"", Cc: "k: v", Dd: 3'
    assert a1111_read(text)[2] == {"Aa": "x, y", "Bb": 'say "hi"', "Cc": "k: v", "Dd": "3"}


def test_a_multi_line_prompt_and_no_negative_round_trip():
    text = format_parameters("line one\nline two", "", {"Steps": 5, "Seed": 1, "Size": "8x8"})
    assert a1111_read(text)[:2] == ("line one\nline two", "")
    assert parse_parameters(text) == ("line one\nline two", "", {"Steps": "5", "Seed": "1", "Size": "8x8"})


def test_from_a_web_ui_png_takes_prompt_negative_seed_and_size_not_its_steps(tiny_args, tmp_path, capsys):
    text = ("masterpiece, a lighthouse at dusk\nNegative prompt: blurry, lowres\nSteps: 20, Sampler: Euler a, "
            "CFG scale: 7, Seed: 1234, Size: 32x48, Model hash: abc123, Model: sd15, Version: v1.6.0")
    png = png_with(tmp_path / "a1111.png", parameters=text)
    out = tmp_path / "run"
    at = tiny_args.index("--size")
    models = [a for a in tiny_args[:at] + tiny_args[at + 3:] if a != "--quiet"]  # the size comes from the PNG
    assert main(["generate", "--from", str(png), *models, "--steps", "2", "--out", str(out), "--no-video"]) == 0
    job = read_metadata(out / "final.png")["config"]
    assert job["prompt"] == "masterpiece, a lighthouse at dusk" and job["negative"] == ["blurry, lowres"]
    assert job["seed"] == 1234 and job["size"] == [32, 48] and job["steps"] == 2
    assert "holds no vqclip job, only A1111-style parameters: took its prompt, negative prompt, seed, size" in \
        capsys.readouterr().err


def test_from_a_parameters_chunk_of_vqclip_takes_its_steps(tiny_args, tmp_path):
    text = "a cat\nSteps: 3, Seed: 5, Size: 32x32, Version: vqclip 9.9"
    png = png_with(tmp_path / "p.png", parameters=text)
    assert main(["generate", "--from", str(png), *tiny_args, "--out", str(tmp_path / "r"), "--no-video"]) == 0
    assert read_metadata(tmp_path / "r" / "final.png")["config"]["steps"] == 3


def _broken_png(path):
    """A PNG whose tEXt chunk has a wrong CRC."""
    raw = bytearray(png_with(path, vqclip="{}").read_bytes())
    at = raw.index(b"tEXt") + 4
    raw[at] ^= 0xFF
    path.write_bytes(bytes(raw))
    return path


HOSTILE = {
    "not json": (lambda p: png_with(p, vqclip="{not json"), "is not valid JSON"),
    "huge": (lambda p: png_with(p, vqclip="[" + "1," * 1_500_000 + "1]"), "MB, far more than any job"),
    "a list": (lambda p: png_with(p, vqclip="[1, 2]"), "is not a JSON mapping"),
    "no config": (lambda p: png_with(p, vqclip='{"prompt": "x"}'), "has no 'config' mapping"),
    "config a list": (lambda p: png_with(p, vqclip='{"config": []}'), "has no 'config' mapping"),
    "unknown nested key": (lambda p: png_with(p, vqclip='{"config": {"cutouts": {"nn": 3}}}'),
                           "unknown key 'cutouts.nn'"),
    "wrong type": (lambda p: png_with(p, vqclip='{"config": {"steps": "many"}}'), "steps"),
    "output not a mapping": (lambda p: png_with(p, vqclip='{"config": {"output": "x"}}'),
                             "output: expected a section"),
    "bad parameters seed": (lambda p: png_with(p, parameters="x\nSteps: 2, Seed: abc, Size: 8x8"),
                            "its parameters say Seed: 'abc', not a whole number"),
    "bad parameters size": (lambda p: png_with(p, parameters="x\nSteps: 2, Seed: 1, Size: big"),
                            "its parameters say Size: 'big', not WIDTHxHEIGHT"),
    "no chunk": (lambda p: png_with(p), "carries no vqclip metadata"),
    "broken chunk": (_broken_png, "not a readable PNG"),
    "a jpeg": (lambda p: Image.new("RGB", (8, 8)).save(p, format="JPEG") or p, "a JPEG image, not a PNG"),
    "text file": (lambda p: p.write_text("hello") and p, "not a readable PNG"),
    "missing": (lambda p: p, "no such file"),
    "a folder": (lambda p: p.mkdir() or p, "is a folder, not a file"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_from_hostile_input_is_one_line_and_exit_2(tmp_path, capsys, case):
    make, expected = HOSTILE[case]
    path = make(tmp_path / "in.png")
    assert main(["generate", "--from", str(path), "--out", str(tmp_path / "r")]) == 2
    line = one_error_line(capsys)
    assert expected in line and str(path) in line, line
    assert not (tmp_path / "r").exists()
