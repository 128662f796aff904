"""The KServe manifests in deploy/kserve/ fit kserve's own V1beta1InferenceService model.

Every manifest, and broken copies of the image's one, goes through tests/deploy/manifests.py in
one process of its own (kserve and tritonclient cannot share one): read into the SDK's model
classes with unknown fields, wrong types and missing required fields refused, and serialized
back. The tests then check what the image and the Triton repository need of what came back:
ports, probes, user, protocol, storage.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

REPO = Path(__file__).resolve().parents[2]
KSERVE = REPO / "deploy" / "kserve"
ROWGEN = KSERVE / "rowgen.yaml"
TRITON = KSERVE / "triton.yaml"
IMAGE_USER = 10001  # the Dockerfile's USER; tests/deploy/test_image.py runs the image as this
API_VERSION = "serving.kserve.io/v1beta1"

DELETE = ...  # in BROKEN: remove the field
# (where and what to change in a copy of rowgen.yaml, what the error must say)
BROKEN = {
    "misspelt-field": (
        ("spec", {"predicter": {}}),
        r"manifest.spec: V1beta1InferenceServiceSpec has no field 'predicter'",
    ),
    "misspelt-probe": (
        ("spec.predictor.containers.0", {"readinesProbe": {}}),
        r"manifest.spec.predictor.containers\[0\].readinesProbe: Extra inputs are not permitted",
    ),
    "misspelt-nested": (
        ("spec.predictor.containers.0.readinessProbe.httpGet", {"paht": "/v2/health/ready"}),
        r"readinessProbe.httpGet.paht: Extra inputs are not permitted",
    ),
    "string-for-int": (
        ("spec.predictor", {"minReplicas": "1"}),
        r"manifest.spec.predictor.minReplicas: expected int, got '1'",
    ),
    "int-for-string": (
        ("spec.predictor.containers.0.env.0", {"value": 8080}),
        r"env.0.value: Input should be a valid string",
    ),
    "missing-required": (
        ("spec", {"predictor": DELETE}),
        r"manifest.spec: V1beta1InferenceServiceSpec: Invalid value for `predictor`, must not",
    ),
    "missing-container-name": (
        ("spec.predictor.containers.0", {"name": DELETE}),
        r"containers\[0\].name: Field required",
    ),
}


def broken_copy(manifest: dict, where: str, change: dict) -> dict:
    broken = copy.deepcopy(manifest)
    node = broken
    for key in where.split("."):
        node = node[int(key)] if key.isdigit() else node[key]
    for key, value in change.items():
        if value is DELETE:
            del node[key]
        else:
            node[key] = value
    return broken


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """`python -m tests.deploy.manifests` on every manifest and every BROKEN copy, by name."""
    folder = tmp_path_factory.mktemp("broken")
    manifest = yaml.safe_load(ROWGEN.read_text())
    paths = sorted(KSERVE.glob("*.yaml"))
    for name, ((where, change), _) in BROKEN.items():
        path = folder / f"{name}.yaml"
        path.write_text(yaml.safe_dump(broken_copy(manifest, where, change)))
        paths.append(path)
    run = subprocess.run(
        [sys.executable, "-m", "tests.deploy.manifests", *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    results = [json.loads(line) for line in run.stdout.splitlines()]
    return {Path(r["path"]).stem: r for r in results}


def service(checked: dict[str, dict], name: str) -> dict:
    result = checked[name]
    assert "error" not in result, f"{name}.yaml: {result.get('error')}"
    assert result["type"] == "V1beta1InferenceService"
    return result["service"]


@pytest.mark.parametrize("path", sorted(KSERVE.glob("*.yaml")), ids=lambda p: p.name)
def test_every_manifest_is_an_inference_service(checked: dict[str, dict], path: Path) -> None:
    manifest = service(checked, path.stem)
    assert (manifest["apiVersion"], manifest["kind"]) == (API_VERSION, "InferenceService")


def test_the_image_service_serves_the_v2_api_on_its_port(checked: dict[str, dict]) -> None:
    predictor = service(checked, "rowgen")["spec"]["predictor"]
    (container,) = predictor["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    (port,) = container["ports"]
    assert port["containerPort"] == int(env["ROWGEN_PORT"])
    assert port["name"] == "http1"  # Knative's name for the HTTP/1 port
    ready = container["readinessProbe"]["httpGet"]
    live = container["livenessProbe"]["httpGet"]
    assert (ready["path"], ready["port"]) == ("/v2/health/ready", port["containerPort"])
    assert (live["path"], live["port"]) == ("/v2/health/live", port["containerPort"])
    assert set(env) <= {"ROWGEN_PORT", "ROWGEN_GRPC_PORT", "ROWGEN_DEVICE"}
    assert "command" not in container and "args" not in container  # the image's own command
    for amounts in container["resources"].values():
        assert {"cpu", "memory"} <= set(amounts)


def test_the_image_service_runs_as_the_images_user_on_a_read_only_root(
    checked: dict[str, dict],
) -> None:
    predictor = service(checked, "rowgen")["spec"]["predictor"]
    pod = predictor["securityContext"]
    assert pod == {"runAsNonRoot": True, "runAsUser": IMAGE_USER, "runAsGroup": IMAGE_USER}
    container = predictor["containers"][0]["securityContext"]
    assert container["readOnlyRootFilesystem"] and not container["allowPrivilegeEscalation"]
    assert container["capabilities"]["drop"] == ["ALL"]


def test_the_triton_service_serves_make_tritons_repository(checked: dict[str, dict]) -> None:
    model = service(checked, "triton")["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton"
    assert model["protocolVersion"] == "v2"
    assert model["storageUri"].endswith("/triton")  # a copy of artifacts/triton/
    assert model["runtimeVersion"].endswith("-py3")
    assert model["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_the_sdks_own_deserializer_would_drop_a_misspelt_field(
    checked: dict[str, dict],
) -> None:
    """Why the manifests go through tests/deploy/manifests.py: `from_dict`, which the SDK's
    ApiClient deserializes with, keeps what it knows and loses the rest without a word."""
    container = {"name": "kserve-container", "image": "rowgen", "readinesProbe": {}}
    assert k8s.V1Container.from_dict(container).readiness_probe is None
    assert "readinesProbe" in checked["misspelt-probe"]["error"]


@pytest.mark.parametrize("name", BROKEN)
def test_a_broken_manifest_is_refused_naming_the_path(checked: dict[str, dict], name: str) -> None:
    _, message = BROKEN[name]
    assert "error" in checked[name], f"{name}: accepted"
    assert re.search(message, checked[name]["error"]), checked[name]["error"]
