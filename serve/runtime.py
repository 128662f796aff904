"""onnxruntime sessions for verified bundles: batched completion and row-by-row streaming.

Torch-free. One `OrtModel` per bundle holds one session per program, shared by every request
(`InferenceSession.run` is thread-safe; an IOBinding is made per call). `ModelSet` is what the
app serves: every bundle under `--artifacts`, plus TorchScript when torch is installed
(`serve.torchscript`). Used by the app (`python -m serve`) and the v2 API (`python -m serve.api`,
and its Ray Serve replicas).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import onnxruntime as ort

from rowgen import contract, sessions
from rowgen.bundle import Bundle, BundleError, find_bundles, open_bundle
from rowgen.config import ModelConfig
from rowgen.stepping import StepFn, iter_rows
from serve.torchscript import TORCHSCRIPT, TorchScriptModel, torch_available

DEVICES = ("auto", "cuda", "cpu")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
ONNXRUNTIME = "onnxruntime"
RANKING_METRIC = "test_mse_k14"  # the manifest metric that picks the default model (lower wins)
log = logging.getLogger(__name__)


Rows = Iterator[tuple[int, np.ndarray]]  # (r, row r of every image (B, 28)) for r = 0..27


class DeviceError(RuntimeError):
    """The requested device cannot be used; the message says what to pass instead."""


class Model(Protocol):
    """What the app needs of a backend: a name, where it runs, the two ways to complete, and
    (stochastic bundles only; ValueError otherwise) sampled completions."""

    name: str
    backend: str
    config: ModelConfig

    @property
    def providers(self) -> list[str]: ...

    def complete(self, image: np.ndarray, known_rows: np.ndarray) -> np.ndarray: ...

    def stream(self, image: np.ndarray, known_rows: np.ndarray) -> Rows: ...

    def sample(
        self, image: np.ndarray, known_rows: np.ndarray, noise: np.ndarray, temperature: np.ndarray
    ) -> np.ndarray: ...


def make_session(model: sessions.Model, device: str) -> ort.InferenceSession:
    """A session on `device` ("auto" tries CUDA then CPU); check `get_providers()` for the truth.

    `get_available_providers()` lists CUDA wherever onnxruntime-gpu is installed, GPU or not, so
    only the session itself says whether CUDA really loaded.
    """
    if device not in DEVICES:
        raise DeviceError(f"unknown device {device!r}: choose one of {', '.join(DEVICES)}")
    if device == "cuda" and (why := sessions.cuda_problem()):
        raise DeviceError(cuda_error(why))
    # Under "auto" a CUDA provider failing to start is the expected fallback, not news; under
    # "cuda" onnxruntime's own log says why before DeviceError does. DEFAULT settings are what
    # bench.speed measured and picked.
    session = sessions.open_session(model, cuda=device != "cpu", quiet=device == "auto")
    if device == "cuda" and not sessions.uses_cuda(session):
        raise DeviceError(cuda_error(sessions.cuda_problem() or sessions.NOT_STARTED))
    return session


def cuda_error(why: str) -> str:
    return f"--device cuda: CUDA cannot be used here: {why}; use --device auto or --device cpu"


def cuda_step_fn(session: ort.InferenceSession, config: ModelConfig) -> StepFn:
    """A step whose recurrent state stays on the GPU: only `row` goes up, `next_row` comes back.

    The state passed between calls is OrtValues on the device (numpy only for the zero state of
    the first call). A fresh IOBinding per call keeps concurrent requests apart.
    """
    ins = [s.name for s in contract.step_inputs(config)]
    outs = [s.name for s in contract.step_outputs(config)]

    def step(row: np.ndarray, *state: np.ndarray | ort.OrtValue) -> list:
        binding = session.io_binding()
        binding.bind_cpu_input(ins[0], np.ascontiguousarray(row, np.float32))
        for name, value in zip(ins[1:], state, strict=True):
            if isinstance(value, np.ndarray):
                value = ort.OrtValue.ortvalue_from_numpy(value, "cuda", 0)
            binding.bind_ortvalue_input(name, value)
        binding.bind_output(outs[0], "cpu")
        for name in outs[1:]:
            binding.bind_output(name, "cuda", 0)
        session.run_with_iobinding(binding)
        next_row, *new_state = binding.get_outputs()
        return [next_row.numpy(), *new_state]

    return step


class OrtModel:
    """A bundle's `step.onnx` and `complete.onnx` in onnxruntime sessions, hashes checked first.

    The other programs (`complete.onnx`, `sample.onnx`, `sample_step.onnx`) are opened on first
    use (or by `warm`, which the server runs in the background): the streaming UI needs only
    `step.onnx`, so start-up does not wait for the larger unrolled graphs of every bundle.
    """

    backend = ONNXRUNTIME

    def __init__(self, path: Path | str, device: str = "auto") -> None:
        self.bundle: Bundle = open_bundle(path)
        self.name = self.bundle.name
        self.config = self.bundle.config
        # The bytes open_bundle hashed, not a second open of the path (rowgen.bundle.Bundle).
        self.step_session = make_session(self.bundle.read(contract.STEP_ONNX), device)
        if device == "auto" and not sessions.uses_cuda(self.step_session):
            device = "cpu"  # CUDA did not load: don't pay for the failed attempt twice
        self.device = device
        self._sessions: dict[str, ort.InferenceSession] = {}  # opened on first use
        self._lock = threading.Lock()
        self._step_in = [s.name for s in contract.step_inputs(self.config)]
        self._step_out = [s.name for s in contract.step_outputs(self.config)]
        self._complete_out = [s.name for s in contract.complete_outputs()]

    def _session(self, program: str) -> ort.InferenceSession:
        if program in contract.SAMPLE_FILES and not self.config.stochastic:
            raise ValueError(f"model {self.name!r} has no {program}: it only gives the mean")
        with self._lock:  # concurrent first callers wait for the one session
            if program not in self._sessions:
                data = self.bundle.read(program)  # the bytes that were hashed
                self._sessions[program] = make_session(data, self.device)
            return self._sessions[program]

    def prepare(self, program: str) -> None:
        """Open `program`'s session now rather than at its first call (`step.onnx` is open
        from the start); ValueError for a sampling program of a bundle that cannot sample."""
        if program != contract.STEP_ONNX:
            self._session(program)

    @property
    def complete_session(self) -> ort.InferenceSession:
        return self._session(contract.COMPLETE_ONNX)

    @property
    def sample_session(self) -> ort.InferenceSession:
        """`sample.onnx`, opened on first use; ValueError for a bundle that cannot sample."""
        return self._session(contract.SAMPLE_ONNX)

    @property
    def sample_step_session(self) -> ort.InferenceSession:
        """`sample_step.onnx`, opened on first use; ValueError for a bundle that cannot sample."""
        return self._session(contract.SAMPLE_STEP_ONNX)

    def sample(
        self, image: np.ndarray, known_rows: np.ndarray, noise: np.ndarray, temperature: np.ndarray
    ) -> np.ndarray:
        """One sampled completion per image: noise (B, 27, noise_dim), temperature (B,)."""
        names = [s.name for s in contract.sample_inputs(self.config.noise_dim)]
        values = (
            np.ascontiguousarray(image, np.float32),
            np.asarray(known_rows, np.int64).reshape(-1),
            np.ascontiguousarray(noise, np.float32),
            np.asarray(temperature, np.float32).reshape(-1),
        )
        return self.sample_session.run(None, dict(zip(names, values, strict=True)))[0]

    def sample_step(self, row: np.ndarray, *inputs: np.ndarray) -> list[np.ndarray]:
        """One `sample_step.onnx` call on host arrays, its inputs in the contract's order: (row,
        *state[, row_known], noise_row, temperature) -> (next_row, *state)."""
        ins, outs = contract.program_specs(contract.SAMPLE_STEP_ONNX, self.config)
        feeds = dict(zip([s.name for s in ins], (row, *inputs), strict=True))
        return self.sample_step_session.run([s.name for s in outs], feeds)

    @property
    def providers(self) -> list[str]:
        """The providers the sessions really use, best first."""
        return self.step_session.get_providers()

    @property
    def on_cuda(self) -> bool:
        return sessions.uses_cuda(self.step_session)

    def complete(self, image: np.ndarray, known_rows: np.ndarray) -> np.ndarray:
        """image (B, 28, 28) float32, known_rows (B,) -> completed (B, 28, 28), one call."""
        image_in, rows_in = (s.name for s in contract.complete_inputs())
        feeds = {
            image_in: np.ascontiguousarray(image, np.float32),
            rows_in: np.asarray(known_rows, np.int64).reshape(-1),
        }
        return self.complete_session.run(self._complete_out, feeds)[0]

    def step(self, row: np.ndarray, *state: np.ndarray) -> list[np.ndarray]:
        """One `step.onnx` call on host arrays: (next_row, *state)."""
        feeds = dict(zip(self._step_in, (row, *state), strict=True))
        return self.step_session.run(self._step_out, feeds)

    def stream(self, image: np.ndarray, known_rows: np.ndarray) -> Rows:
        """The completion row by row through `step.onnx`; equals `complete`."""
        step = cuda_step_fn(self.step_session, self.config) if self.on_cuda else self.step
        image = np.ascontiguousarray(image, np.float32)
        return iter_rows(step, self.config, image, np.asarray(known_rows).reshape(-1))


@dataclass
class ModelSet:
    """Every bundle served, by name, on onnxruntime; TorchScript twins made on first use."""

    models: dict[str, OrtModel]
    device: str = "auto"
    _torchscript: dict[str, Model] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def names(self) -> list[str]:
        return list(self.models)

    @property
    def best(self) -> str:
        """The bundle with the lowest RANKING_METRIC in its manifest; those without it come last."""

        def rank(name: str) -> tuple[bool, float, str]:
            value = (self.models[name].bundle.manifest.get("metrics") or {}).get(RANKING_METRIC)
            scored = isinstance(value, (int, float)) and value == value  # not NaN
            return (not scored, float(value) if scored else 0.0, name)

        return min(self.names, key=rank)

    @property
    def backends(self) -> list[str]:
        return [ONNXRUNTIME, TORCHSCRIPT] if torch_available() else [ONNXRUNTIME]

    @property
    def providers(self) -> list[str]:
        return next(iter(self.models.values())).providers

    def warm(self, names: list[str] | None = None) -> None:
        """Open the `complete.onnx` (and `sample.onnx`) of `names` (default all) now, not at
        the first request, whose time would otherwise include opening the program."""
        for name in self.names if names is None else names:
            _ = self.models[name].complete_session
            if self.models[name].config.stochastic:
                _ = self.models[name].sample_session

    def get(self, name: str, backend: str = ONNXRUNTIME) -> Model:
        """The model `name` on `backend`; KeyError/ValueError name what is available."""
        if name not in self.models:
            raise KeyError(f"unknown model {name!r}: choose one of {', '.join(self.names)}")
        if backend == ONNXRUNTIME:
            return self.models[name]
        if backend not in self.backends:
            raise ValueError(f"backend {backend!r} is not available: use {ONNXRUNTIME!r}")
        with self._lock:  # loading torch and a program takes seconds: do it once per model
            if name not in self._torchscript:
                self._torchscript[name] = TorchScriptModel(self.models[name].bundle, self.device)
            return self._torchscript[name]


def load_models(artifacts: Path | str, device: str = "auto") -> ModelSet:
    """Open every bundle under `artifacts` (hashes first); BundleError if none or one is bad."""
    paths = find_bundles(artifacts)
    if not paths:
        raise BundleError(
            f"no bundles under {artifacts} (a bundle is a folder with {contract.MANIFEST}); "
            "create them with `make train export`, or pass --artifacts"
        )
    models: dict[str, OrtModel] = {}
    for path in paths:
        models[path.name] = model = OrtModel(path, device)
        if device == "auto" and not model.on_cuda:
            device = "cpu"  # found out once: the other bundles go straight to the CPU
            log.warning("rowgen: --device auto runs on the CPU: %s", sessions.cuda_problem())
    return ModelSet(models, device)
