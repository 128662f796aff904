"""Train a row generator and write its run (weights, metrics, pictures) to `runs/<name>/`.

    python -m training.train --cell lstm                  # rowgen's stream LSTM, its mean head
    python -m training.train --cell lstm --head flow      # plus a flow head that samples
    make train                                            # the line above: the shipped model
    python -m training.train --cell lstm --head cvae      # plus a latent head (the older one)
    python -m training.train --cell lstm --mode window    # the course's 14-row window model

Checkpoints go to `runs/<name>/checkpoint.pt` after every epoch; `--resume` continues there.
Training never writes to `artifacts/`: the bundle being served stays whole until
`python -m export` has validated a new one from the run and swapped it in.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from rowgen import contract
from rowgen.config import CELLS, FLOW_INTEGRATORS, FLOW_NOISE_DIM, HEADS, MODES
from rowgen.datasets import CLASS_NAMES
from training import checkpoint, checks, data, host, plots
from training.checkpoint import GRID_PNG, LOSS_PNG, TRAINING_JSON
from training.flow_loop import fit_kind_probe, train_flow
from training.latent_loop import frozen_states, test_bits, train_latent
from training.loop import evaluate
from training.model import RowGenerator, complete
from training.recipe import FLOW, FLOW_OWN, FLOW_ROLLOUT, LATENT, Recipe, default_stages
from training.rollout_loop import train_rollout
from training.stages import checkpoint_saver, train_stages

# What a training record says about its sampling head alone (the rest is about the core).
SAMPLER_RECORDS = (
    "flow_recipe",
    "flow_recipes",
    "kind_probe",
    "flow_history",
    "rollout_recipe",
    "rollout_history",
    "latent_recipe",
    "latent_history",
)

# The flow head's shape: chosen by evaluation.sweep_sampler (docs/sampling.md). By default it
# holds one of the dataset's classes, decided at the prompt (training.flow_head.FlowHead.decide).
FLOW_WIDTH, FLOW_STEPS, FLOW_INTEGRATOR = 160, 12, "euler"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    p.add_argument(
        "--cell",
        choices=CELLS,
        nargs="+",
        default=["lstm"],
        help="recurrent cell(s); several train one after another",
    )
    p.add_argument("--mode", choices=MODES, default="stream", help="stream (rowgen) or window")
    p.add_argument("--hidden", type=int, default=256, help="hidden units per layer")
    p.add_argument("--layers", type=int, default=1, help="stacked recurrent layers")
    p.add_argument("--name", help="bundle name, one cell only (default: cell, or cell-window)")
    p.add_argument(
        "--head", choices=HEADS, default="mse", help="mse, or flow (or cvae): also sample"
    )
    p.add_argument("--noise-dim", type=int, default=16, help="latent size of a cvae head")
    p.add_argument("--flow-width", type=int, default=FLOW_WIDTH, help="flow head's hidden units")
    p.add_argument("--flow-steps", type=int, default=FLOW_STEPS, help="flow head's solver steps")
    p.add_argument(
        "--flow-integrator", choices=FLOW_INTEGRATORS, default=FLOW_INTEGRATOR, help="flow solver"
    )
    p.add_argument(
        "--flow-classes",
        type=int,
        help="classes the flow head holds from the prompt on (0: none; default: the dataset's)",
    )
    p.add_argument("--flow-epochs", type=int, help="override the flow stage's epochs")
    p.add_argument(
        "--flow-own-epochs",
        type=int,
        help="override the epochs the flow head then reads its own draws (0: none)",
    )
    p.add_argument(
        "--rollout-epochs",
        type=int,
        default=FLOW_ROLLOUT.epochs,
        help=f"epochs the flow head then scores its own completions (0: none; default "
        f"{FLOW_ROLLOUT.epochs})",
    )
    p.add_argument(
        "--core-from",
        type=Path,
        help="start from this trained model's core and mean head (see --core-stages)",
    )
    p.add_argument(
        "--core-stages",
        type=int,
        default=1,
        help="with --core-from: how many of the recipe's stages those weights went through "
        "(1: the stream stage, so the focus stages run; all of them: only the sampling head "
        "trains)",
    )
    p.add_argument(
        "--focus",
        type=int,
        choices=[0, 1],
        default=1,
        help="stream: 0 stops after the main recipe, without the short-prompt focus stages",
    )
    p.add_argument("--latent-epochs", type=int, help="override the latent stage's epochs")
    p.add_argument("--free-bits", type=float, help="override the latent stage's KL floor")
    p.add_argument("--dataset", choices=list(data.DATASETS), default="fashion-mnist")
    p.add_argument("--data-dir", help=f"folder with the 4 IDX .gz files (or ${data.DATA_DIR_ENV})")
    p.add_argument("--no-verify", action="store_true", help="accept non-official IDX files")
    p.add_argument("--epochs", type=int, help="override the recipe's epoch count")
    p.add_argument("--batch-size", type=int, help="override the recipe's batch size")
    p.add_argument("--lr", type=float, help="override the recipe's learning rate")
    p.add_argument("--free-run-from", type=int, help="first free-running epoch (stream mode)")
    p.add_argument(
        "--feedback-grad",
        type=int,
        choices=[0, 1],
        help="1: backpropagate through fed-back rows, 0: treat them as constants",
    )
    p.add_argument("--limit-train", type=int, help="train on the first N images only (smoke runs)")
    p.add_argument("--limit-test", type=int, help="evaluate on the first N test images only")
    p.add_argument(
        "--eval-every-epoch",
        type=int,
        default=2000,
        help="test images scored after each epoch (all of them at the end)",
    )
    p.add_argument(
        "--known-rows",
        nargs=2,
        metavar=("LO", "HI"),
        help="prompt lengths drawn for free-running batches",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for init, shuffling and prompts")
    p.add_argument("--resume", action="store_true", help="continue from runs/<name>/checkpoint.pt")
    p.add_argument("--init-from", type=Path, help="course notebook state_dict (rnn.*, fc.*)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--runs", type=Path, default=Path("runs"), help="runs: checkpoints, weights")
    return p.parse_args(argv)


def pick_device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise checks.UsageError(
            "--device cuda: no CUDA device is visible; use --device cpu or auto"
        )
    return torch.device("cuda" if choice != "cpu" and torch.cuda.is_available() else "cpu")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.name and len(args.cell) > 1:
        print("error: --name needs a single --cell", file=sys.stderr)
        return 2
    for cell in args.cell:
        status = train_one(args, cell)
        if status:
            return status
    return 0


def train_one(args: argparse.Namespace, cell: str) -> int:
    """Train one model as the flags say; 0 on success, 2 on a usage or data problem."""
    try:
        return run(args, cell)
    except (checks.UsageError, data.DataError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace, cell: str) -> int:
    stochastic = args.head != "mse"
    noise_dim = {"mse": 0, "cvae": args.noise_dim, "flow": FLOW_NOISE_DIM}[args.head]
    classes = len(CLASS_NAMES[args.dataset]) if args.flow_classes is None else args.flow_classes
    flow = (args.flow_width, args.flow_steps, args.flow_integrator, classes)
    config = checks.model_config(
        cell, args.mode, args.hidden, args.layers, args.head, noise_dim,
        flow if args.head == "flow" else (0, 0, "", 0),
    )  # fmt: skip
    recipe: Recipe = default_stages(args.mode)[0].with_overrides(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        free_run_from=args.free_run_from,
        feedback_grad=None if args.feedback_grad is None else bool(args.feedback_grad),
        known_rows=checks.parse_known_rows(args.known_rows) if args.known_rows else None,
    )
    checks.check_recipe(recipe)
    stages = (recipe, *default_stages(args.mode)[1:]) if args.focus else (recipe,)
    if args.core_from and not 1 <= args.core_stages <= len(stages):
        raise checks.UsageError(
            f"--core-stages {args.core_stages}: give 1..{len(stages)}, the number of this "
            "recipe's stages the --core-from weights went through"
        )
    if args.core_from and not stochastic and args.core_stages == len(stages):
        raise checks.UsageError(
            "--core-from with every stage done leaves nothing to train: lower --core-stages, "
            "or add --head flow to train a sampling head on it"
        )
    name = args.name or config.default_name
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    torch.manual_seed(args.seed)
    train = data.load_split(args.dataset, "train", args.data_dir, verify=not args.no_verify)
    test = data.load_split(args.dataset, "test", args.data_dir, verify=not args.no_verify)
    train_images = train.images[: args.limit_train].to(device)  # once, not per batch
    test_images, test_labels = test.images[: args.limit_test], test.labels[: args.limit_test]

    model = RowGenerator(config).to(device)
    if args.init_from:
        checks.init_from(model, args.init_from)
    if args.core_from:
        try:
            checkpoint.load_core(model, args.core_from)
        except (FileNotFoundError, ValueError) as exc:
            raise checks.UsageError(f"--core-from: {exc}") from None
    ckpt_path = args.runs / name / "checkpoint.pt"
    meta = {
        "name": name,
        "dataset": args.dataset,
        "data_source": train.source,
        "config": config.to_dict(),
        "recipe": recipe.to_dict(),
        "stages": [stage.to_dict() for stage in stages[1:]],
        "seed": args.seed,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "host_gflops": host.matmul_gflops(),
        "train_images": len(train_images),
        "test_images": len(test_images),
    }
    history: list[dict] = []
    resumed = None
    if args.resume:
        resumed = checks.resume_state(ckpt_path, config, recipe, meta["stages"])
        model.load_state_dict(resumed["model"])
        history = resumed["history"]
        if "core_training" in resumed:
            meta["core_training"] = resumed["core_training"]
    core_json = args.core_from.parent / TRAINING_JSON if args.core_from else None
    if core_json is not None and core_json.is_file() and not args.resume:
        core_info = core_record(json.loads(core_json.read_text()))  # how the core was trained
        history = core_info.pop("history", [])
        meta["core_training"] = core_info
    first_stage = args.core_stages if args.core_from else 0
    history = train_stages(
        model,
        stages,
        first_stage,
        train_images,
        test_images[: args.eval_every_epoch],
        device,
        args.seed,
        name,
        checkpoint_saver(ckpt_path, meta),
        history,
        resumed,
    )

    if stochastic:
        meta["core_from"] = str(args.core_from) if args.core_from else None
    if args.head == "cvae":
        latent_recipe = LATENT.with_overrides(epochs=args.latent_epochs, free_bits=args.free_bits)
        cut = args.eval_every_epoch
        meta["latent_recipe"] = latent_recipe.to_dict()
        meta["latent_history"] = train_latent(
            model, train_images, test_images[:cut].to(device), latent_recipe, args.seed, name
        )
    if args.head == "flow":
        flow_recipes = {
            "real rows": FLOW.with_overrides(epochs=args.flow_epochs),
            "own draws": FLOW_OWN.with_overrides(epochs=args.flow_own_epochs),
        }
        meta["flow_recipes"] = {reads: r.to_dict() for reads, r in flow_recipes.items()}
        train_labels = train.labels[: args.limit_train].to(device)  # the class the head holds
        if config.flow_classes:
            meta["kind_probe"] = fit_kind_probe(model, train_images, train_labels, args.seed)
            print(f"{name} kind probe: {meta['kind_probe']['kind_probe_accuracy']:.3f} accurate")
        states = frozen_states(model, train_images)  # the core's, on real rows: both recipes'
        meta["flow_history"] = [
            {"reads": reads, **epoch}
            for reads, flow_recipe in flow_recipes.items()
            if flow_recipe.epochs
            for epoch in train_flow(
                model, train_images, flow_recipe, args.seed, name, states, train_labels
            )
        ]
        if args.rollout_epochs:
            rollout_recipe = FLOW_ROLLOUT.with_overrides(epochs=args.rollout_epochs)
            meta["rollout_recipe"] = rollout_recipe.to_dict()
            meta["rollout_history"] = train_rollout(
                model, train_images, rollout_recipe, args.seed, name, train_labels
            )
    metrics = evaluate(model, test_images, device)  # the whole test split, once
    if args.head == "cvae":
        metrics.update(test_bits(model, test_images.to(device)))
    write_outputs(
        model.cpu(),
        args.runs / name,
        {**meta, "metrics": metrics},
        history,
        recipe,
        test_images,
        test_labels.numpy(),
        args.dataset,
    )
    sampler_history = [
        *([meta["kind_probe"]] if "kind_probe" in meta else []),
        *meta.get("latent_history", []),
        *meta.get("flow_history", []),
        *meta.get("rollout_history", []),
    ]
    sampler = sum(h["seconds"] + h.get("prepare_seconds", 0.0) for h in sampler_history)
    total = sum(h["seconds"] for h in history) + sampler
    print(
        f"trained {name} on {args.dataset} in {total / 60:.1f} min"
        + (f" (sampling head {sampler / 60:.1f} min)" if sampler_history else "")
        + f" on a host doing {meta['host_gflops']:.0f} GFLOP/s (`make bench`'s square matmul): "
        + ", ".join(f"{k} {metrics[f'test_mse_k{k}']:.4f}" for k in contract.EVAL_KNOWN_ROWS)
        + f" -> {args.runs / name} (publish it with `make export`)"
    )
    return 0


def core_record(record: dict) -> dict:
    """A run's training record as the record of its core alone, at every level of core_training:
    without its sampling head's recipes and history, which a model trained on that core does not
    inherit (it trains a head of its own)."""
    kept = {key: value for key, value in record.items() if key not in SAMPLER_RECORDS}
    if isinstance(kept.get("core_training"), dict):
        kept["core_training"] = core_record(kept["core_training"])
    return kept


def write_outputs(
    model: RowGenerator,
    out: Path,
    meta: dict,
    history: list[dict],
    recipe: Recipe,
    test_images: torch.Tensor,
    test_labels,
    dataset: str,
) -> None:
    """Weights, training.json (meta holds the final metrics) and the two PNGs, into the run."""
    out.mkdir(parents=True, exist_ok=True)
    checkpoint.save_weights(model, out / contract.WEIGHTS)
    summary = {
        **meta,
        "train_seconds": sum(h["seconds"] for h in history),
        "history": history,
    }
    (out / TRAINING_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    title = f"{meta['name']} on {dataset}"
    if history:
        plots.loss_curve(history, out / LOSS_PNG, recipe.free_run_from, title)
    picks = plots.sample_indices(test_labels)
    originals = test_images[picks]
    done = complete(model.eval(), originals, torch.full((len(picks),), 14))
    names = [CLASS_NAMES[dataset][int(test_labels[i])] for i in picks]
    plots.save_grid(
        originals.numpy(),
        done.numpy(),
        14,
        names,
        out / GRID_PNG,
        title=f"{title}: rows 14-27 generated from rows 0-13",
    )


if __name__ == "__main__":
    sys.exit(main())
