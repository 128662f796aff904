"""Property-based tests of the manifest loader: any manifest.json opens or raises BundleError.

Arbitrary JSON, arbitrary bytes, and a real manifest with one part replaced by arbitrary JSON
(or removed), read from disk by `open_bundle` exactly as a server would. `make fuzz` runs many
more cases (tests/conftest.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rowgen import contract
from rowgen.bundle import BundleError, open_bundle, write_manifest
from rowgen.config import ModelConfig
from rowgen.manifest import check_manifest

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from([contract.FORMAT, "lstm", "stream", contract.WEIGHTS, "0" * 64]),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner),
    max_leaves=20,
)
# Names a hostile or broken manifest could list: escapes, separators, the manifest itself.
file_names = st.text(max_size=12) | st.sampled_from(
    ["..", ".", "", "../weights.safetensors", "/etc/passwd", "a/b", "a\\b", "x\0y", "manifest.json"]
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle as the loader sees it: files with their sizes and hashes, a real manifest.

    The loader never looks inside the programs, so a few bytes each stand in for them and the
    fuzz tests need no export.
    """
    folder = tmp_path_factory.mktemp("fuzz") / "gru"
    folder.mkdir()
    for name in (*contract.BUNDLE_FILES, "training.json"):
        (folder / name).write_bytes(name.encode() * 3)
    config = ModelConfig("gru", "stream", 8, 1)
    header = {"name": "gru", "config": config.to_dict(), "contract": contract.as_data(config)}
    write_manifest(folder, header)
    return folder


@pytest.fixture(scope="module")
def real(folder: Path) -> dict:
    """The valid manifest, as written (tests rewrite the file, never this)."""
    return open_bundle(folder).manifest


def _opens_or_says_why(folder: Path) -> None:
    try:
        bundle = open_bundle(folder)
    except BundleError as exc:
        assert str(exc).strip()
    else:
        assert isinstance(bundle.config, ModelConfig)
        assert set(bundle.blobs) == set(bundle.manifest["files"])


@given(json_values)
def test_any_json_value_is_a_manifest_or_a_bundle_error(value: object) -> None:
    try:
        config = check_manifest(value, "manifest.json")
    except BundleError as exc:
        assert str(exc).startswith("manifest.json: ")
    else:
        assert isinstance(config, ModelConfig)


@given(st.binary(max_size=200))
def test_any_bytes_on_disk(folder: Path, real: dict, data: bytes) -> None:
    """(`real` is requested so the valid manifest is read before this overwrites the file.)"""
    (folder / contract.MANIFEST).write_bytes(data)
    _opens_or_says_why(folder)


def _paths(value: object, prefix: tuple = ()) -> list[tuple]:
    """Every key path in a JSON object, e.g. ("files", "step.onnx", "sha256")."""
    if not isinstance(value, dict):
        return []
    found = []
    for key, inner in value.items():
        found.append((*prefix, key))
        found += _paths(inner, (*prefix, key))
    return found


@given(st.data())
def test_a_real_manifest_with_one_part_replaced(folder: Path, real: dict, data) -> None:
    manifest = json.loads(json.dumps(real))
    path = data.draw(st.sampled_from(_paths(manifest)), label="path")
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    if data.draw(st.booleans(), label="remove"):
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(json_values, label="value")
    (folder / contract.MANIFEST).write_text(json.dumps(manifest))
    _opens_or_says_why(folder)


@given(file_names, json_values)
def test_listed_file_names_never_leave_the_folder(folder: Path, real: dict, name, entry) -> None:
    manifest = json.loads(json.dumps(real))
    manifest["files"][name] = manifest["files"][contract.WEIGHTS] if entry is None else entry
    (folder / contract.MANIFEST).write_text(json.dumps(manifest))
    try:
        bundle = open_bundle(folder)
    except BundleError as exc:
        assert str(exc).strip()
    else:  # only a plain name of a real file in the folder can pass its hash
        assert "/" not in name and "\\" not in name and name not in ("", ".", "..")
        assert (folder / name).resolve().parent == folder.resolve()
        assert bundle.read(name) == (folder / name).read_bytes()
