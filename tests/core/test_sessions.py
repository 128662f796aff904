"""onnxruntime sessions (rowgen.sessions): opened from verified bytes, log level per session.

The process-wide logger is touched only by the first session that asks for CUDA (a CUDA
provider failing to start logs there, out of the session's reach); sessions opened later, as the
server's lazily opened ones are while requests run, never touch it. `cuda_problem` names why
CUDA cannot run, checked before any CUDA session: each reason is made to happen here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rowgen import contract, sessions
from rowgen.bundle import open_bundle

SHIPPED = Path(__file__).resolve().parents[2] / "artifacts" / "lstm"


@pytest.fixture
def program() -> bytes:
    return open_bundle(SHIPPED).read(contract.STEP_ONNX)


def test_log_level_is_set_per_session(program: bytes) -> None:
    quiet = sessions.open_session(program, quiet=True)
    loud = sessions.open_session(program, quiet=False)
    assert quiet.get_session_options().log_severity_level == sessions.ORT_FATAL
    assert loud.get_session_options().log_severity_level == sessions.ORT_WARNING
    config = open_bundle(SHIPPED).config
    assert [i.name for i in quiet.get_inputs()] == [s.name for s in contract.step_inputs(config)]


def test_the_shared_logger_is_touched_once_per_process(
    program: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = sessions.ort.set_default_logger_severity

    def recorded(level: int) -> None:
        calls.append(level)
        real(level)

    monkeypatch.setattr(sessions.ort, "set_default_logger_severity", recorded)
    # As in a fresh process whose checks found nothing against CUDA: without a GPU the first
    # session then asks for CUDA and the provider fails to start.
    fresh(monkeypatch, checked=True)
    first = sessions.open_session(program, cuda=True, quiet=True)
    assert calls == [sessions.ORT_FATAL, sessions.ORT_WARNING]
    for _ in range(3):  # later sessions, CUDA or not, leave the shared logger alone
        later = sessions.open_session(program, cuda=True, quiet=True)
        sessions.open_session(program)
    assert calls == [sessions.ORT_FATAL, sessions.ORT_WARNING]
    assert sessions.uses_cuda(later) == sessions.uses_cuda(first) == sessions._cuda_started
    if not sessions.uses_cuda(first):
        assert sessions.cuda_problem() == sessions.NOT_STARTED


def fresh(monkeypatch: pytest.MonkeyPatch, checked: bool = False) -> None:
    """rowgen.sessions' CUDA state as in a new process (`checked`: its checks found nothing)."""
    monkeypatch.setattr(sessions, "_cuda_checked", checked)
    monkeypatch.setattr(sessions, "_cuda_why_not", None)
    monkeypatch.setattr(sessions, "_cuda_started", None)


def loads(missing: set[str]):
    """ctypes.CDLL that fails for the library names in `missing`, as dlopen would."""

    def cdll(name: str, *args, **kwargs) -> object:
        if name in missing:
            raise OSError(f"{name}: cannot open shared object file: No such file or directory")
        return object()

    return cdll


def test_an_onnxruntime_without_cuda_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fresh(monkeypatch)
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: sessions.CPU)
    assert "no CUDA provider (install onnxruntime-gpu" in sessions.cuda_problem()


def test_a_missing_driver_is_named_and_nothing_is_preloaded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fresh(monkeypatch)
    monkeypatch.setattr(sessions.ctypes, "CDLL", loads({sessions.DRIVER}))
    monkeypatch.setattr(sessions.ort, "preload_dlls", lambda: pytest.fail("preloaded"))
    assert sessions.cuda_problem() == f"no NVIDIA driver ({sessions.DRIVER} does not load)"


def test_missing_cuda_libraries_are_named_with_the_fix(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def preload() -> None:  # what onnxruntime 1.31's preload_dlls prints for a missing library
        print("Failed to load /venv/nvidia/cu13/lib/libcublasLt.so.13: cannot open shared object")
        print("Failed to load libcublasLt.so.13: libcublasLt.so.13: cannot open shared object")
        print("Failed to load libcudart.so.13: libcudart.so.13: cannot open shared object file")
        print("Please follow https://onnxruntime.ai/docs/install/#cuda-and-cudnn to install CUDA.")

    fresh(monkeypatch)
    monkeypatch.setattr(sessions.ort, "get_available_providers", lambda: sessions.CUDA)
    monkeypatch.setattr(sessions.ctypes, "CDLL", loads(set()))
    monkeypatch.setattr(sessions.ort, "preload_dlls", preload)
    why = sessions.cuda_problem()
    assert "(libcublasLt.so.13, libcudart.so.13)" in why
    assert "pip install 'rowgen[cuda]'" in why
    assert capsys.readouterr().out == ""  # the reason, not onnxruntime's prints
    monkeypatch.setattr(sessions.ort, "preload_dlls", lambda: pytest.fail("checked twice"))
    assert sessions.cuda_problem() == why


def test_a_process_with_a_problem_never_asks_for_cuda(
    program: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    fresh(monkeypatch)
    monkeypatch.setattr(sessions.ctypes, "CDLL", loads({sessions.DRIVER}))
    monkeypatch.setattr(
        sessions.ort, "set_default_logger_severity", lambda level: pytest.fail("asked for CUDA")
    )
    session = sessions.open_session(program, cuda=True)
    assert session.get_providers() == sessions.CPU
