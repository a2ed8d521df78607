"""The command line lets torch's idle CPU threads sleep (OMP_WAIT_POLICY=PASSIVE, set before torch loads): with
spinning threads a core taken by another program stalls every step (benchmarks/threads_load.py: 7.5x slower beside
one busy process with the default policy, 1.9x with the passive one). A value the user set is kept."""

from __future__ import annotations

import os
import subprocess
import sys

import vqclip.cli as cli

PROBE = ("import os, sys; from vqclip.nets.device import passive_omp_wait; on = passive_omp_wait(); "
         "print(os.environ.get('OMP_WAIT_POLICY'), on, 'torch' in sys.modules)")


def probe(**env) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    return subprocess.run([sys.executable, "-c", PROBE], env={**base, **env}, capture_output=True, text=True,
                          check=True).stdout.split()


def test_before_torch_loads_the_policy_becomes_passive_and_a_users_value_is_kept():
    assert probe() == ["PASSIVE", "True", "False"]
    assert probe(OMP_WAIT_POLICY="ACTIVE") == ["ACTIVE", "False", "False"]


def test_every_command_sets_it_before_it_runs(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(cli, "passive_omp_wait", lambda: calls.append(1) or True)
    assert cli.main(["run", "--dry-run", str(tmp_path / "missing.yaml")]) == 2
    assert calls == [1]
