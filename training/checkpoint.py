"""Saving and loading: resumable training checkpoints and the bundle's safetensors weights.

Checkpoints (`runs/<name>/checkpoint.pt`) hold only tensors and plain data, are written to a
temporary file and renamed, and load with `weights_only=True`. Weights carry the model config
in their safetensors metadata so the model can be rebuilt from the file alone.
"""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from rowgen.config import ModelConfig
from training.model import RowGenerator

# What `python -m training.train` writes beside the checkpoint in runs/<name>/, and export copies.
TRAINING_JSON = "training.json"
LOSS_PNG = "loss.png"
GRID_PNG = "completions.png"


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a sibling temp file, then rename: a kill never leaves half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}: nothing to resume (drop --resume)")
    return torch.load(path, map_location="cpu", weights_only=True)


def save_weights(model: RowGenerator, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata={"config": json.dumps(model.config.to_dict())})
    tmp.chmod(0o644)
    os.replace(tmp, path)


def load_weights(path: Path) -> RowGenerator:
    """Rebuild a model from `weights.safetensors` (config from the file's metadata)."""
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        config = ModelConfig.from_dict(json.loads(meta["config"]))
        state = load_file(str(path))
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"no weights at {path}: train first (`make train`)") from exc
    except (SafetensorError, KeyError, ValueError) as exc:
        raise ValueError(f"{path} is not a rowgen weights file ({exc})") from exc
    model = RowGenerator(config)
    model.load_state_dict(state)
    return model.eval()


SAVE_WEIGHTS_HINT = "in the notebook, save the weights: torch.save(net.state_dict(), 'net.pth')"
COURSE_FLAGS = "--cell lstm --mode window --hidden 256 --layers 1"


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state_dict saved with torch.save, loaded without running pickled code.

    weights_only=True refuses anything but tensors and plain data, so a whole pickled model
    (`torch.save(net)`) or a file torch never wrote is a ValueError saying which and what to do.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no file at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(exc))
        if found:
            raise ValueError(
                f"{path} holds a pickled {found.group(1)} object (a whole model saved with "
                f"torch.save(net)?), which is not loaded because unpickling runs its code; "
                f"{SAVE_WEIGHTS_HINT}"
            ) from None
        raise ValueError(f"{path} is not a file saved by torch.save; {SAVE_WEIGHTS_HINT}") from None
    except (RuntimeError, OSError, EOFError, KeyError, ValueError) as exc:
        raise ValueError(
            f"{path} is not a file saved by torch.save, or is truncated "
            f"({type(exc).__name__}); {SAVE_WEIGHTS_HINT}"
        ) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"{path} holds a {type(state).__name__}, not a state_dict of tensors; "
            f"{SAVE_WEIGHTS_HINT}"
        )
    return state


def state_dict_mismatch(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> list[str]:
    """Every key missing, unexpected or of another shape, as `key: file (..), expected (..)`."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    problems = [f"{k}: missing from the file, expected {want[k]}" for k in want if k not in got]
    problems += [f"{k}: in the file {got[k]}, not in the model" for k in got if k not in want]
    problems += [
        f"{k}: file {got[k]}, expected {want[k]}" for k in want if k in got and got[k] != want[k]
    ]
    return problems


def load_core(model: RowGenerator, path: Path) -> None:
    """Load the recurrent core and mean head of a trained MSE model of the same size."""
    trained = load_weights(path)
    fields = ("cell", "mode", "hidden", "layers")
    have, want = (tuple(getattr(c, f) for f in fields) for c in (trained.config, model.config))
    if have != want:
        found, needed = (dict(zip(fields, v, strict=True)) for v in (have, want))
        raise ValueError(
            f"{path} holds a core {found}, not {needed}; pass --cell/--hidden/--layers matching it"
        )
    model.rnn.load_state_dict(trained.rnn.state_dict())
    model.fc.load_state_dict(trained.fc.state_dict())


def load_course_state_dict(model: RowGenerator, path: Path) -> None:
    """Load a state_dict saved from the course notebook's `Net` (keys rnn.*, fc.*)."""
    state = read_state_dict(path)
    problems = state_dict_mismatch(model, state)
    if problems:
        raise ValueError(
            f"{path} does not fit {model.config}: {'; '.join(problems)}. "
            f"The course's Net is {COURSE_FLAGS}"
        )
    model.load_state_dict(state, strict=True)
