"""`python -m serve.ray_app` on a real two-node Ray cluster on this machine: two replicas on
different nodes, driven through the same v2 clients as `make api`, answering like complete.onnx."""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray", reason="the Ray Serve path needs the ray extra: pip install '.[ray]'")
from ray.cluster_utils import Cluster

from bench.servers import Running, start
from serve.runtime import OrtModel
from tests.api.test_api import grpcclient, httpclient, images, infer, post

pytestmark = pytest.mark.slow  # a cluster, two replicas and the front take a minute here


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """A head and a worker node with one CPU each: two 1-CPU replicas must land one per node."""
    cluster = Cluster(
        initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False}
    )
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    yield cluster
    cluster.shutdown()


@pytest.fixture(scope="module")
def ray_server(cluster: Cluster, tiny_bundles: Path, tmp_path_factory) -> Iterator[Running]:
    artifacts = tmp_path_factory.mktemp("ray-artifacts")
    shutil.copytree(tiny_bundles / "lstm", artifacts / "lstm")
    flags = ["--address", cluster.address, "--replicas", "2", "--batch-wait-ms", "5"]
    server = start("ray", artifacts, "cpu", artifacts.parent, flags, timeout=300)
    yield server
    server.stop()


def node_of(result) -> str:
    response = result.get_response()
    if isinstance(response, dict):
        return response["parameters"]["ray_node_id"]
    return response.parameters["ray_node_id"].string_param


def test_two_replicas_on_two_nodes_answer_like_onnxruntime(
    ray_server: Running, cluster: Cluster, tiny_bundles: Path
) -> None:
    lstm = OrtModel(tiny_bundles / "lstm", "cpu")
    image, known_rows = images(32, seed=3)
    expected = lstm.complete(image, known_rows)

    def call(i: int):
        module, url = (httpclient, ray_server.url) if i % 2 else (grpcclient, ray_server.grpc_url)
        result = infer(module, url, image[i : i + 1], known_rows[i : i + 1])
        return result.as_numpy("completed")[0], node_of(result)

    deadline = time.monotonic() + 60
    served_by: Counter[str] = Counter()
    while len(served_by) < 2 and time.monotonic() < deadline:  # Serve balances by queue length
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(call, range(32)))
        for i, (completed, node) in enumerate(answers):
            np.testing.assert_allclose(completed, expected[i], atol=1e-6, err_msg=f"image {i}")
            served_by[node] += 1
    nodes = {node.node_id for node in cluster.list_all_nodes()}
    assert set(served_by) == nodes, (served_by, nodes)


def test_bad_request_through_ray_is_a_400(ray_server: Running) -> None:
    body = {
        "inputs": [
            {"name": "image", "datatype": "FP32", "shape": [1, 28, 28], "data": [0.5] * 784},
            {"name": "known_rows", "datatype": "INT64", "shape": [1], "data": [99]},
        ]
    }

    code, answer, _ = post(ray_server, "/v2/models/lstm/infer", json.dumps(body).encode())
    assert code == 400 and "known_rows[0] is 99" in answer["error"], answer
    meta = httpclient.InferenceServerClient(ray_server.url).get_model_metadata("lstm_step")
    assert [t["name"] for t in meta["inputs"]] == ["row", "h", "c"]
