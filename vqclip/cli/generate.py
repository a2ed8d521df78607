"""`vqclip generate PROMPT ...` and `vqclip run JOB.yaml ...`: every option maps to a key of the job config."""

from __future__ import annotations

import argparse
import sys
from typing import Optional

from ..errors import VqclipError
from ..models.presets import DEFAULT_PRESET
from .options import RawHelpFormatter, add_job_options, cli_overrides, job_options

EPILOG = f"""examples:
  vqclip generate "a red circle on a blue background" --model mini
  vqclip generate "toaster forest:1|blurry:-0.5" --steps 500 --size 384 256 --seed 7
  vqclip generate --from outputs/run/final.png --steps 800 --out outputs/longer
  vqclip generate "a red circle on a blue background" --model mini --n 4     # 4 seeds, grid.png
  vqclip run configs/mini.yaml configs/batch.yaml

Every job option has a YAML key (shown in brackets with its default; --config, --from and --set pick where values
come from); CLI values override the YAML, which overrides the preset's defaults. The defaults listed are those of
the default preset ({DEFAULT_PRESET}); a preset with defaults of its own replaces them where it sets them, shown as
"mini: 100" (`vqclip models` lists the presets). A file with a `jobs:` list runs with `vqclip run`. Ctrl-C stops
at the end of the current step and still writes final.png and the video (exit code 130)."""


def _report(run) -> None:
    state = "stopped early" if run.interrupted else "done"
    print(f"{state}: {run.final} (seed {run.config.seed}, {run.result.steps} steps)"
          + (f", video {run.video}" if run.video else ""), file=sys.stderr)


def run_generate(args: argparse.Namespace) -> int:
    """`vqclip generate`: one image, or with --n (or candidates.keep) a batch of them, planned, placed and run as
    `vqclip run` runs a job with `n:` (`vqclip.runs.plan`): the same folders, a finished image skipped on a rerun."""
    from ..nets.load import ModelCache  # torch comes with these: imported here so that --help is instant
    from ..runs.batch import images_of
    from ..runs.callbacks import sigint_flag
    from ..runs.jobs import build_config
    from ..runs.pipeline import run_job
    from ..runs.plan import place, run_plan

    if not args.prompt and not args.config and not args.from_png and not args.opt_image_prompts:
        raise VqclipError("give a PROMPT (or --config JOB.yaml, --from PNG, --image-prompt PATH)")
    cfg = build_config(cli_overrides(args, GENERATE), [args.config] if args.config else [], args.from_png)
    batch = images_of(cfg)
    placed = place([batch]) if batch is not None else None
    with sigint_flag() as stop:
        if placed is not None:
            runs = run_plan(placed, run_job, cache=ModelCache(), stop=stop, report=_report)
            _report_batches(placed, runs)
            return 130 if runs and runs[-1].interrupted else 0
        run = run_job(cfg, stop=stop)
    _report(run)
    return 130 if run.interrupted else 0


def _report_batches(placed, runs) -> None:
    """One line per batch that has runs: its folder, how many of its runs there are, and that its grid is written."""
    for item in placed:
        made = [r for r in runs if item.batch is not None and r.dir.parent == item.root]
        if made:
            print(f"batch: {item.root} ({len(made)} of {len(item.members)} runs, grid and batch.yaml)", file=sys.stderr)


def run_jobs(args: argparse.Namespace) -> int:
    """`vqclip run`: expand and check every job first (--dry-run: list them and stop), then run them in order,
    loading each model once; a job whose folder holds its finished run is skipped, its stopped run resumed
    (`vqclip.runs.plan`, as with --ray)."""
    from ..runs.batch import describe  # torch-free: a dry run loads no torch
    from ..runs.jobs import jobs_from_file
    from ..runs.plan import place, plan

    overrides = cli_overrides(args, RUN)
    out = (overrides.get("output") or {}).pop("dir", None)
    jobs = [(f"{path} job {i + 1}", job) for path in args.jobs for i, job in enumerate(jobs_from_file(path))]
    plans = plan(jobs, overrides, out)
    if args.dry_run:
        for item in plans:
            print("\n".join(describe(item)))
        return 0
    if args.ray is not None:
        from ..runs.cluster import run_cluster  # here: Ray (and torch) only for --ray

        return run_cluster(plans, address=args.ray or None, cpus_per_job=args.ray_cpus_per_job,
                           shared=args.shared_outputs).code
    from ..nets.load import ModelCache  # torch comes with these: imported only to run the jobs
    from ..runs.callbacks import sigint_flag
    from ..runs.pipeline import run_job
    from ..runs.plan import run_plan

    placed = place(plans)
    with sigint_flag() as stop:
        runs = run_plan(placed, run_job, cache=ModelCache(), stop=stop, report=_report)
    _report_batches(placed, runs)
    return 130 if runs and runs[-1].interrupted else 0


GENERATE = job_options()
RUN = [o for o in GENERATE if o.flag in ("--quiet", "--device", "--threads", "--out")]  # set on every job by `run`


def register(sub) -> None:
    """Add `generate` and `run`."""
    p = sub.add_parser("generate", help="make an image from a prompt", description="Make an image from a prompt "
                       "with VQGAN+CLIP; writes final.png, frames/, progress.mp4 and job.yaml into a run folder.",
                       epilog=EPILOG, formatter_class=RawHelpFormatter)
    p.add_argument("prompt", nargs="?", help='"text:weight|text:weight" (negative weight pushes away) [prompt]')
    p.add_argument("--config", metavar="JOB.yaml", help="job file; CLI options override it")
    p.add_argument("--from", dest="from_png", metavar="PNG", help="re-run the job embedded in a vqclip PNG")
    add_job_options(p, GENERATE)
    p.set_defaults(func=run_generate)

    r = sub.add_parser("run", help="run YAML job files", description="Run job files: each holds one job, or "
                       "`jobs:` with a list of them (other top-level keys are shared by all); `sweep: {KEY: [values]}` "
                       "runs every combination, and `n: N` N seeds, each a batch with grid.png. All jobs are checked "
                       "before the first one starts.")
    r.add_argument("jobs", nargs="+", metavar="JOB.yaml")
    r.add_argument("--dry-run", action="store_true", help="list the jobs (a sweep's expanded: each one's folder and "
                   "values) and stop; loads no models")
    r.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS", help="run the jobs on a Ray cluster "
                   "(pip install 'vqclip[ray]'): no ADDRESS starts a local one, `auto` joins a running one; one worker "
                   "per GPU (or per --ray-cpus-per-job CPUs) keeps its models for all its jobs; exit code 0 only when "
                   "every job succeeded (default: off, the jobs run here in order)")
    r.add_argument("--ray-cpus-per-job", type=int, default=1, metavar="N", help="with --ray on nodes without GPUs: "
                   "the CPUs (and torch threads) of each worker (default: 1)")
    r.add_argument("--shared-outputs", action="store_true", help="with --ray: the output folders are mounted on every "
                   "node, so workers write the run folders there instead of sending their files back (default: off)")
    add_job_options(r, RUN, {"--device": "override every job's device (default: each job's own) [device]",
                             "--threads": "CPU threads for torch in every job (default: each job's own) [threads]",
                             "--quiet": "no progress bars or notices [output.progress]",
                             "--out": "the run (or batch) folder of a file's one job; with several jobs, the folder of "
                                      "their folders job-1, job-2, ... (default: each job's output.dir, else "
                                      "outputs/<time>-<prompt>) [output.dir]"})
    r.set_defaults(func=run_jobs)
