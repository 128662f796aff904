"""A small Fashion-MNIST CNN whose features judge completions, as Inception's do for FID.

    python -m evaluation.classifier [--data-dir DIR] [--epochs 3]     # make classifier

Trains on the 60,000 training images, reports its test accuracy, and writes
artifacts/eval/classifier.safetensors (~110 KB; its metadata holds the accuracy and recipe) so
`make eval` scores completions without retraining. Its 32 features give the Fréchet
distance of completed images to real ones (evaluation.frechet); its predictions give how often a
completion keeps the original image's class.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, safe_open, save_file
from torch import nn
from tqdm import tqdm

from training import data

WEIGHTS = Path("artifacts/eval/classifier.safetensors")
FEATURES = 32


class FeatureNet(nn.Module):
    """Two 3x3 conv blocks (8, 16 channels), a 32-unit feature layer, a linear classifier.

    Small on purpose: it trains in a few CPU minutes and its file stays ~110 KB.
    """

    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 14x14
            nn.Conv2d(8, 16, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),  # 7x7
            nn.Flatten(),
            nn.Linear(16 * 7 * 7, FEATURES),
            nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 28, 28) in [0, 1] -> (N, 32)."""
        return self.body(images[:, None])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(images))  # (N, classes) logits


@torch.no_grad()
def embed(net: FeatureNet, images: np.ndarray, batch: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, 32) float64 and predicted classes (N,) of images (N, 28, 28)."""
    net.eval()
    feats, preds = [], []
    for first in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[first : first + batch], np.float32))
        f = net.features(x)
        feats.append(f.double().numpy())
        preds.append(net.head(f).argmax(1).numpy())
    return np.concatenate(feats), np.concatenate(preds)


def train(
    images: torch.Tensor, labels: torch.Tensor, epochs: int, seed: int = 0, batch: int = 128
) -> FeatureNet:
    """Adam 2e-3 with cosine decay; light augmentation (a random 1-pixel shift) against overfit."""
    torch.manual_seed(seed)
    net = FeatureNet()
    optimizer = torch.optim.Adam(net.parameters(), lr=2e-3)
    steps = epochs * ((len(images) + batch - 1) // batch)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(images), generator=gen)
        bar = tqdm(
            range(0, len(images), batch), desc=f"classifier {epoch + 1}/{epochs}", leave=False
        )
        for first in bar:
            index = order[first : first + batch]
            dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=gen))
            x = torch.roll(images[index], shifts=(dy, dx), dims=(1, 2))
            loss = nn.functional.cross_entropy(net(x), labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.set_postfix(loss=f"{loss.item():.3f}")
    return net.eval()


def save(net: FeatureNet, path: Path, info: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(tensors, str(path), metadata={"info": json.dumps(info)})
    path.chmod(0o644)  # a tracked artifact, readable by everyone


def load(path: Path = WEIGHTS) -> tuple[FeatureNet, dict]:
    """The trained classifier and its info (test accuracy, recipe); a clear error if absent."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no classifier at {path}: train it with `make classifier`")
    with safe_open(str(path), framework="pt") as f:
        info = json.loads((f.metadata() or {}).get("info", "{}"))
    net = FeatureNet()
    net.load_state_dict(load_file(str(path)))
    return net.eval(), info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evaluation.classifier", description=__doc__.split("\n")[0]
    )
    p.add_argument("--data-dir", help=f"folder with the 4 IDX .gz files (or ${data.DATA_DIR_ENV})")
    p.add_argument("--epochs", type=int, default=3, help="training epochs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--limit", type=int, help="train on the first N images only (smoke runs)")
    p.add_argument("--out", type=Path, default=WEIGHTS, help="weights file to write")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        train_split = data.load_split("fashion-mnist", "train", args.data_dir)
        test_split = data.load_split("fashion-mnist", "test", args.data_dir)
    except data.DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    net = train(
        train_split.images[: args.limit], train_split.labels[: args.limit], args.epochs, args.seed
    )
    _, predicted = embed(net, test_split.images.numpy())
    accuracy = float(np.mean(predicted == test_split.labels.numpy()))
    info = {
        "test_accuracy": accuracy,
        "epochs": args.epochs,
        "seed": args.seed,
        "train_images": len(train_split.images[: args.limit]),
        "train_seconds": round(time.perf_counter() - start, 1),
    }
    save(net, args.out, info)
    print(f"classifier: test accuracy {accuracy:.4f} after {args.epochs} epochs -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
