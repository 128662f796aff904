"""`python -m export` killed (SIGKILL) at 20 points of its run: the bundle always survives.

Slow (minutes: every trial starts python, torch and a real export of a tiny model). The first
export is timed. Half the kills are timed from the start, spread over the start-up before the
new bundle is written; the other half are timed from the moment the export's temporary bundle
folder appears, spread over the measured writing, validation and swap. Anchoring those to the
folder, not to the start, keeps them in the writing window however slowly python and torch
start on a loaded machine.
After each kill the bundle must open, verify and complete an image, holding the old weights or
the new, with a reader thread opening it all along; leftovers of killed exports must be gone
after the next export that completes.
tests/core/test_publish.py does the same to the publishing step alone, in the fast suite.
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
from tests.core.test_publish import REPO, Reader, leftovers, serves, weights_hash
from training.checkpoint import TRAINING_JSON, save_weights

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
    assert writing is not None, "the export never wrote a temporary bundle folder"
    window = duration - writing  # writing, validating and swapping the new bundle
    half = TRIALS // 2
    # (anchored to the temporary folder?, delay): start-up kills, then writing-window kills
    plan = [(False, writing * (0.3 + 0.7 * (i + 0.5) / half)) for i in range(half)]
    plan += [(True, 1.1 * window * (i + 0.5) / (TRIALS - half)) for i in range(TRIALS - half)]
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
            anchored, delay = plan[trial]
            if anchored:  # wait for this export's temporary folder (or its end)
                while child.poll() is None and not set(leftovers(final)) - left_before:
                    time.sleep(0.005)
            time.sleep(delay)
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
