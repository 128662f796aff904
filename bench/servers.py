"""The servers that bench.load and bench.soak drive, each in its own process: the Gradio app
(`python -m serve`), the v2 API (`python -m serve.api`) and the v2 API on Ray Serve
(`python -m serve.ray_app`), on free loopback ports.

Torch-free. Also reads what the servers tell about themselves: resident memory from /proc (for
Ray, the front plus every Serve replica process; its peak for one process) and the mean batch
from the v2 `/metrics`.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REPLICA_TITLE = b"ray::ServeReplica"  # Ray's process title for a Serve replica


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    kind: str  # "gradio", "v2" or "ray"
    process: subprocess.Popen
    port: int
    grpc_port: int
    log: Path

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def base(self) -> str:
        return f"http://{self.url}"

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM (what a service manager sends), SIGKILL after `timeout` s; the exit code."""
        self.process.terminate()
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()


def start(
    kind: str,
    artifacts: str,
    device: str,
    log_dir: Path,
    flags: list[str] | tuple[str, ...] = (),
    timeout: float = 600,
    env: dict[str, str] | None = None,
) -> Running:
    """Start one server on free loopback ports and wait until it answers (tests use it too).

    `env` replaces the environment (bench.soak gives each server its own TMPDIR)."""
    port, grpc_port = free_port(), free_port()
    module = {"gradio": "serve", "v2": "serve.api", "ray": "serve.ray_app"}[kind]
    argv = [sys.executable, "-m", module, "--artifacts", str(artifacts), "--device", device]
    argv += ["--port", str(port)]
    if kind != "gradio":
        argv += ["--grpc-port", str(grpc_port), *flags]
    log = log_dir / f"{kind}-{port}.log"
    with open(log, "w") as out:
        # a file, not a pipe: a full pipe would stall the server
        process = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env=env)
    running = Running(kind, process, port, grpc_port, log)
    ready = "/" if kind == "gradio" else "/v2/health/ready"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{module} exited: see {log}\n{log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(running.base + ready, timeout=2):
                return running
        except OSError:
            time.sleep(0.5)
    running.stop()
    raise TimeoutError(f"{module} did not answer within {timeout:.0f} s: see {log}")


def _rss(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_mib(running: Running) -> float:
    """Resident memory of the server: its process, plus the Serve replicas for Ray."""
    total = _rss(running.process.pid)
    if running.kind == "ray":
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                if cmdline.read_bytes().startswith(REPLICA_TITLE):
                    total += _rss(int(cmdline.parent.name))
            except OSError:
                continue
    return round(total / 2**20, 1)


def peak_rss_mib(running: Running) -> float:
    """The server process's peak resident memory since it started (VmHWM; its own process)."""
    return round(_rss(running.process.pid, "VmHWM") / 2**20, 1)


def batch_counters(running: Running, model: str) -> tuple[float, float] | None:
    """(sum, count) of the v2 server's rowgen_batch_images histogram for `model`; None when
    the server is too swamped to answer /metrics within a minute (it shares the event loop)."""
    if running.kind == "gradio":
        return 0.0, 0.0
    try:
        with urllib.request.urlopen(running.base + "/metrics", timeout=60) as response:
            text = response.read().decode()
    except OSError:
        return None
    found = {}
    for part in ("sum", "count"):
        match = re.search(rf'rowgen_batch_images_{part}{{model_name="{model}"}} (\S+)', text)
        found[part] = float(match.group(1)) if match else 0.0
    return found["sum"], found["count"]


def settle(running: Running, model: str, timeout: float = 120.0) -> None:
    """Wait until the server has answered every request a finished run left with it: load
    generators stop sending at once, but a swamped server is still working through what it
    accepted, and the next run would measure that backlog."""
    if running.kind == "gradio":
        return
    deadline = time.monotonic() + timeout
    last = batch_counters(running, model)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = batch_counters(running, model)
        if now is not None and now == last:
            return
        last = now
