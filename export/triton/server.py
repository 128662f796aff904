"""Triton's server on the python-backend repository, on loopback by default: `make triton-serve`.

    python -m export.triton.server [--repository artifacts/triton-python] [--host 127.0.0.1]
        [--http-port 8000] [--grpc-port 8001] [--metrics-port 8002] [--env build/triton-env]

Runs the `tritonserver` (Triton 2.51) of PyPI's nvidia-pytriton wheel, which `.ci/get-tritonserver`
unpacks into build/pytriton: it has the python backend but no onnxruntime backend, hence the
python-backend repository. Its python stub takes the interpreter and `sys.path` of the first
`python3` on PATH (not PYTHONPATH), so the environment of `make triton-env` goes first on PATH.
Everything is checked before Triton starts, each problem named with its fix. Tests and bench.load
start it through `start`, on free ports.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from export.triton.repository import MARKER

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ENV = REPO / "build" / "triton-env"
STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class Install:
    """Where `.ci/get-tritonserver` unpacked the wheel ($ROWGEN_TRITONSERVER_DIR overrides)."""

    root: Path

    @classmethod
    def default(cls) -> Install:
        return cls(Path(os.environ.get("ROWGEN_TRITONSERVER_DIR", REPO / "build" / "pytriton")))

    @property
    def binary(self) -> Path:
        return self.root / "pytriton" / "tritonserver" / "bin" / "tritonserver"

    @property
    def libs(self) -> Path:
        return self.root / "nvidia_pytriton.libs"

    @property
    def backends(self) -> Path:
        return self.root / "pytriton" / "tritonserver" / "backends"

    def stub_of(self, python: str) -> Path:
        """The wheel's python stub built for Python `python` ("3.11")."""
        return self.root / "pytriton" / "tritonserver" / "python_backend_stubs" / python / STUB

    @property
    def stub(self) -> Path:
        """Where the python backend looks for its stub: beside libtriton_python.so."""
        return self.backends / "python" / STUB

    def problem(self) -> str | None:
        if not self.binary.is_file():
            return f"no tritonserver at {self.binary}: run `bash .ci/get-tritonserver`"
        if not self.stub.is_file():
            return f"no python stub at {self.stub}: run `make triton-env`"
        return None


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> Ports:
        return cls(*(_free_port() for _ in range(3)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def command(
    install: Install, repository: Path, env: Path, host: str, ports: Ports
) -> tuple[list[str], dict[str, str]]:
    """tritonserver's argv and environment: every endpoint on `host`, configs taken as written."""
    argv = [
        str(install.binary),
        f"--model-repository={Path(repository).resolve()}",
        f"--backend-directory={install.backends}",
        "--disable-auto-complete-config",  # the configs are complete; Triton must not amend them
        "--strict-readiness=true",
        "--exit-on-error=true",
    ]
    for kind, port in (("http", ports.http), ("grpc", ports.grpc), ("metrics", ports.metrics)):
        argv += [f"--{kind}-address={host}", f"--{kind}-port={port}"]
    environ = {
        **os.environ,
        "PATH": f"{Path(env).resolve() / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        "LD_LIBRARY_PATH": str(install.libs),
    }
    return argv, environ


def problems(install: Install, repository: Path, env: Path, host: str, ports: Ports) -> list[str]:
    """Why Triton would not start (or serve nothing), each with its fix; empty when it can."""
    from export.triton.env import env_problem

    found = [p for p in (install.problem(), env_problem(Path(env))) if p]
    if not (Path(repository) / MARKER).is_file():
        found.append(f"no python-backend repository at {repository}: run `make triton`")
    for flag, port in (("http", ports.http), ("grpc", ports.grpc), ("metrics", ports.metrics)):
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((host, port))
            except OSError:
                found.append(f"{host}:{port} is in use: pass another --{flag}-port")
    return found


@dataclass
class Running:
    """A started tritonserver; `stop` ends it with SIGTERM (Triton unloads, then exits)."""

    process: subprocess.Popen
    repository: Path
    host: str
    ports: Ports
    log: Path

    @property
    def url(self) -> str:
        return f"{self.host}:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.ports.grpc}"

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM, then Triton's exit status (it waits for in-flight requests first)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start(
    repository: Path,
    log: Path,
    env: Path = DEFAULT_ENV,
    install: Install | None = None,
    timeout: float = 300,
) -> Running:
    """Triton on free loopback ports, once every model is ready (RuntimeError with the log's
    tail if it exits or does not get ready)."""
    install = install or Install.default()
    ports = Ports.free()
    if found := problems(install, repository, env, "127.0.0.1", ports):
        raise RuntimeError("; ".join(found))
    argv, environ = command(install, repository, env, "127.0.0.1", ports)
    with open(log, "w") as out:
        process = subprocess.Popen(argv, env=environ, stdout=out, stderr=subprocess.STDOUT)
    running = Running(process, Path(repository).resolve(), "127.0.0.1", ports, Path(log))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"tritonserver exited ({process.returncode}):\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"http://{running.url}/v2/health/ready", timeout=2):
                return running
        except OSError:
            time.sleep(0.5)
    running.stop()
    raise RuntimeError(f"tritonserver was not ready within {timeout:.0f} s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    return Path(log).read_text(errors="replace")[-3000:]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m export.triton.server", description=__doc__.split("\n")[0]
    )
    default = Ports()
    p.add_argument("--repository", type=Path, default=Path("artifacts/triton-python"))
    p.add_argument("--env", type=Path, default=DEFAULT_ENV, help="made by `make triton-env`")
    p.add_argument("--host", default="127.0.0.1", help="address of every endpoint")
    p.add_argument("--http-port", type=int, default=default.http)
    p.add_argument("--grpc-port", type=int, default=default.grpc)
    p.add_argument("--metrics-port", type=int, default=default.metrics)
    args = p.parse_args(argv)
    install = Install.default()
    ports = Ports(args.http_port, args.grpc_port, args.metrics_port)
    if found := problems(install, args.repository, args.env, args.host, ports):
        for problem in found:
            print(f"export.triton.server: {problem}", file=sys.stderr)
        return 1
    argv_, environ = command(install, args.repository, args.env, args.host, ports)
    print(
        f"export.triton.server: Triton on {args.repository}: HTTP {args.host}:{ports.http}, "
        f"gRPC {args.host}:{ports.grpc}, metrics {args.host}:{ports.metrics}",
        flush=True,
    )
    os.execve(argv_[0], argv_, environ)  # Triton itself receives Ctrl-C and SIGTERM


if __name__ == "__main__":
    sys.exit(main())
