"""deploy/ray/serve.yaml read, adjusted and checked, and the cluster environment it runs in.

Torch-free. `python -m serve.ray_app` (make api-ray), bench.load and the tests run the config
file as it is, or with a few fields replaced (`with_overrides`); every result is checked
against Ray's own schema, `ray.serve.schema.ServeDeploySchema`, before Serve sees it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "deploy" / "ray" / "serve.yaml"
# Serve's high-throughput mode: HAProxy (C) as each node's proxy, sending requests straight to the
# ingress replicas' own HTTP servers; replicas at the priority of any server (Ray starts its
# workers at nice 15). Cluster-wide: the environment of `ray start`, or of the pods in KubeRay.
CLUSTER_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1",
    "RAY_worker_niceness": "0",
}


# Ports each node's proxy opens beside http_options.port, at Ray's fixed defaults (8404, 9101,
# 8500). Nodes sharing one machine (ray.cluster_utils, two clusters at once) need their own; a
# worker node's proxy also needs its own HTTP port (the head keeps http_options.port).
NODE_PORTS = (
    "RAY_SERVE_HAPROXY_STATS_PORT",
    "RAY_SERVE_HAPROXY_METRICS_PORT",
    "RAY_SERVE_FALLBACK_PROXY_HTTP_PORT",
)
WORKER_PROXY_PORT = "RAY_SERVE_WORKER_PROXY_HTTP_PORT"
NODE_HEADER = "x-rowgen-ray-node"  # in every answer: the Ray node of the replica that answered
REPLICA_HEADER = "x-rowgen-ray-replica"  # ... and the replica (bench.load sums per replica)


def own_ports(free_port: Callable[[], int], worker: bool = False) -> dict[str, str]:
    """Environment giving one node's proxy ports of its own (`free_port` picks each)."""
    names = (*NODE_PORTS, *((WORKER_PROXY_PORT,) if worker else ()))
    return {name: str(free_port()) for name in names}


class ConfigError(ValueError):
    """The Serve config is not one Ray accepts; the message names the file and the field."""


def load(path: Path = CONFIG) -> dict:
    try:
        return yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read it as YAML: {exc}") from None


def check(config: dict, where: str = str(CONFIG)) -> None:
    """Raise ConfigError unless Ray's own schema accepts `config`."""
    from ray.serve.schema import ServeDeploySchema

    try:
        ServeDeploySchema.model_validate(config)
    except ValueError as exc:  # pydantic's ValidationError, which lists every bad field
        raise ConfigError(f"{where}: not a Serve config Ray accepts:\n{exc}") from None


def ingress(config: dict) -> dict:
    """The V2Ingress deployment's entry (deployments[0] of the one application)."""
    (app,) = config["applications"]
    (deployment,) = app["deployments"]
    return deployment


def with_overrides(
    config: dict,
    host: str | None = None,
    port: int | None = None,
    args: dict | None = None,
    replicas: int | None = None,
    replica_cpus: float | None = None,
) -> dict:
    """A copy of `config` with these fields replaced (None: kept). `replicas` fixes the replica
    count in place of the config's autoscaling."""
    config = copy.deepcopy(config)
    http = config.setdefault("http_options", {})
    if host is not None:
        http["host"] = host
    if port is not None:
        http["port"] = port
    (app,) = config["applications"]
    app["args"] = {**app.get("args", {}), **(args or {})}
    deployment = ingress(config)
    if replicas is not None:
        deployment.pop("autoscaling_config", None)
        deployment["num_replicas"] = replicas
    if replica_cpus is not None:
        deployment.setdefault("ray_actor_options", {})["num_cpus"] = replica_cpus
    return config
