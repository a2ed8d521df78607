"""The mutation tables stay aimed at the code (`tools/mutate.py`): each row's text is in its file exactly once, its
tests exist, and every module of the machinery carries at least three mutations. Running them is `tools/mutate.py`'s
job (minutes each); this only keeps the tables from going stale silently when code moves."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load_mutate():
    spec = importlib.util.spec_from_file_location("vqclip_mutate_tool", ROOT / "tools" / "mutate.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(ROOT / "tools"))
    return module


mutate = _load_mutate()
ROWS = mutate.MUTATIONS


@pytest.mark.parametrize("m", ROWS, ids=[m.name for m in ROWS])
def test_each_mutation_is_aimed_at_one_place_and_names_tests_that_exist(m):
    text = (ROOT / m.path).read_text()
    assert text.count(m.old) == 1, f"{m.path}: the text of '{m.name}' occurs {text.count(m.old)} times"
    assert m.old != m.new
    assert m.tests, "a mutation names the tests that must catch it"
    for t in m.tests:
        assert (ROOT / t.split("::")[0]).is_file(), t


def test_names_are_unique():
    names = [m.name for m in ROWS]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})


@pytest.mark.parametrize("module", mutate.covered_modules())
def test_every_module_of_the_machinery_has_at_least_three_mutations(module):
    assert mutate.coverage(ROWS)[module] >= mutate.MIN_PER_MODULE


def test_the_tool_refuses_a_text_that_is_not_there(tmp_path):
    (tmp_path / "a.py").write_text("x = 1\n")
    with pytest.raises(LookupError):
        mutate.apply(tmp_path, mutate.Mutation("gone", "a.py", "y = 2", "y = 3", ("t",)))
    mutate.apply(tmp_path, mutate.Mutation("there", "a.py", "x = 1", "x = 2", ("t",)))
    assert (tmp_path / "a.py").read_text() == "x = 2\n"
