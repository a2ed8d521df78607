"""A Python caller's mistake is named as the caller made it: `Pipeline keywords: ...`, not `command line: ...`."""

from __future__ import annotations

import pytest

import vqclip
from vqclip.errors import VqclipError


@pytest.fixture(scope="module")
def pipe():
    return vqclip.Pipeline.from_preset("mini", device="cpu")


@pytest.mark.parametrize("keywords, message", [
    ({"bogus": 1}, "^Pipeline keywords: unknown key 'bogus'"),
    ({"stepz": 3}, "^Pipeline keywords: unknown key 'stepz'; did you mean 'steps'"),
    ({"steps": "many"}, "^Pipeline keywords: steps: "),
])
def test_a_bad_keyword_names_the_pipelines_keywords(pipe, keywords, message):
    with pytest.raises(VqclipError, match=message):
        pipe.config("a red circle", **keywords)
    with pytest.raises(VqclipError, match="command line"):  # the CLI's layer keeps its name
        from vqclip.runs.jobs import build_config

        build_config({"model": "mini", **keywords})
