"""A rowgen bundle's program on Triton's python backend: onnxruntime, one session per instance.

`python -m export.triton` copies this file to `<model>/1/model.py` of the python-backend
repository, beside `<model>/1/<bundle>/` (the bundle's files, opened with rowgen's verified
loader). Triton's python stub runs it in the environment of `make triton-env` (numpy 1.26,
onnxruntime, rowgen's torch-free core); `make triton-serve` starts Triton on the repository.

- `<bundle>` (complete.onnx) and `<bundle>_sample` (sample.onnx): the dynamic batcher hands
  `execute` several requests at once; their images go through onnxruntime in one call.
- `<bundle>_step` (step.onnx) and `<bundle>_sample_step` (sample_step.onnx): the sequence
  batcher. The python backend gets no implicit state, so `Sequences` keeps each sequence's
  recurrent state by correlation ID: zeros at its START, dropped at its END or once it has gone
  unused for the batcher's idle timeout. Triton's sequence batcher keeps a sequence on one model
  instance, so per-instance state is enough.

A request that breaks the contract (NaN or infinite values, pixels outside [0, 1], known_rows
outside 1..27, noise beyond ±10, a temperature outside 0..2, a row_known neither 0 nor 1, a
sequence with no state) gets INVALID_ARG (HTTP 400, gRPC INVALID_ARGUMENT) naming the tensor;
the other requests of its batch are served.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from rowgen import contract, sessions
from rowgen.bundle import find_bundles, open_bundle
from rowgen.sampling import MAX_TEMPERATURE, NOISE_LIMIT
from rowgen.stepping import zero_state

START = pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START
END = pb_utils.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END
KNOWN_ROWS = contract.complete_inputs()[1].name
TEMPERATURE = contract.sample_inputs(1)[-1].name
ROW_KNOWN = contract.ROW_KNOWN
State = list[np.ndarray]


class SequenceError(ValueError):
    """A step request whose sequence has no state here; the message says what to send."""


class Sequences:
    """Recurrent state by correlation ID: zeros at a sequence's START, dropped at its END or
    once unused for `idle_s` (the sequence batcher frees its slot then too)."""

    def __init__(self, zero: Callable[[int], State], idle_s: float) -> None:
        self.zero = zero
        self.idle_s = idle_s
        self._held: dict[Hashable, tuple[State, float]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def expire(self, now: float, keep: set[Hashable]) -> None:
        """Drop the state of every sequence idle longer than `idle_s`, except those in `keep`
        (the current batch: Triton still held their slots, so they are alive)."""
        idle = [k for k, (_, used) in self._held.items() if now - used > self.idle_s]
        for key in idle:
            if key not in keep:
                del self._held[key]

    def state(self, sequence: Hashable, start: bool, batch: int) -> State:
        """The state a request of `batch` rows continues from."""
        if start:
            return self.zero(batch)
        if sequence not in self._held:
            raise SequenceError(
                f"sequence {sequence!r} has no state here: send its first request with "
                f"sequence_start, and keep it busy (idle for {self.idle_s:g} s, it is freed)"
            )
        state, _ = self._held[sequence]
        if state[0].shape[0] != batch:
            raise SequenceError(
                f"sequence {sequence!r} started with {state[0].shape[0]} rows per request, "
                f"this request has {batch}: keep one batch size per sequence"
            )
        return state

    def update(self, sequence: Hashable, state: State, end: bool, now: float) -> None:
        if end:
            self._held.pop(sequence, None)
        else:
            self._held[sequence] = (state, now)


def _outside(array: np.ndarray, low: float, high: float) -> bool:
    return bool(((array < low) | (array > high)).any())


def _problem(arrays: dict[str, np.ndarray], pixels: str, noise: str | None) -> str | None:
    """What is wrong with one request's tensors (Triton checked names, datatypes and shapes);
    `noise` names the standard normal input of a sampling program."""
    image = arrays[pixels]
    if image.size == 0:
        return "the batch is empty: send at least one image"
    for name, array in arrays.items():
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            return f"input {name!r} has NaN or infinite values"
    if _outside(image, 0, 1):
        return (
            f"input {pixels!r} has values in [{image.min():.3g}, {image.max():.3g}]; pixels "
            "must be in [0, 1] (0 background, 1 object: divide 8-bit pixels by 255)"
        )
    low, high = contract.KNOWN_ROWS_MIN, contract.KNOWN_ROWS_MAX
    if KNOWN_ROWS in arrays and _outside(arrays[KNOWN_ROWS], low, high):
        return f"input {KNOWN_ROWS!r} must be in {low}..{high} for every image"
    if noise is not None and _outside(arrays[noise], -NOISE_LIMIT, NOISE_LIMIT):
        return (
            f"input {noise!r} holds standard normal draws, each within ±{NOISE_LIMIT:g} "
            "(scale the spread with temperature)"
        )
    if TEMPERATURE in arrays and _outside(arrays[TEMPERATURE], 0, MAX_TEMPERATURE):
        return f"input {TEMPERATURE!r} must be in 0..{MAX_TEMPERATURE:g} for every image"
    known = arrays.get(ROW_KNOWN)
    if known is not None and ((known != 0) & (known != 1)).any():
        return (
            f"input {ROW_KNOWN!r} must be 1 (the row sent is a known row) or 0 (a row the model "
            "drew) for every image"
        )
    return None


def _error(message: str):
    return pb_utils.InferenceResponse(
        error=pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    )


class TritonPythonModel:
    """Triton's python-backend interface: `initialize`, then `execute` per batch of requests."""

    def initialize(self, args: dict) -> None:
        name = args["model_name"]
        version = Path(args["model_repository"]) / args["model_version"]
        found = find_bundles(version)
        if len(found) != 1:
            raise RuntimeError(f"{version}: {len(found)} bundle folders; `make triton` writes one")
        bundle = open_bundle(found[0])  # BundleError names the altered file: the load fails
        program = contract.serving_names(bundle.name, bundle.config).get(name)
        if program is None:
            raise RuntimeError(f"bundle {bundle.name!r} serves no model {name!r}")
        ins, outs = contract.program_specs(program, bundle.config)
        stateful = program in contract.STATEFUL_PROGRAMS
        pairs = contract.state_pairs(bundle.config, program) if stateful else []
        self.state_in, self.state_out = [i for i, _ in pairs], [o for _, o in pairs]
        # The request's tensors: all but the state, which the model keeps (Sequences).
        self.inputs = [s for s in ins if s.name not in self.state_in]
        self.outputs = [s for s in outs if s.name not in self.state_out]
        self.feeds = [s.name for s in ins]
        self.fetches = [s.name for s in self.outputs] + self.state_out
        names = [s.name for s in self.inputs]
        # Both sampling programs take their noise just before the temperature (the contract).
        self.noise = names[names.index(TEMPERATURE) - 1] if TEMPERATURE in names else None
        self.session = sessions.open_session(bundle.read(program))  # CPU, bench.speed's pick
        self.sequences = None
        if pairs:
            batcher = json.loads(args["model_config"])["sequence_batching"]
            idle_s = int(batcher["max_sequence_idle_microseconds"]) / 1e6

            def zero(batch: int) -> State:
                return zero_state(bundle.config, batch, program)

            self.sequences = Sequences(zero, idle_s)

    def execute(self, requests: list) -> list:
        now = time.monotonic()
        if self.sequences is not None:
            self.sequences.expire(now, {r.correlation_id() for r in requests})
        responses: list = [None] * len(requests)
        accepted: list[tuple[int, dict[str, np.ndarray]]] = []
        for i, request in enumerate(requests):
            feeds = {
                s.name: pb_utils.get_input_tensor_by_name(request, s.name).as_numpy()
                for s in self.inputs
            }
            problem = _problem(feeds, self.inputs[0].name, self.noise)
            if self.sequences is not None:
                sequence, start = request.correlation_id(), bool(request.flags() & START)
                if problem is not None and start:  # a refused START: nothing to continue from
                    self.sequences.update(sequence, [], end=True, now=now)
                elif problem is None:
                    batch = len(feeds[self.inputs[0].name])
                    try:
                        state = self.sequences.state(sequence, start, batch)
                        feeds |= dict(zip(self.state_in, state, strict=True))
                    except SequenceError as exc:
                        problem = str(exc)
            if problem is None:
                accepted.append((i, feeds))
            else:
                responses[i] = _error(problem)
        if accepted:
            self._run(requests, accepted, responses, now)
        return responses

    def _run(self, requests: list, accepted: list, responses: list, now: float) -> None:
        """One onnxruntime call for every accepted request, its answers split back out."""
        batch = {
            name: np.concatenate([feeds[name] for _, feeds in accepted]) for name in self.feeds
        }
        results = self.session.run(self.fetches, batch)
        first = self.inputs[0].name
        edges = np.cumsum([len(feeds[first]) for _, feeds in accepted])[:-1]
        split = [np.split(result, edges) for result in results]  # [output][request]
        answers = len(self.outputs)
        for j, (i, _) in enumerate(accepted):
            parts = [np.ascontiguousarray(s[j]) for s in split]
            tensors = [
                pb_utils.Tensor(spec.name, part)
                for spec, part in zip(self.outputs, parts[:answers], strict=True)
            ]
            responses[i] = pb_utils.InferenceResponse(output_tensors=tensors)
            state = parts[answers:]
            if self.sequences is not None:
                end = bool(requests[i].flags() & END)
                self.sequences.update(requests[i].correlation_id(), state, end, now)
