"""bench.soak end to end in a few seconds: the app in its own process, two clients, the figures."""

from __future__ import annotations

import json
from pathlib import Path

from bench import soak


def test_soak_smoke(tiny_bundles: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "soak.json"
    argv = ["--minutes", str(2 / 60), "--clients", "2", "--artifacts", str(tiny_bundles),
            "--targets", "app", "--out", str(out)]  # fmt: skip
    assert soak.main(argv) == 0
    (result,) = json.loads(out.read_text())["results"]
    assert result["target"] == "app" and result["requests"] >= 2
    assert result["errors"] == 0, result["error_examples"]
    assert result["start"]["rss_mb"] > 50 and result["end"]["disk_entries"] > 0
    assert result["exit_code"] == 0  # SIGTERM stops it cleanly
    assert "| app |" in capsys.readouterr().out
