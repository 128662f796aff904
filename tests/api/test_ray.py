"""The v2 API on Ray Serve (`make api-ray`): deploy/ray/'s config and manifest against Ray's own
schema, one node answering like `make api` (the fast suite, so CI exercises the `ray` extra), and
a two-node `ray.cluster_utils.Cluster` whose replicas on both nodes answer (slow)."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("ray", reason="the Ray Serve path needs the ray extra: pip install '.[ray]'")
httpclient = pytest.importorskip("tritonclient.http")

from bench.load_clients import v2_inputs  # noqa: E402
from bench.servers import free_port, start  # noqa: E402
from rowgen import contract  # noqa: E402
from serve.ray_app import config as ray_config  # noqa: E402
from serve.ray_app.app import AppArgsError, server_argv  # noqa: E402
from serve.runtime import OrtModel  # noqa: E402

MANIFEST = ray_config.CONFIG.with_name("rayservice.yaml")
IMAGE, KNOWN_ROWS = (s.name for s in contract.complete_inputs())


def test_the_serve_config_is_one_ray_accepts(tiny_bundles: Path) -> None:
    from ray.serve.schema import ServeDeploySchema

    config = ray_config.load()
    schema = ServeDeploySchema.model_validate(config)  # Ray's own schema, as `serve deploy` uses
    assert schema.proxy_location.value == "EveryNode"  # a proxy on every node, none in front
    assert config["http_options"]["host"] == "127.0.0.1"
    (app,) = schema.applications
    assert app.import_path == "serve.ray_app.app:build"
    (deployment,) = app.deployments
    assert deployment.name == "V2Ingress" and deployment.autoscaling_config
    assert server_argv({**app.args, "artifacts": str(tiny_bundles)})  # serve.api's flags, valid


def test_the_rayservice_manifest_embeds_the_config() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert (manifest["apiVersion"], manifest["kind"]) == ("ray.io/v1", "RayService")
    embedded = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    ray_config.check(embedded, f"{MANIFEST}: serveConfigV2")
    expected = ray_config.with_overrides(
        ray_config.load(), host="0.0.0.0", args={"artifacts": "/app/artifacts"}
    )
    assert embedded == expected  # the file's config, for a pod: only these two fields differ
    cluster = manifest["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    for group in groups:
        (container,) = group["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == ray_config.CLUSTER_ENV, container["name"]
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["serve"] == embedded["http_options"]["port"], container["name"]


def test_bad_config_args_are_refused_by_name(tiny_bundles: Path, tmp_path: Path) -> None:
    good = {"artifacts": str(tiny_bundles)}
    for args, needle in (
        ({**good, "port": 9000}, "http_options"),
        ({**good, "max-batch": 0}, "--max-batch"),
        ({**good, "batch_size": 4}, "--batch-size"),
        ({**good, "device": "tpu"}, "tpu"),
        ({"artifacts": str(tmp_path)}, "no bundles under"),
    ):
        with pytest.raises(AppArgsError, match=needle):
            server_argv(args)
    broken = ray_config.load()
    broken["applications"][0]["deployments"][0]["num_replicas"] = "two"
    with pytest.raises(ray_config.ConfigError, match="num_replicas"):
        ray_config.check(broken)


def post(url: str, body: dict) -> tuple[int, dict, dict]:
    request = urllib.request.Request(
        f"http://{url}/v2/models/lstm/infer", json.dumps(body).encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), dict(exc.headers)


def images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((n, contract.IMAGE_SIZE, contract.IMAGE_SIZE), dtype=np.float32)
    return image, rng.integers(1, 28, n).astype(np.int64)


def body(image: np.ndarray, known_rows: list[int]) -> dict:
    return {
        "inputs": [
            {"name": IMAGE, "datatype": "FP32", "shape": list(image.shape),
             "data": image.ravel().tolist()},
            {"name": KNOWN_ROWS, "datatype": "INT64", "shape": [len(known_rows)],
             "data": known_rows},
        ]
    }  # fmt: skip


# Serve drains an ingress replica for 30 s before stopping it, so that HAProxy stops routing to
# it first (docs/ray.md); nothing routes here once the test is done, so the test's cluster drains
# for 1 s and stops in seconds rather than 35.
QUICK_STOP = {**os.environ, "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "1"}


@pytest.fixture(scope="module")
def lstm_only(tiny_bundles: Path, tmp_path_factory) -> Path:
    artifacts = tmp_path_factory.mktemp("ray-artifacts")
    shutil.copytree(tiny_bundles / "lstm", artifacts / "lstm")
    return artifacts


def test_one_node_answers_like_make_api(lstm_only: Path, tmp_path: Path) -> None:
    """deploy/ray/serve.yaml on a one-node cluster (one replica), beside `make api`: the same
    answers, the same refusals, word for word. (It starts its own `make api` rather than use the
    package's shared one, so that parallel runs can put it beside the tests that do.)"""
    ray = start("ray", lstm_only, "cpu", tmp_path, ["--replicas", "1"], 300, env=QUICK_STOP)
    try:
        api = start("v2", lstm_only, "cpu", tmp_path, [], timeout=120)
        try:
            image, known_rows = images(3, seed=1)
            expected = OrtModel(lstm_only / "lstm", "cpu").complete(image, known_rows)
            for binary in (False, True):
                client = httpclient.InferenceServerClient(ray.url)
                inputs = v2_inputs(httpclient, image, known_rows, binary)
                got = client.infer("lstm", inputs).as_numpy("completed")
                np.testing.assert_allclose(got, expected, atol=1e-6, err_msg=f"binary={binary}")
            bad = [
                body(image[:1], [99]),  # known_rows out of range
                body(image[:1] * 3, [14]),  # pixels out of [0, 1]
                {"inputs": [body(image[:1], [14])["inputs"][0]]},  # known_rows missing
                {"inputs": "nope"},
            ]
            for request in bad:
                code, answer, headers = post(ray.url, request)
                assert (code, answer) == post(api.url, request)[:2], answer
                assert 400 <= code < 500 and ray_config.NODE_HEADER in headers
            meta = httpclient.InferenceServerClient(ray.url).get_model_metadata("lstm_step")
            assert [t["name"] for t in meta["inputs"]] == ["row", "h", "c"]
        finally:
            api.stop()
    finally:
        ray.stop()
    assert ray.process.returncode == 0, ray.log.read_text()[-3000:]


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple]:
    """A head and a worker node with one CPU each (two 1-CPU replicas land one per node), and
    the HTTP port of the worker node's proxy: on one machine each node's proxy has its own."""
    from ray.cluster_utils import Cluster

    head_env = {**ray_config.CLUSTER_ENV, **ray_config.own_ports(free_port)}
    worker_env = {**ray_config.CLUSTER_ENV, **ray_config.own_ports(free_port, worker=True)}
    args = {"num_cpus": 1, "include_dashboard": False, "env_vars": head_env}
    cluster = Cluster(initialize_head=True, head_node_args=args)
    cluster.add_node(num_cpus=1, env_vars=worker_env)
    cluster.wait_for_nodes()
    yield cluster, int(worker_env[ray_config.WORKER_PROXY_PORT])
    cluster.shutdown()


@pytest.mark.slow  # a cluster, its proxies and two replicas take minutes here
def test_two_nodes_each_take_requests_and_answer_them(
    cluster: tuple, lstm_only: Path, tmp_path: Path
) -> None:
    """Requests enter through the proxy of either node; replicas on both nodes answer them."""
    import ray
    from ray import serve

    cluster, worker_port = cluster
    flags = ["--address", cluster.address, "--replicas", "2", "--replica-cpus", "1"]
    server = start("ray", lstm_only, "cpu", tmp_path, flags, timeout=600)
    nodes = {node.node_id for node in cluster.list_all_nodes()}
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        try:  # a proxy on each node (once a replica runs there), none in front of all
            healthy = dict.fromkeys(nodes, "HEALTHY")
            proxies: dict = {}
            deadline = time.monotonic() + 300
            while proxies != healthy and time.monotonic() < deadline:
                time.sleep(2)
                proxies = {node: status.value for node, status in serve.status().proxies.items()}
            assert proxies == healthy, proxies
        finally:
            ray.shutdown()
        image, known_rows = images(32, seed=3)
        expected = OrtModel(lstm_only / "lstm", "cpu").complete(image, known_rows)
        ways_in = (server.url, f"127.0.0.1:{worker_port}")  # the head's proxy, the worker's

        def call(i: int) -> tuple[str, str]:
            way_in = ways_in[i % 2]
            code, answer, headers = post(way_in, body(image[i : i + 1], [int(known_rows[i])]))
            assert code == 200, (way_in, answer)
            got = np.asarray(answer["outputs"][0]["data"], np.float32).reshape(expected[i].shape)
            np.testing.assert_allclose(got, expected[i], atol=1e-6, err_msg=f"image {i}")
            return way_in, headers[ray_config.NODE_HEADER]

        answered: Counter[tuple[str, str]] = Counter()
        deadline = time.monotonic() + 120
        while len({node for _, node in answered}) < 2 and time.monotonic() < deadline:
            with ThreadPoolExecutor(8) as pool:
                answered.update(pool.map(call, range(32)))
        assert {way_in for way_in, _ in answered} == set(ways_in), answered
        assert {node for _, node in answered} == nodes, answered
    finally:
        server.stop()
