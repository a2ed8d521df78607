"""`vqclip zoom`, `vqclip restyle`, `vqclip resume` and `vqclip branch`: videos, continuing interrupted runs and
forking a run at one of its steps.

Story prompts need no command of their own: `vqclip generate "a ^ b" --change-every 50`, or a `story:` list in a
job file (`vqclip run configs/story.yaml`). Zoom jobs also run from YAML (`animation: {mode: zoom, ...}`).
"""

from __future__ import annotations

import argparse
import sys

from ..errors import VqclipError
from .options import RawHelpFormatter, add_job_options, cli_overrides, job_options

FRAME_OPTIONS = ("--save-every", "--candidates")  # zoom and restyle save one frame per move / input frame
ZOOM = job_options(include=["animation."], skip=FRAME_OPTIONS)
RESTYLE = job_options(include=["restyle."], skip=FRAME_OPTIONS)
RESUME = [o for o in job_options() if o.flag in ("--steps", "--device", "--devices", "--threads",
                                                "--quiet")]  # --devices: a state resumes on any number of them

ZOOM_EPILOG = """examples:
  vqclip zoom "an endless staircase" --model mini --zoom 1.04 --rotate 1 --every 10 --frames 60 --fps 12
  vqclip zoom "a city at night ^ a forest at dawn" --change-every 300 --zoom "0:1.0, 300:1.05" --shift-x 2
  vqclip run configs/zoom.yaml

Every `--every` steps the image is moved (zoom about the centre, rotation in degrees counter-clockwise, shift in
pixels), re-encoded, and optimised on: each move is one video frame. Values are constants or key frames over steps
("0:1.0, 200:1.05" ramps linearly). --frames N sets steps to (N - 1) * every."""

RESTYLE_EPILOG = """examples:
  vqclip restyle clip.mp4 "an oil painting by Van Gogh" --model mini --steps 20 --blend 0.5
  vqclip restyle clip.mp4 "watercolour" --max-frames 48 --size 384 384 --no-audio

Each input frame, blended with the previous output (--blend, 0 = independent frames), starts --steps steps of
optimisation. The output (frames/, restyled.mp4) has the input's fps and carries its audio over. Without --size the
output keeps the video's aspect with the long side from the preset's size."""


def _report(run, what: str) -> None:
    state = "stopped early" if run.interrupted else "done"
    print(f"{state}: {run.final} (seed {run.config.seed}, {what})" + (f", video {run.video}" if run.video else ""),
          file=sys.stderr)


def _run(cfg) -> int:
    from ..runs.callbacks import sigint_flag  # torch comes with these: imported here so that --help is instant
    from ..runs.pipeline import run_job

    with sigint_flag() as stop:
        run = run_job(cfg, stop=stop)
    frames = f"{len(run.frames)} frames" if run.frames else f"{run.result.steps} steps"
    _report(run, frames)
    return 130 if run.interrupted else 0


def run_zoom(args: argparse.Namespace) -> int:
    """`vqclip zoom`."""
    from ..runs.jobs import build_config  # torch comes with it: imported here so that --help is instant

    if not args.prompt and not args.config:
        raise VqclipError("give a PROMPT (or --config JOB.yaml)")
    cli = cli_overrides(args, ZOOM)
    cli.setdefault("animation", {})["mode"] = "zoom"
    yamls = [args.config] if args.config else []
    cfg = build_config(cli, yamls)
    if args.frames is not None:
        if "steps" in cli:
            raise VqclipError(f"--frames {args.frames} sets steps = (frames - 1) * every, so --steps {cli['steps']} "
                              "contradicts it; give one of them")
        if args.frames < 2:
            raise VqclipError(f"--frames: needs at least 2 frames, got {args.frames}")
        cfg = build_config({**cli, "steps": (args.frames - 1) * cfg.animation.every}, yamls)
    return _run(cfg)


def run_restyle(args: argparse.Namespace) -> int:
    """`vqclip restyle`: --steps counts steps per frame, --fps overrides the input's rate, --size asks for exactly
    that size."""
    from ..runs.jobs import build_config  # torch comes with it: imported here so that --help is instant

    cli = cli_overrides(args, RESTYLE)
    restyle = cli.setdefault("restyle", {})
    restyle["input"] = args.input
    if "steps" in cli:  # --steps counts per frame here
        restyle["steps_per_frame"] = cli.pop("steps")
    if "fps" in cli.get("output", {}):  # --fps overrides the input's rate
        restyle["fps"] = cli["output"].pop("fps")
    if args.opt_size is not None:  # --size W H asks for exactly that size (a --set size=... keeps the aspect)
        restyle["keep_aspect"] = False
    cfg = build_config(cli, [args.config] if args.config else [])
    if not cfg.prompt and not cfg.story and not cfg.image_prompts:
        raise VqclipError("give a PROMPT (or a story: / image_prompts: in --config JOB.yaml)")
    return _run(cfg)


def run_resume(args: argparse.Namespace) -> int:
    """`vqclip resume`."""
    from ..runs.callbacks import sigint_flag  # torch comes with these: imported here so that --help is instant
    from ..runs.resume import resume_run

    overrides = cli_overrides(args, RESUME)
    with sigint_flag() as stop:  # on the job's own threads (as job.yaml records them): the result stays bit-exact
        run = resume_run(args.run, overrides=overrides or None, stop=stop)
    _report(run, f"{run.result.steps} steps")
    return 130 if run.interrupted else 0


def run_branch(args: argparse.Namespace) -> int:
    """`vqclip branch`."""
    from ..runs.branch import branch_run  # torch comes with these: imported here so that --help is instant
    from ..runs.callbacks import sigint_flag
    from ..runs.resume import read_job, resume_run

    child, _ = branch_run(args.run, read_job(args.run), args.at, {"prompt": args.prompt, "lr": args.lr})
    if args.stop:
        print(f"branched: {child} (run it with `vqclip resume {child}`)", file=sys.stderr)
        return 0
    with sigint_flag() as stop:
        run = resume_run(child, stop=stop, overrides={"output": {"progress": False}} if args.quiet else None)
    _report(run, f"{run.result.steps} steps, branched from {args.run} at step {args.at}")
    return 130 if run.interrupted else 0


def register(sub) -> None:
    """Add `zoom`, `restyle`, `resume` and `branch`."""
    z = sub.add_parser("zoom", help="zoom/rotate/pan video from a prompt", epilog=ZOOM_EPILOG,
                       formatter_class=RawHelpFormatter,
                       description="Make a zoom video: the image is moved every few steps and optimised on; "
                                   "writes frames/, progress.mp4 and final.png into a run folder.")
    z.add_argument("prompt", nargs="?", help='"text:weight|text:weight", or a story "a ^ b" [prompt]')
    z.add_argument("--config", metavar="JOB.yaml", help="job file; CLI options override it")
    z.add_argument("--frames", type=int, metavar="N", help="video frames; sets steps = (N-1) * every")
    add_job_options(z, ZOOM)
    z.set_defaults(func=run_zoom)

    r = sub.add_parser("restyle", help="restyle a video frame by frame", epilog=RESTYLE_EPILOG,
                       formatter_class=RawHelpFormatter,
                       description="Restyle a video towards a prompt; --steps counts steps per frame and --fps "
                                   "overrides the input's frame rate.")
    r.add_argument("input", metavar="INPUT.mp4", help="video to restyle [restyle.input]")
    r.add_argument("prompt", nargs="?", help='"text:weight|text:weight" [prompt]')
    r.add_argument("--config", metavar="JOB.yaml", help="job file; CLI options override it")
    add_job_options(r, RESTYLE, {"--steps": "optimisation steps (default: 30) per input frame "
                                            "[restyle.steps_per_frame]",
                                 "--fps": "frame rate of restyled.mp4 (default: the input's) [restyle.fps]"})
    r.set_defaults(func=run_restyle)

    s = sub.add_parser("resume", help="continue an interrupted run",
                       description="Continue a killed or stopped run in its folder from its state.pt (saved every "
                                   "state_every steps); the result is the same as an uninterrupted run. Restyle runs "
                                   "continue at the first missing frame.")
    s.add_argument("run", metavar="RUN_DIR", help="the run folder (holds job.yaml)")
    add_job_options(s, RESUME, {
        "--steps": "go on to N steps in all, more than the job had (default: the job's) [steps]",
        "--threads": "CPU threads for torch (default: the job's; another count may change the result's last bits) "
                     "[threads]"})
    s.set_defaults(func=run_resume)

    b = sub.add_parser("branch", help="fork a finished or killed run at one of its steps",
                       description="Write a new run folder beside RUN_DIR (its name + -b1, -b2, ...) whose job is "
                                   "RUN_DIR's with its steers before STEP and the given changes from STEP on, then "
                                   "run it. It starts from RUN_DIR's state.pt when that was saved at STEP, else "
                                   "from step 0 (the same pixels, more time); the log says which.")
    b.add_argument("run", metavar="RUN_DIR", help="the run folder (holds job.yaml)")
    b.add_argument("--at", type=int, required=True, metavar="STEP", help="the step the changes take effect at")
    b.add_argument("--prompt", metavar="P", help="the prompt from STEP on")
    b.add_argument("--lr", type=float, metavar="X", help="the learning rate from STEP on")
    b.add_argument("--stop", action="store_true", help="write the branch's folder only; `vqclip resume` runs it")
    b.add_argument("--quiet", action="store_true", help="no progress bar, no notices [output.progress]")
    b.set_defaults(func=run_branch)
