"""Publishing bundles (rowgen.publish): killed at any point, the bundle still opens and serves.

The kill test runs a publisher in its own process, swapping two tiny bundles in turn into one
folder as fast as it can, and SIGKILLs it at random moments; after every kill the folder must
hold one whole bundle that verifies and completes an image, and a reader thread opening it all
along must never fail. tests/export/test_export_kill.py (slow) does the same to `python -m export`.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rowgen import contract, publish
from rowgen.bundle import BundleError, open_bundle
from rowgen.publish import atomic_folder, clean_leftovers
from serve.runtime import OrtModel

REPO = Path(__file__).resolve().parents[2]
KILL_TRIALS = 20
_OUT = {"capture_output": True, "text": True, "check": True}

PUBLISHER = """
import shutil, sys
from pathlib import Path
from rowgen.publish import atomic_folder
final, sources = Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]]
print("ready", flush=True)
i = 0
while True:
    with atomic_folder(final) as tmp:
        for f in sorted(sources[i % 2].iterdir()):
            shutil.copy2(f, tmp / f.name)
    i += 1
"""


def weights_hash(folder: Path) -> str:
    return hashlib.sha256(open_bundle(folder).read(contract.WEIGHTS)).hexdigest()


def leftovers(final: Path) -> list[str]:
    return sorted(p.name for p in final.parent.iterdir() if p.name.startswith(f".{final.name}."))


def serves(folder: Path) -> np.ndarray:
    """Open the bundle as the server does and complete one image."""
    model = OrtModel(folder, "cpu")
    image = np.random.default_rng(0).random((1, 28, 28), dtype=np.float32)
    done = model.complete(image, np.array([14]))
    assert done.shape == (1, 28, 28) and np.array_equal(done[0, :14], image[0, :14])
    return done


class Reader(threading.Thread):
    """Opens the bundle over and over, noting every failure, until stopped."""

    def __init__(self, folder: Path, allowed: set[str]) -> None:
        super().__init__(daemon=True)
        self.folder, self.allowed = folder, allowed
        self.opened, self.failures = 0, []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                assert weights_hash(self.folder) in self.allowed
                self.opened += 1
            except (BundleError, AssertionError) as exc:
                self.failures.append(repr(exc))
            time.sleep(0.01)


def test_killed_publisher_always_leaves_a_whole_bundle(tiny_bundles: Path, tmp_path: Path):
    sources = [tiny_bundles / "gru", tiny_bundles / "lstm"]
    allowed = {weights_hash(s) for s in sources}
    final = tmp_path / "artifacts" / "model"
    final.parent.mkdir()
    shutil.copytree(sources[0], final)
    reader = Reader(final, allowed)
    reader.start()
    rng = random.Random(0)
    killed_mid_write = 0
    try:
        for trial in range(KILL_TRIALS):
            child = subprocess.Popen(
                [sys.executable, "-c", PUBLISHER, str(final), *map(str, sources)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert child.stdout.readline().strip() == "ready"
            time.sleep(rng.uniform(0.0, 0.15))
            child.send_signal(signal.SIGKILL)
            child.wait()
            child.stdout.close()
            assert weights_hash(final) in allowed, f"trial {trial}"
            serves(final)
            killed_mid_write += bool(leftovers(final))
            assert all("removed" in line for line in clean_leftovers(final))
            assert leftovers(final) == []
    finally:
        reader.stop.set()
        reader.join()
    assert reader.failures == [] and reader.opened > KILL_TRIALS
    assert killed_mid_write > 0  # the kills did land while a new bundle was being written
    print(
        f"{KILL_TRIALS} kills survived, {killed_mid_write} mid-write; "
        f"{reader.opened} concurrent opens, 0 failed"
    )


def test_fallback_without_exchange_is_repaired_by_the_next_export(
    tiny_bundles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    final = tmp_path / "gru"
    monkeypatch.setattr(publish, "_RENAMEAT2", None)  # as on a platform without renameat2
    for source in ("gru", "lstm"):
        with atomic_folder(final) as tmp:
            shutil.copytree(tiny_bundles / source, tmp, dirs_exist_ok=True)
    assert open_bundle(final).config.cell == "lstm" and leftovers(final) == []
    # A kill between the fallback's two renames strands the bundle under .gru.old-PID:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_OUT)
    os.rename(final, tmp_path / f".gru.old-{int(dead.stdout)}")
    with pytest.raises(BundleError, match="no bundle at"):
        open_bundle(final)
    [line] = clean_leftovers(final)
    assert line.startswith(f"restored {final}")
    assert open_bundle(final).config.cell == "lstm" and leftovers(final) == []


def test_leftovers_of_a_running_exporter_are_kept(tmp_path: Path) -> None:
    final = tmp_path / "gru"
    final.mkdir()
    running = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".gru.tmp-{running.pid}-abc"
        live.mkdir()
        [line] = clean_leftovers(final)
        assert "still running" in line and live.is_dir()
    finally:
        running.kill()
        running.wait()
    [line] = clean_leftovers(final)
    assert line.startswith(f"removed {live.name}") and not live.exists()
    assert clean_leftovers(tmp_path / "other") == []


def test_exchange_swaps_two_folders(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "name").write_text(folder.name)
    publish.exchange(a, b)
    assert (a / "name").read_text() == "b" and (b / "name").read_text() == "a"
