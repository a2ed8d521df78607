"""One row of a mutation table: a deliberate break of one behaviour, and the tests that must notice it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutation:
    """Replace the exact text `old` (it must occur once in `path`) by `new`; the tests named must then fail.

    `equivalent` holds the argument why a mutation cannot change behaviour: such a row is listed, not run."""

    name: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]
    equivalent: str = ""


M = Mutation
