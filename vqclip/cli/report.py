"""`vqclip report RUN|BATCH...`: make or remake a run's report.html (and its plots in report/), or a batch's
batch.html, from what its folder holds; each missing part (no losses, no judge scores, no speed) is one notice."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import RawHelpFormatter

EPILOG = """examples:
  vqclip report outputs/20261207-081500-a-lighthouse     # -> its report.html and report/loss.png, report/scores.png
  vqclip report outputs/my-sweep                          # a batch folder -> its batch.html
A run writes its report at the end by itself (with matplotlib: pip install 'vqclip[report]'; --no-report: not)."""


def register(subparsers) -> None:
    """Add the `report` subcommand."""
    p = subparsers.add_parser("report", help="make a run's report.html (plots: vqclip[report]) or a batch's batch.html",
                              description=__doc__, epilog=EPILOG, formatter_class=RawHelpFormatter)
    p.add_argument("folders", nargs="+", metavar="FOLDER", help="run folders (or batch folders)")
    p.add_argument("--quiet", action="store_true", help="no notices of what is missing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Check every folder first, then write each page; prints the pages written."""
    from ..report.batchpage import BATCH_RECORD, write_batch_page  # here: --help stays fast
    from ..report.page import write_report
    from ..report.read import is_run_folder, read_run

    folders = [Path(f) for f in args.folders]
    for folder in folders:
        if not (folder / BATCH_RECORD).is_file() and not is_run_folder(folder):
            read_run(folder)  # its one-line error: no such folder, or not a run
    for folder in folders:
        if (folder / BATCH_RECORD).is_file():
            print(write_batch_page(folder))
        else:
            print(write_report(folder, quiet=args.quiet))
    return 0

