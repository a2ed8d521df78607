"""The mutation tables, one module per area of the package; `MUTATIONS` is all of them in order."""

from __future__ import annotations

from . import (a1111, branch, camera, cli, config, depth, edit, files, flow, interpolate, judge, math, models, modes,
               nets, newcomer, optim, page_steer, regions, report, runs, steer, terms, tools, train, trainvqgan, ui)
from ._table import M, Mutation

TABLES = {"math": math, "optim": optim, "modes": modes, "runs": runs, "config": config, "files": files, "nets": nets,
          "ui": ui, "models": models, "newcomer": newcomer, "terms": terms, "tools": tools, "cli": cli, "edit": edit,
          "regions": regions, "depth": depth, "camera": camera, "flow": flow, "interpolate": interpolate,
          "steer": steer, "a1111": a1111, "branch": branch, "report": report, "train": train, "page_steer": page_steer,
          "trainvqgan": trainvqgan, "judge": judge}
MUTATIONS: list[Mutation] = [m for table in TABLES.values() for m in table.MUTATIONS]

__all__ = ["M", "MUTATIONS", "Mutation", "TABLES"]
