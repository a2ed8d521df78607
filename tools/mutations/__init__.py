"""The mutation tables, one module per area of the package; `MUTATIONS` is all of them in order."""

from __future__ import annotations

from . import (cli, config, edit, files, interpolate, math, models, modes, newcomer, nets, optim, regions, runs, terms,
               tools, ui)
from ._table import M, Mutation

TABLES = {"math": math, "optim": optim, "modes": modes, "runs": runs, "config": config, "files": files, "nets": nets,
          "ui": ui, "models": models, "newcomer": newcomer, "terms": terms, "tools": tools, "cli": cli, "edit": edit,
          "regions": regions, "interpolate": interpolate}
MUTATIONS: list[Mutation] = [m for table in TABLES.values() for m in table.MUTATIONS]

__all__ = ["M", "MUTATIONS", "Mutation", "TABLES"]
