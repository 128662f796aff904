"""Serve the completion web app and its `/complete` API: `python -m serve` (`make serve`).

    python -m serve --host 127.0.0.1 --port 7860 --artifacts artifacts --device auto

Every bundle under `--artifacts` is verified (sha256) before anything is served; a missing or
altered bundle stops start-up with a message naming the file. SIGTERM (what a service manager
sends) stops it as Ctrl-C does: gradio closes the server, and the app's files in gradio's cache
and its own temporary folder are deleted on the way out.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

# gradio reads these when imported: no analytics, no version check, no telemetry.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from rowgen.bundle import BundleError
from serve.runtime import CUDA, DEVICES, DeviceError, load_models


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serve", description="rowgen completion web app (torch-free)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind")
    parser.add_argument("--port", type=int, default=7860, help="port to bind")
    parser.add_argument("--artifacts", default="artifacts", help="folder of bundles to serve")
    parser.add_argument(
        "--device", choices=DEVICES, default="auto", help="auto tries CUDA, then the CPU"
    )
    return parser.parse_args(argv)


def stop(signum: int, frame: object) -> None:
    """SIGTERM as Ctrl-C: Python's default for it skips every clean-up."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        models = load_models(args.artifacts, args.device)
    except (BundleError, DeviceError) as exc:
        print(f"serve: {exc}", file=sys.stderr)
        return 2
    providers = models.providers
    fallback = " (--device auto: no usable CUDA here)" if args.device == "auto" else ""
    fallback = fallback if CUDA not in providers else ""
    print(f"serve: {', '.join(models.names)} on {', '.join(providers)}{fallback}")

    threading.Thread(target=models.warm, name="warm", daemon=True).start()  # while gradio starts
    from serve.app.layout import build_app, launch  # gradio is imported only once there is a model

    signal.signal(signal.SIGTERM, stop)
    launch(build_app(models), args.host, args.port, block=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
