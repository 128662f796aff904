"""tests/scheduling.py: the units pytest-xdist's workers get, their order, and the check that
keeps every user of tests/api's shared servers in one unit."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import scheduling


def item(nodeid: str, *fixtures: str) -> SimpleNamespace:
    return SimpleNamespace(nodeid=nodeid, fixturenames=list(fixtures))


def test_units_follow_files_and_the_shared_servers() -> None:
    assert scheduling.unit_of("tests/api/test_hostile.py::test_x[a::b@c-REST]") == "api-servers"
    assert scheduling.unit_of("tests/api/test_api_sample.py::test_y") == "api-servers"
    assert scheduling.unit_of("tests/api/test_ray.py::test_z") == "api/test_ray.py"
    assert scheduling.unit_of("tests/core/test_noise.py::test_w[1]") == "core/test_noise.py"


def test_longest_units_go_first_and_keep_their_order() -> None:
    items = [
        item("tests/core/test_noise.py::a"),
        item("tests/web/test_web.py::b"),
        item("tests/api/test_api.py::c"),
        item("tests/core/test_noise.py::d"),
        item("tests/api/test_hostile.py::e"),
    ]
    scheduling.order(items)
    assert [i.nodeid[-1] for i in items] == ["c", "e", "b", "a", "d"]


def test_a_stray_user_of_the_shared_servers_fails_the_run() -> None:
    fine = [item("tests/api/test_api.py::a", "servers"), item("tests/api/test_ray.py::b")]
    scheduling.check_units(fine)
    stray = [*fine, item("tests/app/test_new.py::c", "sampler_server")]
    with pytest.raises(pytest.UsageError, match=r"tests/app/test_new\.py.*SHARED_SERVER_FILES"):
        scheduling.check_units(stray)
