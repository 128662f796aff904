"""Measures of sampled completions beside mean ones, for `make eval` (evaluation.evaluate).

On the test split at known_rows 7 and 14, for the 10-NN mean and sampler baselines, every
bundle's complete.onnx (mean) and every stochastic bundle's sample.onnx (temperature 1):
- Fréchet distance between evaluation.classifier's features of the completed images and of the real
  test images (FID's recipe with a Fashion-MNIST CNN instead of Inception; lower is better),
  and the same distance under the feature sets of evaluation.second_features (raw-pixel PCA, a
  fully connected network), so a sampler tuned to the project's CNN shows;
- class agreement: the fraction of completions the classifier puts in the original's class;
- diversity: mean absolute pixel difference of the generated rows between 8 samples of the same
  prompt, over every pair, on the first DIVERSITY_PROMPTS test images;
- sharpness: mean |difference| of neighbouring generated pixels, over the real images' (1: real),
  and its vertical half alone (row-to-row: streaks across the image show above 1);
- likelihood: the bundle's test bound in bits per pixel of rows k..27 given the rows above,
  beside a per-position histogram of the 256 grey levels fitted on the training split;
- runtime agreement: the largest difference between each sampling runtime and eager PyTorch
  on the split, at each k (evaluation.sample_runtimes).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from evaluation import baselines, classifier
from evaluation.frechet import feature_stats, frechet_distance
from evaluation.sample_runtimes import runtime_gaps
from evaluation.second_features import Embed
from rowgen import contract, sessions
from rowgen.bundle import Bundle
from rowgen.pictures import panel, side_by_side
from rowgen.sampling import draw_noise
from rowgen.tables import markdown_table, sig
from training.checkpoint import load_weights
from training.flow_bits import SOLVER_STEPS, flow_bits_per_pixel
from training.latent import bits_per_pixel

SAMPLE_KS = (7, 14)
SAMPLES = 8  # per prompt, for the diversity and the grid
DIVERSITY_PROMPTS = 1000
NOISE_SEED = 0
NEIGHBOURS = 10
Sampler = Callable[[np.ndarray, int, int], np.ndarray]  # (images, k, seed) -> one sample each


def onnx_sampler(bundle: Bundle, temperature: float = 1.0, batch: int = 1000) -> Sampler:
    """sample.onnx with noise drawn from `seed`; each image gets its own slice of the draw."""
    session = sessions.open_session(bundle.file(contract.SAMPLE_ONNX))
    names = [s.name for s in contract.sample_inputs(bundle.config.noise_dim)]

    def run(images: np.ndarray, k: int, seed: int) -> np.ndarray:
        noise = draw_noise(seed, len(images), bundle.config.noise_dim)
        parts = []
        for first in range(0, len(images), batch):
            part = slice(first, first + batch)
            n = len(images[part])
            values = (images[part], np.full(n, k, np.int64), noise[part], np.full(n, temperature))
            feeds = {name: np.ascontiguousarray(v) for name, v in zip(names, values, strict=True)}
            feeds[names[3]] = feeds[names[3]].astype(np.float32)
            parts.append(session.run(None, feeds)[0])
        return np.concatenate(parts)

    return run


class Neighbours:
    """The 10 training images nearest each prompt by its known rows, searched once per
    (images, k) and shared by the 10-NN mean and the 10-NN sampler."""

    def __init__(self, train: np.ndarray) -> None:
        self.train = train
        self._found: dict[tuple[str, int], np.ndarray] = {}

    def index(self, images: np.ndarray, k: int) -> np.ndarray:
        key = (hashlib.sha1(np.ascontiguousarray(images).tobytes()).hexdigest(), k)
        if key not in self._found:
            flat = lambda x: x[:, :k].reshape(len(x), -1)  # noqa: E731
            self._found[key] = baselines.nearest(flat(self.train), flat(images), NEIGHBOURS)
        return self._found[key]  # (N, NEIGHBOURS)

    def _filled(self, images: np.ndarray, k: int, bottoms: np.ndarray) -> np.ndarray:
        out = images.astype(np.float32, copy=True)
        out[:, k:] = bottoms
        return out

    def mean(self, images: np.ndarray, k: int) -> np.ndarray:
        return self._filled(images, k, self.train[self.index(images, k), k:].mean(1))

    def sample(self, images: np.ndarray, k: int, seed: int) -> np.ndarray:
        """The bottom of one of the neighbours, drawn uniformly with `seed`."""
        index = self.index(images, k)
        draw = np.random.default_rng(seed).integers(0, NEIGHBOURS, len(images))
        return self._filled(images, k, self.train[index[np.arange(len(images)), draw], k:])


class Judge:
    """The project's CNN and the second feature sets, with the real test images' statistics."""

    def __init__(
        self, net: classifier.FeatureNet, images: np.ndarray, others: dict[str, Embed]
    ) -> None:
        self.net, self.images, self.others = net, images, others
        features, self.predicted = classifier.embed(net, images)
        self.real = feature_stats(features)
        self.real_others = {name: feature_stats(embed(images)) for name, embed in others.items()}

    def __call__(self, completed: np.ndarray, labels: np.ndarray, k: int) -> dict[str, float]:
        """Fréchet distance under every feature set, class agreement, and the sharpness of
        rows k..27 as a fraction of the real images' (same prompts)."""
        features, predicted = classifier.embed(self.net, completed)
        result = {
            "frechet": frechet_distance(*feature_stats(features), *self.real),
            "class_agreement": float(np.mean(predicted == labels)),
            "sharpness": sharpness(completed, k) / sharpness(self.images[: len(completed)], k),
            "row_to_row": row_to_row(completed, self.images[: len(completed)], k),
        }
        for name, embed in self.others.items():
            stats = feature_stats(embed(completed))
            result[f"frechet_{name}"] = frechet_distance(*stats, *self.real_others[name])
            if hasattr(embed, "classify"):  # a second classifier: its own class agreement
                agree = embed.classify(completed) == labels
                result[f"class_agreement_{name}"] = float(np.mean(agree))
        return result


def diversity(run: Sampler, images: np.ndarray, k: int) -> float:
    """Mean |a - b| over the generated rows of every pair of SAMPLES samples per prompt."""
    draws = np.stack([run(images, k, NOISE_SEED + 1 + s) for s in range(SAMPLES)])  # (S, N, 28, 28)
    gen = draws[:, :, k:].astype(np.float64)
    total = sum(
        np.abs(gen[a] - gen[b]).mean() for a in range(SAMPLES) for b in range(a + 1, SAMPLES)
    )
    return float(total / (SAMPLES * (SAMPLES - 1) / 2))


def neighbour_differences(images: np.ndarray, k: int) -> tuple[float, float]:
    """Mean |difference| between horizontally neighbouring pixels of rows k..27, and between
    vertically neighbouring ones (each row against the row above it, within rows k..27)."""
    x = images[:, k:].astype(np.float64)
    return float(np.abs(np.diff(x, axis=2)).mean()), float(np.abs(np.diff(x, axis=1)).mean())


def sharpness(images: np.ndarray, k: int) -> float:
    """Mean of neighbour_differences' two: a blurred completion scores below the real images,
    speckle above them."""
    return sum(neighbour_differences(images, k)) / 2


def row_to_row(images: np.ndarray, real: np.ndarray, k: int) -> float:
    """The vertical half of sharpness over the real images': above 1, the generated rows differ
    from the row above more than real rows do (streaks across the image)."""
    return neighbour_differences(images, k)[1] / neighbour_differences(real, k)[1]


def per_position_bits(train: np.ndarray, images: np.ndarray, k: int) -> float:
    """Bits per pixel of rows k..27 under per-(row, column) histograms of the 256 grey levels
    (add-one smoothed), fitted on the training split: a model that ignores the known rows."""
    tr, te = (np.rint(x[:, k:] * 255.0).astype(np.int64) for x in (train, images))
    positions = np.arange(tr[0].size).reshape(tr.shape[1:])  # (28 - k, 28)
    counts = np.bincount((positions * 256 + tr).ravel(), minlength=positions.size * 256)
    counts = counts.reshape(positions.size, 256) + 1.0  # add-one (Laplace) smoothing
    probs = counts / counts.sum(1, keepdims=True)  # (positions, 256)
    picked = probs[positions[None], te]  # (N, 28 - k, 28)
    return float(-np.log2(picked).mean())


def model_bits(bundle: Bundle, images: np.ndarray, k: int, batch: int = 1000) -> float:
    """A cvae head's bound (training.latent) or a flow head's estimated bound
    (training.flow_bits) on the test NLL of rows k..27, bits per pixel."""
    model = load_weights(bundle.file(contract.WEIGHTS))
    measure = flow_bits_per_pixel if model.config.head == "flow" else bits_per_pixel
    torch.manual_seed(NOISE_SEED)  # the posterior draw of the cvae bound's estimate
    x = torch.from_numpy(images)
    total = sum(
        measure(model, x[f : f + batch], k) * len(x[f : f + batch]) for f in range(0, len(x), batch)
    )
    return total / len(x)


def sample_grid(
    prompts: np.ndarray, samples: np.ndarray, k: int, labels: list[str], title: str, scale: int = 3
) -> Image.Image:
    """One row per prompt: the original, the masked prompt, then its samples (P, S, 28, 28)."""
    rows = [
        side_by_side(
            [panel(p, k, scale), panel(p, k, scale, masked=True)] + [panel(s, k, scale) for s in ss]
        )
        for p, ss in zip(prompts, samples, strict=True)
    ]
    grid = np.concatenate([np.pad(r, ((0, 6), (0, 0), (0, 0)), constant_values=255) for r in rows])
    left, head = 90, 30
    canvas = Image.new("RGB", (grid.shape[1] + left, grid.shape[0] + head), "white")
    canvas.paste(Image.fromarray(grid), (left, head))
    draw = ImageDraw.Draw(canvas)
    draw.text((left, 2), title, fill="black")
    draw.text((left, 16), "original   masked   samples ->", fill="black")
    for i, label in enumerate(labels):
        draw.text((2, head + i * (28 * scale + 6) + 28 * scale // 2 - 6), label[:14], fill="black")
    return canvas


def grid_samples(run: Sampler, prompts: np.ndarray, k: int) -> np.ndarray:
    """(P, SAMPLES, 28, 28): SAMPLES draws for each prompt, seeds NOISE_SEED + 1 ..."""
    return np.stack([run(prompts, k, NOISE_SEED + 1 + s) for s in range(SAMPLES)], axis=1)


def _by_k(measure: Callable[[int], dict], prefix: str = "") -> dict:
    return {f"{prefix}{key}_k{k}": v for k in SAMPLE_KS for key, v in measure(k).items()}


def sampling_report(
    train: np.ndarray,
    images: np.ndarray,
    labels: np.ndarray,
    means: dict[str, Callable[[np.ndarray, int], np.ndarray]],  # bundles' complete.onnx
    bundles: list[Bundle],
    net: classifier.FeatureNet,
    out: Path,
    class_names: list[str],
    others: dict[str, Embed] | None = None,
) -> dict:
    """Every measure above as JSON-ready data; sample grids are written to `out`.

    others: feature sets beside the CNN's (evaluation.second_features), each a Fréchet column.
    """
    judge = Judge(net, images, others or {})
    methods: dict[str, dict] = {
        "real test images": {
            "kind": "reference",
            **_by_k(
                lambda k: {
                    "frechet": 0.0,
                    "class_agreement": float(np.mean(judge.predicted == labels)),
                    "sharpness": 1.0,
                    "row_to_row": 1.0,
                    **{f"frechet_{name}": 0.0 for name in judge.others},
                    **{
                        f"class_agreement_{name}": float(np.mean(embed.classify(images) == labels))
                        for name, embed in judge.others.items()
                        if hasattr(embed, "classify")
                    },
                    "diversity": None,
                }
            ),
        },
    }
    neighbours = Neighbours(train)
    means = {f"{NEIGHBOURS}-NN mean": neighbours.mean, **means}
    for name, complete in means.items():
        row = _by_k(lambda k, c=complete: {**judge(c(images, k), labels, k), "diversity": 0.0})
        methods[name] = {"kind": "mean completion", **row}
    stochastic = [b for b in bundles if b.config.stochastic]
    samplers: dict[str, Sampler] = {f"{NEIGHBOURS}-NN sampler": neighbours.sample}
    samplers |= {f"{b.name} sample": onnx_sampler(b) for b in stochastic}
    for name, run in samplers.items():
        row = _by_k(
            lambda k, r=run: {
                **judge(r(images, k, NOISE_SEED), labels, k),
                "diversity": diversity(r, images[:DIVERSITY_PROMPTS], k),
            }
        )
        kind = "sample, temperature 1" if name != f"{NEIGHBOURS}-NN sampler" else "baseline sampler"
        methods[name] = {"kind": kind, **row}
    likelihood = {
        "per-position histogram": _by_k(lambda k: {"bpp": per_position_bits(train, images, k)})
    }
    gaps = {}
    picks = [
        int(np.flatnonzero(labels == c)[0]) for c in range(len(class_names)) if (labels == c).any()
    ]
    for bundle in stochastic:
        likelihood[bundle.name] = _by_k(lambda k, b=bundle: {"bpp": model_bits(b, images, k)})
        # At every k: a shorter prompt draws more rows, and a rounding difference in one drawn
        # row moves the rows after it, so the gaps grow with the rows drawn.
        gaps[bundle.name] = {f"k={k}": runtime_gaps(bundle, images, k) for k in SAMPLE_KS}
    for name, run in samplers.items():
        k = max(SAMPLE_KS)
        grid = sample_grid(
            images[picks],
            grid_samples(run, images[picks], k),
            k,
            [class_names[int(labels[i])] for i in picks],
            f"{name}: {SAMPLES} samples per prompt, rows {k}-27 generated from 0-{k - 1}",
        )
        grid.save(out / f"{name.replace(' ', '-')}s.png")
    return {
        "known_rows": list(SAMPLE_KS),
        "test_images": len(images),
        "diversity_prompts": min(DIVERSITY_PROMPTS, len(images)),
        "methods": methods,
        "likelihood_bits_per_pixel": likelihood,
        "runtimes_vs_eager_max_abs_diff": gaps,
    }


def markdown(report: dict) -> str:
    """The sampling section of eval.md."""
    ks = report["known_rows"]
    first = next(iter(report["methods"].values()))
    suffix = f"_k{ks[0]}"
    others = [
        key.removesuffix(suffix)
        for key in first
        if key.startswith("frechet_") and key.endswith(suffix) and key != "frechet" + suffix
    ]
    agreements = [
        key.removesuffix(suffix)
        for key in first
        if key.startswith("class_agreement_")
        and key.endswith(suffix)
        and key != "class_agreement" + suffix
    ]
    keys = (
        "frechet", *others, "class_agreement", *agreements, "diversity", "sharpness", "row_to_row"
    )  # fmt: skip
    heads = {
        "frechet": "Fréchet CNN",
        "class_agreement": "class agreement",
        "diversity": "diversity",
        "sharpness": "sharpness / real",
        "row_to_row": "row-to-row / real",
    } | {key: "Fréchet " + key.removeprefix("frechet_").upper() for key in others}
    heads |= {
        key: "class agreement " + key.removeprefix("class_agreement_").upper() for key in agreements
    }
    table = markdown_table(
        ["method", "kind", *(f"{heads[key]} k={k}" for key in keys for k in ks)],
        [
            [name, m["kind"], *(sig(m.get(f"{key}_k{k}"), 4) for key in keys for k in ks)]
            for name, m in report["methods"].items()
        ],
    )
    bits = markdown_table(
        ["model", *(f"k={k}" for k in ks)],
        [
            [name, *(sig(v[f"bpp_k{k}"], 4) for k in ks)]
            for name, v in report["likelihood_bits_per_pixel"].items()
        ],
    )
    info = report["classifier"]
    gaps = "; ".join(
        f"{bundle} at {k}: " + ", ".join(f"{runtime} {v:.2g}" for runtime, v in by_runtime.items())
        for bundle, by_k in report["runtimes_vs_eager_max_abs_diff"].items()
        for k, by_runtime in by_k.items()
    )
    return (
        f"## Sampled completions\n\nJudged by the project's CNN (`make classifier`, test accuracy "
        f"{info.get('test_accuracy', float('nan')):.4f}) on {report['test_images']} test images: "
        "Fréchet distance of its features to the real test images' (lower is better; beside it "
        "the same distance under raw-pixel PCA features and under a second, fully connected "
        "network: evaluation.second_features), the fraction of completions in the original's "
        "class (beside it, as that second network classifies them: a reader the sampler was "
        "never chosen by), the mean absolute pixel difference between "
        f"{SAMPLES} samples of one prompt ({report['diversity_prompts']} prompts), and the mean "
        "|difference| of neighbouring generated pixels over the real images' (sharpness; 1 is "
        "real) and its vertical half alone, each generated row against the row above it "
        f"(row-to-row; above 1: streaks).\n\n{table}\n\n"
        "Test negative log-likelihood of rows k..27 given the rows above, bits per pixel: the "
        "histogram's is exact; a cvae model's is its evidence bound (one posterior draw); a flow "
        "model's is the dequantization bound on its probability-flow ODE's density, solved with "
        f"{SOLVER_STEPS} steps, so an estimate of that bound (training.flow_bits):\n\n{bits}\n\n"
        "Largest |runtime - eager PyTorch| of the sampled completions at each k, same noise, "
        f"temperature 1, on the split (evaluation.sample_runtimes; the contract allows "
        f"{contract.SAMPLE_TOLERANCE:.3g} on a whole completion, {contract.STEP_TOLERANCE:g} on "
        f"one step, and the float64 figure is float32 rounding alone): {gaps or 'none'}.\n"
    )
