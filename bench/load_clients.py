"""Load generators for bench.load: wrk for v2 REST, tritonclient's asyncio client for v2 gRPC,
gradio_client for the Gradio app. Each runs `clients` callers back to back for `seconds` and
returns the same summary: completions/s, p50/p99 latency, refusals (503) and other errors.

Torch-free. wrk (Debian's `wrk`, C, one event loop per thread) drives REST with
`bench/wrk_v2.lua`; gRPC has no such tool here, so its callers are Python coroutines sharing
the CPU with the server, which caps what they can show.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

WRK_SCRIPT = Path(__file__).resolve().parent / "wrk_v2.lua"


def summary(latencies_s, codes: dict[int, int], errors: int, elapsed: float, images: int) -> dict:
    """JSON-ready figures of one run; latencies of the successful answers only."""
    ok = codes.get(200, 0)
    ms = np.asarray(latencies_s, dtype=np.float64) * 1000.0
    return {
        "seconds": round(elapsed, 2),
        "requests_ok": ok,
        "completions_per_s": round(ok * images / elapsed, 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 2) if len(ms) else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 2) if len(ms) else None,
        "refused_503": codes.get(503, 0),
        "errors": errors + sum(n for c, n in codes.items() if c not in (200, 503)),
        "status_codes": {str(c): n for c, n in sorted(codes.items())},
    }


def v2_inputs(module, image: np.ndarray, known_rows: np.ndarray, binary_data: bool = True):
    """`image` and `known_rows` as InferInputs of tritonclient's `module` (http, grpc, grpc.aio)."""
    inputs = [
        module.InferInput("image", list(image.shape), "FP32"),
        module.InferInput("known_rows", list(known_rows.shape), "INT64"),
    ]
    kw = {"binary_data": binary_data} if module.__name__.endswith("http") else {}
    inputs[0].set_data_from_numpy(image, **kw)
    inputs[1].set_data_from_numpy(known_rows, **kw)
    return inputs


def v2_bodies(image: np.ndarray, known_rows: np.ndarray, folder: Path) -> dict[str, tuple]:
    """The v2 request body as JSON and as binary tensors: {kind: (file, header length)}."""
    import tritonclient.http as httpclient

    bodies = {}
    for kind, binary in (("json", False), ("binary", True)):
        inputs = v2_inputs(httpclient, image, known_rows, binary)
        outputs = [httpclient.InferRequestedOutput("completed", binary_data=binary)]
        body, header_length = httpclient.InferenceServerClient.generate_request_body(
            inputs, outputs
        )
        path = folder / f"body-{kind}-{len(image)}.bin"
        path.write_bytes(body if isinstance(body, bytes) else body.encode())
        bodies[kind] = (path, header_length)
    return bodies


def run_wrk(url: str, body: Path, header_length: int | None, clients: int, seconds: float) -> dict:
    """wrk against a v2 infer URL; the raw counts from bench/wrk_v2.lua."""
    threads = 1 if clients <= 8 else 2
    argv = ["wrk", f"-t{threads}", f"-c{clients}", f"-d{seconds:.0f}s", "--timeout", "30s"]
    argv += ["-s", str(WRK_SCRIPT), url, "--", str(body)]
    if header_length is not None:
        argv.append(str(header_length))
    out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("ROWGEN "))
    return json.loads(line.removeprefix("ROWGEN "))


def wrk_summary(raw: dict, images: int) -> dict:
    codes = {int(c): n for c, n in raw["codes"].items()}
    socket_errors = sum(raw[k] for k in ("connect", "read", "write", "timeout"))
    result = summary([], codes, socket_errors, raw["duration_us"] / 1e6, images)
    # wrk's percentiles cover every answer, refusals included
    result["p50_ms"], result["p99_ms"] = raw["p50_us"] / 1000, raw["p99_us"] / 1000
    return result


def run_grpc(url: str, model: str, image, known_rows, clients: int, seconds: float) -> dict:
    """`clients` tritonclient.grpc.aio callers in one event loop."""
    import tritonclient.grpc.aio as grpcclient
    from tritonclient.utils import InferenceServerException

    async def main() -> dict:
        client = grpcclient.InferenceServerClient(url)
        inputs = v2_inputs(grpcclient, image, known_rows)
        latencies, codes, errors = [], {}, [0]
        deadline = time.perf_counter() + seconds

        async def caller() -> None:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                try:
                    await client.infer(model, inputs)
                except InferenceServerException as exc:
                    code = 503 if "UNAVAILABLE" in str(exc.status()) else 500
                    codes[code] = codes.get(code, 0) + 1
                    continue
                latencies.append(time.perf_counter() - start)
                codes[200] = codes.get(200, 0) + 1

        start = time.perf_counter()
        await asyncio.gather(*(caller() for _ in range(clients)))
        elapsed = time.perf_counter() - start
        await client.close()
        return summary(latencies, codes, errors[0], elapsed, len(image))

    return asyncio.run(main())


def run_gradio(url: str, image: np.ndarray, known_rows: int, clients: int, seconds: float) -> dict:
    """`clients` gradio_client callers of the app's `/complete`, each in its own thread."""
    from gradio_client import Client, handle_file

    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def caller(path: str, deadline: float) -> None:
        client = None
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            try:  # connecting fails too when the app is swamped: an error, then try again
                client = client or Client(url, verbose=False)
                client.predict(handle_file(path), known_rows, api_name="/complete")
            except Exception as exc:  # counted, not fatal: the server's answer is the measure
                with lock:
                    failures.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with lock:
                latencies.append(time.perf_counter() - start)

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "sample.png")
        Image.fromarray((image * 255).astype(np.uint8)).save(path)
        start = time.perf_counter()
        threads = [
            threading.Thread(target=caller, args=(path, start + seconds)) for _ in range(clients)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
    result = summary(latencies, {200: len(latencies)}, len(failures), elapsed, 1)
    result["error_examples"] = sorted(set(failures))[:3]
    return result


def complete_via_api(url: str, model: str, image: np.ndarray, known_rows: np.ndarray):
    """One v2 inference through tritonclient HTTP: the server's completions of `image`."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    return client.infer(model, v2_inputs(httpclient, image, known_rows)).as_numpy("completed")
