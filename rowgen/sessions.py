"""onnxruntime sessions for a bundle's ONNX programs, with the session options chosen in one place.

Torch-free. The benchmark (`python -m bench.speed --ort-options`) times the alternatives on
`complete.onnx`; DEFAULT holds the pick, and the evaluation (and the server, when it opens its
sessions here) run exactly what was measured. `cuda_problem` says why a process cannot run on
CUDA (checked once: the provider, the driver, the CUDA libraries, which it preloads).
"""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import re
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

# onnxruntime 1.31 sends usage telemetry on Linux unless this is set before it starts; rowgen
# never asks for that (a deployment that wants it sets the variable to 0).
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

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
_cuda_checked = False  # the checks of cuda_problem ran (and preloaded the CUDA libraries)
_cuda_why_not: str | None = None  # why this process runs no session on CUDA, once found
_cuda_started: bool | None = None  # found out by the first session that asks for CUDA
DRIVER = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
NOT_STARTED = (
    "onnxruntime's CUDA provider did not start although the driver and the CUDA libraries load "
    "(cuDNN 9 missing, or a GPU this build does not support; --device cuda shows onnxruntime's "
    "own log)"
)


def _find_cuda_problem() -> str | None:
    """The first reason, cheapest check first, why CUDA cannot run here; None if none is found.

    `onnxruntime.preload_dlls()` loads the CUDA and cuDNN libraries from the `cuda` extra's
    wheels (or torch's), so a GPU host without a system CUDA runs on the GPU; it prints what
    fails to load, which becomes the reason instead of console noise.
    """
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "this onnxruntime has no CUDA provider (install onnxruntime-gpu, not onnxruntime)"
    try:
        ctypes.CDLL(DRIVER)
    except OSError:
        return f"no NVIDIA driver ({DRIVER} does not load)"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        ort.preload_dlls()
    missing = dict.fromkeys(
        Path(name).name for name in re.findall(r"Failed to load (\S+?):", printed.getvalue())
    )
    if missing:
        return (
            f"the CUDA libraries onnxruntime needs do not load ({', '.join(missing)}): "
            "pip install 'rowgen[cuda]', or install CUDA 13 and cuDNN 9"
        )
    return None


def cuda_problem() -> str | None:
    """Why this process cannot run sessions on CUDA, or None while nothing says so.

    Checked once per process, before the first CUDA session (see `_find_cuda_problem`); after
    that session opens, also whether onnxruntime's CUDA provider really started in it.
    """
    global _cuda_checked, _cuda_why_not
    with _cuda_lock:
        if not _cuda_checked:
            _cuda_why_not = _find_cuda_problem()
            _cuda_checked = True
        return _cuda_why_not


def open_session(
    model: Model, settings: OrtSettings = DEFAULT, cuda: bool = False, quiet: bool = True
) -> ort.InferenceSession:
    """A session on CPU, or asking for CUDA first (check `uses_cuda`: it may fall back).

    `model` is a path or, better, the bytes `Bundle.read` verified. The log level is set per
    session (quiet: errors only). CUDA is asked for only when `cuda_problem` finds nothing
    against it. A CUDA provider that then fails to start, though, is reported through
    onnxruntime's process-wide logger, which the session's level does not reach. So the first
    CUDA session of the process finds out, under a lock and with that logger quieted once; later
    sessions, including ones opened lazily while requests run, ask only for what started and
    never touch the shared logger.
    """
    global _cuda_started, _cuda_why_not
    source = model if isinstance(model, bytes) else str(model)
    options = settings.session_options()
    options.log_severity_level = ORT_FATAL if quiet else ORT_WARNING
    if not cuda or cuda_problem() is not None:
        return ort.InferenceSession(source, options, providers=CPU)
    with _cuda_lock:
        if _cuda_started is None:
            if quiet:
                ort.set_default_logger_severity(ORT_FATAL)
            try:
                session = ort.InferenceSession(source, options, providers=CUDA)
            finally:
                if quiet:
                    ort.set_default_logger_severity(ORT_WARNING)
            _cuda_started = uses_cuda(session)
            _cuda_why_not = None if _cuda_started else NOT_STARTED
            return session
    return ort.InferenceSession(source, options, providers=CUDA if _cuda_started else CPU)


def uses_cuda(session: ort.InferenceSession) -> bool:
    """Whether the session really got CUDA (get_available_providers lists it even when the
    CUDA libraries are missing; only the created session's providers tell)."""
    return "CUDAExecutionProvider" in session.get_providers()
