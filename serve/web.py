"""Serve the in-browser completion page: `web/`, onnxruntime-web's files and the bundles' ONNX.

    python -m serve.web --artifacts artifacts --host 127.0.0.1 --port 8000
    make web

Nothing is computed here: the page (`web/index.html`) runs the bundle's `step.onnx` and
`complete.onnx` (and a sampling bundle's `sample_step.onnx`) in the browser with onnxruntime-web
(WASM). This server only hands out static files, and only these: the page's own files,
onnxruntime-web's `dist/` files from `web/node_modules` (`npm ci` in `web/`), each bundle's
manifest and those ONNX files (bundles verified by sha256 at start), the list of bundles (which
of them sample), and the gallery of test images as JSON. Torch-free, stdlib plus numpy.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rowgen import contract
from rowgen.bundle import BundleError, find_bundles, open_bundle
from rowgen.pictures import to_uint8
from serve.app.gallery import load_gallery

REPO = Path(__file__).resolve().parent.parent
WEB = REPO / "web"  # the page's folder in a checkout; --web points elsewhere
ORT_DIST = Path("node_modules") / "onnxruntime-web" / "dist"  # inside the page's folder
ORT_FILE = re.compile(r"ort[\w.-]*\.(mjs|wasm)")  # the ES module and its WASM, no maps or CJS
PAGE_FILE = re.compile(r"[\w-]+\.(html|js|css|png)")
BUNDLE_FILES = (contract.MANIFEST, contract.STEP_ONNX, contract.COMPLETE_ONNX)
SAMPLING_FILES = (contract.SAMPLE_STEP_ONNX,)  # the page streams samples with it
TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".json": "application/json",
    ".wasm": "application/wasm",  # WebAssembly.instantiateStreaming requires this type
    ".onnx": "application/octet-stream",
}
# The browser itself refuses anything not from this server; WASM needs 'wasm-unsafe-eval'.
CSP = (
    "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; img-src 'self' data: blob:; "
    "style-src 'self'; connect-src 'self'; worker-src 'self' blob:; object-src 'none'"
)


class SetupError(RuntimeError):
    """The page cannot be served; the message says what to install or export."""


def collect_files(artifacts: Path) -> dict[str, Path]:
    """URL path -> file for every bundle file the page may load (bundles verified first)."""
    folders = find_bundles(artifacts)
    if not folders:
        raise SetupError(f"no bundles under {artifacts}: run `make export` or pass --artifacts")
    files = {}
    for folder in folders:
        bundle = open_bundle(folder)  # BundleError names the altered or missing file
        for name in BUNDLE_FILES + (SAMPLING_FILES if bundle.config.stochastic else ()):
            files[f"/bundles/{bundle.name}/{name}"] = bundle.file(name)
    return files


def bundle_index(files: dict[str, Path]) -> bytes:
    """The bundles the page can load and, under "sampling", those that can also sample."""
    names = sorted({path.split("/")[2] for path in files})
    sampling = [n for n in names if f"/bundles/{n}/{contract.SAMPLE_STEP_ONNX}" in files]
    return json.dumps({"bundles": names, "sampling": sampling}).encode()


def gallery_json() -> bytes:
    """The app's gallery as 8-bit pixels: the page divides by 255, as numpy does."""
    images = [
        {"label": g.label, "index": g.index, "pixels": to_uint8(g.image).ravel().tolist()}
        for g in load_gallery()
    ]
    return json.dumps({"size": contract.IMAGE_SIZE, "images": images}).encode()


class Handler(BaseHTTPRequestHandler):
    """GET only; every path is looked up in fixed tables or matched by a strict pattern."""

    server_version = "rowgen-web"

    def __init__(
        self, *args, web: Path, files: dict[str, Path], generated: dict[str, bytes], **kw
    ) -> None:
        self.web, self.files, self.generated = web, files, generated
        super().__init__(*args, **kw)

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        if path in self.generated:
            return self.send(HTTPStatus.OK, self.generated[path], ".json")
        found = self.resolve(path)
        if found is None:
            return self.send(HTTPStatus.NOT_FOUND, b"not found\n", ".txt")
        return self.send(HTTPStatus.OK, found.read_bytes(), found.suffix)

    def resolve(self, path: str) -> Path | None:
        """A file this server hands out, or None; never a path built from unchecked input."""
        if path in self.files:
            return self.files[path]
        if path == "/":
            return self.web / "index.html"
        head, _, name = path.rpartition("/")
        if head == "" and PAGE_FILE.fullmatch(name) and (self.web / name).is_file():
            return self.web / name
        dist = self.web / ORT_DIST
        if head == "/ort" and ORT_FILE.fullmatch(name) and (dist / name).is_file():
            return dist / name
        return None

    def send(self, status: HTTPStatus, body: bytes, suffix: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", TYPES.get(suffix, "text/plain; charset=utf-8"))
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        if self.server.verbose:  # type: ignore[attr-defined]
            super().log_message(format, *args)


def make_server(
    artifacts: Path | str,
    host: str = "127.0.0.1",
    port: int = 8000,
    verbose: bool = False,
    web: Path = WEB,
) -> ThreadingHTTPServer:
    """A ready server (not yet serving): call `serve_forever`, or run it in a thread."""
    if not (web / "index.html").is_file():
        raise SetupError(f"no page at {web}: pass --web, the repository's web/ folder")
    if not (web / ORT_DIST / "ort.wasm.min.mjs").is_file():
        raise SetupError(f"onnxruntime-web is not installed: run `npm ci` in {web}")
    files = collect_files(Path(artifacts))
    generated = {"/bundles.json": bundle_index(files), "/gallery.json": gallery_json()}
    handler = partial(Handler, web=Path(web), files=files, generated=generated)
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    server.verbose = verbose  # type: ignore[attr-defined]
    return server


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m serve.web", description=__doc__.split("\n")[0])
    p.add_argument("--host", default="127.0.0.1", help="address to bind")
    p.add_argument("--port", type=int, default=8000, help="port to bind")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="bundles folder")
    p.add_argument("--web", type=Path, default=WEB, help="the page's folder (web/, npm ci'd)")
    p.add_argument("--verbose", action="store_true", help="log every request")
    args = p.parse_args(argv)
    try:
        server = make_server(args.artifacts, args.host, args.port, args.verbose, args.web)
    except (SetupError, BundleError) as exc:
        print(f"web: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"web: cannot listen on {args.host}:{args.port} ({exc}); try --port", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    print(f"web: http://{host}:{port}/ (bundles from {args.artifacts}; Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
