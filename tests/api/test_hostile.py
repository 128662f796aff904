"""The v2 API under hostile input (issue 17), over REST and over gRPC.

Every request of bench.hostile is answered as it must be, and a request gRPC can say gets the
same verdict there (the gRPC code of the HTTP status, the same message); then the attacks that are
not one request: the repository extension, body limits that follow the batch cap, bodies in
flight, slow clients, connections kept after a refusal, and the log (one line per refusal, no
traceback, nothing forged). The servers are tests/api/conftest.py's.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

if importlib.util.find_spec("kserve") is None:
    pytest.skip("the v2 API needs the api extra: pip install '.[api]'", allow_module_level=True)
service_pb2 = pytest.importorskip("tritonclient.grpc.service_pb2")

from bench import hostile, sockets  # noqa: E402
from bench.servers import Running  # noqa: E402
from bench.v2_requests import GRPC_CODES, grpc_call, metadata, post, valid_request  # noqa: E402
from tests.conftest import TINY_SAMPLER  # noqa: E402

BUNDLE = "lstm"  # of the tiny bundles
MESSAGE_CHARS = 600  # a refusal's message is never longer (serve.api.refusals clips at 500)
CLOSING = (408, 413, 431)  # refusals that end the connection, the body being unread

PAIRS = [
    pytest.param(case, protocol, id=f"{case.name}-{protocol}")
    for case in (*hostile.CASES, *hostile.RAW)
    for protocol in ("REST", "gRPC")
    if protocol == "REST" or getattr(case, "both", False)
]


@pytest.mark.parametrize(("case", "protocol"), PAIRS)
def test_hostile_request_is_answered_as_it_must_be(
    case, protocol: str, server: Running, sampler_server: Running
) -> None:
    # Sampling cases need the sampling bundle. Both servers are named as fixtures, not looked up
    # by name, so that tests/scheduling.py's check sees which tests use them.
    sampling = case.model in (hostile.SAMPLE, hostile.SAMPLE_STEP)
    server, bundle = (sampler_server, TINY_SAMPLER) if sampling else (server, BUNDLE)
    valid = valid_request(metadata(server.url, bundle + case.model))
    served = hostile.served_name(bundle, case)
    path, body, headers = hostile.rest_request(case, valid, served)
    status, message, kept = post(server.url, path, body, headers)
    assert status == case.status, message
    assert all(word in message for word in case.words), (case.words, message)
    assert len(message) <= MESSAGE_CHARS and kept == (status not in CLOSING)
    if protocol == "gRPC":
        grpc_message = hostile.grpc_request(case, valid, served)
        code, details = grpc_call(server.grpc_url, "ModelInfer", grpc_message)
        assert (code, details) == (GRPC_CODES[case.status], message)


def get(server: Running, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(server.base + path, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def grpc(server: Running, method: str, message) -> tuple[str, str]:
    return grpc_call(server.grpc_url, method, message)


def test_nobody_can_unload_a_model_by_default(server: Running) -> None:
    step = BUNDLE + hostile.STEP
    unload = service_pb2.RepositoryModelUnloadRequest(model_name=step)
    code, details = grpc(server, "RepositoryModelUnload", unload)
    assert code == "PERMISSION_DENIED" and "--enable-model-repository" in details
    load = service_pb2.RepositoryModelLoadRequest(model_name=step)
    assert grpc(server, "RepositoryModelLoad", load)[0] == "PERMISSION_DENIED"
    assert get(server, "/v2/health/ready") == (200, {"ready": True})
    assert get(server, f"/v2/models/{step}/ready")[0] == 200
    paths = get(server, "/openapi.json")[1]["paths"]
    assert "/v2/models/{model_name}/infer" in paths
    assert not [p for p in paths if p.startswith("/v2/repository")]
    assert get(server, "/v2")[1]["extensions"] == []


def test_the_repository_flag_unloads_and_readiness_follows(servers: dict[str, Running]) -> None:
    small, step = servers["small"], BUNDLE + hostile.STEP
    assert get(small, "/v2")[1]["extensions"] == ["model_repository_extension"]
    unload = f"/v2/repository/models/{step}/unload"
    try:
        assert post(small.url, unload, b"", {})[0] == 200
        assert get(small, "/v2/health/ready")[0] == 503
        assert get(small, f"/v2/models/{step}/ready")[0] == 503
        ready = service_pb2.ServerReadyRequest()
        assert grpc(small, "ServerReady", ready) == ("OK", "")
        valid = valid_request(metadata(small.url, BUNDLE))  # step's is gone
        status, message, _ = post(small.url, f"/v2/models/{step}/infer", b"{}", {})
        assert status == 503 and "not ready" in str(message)
        assert post(small.url, f"/v2/models/{BUNDLE}/infer", json.dumps(valid).encode(),
                            {})[0] == 200  # fmt: skip
    finally:
        status, message, _ = post(small.url, f"/v2/repository/models/{step}/load", b"", {})
    assert status == 200, message
    assert get(small, "/v2/health/ready") == (200, {"ready": True})
    unknown = post(small.url, "/v2/repository/models/nope/load", b"", {})
    assert unknown[0] == 404


def test_the_body_limit_follows_the_batch_cap(servers: dict[str, Running]) -> None:
    """The small server takes 2 images a request: 2 x 785 values x 32 bytes + 64 KiB."""
    small, main = servers["small"], servers["main"]
    addr, infer = ("127.0.0.1", small.port), f"/v2/models/{BUNDLE}/infer"
    limit = 2 * (28 * 28 + 1) * 32 + 64 * 1024
    valid = valid_request(metadata(small.url, BUNDLE), batch=2)
    assert post(small.url, infer, json.dumps(valid).encode(), {})[0] == 200
    for chunked in (False, True):
        answer = sockets.send_body(addr, infer, limit + 1, chunked=chunked)
        assert answer.status == 413 and f"{limit:,} bytes" in answer.message, answer
        assert "2 images" in answer.message
    answer = sockets.send_body(("127.0.0.1", main.port), infer, 200 * 2**20)
    assert answer.status == 413 and "1,024 images" in answer.message, answer


def test_bodies_in_flight_past_the_budget_wait_for_a_retry(server: Running) -> None:
    """256 MiB of bodies at once: ten of 24 MiB are let in, the next ones answered 503."""
    answers = sockets.many_bodies(("127.0.0.1", server.port), f"/v2/models/{BUNDLE}/infer",
                                  12, 24 * 2**20, wait=2)  # fmt: skip
    assert sorted(a.status for a in answers) == [0] * 10 + [503] * 2, answers
    assert all("server busy" in a.message for a in answers if a.status == 503)


def test_slow_clients_are_cut_off(servers: dict[str, Running]) -> None:
    """The small server gives a request head (and a gRPC handshake) 2 s and a body 3 s."""
    small = servers["small"]
    addr = ("127.0.0.1", small.port)
    head = sockets.slow_head(addr, timeout=30)
    assert head.status == 408 and "2 s" in head.message, head
    body = sockets.slow_body(addr, f"/v2/models/{BUNDLE}/infer", timeout=30)
    assert body.status == 408 and "3 s" in body.message, body
    grpc_silent = sockets.silent(("127.0.0.1", small.grpc_port), timeout=60)
    assert grpc_silent.message == "closed", grpc_silent  # its HTTP/2 handshake timed out
    big = sockets.big_head(addr, 100_000)
    assert big.status == 431 and "65,536 bytes" in big.message, big
    assert get(small, "/v2/health/ready")[0] == 200


def test_a_refusal_keeps_the_connection_open(server: Running) -> None:
    valid = valid_request(metadata(server.url, BUNDLE))
    connection = http.client.HTTPConnection(server.url, timeout=30)
    infer = f"/v2/models/{BUNDLE}/infer"
    for body, status in ((b'{"inputs": 5}', 400), (json.dumps(valid).encode(), 200)):
        connection.request("POST", infer, body)
        response = connection.getresponse()
        response.read()
        assert response.status == status and response.getheader("connection") != "close"
    connection.close()


def test_each_refusal_is_one_log_line_without_traceback(server: Running) -> None:
    log = Path(server.log)
    before = log.stat().st_size
    valid = valid_request(metadata(server.url, BUNDLE))
    cases = {case.name: case for case in hostile.CASES}
    sent = 0
    for name in ("5 MB input name", "model name with a newline", "strings as FP32"):
        served = hostile.served_name(BUNDLE, cases[name])
        path, body, headers = hostile.rest_request(cases[name], valid, served)
        assert post(server.url, path, body, headers)[0] in (400, 404)
        sent += 1
    long_name = hostile.Case("", "", lambda r: None, 404, model_name="m" * 100_000)
    message = hostile.grpc_request(long_name, valid, "m" * 100_000)
    code, details = grpc(server, "ModelInfer", message)
    assert code == "NOT_FOUND" and "(100,000 characters)" in details  # not "Stream removed"
    sent += 1
    with log.open(errors="replace") as text:
        text.seek(before)
        lines = text.read().splitlines()
    refused = [line for line in lines if "kserve.refusals" in line]
    assert len(refused) == sent, lines
    assert all(" WARNING " in line and len(line) < 1500 for line in refused)
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line]
    assert not [line for line in lines if line.startswith("refused forged line")]
