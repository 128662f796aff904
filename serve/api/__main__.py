"""Serve every bundle over the Open Inference Protocol (KServe v2), REST and gRPC: `make api`.

    python -m serve.api --host 127.0.0.1 --port 8080 --grpc-port 8081 --artifacts artifacts

For each bundle under `--artifacts`: model `<bundle>` (complete.onnx, dynamically batched),
`<bundle>_step` (step.onnx; the client carries h/c) and, for a bundle that samples,
`<bundle>_sample` and `<bundle>_sample_step`. Binds 127.0.0.1 unless `--host` says otherwise
(`--host 0.0.0.0` in a container). Callers cannot load or unload models unless
`--enable-model-repository`; what else is refused, and the size and time limits, are in
docs/security.md. Torch-free; needs the `api` extra (kserve).
"""

from __future__ import annotations

import argparse
import sys

from rowgen.bundle import BundleError
from serve.api.flags import add_server_args, batch_settings
from serve.runtime import DeviceError, load_models


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serve.api", description="rowgen bundles over the KServe v2 protocol"
    )
    add_server_args(parser)
    args = parser.parse_args(argv)
    args.batching = batch_settings(args, parser)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = args.batching
    from serve.api.models import bundle_models  # kserve, once our flags are parsed
    from serve.api.server import V2Server, busy_port

    if message := busy_port(args.host, {"--port": args.port, "--grpc-port": args.grpc_port}):
        print(f"serve.api: {message}", file=sys.stderr)
        return 2
    try:
        models = load_models(args.artifacts, args.device)
    except (BundleError, DeviceError) as exc:
        print(f"serve.api: {exc}", file=sys.stderr)
        return 2

    served = [m for model in models.models.values() for m in bundle_models(model, settings)]
    names = ", ".join(m.name for m in served)
    grpc = f", gRPC {args.host}:{args.grpc_port}" if args.grpc_port else ""
    print(f"serve.api: {names} on {', '.join(models.providers)}")
    print(f"serve.api: REST http://{args.host}:{args.port}/v2{grpc}", flush=True)
    V2Server.from_args(args).start(served)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
