"""Driving a `step` program row by row from numpy: the contract's generation rule in one place.

Torch-free. Export checks `complete.onnx` against it, and the server streams completions with it.
`step_fn(row, *state) -> (next_row, *state)` is any runtime's step: onnxruntime, TorchScript, ...
A `sample_step` program takes more inputs per call (`row_inputs`): this row's noise and the
temperature, and for a head that holds a class `row_known` (1 where the row it reads is known),
with `kind` carried as state beside `h`; it is driven the same way: `sample_by_steps` equals
`sample.onnx`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from rowgen import contract
from rowgen.config import ModelConfig

StepFn = Callable[..., Sequence[np.ndarray]]


def zero_state(
    config: ModelConfig, batch: int, program: str = contract.STEP_ONNX
) -> list[np.ndarray]:
    """All-zero state ("top of the image") shaped as a stateful program's state inputs."""
    specs = contract.state_inputs(config, program)
    return [
        np.zeros([batch if d == contract.BATCH else d for d in s.shape], np.float32) for s in specs
    ]


def clamp_known_rows(known_rows: np.ndarray) -> np.ndarray:
    return np.clip(known_rows.astype(np.int64), contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX)


def iter_rows(
    step_fn: StepFn,
    config: ModelConfig,
    image: np.ndarray,
    known_rows: np.ndarray,
    row_inputs: Callable[[int, np.ndarray], Sequence[np.ndarray]] = lambda t, known: (),
    program: str = contract.STEP_ONNX,
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (r, row r of the completion) for r = 0..27: known rows copied, the rest generated.

    image (B, 28, 28) float32, known_rows (B,) int; each yielded row is (B, 28).
    row_inputs(t, known): inputs given after the state to the call that receives row t, known
    (B,) bool saying which images' row t is known. program: whose state to start from zeros.
    """
    k = clamp_known_rows(np.asarray(known_rows))[:, None]  # (B, 1)
    state = zero_state(config, image.shape[0], program)
    row = image[:, 0]
    yield 0, row
    for t in range(contract.IMAGE_SIZE - 1):  # the call receiving row t predicts row t + 1
        next_row, *state = step_fn(row, *state, *row_inputs(t, k[:, 0] > t))
        row = np.where(k > t + 1, image[:, t + 1], next_row).astype(np.float32)
        yield t + 1, row


def complete_by_steps(
    step_fn: StepFn, config: ModelConfig, image: np.ndarray, known_rows: np.ndarray
) -> np.ndarray:
    """The whole completion (B, 28, 28) by calling `step_fn` 27 times."""
    return np.stack([row for _, row in iter_rows(step_fn, config, image, known_rows)], axis=1)


def sample_inputs_for_row(
    config: ModelConfig, noise: np.ndarray, temperature: np.ndarray
) -> Callable[[int, np.ndarray], tuple[np.ndarray, ...]]:
    """row_inputs of a sample_step program: (row_known (B,) 1.0/0.0, for a head that holds a
    class), noise (B, 27, D) slice t and temperature (B,)."""
    noise = np.asarray(noise, np.float32)
    temperature = np.asarray(temperature, np.float32)

    def inputs(t: int, known: np.ndarray) -> tuple[np.ndarray, ...]:
        flag = (known.astype(np.float32),) if config.holds_kind else ()
        return (*flag, np.ascontiguousarray(noise[:, t]), temperature)

    return inputs


def sample_by_steps(
    step_fn: StepFn,
    config: ModelConfig,
    image: np.ndarray,
    known_rows: np.ndarray,
    noise: np.ndarray,
    temperature: np.ndarray,
) -> np.ndarray:
    """A sampled completion (B, 28, 28) by calling a sample_step program 27 times."""
    inputs = sample_inputs_for_row(config, noise, temperature)
    rows = iter_rows(step_fn, config, image, known_rows, inputs, contract.SAMPLE_STEP_ONNX)
    return np.stack([row for _, row in rows], axis=1)
