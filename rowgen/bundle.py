"""Bundle folders on disk: manifest hashing and verified loading. Torch-free.

A bundle is `artifacts/<name>/` with a `manifest.json` that lists every other file's size and
sha256 (docs/contract.md). Export writes one (rowgen.publish.atomic_folder swaps it into
place); serve, bench and tests open one with `open_bundle`, which checks the manifest
(rowgen.manifest) and every hash before anything is loaded, and hands out the checked bytes.

The hashes protect against corruption and mixed files (a truncated copy, a file from another
export): they are not a signature. Whoever can write the folder can rewrite the manifest too.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rowgen import contract
from rowgen.config import ModelConfig
from rowgen.manifest import BundleError, check_manifest


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


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder, parsed manifest, model config and the verified bytes.

    `read(name)` returns a file's bytes exactly as they were hashed by `open_bundle`; runtimes
    load from those bytes, never by opening the path again, so what was checked is what runs
    (a file swapped or altered after the check cannot slip in). A bundle's files are a few MB.
    """

    path: Path
    manifest: dict
    config: ModelConfig
    blobs: Mapping[str, bytes] = field(default_factory=dict, repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name

    def file(self, name: str) -> Path:
        """Where a file lies, for messages and listings; load programs with `read`."""
        return self.path / name

    def read(self, name: str) -> bytes:
        """The verified bytes of a file the manifest lists."""
        if name not in self.blobs:
            raise BundleError(f"{self.path}: the manifest lists no {name}")
        return self.blobs[name]


def open_bundle(path: Path | str) -> Bundle:
    """Read `manifest.json`, check it, and read and verify every listed file before any use.

    Everything is read through one handle on the folder, so one open sees one bundle even while
    an export replaces it (rowgen.publish swaps whole folders). If a check fails because the
    folder was swapped during the read, the read starts over on the new folder.
    """
    path = Path(path)
    fix = f"re-create it with `make export` (or restore {path} from git)"
    for attempt in range(_ATTEMPTS):
        try:
            folder = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise BundleError(
                f"no bundle at {path}: {contract.MANIFEST} is missing (the folder: "
                f"{exc.strerror}); {fix}"
            ) from None
        try:
            return _read_bundle(path, folder, fix)
        except BundleError:
            if attempt + 1 == _ATTEMPTS or not _replaced(path, folder):
                raise
        finally:
            os.close(folder)
    raise AssertionError("unreachable")  # the loop returns or raises


_MANIFEST_LIMIT = 1 << 20  # real manifests are ~5 kB; a larger one is not read into memory
_ATTEMPTS = 3  # an export replacing the bundle mid-read costs one retry; three is plenty


def _replaced(path: Path, folder: int) -> bool:
    """Whether `path` no longer names the folder open as `folder`."""
    opened = os.fstat(folder)
    try:
        now = os.stat(path)
    except OSError:
        return True
    return (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino)


def _read_bundle(path: Path, folder: int, fix: str) -> Bundle:
    where = path / contract.MANIFEST
    try:
        text = _read_at(folder, path, contract.MANIFEST, None)
    except BundleError as exc:
        raise BundleError(f"no bundle at {path}: {exc}; {fix}") from None
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise BundleError(f"{where} is not valid JSON ({exc}); {fix}") from None
    try:
        config = check_manifest(manifest, str(where))
    except BundleError as exc:
        raise BundleError(f"{exc}; {fix}") from None
    blobs = {}
    for name, entry in manifest["files"].items():
        try:
            data = _read_at(folder, path, name, entry["bytes"])
        except BundleError as exc:
            raise BundleError(f"{exc}; {fix}") from None
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise BundleError(
                f"{path / name} does not match its sha256 in the manifest (altered); {fix}"
            )
        blobs[name] = data
    return Bundle(path=path, manifest=manifest, config=config, blobs=blobs)


def _read_at(folder: int, path: Path, name: str, size: int | None) -> bytes:
    """The bytes of `name` in the open folder: a regular file, never through a symlink.

    O_NONBLOCK keeps a FIFO planted under a bundle name from blocking the open; the size is
    compared before reading, so a huge stray file is refused without being read.
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, dir_fd=folder)
    except FileNotFoundError:
        listed = " but listed in the manifest" if size is not None else ""
        raise BundleError(f"{path / name} is missing{listed}") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise BundleError(
                f"{path / name} is a symlink; a bundle holds its own files, not links"
            ) from None
        raise BundleError(f"{path / name} cannot be read ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise BundleError(f"{path / name} is not a regular file")
        if size is None and info.st_size > _MANIFEST_LIMIT:
            raise BundleError(f"{path / name} has {info.st_size} bytes: too large for a manifest")
        if size is not None and info.st_size != size:
            raise BundleError(
                f"{path / name} has {info.st_size} bytes, the manifest says {size}: "
                "the file was changed or truncated"
            )
        return f.read()


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
