"""CPU threads under load: the same mini run timed alone and beside busy processes, for several thread settings.

Each setting is a fresh `vqclip generate` process (so OpenMP's environment applies from its start), timed as a whole
and per step (the steps' wall time, model loading left out), on an idle machine and then beside `--busy` processes
that each keep one core spinning in pure Python (as another program would). The ratio loaded/idle is what matters:
a setting that spins its OpenMP threads collapses when a core is taken.

    python benchmarks/threads_load.py                          # default, --threads 1, passive wait; 0 and 1 busy
    python benchmarks/threads_load.py --steps 40 --repeat 3 --json
    python benchmarks/threads_load.py --setting "default:" --setting "t1:--threads 1" --setting "passive:OMP_WAIT_POLICY=PASSIVE"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPIN = "while True: pass"
DEFAULT_SETTINGS = ["default:", "threads1:--threads 1", "passive:OMP_WAIT_POLICY=PASSIVE"]


def parse_setting(text: str) -> tuple[str, dict, list[str]]:
    """'name:ENV=V --flag x' -> (name, env, extra argv)."""
    name, _, rest = text.partition(":")
    env, argv = {}, []
    for word in rest.split():
        if "=" in word and not word.startswith("-"):
            key, _, value = word.partition("=")
            env[key] = value
        else:
            argv.append(word)
    return name, env, argv


def one_run(env: dict, argv: list[str], steps: int, out: Path) -> dict:
    """Seconds of a whole `vqclip generate` process and of its steps (from its progress-free timing file)."""
    timing = out / "timing.json"
    code = ("import json, sys, time; from vqclip.cli import main; t = []; "
            "import vqclip.runs.pipeline as p; orig = p.generate\n"
            "def timed(*a, **k):\n"
            "    s = time.perf_counter(); r = orig(*a, **k); t.append(time.perf_counter() - s); return r\n"
            "p.generate = timed\n"
            "rc = main(sys.argv[1:]); json.dump({'steps_s': t[0] if t else None}, open(sys.argv[-1] + '/../timing.json', 'w'))\n"
            "sys.exit(rc)")
    cmd = [sys.executable, "-c", code, "generate", "a red circle on a blue background", "--model", "mini", "--steps",
           str(steps), "--seed", "1", "--no-video", "--quiet", *argv, "--out", str(out / "run")]
    start = time.perf_counter()
    subprocess.run(cmd, env={**os.environ, **env}, check=True, capture_output=True)
    whole = time.perf_counter() - start
    return {"whole_s": whole, **json.loads(timing.read_text())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=40, help="steps of the run (default: 40)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting and load; the median is shown")
    parser.add_argument("--busy", type=int, nargs="+", default=[0, 1], help="busy processes beside it (default: 0 1)")
    parser.add_argument("--setting", action="append", default=None,
                        help="NAME:ENV=V --flag v (repeatable; default: %s)" % ", ".join(DEFAULT_SETTINGS))
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="vqclip-threads-") as tmp:
        for busy in args.busy:
            spinners = [subprocess.Popen([sys.executable, "-c", SPIN]) for _ in range(busy)]
            try:
                time.sleep(0.5 if busy else 0)
                for setting in args.setting or DEFAULT_SETTINGS:
                    name, env, argv = parse_setting(setting)
                    runs = []
                    for k in range(args.repeat):
                        out = Path(tmp) / f"{name}-{busy}-{k}"
                        out.mkdir()
                        runs.append(one_run(env, argv, args.steps, out))
                    rows.append({"setting": name, "busy": busy,
                                 "whole_s": round(statistics.median(r["whole_s"] for r in runs), 2),
                                 "run_s": round(statistics.median(r["steps_s"] for r in runs), 2)})
                    print(json.dumps(rows[-1]) if args.json else rows[-1], flush=True)
            finally:
                for p in spinners:
                    p.kill()
                    p.wait()
    idle = {r["setting"]: r["run_s"] for r in rows if r["busy"] == 0}
    for r in rows:
        if r["busy"] and r["setting"] in idle:
            print(f"{r['setting']}: {r['busy']} busy / idle = {r['run_s'] / idle[r['setting']]:.2f}x")


if __name__ == "__main__":
    main()
