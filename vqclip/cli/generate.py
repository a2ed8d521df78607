"""`vqclip generate PROMPT ...` and `vqclip run JOB.yaml ...`: every option maps to a key of the job config."""

from __future__ import annotations

import argparse
import contextlib
import sys

import yaml

from ..config import check_inputs
from ..errors import VqclipError
from ..jobyaml import load_value

EPILOG = """examples:
  vqclip generate "a red circle on a blue background" --model mini
  vqclip generate "toaster forest:1|blurry:-0.5" --steps 500 --size 384 256 --seed 7
  vqclip generate --from outputs/run/final.png --steps 800 --out outputs/longer
  vqclip run configs/mini.yaml configs/batch.yaml

Every job option has a YAML key (shown in brackets; --config, --from and --set pick where values come from); CLI
values override the YAML. A file with a `jobs:` list runs with `vqclip run`. Ctrl-C stops at the end of the
current step and still writes final.png and the video (exit code 130)."""


def _add_job_options(p: argparse.ArgumentParser, helps: dict[str, str] | None = None, skip: tuple[str, ...] = ()) -> None:
    """Options shared by generate (and animation commands): each sets one config key; `helps` replaces the help
    of options that mean something else on a command (restyle's --steps counts steps per frame), `skip` leaves out
    those it does not use."""

    def a(flag: str, *rest, **kwargs):
        if flag in skip:
            return None
        kwargs["help"] = (helps or {}).get(flag, kwargs.get("help"))
        return p.add_argument(flag, *rest, **kwargs)

    a("--model", metavar="NAME", help="preset: VQGAN + CLIP + defaults (see `vqclip models`) [model]")
    a("--steps", type=int, metavar="N", help="optimisation steps [steps]")
    a("--size", type=int, nargs=2, metavar=("W", "H"), help="image size; rounded to the VQGAN factor [size]")
    a("--seed", type=int, metavar="S", help="random seed; drawn and recorded when not given or -1 [seed]")
    a("--negative", action="append", metavar="TEXT", help="text to push away from (repeatable) [negative]")
    a("--image-prompt", action="append", metavar="PATH[:W]", help="image to aim at (repeatable) [image_prompts]")
    a("--init", choices=["random", "pixels", "gradient", "flat", "background"],
      help="how to start; background = flat in the colour the prompt names after 'on' [init.kind]")
    a("--init-image", metavar="PATH", help="start from this image [init.image]")
    a("--init-weight", type=float, metavar="W", help="keep the latent near its start [init.weight]")
    a("--cutn", type=int, metavar="N", help="cutouts per step [cutouts.n]")
    a("--cut-pow", type=float, metavar="P", help="cutout size skew [cutouts.pow]")
    a("--augments", metavar="A,B", help="kornia augments: affine,perspective,flip,jitter,sharpness,erasing,noise "
                                        "[cutouts.augments]")
    a("--optimizer", metavar="NAME", help="adam, adamw, sgd, rmsprop, radam, nadam, adamax, adagrad [optimizer.name]")
    a("--lr", type=float, metavar="LR", help="learning rate [optimizer.lr]")
    a("--schedule", choices=["constant", "cosine", "linear"], help="learning-rate schedule [optimizer.schedule]")
    a("--tv-weight", type=float, metavar="W", help="smoothness prior [tv_weight]")
    a("--candidates", type=int, metavar="N", help="best of N starts, run together: the best-scored after "
                                                  "candidates.steps steps goes on [candidates.n]")
    a("--vqgan-config", metavar="YAML", help="taming model YAML [vqgan.config]")
    a("--vqgan-checkpoint", metavar="CKPT", help="VQGAN .ckpt or .safetensors [vqgan.checkpoint]")
    a("--clip-model", action="append", metavar="NAME|JSON", help="CLIP architecture, repeatable [clip[i].model]")
    a("--clip-pretrained", action="append", metavar="TAG|FILE", help="weights for each --clip-model [clip[i].pretrained]")
    a("--clip-weight", action="append", type=float, metavar="W", help="loss weight of each --clip-model [clip[i].weight]")
    a("--device", metavar="D", help="auto, cpu, cuda, cuda:N, mps [device]")
    a("--precision", choices=["auto", "fp32", "bf16"], help="bf16 autocast (CUDA default) or fp32 [precision]")
    a("--out", metavar="DIR", help="run folder; default outputs/<time>-<prompt> [output.dir]")
    a("--save-every", type=int, metavar="K", help="save a frame every K steps, 0 for none [output.save_every]")
    a("--no-video", action="store_true", help="do not write progress.mp4 [output.video]")
    a("--video-format", choices=["mp4", "gif"], help="progress video format [output.video_format]")
    a("--fps", type=int, help="frames per second of the video [output.fps]")
    a("--quiet", action="store_true", help="no progress bar or notices [output.progress]")
    a("--threads", type=int, metavar="N", help="CPU threads for torch; 1 is fastest on a busy machine [threads]")
    a("--change-every", type=int, metavar="N", help="for 'a ^ b' story prompts: steps per part [change_every]")
    a("--video-length", type=float, metavar="SECONDS", help="pick the fps from the frame count [output.video_length]")
    a("--gif-max-side", type=int, metavar="PX", help="shrink GIF frames to this size [output.gif_max_side]")
    a("--set", action="append", default=[], metavar="KEY=VALUE", help="any other key, e.g. cutouts.noise=0.05")


def _set(tree: dict, dotted: str, value) -> None:
    keys = dotted.split(".")
    if any(k.isdigit() for k in keys):
        raise VqclipError(f"--set {dotted}: --set cannot index a list; give the whole list in a job YAML (clip: "
                          "[{model: ..., weight: 2}]) or use the matching options (--clip-model, --clip-weight)")
    for k in keys[:-1]:
        tree = tree.setdefault(k, {})
        if not isinstance(tree, dict):
            raise VqclipError(f"--set {dotted}: '{k}' is not a section")
    tree[keys[-1]] = value


def cli_overrides(args: argparse.Namespace) -> dict:
    """The config layer given on the command line (only what was actually passed)."""
    out: dict = {}
    simple = {"prompt": "prompt", "model": "model", "steps": "steps", "size": "size", "seed": "seed",
              "negative": "negative", "image_prompt": "image_prompts", "init": "init.kind",
              "init_weight": "init.weight", "cutn": "cutouts.n", "cut_pow": "cutouts.pow",
              "optimizer": "optimizer.name", "lr": "optimizer.lr", "schedule": "optimizer.schedule",
              "tv_weight": "tv_weight", "vqgan_config": "vqgan.config", "vqgan_checkpoint": "vqgan.checkpoint",
              "device": "device", "precision": "precision", "out": "output.dir", "save_every": "output.save_every",
              "video_format": "output.video_format", "fps": "output.fps", "change_every": "change_every",
              "video_length": "output.video_length", "gif_max_side": "output.gif_max_side", "threads": "threads",
              "candidates": "candidates.n"}
    for attr, key in simple.items():
        value = getattr(args, attr, None)
        if value is not None:
            _set(out, key, value)
    if getattr(args, "init_image", None):
        if getattr(args, "init", None) not in (None, "image"):
            raise VqclipError(f"--init {args.init} and --init-image contradict each other; give one of them")
        _set(out, "init.kind", "image")
        _set(out, "init.image", args.init_image)
    if getattr(args, "augments", None) is not None:
        _set(out, "cutouts.augments", [a.strip() for a in args.augments.split(",") if a.strip()])
    if getattr(args, "no_video", False):
        _set(out, "output.video", False)
    if getattr(args, "quiet", False):
        _set(out, "output.progress", False)
    models = getattr(args, "clip_model", None) or []
    pretrained = getattr(args, "clip_pretrained", None) or []
    weights = getattr(args, "clip_weight", None) or []
    if len(pretrained) > len(models) or len(weights) > len(models):
        raise VqclipError("--clip-pretrained/--clip-weight: give one per --clip-model, in the same order (a weight "
                          "without --clip-model would be ignored)")
    if models:
        out["clip"] = [{"model": m, "pretrained": pretrained[i] if i < len(pretrained) else None,
                        **({"weight": weights[i]} if i < len(weights) else {})} for i, m in enumerate(models)]
    for item in getattr(args, "set", []) or []:
        key, eq, raw = item.partition("=")
        if not eq or not key.strip():
            raise VqclipError(f"--set '{item}': expected KEY=VALUE, e.g. --set cutouts.noise=0.05")
        try:
            value = load_value(raw)
        except yaml.YAMLError:
            raise VqclipError(f"--set '{item}': the value is not valid YAML") from None
        _set(out, key.strip(), value)
    return out


@contextlib.contextmanager
def torch_threads(n: int):
    """Use n CPU threads for torch while a job runs (0: leave torch's choice); restored afterwards."""
    import torch

    from ..speed import usable_threads

    before = torch.get_num_threads()
    if n > 0:
        torch.set_num_threads(usable_threads(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _report(run) -> None:
    state = "stopped early" if run.interrupted else "done"
    print(f"{state}: {run.final} (seed {run.config.seed}, {run.result.steps} steps)"
          + (f", video {run.video}" if run.video else ""), file=sys.stderr)


def run_generate(args: argparse.Namespace) -> int:
    """`vqclip generate`."""
    from ..callbacks import sigint_flag  # torch comes with these: imported here so that --help is instant
    from ..jobs import build_config, run_job

    if not args.prompt and not args.config and not args.from_png and not args.image_prompt:
        raise VqclipError("give a PROMPT (or --config JOB.yaml, --from PNG, --image-prompt PATH)")
    cfg = build_config(cli_overrides(args), [args.config] if args.config else [], args.from_png)
    with sigint_flag() as stop, torch_threads(cfg.threads):
        run = run_job(cfg, stop=stop)
    _report(run)
    return 130 if run.interrupted else 0


def run_jobs(args: argparse.Namespace) -> int:
    """`vqclip run`: check every job first, then run them in order, loading each model once."""
    from ..callbacks import sigint_flag
    from ..jobs import ModelCache, build_config, jobs_from_file, run_job

    configs = []
    overrides = cli_overrides(args)
    for path in args.jobs:
        for i, job in enumerate(jobs_from_file(path)):
            source = f"{path} job {i + 1}"
            try:
                configs.append(build_config(overrides, base=[(source, job)]))
                check_inputs(configs[-1])
            except VqclipError as exc:  # say which job of which file, unless the message already does
                raise exc if str(exc).startswith(source) else VqclipError(f"{source}: {exc}") from None
    cache = ModelCache()
    with sigint_flag() as stop:
        for cfg in configs:
            with torch_threads(cfg.threads):
                run = run_job(cfg, cache=cache, stop=stop)
            _report(run)
            if run.interrupted:
                return 130
    return 0


def register(sub) -> None:
    """Add `generate` and `run`."""
    p = sub.add_parser("generate", help="make an image from a prompt", description="Make an image from a prompt "
                       "with VQGAN+CLIP; writes final.png, frames/, progress.mp4 and job.yaml into a run folder.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("prompt", nargs="?", help='"text:weight|text:weight" (negative weight pushes away) [prompt]')
    p.add_argument("--config", metavar="JOB.yaml", help="job file; CLI options override it")
    p.add_argument("--from", dest="from_png", metavar="PNG", help="re-run the job embedded in a vqclip PNG")
    _add_job_options(p)
    p.set_defaults(func=run_generate)

    r = sub.add_parser("run", help="run YAML job files", description="Run job files: each holds one job, or "
                       "`jobs:` with a list of them (other top-level keys are shared by all). All jobs are checked "
                       "before the first one starts.")
    r.add_argument("jobs", nargs="+", metavar="JOB.yaml")
    r.add_argument("--quiet", action="store_true", help="no progress bars or notices")
    r.add_argument("--device", metavar="D", help="override every job's device")
    r.add_argument("--threads", type=int, metavar="N", help="CPU threads for torch in every job")
    r.set_defaults(func=run_jobs)
