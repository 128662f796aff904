"""serve.runtime: torch-free sessions over verified bundles, completion vs streaming, devices."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from rowgen import contract
from rowgen.bundle import BundleError
from rowgen.stepping import zero_state
from serve.runtime import (
    CPU,
    CUDA,
    ONNXRUNTIME,
    TORCHSCRIPT,
    DeviceError,
    OrtModel,
    cuda_step_fn,
    load_models,
    make_session,
)
from serve.torchscript import torch_available

REPO = Path(__file__).resolve().parents[2]
NAMES = ["lstm", "gru", "rnn", "lstm-window"]  # the tiny bundles of conftest.tiny_bundles

KNOWN_ROWS = np.array([1, 7, 14, 21, 27, 0, 40])  # mixed, the last two clamped to 1 and 27


def images(batch: int = len(KNOWN_ROWS), seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((batch, 28, 28), dtype=np.float32)


def rows_of(stream) -> np.ndarray:
    return np.stack([row for _, row in stream], axis=1)  # (B, 28, 28)


@pytest.fixture(scope="module")
def models(tiny_bundles: Path):
    return load_models(tiny_bundles, "cpu")


def test_serve_runs_with_torch_unimportable(tiny_bundles: Path) -> None:
    """Import every serve module, load bundles and complete with any `import torch` failing."""
    script = textwrap.dedent(f"""
        import sys
        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
        sys.meta_path.insert(0, NoTorch())
        import numpy as np
        import serve, serve.runtime, serve.app.images, serve.app.gallery, serve.torchscript
        import serve.app.layout, serve.app.__main__, bench.load
        models = serve.runtime.load_models({str(tiny_bundles)!r}, "cpu")
        assert models.backends == ["onnxruntime"], models.backends
        model = models.get("lstm")
        out = model.complete(np.zeros((2, 28, 28), np.float32), np.array([3, 9]))
        assert out.shape == (2, 28, 28)
        serve.app.layout.build_app(models)
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules)
        print("torch-free ok")
    """)
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "torch-free ok" in done.stdout


def test_no_module_level_torch_import() -> None:
    files = [*sorted((REPO / "serve").rglob("*.py")), REPO / "bench" / "load.py"]
    pattern = re.compile(r"^(import torch|from torch)\b", re.MULTILINE)
    offenders = [str(f.relative_to(REPO)) for f in files if pattern.search(f.read_text())]
    assert not offenders, f"module-level torch import in {offenders}"


def test_serve_extra_is_torch_free() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    serve = project["optional-dependencies"]["serve"]
    names = [re.split(r"[<>=\[ ;]", d)[0].lower() for d in serve]
    assert "onnxruntime-gpu" in names and "gradio" in names
    assert not {"torch", "torchvision", "onnxruntime", "onnx"} & set(names), names


def test_providers_are_what_the_session_uses(tiny_bundles: Path, capfd) -> None:
    cpu = OrtModel(tiny_bundles / "gru", "cpu")
    assert cpu.providers == [CPU]
    auto = OrtModel(tiny_bundles / "gru", "auto")
    assert auto.providers == auto.step_session.get_providers()
    assert auto.providers[-1] == CPU
    if CUDA not in auto.providers:  # the expected fallback here: no wall of ort errors
        assert "onnxruntime" not in capfd.readouterr().err


def test_device_cuda_without_gpu_is_a_clear_error(tiny_bundles: Path) -> None:
    if CUDA in OrtModel(tiny_bundles / "rnn", "auto").providers:
        pytest.skip("CUDA works here")
    with pytest.raises(DeviceError, match="--device cuda"):
        make_session(tiny_bundles / "rnn" / contract.STEP_ONNX, "cuda")
    with pytest.raises(DeviceError, match="unknown device"):
        make_session(tiny_bundles / "rnn" / contract.STEP_ONNX, "tpu")


@pytest.mark.parametrize("name", NAMES)
def test_complete_equals_stream(models, name: str) -> None:
    model = models.get(name)
    image = images()
    completed = model.complete(image, KNOWN_ROWS)
    streamed = rows_of(model.stream(image, KNOWN_ROWS))
    diff = float(np.abs(completed - streamed).max())
    assert diff <= contract.COMPLETE_TOLERANCE, f"{name}: completed vs stream differ by {diff}"
    for b, k in enumerate(np.clip(KNOWN_ROWS, 1, 27)):
        assert np.array_equal(completed[b, :k], image[b, :k]), f"{name}: known rows changed"
    assert completed.min() >= 0.0 and completed.max() <= 1.0


def test_shared_model_is_thread_safe(models) -> None:
    model = models.get("lstm")
    inputs = [images(3, seed) for seed in range(8)]
    serial = [
        (model.complete(x, KNOWN_ROWS[:3]), rows_of(model.stream(x, KNOWN_ROWS[:3])))
        for x in inputs
    ]

    def both(x: np.ndarray):
        return model.complete(x, KNOWN_ROWS[:3]), rows_of(model.stream(x, KNOWN_ROWS[:3]))

    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(both, inputs))
    for (c1, s1), (c2, s2) in zip(serial, threaded, strict=True):
        assert np.array_equal(c1, c2) and np.array_equal(s1, s2)


def test_tampered_bundle_names_the_file(tiny_bundles: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_bundles / "lstm", tmp_path / "lstm")
    step = tmp_path / "lstm" / contract.STEP_ONNX
    data = bytearray(step.read_bytes())
    data[len(data) // 2] ^= 0xFF
    step.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"step\.onnx"):
        OrtModel(tmp_path / "lstm")
    with pytest.raises(BundleError, match=r"step\.onnx"):
        load_models(tmp_path)


def test_missing_bundles(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="no bundles under"):
        load_models(tmp_path / "nowhere")
    with pytest.raises(BundleError, match=r"manifest\.json is missing"):
        OrtModel(tmp_path / "lstm")


def test_unknown_model_and_backend(models) -> None:
    with pytest.raises(KeyError, match="unknown model 'vae'"):
        models.get("vae")
    with pytest.raises(ValueError, match="not available"):
        models.get("lstm", "tensorrt")


@pytest.mark.skipif(not torch_available(), reason="torch is not installed")
@pytest.mark.parametrize("name", NAMES)
def test_torchscript_backend_matches_onnxruntime(models, name: str) -> None:
    assert models.backends == [ONNXRUNTIME, TORCHSCRIPT]
    ort_model, ts_model = models.get(name), models.get(name, TORCHSCRIPT)
    image = images()
    reference = rows_of(ort_model.stream(image, KNOWN_ROWS))
    for got in (ts_model.complete(image, KNOWN_ROWS), rows_of(ts_model.stream(image, KNOWN_ROWS))):
        diff = float(np.abs(got - reference).max())
        assert diff <= contract.COMPLETE_TOLERANCE, f"{name}: TorchScript vs ort differ by {diff}"


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cuda_stream_keeps_state_on_device(models, tiny_bundles: Path, name: str) -> None:
    model = OrtModel(tiny_bundles / name, "auto")
    if CUDA not in model.providers:  # the session's own word, not get_available_providers()
        pytest.skip("no usable CUDA device for onnxruntime here")
    image = images()
    streamed = rows_of(model.stream(image, KNOWN_ROWS))
    on_cpu = rows_of(models.get(name).stream(image, KNOWN_ROWS))
    diff = float(np.abs(streamed - on_cpu).max())
    assert diff <= contract.COMPLETE_TOLERANCE, f"{name}: CUDA vs CPU stream differ by {diff}"
    step = cuda_step_fn(model.step_session, model.config)
    next_row, *state = step(image[:1, 0], *zero_state(model.config, 1))
    assert isinstance(next_row, np.ndarray) and next_row.shape == (1, 28)
    assert all(s.device_name().lower() == "cuda" for s in state)
