"""The checks of a flow-stabilised restyle (vqclip/config/checks.py `_check_flow`): restyle.flow is one of the
methods, flow_init in [0, 1] and flow_weight >= 0 (each limit accepted and the first value past it refused), neither
share without a method, and no flow setting on a job that is not a restyle; each a one line error, exit 2 by the
CLI."""

from __future__ import annotations

import pytest

from test_checks import job, refused
from test_cli_rules import MINI, one_error, presets_read_once, ran  # noqa: F401 (fixtures)
from vqclip.cli import main
from vqclip.config import check
from vqclip.config.job import RESTYLE_FLOWS
from vqclip.nets.flow import FLOW_METHODS

RESTYLE = {"restyle.input": "in.mp4", "restyle.flow": "dis"}


def test_the_config_offers_every_flow_method_and_none():
    assert RESTYLE_FLOWS == ("none", *FLOW_METHODS)


@pytest.mark.parametrize("method", RESTYLE_FLOWS)
def test_each_flow_method_is_accepted(method):
    check(job(**{**RESTYLE, "restyle.flow": method}))


@pytest.mark.parametrize("method", ["DIS", "raft", "raft_small", "", "farneback "])
def test_an_unknown_flow_method_is_refused_naming_the_choices(method):
    text = refused(job(**{**RESTYLE, "restyle.flow": method}))
    assert text.startswith("restyle.flow: unknown value ") and "none, dis, farneback, raft-small" in text


@pytest.mark.parametrize("key, good, bad, message", [
    ("restyle.flow_init", [0.0, 1.0, 0.5], [-0.001, 1.001], "restyle.flow_init: must be in [0, 1]"),
    ("restyle.flow_weight", [0.0, 1e-6, 100.0], [-1e-6, -1.0], "restyle.flow_weight: must be >= 0"),
])
def test_each_limit_is_accepted_and_the_first_value_past_it_refused(key, good, bad, message):
    for value in good:
        check(job(**RESTYLE, **{key: value}))
    for value in bad:
        text = refused(job(**RESTYLE, **{key: value}))
        assert text.startswith(message), (value, text)


@pytest.mark.parametrize("key", ["restyle.flow_init", "restyle.flow_weight"])
def test_a_flow_share_without_a_method_is_refused(key):
    check(job(**{**RESTYLE, "restyle.flow": "none", key: 0.0}))
    text = refused(job(**{**RESTYLE, "restyle.flow": "none", key: 0.01}))
    assert text.startswith(f"{key}: follows the input's optical flow, but restyle.flow is none; set restyle.flow")


@pytest.mark.parametrize("key, value", [("restyle.flow", "dis"), ("restyle.flow_init", 0.5),
                                        ("restyle.flow_weight", 1.0)])
@pytest.mark.parametrize("other, made", [({}, "a still image"), ({"animation.mode": "zoom"}, "a zoom video")])
def test_a_flow_setting_on_a_job_that_is_not_a_restyle_is_refused(key, value, other, made):
    check(job(**other))  # the job itself is fine
    text = refused(job(**other, **{key: value}))
    assert text.startswith(f"{key}: stabilises a restyle") and made in text and "restyle.input" in text


def test_the_restyle_flags_reach_their_keys(ran):
    assert main(["restyle", "in.mp4", "x", *MINI, "--flow", "farneback", "--flow-init", "0.25",
                 "--flow-weight", "2"]) == 0
    r = ran.configs[-1].restyle
    assert (r.flow, r.flow_init, r.flow_weight) == ("farneback", 0.25, 2.0)
    assert main(["restyle", "in.mp4", "x", *MINI]) == 0
    r = ran.configs[-1].restyle
    assert (r.flow, r.flow_init, r.flow_weight) == ("none", 0.0, 0.0)  # off unless asked for


def test_the_cli_refuses_a_bad_flow_in_one_line_exit_2(ran, capsys):
    assert main(["restyle", "in.mp4", "x", *MINI, "--flow-init", "0.5"]) == 2
    assert "restyle.flow_init: follows the input's optical flow" in one_error(capsys) and ran.configs == []
    assert main(["restyle", "in.mp4", "x", *MINI, "--flow", "raft"]) == 2
    assert "raft" in one_error(capsys) and ran.configs == []
