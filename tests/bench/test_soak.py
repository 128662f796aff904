"""bench.soak end to end in a few seconds: the app in its own process, two clients, the figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import soak


# slow: a Gradio server and its client cost ~12 s of CPU the fast suite lacks; tests/core/test_disk
# covers what the app leaves behind after SIGTERM, this covers the soak harness (make test-all).
@pytest.mark.slow
def test_soak_smoke(tiny_bundles: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "soak.json"
    argv = ["--minutes", str(2 / 60), "--clients", "2", "--artifacts", str(tiny_bundles),
            "--targets", "app", "--out", str(out)]  # fmt: skip
    assert soak.main(argv) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["target"] == "app" and result["clients"] == 2
    assert result["errors"] == 0, result["error_examples"]
    # two clients calling back to back for 2 s: each finished at least one call
    assert result["requests"] >= 2
    assert result["requests_per_s"] == pytest.approx(result["requests"] / result["seconds"], 0.01)
    start, end, peak = result["start"], result["end"], result["peak"]
    for key in ("rss_mb", "disk_mb", "disk_entries"):
        assert peak[key] >= max(start[key], end[key]), key  # a peak is at least every reading
    assert 50 < start["rss_mb"] < 4096  # a Python process with gradio and onnxruntime loaded
    assert end["disk_entries"] > 0  # the answers' pictures were written ...
    assert result["after_stop"]["disk_mb"] <= start["disk_mb"]  # ... and SIGTERM removed them
    assert result["exit_code"] == 0  # SIGTERM stops it cleanly
    table = capsys.readouterr().out
    assert f"| app | {result['requests']} | 0 | {result['requests_per_s']} " in table
