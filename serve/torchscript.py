"""Optional TorchScript backend: a bundle's `complete.ts` / `step.ts` through `torch.jit.load`.

Offered by `python -m serve` only where torch is installed. torch is imported inside
`TorchScriptModel`, never at module level, so the torch-free `serve` install never needs it.
"""

from __future__ import annotations

import importlib
import importlib.util
import io
import warnings
from collections.abc import Iterator

import numpy as np

from rowgen import contract
from rowgen.bundle import Bundle
from rowgen.stepping import iter_rows

TORCHSCRIPT = "torchscript"


def torch_available() -> bool:
    """Whether torch could be imported, without importing it (that takes seconds)."""
    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):  # blocked, or a stub module without a spec
        return False


class TorchScriptModel:
    """The same two programs as the ONNX files, run by TorchScript (state kept as tensors)."""

    backend = TORCHSCRIPT

    def __init__(self, bundle: Bundle, device: str = "auto") -> None:
        torch = importlib.import_module("torch")  # only here: the serve install has no torch

        self._torch = torch
        use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
        self._device = torch.device("cuda" if use_cuda else "cpu")
        self.name, self.config = bundle.name, bundle.config
        with warnings.catch_warnings():  # "torch.jit is deprecated": the bundle still ships .ts
            warnings.simplefilter("ignore", FutureWarning)
            # The bytes open_bundle hashed, not a second open of the path.
            self._complete = self._load(bundle.read(contract.COMPLETE_TS))
            self._step = self._load(bundle.read(contract.STEP_TS))
            self._sample = None
            if bundle.config.stochastic:
                self._sample = self._load(bundle.read(contract.SAMPLE_TS))

    def _load(self, program: bytes):
        return self._torch.jit.load(io.BytesIO(program), map_location=self._device)

    @property
    def providers(self) -> list[str]:
        return [f"torch.jit ({self._device.type})"]

    def _tensor(self, array: np.ndarray, dtype: object):
        return self._torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=self._device)

    def complete(self, image: np.ndarray, known_rows: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            out = self._complete(
                self._tensor(image, torch.float32),
                self._tensor(np.asarray(known_rows).reshape(-1), torch.int64),
            )
        return out.cpu().numpy()

    def sample(
        self, image: np.ndarray, known_rows: np.ndarray, noise: np.ndarray, temperature: np.ndarray
    ) -> np.ndarray:
        """`sample.ts`: the same sampled completion as `sample.onnx` for the same noise."""
        if self._sample is None:
            raise ValueError(
                f"model {self.name!r} has no {contract.SAMPLE_TS}: it only gives the mean"
            )
        torch = self._torch
        with torch.inference_mode():
            out = self._sample(
                self._tensor(image, torch.float32),
                self._tensor(np.asarray(known_rows).reshape(-1), torch.int64),
                self._tensor(noise, torch.float32),
                self._tensor(np.asarray(temperature).reshape(-1), torch.float32),
            )
        return out.cpu().numpy()

    def _step_fn(self, row: np.ndarray, *state: object) -> list:
        """Only `row` crosses to the device and `next_row` back; the state stays a tensor."""
        torch = self._torch
        with torch.inference_mode():
            state_in = [
                self._tensor(s, torch.float32) if isinstance(s, np.ndarray) else s for s in state
            ]
            next_row, *new_state = self._step(self._tensor(row, torch.float32), *state_in)
        return [next_row.cpu().numpy(), *new_state]

    def stream(self, image: np.ndarray, known_rows: np.ndarray) -> Iterator[tuple[int, np.ndarray]]:
        image = np.ascontiguousarray(image, np.float32)
        return iter_rows(self._step_fn, self.config, image, np.asarray(known_rows).reshape(-1))
