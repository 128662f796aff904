"""How `make test` shares the tests between pytest-xdist workers (`-n N --dist loadgroup`).

A work unit goes to one worker whole. Units here:
- "api-servers": the files of tests/api that use its package-scoped servers (`servers`,
  `sampler_server`), so one worker starts each of those servers once; split across workers,
  each worker would start its own set, and start it again after every other package it ran;
- every other file, so its module fixtures are built once.

xdist's own loadgroup reads `xdist_group` marks through a suffix it writes into node ids, which
pytest 9.2 ignores (pytest-xdist#1386): every test became a unit of its own. So the units are
made here, from the node id, by `pytest_xdist_make_scheduler`, and `check_units` fails the run
when a test outside `SHARED_SERVER_FILES` uses the shared servers.

Units go out in collection order, which `order` sets: the longest first, so that no long one
starts last and leaves the other workers idle; the second needs no tiny bundles, so its worker
trains while the first one's builds them.
"""

from __future__ import annotations

import pytest

SHARED_SERVER_FIXTURES = ("servers", "sampler_server")  # tests/api/conftest.py
SHARED_SERVER_FILES = (  # the files whose tests use them
    "api/test_api.py",
    "api/test_api_sample.py",
    "api/test_fuzz_protocol.py",
    "api/test_hostile.py",
)
SHARED_SERVERS_UNIT = "api-servers"
LONGEST_FIRST = (  # the long units, roughly longest first (by a parallel run's per-test times)
    SHARED_SERVERS_UNIT,
    "training/test_train.py",  # second on purpose: it needs no tiny bundles
    "app/test_browser.py",
    "web/test_web.py",
    "api/test_ray.py",
    "export/test_triton_server.py",
    "bench/test_bench.py",
    "bench/test_load.py",
    "core/test_disk.py",
    "web/test_node.py",
    "app/test_runtime.py",
)


def unit_of(nodeid: str) -> str:
    """The work unit of a test, from its node id ("tests/api/test_api.py::test_x[...]")."""
    path = nodeid.split("::", 1)[0].removeprefix("tests/")
    return SHARED_SERVERS_UNIT if path in SHARED_SERVER_FILES else path


def order(items: list[pytest.Item]) -> None:
    """Put the longest units first, keeping the order within each unit."""

    def rank(item: pytest.Item) -> int:
        unit = unit_of(item.nodeid)
        return LONGEST_FIRST.index(unit) if unit in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)


def check_units(items: list[pytest.Item]) -> None:
    """Fail the run when a test uses the shared servers from a file outside their unit."""
    stray = sorted(
        {
            item.nodeid.split("::", 1)[0]
            for item in items
            if set(SHARED_SERVER_FIXTURES) & set(getattr(item, "fixturenames", ()))
            and unit_of(item.nodeid) != SHARED_SERVERS_UNIT
        }
    )
    if stray:
        raise pytest.UsageError(
            f"{', '.join(stray)} use tests/api's shared servers: add them to "
            "SHARED_SERVER_FILES in tests/scheduling.py"
        )


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist, absent when it is not installed
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup`: xdist's scope scheduling over the units of `unit_of`."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class UnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return unit_of(nodeid)

    return UnitScheduling(config, log)
