"""bench.load: a short run of every path but Ray against servers on the tiny bundles (the shape of
the figures, not their size; `make load` on the real bundles gives the numbers)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bench.load import main

pytestmark = pytest.mark.skipif(
    shutil.which("wrk") is None, reason="bench.load drives REST with Debian's wrk (apt install wrk)"
)


V2_PATHS = ("rest-json", "rest-binary", "grpc")


@pytest.mark.parametrize(
    "paths",
    [
        V2_PATHS,
        # slow: a Gradio server and its client cost ~8 s of CPU the fast suite lacks
        pytest.param(("gradio",), marks=pytest.mark.slow, id="gradio"),
    ],
    ids=lambda paths: "-".join(paths),
)
def test_load_script_writes_its_figures(
    paths: tuple[str, ...], tiny_bundles: Path, tmp_path: Path, capsys
) -> None:
    argv = ["--artifacts", str(tiny_bundles), "--model", "gru", "--out", str(tmp_path)]
    argv += ["--paths", *paths, "--clients", "2"]
    argv += ["--images", "3", "--seconds", "1", "--warmup-seconds", "0", "--no-tuning"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "load.json").read_text())
    cells = {(c["path"], c["images_per_request"]): c for c in result["cells"]}
    # Gradio's /complete takes one image a call; the v2 paths send three
    assert set(cells) == {(p, 1 if p == "gradio" else 3) for p in paths}
    for key, cell in cells.items():
        assert cell["requests_ok"] >= 1 and cell["errors"] == 0, (key, cell)
        assert cell["p99_ms"] >= cell["p50_ms"] > 0, (key, cell)
        assert cell["mean_batch"] >= 1, (key, cell)
        images = cell["requests_ok"] * cell["images_per_request"]
        assert cell["completions_per_s"] == pytest.approx(
            images / cell["seconds"], rel=0.02, abs=0.1
        )
        if key[0] != "gradio":
            # the server's own count: every answer the clients got, plus at most one call in
            # flight per client when the run's clock stopped
            ok, clients = cell["requests_ok"], cell["clients"]
            assert ok <= cell["server_requests"] <= ok + clients, (key, cell)
            # a batch holds whole requests, at most one from each client
            assert key[1] <= cell["mean_batch"] <= clients * key[1], (key, cell)
    servers = {"gradio"} if paths == ("gradio",) else {"v2"}
    assert set(result["servers"]) == servers
    assert all(s["rss_mib_after"] > 0 for s in result["servers"].values())
    assert (tmp_path / "load.png").stat().st_size > 0
    if "v2" in servers:
        assert "v2 REST, binary tensors" in (tmp_path / "load.md").read_text()
        assert (tmp_path / "api_completion.png").stat().st_size > 0
    assert "completions/s" in capsys.readouterr().out


@pytest.mark.parametrize("flag", ["--seconds", "--headline-seconds", "--warmup-seconds"])
def test_run_lengths_are_whole_seconds(flag: str, tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--out", str(tmp_path), flag, "0.5"])
    assert exit_info.value.code == 2
    assert "a whole number of seconds from" in capsys.readouterr().err


def test_load_script_without_the_bundle(tmp_path: Path, capsys) -> None:
    assert main(["--artifacts", str(tmp_path / "none"), "--out", str(tmp_path)]) == 2
    assert "no bundle 'lstm'" in capsys.readouterr().err
