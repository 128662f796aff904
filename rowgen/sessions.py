"""onnxruntime sessions for a bundle's ONNX programs, with the session options chosen in one place.

Torch-free. The benchmark (`python -m bench.speed --ort-options`) times the alternatives on
`complete.onnx`; DEFAULT holds the pick, and the evaluation (and the server, when it opens its
sessions here) run exactly what was measured.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

OPTIMIZATION_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
CPU = ["CPUExecutionProvider"]
CUDA = ["CUDAExecutionProvider", "CPUExecutionProvider"]


@dataclass(frozen=True)
class OrtSettings:
    """The session options that can change how fast rowgen's small recurrent graphs run."""

    threads: int = 0  # intra-op threads; 0 lets onnxruntime use one per physical core
    optimization: str = "all"  # graph optimization level, a key of OPTIMIZATION_LEVELS
    spinning: bool = True  # idle intra-op threads busy-wait: lower latency for more CPU time
    parallel: bool = False  # ORT_PARALLEL runs independent branches at once; ours are chains

    def label(self) -> str:
        threads = self.threads or "auto"
        return (
            f"threads={threads} opt={self.optimization} spin={int(self.spinning)}"
            f" mode={'parallel' if self.parallel else 'sequential'}"
        )

    def session_options(self) -> ort.SessionOptions:
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.graph_optimization_level = OPTIMIZATION_LEVELS[self.optimization]
        options.add_session_config_entry(
            "session.intra_op.allow_spinning", "1" if self.spinning else "0"
        )
        options.execution_mode = (
            ort.ExecutionMode.ORT_PARALLEL if self.parallel else ort.ExecutionMode.ORT_SEQUENTIAL
        )
        return options


# onnxruntime's own defaults won when `bench.speed --ort-options` timed the alternatives (the
# figures: docs/results.md, "Session options").
DEFAULT = OrtSettings()


ORT_WARNING, ORT_FATAL = 2, 4  # onnxruntime's default log severity, and one that hides errors

Model = Path | str | bytes  # a file, or (what rowgen.bundle hands out) its verified bytes

_cuda_lock = threading.Lock()
_cuda_loads: bool | None = None  # found out by the first session that asks for CUDA


def open_session(
    model: Model, settings: OrtSettings = DEFAULT, cuda: bool = False, quiet: bool = True
) -> ort.InferenceSession:
    """A session on CPU, or asking for CUDA first (check `uses_cuda`: it may fall back).

    `model` is a path or, better, the bytes `Bundle.read` verified. The log level is set per
    session (quiet: errors only). A CUDA library that cannot load, though, is reported through
    onnxruntime's process-wide logger, which the session's level does not reach. So the first
    CUDA request of the process finds out, under a lock and with that logger quieted once; later
    sessions, including ones opened lazily while requests run, ask only for what loaded and never
    touch the shared logger.
    """
    global _cuda_loads
    source = model if isinstance(model, bytes) else str(model)
    options = settings.session_options()
    options.log_severity_level = ORT_FATAL if quiet else ORT_WARNING
    if not cuda:
        return ort.InferenceSession(source, options, providers=CPU)
    providers = [p for p in CUDA if p in ort.get_available_providers()]
    with _cuda_lock:
        if _cuda_loads is None:
            if quiet:
                ort.set_default_logger_severity(ORT_FATAL)
            try:
                session = ort.InferenceSession(source, options, providers=providers)
            finally:
                if quiet:
                    ort.set_default_logger_severity(ORT_WARNING)
            _cuda_loads = uses_cuda(session)
            return session
    return ort.InferenceSession(source, options, providers=providers if _cuda_loads else CPU)


def uses_cuda(session: ort.InferenceSession) -> bool:
    """Whether the session really got CUDA (get_available_providers lists it even when the
    CUDA libraries are missing; only the created session's providers tell)."""
    return "CUDAExecutionProvider" in session.get_providers()
