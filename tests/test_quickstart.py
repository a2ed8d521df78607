"""The README's Quick start: its first line installs PyTorch's CPU build (the CPU index's `+cpu` release sorts above
PyPI's same release, and the project's torch and torchvision ranges admit it), and its second line is what `.ci/run`
runs."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "--extra-index-url https://download.pytorch.org/whl/cpu"


def quick_start() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Quick start\s+```bash\n(.*?)```", text, re.S).group(1)
    return block.strip().splitlines()


def test_the_first_line_takes_the_cpu_build_and_the_project_admits_it():
    install, _ = quick_start()
    assert f"pip install -e . {CPU_INDEX} && vqclip generate" in install
    assert Version("2.9.1+cpu") > Version("2.9.1")  # what makes pip prefer the CPU index's build (PEP 440)
    deps = {Requirement(d).name: Requirement(d) for d in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    for name in ("torch", "torchvision"):
        spec = deps[name].specifier
        public = next(v for v in (f"{m}.{n}.1" for m in (2, 0) for n in range(40, -1, -1)) if spec.contains(v))
        assert spec.contains(f"{public}+cpu"), (name, spec)  # a +cpu build of an admitted release is admitted


def test_the_second_line_is_what_ci_runs():
    _, tests = quick_start()
    assert (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1] == tests
