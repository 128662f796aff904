"""Export trained models in `artifacts/` to validated bundles.

    python -m export                 # every folder of artifacts/ holding weights.safetensors
    python -m export lstm gru        # just these
    python -m export --from-state-dict net.pth --name course   # the course notebook's model
    make export

Writes step.onnx, complete.onnx, step.ts, complete.ts and manifest.json beside the weights;
fails loudly (exit 1) when any parity check misses, leaving the previous bundle in place.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from export import course
from export.build import build_bundle
from export.errors import ExportError
from rowgen import contract
from training.checkpoint import load_weights

TRAINING_FILES = ("training.json", "loss.png", "completions.png")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="bundle names (default: all trained models)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="bundles folder")
    course.add_arguments(p)
    args = p.parse_args(argv)
    if args.from_state_dict:
        if args.names:
            p.error("--from-state-dict builds one bundle, named by --name; drop the names")
        return from_state_dict(args)
    names = args.names or sorted(
        d.name for d in args.artifacts.glob("*") if (d / contract.WEIGHTS).is_file()
    )
    if not names:
        print(
            f"error: nothing to export: no {args.artifacts}/*/{contract.WEIGHTS}; "
            "run `make train` first",
            file=sys.stderr,
        )
        return 2
    failed = 0
    for name in names:
        folder = args.artifacts / name
        try:
            model = load_weights(folder / contract.WEIGHTS)
        except (FileNotFoundError, ValueError) as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            failed += 1
            continue
        info_file = folder / "training.json"
        info = json.loads(info_file.read_text()) if info_file.is_file() else {"name": name}
        info.pop("history", None)
        extras = [folder / f for f in TRAINING_FILES if (folder / f).is_file()]
        try:
            manifest = build_bundle(model, folder, folder / contract.WEIGHTS, extras, info)
        except ExportError as exc:
            print(f"error: {name}: export failed, previous bundle kept: {exc}", file=sys.stderr)
            failed += 1
            continue
        parity = manifest["parity"]
        worst_step = max(parity[contract.STEP_ONNX]["max_abs_diff"].values())
        worst_done = parity[contract.COMPLETE_ONNX]["max_abs_diff"]["completed"]
        size = sum(f["bytes"] for f in manifest["files"].values()) / 1e6
        print(
            f"exported {name}: {size:.1f} MB, parity step {worst_step:.1e}, "
            f"complete {worst_done:.1e} (onnxruntime vs eager) -> {folder}"
        )
    return 1 if failed else 0


def from_state_dict(args: argparse.Namespace) -> int:
    try:
        manifest, scored = course.export_state_dict(args)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ExportError as exc:
        print(f"error: {args.name}: export failed, previous bundle kept: {exc}", file=sys.stderr)
        return 1
    metrics = manifest["metrics"]
    mse = ", ".join(f"k={k} {metrics[f'test_mse_k{k}']:.4f}" for k in contract.EVAL_KNOWN_ROWS)
    print(
        f"exported {args.name} from {args.from_state_dict} -> {args.artifacts / args.name}; "
        + (f"test MSE {mse} ({scored})" if metrics else scored)
        + f"; serve it: make serve ARTIFACTS={args.artifacts}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
