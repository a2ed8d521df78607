"""An upscaler named by a path or by a preset: the rule lives with the other model names (vqclip.models.spec, torch-free),
so the models layer reads it without importing the config's checks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from vqclip.models.spec import upscaler_is_path

PACKAGE = Path(__file__).resolve().parent.parent / "vqclip"


@pytest.mark.parametrize("name, is_path", [("~x", True), ("~", True), (".x", True), ("x~", False), ("x.", False),
                                           ("realesrgan-x4plus", False), ("x.PT", True)])
def test_a_leading_dot_or_tilde_makes_a_path(name, is_path):
    """'~name' is a home folder and '.name' a relative path (as `Path.expanduser` reads them), never a preset."""
    assert upscaler_is_path(name) is is_path


def test_no_model_module_imports_the_config():
    """The models layer (2) names models with vqclip.models.spec; the config's checks import it, not the reverse."""
    found = []
    for path in sorted((PACKAGE / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "config" and node.level == 2:
                found.append(f"{path.name}: from ..{node.module}")
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("vqclip.config"):
                found.append(f"{path.name}: from {node.module}")
    assert not found, found
