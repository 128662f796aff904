"""Load figures, side by side in one run: the Gradio app, the v2 API (REST JSON, REST binary,
gRPC), the v2 API on Ray Serve and Triton (python backend: REST JSON, REST binary, gRPC), at 8
and 64 clients, 1 and 64 images per request: `make load`.

    python -m bench.load [--artifacts artifacts] [--model lstm] [--seconds 20] [--paths ...]

Torch-free. Each server runs in its own process on loopback; the load generators (wrk for REST,
tritonclient's asyncio client for gRPC, gradio_client for the app) share the machine with it.
Writes artifacts/bench/load.json, load.md, load.png and api_completion.png (a completion made
through the API). The same run also times kserve's defaults against our tuning.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench import load_clients as clients
from bench import load_report as report
from bench.servers import batch_counters, rss_mib, settle, start, start_triton
from rowgen.bundle import find_bundles
from rowgen.pictures import completion_grid
from serve.app.gallery import load_gallery

KNOWN_ROWS = 14
TRITON_PATHS = ("triton-rest-json", "triton-rest-binary", "triton-grpc")
PATHS = ("gradio", "rest-json", "rest-binary", "grpc", "ray-rest-json", *TRITON_PATHS)
SERVER_OF = {"gradio": "gradio", "ray-rest-json": "ray"} | dict.fromkeys(TRITON_PATHS, "triton")
SERVERS = ("gradio", "v2", "ray", "triton")  # every other path's server: "v2"
KSERVE_AS_IS = ["--kserve-json", "--event-loop", "asyncio"]
TUNING = (  # (label, serve.api flags): kserve's defaults first, then each change we made on top
    (
        "kserve defaults: request logs on, no batching",
        ["--log-requests", "--max-batch", "1", *KSERVE_AS_IS],
    ),
    ("+ request logs off", ["--max-batch", "1", *KSERVE_AS_IS]),
    ("+ batching", KSERVE_AS_IS),
    ("+ orjson codec for REST infer (serve.api.rest)", ["--event-loop", "asyncio"]),
    ("+ uvloop event loop (make api)", []),
)


def seconds_arg(text: str, least: int = 1) -> float:
    """A run length: whole seconds from `least`, as wrk counts them (`-d1s`)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if value < least or not value.is_integer():
        raise argparse.ArgumentTypeError(
            f"a whole number of seconds from {least} (wrk's unit), got {text!r}"
        )
    return value


def warmup_arg(text: str) -> float:
    """A warm-up length: whole seconds, 0 for none."""
    return seconds_arg(text, least=0)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--artifacts", default="artifacts", help="folder of bundles to serve")
    parser.add_argument("--model", default="lstm", help="bundle to load")
    parser.add_argument("--device", default="cpu", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--seconds", type=seconds_arg, default=20.0, help="length of each run")
    parser.add_argument(
        "--headline-seconds", type=seconds_arg, default=60.0, help="v2 JSON, 8 clients"
    )
    parser.add_argument(
        "--warmup-seconds",
        type=warmup_arg,
        default=3.0,
        help="unrecorded run before each path (0: none)",
    )
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS)
    parser.add_argument("--clients", nargs="+", type=int, default=[8, 64])
    parser.add_argument("--images", nargs="+", type=int, default=[1, 64], help="per request")
    parser.add_argument("--no-tuning", action="store_true", help="skip kserve-defaults runs")
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench"))
    return parser.parse_args(argv)


def requests(n: int) -> tuple[np.ndarray, np.ndarray]:
    samples = load_gallery()
    image = np.stack([samples[i % len(samples)].image for i in range(n)]).astype(np.float32)
    return image, np.full(n, KNOWN_ROWS, np.int64)


def run_cell(path: str, server, model: str, n_clients: int, images: int, seconds: float, tmp):
    image, known_rows = requests(images)
    if server.kind == "triton":  # a per-image scalar as Triton's batching models take it: [B, 1]
        known_rows = known_rows[:, None]
    if path == "gradio":
        return clients.run_gradio(server.base + "/", image[0], KNOWN_ROWS, n_clients, seconds)
    if path.endswith("grpc"):
        url = f"127.0.0.1:{server.grpc_port}"
        return clients.run_grpc(url, model, image, known_rows, n_clients, seconds)
    body, header = clients.v2_bodies(image, known_rows, tmp)[
        "binary" if "binary" in path else "json"
    ]
    raw = clients.run_wrk(
        f"{server.base}/v2/models/{model}/infer", body, header, n_clients, seconds
    )
    return clients.wrk_summary(raw, images)


def measure(path: str, server, args, n_clients: int, images: int, seconds: float, tmp) -> dict:
    before = batch_counters(server, args.model)
    result = run_cell(path, server, args.model, n_clients, images, seconds, tmp)
    settle(server, args.model)
    after = batch_counters(server, args.model)
    calls = after[1] - before[1] if before and after else 0
    mean = (after[0] - before[0]) / calls if calls else None
    cell = {"path": path, "clients": n_clients, "images_per_request": images, **result}
    cell["mean_batch"] = round(mean, 2) if mean is not None else (1 if path == "gradio" else None)
    # the requests the server says it answered, beside what the clients counted
    cell["server_requests"] = round(calls) if calls else None
    print(
        f"bench.load: {report.LABELS[path]}, {n_clients} clients, {images}/request: "
        f"{cell['completions_per_s']} completions/s, p99 {cell['p99_ms']} ms, "
        f"{cell['refused_503']} refused, {cell['errors']} errors",
        flush=True,
    )
    return cell


def api_picture(server, model: str, out: Path) -> None:
    samples = load_gallery()[:8]
    image = np.stack([s.image for s in samples])
    completed = clients.complete_via_api(
        f"127.0.0.1:{server.port}", model, image, np.full(8, KNOWN_ROWS)
    )
    title = f"{model}: completed through the v2 API (tritonclient HTTP), {KNOWN_ROWS} rows given"
    completion_grid(image, completed, KNOWN_ROWS, [s.label for s in samples], title=title).save(out)


def run_server(kind: str, paths: list[str], args, tmp: Path, cells: list, servers: dict) -> None:
    if kind == "triton":
        server = start_triton(args.artifacts, args.model, tmp)
    else:  # Ray: deploy/ray/serve.yaml as `make api-ray` runs it (its replicas, its autoscaling)
        server = start(kind, args.artifacts, args.device, tmp, [])
    try:
        servers[kind] = {"rss_mib_before": rss_mib(server)}
        for path in paths:
            if args.warmup_seconds:
                measure(path, server, args, 2, 1, args.warmup_seconds, tmp)  # not recorded
            for n_clients in args.clients:
                for images in [1] if path == "gradio" else args.images:
                    headline = (path, n_clients, images) == report.HEADLINE
                    seconds = args.headline_seconds if headline else args.seconds
                    cells.append(measure(path, server, args, n_clients, images, seconds, tmp))
        if kind == "v2":
            api_picture(server, args.model, args.out / "api_completion.png")
        servers[kind]["rss_mib_after"] = rss_mib(server)
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.model not in [p.name for p in find_bundles(args.artifacts)]:
        print(f"bench.load: no bundle {args.model!r} under {args.artifacts}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    cells: list[dict] = []
    servers: dict = {}
    tuning: list[dict] = []
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        for kind in SERVERS:
            paths = [p for p in args.paths if SERVER_OF.get(p, "v2") == kind]
            if paths:
                run_server(kind, paths, args, tmp, cells, servers)
        for label, flags in () if args.no_tuning else TUNING:
            server = start("v2", args.artifacts, args.device, tmp, flags)
            try:
                cell = measure("rest-json", server, args, 8, 1, args.seconds, tmp)
            finally:
                server.stop()
            tuning.append({"label": label, "flags": flags, **cell})
    result = {
        "model": args.model,
        "known_rows": KNOWN_ROWS,
        "machine": {
            "cpus": os.cpu_count(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "note": f"One {os.cpu_count()}-CPU machine: the load generators (wrk; Python for gRPC "
            "and Gradio) run beside the server and take CPU from it.",
        },
        "servers": servers,
        "cells": cells,
        "tuning": tuning,
        "targets": report.targets(cells),
    }
    (args.out / "load.json").write_text(json.dumps(result, indent=2) + "\n")
    (args.out / "load.md").write_text(report.markdown(result))
    report.chart(cells, args.out / "load.png")
    print(f"bench.load: {result['targets']} -> {args.out}/load.json, load.md, load.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
