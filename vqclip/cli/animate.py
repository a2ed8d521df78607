"""`vqclip zoom`, `vqclip restyle` and `vqclip resume`: videos and continuing interrupted runs.

Story prompts need no command of their own: `vqclip generate "a ^ b" --change-every 50`, or a `story:` list in a
job file (`vqclip run configs/story.yaml`). Zoom jobs also run from YAML (`animation: {mode: zoom, ...}`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import VqclipError
from .generate import _add_job_options, cli_overrides, torch_threads

FRAME_OPTIONS = ("--save-every", "--candidates")  # zoom and restyle save one frame per move / input frame

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


def _number_or_keys(text: str) -> float | str:
    """'1.02' -> 1.02; '0:1.0, 50:1.05' stays a key-frame string (checked by the config)."""
    try:
        return float(text)
    except ValueError:
        return text


def _report(run, what: str) -> None:
    state = "stopped early" if run.interrupted else "done"
    print(f"{state}: {run.final} (seed {run.config.seed}, {what})" + (f", video {run.video}" if run.video else ""),
          file=sys.stderr)


def _run(cfg) -> int:
    from ..callbacks import sigint_flag  # torch comes with it: imported here so that --help is instant
    from ..jobs import run_job

    with sigint_flag() as stop, torch_threads(cfg.threads):
        run = run_job(cfg, stop=stop)
    frames = f"{len(run.frames)} frames" if run.frames else f"{run.result.steps} steps"
    _report(run, frames)
    return 130 if run.interrupted else 0


def run_zoom(args: argparse.Namespace) -> int:
    """`vqclip zoom`."""
    from ..jobs import build_config

    if not args.prompt and not args.config:
        raise VqclipError("give a PROMPT (or --config JOB.yaml)")
    cli = cli_overrides(args)
    anim = cli.setdefault("animation", {})
    anim["mode"] = "zoom"
    for attr in ("zoom", "rotate", "shift_x", "shift_y"):
        if getattr(args, attr) is not None:
            anim[attr] = _number_or_keys(getattr(args, attr))
    for attr in ("every", "padding"):
        if getattr(args, attr) is not None:
            anim[attr] = getattr(args, attr)
    if args.keep_optimizer:
        anim["reset_optimizer"] = False
    yamls = [args.config] if args.config else []
    cfg = build_config(cli, yamls)
    if args.frames is not None:
        if args.steps is not None:
            raise VqclipError(f"--frames {args.frames} sets steps = (frames - 1) * every, so --steps {args.steps} "
                              "contradicts it; give one of them")
        if args.frames < 2:
            raise VqclipError(f"--frames: needs at least 2 frames, got {args.frames}")
        cfg = build_config({**cli, "steps": (args.frames - 1) * cfg.animation.every}, yamls)
    return _run(cfg)


def run_restyle(args: argparse.Namespace) -> int:
    """`vqclip restyle`."""
    from ..jobs import build_config

    cli = cli_overrides(args)
    restyle = cli.setdefault("restyle", {})
    restyle["input"] = args.input
    if "steps" in cli:  # --steps counts per frame here
        restyle["steps_per_frame"] = cli.pop("steps")
    if "fps" in cli.get("output", {}):  # --fps overrides the input's rate
        restyle["fps"] = cli["output"].pop("fps")
    if args.size is not None:
        restyle["keep_aspect"] = False
    for attr, key in (("blend", "blend"), ("max_frames", "max_frames")):
        if getattr(args, attr) is not None:
            restyle[key] = getattr(args, attr)
    if args.no_audio:
        restyle["audio"] = False
    cfg = build_config(cli, [args.config] if args.config else [])
    if not cfg.prompt and not cfg.story and not cfg.image_prompts:
        raise VqclipError("give a PROMPT (or a story: / image_prompts: in --config JOB.yaml)")
    return _run(cfg)


def run_resume(args: argparse.Namespace) -> int:
    """`vqclip resume`."""
    from ..callbacks import sigint_flag
    from ..resume import read_job, resume_run

    overrides: dict = {}
    if args.steps is not None:
        overrides["steps"] = args.steps
    if args.device is not None:
        overrides["device"] = args.device
    if args.threads is not None:
        overrides["threads"] = args.threads
    if args.quiet:
        overrides["output"] = {"progress": False}
    threads = read_job(Path(args.run), overrides or None).threads  # the job's own count keeps the result bit-exact
    with sigint_flag() as stop, torch_threads(threads):
        run = resume_run(args.run, overrides=overrides or None, stop=stop)
    _report(run, f"{run.result.steps} steps")
    return 130 if run.interrupted else 0


def register(sub) -> None:
    """Add `zoom`, `restyle` and `resume`."""
    z = sub.add_parser("zoom", help="zoom/rotate/pan video from a prompt", epilog=ZOOM_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Make a zoom video: the image is moved every few steps and optimised on; "
                                   "writes frames/, progress.mp4 and final.png into a run folder.")
    z.add_argument("prompt", nargs="?", help='"text:weight|text:weight", or a story "a ^ b" [prompt]')
    z.add_argument("--config", metavar="JOB.yaml", help="job file; CLI options override it")
    z.add_argument("--every", type=int, metavar="K", help="steps per transform = per frame [animation.every]")
    z.add_argument("--frames", type=int, metavar="N", help="video frames; sets steps = (N-1) * every")
    z.add_argument("--zoom", metavar="Z|KEYS", help="scale per frame, e.g. 1.02 or '0:1.0,100:1.05' [animation.zoom]")
    z.add_argument("--rotate", metavar="DEG|KEYS", help="degrees per frame, counter-clockwise [animation.rotate]")
    z.add_argument("--shift-x", metavar="PX|KEYS", help="pixels per frame, rightwards [animation.shift_x]")
    z.add_argument("--shift-y", metavar="PX|KEYS", help="pixels per frame, downwards [animation.shift_y]")
    z.add_argument("--padding", choices=["reflection", "border", "zeros"], help="border fill [animation.padding]")
    z.add_argument("--keep-optimizer", action="store_true",
                   help="keep the optimizer's momentum across moves [animation.reset_optimizer=false]")
    _add_job_options(z, skip=FRAME_OPTIONS)
    z.set_defaults(func=run_zoom)

    r = sub.add_parser("restyle", help="restyle a video frame by frame", epilog=RESTYLE_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="Restyle a video towards a prompt; --steps counts steps per frame and --fps "
                                   "overrides the input's frame rate.")
    r.add_argument("input", metavar="INPUT.mp4", help="video to restyle [restyle.input]")
    r.add_argument("prompt", nargs="?", help='"text:weight|text:weight" [prompt]')
    r.add_argument("--config", metavar="JOB.yaml", help="job file; CLI options override it")
    r.add_argument("--blend", type=float, metavar="B", help="share of the previous output in each start image, "
                                                            "0..1 [restyle.blend]")
    r.add_argument("--max-frames", type=int, metavar="N", help="restyle only the first N frames [restyle.max_frames]")
    r.add_argument("--no-audio", action="store_true", help="do not carry the audio over [restyle.audio]")
    _add_job_options(r, {"--steps": "optimisation steps per input frame [restyle.steps_per_frame]",
                         "--fps": "frame rate of restyled.mp4; default the input's [restyle.fps]"}, skip=FRAME_OPTIONS)
    r.set_defaults(func=run_restyle)

    s = sub.add_parser("resume", help="continue an interrupted run",
                       description="Continue a killed or stopped run in its folder from its state.pt (saved every "
                                   "state_every steps); the result is the same as an uninterrupted run. Restyle runs "
                                   "continue at the first missing frame.")
    s.add_argument("run", metavar="RUN_DIR", help="the run folder (holds job.yaml)")
    s.add_argument("--steps", type=int, metavar="N", help="go on to N steps in all (more than the job had)")
    s.add_argument("--device", metavar="D", help="auto, cpu, cuda, cuda:N, mps")
    s.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: the job's; another count may change the result's last bits)")
    s.add_argument("--quiet", action="store_true", help="no progress bar or notices")
    s.set_defaults(func=run_resume)
