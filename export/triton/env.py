"""The Python environment Triton's python backend runs rowgen's models in: `make triton-env`.

    python -m export.triton.env [--out build/triton-env] [--python /usr/bin/python3.11]

The `tritonserver` of `.ci/get-tritonserver` (Triton 2.51) runs each python-backend model in a
stub process built for one Python version and linked against that version's libpython. This
copies the wheel's Python 3.11 stub beside the python backend (as pytriton does) and makes a
virtual environment of a Python 3.11 with:

- numpy 1.26: that Triton release's python backend returns empty outputs under numpy 2;
- onnxruntime (the CPU build), the version this checkout validates its bundles with;
- rowgen's torch-free core (`rowgen/`), copied from this checkout.

The stub takes its interpreter and `sys.path` from the first `python3` on PATH and ignores
PYTHONPATH, so export.triton.server puts `<env>/bin` first. Idempotent: a stamp in the
environment records what it holds; when it matches, nothing is done, and when only rowgen/
changed, only rowgen is copied again. Needs PyPI the first time, and Debian's python3.11,
python3.11-venv and libpython3.11.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import onnxruntime

from export.triton.server import DEFAULT_ENV, REPO, Install

PYTHON = "3.11"  # the stub's Python version: the environment's must match it
PACKAGES = ["numpy==1.26.4", f"onnxruntime=={onnxruntime.__version__}"]
STAMP = "rowgen-triton-env.json"
CORE = REPO / "rowgen"


class EnvError(RuntimeError):
    """The environment cannot be made; the message names the problem and the fix."""


def core_digest(core: Path = CORE) -> str:
    """sha256 over rowgen's sources (names and bytes): what the environment's copy must match."""
    digest = hashlib.sha256()
    for path in sorted(core.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def site_packages(env: Path) -> Path:
    return env / "lib" / f"python{PYTHON}" / "site-packages"


def _stamp(env: Path) -> dict:
    try:
        return json.loads((env / STAMP).read_text())
    except (OSError, ValueError):
        return {}


def env_problem(env: Path) -> str | None:
    """Why `env` cannot run this checkout's models, with the fix; None when it can."""
    stamp = _stamp(env)
    if not stamp:
        return f"no python-backend environment at {env}: run `make triton-env`"
    if stamp.get("packages") != PACKAGES:
        return f"{env} holds {stamp.get('packages')}, not {PACKAGES}: run `make triton-env`"
    if stamp.get("rowgen") != core_digest():
        return f"{env} holds another checkout's rowgen/: run `make triton-env`"
    return None


def _run(argv: list[str], what: str, fix: str) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=900)
    except OSError as exc:
        raise EnvError(f"{what}: {exc}; {fix}") from None
    if done.returncode != 0:
        raise EnvError(f"{what} failed:\n{(done.stdout + done.stderr)[-2000:]}\n{fix}")
    return done.stdout


def install_stub(install: Install) -> bool:
    """Copy the wheel's Python 3.11 stub beside the python backend; False when it was there."""
    source = install.stub_of(PYTHON)
    if not source.is_file():
        raise EnvError(f"no python stub at {source}: run `bash .ci/get-tritonserver`")
    if install.stub.is_file() and install.stub.read_bytes() == source.read_bytes():
        return False
    tmp = install.stub.with_suffix(".tmp")
    shutil.copyfile(source, tmp)
    tmp.chmod(0o755)
    tmp.replace(install.stub)  # a running Triton keeps the file it started
    return True


def _new_venv(env: Path, python: str) -> None:
    fix = f"pass --python a Python {PYTHON} (Debian: apt-get install python3.11 python3.11-venv)"
    version = _run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], python, fix)
    if version.strip() != PYTHON:
        raise EnvError(f"{python} is Python {version.strip()}; the stub needs {PYTHON}: {fix}")
    _run([python, "-m", "venv", "--clear", str(env)], f"{python} -m venv", fix)
    pip = [str(env / "bin" / "python3"), "-m", "pip", "install", "-q", *PACKAGES]
    _run(pip, "pip install " + " ".join(PACKAGES), "check the network to PyPI")


def make_env(env: Path, python: str, install: Install) -> list[str]:
    """Make or refresh `env`; one line per thing done, for main to print."""
    done = ["copied the Python 3.11 stub to " + str(install.stub)] if install_stub(install) else []
    stamp = _stamp(env)
    wanted = {"python": PYTHON, "packages": PACKAGES, "rowgen": core_digest()}
    if stamp == wanted:
        (env / STAMP).touch()  # newer than rowgen/ again: make sees it is current
        return [*done, f"{env} is up to date"]
    if (stamp.get("python"), stamp.get("packages")) != (PYTHON, PACKAGES):
        _new_venv(env, python)
        done.append(f"made {env} with {python}: {' '.join(PACKAGES)}")
    core = site_packages(env) / CORE.name
    shutil.rmtree(core, ignore_errors=True)
    shutil.copytree(CORE, core, ignore=shutil.ignore_patterns("__pycache__"))
    done.append(f"copied {CORE} to {core}")
    check = "import numpy, onnxruntime, rowgen.bundle, rowgen.sessions; print(numpy.__version__)"
    numpy = _run([str(env / "bin" / "python3"), "-c", check], "the environment's imports", "")
    if not numpy.startswith("1."):
        raise EnvError(f"{env} has numpy {numpy.strip()}; Triton 2.51's stub needs numpy 1.x")
    (env / STAMP).write_text(json.dumps(wanted, indent=2) + "\n")
    return done


def default_python() -> str:
    """Debian's python3.11, whose libpython3.11 the stub links; else the first on PATH."""
    system = Path("/usr/bin/python3.11")
    return str(system) if system.is_file() else shutil.which("python3.11") or "python3.11"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export.triton.env", description=__doc__.split("\n")[0]
    )
    p.add_argument("--out", type=Path, default=DEFAULT_ENV, help="the environment's folder")
    p.add_argument("--python", default=default_python(), help=f"a Python {PYTHON} interpreter")
    args = p.parse_args(argv)
    try:
        lines = make_env(args.out, args.python, Install.default())
    except EnvError as exc:
        print(f"export.triton.env: {exc}", file=sys.stderr)
        return 1
    for line in lines:
        print(f"export.triton.env: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
