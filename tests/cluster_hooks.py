"""Step callbacks the Ray tests send to the workers (importable there: the test cluster's PYTHONPATH holds tests/)."""

from __future__ import annotations

import os
from pathlib import Path


class KillOnce:
    """Kill the worker process running the job (as a lost node would) at `step`, the first time only (the marker
    file, holding the killed pid, says it happened)."""

    def __init__(self, marker: Path, step: int):
        self.marker, self.step = Path(marker), step

    def __call__(self, event) -> None:
        if event.step == self.step and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os._exit(1)
