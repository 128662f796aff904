"""The v2 API servers the tests of tests/api share, one process each, started once per run.

`servers["main"]`: the tiny bundles as `make api` serves them (20 ms batching window);
`servers["small"]`: a 2-image queue (the batch cap, and so the body limit, of 2 images) holding
requests 300 ms, with the repository extension on and slow-client timeouts of 2 s (head) and 3 s
(body), for the tests that need those; `sampler_server`: a tiny sampling bundle, for
`<bundle>_sample`. Starting a server costs seconds here: tests reuse these rather than start
their own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.servers import Running, start

SMALL_FLAGS = ["--max-queue", "2", "--batch-wait-ms", "300", "--enable-model-repository",
               "--header-timeout-s", "2", "--body-timeout-s", "3"]  # fmt: skip


def start_server(artifacts: Path, log_dir: Path, *flags: str) -> Running:
    return start("v2", artifacts, "cpu", log_dir, list(flags), timeout=120)


@pytest.fixture(scope="package")
def servers(tiny_bundles: Path, tmp_path_factory) -> Iterator[dict[str, Running]]:
    logs = tmp_path_factory.mktemp("api-logs")
    started = {"main": start_server(tiny_bundles, logs, "--batch-wait-ms", "20")}
    try:
        started["small"] = start_server(tiny_bundles, logs, *SMALL_FLAGS)
        yield started
    finally:
        for server in started.values():
            server.stop()


@pytest.fixture(scope="package")
def server(servers: dict[str, Running]) -> Running:
    return servers["main"]


@pytest.fixture(scope="package")
def sampler_server(tiny_sampler_bundles: Path, tmp_path_factory) -> Iterator[Running]:
    running = start_server(tiny_sampler_bundles, tmp_path_factory.mktemp("api-sample-logs"))
    try:
        yield running
    finally:
        running.stop()
