"""Load test of the web app's `/complete` endpoint: concurrent gradio_client callers.

Torch-free. With no `--url` it starts the app in-process on a free port over `--artifacts`.
Prints completions/s, p50/p99 latency and the error count; writes `artifacts/bench/load.json`.

    python -m bench.load [--url http://127.0.0.1:7860/] [--clients 8] [--seconds 30] [--model lstm]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import numpy as np
from PIL import Image

from rowgen.bundle import BundleError
from serve.gallery import load_samples
from serve.runtime import DEVICES, load_models

KNOWN_ROWS = 14


def caller(url: str, image: Path, model: str | None, deadline: float, out: dict) -> None:
    """One client calling `/complete` back to back until `deadline`; appends to `out`."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    extra = {"model_name": model} if model else {}
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        try:
            client.predict(handle_file(str(image)), KNOWN_ROWS, **extra, api_name="/complete")
        except Exception as exc:  # counted, not fatal: the server's answer is what we measure
            with out["lock"]:
                out["errors"].append(f"{type(exc).__name__}: {exc}"[:200])
            continue
        with out["lock"]:
            out["latencies"].append(time.perf_counter() - start)


def run_load(url: str, clients: int, seconds: float, model: str | None) -> dict:
    """Run `clients` callers for `seconds`; the summary as JSON-ready data."""
    out: dict = {"lock": threading.Lock(), "latencies": [], "errors": []}
    with tempfile.TemporaryDirectory() as tmp:
        image = Path(tmp) / "sample.png"
        Image.fromarray((load_samples()[0].image * 255).astype(np.uint8)).save(image)
        start = time.perf_counter()
        deadline = start + seconds
        threads = [
            threading.Thread(target=caller, args=(url, image, model, deadline, out))
            for _ in range(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    latencies = np.array(out["latencies"]) * 1000.0  # ms
    done = len(latencies)
    return {
        "url": url,
        "model": model,
        "clients": clients,
        "seconds": round(elapsed, 3),
        "known_rows": KNOWN_ROWS,
        "completions": done,
        "completions_per_s": round(done / elapsed, 3),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3) if done else None,
        "p99_ms": round(float(np.percentile(latencies, 99)), 3) if done else None,
        "errors": len(out["errors"]),
        "error_examples": sorted(set(out["errors"]))[:5],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description="load test of the app's /complete endpoint"
    )
    parser.add_argument("--url", help="a running app; default: start one in-process")
    parser.add_argument("--clients", type=int, default=8, help="concurrent callers")
    parser.add_argument("--seconds", type=float, default=30.0, help="how long to call")
    parser.add_argument("--model", help="bundle name (default: the server's first)")
    parser.add_argument("--artifacts", default="artifacts", help="bundles, when starting the app")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="when starting the app")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/load.json"))
    args = parser.parse_args(argv)

    demo = None
    url = args.url
    if url is None:
        try:
            models = load_models(args.artifacts, args.device)
        except BundleError as exc:
            print(f"bench.load: {exc}", file=sys.stderr)
            return 1
        from serve.app import build_app, free_port, launch

        models.warm([args.model or models.names[0]])  # measure requests, not the first load
        demo = build_app(models)
        _, url, _ = launch(demo, port=free_port(), block=False)
    try:
        result = run_load(url, args.clients, args.seconds, args.model)
    finally:
        if demo is not None:
            demo.close()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"{result['completions_per_s']:.1f} completions/s, p50 {result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms, {result['errors']} errors "
        f"({args.clients} clients, {result['seconds']:.0f} s) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
