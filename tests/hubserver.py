"""A Hugging Face hub stand-in on 127.0.0.1: HEAD and GET of /{repo}/resolve/{revision}/{file}, as huggingface_hub
asks for a file (commit, etag and size headers), so hf_hub_download runs for real and offline."""
import hashlib
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
