"""`vqclip upscale IMG... --model NAME|PATH`: super-resolution of finished images (ESRGAN / Real-ESRGAN / SwinIR and
other networks spandrel reads; `pip install 'vqclip[upscale]'`), tiled so memory stays bounded."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..config.job import UpscaleConfig
from ..errors import VqclipError
from .options import RawHelpFormatter

EPILOG = """examples:
  vqclip upscale outputs/run/final.png --model RealESRGAN_x4plus        # -> outputs/run/final_x4.png
  vqclip upscale a.png b.png --model realesr-general-x4v3 --out big/    # small and fast
  vqclip upscale final.png --model RealESRGAN_x4plus --scale 2          # the 4x output resized down to 2x
  vqclip upscale final.png --model ~/weights/4x-UltraSharp.pth          # any weights file spandrel reads

presets (downloaded once into <home>/upscalers, sha256 recorded on first download):
  RealESRGAN_x4plus (~64 MB), RealESRGAN_x2plus (~64 MB), RealESRGAN_x4plus_anime_6B (~18 MB),
  realesr-general-x4v3 (~5 MB)
A run can end with the same step: --set output.upscale.model=NAME (final.png stays; final_xN.png is added)."""


def register(subparsers) -> None:
    """Add the `upscale` subcommand."""
    p = subparsers.add_parser("upscale", help="upscale images with an ESRGAN-style network (vqclip[upscale])",
                              description=__doc__, epilog=EPILOG, formatter_class=RawHelpFormatter)
    a = p.add_argument
    a("images", nargs="+", metavar="IMG", help="images to upscale (each written as <name>_xN.png)")
    a("--model", required=True, metavar="NAME|PATH", help="an upscaler preset (see below) or a weights file")
    a("--scale", type=int, default=None, metavar="N", help="output scale (default: the model's own); below the "
      "model's, its output is resized down; above it is an error")
    a("--tile", type=int, default=UpscaleConfig().tile, metavar="PX",  # the one default, output.upscale.tile's
      help="tile side in input pixels, overlapping and blended (0: the whole image at once)")
    a("--out", default=None, metavar="DIR", help="folder for the results (default: beside each image)")
    a("--device", default="auto", metavar="D", help="auto (cuda, mps, cpu), cpu, cuda, cuda:N or mps")
    a("--force", action="store_true", help="replace results that exist already")
    a("--quiet", action="store_true", help="no progress bar or notices")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check every input and output first, then load the upscaler once and write each result atomically."""
    from ..files.images import load_image, open_rgb, read_png_json  # PIL, torch: here for a fast --help
    from ..nets.device import pick_device
    from ..runs.upscale import prepare_upscaler, upscaled_name, write_upscaled

    if args.scale is not None and args.scale < 1:
        raise VqclipError(f"--scale: must be >= 1 (default: the model's own), got {args.scale}")
    if args.tile != 0 and args.tile < 32:
        raise VqclipError(f"--tile: must be >= 32 pixels (0 = the whole image at once), got {args.tile}")
    out_dir = Path(args.out).expanduser() if args.out else None
    if out_dir is not None and out_dir.exists() and not out_dir.is_dir():
        raise VqclipError(f"--out: {out_dir} is a file, not a folder")
    for image in args.images:
        open_rgb(image)  # an unreadable image fails before the model loads
    upscaler = prepare_upscaler(args.model, args.scale, pick_device(args.device), progress=not args.quiet)
    scale = args.scale or upscaler.scale
    targets = [upscaled_name(out_dir / Path(i).name if out_dir else Path(i), scale) for i in args.images]
    clash = [str(t) for t in targets if t.exists()] if not args.force else []
    if clash:
        raise VqclipError(f"{clash[0]} exists already; pass --force to replace it, or --out DIR")
    if len(set(targets)) != len(targets):
        raise VqclipError("two images would be written to the same file; give them different names or use --out")
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    for image, target in zip(args.images, targets):
        try:
            metadata = read_png_json(image)  # a vqclip PNG keeps its job, so --from works on the result too
        except VqclipError:
            metadata = None
        write_upscaled(upscaler, load_image(image), target, scale=scale, tile=args.tile, metadata=metadata,
                       source=Path(image).name)
    return 0
