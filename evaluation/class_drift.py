"""How much of the original's class the recurrent core's state keeps along sampled completions.

A linear probe (training.class_probe: multinomial logistic regression) is trained on the
core's state after rows 1..r of every training image, for each depth r. It is then read on the
state after rows 1..r of each test image, of its sampled completion from the first k rows, and of
the 10-NN sampler's completion from the same prompt. The rows above k are the same for all
three, so the first column is too. Below it, a sampler that draws a class and holds to it levels
off; a sampler whose rows wander from one class to another keeps falling. The probe is the
core's, not the judge's, so this is a reading beside `make eval`'s class agreement, not a
second judge.

The prompt table compares what the prompt alone says about the class: the same probe on the
state at row k, a probe on the k raw rows, and a vote of the 10 training images nearest by those
rows (the 10-NN sampler's neighbours). The last table is the judge's own reading, class by
class: the fraction of each class's completions the project's CNN (`make classifier`) puts in
it, and the class it gives most often instead.

    .venv/bin/python -m evaluation.class_drift --bundle artifacts/lstm --k 7 14

It prints markdown tables (under 3 minutes on 2 cores for the whole test split).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from evaluation import classifier
from evaluation.sample_measures import NEIGHBOURS, NOISE_SEED, Neighbours, Sampler, onnx_sampler
from rowgen import contract
from rowgen.bundle import open_bundle
from rowgen.datasets import CLASS_NAMES
from rowgen.tables import markdown_table
from training import data
from training.checkpoint import load_weights
from training.class_probe import fit_class_probe
from training.model import RowGenerator

DEPTHS = (7, 10, 14, 21, 28)  # rows read before the probe looks at the state


def core_states(
    model: RowGenerator, images: np.ndarray, depths: Sequence[int], batch: int = 5000
) -> dict[int, torch.Tensor]:
    """The core's (top layer's) output after reading rows 1..r of each image, for each r."""
    found: dict[int, list[torch.Tensor]] = {r: [] for r in depths}
    with torch.no_grad():
        for first in range(0, len(images), batch):
            rows = torch.as_tensor(images[first : first + batch], dtype=torch.float32)
            out, _ = model.rnn(rows[:, : max(depths)])  # (B, T, H)
            for r in depths:
                found[r].append(out[:, r - 1])
    return {r: torch.cat(parts) for r, parts in found.items()}


def drift(
    model: RowGenerator,
    train: np.ndarray,
    train_labels: np.ndarray,
    completions: dict[str, np.ndarray],
    labels: np.ndarray,
    depths: Sequence[int] = DEPTHS,
) -> dict[str, dict[int, float]]:
    """For each named set of (test) completions: the fraction of them whose state after rows
    1..r the depth-r probe puts in `labels`' class, for each r in `depths`."""
    seen = core_states(model, train, depths)
    targets = torch.as_tensor(train_labels)
    probes = {r: fit_class_probe(seen[r], targets) for r in depths}
    truth = torch.as_tensor(labels)
    result = {}
    for name, images in completions.items():
        states = core_states(model, images, depths)
        result[name] = {
            r: float((probes[r].predict(states[r]) == truth).float().mean()) for r in depths
        }
    return result


def prompt_information(
    model: RowGenerator,
    train: np.ndarray,
    train_labels: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    k: int,
) -> dict[str, float]:
    """What rows 1..k alone say about the class, read three ways (fractions right on `images`)."""
    states = core_states(model, train, [k])[k], core_states(model, images, [k])[k]
    flat = lambda x: torch.as_tensor(x[:, :k].reshape(len(x), -1))  # noqa: E731
    targets, truth = torch.as_tensor(train_labels), torch.as_tensor(labels)
    on_state = fit_class_probe(states[0], targets).predict(states[1])
    on_rows = fit_class_probe(flat(train), targets).predict(flat(images))
    index = Neighbours(train).index(images, k)  # (N, NEIGHBOURS)
    classes = int(train_labels.max()) + 1
    counts = np.apply_along_axis(np.bincount, 1, train_labels[index], minlength=classes)
    vote = counts.argmax(1)  # ties: the lower class
    return {
        "probe on the core's state": float((on_state == truth).float().mean()),
        "probe on the known rows": float((on_rows == truth).float().mean()),
        f"vote of the {NEIGHBOURS} nearest training images": float(np.mean(vote == labels)),
    }


def judged_by_class(
    predicted: dict[str, np.ndarray], labels: np.ndarray, names: Sequence[str]
) -> list[list[str]]:
    """Rows of (class, then for each sampler: its class agreement, the class given most often
    instead and how often) from the judge's predictions for each sampler's completions."""
    rows = []
    for c, name in enumerate(names):
        mine = labels == c
        row = [name]
        for got in predicted.values():
            counts = np.bincount(got[mine], minlength=len(names))
            wrong = counts.copy()
            wrong[c] = -1
            other = int(wrong.argmax())
            row += [
                f"{counts[c] / mine.sum():.3f}",
                f"{names[other]} {counts[other] / mine.sum():.3f}",
            ]
        rows.append(row)
    return rows


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", type=Path, default=Path("artifacts/lstm"), help="a flow bundle")
    p.add_argument("--k", type=int, nargs="+", default=[7, 14], help="known rows of the prompts")
    p.add_argument("--train", type=int, help="fit the probes on the first N training images only")
    p.add_argument("--test", type=int, help="the first N test images only (default: all)")
    p.add_argument("--data-dir", help=f"folder with the 4 IDX .gz files (or ${data.DATA_DIR_ENV})")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    bad = [k for k in args.k if not contract.KNOWN_ROWS_MIN <= k <= contract.KNOWN_ROWS_MAX]
    if bad:
        p.error(
            f"--k {bad}: known rows run from {contract.KNOWN_ROWS_MIN} to {contract.KNOWN_ROWS_MAX}"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    bundle = open_bundle(args.bundle)
    if bundle.config.head not in ("flow", "cvae"):
        raise SystemExit(
            f"{args.bundle}: a {bundle.config.head!r} bundle has no sampler; give a flow or cvae "
            "bundle (`make train export` builds artifacts/lstm)"
        )
    model = load_weights(args.bundle / contract.WEIGHTS).eval()
    train = data.load_split("fashion-mnist", "train", args.data_dir)
    test = data.load_split("fashion-mnist", "test", args.data_dir)
    x_train, y_train = train.images[: args.train].numpy(), train.labels[: args.train].numpy()
    images, labels = test.images[: args.test].numpy(), test.labels[: args.test].numpy()
    sample: Sampler = onnx_sampler(bundle)
    net, _ = classifier.load()
    neighbours = Neighbours(x_train)
    for k in args.k:
        completions = {
            "real test images": images,
            f"{args.bundle.name} sample.onnx": sample(images, k, NOISE_SEED),
            "10-NN sampler": neighbours.sample(images, k, NOISE_SEED),
        }
        depths = sorted({k, *(r for r in DEPTHS if r > k)})
        rows = drift(model, x_train, y_train, completions, labels, depths)
        print(f"\nk={k}: the core's state after rows 1..r, class read by a linear probe\n")
        header = ["completions", *(f"r={r}" for r in depths)]
        table = [[name, *(f"{v[r]:.4f}" for r in depths)] for name, v in rows.items()]
        print(markdown_table(header, table))
        told = prompt_information(model, x_train, y_train, images, labels, k)
        print(f"\nk={k}: what the prompt alone says\n")
        print(
            markdown_table(
                ["read by", "fraction right"], [[n, f"{v:.4f}"] for n, v in told.items()]
            )
        )
        judged = {
            n: classifier.embed(net, x)[1]
            for n, x in completions.items()
            if n != "real test images"
        }
        print(f"\nk={k}: class by class, as the judging CNN reads the completions\n")
        header = [
            "class",
            *(f"{n} {what}" for n in judged for what in ("agreement", "most often instead")),
        ]
        print(markdown_table(header, judged_by_class(judged, labels, CLASS_NAMES["fashion-mnist"])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
