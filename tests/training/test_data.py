"""Data loading: tiny IDX files load, damaged or missing files give one clear error."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import torch

from tests.idx import write_tiny_dataset
from training import data


def test_tiny_idx_files_load(tmp_path: Path) -> None:
    folder = write_tiny_dataset(tmp_path / "d")
    split = data.load_split("fashion-mnist", "train", folder, verify=False)
    assert split.images.shape == (64, 28, 28) and split.images.dtype == torch.float32
    assert split.labels.shape == (64,)
    assert float(split.images.min()) >= 0.0 and float(split.images.max()) <= 1.0
    raw = gzip.decompress((folder / "train-images-idx3-ubyte.gz").read_bytes())[16:]
    assert split.images[0, 0, 0] == pytest.approx(raw[0] / 255.0)


def test_truncated_file_names_the_file(tmp_path: Path) -> None:
    folder = write_tiny_dataset(tmp_path / "d")
    target = folder / "t10k-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-40])
    with pytest.raises(data.DataError, match=r"t10k-images-idx3-ubyte\.gz.*truncated or corrupt"):
        data.load_split("fashion-mnist", "test", folder, verify=False)


def test_not_the_official_file_is_refused_when_verifying(tmp_path: Path) -> None:
    folder = write_tiny_dataset(tmp_path / "d")
    with pytest.raises(data.DataError, match=r"train-images.*official.*--no-verify"):
        data.load_split("fashion-mnist", "train", folder, verify=True)


def test_bad_idx_content_is_a_clear_error(tmp_path: Path) -> None:
    folder = write_tiny_dataset(tmp_path / "d")
    (folder / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"not an idx file"))
    with pytest.raises(data.DataError, match="could not be parsed"):
        data.load_split("fashion-mnist", "train", folder, verify=False)


def test_idx_body_shorter_than_its_header_says_is_a_clear_error(tmp_path: Path) -> None:
    folder = write_tiny_dataset(tmp_path / "d")
    path = folder / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-3]))
    short = r"could not be parsed.*29 bytes; its header says \(32,\)"
    with pytest.raises(data.DataError, match=short):
        data.load_split("fashion-mnist", "test", folder, verify=False)


def test_missing_files_are_listed(tmp_path: Path) -> None:
    with pytest.raises(data.DataError, match=r"lacks train-images-idx3-ubyte\.gz"):
        data.load_split("fashion-mnist", "train", tmp_path, verify=False)


def test_no_source_lists_the_three_ways(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    monkeypatch.setitem(data.DEBIAN_DIRS, "fashion-mnist", tmp_path / "absent")
    with pytest.raises(data.DataError) as info:
        data.load_split("fashion-mnist", "test", None, download=False)
    message = str(info.value)
    assert "--data-dir" in message and "dataset-fashion-mnist" in message and "online" in message


def test_environment_variable_points_at_the_data(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    folder = write_tiny_dataset(tmp_path / "d")
    monkeypatch.setenv(data.DATA_DIR_ENV, str(folder))
    assert data.load_split("fashion-mnist", "test", verify=False).source == str(folder)


def test_official_test_split_verifies(data_dir: Path) -> None:
    split = data.load_split("fashion-mnist", "test", data_dir)
    assert split.images.shape == (10_000, 28, 28)
    assert torch.bincount(split.labels).tolist() == [1000] * 10
