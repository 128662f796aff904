"""Command lines given bad input: one line naming the problem and the fix, exit status 2.

Covers training (--resume, --init-from, --epochs 0, --known-rows), export (a corrupt
training.json, nothing to export), `make eval` and `make bench` with no data or no bundle.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import speed
from evaluation import evaluate
from export.__main__ import main as export_main
from rowgen import contract
from tests.conftest import tiny_model
from tests.idx import write_tiny_dataset
from training import train
from training.checkpoint import save_weights


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_dataset(tmp_path_factory.mktemp("data"))


def _train(tmp_path: Path, data: Path, *extra: str) -> int:
    argv = ["--cell", "gru", "--hidden", "8", "--epochs", "1", "--batch-size", "16"]
    argv += ["--data-dir", str(data), "--no-verify", "--threads", "1"]
    return train.main([*argv, "--runs", str(tmp_path / "runs"), *extra])


def _one_error_line(capsys: pytest.CaptureFixture, *words: str) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert "Traceback" not in captured.out + captured.err
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_resume_without_a_checkpoint(tmp_path: Path, tiny_data: Path, capsys) -> None:
    assert _train(tmp_path, tiny_data, "--resume") == 2
    _one_error_line(capsys, "no checkpoint at", "drop --resume")


def test_resume_from_a_damaged_checkpoint(tmp_path: Path, tiny_data: Path, capsys) -> None:
    ckpt = tmp_path / "runs" / "gru" / "checkpoint.pt"
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"not a checkpoint at all")
    assert _train(tmp_path, tiny_data, "--resume") == 2
    _one_error_line(capsys, "not a readable checkpoint", "drop --resume")


@pytest.mark.parametrize("kind", ["missing", "garbage", "mismatched", "not a dict"])
def test_bad_init_from(tmp_path: Path, tiny_data: Path, capsys, kind: str) -> None:
    path = tmp_path / "course.pt"
    if kind == "garbage":
        path.write_bytes(b"\x00garbage" * 100)
    elif kind == "mismatched":  # a GRU's weights offered to the window LSTM
        torch.save(tiny_model("gru", hidden=8).state_dict(), path)
    elif kind == "not a dict":
        torch.save([torch.zeros(3)], path)
    argv = ["--mode", "window", "--hidden", "6", "--init-from", str(path)]
    assert _train(tmp_path, tiny_data, *argv) == 2
    _one_error_line(capsys, "--init-from", str(path))


def test_zero_epochs(tmp_path: Path, tiny_data: Path, capsys) -> None:
    assert _train(tmp_path, tiny_data, "--epochs", "0") == 2
    _one_error_line(capsys, "--epochs 0", "at least 1")


@pytest.mark.parametrize("values", [["0", "5"], ["9", "3"], ["4", "28"], ["x", "3"], ["", "2"]])
def test_invalid_known_rows(tmp_path: Path, tiny_data: Path, capsys, values: list[str]) -> None:
    assert _train(tmp_path, tiny_data, "--known-rows", *values) == 2
    _one_error_line(capsys, "--known-rows", "LO HI")


def test_corrupt_training_json_at_export(tmp_path: Path, capsys) -> None:
    run = tmp_path / "runs" / "gru"
    save_weights(tiny_model("gru"), run / contract.WEIGHTS)
    (run / train.TRAINING_JSON).write_text('{"name": "gru", "metrics": {')
    argv = ["--runs", str(tmp_path / "runs"), "--artifacts", str(tmp_path / "artifacts")]
    assert export_main(argv) == 2
    _one_error_line(capsys, "training.json is not valid JSON", "re-run training")
    assert not (tmp_path / "artifacts" / "gru").exists()


def test_nothing_to_export(tmp_path: Path, capsys) -> None:
    argv = ["--runs", str(tmp_path / "runs"), "--artifacts", str(tmp_path / "artifacts")]
    assert export_main(argv) == 2
    _one_error_line(capsys, "nothing to export", "make train")
    assert export_main([*argv, "lstm"]) == 2
    _one_error_line(capsys, "lstm", "train it first")


def test_eval_without_bundles(tmp_path: Path, capsys) -> None:
    argv = ["--artifacts", str(tmp_path / "none"), "--out", str(tmp_path / "out")]
    assert evaluate.main(argv) == 2
    _one_error_line(capsys, "no bundles under", "make train export")


def test_eval_without_data(tiny_bundles: Path, tmp_path: Path, capsys) -> None:
    argv = ["--artifacts", str(tiny_bundles), "--data-dir", str(tmp_path / "no-data")]
    assert evaluate.main([*argv, "--out", str(tmp_path / "out")]) == 2
    _one_error_line(capsys, str(tmp_path / "no-data"))


def test_bench_without_a_bundle(tmp_path: Path, capsys) -> None:
    argv = ["--bundle", str(tmp_path / "lstm"), "--quick", "--out", str(tmp_path / "out")]
    assert speed.main(argv) == 2
    _one_error_line(capsys, "no bundle at", "make export")
    assert not (tmp_path / "out").exists()


def test_training_json_that_is_not_an_object(tmp_path: Path, capsys) -> None:
    run = tmp_path / "runs" / "gru"
    save_weights(tiny_model("gru"), run / contract.WEIGHTS)
    (run / train.TRAINING_JSON).write_text(json.dumps([1, 2]))
    argv = ["--runs", str(tmp_path / "runs"), "--artifacts", str(tmp_path / "artifacts")]
    assert export_main(argv) == 2
    _one_error_line(capsys, "not an object")


SERVERS_WITHOUT_BUNDLES = {  # module -> argv; every server refuses an empty folder the same way
    "serve.app.__main__": [],
    "serve.api.__main__": ["--port", "0", "--grpc-port", "0"],
    "serve.ray_app.__main__": [],
    "serve.web": ["--port", "0"],
    "bench.load": [],
}
# kserve and tritonclient register the same protobuf names: the v2 servers run in their own process
OWN_PROCESS = {"serve.api.__main__": "serve.api", "serve.ray_app.__main__": "serve.ray_app"}


@pytest.mark.parametrize("module", SERVERS_WITHOUT_BUNDLES)
def test_no_bundles_is_exit_2_everywhere(module: str, tmp_path: Path, capsys) -> None:
    """docs/cli.md's rule: 2 for a bad flag or bad input (no bundles is bad input)."""
    argv = ["--artifacts", str(tmp_path / "empty"), *SERVERS_WITHOUT_BUNDLES[module]]
    if module in OWN_PROCESS:
        run = subprocess.run(
            [sys.executable, "-m", OWN_PROCESS[module], *argv], capture_output=True, text=True
        )
        code, err = run.returncode, run.stderr
    else:
        code, err = importlib.import_module(module).main(argv), capsys.readouterr().err
    assert code == 2, err
    assert "bundle" in err and "Traceback" not in err


@pytest.mark.parametrize("module", ["serve.api.__main__", "serve.ray_app.__main__"])
@pytest.mark.parametrize("flag", ["--max-batch=0", "--max-queue=0", "--batch-wait-ms=-1"])
def test_bad_batching_flag_is_a_usage_error(module: str, flag: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(module).main([flag])
    assert exit_.value.code == 2
    assert flag.split("=")[0] in capsys.readouterr().err
