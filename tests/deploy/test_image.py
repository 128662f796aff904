"""The serving image, built and run here with podman: `make image-test` (slow: a first build takes
minutes).

deploy/image/build.sh builds it (on a base image made from Debian's mirror), then the image's
own command runs with the API on free loopback ports (host network), as the KServe manifest
runs it: its user, a read-only root file system, no capabilities, the manifest's environment.
Test images are completed through tritonclient over HTTP and gRPC and compared with onnxruntime
on complete.onnx in this process; the last test sends SIGTERM and waits for a clean exit.
Skipped without root, podman or mmdebstrap, unless ROWGEN_REQUIRE_PODMAN=1 (CI): then it fails.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml

from bench.load_clients import v2_inputs
from bench.servers import free_port
from rowgen import contract, sessions
from rowgen.bundle import find_bundles, open_bundle
from serve.app.gallery import load_gallery

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
TAG = "localhost/rowgen:test"
MANIFEST = REPO / "deploy" / "kserve" / "rowgen.yaml"
MAX_MB = 800  # the ceiling for the image (the aim is 500)
STOP_S = 10  # SIGTERM to exit: what `docker stop` and Kubernetes wait before SIGKILL
READY_S = 180
KNOWN_ROWS = (7, 14, 21)
TOLERANCE = 1e-6
ENV = {**os.environ, "CONTAINERS_CONF": str(REPO / "deploy" / "image" / "containers.conf")}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    run = subprocess.run(
        ["podman", *args], env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and run.returncode != 0:
        pytest.fail(f"podman {' '.join(args)}: exit {run.returncode}\n{run.stderr[-3000:]}")
    return run


def require_podman() -> None:
    missing = [tool for tool in ("podman", "mmdebstrap", "runc") if shutil.which(tool) is None]
    reason = (
        f"{', '.join(missing)} not installed (apt-get install podman runc mmdebstrap)"
        if missing
        else ("not root: podman builds and mmdebstrap run as root here" if os.geteuid() else "")
    )
    if reason and os.environ.get("ROWGEN_REQUIRE_PODMAN") == "1":
        pytest.fail(f"{reason}, and ROWGEN_REQUIRE_PODMAN=1 requires the image test")
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="module")
def image() -> str:
    """The image, built by deploy/image/build.sh (layers cached by podman between runs)."""
    require_podman()
    build = subprocess.run(
        [str(REPO / "deploy" / "image" / "build.sh"), "--tag", TAG],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert build.returncode == 0, f"build.sh failed:\n{(build.stdout + build.stderr)[-4000:]}"
    print(build.stdout.splitlines()[-1])  # image: TAG SIZE (...), the size the docs report
    return TAG


@pytest.fixture(scope="module")
def manifest() -> dict:
    return yaml.safe_load(MANIFEST.read_text())


@dataclass
class Container:
    name: str
    port: int
    grpc_port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def logs(self) -> str:
        run = podman("logs", self.name, check=False)
        return (run.stdout + run.stderr)[-4000:]


def wait_ready(container: Container) -> None:
    deadline = time.monotonic() + READY_S
    while time.monotonic() < deadline:
        state = podman("inspect", "--format", "{{.State.Running}}", container.name).stdout
        if state.strip() != "true":
            pytest.fail(f"the container stopped before it was ready:\n{container.logs()}")
        try:
            with urllib.request.urlopen(container.url("/v2/health/ready"), timeout=2) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    pytest.fail(f"not ready after {READY_S} s:\n{container.logs()}")


def run_like_the_manifest(
    image: str, manifest: dict, name: str, *command: str
) -> tuple[list[str], int, int]:
    """`podman run` arguments for the image as rowgen.yaml runs it, on free loopback ports
    (REST, gRPC)."""
    (spec,) = manifest["spec"]["predictor"]["containers"]
    env = {e["name"]: e["value"] for e in spec["env"]}
    # Host network: the container's ports are the host's, so loopback and free ones.
    port, grpc_port = free_port(), free_port()
    env |= {"ROWGEN_HOST": "127.0.0.1", "ROWGEN_PORT": str(port)}
    env["ROWGEN_GRPC_PORT"] = str(grpc_port)
    security = spec["securityContext"]
    assert security["readOnlyRootFilesystem"] and security["capabilities"]["drop"] == ["ALL"]
    return (
        [
            "run",
            "--detach",
            "--name",
            name,
            "--read-only",
            "--cap-drop",
            "ALL",
            "--security-opt",
            "no-new-privileges",
            "--health-interval",
            "disable",  # no systemd timer here; the test runs the check itself
            *(arg for key, value in env.items() for arg in ("--env", f"{key}={value}")),
            image,
            *command,
        ],
        port,
        grpc_port,
    )


@pytest.fixture(scope="module")
def container(image: str, manifest: dict) -> Iterator[Container]:
    name = f"rowgen-test-{os.getpid()}"
    args, port, grpc_port = run_like_the_manifest(image, manifest, name)
    podman(*args)
    running = Container(name, port, grpc_port)
    try:
        wait_ready(running)
        yield running
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


def test_the_image_is_within_its_size_budget(image: str) -> None:
    size_mb = int(podman("image", "inspect", "--format", "{{.Size}}", image).stdout) / 1e6
    print(f"image size: {size_mb:.0f} MB")
    assert size_mb <= MAX_MB, f"the image has {size_mb:.0f} MB, more than {MAX_MB} MB"


def test_the_image_holds_the_bundles_and_no_torch(image: str) -> None:
    listing = podman("run", "--rm", "--entrypoint", "ls", image, "/artifacts").stdout.split()
    assert listing == [p.name for p in find_bundles(REPO / "artifacts")]
    probe = "import importlib.util as u; print(u.find_spec('torch') is None)"
    found = podman("run", "--rm", image, "python", "-c", probe).stdout.strip()
    assert found == "True", "torch is installed in the serving image"


def reference(images: np.ndarray, known: np.ndarray) -> np.ndarray:
    """onnxruntime in this process on the bundle's complete.onnx: what the server must give."""
    bundle = open_bundle(REPO / "artifacts" / "lstm")
    session = sessions.open_session(bundle.read(contract.COMPLETE_ONNX))
    (image_in, rows_in) = (s.name for s in contract.complete_inputs())
    return session.run(None, {image_in: images, rows_in: known})[0]


def test_http_and_grpc_complete_as_onnxruntime_does(container: Container) -> None:
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    gallery = load_gallery()[:8]
    images = np.stack([g.image for g in gallery] * len(KNOWN_ROWS)).astype(np.float32)
    known = np.repeat(np.array(KNOWN_ROWS, np.int64), len(gallery))
    want = reference(images, known)
    (output,) = (s.name for s in contract.complete_outputs())
    clients = {
        "HTTP": (httpclient, httpclient.InferenceServerClient(f"127.0.0.1:{container.port}")),
        "gRPC": (grpcclient, grpcclient.InferenceServerClient(f"127.0.0.1:{container.grpc_port}")),
    }
    for protocol, (module, client) in clients.items():
        got = client.infer("lstm", v2_inputs(module, images, known)).as_numpy(output)
        diff = float(np.abs(got - want).max())
        assert diff <= TOLERANCE, f"{protocol}: {output} differs from onnxruntime by {diff}"
        metadata = client.get_model_metadata("lstm")
        platform = metadata["platform"] if protocol == "HTTP" else metadata.platform
        assert platform == "onnxruntime_onnx (CPUExecutionProvider)", protocol
    status = podman("exec", container.name, "cat", "/proc/1/status").stdout
    rss = re.search(r"VmRSS:\s+(\d+) kB", status)
    print(f"server RSS after {len(images)} completions per protocol: {int(rss[1]) // 1024} MiB")


def test_the_server_runs_as_the_manifests_user_as_pid_1(
    container: Container, manifest: dict
) -> None:
    user = manifest["spec"]["predictor"]["securityContext"]["runAsUser"]
    ids = podman("exec", container.name, "id", "-u").stdout.strip()
    assert ids == str(user) != "0"
    command = podman("exec", container.name, "cat", "/proc/1/cmdline").stdout
    assert command.split("\0")[:3] == ["python", "-m", "serve.api"], command  # SIGTERM reaches it


def test_the_healthcheck_passes(container: Container) -> None:
    check = podman("healthcheck", "run", container.name, check=False)
    assert check.returncode == 0, f"{check.stdout}{check.stderr}\n{container.logs()}"


def test_device_cuda_without_a_gpu_is_one_line_naming_why(image: str) -> None:
    run = podman("run", "--rm", "--env", "ROWGEN_DEVICE=cuda", image, check=False, timeout=180)
    lines = run.stderr.strip().splitlines()
    assert run.returncode == 1, run.stdout + run.stderr
    assert re.fullmatch(r"serve\.api: --device cuda: CUDA cannot be used here: .+", lines[-1])
    assert "no NVIDIA driver" in lines[-1] or "CUDA libraries" in lines[-1], lines[-1]


def test_the_gradio_app_runs_by_command(image: str, manifest: dict) -> None:
    name = f"rowgen-test-app-{os.getpid()}"
    port = free_port()
    args, _, _ = run_like_the_manifest(image, manifest, name)
    app = ["python", "-m", "serve", "--host", "127.0.0.1", "--port", str(port)]
    podman(*args, *app, "--artifacts", "/artifacts")
    try:
        deadline = time.monotonic() + READY_S
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as answer:
                    assert answer.status == 200 and b"gradio" in answer.read().lower()
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"the app did not answer:\n{podman('logs', name).stderr}")
                time.sleep(1)
        stop_cleanly(name)
    finally:
        podman("rm", "--force", "--time", "0", name, check=False)


def stop_cleanly(name: str) -> None:
    """SIGTERM, then the exit: within STOP_S seconds and with status 0."""
    podman("kill", "--signal", "TERM", name)
    try:
        waited = podman("wait", name, timeout=STOP_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{name} still ran {STOP_S} s after SIGTERM")
    assert waited.stdout.strip() == "0", f"{name} exited with {waited.stdout.strip()}"


def test_sigterm_stops_the_server_cleanly(container: Container) -> None:
    """Last: the module's container does not outlive it."""
    stop_cleanly(container.name)
    assert "Stopping the model server" in container.logs()
