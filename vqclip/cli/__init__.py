"""The `vqclip` command: the only place that reads argv. Each module of this package adds its subcommands."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys

from tqdm import tqdm

from .._version import __version__
from ..errors import SHOWN, WRITE_FAULTS, VqclipError, cut, shown, write_error
from ..nets.device import MPS_FALLBACK, enable_mps_fallback, passive_omp_wait
from .options import HelpFormatter, quiet_flag

COMMAND_MODULES = ("generate", "models", "clipjobs", "animate", "bench", "upscale", "ui", "report", "train")


class _OneLine(logging.Formatter):
    """Notices as `note: ...`, warnings as `warning: ...`."""

    def format(self, record: logging.LogRecord) -> str:
        prefix = "note" if record.levelno < logging.WARNING else record.levelname.lower()
        return f"{prefix}: {record.getMessage()}"


class _BarSafeHandler(logging.StreamHandler):
    """Writes each notice on a line of its own through tqdm, so that a progress bar being drawn is not torn."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # noqa: BLE001 - logging's own convention: never raise from a handler
            self.handleError(record)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (`error: ...; see --help`) and exit code 2, like every other bad input, and
    defaults shown in --help (every subcommand's parser is one of these)."""

    def __init__(self, *args, formatter_class=HelpFormatter, **kwargs):
        super().__init__(*args, formatter_class=formatter_class, **kwargs)

    def error(self, message: str):
        message = re.sub(r"'([^'\n]{%d,})'" % (SHOWN + 1), lambda m: shown(m.group(1)), message)  # argparse echoes
        message = re.sub(r"[^\s']{%d,}" % (SHOWN + 1), lambda m: cut(m.group()), message)  # values whole: cut them
        self.exit(2, f"error: {self.prog}: {message}; see `{self.prog} --help`\n")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser, with every available subcommand."""
    parser = _Parser(
        prog="vqclip", description="Text-to-image with VQGAN+CLIP, and CLIP's other jobs (classify, search, score).")
    parser.add_argument("--version", action="version", version=f"vqclip {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        module.register(sub)
    parser.commands = sub.choices  # so a stray option is reported against its command's --help
    return parser


def _route_logging(quiet: bool) -> logging.Handler:
    """Send vqclip's notices to stderr for this run (undone on exit, so nothing global lingers)."""
    handler = _BarSafeHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    handler.setLevel(logging.WARNING if quiet else logging.INFO)  # also when a server's queue lets INFO through
    logger = logging.getLogger("vqclip")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)
    logger.propagate = False
    return handler


def main(argv: list[str] | None = None) -> int:
    """Run one vqclip command; a VqclipError becomes `error: ...` on stderr and exit code 2."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:
        parser.commands.get(getattr(args, "command", None), parser).error(f"unrecognized arguments: {' '.join(extra)}")
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    handler = _route_logging(getattr(args, "quiet", False) or quiet_flag(args))
    enable_mps_fallback()
    passive_omp_wait()
    try:
        return int(args.func(args) or 0)
    except VqclipError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NotImplementedError as exc:  # an op without an MPS kernel, with torch's CPU fallback turned off
        if "MPS" not in str(exc):
            raise
        op = re.search(r"operator '([^']+)'", str(exc))
        print(f"error: {op.group(1) if op else 'an operator'} is not implemented on MPS; set "
              f"{MPS_FALLBACK}=1 (it then runs on the CPU) or use --device cpu", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as exc:  # torch.OutOfMemoryError, or the CPU allocator's RuntimeError
        if not isinstance(exc, MemoryError) and not re.search(r"out of memory|can't allocate memory", str(exc)):
            raise
        asked = re.search(r"tried to allocate [\d.]+ ?\w+", str(exc), re.IGNORECASE)
        print(f"error: out of memory{f' ({asked.group(0)})' if asked else ''}; try a smaller --size, --cutn or "
              "--batch-size, or --set memory=low or --set micro_batch=4", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `vqclip search ... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:  # a write outside the atomic helpers (which raise WriteError): a full disk, no permission
        if exc.filename is None or exc.errno not in WRITE_FAULTS:
            raise
        print(f"error: {write_error(exc.filename, exc)}", file=sys.stderr)
        return 2
    finally:
        logging.getLogger("vqclip").removeHandler(handler)


if __name__ == "__main__":
    sys.exit(main())
