"""`python -m export` killed (SIGKILL) at 20 points of its run: the bundle always survives.

Slow (minutes: every trial starts python, torch and a real export of a tiny model). The first
export is timed, and the kill delays are spread evenly from shortly before it began writing
the new bundle to just past its end, so kills land during writing, validation and the swap.
After each kill the bundle must open, verify and complete an image, holding the old weights or
the new, with a reader thread opening it all along; leftovers of killed exports must be gone
after the next export that completes.
tests/test_publish.py does the same to the publishing step alone, in the fast suite.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rowgen import contract
from tests.conftest import tiny_model
from tests.test_publish import REPO, Reader, leftovers, serves, weights_hash
from training.checkpoint import save_weights
from training.train import TRAINING_JSON

TRIALS = 20


def _export(runs: Path, artifacts: Path) -> list[str]:
    return [sys.executable, "-m", "export", "--runs", str(runs), "--artifacts", str(artifacts)]


@pytest.mark.slow
def test_export_killed_at_20_points_leaves_a_bundle_that_serves(
    tiny_bundles: Path, tmp_path: Path
) -> None:
    runs = []
    for seed in (1, 2):  # two runs with different weights, exported in turn
        run = tmp_path / f"runs-{seed}"
        save_weights(tiny_model("gru", seed=seed), run / "gru" / contract.WEIGHTS)
        (run / "gru" / TRAINING_JSON).write_text(json.dumps({"name": "gru", "seed": seed}))
        runs.append(run)
    artifacts = tmp_path / "artifacts"
    final = artifacts / "gru"
    artifacts.mkdir()
    shutil.copytree(tiny_bundles / "gru", final)
    allowed = {weights_hash(final)}

    start, writing = time.perf_counter(), None
    first = subprocess.Popen(_export(runs[0], artifacts), cwd=REPO, stdout=subprocess.DEVNULL)
    while first.poll() is None:
        if writing is None and leftovers(final):
            writing = time.perf_counter() - start  # the temporary bundle folder appeared
        time.sleep(0.01)
    assert first.returncode == 0
    duration = time.perf_counter() - start
    # Most of a run is python and torch starting; spread the kills from a little before the
    # new folder appears to a little after the measured end, where the writing and the swap are.
    early = 0.8 * (writing or 0.0)
    delays = [early + (1.1 * duration - early) * (i + 0.5) / TRIALS for i in range(TRIALS)]
    allowed.add(weights_hash(final))
    allowed.add(hashlib.sha256((runs[1] / "gru" / contract.WEIGHTS).read_bytes()).hexdigest())

    reader = Reader(final, allowed)
    reader.start()
    outcomes = {"published": 0, "killed mid-write": 0, "killed before writing": 0}
    try:
        for trial in range(TRIALS):
            before, left_before = weights_hash(final), set(leftovers(final))
            child = subprocess.Popen(
                _export(runs[(trial + 1) % 2], artifacts),
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(delays[trial])
            child.send_signal(signal.SIGKILL)
            child.wait()
            after = weights_hash(final)
            assert after in allowed, f"trial {trial}: unknown weights"
            serves(final)
            if set(leftovers(final)) - left_before:
                outcomes["killed mid-write"] += 1
            elif after != before:
                outcomes["published"] += 1
            else:
                outcomes["killed before writing"] += 1
        finished = subprocess.run(
            _export(runs[0], artifacts), cwd=REPO, check=True, capture_output=True, text=True
        )
    finally:
        reader.stop.set()
        reader.join()
    assert leftovers(final) == [], finished.stdout
    assert reader.failures == [], reader.failures[:3]
    serves(final)
    assert outcomes["killed mid-write"] > 0, outcomes
    print(
        f"export {duration:.1f} s, writing from {writing:.1f} s; {TRIALS} kills survived: "
        f"{outcomes}; "
        f"{reader.opened} concurrent opens, 0 failed"
    )
