"""onnxruntime sessions (rowgen.sessions): opened from verified bytes, log level per session.

The process-wide logger is touched only by the first session that asks for CUDA (a CUDA
library failing to load logs there, out of the session's reach); sessions opened later, as the
server's lazily opened ones are while requests run, never touch it.
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
    monkeypatch.setattr(sessions, "_cuda_loads", None)  # as in a fresh process
    first = sessions.open_session(program, cuda=True, quiet=True)
    assert calls == [sessions.ORT_FATAL, sessions.ORT_WARNING]
    for _ in range(3):  # later sessions, CUDA or not, leave the shared logger alone
        later = sessions.open_session(program, cuda=True, quiet=True)
        sessions.open_session(program)
    assert calls == [sessions.ORT_FATAL, sessions.ORT_WARNING]
    assert sessions.uses_cuda(later) == sessions.uses_cuda(first) == sessions._cuda_loads
