"""Timing, FLOP counting and the matmul roofline used by `python -m bench.speed`.

What the FLOP counts include is FLOPS_NOTE, which the report prints.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch

from rowgen import contract
from rowgen.config import ModelConfig

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
FLOPS_NOTE = (
    "counted from the model shape, 2 per multiply-add, matrix products only: every recurrent "
    "step's gate product [x, h] (in + H) x G*H (G = 4 LSTM, 3 GRU, 1 RNN; layers above the "
    "first read H inputs) and the head H x 28, times the steps run (27 per image for the "
    "programs, which predict known rows too; 14 window steps per generated row for the course "
    "loop). Biases, activations and row copies are left out: O(H) per step against O(H^2)."
)


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median and 90th percentile of `runs` timed calls."""

    median_s: float
    p90_s: float
    runs: int

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def time_call(fn: Callable[[], object], warmup: int, repeats: int) -> Timing:
    """Call `fn` `warmup` times untimed, then time `repeats` calls one by one."""
    return time_in_turns({"": fn}, warmup, repeats, passes=1)[""]


def time_in_turns(
    calls: Mapping[str, Callable[[], object]], warmup: int, repeats: int, passes: int
) -> dict[str, Timing]:
    """Time several calls in `passes` passes; in each, every call in turn gets a block of
    `warmup` untimed and `repeats` timed runs. Each Timing covers all its passes.

    A shared machine's speed drifts over minutes (its neighbours' load); taking turns spreads
    every call's runs over the same span, so drift hits all alike and their ratios, which the
    targets are, hold. Blocks rather than single calls in rotation, because torch's and
    onnxruntime's idle threads spin for a while after a call and would slow whichever runs next:
    the warm-up runs absorb that.
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(max(passes, 1)):
        for name, fn in calls.items():
            for _ in range(warmup):
                fn()
            for _ in range(max(repeats, 1)):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return {name: _timing(found) for name, found in times.items()}


def _timing(times: list[float]) -> Timing:
    times = sorted(times)
    p90 = times[min(len(times) - 1, round(0.9 * (len(times) - 1)))]
    return Timing(statistics.median(times), p90, len(times))


def cell_macs(config: ModelConfig) -> int:
    """Multiply-adds of one recurrent step through every layer (no head)."""
    g, h, size = GATES[config.cell], config.hidden, contract.IMAGE_SIZE
    return sum(((size if layer == 0 else h) + h) * g * h for layer in range(config.layers))


def head_macs(config: ModelConfig) -> int:
    return config.hidden * contract.IMAGE_SIZE


def program_flops(config: ModelConfig) -> int:
    """FLOPs of one image through `complete` (eager, TorchScript, ONNX, or 27 step calls).

    All 27 steps run whatever known_rows is (rows that are known are predicted too, then
    replaced), so the count does not depend on it. A window-mode step re-reads 14 rows.
    """
    reads = contract.WINDOW if config.mode == "window" else 1
    steps = contract.IMAGE_SIZE - 1
    return 2 * steps * (reads * cell_macs(config) + head_macs(config))


def sample_flops(config: ModelConfig) -> int:
    """FLOPs of one image through `sample.onnx` of a flow head: the recurrent steps, then per row
    the conditioning (state and row above) and `flow_steps` evaluations of its 3-layer field."""
    size, width = contract.IMAGE_SIZE, config.flow_width
    field = size * width + width * width + width * size
    per_row = (config.hidden + size) * width + config.flow_steps * field
    return 2 * (contract.IMAGE_SIZE - 1) * (cell_macs(config) + per_row)


def course_flops(config: ModelConfig, known_rows: int) -> int:
    """FLOPs of the course's loop for one image: a 14-row window per generated row only."""
    generated = contract.IMAGE_SIZE - known_rows
    return 2 * generated * (contract.WINDOW * cell_macs(config) + head_macs(config))


def matmul_gflops(m: int, k: int, n: int, warmup: int, repeats: int) -> dict[str, object]:
    """fp32 (m, k) @ (k, n) with torch on CPU, at the current torch thread count."""
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(m, k, generator=gen)
    b = torch.rand(k, n, generator=gen)
    out = torch.empty(m, n)
    timing = time_call(lambda: torch.matmul(a, b, out=out), warmup, repeats)
    return {
        "shape": [m, k, n],
        "gflops": 2 * m * k * n / timing.median_s / 1e9,
        "timing": timing.to_dict(),
    }


def roofline(
    config: ModelConfig, batch: int, square: int, warmup: int, repeats: int
) -> dict[str, dict]:
    """The machine's own fp32 matmul rate: one product the size of the batched step's gate
    product, and a big square one (closer to the peak)."""
    g, h, size = GATES[config.cell], config.hidden, contract.IMAGE_SIZE
    return {
        "step_sized": matmul_gflops(batch, size + h, g * h, warmup, repeats),
        "square": matmul_gflops(square, square, square, warmup, max(repeats // 4, 3)),
    }
