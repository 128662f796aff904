"""Bundles on disk: every file is hash-checked on load, and a failed export changes nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest

from export import build
from rowgen import contract
from rowgen.bundle import BundleError, find_bundles, open_bundle
from rowgen.publish import atomic_folder
from tests.conftest import tiny_model
from training.checkpoint import save_weights


@pytest.fixture
def bundle_copy(tiny_bundles: Path, tmp_path: Path) -> Path:
    folder = tmp_path / "gru"
    shutil.copytree(tiny_bundles / "gru", folder)
    return folder


def _files(folder: Path) -> list[str]:
    return sorted(json.loads((folder / contract.MANIFEST).read_text())["files"])


def test_manifest_lists_every_file_with_size_and_hash(bundle_copy: Path) -> None:
    manifest = open_bundle(bundle_copy).manifest
    on_disk = sorted(p.name for p in bundle_copy.iterdir() if p.name != contract.MANIFEST)
    assert sorted(manifest["files"]) == on_disk
    assert set(contract.BUNDLE_FILES) <= set(on_disk)
    for entry in manifest["files"].values():
        assert len(entry["sha256"]) == 64 and entry["bytes"] > 0


@pytest.mark.parametrize("index", range(len(contract.BUNDLE_FILES)))
def test_a_flipped_byte_in_any_file_is_named(bundle_copy: Path, index: int) -> None:
    name = contract.BUNDLE_FILES[index]
    path = bundle_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=f"{name} does not match its sha256"):
        open_bundle(bundle_copy)


def test_truncated_and_missing_files_are_named(bundle_copy: Path) -> None:
    weights = bundle_copy / contract.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(BundleError, match=r"weights\.safetensors has 100 bytes"):
        open_bundle(bundle_copy)
    weights.unlink()
    with pytest.raises(BundleError, match=r"weights\.safetensors is missing"):
        open_bundle(bundle_copy)


def test_missing_or_foreign_manifest(bundle_copy: Path) -> None:
    manifest = bundle_copy / contract.MANIFEST
    manifest.write_text('{"format": "something-else/9"}')
    with pytest.raises(BundleError, match="format is 'something-else/9'"):
        open_bundle(bundle_copy)
    manifest.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        open_bundle(bundle_copy)
    manifest.unlink()
    with pytest.raises(BundleError, match=r"manifest\.json is missing.*make export"):
        open_bundle(bundle_copy)
    assert find_bundles(bundle_copy.parent) == []


def test_interrupted_export_leaves_the_previous_bundle(
    bundle_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = {name: (bundle_copy / name).read_bytes() for name in _files(bundle_copy)}
    model = tiny_model("gru", seed=7)  # different weights: a real change, were it to land
    weights = tmp_path / "new.safetensors"
    save_weights(model, weights)

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as if the export were stopped half-way

    monkeypatch.setattr(build, "validate", killed)
    with pytest.raises(KeyboardInterrupt):
        build.build_bundle(model, bundle_copy, weights)
    open_bundle(bundle_copy)
    assert {name: (bundle_copy / name).read_bytes() for name in _files(bundle_copy)} == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_atomic_folder_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "b"
    with atomic_folder(target) as tmp:
        (tmp / "x").write_text("one")
    with pytest.raises(RuntimeError), atomic_folder(target) as tmp:
        (tmp / "x").write_text("two")
        raise RuntimeError("export failed")
    assert (target / "x").read_text() == "one"
    with atomic_folder(target) as tmp:
        (tmp / "x").write_text("three")
    assert (target / "x").read_text() == "three"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b"]


def _rewrite(folder: Path, change) -> None:
    manifest = json.loads((folder / contract.MANIFEST).read_text())
    change(manifest)
    (folder / contract.MANIFEST).write_text(json.dumps(manifest))


def _list_file(name: str):
    def change(manifest: dict) -> None:
        manifest["files"][name] = manifest["files"][contract.WEIGHTS]

    return change


def _set(*path_and_value):
    *path, value = path_and_value

    def change(manifest: dict) -> None:
        target = manifest
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return change


@pytest.mark.parametrize(
    "change, message",
    [
        (_list_file("../gru/weights.safetensors"), "not a plain name"),
        (_list_file("/etc/hostname"), "not a plain name"),
        (_list_file(".."), "not a plain name"),
        (_list_file(contract.MANIFEST), "not a plain name"),
        (_set("files", []), "files must be an object"),
        (_set("files", contract.WEIGHTS, "bytes", "12"), "bytes must be a size"),
        (_set("files", contract.WEIGHTS, "sha256", 5), "sha256 must be 64 hex digits"),
        (_set("config", "hidden", "8"), "config hidden must be int"),
        (_set("config", "hidden", True), "config hidden must be int"),
        (_set("config", "cell", "transformer"), "unknown cell"),
        (_set("config", None), "config must be an object"),
        (_set("contract", "opset", 11), "contract opset is 11"),
        (_set("contract", contract.STEP_ONNX, "inputs", 0, "name", "x"), "another contract"),
        (_set("contract", "tolerance", {"step": 1.0, "complete": 1.0}), "contract tolerance"),
        (_set("format", "rowgen-bundle/2"), "format is 'rowgen-bundle/2'"),
        (lambda m: m.pop("config"), "config must be an object"),
        (lambda m: m["files"].pop(contract.COMPLETE_ONNX), "manifest lists no complete.onnx"),
    ],
)
def test_malformed_manifest_is_a_bundle_error(bundle_copy: Path, change, message: str) -> None:
    _rewrite(bundle_copy, change)
    with pytest.raises(BundleError, match=re.escape(message)) as caught:
        open_bundle(bundle_copy)
    assert "make export" in str(caught.value)


def test_a_symlinked_file_is_refused_even_with_the_right_bytes(
    bundle_copy: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.onnx"
    shutil.move(bundle_copy / contract.STEP_ONNX, outside)
    (bundle_copy / contract.STEP_ONNX).symlink_to(outside)
    with pytest.raises(BundleError, match=r"step\.onnx is a symlink"):
        open_bundle(bundle_copy)


def test_a_fifo_in_place_of_a_file_does_not_hang(bundle_copy: Path) -> None:
    (bundle_copy / contract.STEP_TS).unlink()
    os.mkfifo(bundle_copy / contract.STEP_TS)
    with pytest.raises(BundleError, match=r"step\.ts is not a regular file"):
        open_bundle(bundle_copy)


def test_runtimes_get_the_bytes_that_were_verified(bundle_copy: Path) -> None:
    bundle = open_bundle(bundle_copy)
    verified = bundle.read(contract.COMPLETE_ONNX)
    assert verified == (bundle_copy / contract.COMPLETE_ONNX).read_bytes()
    (bundle_copy / contract.COMPLETE_ONNX).write_bytes(b"swapped after the check")
    assert bundle.read(contract.COMPLETE_ONNX) == verified  # no second read of the path
    with pytest.raises(BundleError, match=r"lists no other\.bin"):
        bundle.read("other.bin")


@pytest.mark.parametrize("name", ["lstm", "lstm-window"])
def test_onnx_files_say_what_they_do(tiny_bundles: Path, name: str) -> None:
    import onnx

    config = open_bundle(tiny_bundles / name).config
    for file, specs in [
        (contract.STEP_ONNX, contract.step_inputs(config) + contract.step_outputs(config)),
        (contract.COMPLETE_ONNX, contract.complete_inputs() + contract.complete_outputs()),
    ]:
        doc = onnx.load(str(tiny_bundles / name / file), load_external_data=False).doc_string
        assert doc.startswith(f"rowgen {file}: an LSTM {config.mode}-mode row generator"), doc
        for spec in specs:
            assert f"  {spec.name} {spec.dtype} [" in doc, f"{file}: {spec.name} is not described"
        assert "Known rows: the top k rows (1 <= k <= 27)" in doc
