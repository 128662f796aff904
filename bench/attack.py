"""Attack the v2 API on loopback, boundedly, and print what came back: `make attack`.

    python -m bench.attack --artifacts artifacts [--bundle lstm] [--mutations 200]

Starts `python -m serve.api` on free loopback ports (bench.servers) as `make api` runs it, but
with --header-timeout-s 5 --body-timeout-s 10 so that the slow-client cases end soon, then tries
one thing after another: every request of bench.hostile over REST and, where gRPC can say it,
over gRPC (both must give the same verdict); bodies of 200 MB declared and streamed; step and
sample batches past the cap with real data; 20 clients holding request heads open while a good
request is served; a 1 MB header; a body sent too slowly; an answer never read; bodies in flight
past the server's budget; unload over gRPC, then readiness and /openapi.json; random mutations
of a valid request. It prints a table (what was tried, the protocol, the answer, whether that is
the answer the server must give, seconds), the server's peak resident memory (VmHWM, /proc) after
the 200 MB bodies and at the end, and what its log holds. Every case has its own time limit, the
traffic is bounded, and the server is stopped at the end. Exit status 1 if any answer was wrong.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from bench import hostile, sockets
from bench.servers import Running, peak_rss_mib, rss_mib, start
from bench.v2_requests import GRPC_CODES, binary_body, grpc_call, metadata, post, valid_request
from rowgen.tables import markdown_table

HEADER_TIMEOUT_S, BODY_TIMEOUT_S = 5, 10  # short, so the slow-client cases end soon
FLAGS = ["--header-timeout-s", str(HEADER_TIMEOUT_S), "--body-timeout-s", str(BODY_TIMEOUT_S)]


class Table:
    def __init__(self) -> None:
        self.rows: list[list[str]] = []
        self.failures = 0

    def add(self, what: str, protocol: str, answer: str, ok: bool, seconds: float) -> None:
        self.failures += not ok
        cell = answer.replace("|", "\\|").replace("\n", "\\n")
        self.rows.append([what, protocol, cell[:110], "yes" if ok else "**NO**", f"{seconds:.2f}"])
        print(f"bench.attack: {what} ({protocol}): {cell[:110]}", flush=True)


def timed(call, *args):
    """(call(*args), the seconds it took)."""
    start = time.monotonic()
    result = call(*args)
    return result, time.monotonic() - start


def run_cases(server: Running, bundle: str, table: Table) -> None:
    """bench.hostile's requests, over REST and (for `both`) over gRPC."""
    metas: dict[str, dict | None] = {}
    for case in (*hostile.CASES, *hostile.RAW):
        model = bundle + case.model
        if model not in metas:
            try:
                metas[model] = metadata(server.url, model)
            except (OSError, ValueError):
                metas[model] = None
        if metas[model] is None or "inputs" not in metas[model]:
            table.add(case.name, "-", f"skipped: {bundle} has no {model}", True, 0.0)
            continue
        request = valid_request(metas[model])
        served = hostile.served_name(bundle, case)
        path, body, headers = hostile.rest_request(case, request, served)
        (status, message, kept), seconds = timed(post, server.url, path, body, headers)
        message = str(message)
        ok = status == case.status and all(w in message for w in case.words)
        ok = ok and len(message) <= 600 and kept == (status not in (408, 413, 431))
        table.add(case.name, "REST", f"{status} {message}", ok, seconds)
        if isinstance(case, hostile.Case) and case.both:
            grpc_message = hostile.grpc_request(case, request, served)
            (code, details), seconds = timed(grpc_call, server.grpc_url, "ModelInfer", grpc_message)
            same = code == GRPC_CODES[case.status] and details == message
            table.add(case.name, "gRPC", f"{code} {details}", same, seconds)


def run_bodies(server: Running, bundle: str, table: Table) -> float:
    """200 MB bodies, and real batches past the cap; the peak memory after the bodies (MiB)."""
    addr = ("127.0.0.1", server.port)
    for chunked in (False, True):
        infer = f"/v2/models/{bundle}/infer"
        answer = sockets.send_body(addr, infer, 200 * 2**20, chunked=chunked)
        how = "streamed chunked" if chunked else "in Content-Length"
        text = f"{answer.status} after {answer.sent / 2**20:.0f} MiB sent: {answer.message}"
        table.add(f"200 MB body, {how}", "REST", text, answer.status == 413, answer.seconds)
    peak = peak_rss_mib(server)
    for suffix, images, status in ((hostile.STEP, 50_000, 413), (hostile.STEP, 2048, 400),
                                   (hostile.SAMPLE, 2048, 400)):  # fmt: skip
        model = bundle + suffix
        meta = metadata(server.url, model)
        if "inputs" not in meta:
            continue
        request = valid_request(meta, images, arrays=True)
        body, headers = binary_body(request, tuple(range(len(request["inputs"]))))
        answer = sockets.send_body(addr, f"/v2/models/{model}/infer", body, headers)
        what = f"{model} with {images:,} images ({len(body) / 2**20:.0f} MB binary)"
        text = f"{answer.status} {answer.message}"
        table.add(what, "REST", text, answer.status == status, answer.seconds)
    return peak


def run_clients(server: Running, bundle: str, table: Table) -> None:
    """Slow heads while a good request is served, a 1 MB header, a slow body, more bodies in
    flight than the server holds, and an answer never read."""
    addr, infer = ("127.0.0.1", server.port), f"/v2/models/{bundle}/infer"
    meta = metadata(server.url, bundle)
    body = json.dumps(valid_request(meta)).encode()
    holding: list[sockets.Answer] = []
    thread = _background(lambda: holding.extend(sockets.slow_heads(addr, 20, 3 * HEADER_TIMEOUT_S)))
    time.sleep(1.0)  # the 20 heads are open
    (status, _, _), seconds = timed(post, server.url, infer, body, {})
    table.add("good request while 20 heads hang", "REST", str(status), status == 200, seconds)
    thread.join()
    cut = [a for a in holding if a.status == 408]
    slowest = max(a.seconds for a in holding)
    text = f"{len(cut)} of 20 answered 408, the last after {slowest:.1f} s"
    ok = len(cut) == 20 and slowest < HEADER_TIMEOUT_S + 2
    table.add("20 slow request heads", "REST", text, ok, slowest)
    answer = sockets.silent(("127.0.0.1", server.grpc_port), 6 * HEADER_TIMEOUT_S)
    text = f"{answer.message} by the server after {answer.seconds:.1f} s"
    ok = answer.message == "closed" and answer.seconds < HEADER_TIMEOUT_S + 2
    table.add("a connection that never speaks", "gRPC", text, ok, answer.seconds)
    answer = sockets.big_head(addr, 2**20)
    text = f"{answer.status} {answer.message}"
    table.add("a 1 MB header", "REST", text, answer.status == 431, answer.seconds)
    answer = sockets.slow_body(addr, infer, BODY_TIMEOUT_S + 20)
    text = f"{answer.status} {answer.message}"
    table.add("2 of 1,000 body bytes", "REST", text, answer.status == 408, answer.seconds)
    answers, seconds = timed(sockets.many_bodies, addr, infer, 14, 24 * 2**20)
    busy = sum(a.status == 503 for a in answers)
    text = f"{len(answers) - busy} let in, {busy} answered 503"
    table.add("14 bodies of 24 MiB at once", "REST", text, 0 < busy < len(answers), seconds)
    request = valid_request(meta, 1024, arrays=True)
    big, headers = binary_body(request, tuple(range(len(request["inputs"]))))
    headers["Content-Type"] = "application/json"
    answer = sockets.unread_answer(addr, infer, big, headers, wait=BODY_TIMEOUT_S + 3)
    ok = answer.message.startswith("dropped")
    table.add("answer of 1,024 images never read", "REST", answer.message, ok, answer.seconds)


def _background(work) -> threading.Thread:
    thread = threading.Thread(target=work)
    thread.start()
    return thread


def run_repository(server: Running, bundle: str, table: Table) -> None:
    """Unload over gRPC; then the server must still be ready, the model too, and /openapi.json
    must not offer the repository routes."""
    from tritonclient.grpc import service_pb2

    step = bundle + hostile.STEP
    message = service_pb2.RepositoryModelUnloadRequest(model_name=step)
    (code, details), seconds = timed(grpc_call, server.grpc_url, "RepositoryModelUnload", message)
    table.add("unload " + step, "gRPC", f"{code} {details}", code == "PERMISSION_DENIED", seconds)
    ready = _get(server, "/v2/health/ready").get("ready")
    model = _get(server, f"/v2/models/{step}/ready").get("ready")
    paths = [p for p in _get(server, "/openapi.json")["paths"] if "repository" in p]
    text = f"server ready {ready}, {step} ready {model}, repository routes offered: {paths}"
    table.add("after the unloads", "REST", text, ready is True and model is True and not paths, 0)


def _get(server: Running, path: str) -> dict:
    with urllib.request.urlopen(server.base + path, timeout=30) as response:
        return json.loads(response.read())


def run_mutations(server: Running, bundle: str, count: int, table: Table) -> None:
    """`count` valid requests with one random part replaced by a hostile value (seeded)."""
    rng = random.Random(0)
    valid = valid_request(metadata(server.url, bundle))
    codes: dict[int, int] = {}
    start = time.monotonic()
    for _ in range(count):
        request = json.loads(json.dumps(valid))
        hostile.mutate(request, rng)
        status, _, _ = post(server.url, f"/v2/models/{bundle}/infer",
                                    json.dumps(request).encode(), {})  # fmt: skip
        codes[status] = codes.get(status, 0) + 1
    text = ", ".join(f"{n} x {c}" for c, n in sorted(codes.items()))
    ok = all(c == 200 or 400 <= c < 500 for c in codes)
    table.add(f"{count} random mutations", "REST", text, ok, time.monotonic() - start)


def log_summary(log: Path) -> tuple[str, bool]:
    lines = log.read_text(errors="replace").splitlines()
    tracebacks = sum(line.startswith("Traceback") for line in lines)
    errors = sum(" ERROR " in line for line in lines)
    refused = sum("kserve.refusals" in line for line in lines)
    forged = sum(line.startswith("refused forged line") for line in lines)
    text = (
        f"server log: {len(lines)} lines, {refused} refusal lines, {errors} at ERROR, "
        f"{tracebacks} tracebacks, {forged} forged lines"
    )
    return text, tracebacks == 0 and errors == 0 and forged == 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.attack", description="hostile traffic against the v2 API"
    )
    parser.add_argument("--artifacts", default="artifacts", help="bundles to serve")
    parser.add_argument("--bundle", help="the bundle to attack (default: the first served)")
    parser.add_argument("--mutations", type=int, default=200, help="random bad requests")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs = Path(tempfile.mkdtemp(prefix="rowgen-attack-"))
    server = start("v2", args.artifacts, "cpu", logs, FLAGS, timeout=300)
    table = Table()
    try:
        bundle = args.bundle or _get(server, "/v2/models")["models"][0]
        started = rss_mib(server)
        run_cases(server, bundle, table)
        peak_bodies = run_bodies(server, bundle, table)
        run_clients(server, bundle, table)
        run_repository(server, bundle, table)
        run_mutations(server, bundle, args.mutations, table)
        peak, now = peak_rss_mib(server), rss_mib(server)
    finally:
        server.stop()
    text, clean = log_summary(server.log)
    print()
    print(markdown_table(["tried", "over", "answer", "as it must be", "s"], table.rows))
    print()
    print(
        f"server memory: {started:.0f} MiB after start, peak {peak_bodies:.0f} MiB after the "
        f"200 MB bodies, peak {peak:.0f} MiB overall, {now:.0f} MiB at the end (VmHWM/VmRSS)"
    )
    print(text + f" ({server.log})")
    failures = table.failures + (not clean)
    print(f"bench.attack: {len(table.rows)} tries, {failures} not as they must be")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
