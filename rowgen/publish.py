"""Publishing a folder atomically: `artifacts/<name>/` always holds a whole bundle. Torch-free.

Used by export (`python -m export`, through export.build) and tested by
tests/core/test_publish.py.

A folder cannot be renamed over a non-empty folder, and two renames (the old bundle aside, the
new one in) leave a moment with no bundle, and only `.<name>.old-PID` if killed between them.
On Linux, renameat2(RENAME_EXCHANGE) swaps two paths in one step instead: the new folder is
written under a temporary name, swapped with the published one, and the old bundle (now under
the temporary name) is deleted. At every instant `artifacts/<name>` is either
the whole old folder or the whole new one, and a clone's tracked `artifacts/lstm/` stays a plain
folder (a symlink-to-version scheme would turn it into a link git sees as changed).

Where RENAME_EXCHANGE is missing (not Linux, an old kernel, a filesystem without it) the two
renames remain, and `clean_leftovers` (run by the next export) puts a stranded `.old-` folder
back. Temporary names carry the exporter's PID, so leftovers of a killed export are told apart
from those of one still running.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
_NO_EXCHANGE = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP}


def _renameat2() -> object | None:
    try:
        return ctypes.CDLL(None, use_errno=True).renameat2  # glibc >= 2.28
    except (OSError, AttributeError):
        return None


_RENAMEAT2 = _renameat2()


def exchange(a: Path, b: Path) -> None:
    """Swap the paths `a` and `b` in one atomic step; OSError(ENOSYS) where that is impossible."""
    if _RENAMEAT2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not available on this platform")
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), str(a), None, str(b))


def _fsync_tree(folder: Path) -> None:
    """Flush the new files and their folder, so a power cut after publishing keeps them whole."""
    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def publish(tmp: Path, final: Path) -> None:
    """Put the finished folder `tmp` at `final`, replacing what is there in one step."""
    if not os.path.lexists(final):
        os.rename(tmp, final)  # atomic; fails rather than merge if another export got there first
    else:
        try:
            exchange(tmp, final)
        except OSError as exc:
            if exc.errno not in _NO_EXCHANGE:
                raise
            old = final.parent / f".{final.name}.old-{os.getpid()}"
            final.rename(old)  # from here to the next rename there is no bundle: see module doc
            tmp.rename(final)
            tmp = old
        _remove(tmp)  # the previous bundle, now under the temporary name
    _fsync_dir(final.parent)


@contextlib.contextmanager
def atomic_folder(final: Path) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; on success it replaces `final` in one step.

    An exception (or a kill) before the swap leaves the previous folder untouched: readers only
    ever see the old folder or the new one, never half of one.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    prefix = f".{final.name}.tmp-{os.getpid()}-"
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=final.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a bundle is meant to be read by a server
    try:
        yield tmp
        _fsync_tree(tmp)
        publish(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # the new folder, or after a swap the old one
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    return True


def clean_leftovers(final: Path) -> list[str]:
    """Remove the temporary folders that killed exports of `final` left; say what was done.

    A folder whose exporter (the PID in its name) still runs is left alone and reported. A
    stranded `.old-` folder is put back when `final` is missing (only the two-rename fallback
    can strand one). Returns one line per folder, for the caller to print.
    """
    final = Path(final)
    if not final.parent.is_dir():
        return []
    pattern = re.compile(rf"\.{re.escape(final.name)}\.(tmp|old)-(\d+)(-.*)?")
    lines = []
    for path in sorted(final.parent.iterdir()):
        match = pattern.fullmatch(path.name)
        if not match:
            continue
        kind, pid = match.group(1), int(match.group(2))
        if pid == os.getpid() or _alive(pid):
            lines.append(f"left {path} in place: process {pid} (its exporter) is still running")
        elif kind == "old" and not os.path.lexists(final):
            os.rename(path, final)
            lines.append(f"restored {final} from {path.name}, left by an interrupted export")
        else:
            _remove(path)
            lines.append(f"removed {path.name}, left by an interrupted export (process {pid})")
    return lines
