"""The servers that bench.load and bench.soak drive, each in its own process: the Gradio app
(`python -m serve`), the v2 API (`python -m serve.api`), the v2 API on Ray Serve
(`python -m serve.ray_app`, running deploy/ray/serve.yaml) and Triton on the python-backend
repository of a bundle (`make triton-serve`, export.triton.server), on free loopback ports.

Torch-free. Also reads what the servers tell about themselves: resident memory from /proc (for
Ray, the launcher plus every Serve replica process; for Triton, the server plus its python
stubs; the peak for one process) and the mean batch from the v2 `/metrics` (Ray: summed over the
replicas that answer it; Triton: its statistics extension).
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from serve.ray_app.config import REPLICA_HEADER, own_ports

REPO = Path(__file__).resolve().parent.parent
REPLICA_TITLE = b"ray::ServeReplica"  # Ray's process title for a Serve replica
TRITON_STUB = b"triton_python_backend_stub"  # one per python-backend model instance
RAY_SCRAPES = 8  # /metrics scrapes per count: enough to reach each of a few replicas


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Running:
    kind: str  # "gradio", "v2", "ray" or "triton"
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

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM (what a service manager sends), SIGKILL after `timeout` s; the exit code.
        Ray's `serve run` shuts Serve and the cluster it started down first: 120 s for it."""
        timeout = timeout or (120 if self.kind == "ray" else 60)
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

    `env` replaces the environment (bench.soak gives each server its own TMPDIR). A Ray
    cluster's proxy opens more ports at fixed defaults: each cluster started here gets its own."""
    port, grpc_port = free_port(), free_port()
    module = {"gradio": "serve", "v2": "serve.api", "ray": "serve.ray_app"}[kind]
    argv = [sys.executable, "-m", module, "--artifacts", str(artifacts), "--device", device]
    argv += ["--port", str(port), *flags]
    if kind == "v2":
        argv += ["--grpc-port", str(grpc_port)]
    if kind == "ray":
        env = {**(os.environ if env is None else env), **own_ports(free_port)}
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


def start_triton(artifacts: str, model: str, log_dir: Path) -> Running:
    """`make triton NAMES=model` into `log_dir`, then Triton on its python-backend repository."""
    from export.triton import server
    from export.triton.__main__ import main as write_repositories

    out = log_dir / f"triton-{model}"
    if write_repositories(["--artifacts", str(artifacts), "--out", str(out), model]) != 0:
        raise RuntimeError(f"no Triton repository for {model}: see the error above")
    triton = server.start(out.with_name(out.name + "-python"), log_dir / f"triton-{model}.log")
    return Running("triton", triton.process, triton.ports.http, triton.ports.grpc, triton.log)


def _rss(pid: int, field: str = "VmRSS") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def rss_mib(running: Running) -> float:
    """Resident memory of the server: its process, plus the Serve replicas for Ray and the
    python stubs for Triton."""
    total = _rss(running.process.pid)
    if running.kind in ("ray", "triton"):
        for pid in _workers(running):
            total += _rss(pid)
    return round(total / 2**20, 1)


def _workers(running: Running) -> list[int]:
    """The processes serving beside the server's own: Serve replicas, Triton's python stubs."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        pid = int(cmdline.parent.name)
        try:
            line = cmdline.read_bytes()
            replica = running.kind == "ray" and line.startswith(REPLICA_TITLE)
            if replica or (TRITON_STUB in line and _parent(pid) == running.process.pid):
                found.append(pid)
        except (OSError, ValueError):
            continue  # the process ended meanwhile
    return found


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def peak_rss_mib(running: Running) -> float:
    """The server process's peak resident memory since it started (VmHWM; its own process)."""
    return round(_rss(running.process.pid, "VmHWM") / 2**20, 1)


def batch_counters(running: Running, model: str) -> tuple[float, float] | None:
    """(sum, count) of the v2 server's rowgen_batch_images histogram for `model`; None when
    the server is too swamped to answer /metrics within a minute (it shares the event loop)."""
    if running.kind == "gradio":
        return 0.0, 0.0
    if running.kind == "triton":
        return _triton_counters(running, model)
    # Each Ray replica counts its own batches; a scrape reaches one replica (named in a header)
    scrapes = RAY_SCRAPES if running.kind == "ray" else 1
    replicas: dict[str, tuple[float, float]] = {}
    for _ in range(scrapes):
        try:
            with urllib.request.urlopen(running.base + "/metrics", timeout=60) as response:
                text = response.read().decode()
                replica = response.headers.get(REPLICA_HEADER, "")
        except OSError:
            return None
        found = {}
        for part in ("sum", "count"):
            match = re.search(rf'rowgen_batch_images_{part}{{model_name="{model}"}} (\S+)', text)
            found[part] = float(match.group(1)) if match else 0.0
        replicas[replica] = found["sum"], found["count"]
    return sum(s for s, _ in replicas.values()), sum(c for _, c in replicas.values())


def _triton_counters(running: Running, model: str) -> tuple[float, float] | None:
    """(images, model executions) of `model` from Triton's statistics extension."""
    try:
        url = f"{running.base}/v2/models/{model}/stats"
        with urllib.request.urlopen(url, timeout=60) as response:
            (stats,) = json.loads(response.read())["model_stats"]
    except OSError:
        return None
    return float(stats["inference_count"]), float(stats["execution_count"])


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
