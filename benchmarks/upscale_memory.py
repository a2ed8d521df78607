"""Peak memory of a 4x upscale of a 1024² image on CPU with RealESRGAN_x4plus-shaped random weights (RRDBNet, 23
blocks, 64 features, growth 32, saved in Real-ESRGAN's published `params_ema` layout), tiled and written as PNG as
`vqclip upscale` does it (`vqclip.runs.upscale.write_upscaled`). The measurement runs in its own subprocess, so its
peak RSS (ru_maxrss: the whole process, torch and the model included; tracemalloc does not see torch's allocations)
is that run's own.

The network costs about 36 MFLOP per input pixel (38 TFLOP for 1024²: an hour or more on a shared 2-core CPU), so
`--real-tiles N` runs the network on the first N tiles only and gives the rest a precomputed tile of the same shape:
every tile has the same size and the output and weight buffers are allocated in full at the first tile, so the peak
is reached with the first tiles; the blending, the division and the PNG are done for the whole image.

    python benchmarks/upscale_memory.py                                   # tile 192 (the default), 1024², all tiles
    python benchmarks/upscale_memory.py --real-tiles 2 --json             # the same peak, minutes instead of hours
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def child(weights: str, size: int, tile: int, threads: int, real_tiles: int) -> dict:
    """One upscale written as PNG in this process: the figures it measured."""
    sys.path.insert(0, str(ROOT))
    import torch
    from PIL import Image

    from vqclip.nets.upscaler import OVERLAP, load_upscaler
    from vqclip.runs.upscale import write_upscaled

    torch.set_num_threads(threads)
    up = load_upscaler(weights)
    real, calls, seconds, first = up.net, [0], [], {}

    def net(patch):  # the real network on the first `real_tiles` tiles, then a stored tile of the same shape
        calls[0] += 1
        if real_tiles and calls[0] > real_tiles and patch.shape in first:
            return first[patch.shape].clone()
        start = time.perf_counter()
        out = real(patch)
        seconds.append(time.perf_counter() - start)
        first.setdefault(patch.shape, out)
        return out

    up.net = net
    image = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        path = write_upscaled(up, image, Path(tmp) / "out.png", tile=tile)
        with Image.open(path) as im:
            written = list(im.size)
    total = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"size": size, "tile": tile, "overlap": min(OVERLAP, tile // 2), "threads": threads, "scale": up.scale,
            "output": written, "tiles": calls[0], "real_tiles": len(seconds),
            "s_per_real_tile": round(sum(seconds) / len(seconds), 1), "seconds": round(total, 1),
            "peak_rss_gib": round(peak / 2**20, 3), "rss_before_upscale_gib": round(before / 2**20, 3),
            "model": up.name, "torch": torch.__version__}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--tile", type=int, default=192)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--real-tiles", type=int, default=0, metavar="N",
                        help="run the network on the first N tiles only (0: all)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", metavar="WEIGHTS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.size, args.tile, args.threads, args.real_tiles)))
        return 0
    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_upscaler import rrdb_state, save_upscaler

    with tempfile.TemporaryDirectory() as tmp:
        weights = save_upscaler(Path(tmp) / "RealESRGAN_x4plus_random.pth",
                                rrdb_state(num_feat=64, num_block=23, grow=32, scale=4), ema=True)
        done = subprocess.run([sys.executable, __file__, "--child", str(weights), "--size", str(args.size),
                               "--tile", str(args.tile), "--threads", str(args.threads),
                               "--real-tiles", str(args.real_tiles)],
                              capture_output=True, text=True)
    if done.returncode:
        sys.exit(done.stderr)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result) if args.json else
          f"{result['size']}² x{result['scale']} -> {result['output'][0]}x{result['output'][1]} PNG, "
          f"tile {result['tile']} "
          f"(overlap {result['overlap']}), {result['tiles']} tiles ({result['real_tiles']} through the network, "
          f"{result['s_per_real_tile']} s each), {result['threads']} threads: {result['seconds']} s, peak RSS "
          f"{result['peak_rss_gib']} GiB (before the upscale: {result['rss_before_upscale_gib']} GiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
