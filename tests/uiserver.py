"""A real `vqclip ui` server (uvicorn on 127.0.0.1, a free port) in a thread, always shut down; and small HTTP helpers
that use only the standard library, as any client would."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional


_CHECKERS: dict = {}


def shared_checker():
    """One set of checking processes for every test server of the session (each new one costs seconds of imports)."""
    from vqclip.ui.bounded import Checker

    return _CHECKERS.setdefault("shared", Checker())


class LiveServer:
    """`create_app(outputs, **options)` served by uvicorn in a daemon thread; `url` once started. The servers share
    their checking processes unless `checker=` says otherwise."""

    def __init__(self, outputs: Path, **options: Any):
        import uvicorn

        from vqclip.ui.server import create_app

        options.setdefault("checker", shared_checker())
        self.app = create_app(outputs, **options)
        self.outputs = Path(outputs).resolve()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", timeout_graceful_shutdown=2))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def start(self) -> "LiveServer":
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)
        self.sock.close()

    @property
    def queue(self):
        return self.app.state.queue

    def request(self, method: str, path: str, body: Any = None, *, data: Optional[bytes] = None,
                headers: Optional[dict] = None) -> tuple[int, Any]:
        """(status, JSON body) of a request; `body` is sent as JSON, `data` as given."""
        if body is not None:
            data, headers = json.dumps(body).encode(), {"Content-Type": "application/json", **(headers or {})}
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(req, timeout=60) as res:
                raw, status = res.read(), res.status
        except urllib.error.HTTPError as exc:
            raw, status = exc.read(), exc.code
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw

    def upload(self, content: bytes, filename: str = "x.png") -> tuple[int, Any]:
        """POST /api/uploads as a browser's multipart form would."""
        boundary = "vqclipboundary7d"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + f"\r\n--{boundary}--\r\n".encode()
        return self.request("POST", "/api/uploads", data=body,
                            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})

    def wait(self, job_id: str, timeout: float = 120) -> dict:
        """The job once it has ended."""
        job = self.queue.get(job_id)
        assert self.queue.wait(job, timeout), f"job {job_id} did not end in {timeout} s"
        return next(j for j in self.request("GET", "/api/jobs")[1] if j["id"] == job_id)
