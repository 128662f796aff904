"""Hostile v2 requests, each with the answer the server must give, over REST and gRPC alike.

Torch-free. Each `Case` changes a valid request (built from the model's own metadata, so it fits
any bundle) into a bad one: the protocol's form, the model's contract, the batch cap, values the
model cannot answer for. `both` cases are sent over REST and over gRPC, and both must give the
same status (the gRPC code of the HTTP status) and the same message; the others can only be
written in JSON (a string where a number goes) or only as a REST body (`RAW`). `mutate` makes
random bad requests out of a valid one. Used by `bench.attack` (`make attack`) and by
tests/api/test_hostile.py, which add the attacks that are not one request (big bodies, slow
clients, the repository extension).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from bench.v2_requests import binary_body, grpc_message
from rowgen import contract

STEP, SAMPLE = contract.STEP_MODEL_SUFFIX, contract.SAMPLE_MODEL_SUFFIX
SAMPLE_STEP = contract.SAMPLE_STEP_MODEL_SUFFIX
IMAGE = contract.complete_inputs()[0].name
COMPLETED = contract.complete_outputs()[0].name
MAX_IMAGES = 1024  # the servers' default --max-queue: the batch cap the cap cases pass


Change = Callable[[dict], None]


def put(path: str, value: object) -> Change:
    """Set `path` ("inputs.0.shape") of the request to `value`."""

    def change(request: dict) -> None:
        *parents, last = path.split(".")
        node = request
        for key in parents:
            node = node[int(key)] if isinstance(node, list) else node[key]
        node[int(last) if isinstance(node, list) else last] = copy.deepcopy(value)

    return change


def each(*changes: Change) -> Change:
    def change(request: dict) -> None:
        for c in changes:
            c(request)

    return change


def batch_of(images: int) -> Change:
    """Every input declares `images` images, with no data: refused before the data is read."""

    def change(request: dict) -> None:
        for tensor in request["inputs"]:
            tensor["shape"][0] = images
            tensor["data"] = []

    return change


@dataclass(frozen=True)
class Case:
    name: str
    model: str  # the suffix of the bundle's serving name: "", STEP, SAMPLE or SAMPLE_STEP
    change: Change
    status: int
    words: tuple[str, ...] = ()  # the message holds each
    both: bool = True  # written over gRPC too
    binary: tuple[int, ...] = ()  # inputs sent as bytes (REST binary extension, gRPC raw)
    version: str = ""
    model_name: str | None = None  # instead of the bundle's (unknown models)


@dataclass(frozen=True)
class Raw:
    """A REST body no JSON request turns into: `build(valid request)` -> (path, body, headers)."""

    name: str
    model: str
    build: Callable[[dict, str], tuple[str, bytes, dict]]
    status: int
    words: tuple[str, ...] = ()


def _first_output(request: dict) -> None:
    request["outputs"] = [{"name": COMPLETED, "parameters": {"binary_data": "yes"}}]


CASES = (
    # The protocol's form
    Case("negative dimension", "", put("inputs.0.shape.0", -1), 400, ("at least 1",)),
    Case("zero images", "", put("inputs.0.shape.0", 0), 400, ("at least 1",)),
    Case("rank 9 shape", "", put("inputs.0.shape", [1] * 9), 400, ("at most 8",)),
    Case("datatype fp32", "", put("inputs.0.datatype", "fp32"), 400, ("'fp32'", "FP32")),
    Case("input named twice", "", put("inputs.1.name", IMAGE), 400, ("twice",)),
    Case("no inputs", "", put("inputs", []), 400, ("no inputs",)),
    Case("empty input name", "", put("inputs.0.name", ""), 400, ("empty",)),
    Case("5 MB input name", "", put("inputs.0.name", "x" * 5_000_000), 400, ("5,000,000",)),
    Case("id of 2,000 characters", "", put("id", "i" * 2000), 400, ("id is 2,000",)),
    Case("binary_data_output 'no'", "", put("parameters", {"binary_data_output": "no"}), 400,
         ("binary_data_output", "true or false")),
    Case("output binary_data 'yes'", "", _first_output, 400, ("binary_data", "true or false")),
    Case("unknown requested output", "", put("outputs", [{"name": "nope"}]), 400,
         ("'nope'", COMPLETED)),
    Case("output requested twice", "", put("outputs", [{"name": COMPLETED}] * 2), 400,
         ("twice",)),
    # The model's contract
    Case("unknown input", "", put("inputs.0.name", "picture"), 400, ("'picture'", IMAGE)),
    Case("missing input", "", lambda r: r["inputs"].pop(), 400, ("missing input",)),
    Case("known_rows as FP32", "", each(put("inputs.1.datatype", "FP32"),
                                        put("inputs.1.data", [14.0])), 400, ("INT64",)),
    Case("shape [1, 784]", "", put("inputs.0.shape", [1, 784]), 400, ("[-1, 28, 28]",)),
    Case("fewer values than the shape", "", put("inputs.0.data", [0.5] * 10), 400,
         ("10 values", "784")),
    Case("inputs disagree on the batch", "", each(put("inputs.1.shape", [2]),
                                                  put("inputs.1.data", [14, 14])), 400,
         ("disagree",)),
    Case("batch over the cap", "", batch_of(MAX_IMAGES + 1), 400, ("split it",)),
    Case("step batch over the cap", STEP, batch_of(MAX_IMAGES + 1), 400, ("split it",)),
    Case("sample batch over the cap", SAMPLE, batch_of(MAX_IMAGES + 1), 400, ("split it",)),
    Case("step batch of 50,000", STEP, batch_of(50_000), 400, ("50,000 images", "split it")),
    Case("NaN pixel", "", put("inputs.0.data.5", float("nan")), 400, ("NaN",),
         binary=(0,)),
    Case("pixels of 255", "", put("inputs.0.data", [255.0] * 784), 400, ("[0, 1]",)),
    Case("known_rows 28", "", put("inputs.1.data", [28]), 400, ("1..27",)),
    Case("binary bytes short of the shape", "", put("inputs.0.data", [0.5] * 100), 400,
         ("400 bytes", "3,136"), binary=(0,)),
    Case("step state NaN", STEP, put("inputs.1.data.0", float("nan")), 400, ("NaN",),
         binary=(1,)),
    Case("sample noise 3.4e38 at temperature 2", SAMPLE,
         each(put("inputs.2.data.0", 3.4e38), put("inputs.3.data", [2.0])), 400, ("noise",),
         binary=(2,)),
    Case("sample temperature 2.5", SAMPLE, put("inputs.3.data", [2.5]), 400, ("temperature[0]",)),
    # sample_step's inputs end with noise_row and temperature, whatever its state
    Case("sample_step noise_row 11", SAMPLE_STEP, put("inputs.-2.data.0", 11.0), 400,
         ("'noise_row'", "±10")),
    Case("sample_step temperature -0.5", SAMPLE_STEP, put("inputs.-1.data", [-0.5]), 400,
         ("temperature[0]",)),
    Case("model version 1", "", lambda r: None, 404, ("version",), version="1"),
    Case("unknown model", "", lambda r: None, 404, ("'nope'", "/v2/models"), model_name="nope"),
    Case("model name of 50,000 characters", "", lambda r: None, 404, ("(50,000 characters)",),
         model_name="m" * 50_000),
    Case("model name with a newline", "", lambda r: None, 404, ("forged",),
         model_name="lstm\nrefused forged line"),
    # What only JSON can say
    Case("parameters a string", "", put("parameters", "x"), 400, ("parameters",), both=False),
    Case("parameters a list", "", put("parameters", [1]), 400, ("parameters",), both=False),
    Case("output parameters a string", "", put("outputs", [{"name": COMPLETED,
         "parameters": "x"}]), 400, ("outputs[0]",), both=False),
    Case("output name a number", "", put("outputs", [{"name": 5}]), 400, ("outputs[0].name",),
         both=False),
    Case("input name a list", "", put("inputs.0.name", [IMAGE]), 400, ("inputs[0].name",),
         both=False),
    Case("shape null", "", put("inputs.0.shape", None), 400, ("shape is null",), both=False),
    Case("shape a number", "", put("inputs.0.shape", 784), 400, ("shape",), both=False),
    Case("dimension 1.0", "", put("inputs.0.shape.0", 1.0), 400, ("shape",), both=False),
    Case("strings as FP32", "", put("inputs.0.data", ["0.5"] * 784), 400, ("a string",),
         both=False),
    Case("booleans as FP32", "", put("inputs.0.data", [True] * 784), 400, ("true/false",),
         both=False),
    Case("null as FP32", "", put("inputs.0.data.3", None), 400, ("null",), both=False),
    Case("known_rows 14.9", "", put("inputs.1.data", [14.9]), 400, ("14.9", "integers"),
         both=False),
    Case("known_rows '14'", "", put("inputs.1.data", ["14"]), 400, ("a string",), both=False),
    Case("known_rows true", "", put("inputs.1.data", [True]), 400, ("true/false",), both=False),
    Case("known_rows 2**70", "", put("inputs.1.data", [2**70]), 400, ("integers",), both=False),
    Case("pixel 1e39", "", put("inputs.0.data.0", 1e39), 400, ("beyond",), both=False),
    Case("id a number", "", put("id", 5), 400, ("id",), both=False),
    Case("field the protocol lacks", "", put("model", "x"), 400, ("'model'",), both=False),
    Case("parameter an object", "", put("parameters", {"a": {}}), 400, ("'a'",), both=False),
    Case("data a string", "", put("inputs.0.data", "0.5"), 400, ("data",), both=False),
)  # fmt: skip


def _raw_trailing(request: dict, model: str) -> tuple[str, bytes, dict]:
    body, headers = binary_body(request, (0,), trailing=b"\0" * 8)
    return f"/v2/models/{model}/infer", body, headers


def _raw_size(size: int) -> Callable[[dict, str], tuple[str, bytes, dict]]:
    def build(request: dict, model: str) -> tuple[str, bytes, dict]:
        body, headers = binary_body(request, (0,))
        header_length = int(headers["Inference-Header-Content-Length"])
        header = json.loads(body[:header_length])
        header["inputs"][0]["parameters"]["binary_data_size"] = size
        new_header = json.dumps(header).encode()
        headers["Inference-Header-Content-Length"] = str(len(new_header))
        return f"/v2/models/{model}/infer", new_header + body[header_length:], headers

    return build


def _raw(body: bytes, headers: dict | None = None, path: str = "/v2/models/{model}/infer"):
    return lambda request, model: (path.format(model=model), body, headers or {})


RAW = (
    Raw("body not JSON", "", _raw(b"{not json"), 400, ("malformed", '"inputs" list')),
    Raw("body a JSON list", "", _raw(b"[]"), 400, ("a list", '"inputs" list')),
    Raw("empty body", "", _raw(b""), 400, ("malformed",)),
    Raw("trailing bytes after binary", "", _raw_trailing, 400, ("8 bytes after",)),
    Raw("binary_data_size -8", "", _raw_size(-8), 400, ("binary_data_size", "at least 0")),
    Raw("binary_data_size past the body", "", _raw_size(10**6), 400, ("short", "truncated")),
    Raw("header length not a number", "",
        _raw(b"{}", {"Inference-Header-Content-Length": "ten"}), 400, ("byte length",)),
    Raw("header length past the body", "",
        _raw(b"{}", {"Inference-Header-Content-Length": "100"}), 400, ("truncated",)),
    Raw("v1 predict", "", _raw(b"{}", path="/v1/models/{model}:predict"), 404, ("v2",)),
    Raw("unload over REST", STEP, _raw(b"", path="/v2/repository/models/{model}/unload"), 403,
        ("--enable-model-repository",)),
    Raw("load over REST", STEP, _raw(b"", path="/v2/repository/models/{model}/load"), 403,
        ("--enable-model-repository",)),
)  # fmt: skip


def served_name(bundle: str, case: Case | Raw) -> str:
    return getattr(case, "model_name", None) or bundle + case.model


def rest_request(case: Case | Raw, request: dict, model: str) -> tuple[str, bytes, dict]:
    """(path, body, headers) of the case over REST, `request` being valid for `model`."""
    if isinstance(case, Raw):
        return case.build(request, model)
    changed = copy.deepcopy(request)
    case.change(changed)
    body, headers = binary_body(changed, case.binary)
    version = f"/versions/{case.version}" if case.version else ""
    return f"/v2/models/{quote(model, safe='')}{version}/infer", body, headers


def grpc_request(case: Case, request: dict, model: str):
    """The case as a tritonclient ModelInferRequest (gRPC's wire form of the same request)."""
    changed = copy.deepcopy(request)
    case.change(changed)
    return grpc_message(changed, model, bool(case.binary), case.version)


VALUES = (None, True, False, -1, 0, 2**64, 1.5, -1e308, "", "x" * 1000, "FP32", [], {},
          [None], [[1.5]], {"a": {"b": None}}, [-1, 28, 28])  # fmt: skip
# what `mutate` puts in: every JSON type, out-of-range numbers, long and empty strings


def mutate(node: dict | list, rng: random.Random) -> None:
    """Replace (or drop) one randomly chosen part of `node`, a JSON object or list."""
    while True:
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            return
        key = rng.choice(keys)
        child = node[key]
        if isinstance(child, (dict, list)) and child and rng.random() < 0.7:
            node = child
            continue
        if isinstance(node, dict) and rng.random() < 0.2:
            del node[key]
        else:
            node[key] = rng.choice(VALUES)
        return
