"""A Hugging Face hub stand-in on 127.0.0.1: HEAD and GET of /{repo}/resolve/{revision}/{file}, as huggingface_hub
asks for a file (commit, etag and size headers), so hf_hub_download runs for real and offline; and hub caches laid
out as huggingface_hub lays a download out."""
import hashlib
import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class HubServer:
    """Serves `files` ({"org/repo/filename": bytes}) at main = COMMIT; records (method, path) of each request."""

    def __init__(self, files: dict):
        self.files, self.requests = files, []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _file(self):
                path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path).lstrip("/")
                server.requests.append((self.command, path))
                repo, sep, rest = path.partition("/resolve/")
                name = rest.split("/", 1)[-1] if sep else ""
                return server.files.get(f"{repo}/{name}")

            def _headers(self, body):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("ETag", f'"{hashlib.sha256(body).hexdigest()}"')
                self.send_header("X-Repo-Commit", COMMIT)
                self.end_headers()

            def do_HEAD(self):
                body = self._file()
                if body is None:
                    self.send_error(404)
                else:
                    self._headers(body)

            def do_GET(self):
                body = self._file()
                if body is None:
                    self.send_error(404)
                    return
                self._headers(body)
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def hub_cache_repo(cache: Path, repo: str, files: dict[str, bytes]) -> Path:
    """`files` of hub repository `repo` in `cache` as huggingface_hub lays a download out: blobs named by hash, a
    snapshot of relative symlinks to them, refs/main naming the snapshot. The snapshot folder."""
    root = cache / f"models--{repo.replace('/', '--')}"
    snapshot = root / "snapshots" / COMMIT
    for folder in (root / "blobs", snapshot, root / "refs"):
        folder.mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(COMMIT)
    for name, data in files.items():
        blob = root / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob.name))
    return snapshot


def hub_snapshot(cache: Path, data: bytes = b"w") -> Path:
    """The OpenAI ViT-B-32 weights as open_clip's hub downloader leaves them in `cache`; their path."""
    return hub_cache_repo(cache, "timm/vit_base_patch32_clip_224.openai", {"open_clip_model.safetensors": data}) \
        / "open_clip_model.safetensors"


def hub_repo(cache: Path, repo: str, tiny_clip) -> Path:
    """A tiny open_clip model as open_clip's hub push lays it out (open_clip_config.json with model_cfg and
    preprocess_cfg, open_clip_model.safetensors), as a download in `cache`. The snapshot folder."""
    from tiny import CLIP_CFG

    config = {"model_cfg": CLIP_CFG, "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}}
    return hub_cache_repo(cache, repo, {"open_clip_config.json": json.dumps(config).encode(),
                                        "open_clip_model.safetensors": Path(tiny_clip[1]).read_bytes()})
