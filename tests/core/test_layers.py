"""The layers of pyproject.toml's import-linter contracts hold: `lint-imports` (also `make lint`).

rowgen/ <- training/ <- export/ <- evaluation/, bench/; serve/ on rowgen/ alone; rowgen/ and
serve/ without torch. A change that breaks one fails here with the import that broke it.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def test_import_contracts_are_kept() -> None:
    if not LINT_IMPORTS.exists() and shutil.which("lint-imports") is None:
        pytest.fail("lint-imports is missing: it comes with the dev extra (make venv)")
    tool = str(LINT_IMPORTS) if LINT_IMPORTS.exists() else "lint-imports"
    run = subprocess.run([tool, "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "0 broken" in run.stdout, run.stdout[-3000:]
