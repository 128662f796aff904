"""Checking a parsed `manifest.json` before anything in it is trusted. Torch-free.

`rowgen.bundle.open_bundle` runs `check_manifest` on every manifest it reads;
tests/core/test_fuzz_manifest.py feeds it arbitrary JSON (`make fuzz` runs many more cases). Any
input either passes or raises BundleError with a message; nothing else escapes.

What is checked: the format tag; the model config (exact keys and types); the contract the
bundle was exported under against the code's own (`CHECKED_CONTRACT`); and the file table,
whose names must be plain names of files in the bundle's own folder (no `/`, `\\`, `..` or
absolute paths), each with an integer size and a 64-hex-digit sha256.
"""

from __future__ import annotations

import json
import re
import reprlib

from rowgen import contract
from rowgen.config import ModelConfig


class BundleError(RuntimeError):
    """A bundle is missing, incomplete or altered; the message names the file and the fix."""


# The contract keys a runtime relies on: tensor names, dtypes and shapes, the known-rows range,
# opset and tolerances. Keys the code may add later (descriptions, optional programs) are
# carried in the manifest but not compared, so adding one does not invalidate shipped bundles.
CHECKED_CONTRACT = (
    "image_size",
    "known_rows_range",
    "opset",
    contract.STEP_ONNX,
    contract.COMPLETE_ONNX,
    "tolerance",
)
_CONFIG_TYPES = {"cell": str, "mode": str, "hidden": int, "layers": int}
_HEAD_TYPES = {"head": str, "noise_dim": int}
_FLOW_TYPES = {"flow_width": int, "flow_steps": int, "flow_integrator": str}
_ALL_CONFIG_KEYS = set(_CONFIG_TYPES) | set(_HEAD_TYPES)
_FLOW_CONFIG_KEYS = _ALL_CONFIG_KEYS | set(_FLOW_TYPES)
_CLASSES_TYPES = {"flow_classes": int}
_SHA256 = re.compile(r"[0-9a-f]{64}")


def is_plain_name(name: object) -> bool:
    """A file name inside the bundle folder itself: no separators, no `.`/`..`, no NUL."""
    return (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and not any(c in name for c in "/\\\0")
    )


def _kind(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), _short(value))


def _short(value: object) -> str:
    """repr cut to a readable length: the message quotes the input, however large it is."""
    return reprlib.repr(value)


def _config(manifest: dict, where: str) -> ModelConfig:
    data = manifest.get("config")
    keys = set(data) if isinstance(data, dict) else set()
    # A plain model's config has the four base keys; a sampling model's adds its head's two, and
    # a flow head its size and solver, and one that holds a class its number of classes.
    allowed = (
        set(_CONFIG_TYPES),
        _ALL_CONFIG_KEYS,
        _FLOW_CONFIG_KEYS,
        _FLOW_CONFIG_KEYS | set(_CLASSES_TYPES),
    )
    if not isinstance(data, dict) or keys not in allowed:
        raise BundleError(
            f"{where}: config must be an object with keys {sorted(_CONFIG_TYPES)} "
            f"(and {sorted(_HEAD_TYPES)} for a sampling model, {sorted(_FLOW_TYPES)} too for a "
            f"flow head, and {sorted(_CLASSES_TYPES)} for one that holds a class), found "
            f"{_kind(data) if not isinstance(data, dict) else sorted(data)}"
        )
    for key, kind in (_CONFIG_TYPES | _HEAD_TYPES | _FLOW_TYPES | _CLASSES_TYPES).items():
        value = data.get(key, kind())
        if not isinstance(value, kind) or isinstance(value, bool):
            raise BundleError(
                f"{where}: config {key} must be {kind.__name__}, found {_short(value)}"
            )
    try:
        return ModelConfig(**data)
    except ValueError as exc:
        raise BundleError(f"{where}: bad model config ({exc})") from exc


def _contract(manifest: dict, config: ModelConfig, where: str) -> None:
    found = manifest.get("contract")
    if not isinstance(found, dict):
        raise BundleError(f"{where}: contract must be an object, found {_kind(found)}")
    expected = json.loads(json.dumps(contract.as_data(config)))  # tuples -> lists, as stored
    sampling = (
        (contract.SAMPLE_ONNX, contract.SAMPLE_STEP_ONNX, "noise_dim") if config.stochastic else ()
    )
    for key in (*CHECKED_CONTRACT, *sampling):
        if found.get(key) != expected[key]:
            raise BundleError(
                f"{where}: contract {key} is {_short(found.get(key))}, this code's is "
                f"{expected[key]!r}; the bundle was exported under another contract"
            )


def _files(manifest: dict, config: ModelConfig, where: str) -> dict[str, dict]:
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise BundleError(f"{where}: files must be an object, found {_kind(files)}")
    for name, entry in files.items():
        if not is_plain_name(name) or name == contract.MANIFEST:
            raise BundleError(
                f"{where}: file name {_short(name)} is not a plain name of a file in the bundle "
                "(no '/', '\\', '..', absolute paths or the manifest itself)"
            )
        if not isinstance(entry, dict):
            raise BundleError(
                f"{where}: files[{_short(name)}] must be an object, found {_kind(entry)}"
            )
        size, digest = entry.get("bytes"), entry.get("sha256")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise BundleError(
                f"{where}: files[{_short(name)}].bytes must be a size, found {_short(size)}"
            )
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise BundleError(
                f"{where}: files[{_short(name)}].sha256 must be 64 hex digits, "
                f"found {_short(digest)}"
            )
    for required in contract.bundle_files(config):
        if required not in files:
            raise BundleError(f"{where}: manifest lists no {required}")
    return files


def check_manifest(manifest: object, where: str) -> ModelConfig:
    """Validate a parsed manifest; return its model config. `where` names it in messages."""
    if not isinstance(manifest, dict):
        raise BundleError(f"{where}: is {_kind(manifest)}, not a manifest object")
    found = manifest.get("format")
    if found != contract.FORMAT:
        raise BundleError(f"{where}: format is {_short(found)}, expected {contract.FORMAT!r}")
    config = _config(manifest, where)
    _contract(manifest, config, where)
    _files(manifest, config, where)
    return config
