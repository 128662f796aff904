"""Command-line flags shared by `python -m serve.api` and `python -m serve.ray_app`. Torch-free.

Parsing them never imports kserve: that module reads sys.argv itself when imported, so the
entry points parse first and import it after (serve.api.models imports it with a clean argv).
"""

from __future__ import annotations

import argparse

from serve.api.limits import Limits
from serve.batching import BatchSettings
from serve.runtime import DEVICES


def add_server_args(parser: argparse.ArgumentParser) -> None:
    """Where to listen, what to serve, how to batch and bound the queue, and what a caller may
    do: how long it may take to send, and whether it may load and unload models."""
    d, limits = BatchSettings(), Limits()
    add = parser.add_argument
    add("--host", default="127.0.0.1", help="address to bind (0.0.0.0: every interface)")
    add("--port", type=int, default=8080, help="REST port")
    add("--grpc-port", type=int, default=8081, help="gRPC port (0: no gRPC)")
    add("--artifacts", default="artifacts", help="folder of bundles to serve")
    add("--device", choices=DEVICES, default="auto", help="auto tries CUDA, then the CPU")
    add("--max-batch", type=int, default=d.max_batch, help="images per onnxruntime call (1: off)")
    add(
        "--batch-wait-ms",
        type=float,
        default=d.max_wait_s * 1000,
        help="how long a request waits for others to share its onnxruntime call (0: no wait)",
    )
    add(
        "--max-queue",
        type=int,
        default=d.max_queue,
        help="images waiting per model before requests get 503; also the most images one "
        "request may carry, on every model, which sets the largest REST body and gRPC message",
    )
    add(
        "--header-timeout-s",
        type=float,
        default=limits.header_timeout_s,
        help="seconds a client has to send a request's line and headers (then 408)",
    )
    add(
        "--body-timeout-s",
        type=float,
        default=limits.body_timeout_s,
        help="seconds a client has to send a request's body (then 408), or may stall reading "
        "an answer (then it is dropped)",
    )
    add(
        "--enable-model-repository",
        action="store_true",
        help="serve the model repository extension (load/unload over REST and gRPC): anyone who "
        "reaches the ports can then take models offline, so only on a trusted network",
    )
    add(
        "--log-requests",
        action="store_true",
        help="kserve's per-request access, latency and timing logs (off: they cost throughput)",
    )
    add(
        "--kserve-json",
        action="store_true",
        help="kserve's own JSON codec for REST infer (default: orjson, see serve.api.rest)",
    )
    add(
        "--event-loop",
        choices=("uvloop", "asyncio"),
        default="uvloop",
        help="the servers' event loop (asyncio: the standard library's, as kserve runs)",
    )


def batch_settings(args: argparse.Namespace, parser: argparse.ArgumentParser) -> BatchSettings:
    """The batching flags as settings; a usage error (exit 2) naming the flag when one is bad."""
    for flag in ("max_batch", "max_queue"):
        if getattr(args, flag) < 1:
            parser.error(f"--{flag.replace('_', '-')} must be at least 1")
    if args.batch_wait_ms < 0:
        parser.error("--batch-wait-ms must be 0 or more")
    return BatchSettings(args.max_batch, args.batch_wait_ms / 1000, args.max_queue)


def limits(args: argparse.Namespace) -> Limits:
    """The batch cap and timeout flags as limits; SystemExit naming a flag that is invalid."""
    for flag in ("header_timeout_s", "body_timeout_s"):
        if not getattr(args, flag) > 0:
            raise SystemExit(f"--{flag.replace('_', '-')} must be more than 0")
    return Limits(args.max_queue, args.header_timeout_s, args.body_timeout_s)
