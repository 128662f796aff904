"""pyproject.toml declares what the code imports, and imports what it declares (deptry).

`deptry .` reads [tool.deptry] in pyproject.toml: every module imported anywhere in the
repository's packages and tests must come from a declared distribution (none only through
another one's dependencies), and every declared distribution must be imported (the exceptions,
commands and a module kserve is loaded by, are listed there with the reason).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_deptry_finds_no_missing_transitive_or_unused_dependency() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "deptry", ".", "--no-ansi"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = run.stdout + run.stderr
    assert run.returncode == 0, f"deptry found dependency issues:\n{report}"
    assert "No dependency issues found" in report
