"""Small sweep of sampler heads on the shipped bundle's frozen core, judged three ways.

    nice -n 10 python -m evaluation.sweep_sampler [--candidates flow-128-e8 ...] [--test 2000]
        [--temperature 1.0] [--steps N] [--reuse] [--teacher-forced]

Each candidate head is trained on the frozen core of `--bundle` (its weights.safetensors) with
training.flow_loop, then sampled in eager PyTorch on the first `--test` test images at known_rows
14 and 7, beside the 10-NN sampler and the bundle's own head on the same images. Measures:
Fréchet distance under three feature sets (the project's CNN, raw-pixel PCA and a briefly
trained MLP: evaluation.second_features) to the whole test split's features, class agreement
(project CNN), diversity (mean |a - b| between 8 samples of a prompt, first `--prompts`
prompts), sharpness (mean |difference| of neighbouring generated pixels over the real
images') and its vertical half alone (row-to-row: above 1, streaks). Lives in evaluation/,
not training/, because it judges with evaluation's classifier.
`--teacher-forced` adds the bundle's head drawing every row given the real rows above it
(nothing fed back). `--temperature` samples every model but the 10-NN sampler at that
temperature; `--reuse` takes a candidate's weights from --out where an earlier run saved them
instead of training it again.
Writes sweep-<time>.json and .md to --out and prints the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evaluation import classifier, sample_measures
from evaluation.frechet import feature_stats, frechet_distance
from evaluation.second_features import second_embeds
from rowgen import contract
from rowgen.config import FLOW_NOISE_DIM, ModelConfig
from rowgen.sampling import draw_noise
from rowgen.tables import markdown_table, sig
from training import data
from training.checkpoint import load_core, load_weights
from training.flow_head import FlowHead
from training.flow_loop import train_flow
from training.latent import sample
from training.latent_loop import frozen_states
from training.model import RowGenerator
from training.recipe import FLOW, FLOW_ROLLOUT, FlowRecipe, RolloutRecipe
from training.rollout_loop import train_rollout

KS = (14, 7)


# What the sweep's runs trained for: 6 epochs of 400,000 random pairs (short), 6 of every pair
# (full), 12 (x2) or 24 (x4).
SHORT = FLOW.with_overrides(epochs=6, pairs_per_epoch=400_000)
FULL = FLOW.with_overrides(epochs=6)
TWICE = FLOW.with_overrides(epochs=12)
FOUR_TIMES = FLOW.with_overrides(epochs=24)
# Going on from a trained head for 6 epochs at a quarter of the rate, reading its own draws
# (training.flow_loop.own_draws).
OWN = FLOW.with_overrides(epochs=6, lr=5e-4, own_draws=1)
# "xloss": the row loss (the predicted row's error, every time s weighted alike).
SHORT_ROW, FULL_ROW = (r.with_overrides(weighting="row") for r in (SHORT, FULL))
OWN_ROW = OWN.with_overrides(own_draws=2, weighting="row")


@dataclass(frozen=True)
class Candidate:
    width: int
    steps: int
    integrator: str
    predicts: str = "row"  # the network's output: the clean row, or the velocity itself
    recipe: FlowRecipe | None = SHORT  # None: no flow-matching stage (going on from a head)
    around_mean: bool = False  # draw the difference from the mean head's row
    skip: bool = False  # predict the row from a guess off the row above, preconditioned
    # Start from the bundle's own flow head ("bundle") or a candidate saved in --out (its name),
    # both of the same shape; "": at random.
    start: str = ""
    rollout: RolloutRecipe | None = None  # then score its own completions (rollout_loop)


def going_on(
    recipe: FlowRecipe | None, start: str = "bundle", rollout: RolloutRecipe | None = None
) -> Candidate:
    """The shipped head's shape (160 wide, 12 Euler steps) going on from a trained head."""
    return Candidate(160, 12, "euler", recipe=recipe, start=start, rollout=rollout)


# The rollout stage as first shipped (prompts of 4-24 rows, no one-row score): the runs named
# "shipped-then-rollout-..." change it by their overrides.
ROLLOUT_4_24 = FLOW_ROLLOUT.with_overrides(known_rows=(4, 24), rows=0.0)

CANDIDATES = {
    "flow-128-e8-v": Candidate(128, 8, "euler", "velocity"),
    "flow-128-h4-v": Candidate(128, 4, "heun", "velocity"),
    "flow-128-e8": Candidate(128, 8, "euler"),
    "flow-128-e8-noisy": Candidate(128, 8, "euler", recipe=SHORT.with_overrides(prefix_noise=0.05)),
    "flow-128-e8-xloss": Candidate(128, 8, "euler", recipe=SHORT_ROW),
    "flow-128-e8-resid": Candidate(128, 8, "euler", around_mean=True),
    "flow-128-e8-resid-xloss": Candidate(128, 8, "euler", recipe=SHORT_ROW, around_mean=True),
    "flow-128-e8-resid-xloss-full": Candidate(128, 8, "euler", recipe=FULL_ROW, around_mean=True),
    "flow-160-e12-full": Candidate(160, 12, "euler", recipe=FULL),
    "flow-160-e12-resid-xloss-full": Candidate(160, 12, "euler", recipe=FULL_ROW, around_mean=True),
    "flow-160-e12-full-x2": Candidate(160, 12, "euler", recipe=TWICE),
    "flow-160-e12-full-x4": Candidate(160, 12, "euler", recipe=FOUR_TIMES),
    "flow-192-e12-full-x2": Candidate(192, 12, "euler", recipe=TWICE),
    "flow-256-e12-full-x2": Candidate(256, 12, "euler", recipe=TWICE),
    "flow-160-e12-skip-x2": Candidate(160, 12, "euler", recipe=TWICE, skip=True),
    "flow-160-e12-skip-x4": Candidate(160, 12, "euler", recipe=FOUR_TIMES, skip=True),
    # "shipped" is --bundle's own head. In docs/sampling.md's table these runs went on from the
    # 24-epoch head of commit f9ab56a; to redo them, point --bundle at a checkout of its artifacts.
    "shipped-then-own-6": going_on(OWN),
    "shipped-then-real-6": going_on(OWN.with_overrides(own_draws=0)),
    "shipped-then-own-12": going_on(OWN.with_overrides(epochs=12)),
    "shipped-then-own-6-r2": going_on(OWN.with_overrides(own_draws=2)),
    "shipped-then-own-6-r3": going_on(OWN.with_overrides(own_draws=3)),
    "shipped-then-own-6-r4": going_on(OWN.with_overrides(own_draws=4)),
    "shipped-then-own-12-r2": going_on(OWN.with_overrides(epochs=12, own_draws=2)),
    "shipped-then-own-6-r2-xloss": going_on(OWN_ROW),
    "shipped-then-own-12-r2-xloss": going_on(OWN_ROW.with_overrides(epochs=12)),
    "shipped-then-own-12-r2-xloss-twice": going_on(
        OWN_ROW.with_overrides(epochs=12), start="shipped-then-own-12-r2-xloss"
    ),
    "shipped-then-own-24-r2-xloss": going_on(OWN_ROW.with_overrides(epochs=24)),
    "e12-then-own-24-r2-xloss": going_on(
        OWN_ROW.with_overrides(epochs=24), start="flow-160-e12-full-x2"
    ),
    "e12-then-own-36-r2-xloss": going_on(
        OWN_ROW.with_overrides(epochs=36), start="flow-160-e12-full-x2"
    ),
    "e6-then-own-24-r2-xloss": going_on(
        OWN_ROW.with_overrides(epochs=24), start="flow-160-e12-full"
    ),
    # Scoring its own completions (training.rollout_loop) after the shipped head's stages.
    # ("shipped" here: the head of FLOW then FLOW_OWN, commit 399cdeb.)
    "shipped-then-rollout-2": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(prompts=32, lr=1e-4)
    ),
    "shipped-then-rollout-2-p64": going_on(None, rollout=ROLLOUT_4_24),
    "shipped-then-rollout-4-p64": going_on(None, rollout=ROLLOUT_4_24.with_overrides(epochs=4)),
    "shipped-then-rollout-2-steady-1e-3": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(steadiness=1e-3)
    ),
    "shipped-then-rollout-2-steady-1e-2": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(steadiness=1e-2)
    ),
    # Completions scored to the image's last row (window 27) or 21 rows deep, not 14.
    "shipped-then-rollout-2-w27": going_on(None, rollout=ROLLOUT_4_24.with_overrides(window=27)),
    "shipped-then-rollout-2-w21": going_on(None, rollout=ROLLOUT_4_24.with_overrides(window=21)),
    # Shorter prompts only (more rows drawn per completion), or 8 draws of 32 prompts a batch.
    "shipped-then-rollout-2-k4-14": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14))
    ),
    "shipped-then-rollout-2-d8-p32": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(draws=8, prompts=32)
    ),
    # Prompts of 4-18 rows (between the two above); 4-14 with each row's difference from the
    # row above also scored (RolloutRecipe.vertical), against streaks and speckle.
    "shipped-then-rollout-2-k4-18": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 18))
    ),
    "shipped-then-rollout-2-k4-14-v1": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14), vertical=1.0)
    ),
    "shipped-then-rollout-2-k4-14-v0.3": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14), vertical=0.3)
    ),
    "shipped-then-rollout-2-k4-14-v0.5": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14), vertical=0.5)
    ),
    # Each row of the window also drawn given the real rows above it and scored alone
    # (RolloutRecipe.rows): the draws differ from the row above 1.22-1.27x as much as real rows.
    "shipped-then-rollout-2-k4-14-rows2": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14), rows=2.0)
    ),
    "shipped-then-rollout-2-k4-14-rows8": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14), rows=8.0)
    ),
    "shipped-then-rollout-2-k4-14-rows16": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14), rows=16.0)
    ),
    "e12-then-rollout-4-p64": going_on(
        None, start="flow-160-e12-full-x2", rollout=ROLLOUT_4_24.with_overrides(epochs=4)
    ),
    # FLOW_ROLLOUT (one-row score) after fewer epochs reading the head's own draws, or none:
    # those epochs' real targets for drawn rows above are where the streaks come from.
    "e12-then-rollout-rows8": going_on(None, start="flow-160-e12-full-x2", rollout=FLOW_ROLLOUT),
    # The core's state after each drawn completion scored against its state after the real rows.
    "shipped-then-rollout-2-k4-14-rows8-state1": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14), rows=8.0, state=1.0)
    ),
    "shipped-then-rollout-2-k4-14-rows8-state4": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14), rows=8.0, state=4.0)
    ),
    # A linear class probe's reading of the core's state after each drawn completion, scored.
    "shipped-then-rollout-2-k4-14-rows8-classes2": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14), rows=8.0, classes=2.0)
    ),
    "shipped-then-rollout-2-k4-14-rows8-classes8": going_on(
        None, rollout=ROLLOUT_4_24.with_overrides(known_rows=(4, 14), rows=8.0, classes=8.0)
    ),
    "e12-then-own-12-then-rollout-rows8": going_on(
        OWN_ROW.with_overrides(epochs=12), start="flow-160-e12-full-x2", rollout=FLOW_ROLLOUT
    ),
}


def eager_sampler(
    model: RowGenerator, temperature: float = 1.0, batch: int = 1000
) -> sample_measures.Sampler:
    """training.latent.sample at `temperature` with noise from `seed`, as sample.onnx gets it."""
    model = model.eval()

    def run(images: np.ndarray, k: int, seed: int) -> np.ndarray:
        noise = torch.from_numpy(draw_noise(seed, len(images), model.config.noise_dim))
        parts = []
        for f in range(0, len(images), batch):
            x = torch.from_numpy(images[f : f + batch])
            n = len(x)
            t = torch.full((n,), temperature)
            parts.append(sample(model, x, torch.full((n,), k), noise[f : f + batch], t))
        return torch.cat(parts).numpy()

    return run


def teacher_forced_sampler(model: RowGenerator) -> sample_measures.Sampler:
    """Each generated row drawn given the *real* rows above it, none fed back: how far the
    head's draws are from real ones before their errors pile up down the image."""
    model = model.eval()

    @torch.no_grad()
    def run(images: np.ndarray, k: int, seed: int) -> np.ndarray:
        x = torch.from_numpy(images)
        noise = torch.from_numpy(draw_noise(seed, len(images), model.config.noise_dim))
        h = frozen_states(model, x).float()  # (N, 27, H): h_t after the real row t
        out = x.clone()
        rows = slice(k - 1, contract.IMAGE_SIZE - 1)  # states and rows above of rows k..27
        one = torch.ones(len(x), contract.IMAGE_SIZE - k, 1)
        head = model.flow  # a head with classes holds the one its prompt's state reads as
        kind = head.decide(h[:, k - 1 : k]) if head.classes else None
        out[:, k:] = head.sample_row(h[:, rows], x[:, rows], noise[:, rows], one, kind)
        return out.numpy()

    return run


class Judge:
    """Fréchet distance under each feature set, class agreement, diversity, sharpness and
    row-to-row differences."""

    def __init__(self, train: np.ndarray, train_labels: np.ndarray, test: np.ndarray) -> None:
        self.net, _ = classifier.load()
        self.embeds: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "cnn": lambda x: classifier.embed(self.net, x)[0],
            **second_embeds(train, train_labels),
        }
        self.real = {name: feature_stats(embed(test)) for name, embed in self.embeds.items()}
        self.test = test

    def measure(
        self, run: sample_measures.Sampler, images: np.ndarray, labels: np.ndarray, prompts: int
    ) -> dict[str, float]:
        result: dict[str, float] = {}
        for k in KS:
            drawn = run(images, k, sample_measures.NOISE_SEED)
            for name, embed in self.embeds.items():
                stats = feature_stats(embed(drawn))
                result[f"fd_{name}_k{k}"] = frechet_distance(*stats, *self.real[name])
            predicted = classifier.embed(self.net, drawn)[1]
            result[f"class_agreement_k{k}"] = float(np.mean(predicted == labels))
            for name, embed in self.embeds.items():
                if hasattr(embed, "classify"):  # the second network's reading of the class
                    agree = embed.classify(drawn) == labels
                    result[f"class_agreement_{name}_k{k}"] = float(np.mean(agree))
            result[f"diversity_k{k}"] = sample_measures.diversity(run, images[:prompts], k)
            real = sample_measures.sharpness(images, k)
            result[f"sharpness_k{k}"] = sample_measures.sharpness(drawn, k) / real
            result[f"row_to_row_k{k}"] = sample_measures.row_to_row(drawn, images, k)
        return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m evaluation.sweep_sampler", description=__doc__.split("\n")[0]
    )
    p.add_argument("--bundle", type=Path, default=Path("artifacts/lstm"), help="core's bundle")
    p.add_argument("--candidates", nargs="*", choices=list(CANDIDATES), default=["flow-128-e8"])
    p.add_argument("--test", type=int, default=2000, help="test images sampled")
    p.add_argument("--prompts", type=int, default=500, help="prompts for the diversity")
    p.add_argument("--train-limit", type=int, help="train the heads on the first N images only")
    p.add_argument("--epochs", type=int, help="override every candidate's epochs")
    p.add_argument("--data-dir", help=f"folder with the 4 IDX .gz files (or ${data.DATA_DIR_ENV})")
    p.add_argument("--out", type=Path, default=Path("build/sweep_sampler"), help="results folder")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument(
        "--temperature", type=float, default=1.0, help="every model's sampling temperature"
    )
    p.add_argument(
        "--steps", type=int, help="integrate every flow head with this many steps, not its own"
    )
    p.add_argument(
        "--reuse",
        action="store_true",
        help="load a candidate's weights from --out where an earlier run saved them, not train",
    )
    p.add_argument(
        "--teacher-forced",
        action="store_true",
        help="also judge the bundle's head drawing each row given the real rows above",
    )
    p.add_argument(
        "--baselines",
        type=int,
        choices=[0, 1],
        default=1,
        help="0: skip the 10-NN sampler and the bundle's own head (measured once already)",
    )
    return p.parse_args(argv)


def table(results: dict[str, dict]) -> str:
    keys = [
        *(f"fd_{f}_k{k}" for f in ("cnn", "pca", "mlp") for k in KS),
        *(
            f"{m}_k{k}"
            for m in ("class_agreement", "diversity", "sharpness", "row_to_row")
            for k in KS
        ),
    ]
    rows = [
        [name, sig(r.get("train_minutes"), 3), *(sig(r.get(key), 4) for key in keys)]
        for name, r in results.items()
    ]
    return markdown_table(["method", "train min", *keys], rows)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    train = data.load_split("fashion-mnist", "train", args.data_dir)
    test = data.load_split("fashion-mnist", "test", args.data_dir)
    train_images = train.images[: args.train_limit]
    images, labels = test.images[: args.test].numpy(), test.labels[: args.test].numpy()
    judge = Judge(train.images.numpy(), train.labels.numpy(), test.images.numpy())
    neighbours = sample_measures.Neighbours(train.images.numpy())
    shipped = load_weights(args.bundle / contract.WEIGHTS)
    if args.steps and shipped.flow is not None:
        shipped.flow.steps = args.steps
    results = {}
    if args.baselines:
        results["10-NN sampler"] = judge.measure(neighbours.sample, images, labels, args.prompts)
        own = f"{args.bundle.name} sample ({shipped.config.head})"
        if args.temperature != 1:
            own += f" at temperature {args.temperature:g}"
        if args.steps:
            own += f" with {args.steps} steps"
        results[own] = judge.measure(
            eager_sampler(shipped, args.temperature), images, labels, args.prompts
        )
        print(table(results), flush=True)
    if args.teacher_forced:
        results[f"{args.bundle.name} rows drawn given the real rows above"] = judge.measure(
            teacher_forced_sampler(shipped), images, labels, args.prompts
        )
        print(table(results), flush=True)
    states = None  # the frozen core's states of the training images, once a candidate trains
    for name in args.candidates:
        c = CANDIDATES[name]
        config = ModelConfig(
            "lstm", "stream", shipped.config.hidden, shipped.config.layers, "flow",
            FLOW_NOISE_DIM, c.width, c.steps, c.integrator,
        )  # fmt: skip
        torch.manual_seed(0)
        model = RowGenerator(config)
        model.flow = FlowHead(
            config.hidden, c.width, c.steps, c.integrator, c.predicts, c.around_mean, c.skip
        )
        load_core(model, args.bundle / contract.WEIGHTS)
        if c.start == "bundle":
            model.flow.load_state_dict(shipped.flow.state_dict())
        elif c.start:
            model.load_state_dict(torch.load(args.out / f"{c.start}.pt"))
        recipe = c.recipe.with_overrides(epochs=args.epochs) if c.recipe else None
        saved = args.out / f"{name}.pt"
        if args.reuse and saved.exists():
            model.load_state_dict(torch.load(saved))
            trained: dict = {"reused": str(saved)}
        else:
            start = time.perf_counter()
            trained = {}
            if recipe:
                if states is None:
                    states = frozen_states(shipped, train_images)
                history = train_flow(model, train_images, recipe, 0, name, states)
                trained["final_loss"] = history[-1]["flow_loss"]
            if c.rollout:
                history = train_rollout(
                    model, train_images, c.rollout, 0, name, train.labels[: args.train_limit]
                )
                trained["final_energy_score"] = history[-1]["energy_score"]
            trained["train_minutes"] = (time.perf_counter() - start) / 60
            args.out.mkdir(parents=True, exist_ok=True)
            torch.save(model.state_dict(), saved)
        if args.steps:
            model.flow.steps = args.steps
        label = name if args.temperature == 1 else f"{name} at temperature {args.temperature:g}"
        label += f" with {args.steps} steps" if args.steps else ""
        results[label] = {
            **trained,
            "recipe": recipe.to_dict() if recipe else None,
            "rollout": c.rollout.to_dict() if c.rollout else None,
            "temperature": args.temperature,
            **judge.measure(eager_sampler(model, args.temperature), images, labels, args.prompts),
        }
        print(table(results), flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%H%M%S")
    (args.out / f"sweep-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"sweep-{stamp}.md").write_text(table(results) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
