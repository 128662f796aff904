"""Write Triton model repositories from verified bundles: `make triton`.

    python -m export.triton                      # every bundle in artifacts/ -> artifacts/triton/
    python -m export.triton lstm --out /models   # just these bundles
    make triton NAMES=lstm

Writes the onnxruntime-backend repository (`--out`, for real deployments) and the python-backend
one (`--python-out`, default `<out>-python`, which `make triton-serve` runs where Triton has no
onnxruntime backend); export.triton.repository describes both. Every bundle is verified before
anything is written, and a failure leaves both repositories as they were.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from export.triton.check import TritonConfigError
from export.triton.configs import ONNXRUNTIME, PYTHON, Batching, TritonExportError
from export.triton.repository import write_repositories
from rowgen import contract
from rowgen.bundle import BundleError, find_bundles, open_bundle


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m export.triton", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="bundle names (default: every bundle in --artifacts)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="bundles folder")
    p.add_argument("--out", type=Path, help="onnxruntime repository (default: <artifacts>/triton)")
    p.add_argument("--python-out", type=Path, help="python-backend repository (<out>-python)")
    p.add_argument("--max-batch-size", type=int, default=Batching.max_batch_size)
    p.add_argument("--queue-delay-us", type=int, default=Batching.queue_delay_us)
    p.add_argument("--instances", type=int, default=Batching.instances, help="per GPU / CPU")
    p.add_argument(
        "--sequence-idle-us",
        type=int,
        default=Batching.sequence_idle_us,
        help="a `<bundle>_step` sequence without calls for this long is freed",
    )
    args = p.parse_args(argv)
    if min(args.max_batch_size, args.instances, args.sequence_idle_us) < 1:
        p.error("--max-batch-size, --instances and --sequence-idle-us must be >= 1")
    if args.queue_delay_us < 0:
        p.error("--queue-delay-us must be >= 0")
    args.out = args.out or args.artifacts / "triton"
    args.python_out = args.python_out or args.out.with_name(args.out.name + "-python")
    if args.python_out.resolve() == args.out.resolve():
        p.error("--out and --python-out must be different folders")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = dict.fromkeys(args.names)  # a name given twice is one bundle
    paths = [args.artifacts / n for n in names] or find_bundles(args.artifacts)
    if not paths:
        print(
            f"error: no bundles in {args.artifacts} (folders with {contract.MANIFEST}); "
            "run `make export` first or pass --artifacts",
            file=sys.stderr,
        )
        return 2
    batching = Batching(
        args.max_batch_size, args.queue_delay_us, args.instances, args.sequence_idle_us
    )
    outs = {ONNXRUNTIME: args.out, PYTHON: args.python_out}
    try:
        bundles = [open_bundle(p) for p in paths]
        written = write_repositories(bundles, outs, batching)
    except (BundleError, TritonExportError, TritonConfigError, OSError) as exc:
        kept = " and ".join(str(out) for out in outs.values())
        print(f"error: {exc}; nothing written, {kept} left as they were", file=sys.stderr)
        return 1
    for backend, models in written.items():
        out = outs[backend]
        for name, source in models.items():
            print(f"{name}: {source['bundle']}/{source['file']} -> {out / name} ({backend})")
        command = f"tritonserver --model-repository={out.resolve()}"
        print(f"wrote {len(models)} models to {out}: {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
