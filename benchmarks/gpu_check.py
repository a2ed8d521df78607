"""The GPU check: speed against the textbook loop, peak memory, FLOPs, the share of the card's bf16 peak, the
largest size that fits, and correctness (bf16 vs fp32, same seed twice, resume after a kill); prints a table and
writes benchmarks/results_gpu.json (see benchmarks/README.md and docs/performance.md).

    python benchmarks/gpu_check.py                        # one GPU, about 8 minutes
    python benchmarks/gpu_check.py --device cpu --quick   # the whole check on tiny sizes, about a minute
    python benchmarks/gpu_check.py --budget 120           # stop after two minutes with what was measured
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vqclip.measure.gpuargs import script_parser  # noqa: E402

if __name__ == "__main__":
    script_parser().parse_args()  # --help and a bad option end here, before torch loads (a second, not four)
    from vqclip.measure.gpusuite import main

    sys.exit(main())
