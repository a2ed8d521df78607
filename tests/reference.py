"""The reference implementations the math is tested against: the textbook loop of benchmarks/textbook_loop.py (Katherine
Crowson's notebook's formulas on taming and open_clip modules), importable from the tests."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

_PATH = Path(__file__).resolve().parent.parent / "benchmarks" / "textbook_loop.py"


def _load():
    spec = importlib.util.spec_from_file_location("textbook_loop", _PATH)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("textbook_loop", module)
    spec.loader.exec_module(module)
    return module


textbook = sys.modules.get("textbook_loop") or _load()
