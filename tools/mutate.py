"""Mutation check: each mutation breaks one formula, rule, check or safety guard on purpose, in a scratch copy of the
package; the tests named beside it must then fail. A mutation they survive is a hole in the suite.

    python tools/mutate.py                      # all mutations; a markdown table, exit 1 if any survives
    python tools/mutate.py --only clamp         # those whose name contains 'clamp'
    python tools/mutate.py --file runs/resume   # those whose file path contains 'runs/resume'
    python tools/mutate.py --jobs 2             # two at a time (each pytest then gets half the cores)
    python tools/mutate.py --list
    python tools/mutate.py --coverage           # mutations per module; exit 1 where a module has fewer than 3

The tables live in `tools/mutations/`, one module per area (math, optim, modes, runs, config, files, nets, ui,
models, cli: the commands and the API). Each row is (name, file, the exact text it replaces, the replacement, the test
files to run); a row with `equivalent="why"` cannot change behaviour and is listed with its argument, not run. A text that is no longer in its
file is reported as stale (exit 2): update the table when the code moves, never drop a row silently. Only a failing
test counts as a catch: a pytest that cannot run the tests (an import error, a test that is not there) is an error
(exit 2), and so is an unmutated baseline whose tests do not pass (checked first; --no-baseline skips it).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mutations import MUTATIONS, Mutation  # noqa: E402  (the tables beside this script)

ROOT = Path(__file__).resolve().parent.parent
# the packages whose every module must carry at least MIN_PER_MODULE mutations (`--coverage`)
COVERED = ("optim", "modes", "runs", "config", "files", "nets", "ui", "models", "terms", "draw", "cli", "report", "train")
COVERED_FILES = ("api.py", "errors.py")  # modules of vqclip/ itself that must carry them too
MIN_PER_MODULE = 3


def covered_modules(root: Path = ROOT) -> list[str]:
    """The modules `--coverage` asks mutations of: every non-empty .py under vqclip/<COVERED>/ but `__init__.py`, and
    vqclip/<COVERED_FILES>."""
    return sorted([str(p.relative_to(root)) for pkg in COVERED for p in (root / "vqclip" / pkg).glob("*.py")
                   if p.name != "__init__.py"] + [f"vqclip/{name}" for name in COVERED_FILES])


def coverage(mutations: list[Mutation], root: Path = ROOT) -> dict[str, int]:
    """Mutations (not counting equivalent ones) per covered module."""
    return {mod: sum(1 for m in mutations if m.path == mod and not m.equivalent) for mod in covered_modules(root)}


def apply(tree: Path, m: Mutation) -> None:
    path = tree / m.path
    text = path.read_text()
    if text.count(m.old) != 1:
        raise LookupError(f"{m.path}: the text of '{m.name}' occurs {text.count(m.old)} times (expected once)")
    path.write_text(text.replace(m.old, m.new))


def run(m: Mutation, timeout: float, threads: int = 0) -> tuple[str, str, float]:
    """('caught' | 'survived' | 'stale' | 'timeout' | 'error', the first failing test or the reason, seconds); a
    pytest that could not run the tests (exit 2-5: import error, no such test) is an error, never a catch."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        for part in ("vqclip", "tests", "benchmarks", "configs", "tools", "pyproject.toml"):
            src = ROOT / part
            (shutil.copytree if src.is_dir() else shutil.copy)(src, tree / part,
                                                               **({"ignore": shutil.ignore_patterns("__pycache__")}
                                                                  if src.is_dir() else {}))
        try:
            if m.path:  # the baseline mutates nothing
                apply(tree, m)
        except LookupError as exc:
            return "stale", str(exc), 0.0
        env = {**os.environ, "PYTHONPATH": str(tree)}
        if threads:
            env.setdefault("OMP_NUM_THREADS", str(threads))
        cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests]
        try:
            done = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return "timeout", f"over {timeout:.0f} s", time.perf_counter() - t0
    return (*verdict(done.returncode, done.stdout, done.stderr), time.perf_counter() - t0)


def verdict(returncode: int, stdout: str, stderr: str = "") -> tuple[str, str]:
    """('survived' | 'caught' | 'error', the first failing test or the reason) of one pytest run. Only a failing
    test (`FAILED`/`ERROR path::test`) is a catch: a module that cannot be collected (`ERROR path`, which -x
    reports with exit 1, e.g. a mutation that leaves a syntax error) is an error."""
    failed = [line.split(" ")[1] for line in stdout.splitlines() if line.startswith(("FAILED ", "ERROR "))]
    failed = [f for f in failed if f]  # not a captured log record's `ERROR    name:file:line message`
    if returncode == 0:
        return "survived", ""
    if returncode == 1 and failed and all("::" in f for f in failed):  # a test failed: only that counts as caught
        return "caught", failed[0]
    last = (stdout + stderr).strip().splitlines()[-1:] or [""]
    return "error", f"pytest exit {returncode}: {last[0][:120]}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", default="", help="run the mutations whose name contains this text")
    p.add_argument("--file", default="", help="run the mutations whose file path contains this text")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument("--coverage", action="store_true",
                   help=f"count the mutations of each module of vqclip/{{{','.join(COVERED)}}}; exit 1 where one has "
                        f"fewer than {MIN_PER_MODULE}")
    p.add_argument("--no-baseline", action="store_true", help="skip the run of the unmutated tests")
    p.add_argument("--jobs", type=int, default=1, help="mutations run at a time (default: 1)")
    p.add_argument("--timeout", type=float, default=600, help="seconds per mutation")
    args = p.parse_args(argv)
    if args.coverage:
        counts = coverage(MUTATIONS)
        short = {mod: n for mod, n in counts.items() if n < MIN_PER_MODULE}
        for mod, n in counts.items():
            print(f"{n:3d}  {mod}{'   <- fewer than %d' % MIN_PER_MODULE if mod in short else ''}")
        print(f"\n{len(counts) - len(short)} of {len(counts)} modules have at least {MIN_PER_MODULE} mutations")
        return 1 if short else 0
    chosen = [m for m in MUTATIONS if args.only in m.name and args.file in m.path]
    if args.list:
        for m in chosen:
            extra = f"  [equivalent: {m.equivalent}]" if m.equivalent else ""
            print(f"{m.name}  ({m.path}; {', '.join(m.tests)}){extra}")
        return 0
    runnable = [m for m in chosen if not m.equivalent]
    threads = max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0
    if not args.no_baseline:  # a test that fails unmutated would make every mutation look caught
        tests = tuple(sorted({t for m in runnable for t in m.tests}))
        state, detail, _ = run(Mutation("baseline", "", "", "", tests), args.timeout * 2, threads)
        if state != "survived":
            print(f"the unmutated tests do not pass ({state}: {detail}); fix them first", file=sys.stderr)
            return 2
    print("| mutation | file | result | caught by |\n|---|---|---|---|", flush=True)
    results = []

    def one(m: Mutation) -> str:
        state, detail, _ = run(m, args.timeout, threads)
        print(f"| {m.name} | `{m.path}` | {state} | {f'`{detail}`' if detail else ''} |", flush=True)
        return state

    with ThreadPoolExecutor(max(1, args.jobs)) as pool:
        results = list(pool.map(one, runnable))
    for m in chosen:
        if m.equivalent:
            print(f"| {m.name} | `{m.path}` | equivalent | {m.equivalent} |", flush=True)
    caught = results.count("caught")
    print(f"\n{caught} of {len(results)} caught; survived {results.count('survived')}, stale {results.count('stale')},"
          f" timed out {results.count('timeout')}, errors {results.count('error')}"
          f"; {len(chosen) - len(runnable)} listed as equivalent")
    if "stale" in results or "error" in results:
        return 2
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
