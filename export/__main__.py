"""Export trained runs to validated bundles: `runs/<name>/` -> `artifacts/<name>/`.

    python -m export                 # every run in runs/ with weights (none: re-export bundles)
    python -m export lstm            # just these: from runs/<name>/, else the bundle's own weights
    python -m export --from-state-dict net.pth --name course   # the course notebook's model
    make export

Writes step.onnx, complete.onnx, step.ts, complete.ts and manifest.json beside a copy of the
weights, training.json and the PNGs, validates them, and only then swaps the new bundle in
(rowgen.publish): a failed export (exit 1) or a killed one leaves the previous bundle in place.
A shipped bundle with no run (a fresh clone) is re-exported from its own verified weights.
Leftovers of killed exports are removed first, and reported. Bad input exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from export import course
from export.build import build_bundle
from export.errors import ExportError
from rowgen import contract
from rowgen.bundle import BundleError, open_bundle
from rowgen.publish import clean_leftovers
from training.checkpoint import GRID_PNG, LOSS_PNG, TRAINING_JSON, load_weights

TRAINING_FILES = (TRAINING_JSON, LOSS_PNG, GRID_PNG)


class SourceError(ValueError):
    """A run or bundle cannot be exported as it is; the message names the file and the fix."""


@dataclass(frozen=True)
class Source:
    """Where a bundle's weights and training record come from."""

    name: str
    folder: Path
    kind: str  # "run", or "bundle" when a bundle is re-exported from its own weights


def find_sources(names: list[str], runs: Path, artifacts: Path) -> list[Source]:
    """The runs to export (or, with no runs at all, every bundle holding weights)."""
    if names:
        return [source_for(name, runs, artifacts) for name in names]
    trained = sorted(d.name for d in runs.glob("*") if (d / contract.WEIGHTS).is_file())
    if trained:
        return [Source(name, runs / name, "run") for name in trained]
    shipped = sorted(d.name for d in artifacts.glob("*") if (d / contract.WEIGHTS).is_file())
    return [Source(name, artifacts / name, "bundle") for name in shipped]


def source_for(name: str, runs: Path, artifacts: Path) -> Source:
    if (runs / name / contract.WEIGHTS).is_file():
        return Source(name, runs / name, "run")
    if (artifacts / name / contract.WEIGHTS).is_file():
        return Source(name, artifacts / name, "bundle")
    raise SourceError(
        f"{name}: no {runs / name / contract.WEIGHTS} and no bundle {artifacts / name}; "
        f"train it first (`make train`), or pass --runs/--artifacts"
    )


def training_info(source: Source) -> dict:
    """The run's training.json without its per-epoch history (that stays in the file)."""
    path = source.folder / TRAINING_JSON
    if not path.is_file():
        return {"name": source.name}
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:
        raise SourceError(
            f"{path} is not valid JSON ({exc}); re-run training, or delete it to export "
            "without the training record"
        ) from None
    if not isinstance(info, dict):
        raise SourceError(f"{path} holds a JSON {type(info).__name__}, not an object; re-train")
    info.pop("history", None)
    return info


def export_one(source: Source, artifacts: Path) -> dict:
    """Build, validate and publish one bundle; its manifest."""
    if source.kind == "bundle":
        try:
            open_bundle(source.folder)  # re-export only weights that still match their hash
        except BundleError as exc:
            raise SourceError(str(exc)) from None
    info = training_info(source)
    try:
        model = load_weights(source.folder / contract.WEIGHTS)
    except (FileNotFoundError, ValueError) as exc:
        raise SourceError(f"{source.name}: {exc}") from None
    extras = [source.folder / f for f in TRAINING_FILES if (source.folder / f).is_file()]
    out = artifacts / source.name
    return build_bundle(model, out, source.folder / contract.WEIGHTS, extras, info)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="bundle names (default: every trained run)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="training runs folder")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="bundles folder")
    course.add_arguments(p)
    args = p.parse_args(argv)
    if args.from_state_dict:
        if args.names:
            p.error("--from-state-dict builds one bundle, named by --name; drop the names")
        return from_state_dict(args)
    try:
        sources = find_sources(args.names, args.runs, args.artifacts)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not sources:
        print(
            f"error: nothing to export: no {args.runs}/*/{contract.WEIGHTS} and no bundle "
            f"under {args.artifacts}; run `make train` first",
            file=sys.stderr,
        )
        return 2
    status = 0
    for source in sources:
        for line in clean_leftovers(args.artifacts / source.name):
            print(line)
        try:
            manifest = export_one(source, args.artifacts)
        except SourceError as exc:
            print(f"error: {exc}", file=sys.stderr)
            status = max(status, 2)
            continue
        except ExportError as exc:
            print(
                f"error: {source.name}: export failed, previous bundle kept: {exc}", file=sys.stderr
            )
            status = max(status, 1)
            continue
        parity = manifest["parity"]
        worst_step = max(parity[contract.STEP_ONNX]["max_abs_diff"].values())
        worst_done = parity[contract.COMPLETE_ONNX]["max_abs_diff"]["completed"]
        size = sum(f["bytes"] for f in manifest["files"].values()) / 1e6
        print(
            f"exported {source.name} from {source.kind} {source.folder}: {size:.1f} MB, parity "
            f"step {worst_step:.1e}, complete {worst_done:.1e} (onnxruntime vs eager) "
            f"-> {args.artifacts / source.name}"
        )
    return status


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
