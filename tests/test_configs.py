"""Every example job in configs/ is valid; the plain generation jobs run (on the tiny models, a few steps)."""

from dataclasses import replace
from pathlib import Path

import pytest

from vqclip.config import ClipConfig, VQGANConfig
from vqclip.runs.jobs import build_config, jobs_from_file
from vqclip.runs.pipeline import run_job

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))
MINI = Path(__file__).parent.parent / "vqclip" / "mini" / "weights" / "clip.safetensors"
SPECIAL = ("story", "restyle", "animation")  # run by their own modules' tests


def test_there_are_examples():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_example_job_is_valid_and_runs(path, tiny_job, tmp_path):
    jobs = jobs_from_file(path)
    if any(job.get("model") == "mini" for job in jobs) and not MINI.is_file():
        pytest.skip("the mini weights are not built yet")
    configs = [build_config(base=[(str(path), job)]) for job in jobs]
    assert all(c.prompt or c.image_prompts or c.story for c in configs)
    if any(key in job for job in jobs for key in SPECIAL):
        return
    for i, cfg in enumerate(configs):
        tiny = replace(cfg, vqgan=VQGANConfig(**tiny_job["vqgan"]), clip=[ClipConfig(**tiny_job["clip"][0])],
                       steps=2, size=[32, 32], cutouts=replace(cfg.cutouts, n=2),
                       output=replace(cfg.output, dir=str(tmp_path / f"run{i}"), progress=False))
        run = run_job(tiny)
        assert run.final.is_file() and run.result.steps == 2
