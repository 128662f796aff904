"""CUDA parity: the shipped bundles run on a GPU as they do on the CPU (skipped without one).

Eager PyTorch and TorchScript on CUDA are compared with onnxruntime on the CPU, the reference
runtime of the export checks; TF32 is switched off so the GPU computes in full fp32.
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from rowgen import contract
from rowgen.bundle import open_bundle
from tests.conftest import ARTIFACTS
from training.checkpoint import load_weights
from training.latent import sample
from training.model import complete

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"),
]


@pytest.fixture(autouse=True)
def full_fp32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


@pytest.mark.parametrize("name", ["lstm"])
def test_cuda_completion_matches_onnxruntime_cpu(name: str) -> None:
    bundle = open_bundle(ARTIFACTS / name)
    model = load_weights(bundle.file(contract.WEIGHTS)).cuda()
    image = torch.rand(64, 28, 28, generator=torch.Generator().manual_seed(0))
    known = torch.tensor([1, 7, 14, 27] * 16)
    cpu = ort.InferenceSession(
        str(bundle.file(contract.COMPLETE_ONNX)), providers=["CPUExecutionProvider"]
    )
    want = cpu.run(None, {"image": image.numpy(), "known_rows": known.numpy()})[0]
    eager = complete(model, image.cuda(), known.cuda()).cpu().numpy()
    assert np.abs(eager - want).max() <= contract.COMPLETE_TOLERANCE, "eager CUDA vs ORT CPU"
    scripted = torch.jit.load(str(bundle.file(contract.COMPLETE_TS)), map_location="cuda")
    with torch.no_grad():
        got = scripted(image.cuda(), known.cuda()).cpu().numpy()
    assert np.abs(got - want).max() <= contract.COMPLETE_TOLERANCE, "complete.ts CUDA vs ORT CPU"


@pytest.mark.parametrize("name", ["lstm"])
def test_cuda_step_matches_onnxruntime_cpu(name: str) -> None:
    bundle = open_bundle(ARTIFACTS / name)
    config = bundle.config
    gen = torch.Generator().manual_seed(1)
    inputs = [
        torch.rand([8 if d == contract.BATCH else d for d in s.shape], generator=gen)
        for s in contract.step_inputs(config)
    ]
    names = [s.name for s in contract.step_inputs(config)]
    cpu = ort.InferenceSession(
        str(bundle.file(contract.STEP_ONNX)), providers=["CPUExecutionProvider"]
    )
    want = cpu.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})
    scripted = torch.jit.load(str(bundle.file(contract.STEP_TS)), map_location="cuda")
    with torch.no_grad():
        got = scripted(*(t.cuda() for t in inputs))
    for spec, a, b in zip(contract.step_outputs(config), got, want, strict=True):
        diff = float(np.abs(a.cpu().numpy() - b).max())
        assert diff <= contract.STEP_TOLERANCE, f"{spec.name}: step.ts CUDA vs ORT CPU {diff}"


def test_cuda_sample_matches_onnxruntime_cpu() -> None:
    bundle = open_bundle(ARTIFACTS / "lstm")
    model = load_weights(bundle.file(contract.WEIGHTS)).cuda()
    gen = torch.Generator().manual_seed(3)
    image = torch.rand(64, 28, 28, generator=gen)
    known = torch.tensor([1, 7, 14, 27] * 16)
    noise = torch.randn(64, contract.SAMPLE_STEPS, bundle.config.noise_dim, generator=gen)
    temperature = torch.ones(64)
    names = [s.name for s in contract.sample_inputs(bundle.config.noise_dim)]
    inputs = (image, known, noise, temperature)
    cpu = ort.InferenceSession(
        str(bundle.file(contract.SAMPLE_ONNX)), providers=["CPUExecutionProvider"]
    )
    want = cpu.run(None, {n: t.numpy() for n, t in zip(names, inputs, strict=True)})[0]
    eager = sample(model, *(t.cuda() for t in inputs)).cpu().numpy()
    assert np.abs(eager - want).max() <= contract.COMPLETE_TOLERANCE, "eager CUDA vs ORT CPU"
