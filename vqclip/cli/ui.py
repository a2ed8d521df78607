"""`vqclip ui`: a local web page to make, watch, stop and browse runs (needs `pip install 'vqclip[ui]'`)."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import socket
import sys
from pathlib import Path

from ..errors import VqclipError

log = logging.getLogger("vqclip")

EPILOG = """examples:
  vqclip ui                          # http://127.0.0.1:<free port>/ ; runs go to ./outputs
  vqclip ui --port 7860 --outputs ~/art
  vqclip ui --host 0.0.0.0           # others on the network can use it (and this machine's GPU): see docs/ui.md

The page works offline on the built-in mini preset; every installed or downloadable preset can be chosen."""


def register(subparsers) -> None:
    """Add the `ui` subcommand."""
    p = subparsers.add_parser("ui", help="a local web page to make, watch and browse runs (vqclip[ui])",
                              description=__doc__, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    a = p.add_argument
    a("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)")
    a("--port", type=int, default=0, help="port (default: 0, a free one, printed)")
    a("--outputs", default="outputs", metavar="DIR", help="the runs folder the page writes to and shows "
      "(default: outputs, as for the other commands)")
    a("--device", default=None, metavar="D", help="device for the page's runs: auto (cuda, mps, cpu), cpu, cuda, "
      "cuda:N or mps (default: auto)")
    a("--quiet", action="store_true", help="no notices")
    p.set_defaults(func=run)


def loopback(host: str) -> bool:
    """Whether `host` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _server_class(uvicorn):
    """uvicorn's Server that, at the first Ctrl-C, also tells the app to stop (its event streams end, its checks are
    killed, its runs stop at the end of their step), so that uvicorn's graceful shutdown has nothing to wait for."""

    class Server(uvicorn.Server):
        def __init__(self, config, on_exit):
            super().__init__(config)
            self.on_exit = on_exit

        def handle_exit(self, sig, frame) -> None:
            super().handle_exit(sig, frame)
            self.on_exit()

    return Server


def run(args: argparse.Namespace) -> int:
    """Serve the page until Ctrl-C; the port is chosen (and bound) before the URL is printed."""
    try:
        import uvicorn

        from ..ui.server import create_app  # fastapi, and torch: here for a fast --help
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("fastapi", "uvicorn", "starlette", "multipart", "python_multipart"):
            raise VqclipError(f"vqclip ui needs {exc.name.split('.')[0]}: pip install 'vqclip[ui]'") from None
        raise
    if not 0 <= args.port <= 65535:
        raise VqclipError(f"--port: must be 0..65535 (0: a free one), got {args.port}")
    if not loopback(args.host):
        log.warning("listening on %s: anyone who can reach this machine can use the page, its GPU, and read every "
                    "run in %s", args.host, args.outputs)
    outputs = Path(args.outputs).expanduser()
    if outputs.exists() and not outputs.is_dir():
        raise VqclipError(f"--outputs: {outputs} is a file, not a folder")
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
        sock.listen(128)  # a browser opened at once waits in the backlog instead of being refused
    except OSError as exc:
        sock.close()
        raise VqclipError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}") from None
    port = sock.getsockname()[1]
    app = create_app(outputs, device=args.device)
    shown = f"[{args.host}]" if family == socket.AF_INET6 else args.host
    print(f"vqclip ui: http://{shown}:{port}/  (runs in {outputs.resolve()}; Ctrl-C stops)", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5)
    server = _server_class(uvicorn)(config, app.state.stop)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
