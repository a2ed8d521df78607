"""A local fixture HTTP server on 127.0.0.1 for the download tests: Range, cut transfers, failures, stalls."""

from __future__ import annotations

import hashlib
import random
import socket
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

STALL_LIMIT_S = 5.0  # a stalled handler never holds the server longer than this


@dataclass
class Route:
    """What the server does for one path: serve `body`, or misbehave for the next `times` requests."""

    body: bytes
    mode: str = "ok"  # ok | cut | stall | fail | close | norange | slow (10 pieces, 50 ms apart)
    cut_after: int = 0
    times: int | None = None  # None: always misbehave; n: only the next n requests
    content_type: str = "application/octet-stream"


class FixtureServer:
    """A ThreadingHTTPServer on 127.0.0.1:<free port> serving Routes, with Range support; records each request."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.stop_event = threading.Event()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def start(self) -> "FixtureServer":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stop_event.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)

    def add(self, path: str, body: bytes, **kwargs) -> str:
        """Serve `body` at `path`; its URL."""
        self.routes[path] = Route(body, **kwargs)
        return self.url(path)

    def url(self, path: str) -> str:
        return urllib.parse.urlunsplit(("http", f"127.0.0.1:{self.httpd.server_port}", path, "", ""))

    def ranges(self, path: str) -> list[str | None]:
        """The Range header of every request made for `path`, in order."""
        return [r for p, r in self.requests if p == path]


def _make_handler(server: FixtureServer):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):
            path = urllib.parse.urlsplit(self.path).path
            route = server.routes.get(path)
            server.requests.append((path, self.headers.get("Range")))
            if route is None:
                self.send_error(404)
                return
            mode = route.mode
            if route.times is not None:
                if route.times <= 0:
                    mode = "ok"
                route.times -= 1
            if mode == "fail":
                self.send_error(500, "fixture failure")
                return
            if mode == "close":
                self.close_connection = True
                return
            body, start = route.body, 0
            wanted = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
            if wanted and mode != "norange":
                start = int(wanted.group(1))
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if mode in ("cut", "stall"):
                self.wfile.write(body[start:start + route.cut_after])
                self.wfile.flush()
                if mode == "stall":
                    server.stop_event.wait(STALL_LIMIT_S)
                self.close_connection = True
                return
            if mode == "slow":
                step = max(1, (len(body) - start) // 10)
                for i in range(start, len(body), step):
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                    time.sleep(0.05)
                return
            self.wfile.write(body[start:])

    return Handler


def dead_url(path: str = "/gone.bin") -> str:
    """A 127.0.0.1 URL on a port nothing listens on (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return urllib.parse.urlunsplit(("http", f"127.0.0.1:{port}", path, "", ""))


def payload(n: int = 300_000, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
