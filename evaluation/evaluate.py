"""Test-set completion MSE of every bundle beside simple methods on the same split.

    python -m evaluation.evaluate [--artifacts artifacts] [--bundles lstm] [--data-dir DIR]
    make eval

Bundles run through their exported complete.onnx on onnxruntime (CPU), so the numbers describe
what is deployed. Beside them: the mean training image, ridge regression on the known rows and
the mean of the 10 nearest training images (evaluation.baselines). Per-pixel MSE of the generated
rows at known_rows 7, 14, 21, per class at 14, and a completion grid per bundle; writes
eval.json, eval.md and <bundle>-grid.png to --out and prints the table. With the classifier of
`make classifier` present, also the measures of sampled completions
(evaluation.sample_measures) and a grid of samples per sampler.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from evaluation import baselines, classifier, sample_measures
from evaluation.second_features import second_embeds
from export.scoring import GRID_K, Completer, onnx_completer, score
from rowgen import contract
from rowgen.bundle import BundleError, find_bundles, open_bundle
from rowgen.datasets import CLASS_NAMES
from rowgen.tables import markdown_table, sig
from training import data, plots

NEIGHBOURS = 10


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m evaluation.evaluate", description=__doc__.split("\n")[0]
    )
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="bundles folder")
    p.add_argument("--bundles", nargs="+", help="bundle names under --artifacts (default: all)")
    p.add_argument("--dataset", choices=list(data.DATASETS), default="fashion-mnist")
    p.add_argument("--data-dir", help=f"folder with the 4 IDX .gz files (or ${data.DATA_DIR_ENV})")
    p.add_argument("--no-verify", action="store_true", help="accept non-official IDX files")
    p.add_argument("--limit", type=int, help="evaluate on the first N test images only")
    p.add_argument("--train-limit", type=int, help="fit the baselines on the first N only")
    p.add_argument("--batch-size", type=int, default=1000, help="images per onnxruntime call")
    p.add_argument("--out", type=Path, default=Path("artifacts/eval"), help="output folder")
    p.add_argument(
        "--classifier",
        type=Path,
        default=classifier.WEIGHTS,
        help="weights of `make classifier`, for the sample measures (skipped when absent)",
    )
    return p.parse_args(argv)


def baseline_completers(train: np.ndarray) -> tuple[dict[str, Completer], dict[str, dict]]:
    """The simple methods, and what was chosen for them (ridge strength per k)."""
    lambdas = {k: baselines.choose_lambda(train, k) for k in contract.EVAL_KNOWN_ROWS}
    methods = {
        "mean training image": lambda images, k: baselines.mean_image(train, images, k),
        "ridge on known rows": lambda images, k: baselines.ridge(train, images, k, lambdas[k]),
        f"{NEIGHBOURS}-NN mean": lambda images, k: baselines.nearest_mean(
            train, images, k, NEIGHBOURS
        ),
    }
    details = {
        "ridge on known rows": {"lambda": {f"k{k}": lam for k, lam in lambdas.items()}},
        f"{NEIGHBOURS}-NN mean": {"distance": "Euclidean on the known rows"},
    }
    return methods, details


def pick_bundles(args: argparse.Namespace) -> list[Path]:
    if args.bundles:
        return [args.artifacts / name for name in args.bundles]
    return find_bundles(args.artifacts)


def run_eval(args: argparse.Namespace) -> dict:
    """Every number of the report, as one JSON-ready dict; grids are written to args.out."""
    train = data.load_split(args.dataset, "train", args.data_dir, verify=not args.no_verify)
    test = data.load_split(args.dataset, "test", args.data_dir, verify=not args.no_verify)
    train_images = train.images[: args.train_limit].numpy()
    images = test.images[: args.limit].numpy()
    labels = test.labels[: args.limit].numpy()
    class_names = CLASS_NAMES[args.dataset]

    completers, details = baseline_completers(train_images)
    kinds = dict.fromkeys(completers, "baseline")
    bundles = [open_bundle(path) for path in pick_bundles(args)]
    for bundle in bundles:
        completers[bundle.name] = onnx_completer(bundle, args.batch_size)
        kinds[bundle.name] = f"bundle: {bundle.config.cell} {bundle.config.mode} complete.onnx"

    picks = plots.sample_indices(labels)
    methods = {}
    for name, complete in tqdm(completers.items(), desc="scoring", unit="method", leave=False):
        scores, done = score(complete, images, labels, class_names)
        methods[name] = {"kind": kinds[name], **scores, **details.get(name, {})}
        if name in {b.name for b in bundles}:
            plots.save_grid(
                images[picks],
                done[picks],
                GRID_K,
                [class_names[int(labels[i])] for i in picks],
                args.out / f"{name}-grid.png",
                title=f"{name} (complete.onnx): rows {GRID_K}-27 generated from 0-{GRID_K - 1}",
            )
    results = {
        "dataset": args.dataset,
        "source": test.source,
        "test_images": len(images),
        "train_images": len(train_images),
        "known_rows": list(contract.EVAL_KNOWN_ROWS),
        "metric": "per-pixel MSE of the generated rows (known_rows..27), pixels in [0, 1]",
        "methods": methods,
    }
    if args.classifier.is_file() and args.dataset == "fashion-mnist":
        net, info = classifier.load(args.classifier)
        report = sample_measures.sampling_report(
            train_images,
            images,
            labels,
            {b.name: completers[b.name] for b in bundles},
            bundles,
            net,
            args.out,
            class_names,
            second_embeds(train_images, train.labels[: args.train_limit].numpy()),
        )
        results["sampling"] = {"classifier": info, **report}
    return results


def markdown(results: dict) -> str:
    ks = results["known_rows"]
    methods = results["methods"]
    overall = markdown_table(
        ["method", "kind", *(f"k={k}" for k in ks)],
        [
            [name, m["kind"], *(sig(m[f"test_mse_k{k}"], 4) for k in ks)]
            for name, m in methods.items()
        ],
    )
    classes = list(next(iter(methods.values()))[f"per_class_k{GRID_K}"])
    per_class = markdown_table(
        ["class", *methods],
        [
            [c, *(sig(m[f"per_class_k{GRID_K}"].get(c), 4) for m in methods.values())]
            for c in classes
        ],
    )
    text = (
        f"# rowgen evaluation: {results['dataset']}\n\n"
        f"{results['metric']}; {results['test_images']} test images, baselines fitted on "
        f"{results['train_images']} training images.\n\n{overall}\n\n"
        f"## Per class, known_rows {GRID_K}\n\n{per_class}\n"
    )
    if "sampling" in results:
        text += "\n" + sample_measures.markdown(results["sampling"])
    return text


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not pick_bundles(args):
        print(
            f"error: no bundles under {args.artifacts} (a bundle is a folder with "
            f"{contract.MANIFEST}); create them with `make train export`, or pass --artifacts",
            file=sys.stderr,
        )
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        results = run_eval(args)
    except (data.DataError, BundleError) as exc:
        print(f"error: {exc}", file=sys.stderr)  # each names the missing file and the fix
        return 2
    (args.out / "eval.json").write_text(json.dumps(results, indent=2) + "\n")
    report = markdown(results)
    (args.out / "eval.md").write_text(report)
    print(report)
    bundles = [n for n, m in results["methods"].items() if m["kind"].startswith("bundle")]
    print(f"wrote {args.out / 'eval.json'}, eval.md and {len(bundles)} grid PNG(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
