"""The Python API's arguments: a call is one image (n and candidates.keep refused, candidates.n alone taken), quiet
unless asked, on the pipeline's device; models load when the pipeline is made; `Pipeline.run` returns one run for a
single image and the list of a batch's runs for one job with `n:`, in the folders `vqclip run` gives."""

from __future__ import annotations

import pytest

import vqclip
from vqclip.errors import VqclipError

SMALL = {"size": [16, 16], "cutouts": {"n": 2}, "steps": 1, "output": {"video": False, "save_every": 0}}


@pytest.fixture(scope="module")
def pipe(tiny_vqgan, tiny_clip):
    return vqclip.Pipeline.from_files(*tiny_vqgan, clip={"model": str(tiny_clip[0]), "pretrained": str(tiny_clip[1])},
                                      device="cpu")


@pytest.mark.parametrize("job", [{"n": 2}, {"candidates": {"n": 3, "keep": 2}}])
def test_a_call_of_a_batch_is_refused_not_cut_to_one_image(pipe, job):
    with pytest.raises(VqclipError, match="n and candidates.keep make a batch of images, which a Pipeline call"):
        pipe.config("x", **job)


def test_a_call_of_one_image_from_best_of_n_is_taken_quiet_and_on_the_pipelines_device(pipe):
    cfg = pipe.config("x", candidates={"n": 3, "keep": 1}, n=1)
    assert (cfg.prompt, cfg.candidates.n, cfg.n, cfg.device, cfg.output.progress) == ("x", 3, 1, "cpu", False)
    assert pipe.config("x", output={"progress": True}).output.progress is True
    assert pipe.config(None, image_prompts=["a.png"]).prompt == ""


def test_a_pipeline_of_missing_files_fails_when_made(tmp_path):
    with pytest.raises(VqclipError):
        vqclip.Pipeline.from_files(tmp_path / "no.yaml", tmp_path / "no.ckpt", device="cpu")


def test_run_returns_one_run_for_an_image_and_every_run_of_a_batch(pipe, tmp_path):
    one = pipe.run({**SMALL, "prompt": "a cat", "seed": 2}, out=tmp_path / "one")
    assert not isinstance(one, list) and one.final == tmp_path / "one" / "final.png" and one.final.is_file()
    batch = pipe.run({**SMALL, "prompt": "a cat", "seed": 2, "n": 2}, out=tmp_path / "b")
    assert isinstance(batch, list) and [r.final for r in batch] == [tmp_path / "b" / "seed=2" / "final.png",
                                                                   tmp_path / "b" / "seed=3" / "final.png"]
    assert (tmp_path / "b" / "grid.png").is_file() and all(r.config.device == "cpu" for r in batch)
