"""``mobiledx app``: the release page, served on 127.0.0.1, which runs a release's model in the browser.

The page (``web/``) classifies a photo with MediaPipe Tasks for Web (``@mediapipe/tasks-vision``,
installed by ``make web`` from ``web/package-lock.json``), on the CPU, in the browser: the photo
never leaves the device. This server hands out three roots and nothing else:

- ``/``, ``/app.js``, ``/app.css``: the page;
- ``/vendor/tasks-vision/``: the npm package (its ES module and its WASM files);
- ``/release/``: the release folder's files (``model.tflite``, ``release.json``, the model card ...).

Every response carries a Content-Security-Policy that lets the page fetch from this server only, so
even a library update that phoned home could not send anything elsewhere.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mobiledx.codedeps import REPOSITORY
from mobiledx.errors import MobiledxError
from mobiledx.paths import RELEASE_MANIFEST, RELEASE_MODEL_FILE

WEB_DIR = REPOSITORY / "web"  # in the source tree (an editable install, as `make setup` makes)
VENDOR_DIR = WEB_DIR / "node_modules" / "@mediapipe" / "tasks-vision"
HOST = "127.0.0.1"
PAGE_FILES = {"/": "index.html", "/app.js": "app.js", "/app.css": "app.css"}
VENDOR_PREFIX, RELEASE_PREFIX = "/vendor/tasks-vision/", "/release/"
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".js": "application/javascript",
    ".mjs": "application/javascript",
    ".wasm": "application/wasm",
    ".tflite": "application/octet-stream",
    ".json": "application/json",
    ".md": "text/markdown; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
}
# 'wasm-unsafe-eval': compiling MediaPipe's WebAssembly; blob:/data:: the chosen photo's preview.
CONTENT_SECURITY_POLICY = ("default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; "
                           "img-src 'self' blob: data:; style-src 'self'; object-src 'none'; base-uri 'none'; "
                           "form-action 'none'")


class WebAppError(MobiledxError):
    """The page cannot be served (not a release folder, npm package missing, port taken); the message names the fix."""


def check_release(folder: str | Path) -> Path:
    """``folder`` resolved, if it is a release folder (``release.json`` and ``model.tflite``)."""
    folder = Path(folder).resolve()
    missing = [name for name in (RELEASE_MANIFEST, RELEASE_MODEL_FILE) if not (folder / name).is_file()]
    if missing:
        raise WebAppError(f"{folder} is not a release folder (no {' or '.join(missing)}). Fix: `mobiledx release "
                          f"<dataset>` writes release/<dataset>/; pass that folder")
    return folder


def check_vendor() -> Path:
    """The npm package's folder, if it is installed (its ES module bundle and WASM files)."""
    if not (VENDOR_DIR / "vision_bundle.mjs").is_file() or not (VENDOR_DIR / "wasm").is_dir():
        raise WebAppError(f"the page's npm package @mediapipe/tasks-vision is not installed ({VENDOR_DIR} is "
                          f"missing). Fix: make web (npm ci --prefix web)")
    return VENDOR_DIR.resolve()


def _file_under(root: Path, relative: str) -> Path | None:
    """``root/relative`` if it is a file inside ``root`` (no ``..`` or symlink escapes), else None."""
    try:
        candidate = (root / relative).resolve()
        return candidate if candidate.is_relative_to(root) and candidate.is_file() else None
    except (OSError, ValueError):  # a name the file system refuses (too long, a NUL byte)
        return None


def _handler(release: Path, vendor: Path) -> type[BaseHTTPRequestHandler]:
    web = WEB_DIR.resolve()

    class Handler(BaseHTTPRequestHandler):
        def _resolve(self) -> Path | None:
            path = unquote(urlsplit(self.path).path)
            if path in PAGE_FILES:
                return _file_under(web, PAGE_FILES[path])
            for prefix, root in ((VENDOR_PREFIX, vendor), (RELEASE_PREFIX, release)):
                if path.startswith(prefix):
                    return _file_under(root, path.removeprefix(prefix))
            return None

        def do_GET(self) -> None:
            file = self._resolve()
            if file is None:
                self.send_error(HTTPStatus.NOT_FOUND)
                return
            body = file.read_bytes()
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", CONTENT_TYPES.get(file.suffix, "application/octet-stream"))
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")  # a re-release replaces the files under the same names
            self.send_header("Content-Security-Policy", CONTENT_SECURITY_POLICY)
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Referrer-Policy", "no-referrer")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args) -> None:
            """Silent: one line per file request would bury the address `mobiledx app` prints."""

    return Handler


def make_server(release: str | Path, port: int = 0) -> ThreadingHTTPServer:
    """A server for the page of the release folder ``release`` on 127.0.0.1:``port`` (0: any free port)."""
    folder, vendor = check_release(release), check_vendor()
    if not 0 <= port <= 65535:
        raise WebAppError(f"port {port} does not exist. Fix: --port 1024-65535, or --port 0 for any free one")
    try:
        return ThreadingHTTPServer((HOST, port), _handler(folder, vendor))
    except OSError as error:
        raise WebAppError(f"cannot listen on {HOST}:{port} ({error.strerror or error}). Fix: choose another "
                          f"port with --port N, or --port 0 for any free one") from error


def url(server: ThreadingHTTPServer) -> str:
    """The page's address, ``http://127.0.0.1:PORT/``."""
    return f"http://{HOST}:{server.server_address[1]}/"


@contextmanager
def serving(release: str | Path, port: int = 0) -> Iterator[str]:
    """Serve the page of ``release`` from a background thread while the block runs; yields its URL."""
    server = make_server(release, port)
    thread = threading.Thread(target=server.serve_forever, name="mobiledx-app", daemon=True)
    thread.start()
    try:
        yield url(server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
