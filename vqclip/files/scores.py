"""scores.json: the held-out judge's score of each saved frame of a run, beside the guide's, the best frame and why the
run stopped; written atomically after each scoring, read back by resume, `vqclip rank`, grids and reports.

The layout (higher is better for every number):
{"judge": {"model": NAME, "aesthetic": NAME|null}, "guides": [NAME, ...],
 "frames": [{"step": int, "file": "frames/000010.png", "judge": float, "aesthetic": float|null,
             "guide": float|null}, ...],
 "best": {"step": int, "file": "best.png"}|null, "stopped_by": "patience"|null}
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional

from ..errors import VqclipError
from .atomic import write_text

SCORES_FILE = "scores.json"


def scores_path(run_dir: Path) -> Path:
    """Where a run keeps its judge's scores."""
    return Path(run_dir) / SCORES_FILE


def _number(value: Any, where: str, nullable: bool) -> Optional[float]:
    """A finite number (or None where allowed), else a one-line error naming the place."""
    if value is None and nullable:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise VqclipError(f"{where}: expected a finite number, got {value!r}")
    return float(value)


def _step(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise VqclipError(f"{where}: expected a step (an integer >= 0), got {value!r}")
    return value


def check_scores(data: Any, where: str) -> dict:
    """`data` as a scores mapping of the layout above (a copy with numbers as floats), else a one-line error."""
    if not isinstance(data, dict) or not {"judge", "guides", "frames"} <= data.keys():
        raise VqclipError(f"{where}: not a vqclip scores file (needs judge, guides and frames)")
    judge = data["judge"]
    if not isinstance(judge, dict) or not isinstance(judge.get("model"), str):
        raise VqclipError(f"{where}: judge: expected {{model: NAME, aesthetic: NAME or null}}")
    guides = data["guides"]
    if not isinstance(guides, list) or not all(isinstance(g, str) for g in guides):
        raise VqclipError(f"{where}: guides: expected a list of model names")
    if not isinstance(data["frames"], list):
        raise VqclipError(f"{where}: frames: expected a list")
    frames = []
    for i, f in enumerate(data["frames"]):
        at = f"{where}: frames[{i}]"
        if not isinstance(f, dict) or not isinstance(f.get("file"), str):
            raise VqclipError(f"{at}: expected {{step, file, judge, aesthetic, guide}}")
        frames.append({"step": _step(f.get("step"), f"{at}.step"), "file": f["file"],
                       "judge": _number(f.get("judge"), f"{at}.judge", False),
                       "aesthetic": _number(f.get("aesthetic"), f"{at}.aesthetic", True),
                       "guide": _number(f.get("guide"), f"{at}.guide", True)})
    best = data.get("best")
    if best is not None and (not isinstance(best, dict) or not isinstance(best.get("file"), str)):
        raise VqclipError(f"{where}: best: expected {{step, file}} or null")
    if best is not None:
        best = {"step": _step(best.get("step"), f"{where}: best.step"), "file": best["file"]}
    stopped = data.get("stopped_by")
    if stopped not in (None, "patience"):
        raise VqclipError(f"{where}: stopped_by: expected \"patience\" or null, got {stopped!r}")
    return {"judge": {"model": judge["model"], "aesthetic": judge.get("aesthetic")}, "guides": list(guides),
            "frames": frames, "best": best, "stopped_by": stopped}


def read_scores(run_dir: Path) -> Optional[dict]:
    """A run folder's scores.json, checked; None when the run has none (it was not judged)."""
    path = scores_path(run_dir)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VqclipError(f"{path}: not readable JSON ({exc}); delete it, or run `vqclip resume` to score again"
                          ) from None
    return check_scores(data, str(path))


def write_scores(run_dir: Path, data: dict) -> Path:
    """Write a run's scores.json atomically (checked first: a bad record is an error, never a bad file)."""
    path = scores_path(run_dir)
    return write_text(path, json.dumps(check_scores(data, str(path)), indent=1) + "\n")


def final_score(data: Optional[dict]) -> Optional[float]:
    """The judge's score of a run's last scored frame (its final image), None for a run without scores."""
    frames = (data or {}).get("frames") or []
    return max(frames, key=lambda f: f["step"])["judge"] if frames else None
