"""Property-based tests of the v2 API's answers to requests nobody wrote by hand.

Any JSON body, any mutation of a valid request, any mangling of a binary body is answered with
200 or a 4xx whose message is short, never a 5xx, and the connection stays open unless the
answer says it closes; a request both protocols can say (random names, datatypes, shapes,
values, as JSON or as binary) gets the same verdict over REST and gRPC. Against the running
servers of tests/api/conftest.py; `make fuzz` runs many more examples (tests/conftest.py).
"""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

if importlib.util.find_spec("kserve") is None:
    pytest.skip("the v2 API needs the api extra: pip install '.[api]'", allow_module_level=True)
pytest.importorskip("tritonclient.grpc")

from bench.servers import Running
from bench.v2_requests import (
    GRPC_CODES,
    binary_body,
    grpc_call,
    grpc_message,
    metadata,
    post,
    valid_request,
)
from rowgen import contract

BUNDLE = "lstm"
INFER = f"/v2/models/{BUNDLE}/infer"
CLOSING = (408, 413, 431)
NAMES = [s.name for s in contract.complete_inputs()]
DATATYPES = ["FP32", "INT64", "fp32", "FP64", "BYTES", "BOOL", "", "FLOAT"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
INVALID_HTTP = "Invalid HTTP request received."  # uvicorn's answer to what does not parse


@pytest.fixture(scope="module")
def valid(server: Running) -> dict:
    return valid_request(metadata(server.url, BUNDLE))


def answered(status: int, message, kept: bool) -> None:
    """The answer a hostile request may get: a success, or a short client error; the
    connection closes only after an answer sent before the body was read, or unparsable HTTP."""
    assert status == 200 or 400 <= status < 500, (status, message)
    if status != 200:
        assert isinstance(message, str) and len(message) <= 600, message
    assert kept == (status not in CLOSING and message != INVALID_HTTP)


@given(json_values)
def test_any_json_body_is_answered(server: Running, body) -> None:
    answered(*post(server.url, INFER, json.dumps(body).encode(), {}))


@given(st.data())
def test_a_mutated_request_is_answered(server: Running, valid: dict, data) -> None:
    request = json.loads(json.dumps(valid))
    node = request
    while True:  # walk down to a random part of the request and replace (or drop) it
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = data.draw(st.sampled_from(keys))
        if isinstance(node[key], (dict, list)) and node[key] and data.draw(st.booleans()):
            node = node[key]
            continue
        if isinstance(node, dict) and data.draw(st.booleans()):
            del node[key]
        else:
            node[key] = data.draw(json_values)
        break
    status, message, kept = post(server.url, INFER, json.dumps(request).encode(), {})
    answered(status, message, kept)
    if status == 200:  # an answer is all numbers: JSON has no NaN (it would be null)
        assert all(isinstance(v, float) for o in message["outputs"] for v in o["data"])


@given(
    cut=st.integers(0, 4000),
    extra=st.binary(max_size=64),
    header_length=st.none()
    | st.integers(-5, 5000).map(str)
    | st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=6),
)
def test_a_mangled_binary_body_is_answered(
    server: Running, valid: dict, cut: int, extra: bytes, header_length
) -> None:
    body, headers = binary_body(valid, (0, 1))
    body = body[: len(body) - cut] + extra
    if header_length is not None:
        headers["Inference-Header-Content-Length"] = header_length
    answered(*post(server.url, INFER, body, headers))


floats = st.floats(width=32, allow_nan=False, allow_infinity=False)
tensors = st.fixed_dictionaries(
    {
        "name": st.sampled_from(NAMES) | st.text(max_size=6),
        "datatype": st.sampled_from(DATATYPES),
        "shape": st.lists(st.integers(-2, 1100), max_size=4),
        "data": st.lists(floats, max_size=40) | st.just([0.5] * 784),
    }
)


@given(inputs=st.lists(tensors, max_size=3), raw=st.booleans())
def test_rest_and_grpc_give_one_verdict(server: Running, inputs: list[dict], raw: bool) -> None:
    for tensor in inputs:  # INT64 values are integers on both protocols
        if tensor["datatype"] == "INT64":
            tensor["data"] = [math.floor(v) % 30 for v in tensor["data"]]
    request = {"inputs": inputs}
    body, headers = binary_body(request, tuple(range(len(inputs))) if raw else ())
    status, message, kept = post(server.url, INFER, body, headers)
    answered(status, message, kept)
    message_grpc = grpc_message(request, BUNDLE, raw)
    code, details = grpc_call(server.grpc_url, "ModelInfer", message_grpc)
    if status == 200:
        assert code == "OK", details
    else:
        assert (code, details) == (GRPC_CODES[status], message)
