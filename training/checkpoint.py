"""Saving and loading: resumable training checkpoints and the bundle's safetensors weights.

Checkpoints (`runs/<name>/checkpoint.pt`) hold only tensors and plain data, are written to a
temporary file and renamed, and load with `weights_only=True`. Weights carry the model config
in their safetensors metadata so the model can be rebuilt from the file alone.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from rowgen.config import ModelConfig
from training.model import RowGenerator


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
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a state_dict")
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(
            f"{path} does not fit {model.config}: {exc}. The course's Net is "
            "--cell lstm --mode window --hidden 256 --layers 1"
        ) from exc
