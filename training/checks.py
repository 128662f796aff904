"""Checks of training flags and input files: each problem is one line that names the fix.

Used by `python -m training.train`, which prints the message and exits with status 2 instead of
a traceback: an unusable `--known-rows`, `--epochs 0` and other recipe values, `--resume`
without a checkpoint (or with a damaged or mismatched one), and a bad `--init-from` file.
tests/app/test_fuzz_known_rows.py feeds `parse_known_rows` arbitrary input.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from pathlib import Path

from rowgen import contract
from rowgen.config import ModelConfig
from training import checkpoint
from training.model import RowGenerator
from training.recipe import Recipe

# What torch.load raises on a file that is not a checkpoint: a missing or unreadable file,
# a zip archive it cannot read, a truncated pickle, a refused (non-weights-only) object.
LOAD_ERRORS = (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError)


class UsageError(ValueError):
    """A flag or input file cannot be used; the message says which and what to do."""


def one_line(exc: BaseException, limit: int = 240) -> str:
    """An exception's message on one line (torch's span many), cut to `limit` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_known_rows(values: Sequence[object]) -> tuple[int, int]:
    """`--known-rows LO HI` as whole numbers with 1 <= LO <= HI <= 27, else UsageError."""
    lo, hi = contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX
    fix = f"give two whole numbers LO HI with {lo} <= LO <= HI <= {hi}, e.g. --known-rows 4 24"
    if len(values) != 2:
        raise UsageError(f"--known-rows takes two values, got {len(values)}; {fix}")
    numbers = []
    for value in values:
        try:
            numbers.append(int(str(value).strip()))
        except ValueError:
            raise UsageError(f"--known-rows: {value!r} is not a whole number; {fix}") from None
    first, last = numbers
    if not lo <= first <= last <= hi:
        raise UsageError(f"--known-rows {first} {last} is out of range; {fix}")
    return first, last


def check_recipe(recipe: Recipe) -> None:
    """Values a run cannot train with (argparse checks only that they are numbers)."""
    if recipe.epochs < 1:
        raise UsageError(f"--epochs {recipe.epochs}: a run needs at least 1 epoch")
    if recipe.batch_size < 1:
        raise UsageError(f"--batch-size {recipe.batch_size}: give at least 1")
    if not (math.isfinite(recipe.lr) and recipe.lr > 0):
        raise UsageError(f"--lr {recipe.lr}: give a positive learning rate, e.g. 2e-3")
    if recipe.free_run_from < 0:
        raise UsageError(f"--free-run-from {recipe.free_run_from}: give an epoch >= 0")


def model_config(
    cell: str,
    mode: str,
    hidden: int,
    layers: int,
    head: str = "mse",
    noise_dim: int = 0,
    flow: tuple[int, int, str, int] = (0, 0, "", 0),
) -> ModelConfig:
    """flow: (width, steps, integrator, classes) of a flow head; zeros for the other heads."""
    try:
        return ModelConfig(cell, mode, hidden, layers, head, noise_dim, *flow)
    except ValueError as exc:
        raise UsageError(
            f"{exc}; pass --hidden and --layers of at least 1 (window models train with --head mse)"
        ) from None


def resume_state(
    path: Path, config: ModelConfig, recipe: Recipe, stages: list[dict] | None = None
) -> dict:
    """The checkpoint to continue from, checked to belong to the same flags."""
    if not path.is_file():
        raise UsageError(f"--resume: no checkpoint at {path}; drop --resume to start afresh")
    try:
        state = checkpoint.load_checkpoint(path)
        trained_with = state["config"], state["recipe"], state.get("stages", [])
    except (*LOAD_ERRORS, KeyError, TypeError) as exc:
        raise UsageError(
            f"--resume: {path} is not a readable checkpoint ({one_line(exc)}); "
            "delete it and drop --resume to start afresh"
        ) from None
    if trained_with != (config.to_dict(), recipe.to_dict(), stages or []):
        focus = f"--focus {int(bool(trained_with[2]))}"
        raise UsageError(
            f"--resume: {path} was trained with {trained_with[0]} {trained_with[1]} and "
            f"{len(trained_with[2])} focus stage(s) ({focus}); pass the same flags to resume it"
        )
    return state


def init_from(model: RowGenerator, path: Path) -> None:
    """Load a course notebook state_dict into `model`, or say why the file cannot be used."""
    if not path.is_file():
        raise UsageError(f"--init-from: no file at {path}; pass the course's saved state_dict")
    try:
        checkpoint.load_course_state_dict(model, path)
    except LOAD_ERRORS as exc:
        raise UsageError(
            f"--init-from {path} cannot be used ({one_line(exc)}); pass a state_dict saved from "
            "the course's Net (--cell lstm --mode window --hidden 256 --layers 1)"
        ) from None
