"""The ways of completing images that `python -m bench.speed` times, all with one signature.

Each runner takes numpy in and gives numpy out, image (B, 28, 28) float32 and known_rows (B,)
int64 -> completed (B, 28, 28), so every row of the table pays the same conversions. GPU runners
copy to and from the device inside the call, and the copy back waits for the GPU.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort
import torch

from bench import measure
from export.writers import quiet_exporters
from rowgen import contract, sessions
from rowgen.bundle import Bundle
from rowgen.config import ModelConfig
from rowgen.sampling import draw_noise
from rowgen.stepping import complete_by_steps
from training.model import RowGenerator, complete

Runner = Callable[[np.ndarray, np.ndarray], np.ndarray]

COURSE = "course loop (window LSTM, eager, 1 image at a time)"
EAGER = "eager PyTorch (batched)"
TORCHSCRIPT = "TorchScript complete.ts"
ORT_COMPLETE = "onnxruntime complete.onnx"
ORT_STEP = "onnxruntime step.onnx from Python"
ORT_SAMPLE = "onnxruntime sample.onnx (temperature 1)"


@dataclass(frozen=True)
class Candidate:
    """One row of the benchmark: a runner, its FLOPs per image at known_rows k, or why not."""

    name: str
    run: Runner | None
    flops: Callable[[int], int]
    skip: str = ""
    one_at_a_time: bool = False  # cost grows linearly with batch: the sweep stops early


def course_loop(net: RowGenerator) -> Runner:
    """The course notebook's generation loop, image by image, the window re-read for every row.

    `gen` holds 14 zero rows above the image, so the window that predicts image row r is
    gen[:, r : r + 14] and its result goes to gen[:, 14 + r], as in the course
    (`y = net(gen[:, i:i+14]); gen[:, 14+i] = y[0]`); with 14 known rows these are its indices.
    """
    w = contract.WINDOW

    @torch.no_grad()
    def run(image: np.ndarray, known_rows: np.ndarray) -> np.ndarray:
        out = np.empty_like(image)
        for b in range(image.shape[0]):
            k = int(known_rows[b])
            gen = torch.zeros(1, w + contract.IMAGE_SIZE, contract.IMAGE_SIZE)  # (1, 42, 28)
            gen[0, w : w + k] = torch.from_numpy(image[b, :k])
            for i in range(k, contract.IMAGE_SIZE):
                y = net.predict_window(gen[:, i : i + w])  # (1, 28)
                gen[:, w + i] = y[0]
            out[b] = gen[0, w:].numpy()
        return out

    return run


def torch_runner(program: Callable, device: str) -> Runner:
    """`program(image, known_rows)` on torch tensors, run from numpy on `device`."""

    @torch.no_grad()
    def run(image: np.ndarray, known_rows: np.ndarray) -> np.ndarray:
        image_t = torch.from_numpy(image).to(device)
        known_t = torch.from_numpy(known_rows).to(device)
        return program(image_t, known_t).cpu().numpy()

    return run


def ort_complete(session: ort.InferenceSession) -> Runner:
    def run(image: np.ndarray, known_rows: np.ndarray) -> np.ndarray:
        return session.run(None, {"image": image, "known_rows": known_rows})[0]

    return run


def ort_sample(session: ort.InferenceSession, bundle: Bundle) -> Runner:
    """sample.onnx with fixed noise (seed 0): its cost does not depend on the draw."""
    names = [s.name for s in contract.sample_inputs(bundle.config.noise_dim)]

    def run(image: np.ndarray, known_rows: np.ndarray) -> np.ndarray:
        noise = draw_noise(0, len(image), bundle.config.noise_dim)
        values = (image, known_rows, noise, np.ones(len(image), np.float32))
        return session.run(None, dict(zip(names, values, strict=True)))[0]

    return run


def ort_steps(session: ort.InferenceSession, bundle: Bundle) -> Runner:
    in_names = [s.name for s in contract.step_inputs(bundle.config)]
    out_names = [s.name for s in contract.step_outputs(bundle.config)]

    def step(row: np.ndarray, *state: np.ndarray) -> list[np.ndarray]:
        return session.run(out_names, dict(zip(in_names, (row, *state), strict=True)))

    def run(image: np.ndarray, known_rows: np.ndarray) -> np.ndarray:
        return complete_by_steps(step, bundle.config, image, known_rows)

    return run


def load_torchscript(bundle: Bundle, device: str) -> torch.jit.ScriptModule:
    with quiet_exporters():
        return torch.jit.load(io.BytesIO(bundle.read(contract.COMPLETE_TS)), map_location=device)


def _program_flops(config: ModelConfig) -> Callable[[int], int]:
    per_image = measure.program_flops(config)

    def flops(known_rows: int) -> int:
        return per_image  # the programs run all 27 steps whatever known_rows is

    return flops


def cpu_candidates(
    bundle: Bundle, model: RowGenerator, window_net: RowGenerator, settings: sessions.OrtSettings
) -> list[Candidate]:
    """The course's loop (the anchor), then the bundle's model four ways, all on CPU, and a
    flow bundle's sample.onnx."""
    flops = _program_flops(bundle.config)

    def course(known_rows: int) -> int:
        return measure.course_flops(window_net.config, known_rows)

    ts = load_torchscript(bundle, "cpu")
    done = sessions.open_session(bundle.read(contract.COMPLETE_ONNX), settings)
    step = sessions.open_session(bundle.read(contract.STEP_ONNX), settings)
    found = [
        Candidate(COURSE, course_loop(window_net), course, one_at_a_time=True),
        Candidate(EAGER, torch_runner(lambda i, k: complete(model, i, k), "cpu"), flops),
        Candidate(TORCHSCRIPT, torch_runner(ts, "cpu"), flops),
        Candidate(ORT_COMPLETE, ort_complete(done), flops),
        Candidate(ORT_STEP, ort_steps(step, bundle), flops),
    ]
    if bundle.config.head == "flow":  # the sampled completion, beside the mean's programs
        drawn = sessions.open_session(bundle.read(contract.SAMPLE_ONNX), settings)
        count = measure.sample_flops(bundle.config)
        found.append(Candidate(ORT_SAMPLE, ort_sample(drawn, bundle), lambda k: count))
    return found


def _checked(name: str, make: Callable[[], Runner], flops: Callable[[int], int]) -> Candidate:
    """Build the runner and try one small call, so a runtime that cannot run here is a skipped
    row with its reason, not a crash."""
    image = np.zeros((2, contract.IMAGE_SIZE, contract.IMAGE_SIZE), np.float32)
    try:
        run = make()
        run(image, np.array([14, 14], np.int64))
    except Exception as exc:  # any runtime's error: the row is skipped with its first line
        return Candidate(name, None, flops, skip=f"failed on the GPU: {str(exc).splitlines()[0]}")
    return Candidate(name, run, flops)


def cuda_candidates(
    bundle: Bundle, model: RowGenerator, settings: sessions.OrtSettings
) -> list[Candidate]:
    """Eager, TorchScript and onnxruntime on CUDA, or the same rows skipped with the reason."""
    flops = _program_flops(bundle.config)
    names = [f"{EAGER} CUDA", f"{TORCHSCRIPT} CUDA"]
    if torch.cuda.is_available():
        gpu = copy.deepcopy(model).to("cuda")

        def eager() -> Runner:
            return torch_runner(lambda i, k: complete(gpu, i, k), "cuda")

        def script() -> Runner:
            return torch_runner(load_torchscript(bundle, "cuda"), "cuda")

        found = [_checked(names[0], eager, flops), _checked(names[1], script, flops)]
    else:
        reason = "torch.cuda.is_available() is False: no CUDA device"
        found = [Candidate(n, None, flops, skip=reason) for n in names]
    name = f"{ORT_COMPLETE} CUDA"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        reason = "this onnxruntime build has no CUDAExecutionProvider (install onnxruntime-gpu)"
        return [*found, Candidate(name, None, flops, skip=reason)]
    session = sessions.open_session(bundle.read(contract.COMPLETE_ONNX), settings, cuda=True)
    if not sessions.uses_cuda(session):  # listed as available is no proof: the libraries load now
        reason = f"CUDAExecutionProvider not in the session's providers {session.get_providers()}"
        return [*found, Candidate(name, None, flops, skip=reason)]
    return [*found, _checked(name, lambda: ort_complete(session), flops)]
