"""Bundle folders on disk: atomic writing, manifest hashing and verified loading. Torch-free.

A bundle is `artifacts/<name>/` with a `manifest.json` that lists every other file's size and
sha256 (../shared/DESIGN.md). Export writes one with `atomic_folder`; serve and tests open one
with `open_bundle`, which checks every hash before anything is loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rowgen import contract
from rowgen.config import ModelConfig


class BundleError(RuntimeError):
    """A bundle is missing, incomplete or altered; the message names the file and the fix."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def file_table(folder: Path) -> dict[str, dict[str, object]]:
    """Size and sha256 of every file in `folder` except the manifest itself."""
    return {
        p.name: {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(folder.iterdir())
        if p.is_file() and p.name != contract.MANIFEST
    }


def write_manifest(folder: Path, manifest: dict[str, object]) -> dict[str, object]:
    """Add the file table to `manifest` and write it last, so it describes the final files."""
    full = {"format": contract.FORMAT, **manifest, "files": file_table(folder)}
    (folder / contract.MANIFEST).write_text(json.dumps(full, indent=2) + "\n")
    return full


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; on success it replaces `final` by rename.

    An exception (or a kill) before the swap leaves the previous folder untouched: readers only
    ever see the old bundle or the new one, never half of one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be read by a server
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = final.parent / f".{final.name}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder, parsed manifest and model config."""

    path: Path
    manifest: dict
    config: ModelConfig

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        return self.path / name


def open_bundle(path: Path | str, check_hashes: bool = True) -> Bundle:
    """Read `manifest.json` and verify every listed file's size and sha256 before any use."""
    path = Path(path)
    fix = f"re-create it with `make export` (or restore {path} from git)"
    manifest_path = path / contract.MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"no bundle at {path}: {contract.MANIFEST} is missing; {fix}")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{manifest_path} is not valid JSON ({exc}); {fix}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != contract.FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise BundleError(f"{manifest_path}: format is {found!r}, expected {contract.FORMAT!r}")
    files = manifest.get("files", {})
    for required in contract.BUNDLE_FILES:
        if required not in files:
            raise BundleError(f"{path}: manifest lists no {required}; {fix}")
    if check_hashes:
        for name, entry in files.items():
            _verify_file(path / name, entry, fix)
    try:
        config = ModelConfig.from_dict(manifest["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"{manifest_path}: bad model config ({exc}); {fix}") from exc
    for required in contract.bundle_files(config):
        if required not in files:
            raise BundleError(f"{path}: manifest lists no {required}; {fix}")
    return Bundle(path=path, manifest=manifest, config=config)


def _verify_file(file: Path, entry: dict, fix: str) -> None:
    if not file.is_file():
        raise BundleError(f"{file} is missing but listed in the manifest; {fix}")
    size = file.stat().st_size
    if size != entry.get("bytes"):
        raise BundleError(
            f"{file} has {size} bytes, the manifest says {entry.get('bytes')}: "
            f"the file was changed or truncated; {fix}"
        )
    if sha256_file(file) != entry.get("sha256"):
        raise BundleError(f"{file} does not match its sha256 in the manifest (altered); {fix}")


def find_bundles(root: Path | str) -> list[Path]:
    """Bundle folders directly under `root` (those holding a manifest), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if (p / contract.MANIFEST).is_file() and not p.name.startswith(".")
    )
