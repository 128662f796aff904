"""serve.api's parts that need no server, checked in a child process: the verdict of every kind
of error on both protocols, the short safe messages, the limits' arithmetic, and the refusal of
answers that are not finite (no bounded input drives the tiny models there, so it is called
directly). A child process, because kserve's gRPC modules and tritonclient's (which the other
tests here import) register the same protobuf names and cannot share one process."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

if importlib.util.find_spec("kserve") is None:
    pytest.skip("the v2 API needs the api extra: pip install '.[api]'", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
CHECKS = r"""
import logging
import numpy as np
from grpc import StatusCode
from serve.api.inputs import check_outputs, check_sampling
from serve.api.limits import Limits, item_values
from serve.api.protocol import (
    Forbidden,
    InvalidInput,
    Overloaded,
    TooLarge,
    TooSlow,
    VersionNotServed,
    kserve,
)
from serve.api.refusals import clip, escape, shown, verdict
from rowgen import contract

expected = [
    (InvalidInput("bad"), 400, StatusCode.INVALID_ARGUMENT),
    (Forbidden("off"), 403, StatusCode.PERMISSION_DENIED),
    (kserve.errors.ModelNotFound("nope"), 404, StatusCode.NOT_FOUND),
    (TooSlow("slow"), 408, StatusCode.DEADLINE_EXCEEDED),
    (TooLarge("big"), 413, StatusCode.RESOURCE_EXHAUSTED),
    (NotImplementedError("not built"), 501, StatusCode.UNIMPLEMENTED),
    (VersionNotServed("versions"), 404, StatusCode.NOT_FOUND),
    (Overloaded("busy"), 503, StatusCode.UNAVAILABLE),
    (kserve.errors.ModelNotReady("m"), 503, StatusCode.UNAVAILABLE),
]
for exc, status, code in expected:
    found = verdict(exc)
    assert (found.status, found.grpc) == (status, code), (exc, found)
    assert found.level == (logging.INFO if status == 503 else logging.WARNING), exc
    assert (found.headers.get("Retry-After") == "1") == (status == 503), found
    assert (found.headers.get("Connection") == "close") == (status in (408, 413)), found
assert verdict(ValueError("a fault")) is None and verdict(KeyError("x")) is None

name = verdict(kserve.errors.ModelNotFound("m" * 100_000)).message
assert len(name) < 120 and "(100,000 characters)" in name, name
assert len(verdict(InvalidInput("x" * 10_000)).message) < 600
assert "5,000,000 characters" in shown("x" * 5_000_000) and len(shown("x" * 5_000_000)) < 80
assert len(shown(list(range(1_000_000)))) < 80 and len(shown({"a": [[[[1]]]]})) < 80
assert escape("lstm\nrefused forged\x1b") == "lstm\\nrefused forged\\x1b"
assert len(clip("y" * 10_000)) < 600 and clip("short") == "short"

limits = Limits()
values = item_values([{"shape": [-1, 28, 28]}, {"shape": [-1]}])
assert values == 785 and limits.body_bytes(values) == 1024 * 785 * 32 + 64 * 1024
assert Limits(max_images=2).body_bytes(values) == 2 * 785 * 32 + 64 * 1024

outputs = contract.complete_outputs()
check_outputs("lstm", outputs, [np.zeros((2, 28, 28), np.float32)])
for bad in (np.nan, np.inf):
    completed = np.zeros((2, 28, 28), np.float32)
    completed[1, 3, 4] = bad
    try:
        check_outputs("lstm", outputs, [completed])
    except InvalidInput as exc:
        assert "'completed'" in str(exc) and "NaN or infinite" in str(exc), exc
    else:
        raise AssertionError(f"an answer holding {bad} was let through")

noise, temperature = np.full((1, 27, 4), 10.0, np.float32), np.ones(1, np.float32)
check_sampling("noise", noise, temperature)
for changed in (noise * 1.05, -noise * 1.05):
    try:
        check_sampling("noise", changed, temperature)
    except InvalidInput as exc:
        assert "noise" in str(exc), exc
    else:
        raise AssertionError("noise past the limit was let through")
print("checked")
"""


def test_verdicts_messages_limits_and_finite_answers() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", CHECKS], cwd=REPO, capture_output=True, text=True, timeout=180,
        env=env,
    )  # fmt: skip
    assert result.returncode == 0 and "checked" in result.stdout, result.stderr[-3000:]
