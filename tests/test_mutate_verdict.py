"""tools/mutate.py counts only a failing test as a catch: a test module that cannot even be imported (a mutation
that leaves a syntax error, which pytest -x reports with exit code 1) is an error, never a catch."""

from __future__ import annotations

from test_mutate_table import mutate


def test_a_failing_test_is_a_catch():
    out = "F\nFAILED tests/test_x.py::test_a - AssertionError\n1 failed in 0.1s\n"
    assert mutate.verdict(1, out) == ("caught", "tests/test_x.py::test_a")
    assert mutate.verdict(1, "E\nERROR tests/test_x.py::test_b - RuntimeError\n")[0] == "caught"  # its fixture failed
    logged = "F\n---- Captured log call ----\nERROR    vqclip:x.py:3 said\n" + out  # a record the failing test logged
    assert mutate.verdict(1, logged) == ("caught", "tests/test_x.py::test_a")


def test_a_module_that_cannot_be_collected_is_an_error_not_a_catch():
    out = ("ERROR tests/test_x.py\n!!!!!!!!!! stopping after 1 failures !!!!!!!!!!\n1 error in 8.57s\n")
    state, detail = mutate.verdict(1, out)
    assert state == "error" and "1 error" in detail


def test_passing_tests_are_a_survivor_and_other_exits_errors():
    assert mutate.verdict(0, "3 passed\n") == ("survived", "")
    assert mutate.verdict(4, "", "ERROR: file or directory not found: tests/nope.py")[0] == "error"
    assert mutate.verdict(1, "1 failed\n")[0] == "error"  # a failure pytest did not name
