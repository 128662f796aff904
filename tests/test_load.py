"""bench.load: a short run against an in-process app on the tiny bundles (shape, not speed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.load import main


@pytest.mark.filterwarnings("ignore:::gradio.queueing")
def test_load_script_writes_its_summary(tiny_bundles: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "load.json"
    argv = ["--artifacts", str(tiny_bundles), "--device", "cpu", "--model", "gru"]
    assert main([*argv, "--clients", "2", "--seconds", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["clients"] == 2 and result["model"] == "gru"
    assert result["completions"] >= 1 and result["errors"] == 0, result["error_examples"]
    assert result["p50_ms"] > 0 and result["p99_ms"] >= result["p50_ms"]
    assert result["completions_per_s"] > 0
    assert "completions/s" in capsys.readouterr().out


def test_load_script_without_bundles(tmp_path: Path, capsys) -> None:
    assert main(["--artifacts", str(tmp_path / "none"), "--out", str(tmp_path / "x.json")]) == 1
    assert "no bundles under" in capsys.readouterr().err
