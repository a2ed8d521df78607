"""The mutation tables, one module per area of the package; `MUTATIONS` is all of them in order."""

from __future__ import annotations

from . import (a1111, camera, cli, config, depth, edit, files, flow, interpolate, math, models, modes, nets, newcomer,
               optim, regions, runs, steer, terms, tools, ui)
from . import judge
from ._table import M, Mutation

TABLES = {"math": math, "optim": optim, "modes": modes, "runs": runs, "config": config, "files": files, "nets": nets,
          "ui": ui, "models": models, "newcomer": newcomer, "terms": terms, "tools": tools, "cli": cli, "edit": edit,
          "regions": regions, "depth": depth, "camera": camera, "flow": flow, "interpolate": interpolate,
          "steer": steer, "a1111": a1111, "judge": judge}
MUTATIONS: list[Mutation] = [m for table in TABLES.values() for m in table.MUTATIONS]

__all__ = ["M", "MUTATIONS", "Mutation", "TABLES"]
