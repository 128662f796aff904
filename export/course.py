"""A bundle from the course notebook's own model: its `net.state_dict()`, with no training.

    python -m export --from-state-dict net.pth --name course [--data-dir DIR]

The course's `Net` (LSTM 28->256 + Linear 256->28, attributes `rnn` and `fc`) is rowgen's window
model, so its state_dict loads as is (training.checkpoint.load_course_state_dict, which also
explains a wrong file). The bundle is built and validated like every other one, then its
`complete.onnx` is scored on the test split (export.scoring, as `make eval` does) when the
data is there.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from export.build import build_bundle
from export.scoring import onnx_completer, score
from rowgen import contract
from rowgen.bundle import open_bundle, sha256_file
from rowgen.config import ModelConfig
from rowgen.datasets import CLASS_NAMES
from training import data
from training.checkpoint import load_course_state_dict, save_weights
from training.model import RowGenerator

COURSE = ModelConfig(cell="lstm", mode="window", hidden=256, layers=1)
EVAL_BATCH = 1000


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("from the course notebook (no training)")
    g.add_argument(
        "--from-state-dict",
        type=Path,
        metavar="PTH",
        help="a file saved in the notebook with torch.save(net.state_dict(), PTH)",
    )
    g.add_argument("--name", default="course", help="bundle name under --artifacts")
    g.add_argument("--dataset", choices=list(data.DATASETS), default="fashion-mnist")
    g.add_argument("--data-dir", help=f"test split's IDX .gz files (or ${data.DATA_DIR_ENV})")
    g.add_argument("--limit-test", type=int, help="score on the first N test images only")


def course_model(path: Path) -> RowGenerator:
    """The notebook's weights in rowgen's window model; ValueError says what is wrong."""
    model = RowGenerator(COURSE)
    load_course_state_dict(model, path)
    return model.eval()


def test_scores(
    folder: Path, dataset: str, data_dir: str | None, limit: int | None
) -> tuple[dict, str]:
    """test_mse_k7/k14/k21 of the bundle's complete.onnx, and a line saying what was scored.

    No data is not an error: the bundle is still valid, its metrics stay empty, the line says so.
    """
    try:
        test = data.load_split(dataset, "test", data_dir, download=False)
    except data.DataError as exc:
        return {}, f"not scored: {str(exc).splitlines()[0]}"
    images, labels = test.images[:limit].numpy(), test.labels[:limit].numpy()
    completer = onnx_completer(open_bundle(folder), EVAL_BATCH)
    scores, _ = score(completer, images, labels, CLASS_NAMES[dataset])
    metrics = {f"test_mse_k{k}": scores[f"test_mse_k{k}"] for k in contract.EVAL_KNOWN_ROWS}
    return metrics, f"scored on {len(images)} {dataset} test images"


def set_metrics(folder: Path, metrics: dict) -> None:
    """Write the scores into the manifest (not a hashed file) by temporary file and rename."""
    path = folder / contract.MANIFEST
    manifest = json.loads(path.read_text())
    manifest["metrics"] = metrics
    fd, tmp = tempfile.mkstemp(prefix=".manifest-", dir=folder)
    with os.fdopen(fd, "w") as f:
        f.write(json.dumps(manifest, indent=2) + "\n")
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def export_state_dict(args: argparse.Namespace) -> tuple[dict, str]:
    """Build `--artifacts/--name` from `--from-state-dict`; (manifest, scoring line).

    Raises FileNotFoundError/ValueError for a wrong file, ExportError for a failed check.
    """
    source = args.from_state_dict
    model = course_model(source)
    out = args.artifacts / args.name
    info = {
        "dataset": args.dataset,
        "source": "course notebook state_dict",
        "state_dict": source.name,
        "state_dict_sha256": sha256_file(source),
    }
    with tempfile.TemporaryDirectory(prefix="rowgen-course-") as tmp:
        weights = Path(tmp) / contract.WEIGHTS
        save_weights(model, weights)
        manifest = build_bundle(model, out, weights, info=info)
    metrics, line = test_scores(out, args.dataset, args.data_dir, args.limit_test)
    if metrics:
        set_metrics(out, metrics)
        manifest["metrics"] = metrics
    return manifest, line
