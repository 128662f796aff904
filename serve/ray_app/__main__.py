"""The v2 API scaled out on Ray Serve: `make api-ray`.

    python -m serve.ray_app --address auto --replicas 4 --artifacts artifacts

This process runs the v2 front (kserve's server, REST and gRPC, as `make api`); every bundle is a
Ray Serve deployment whose replicas hold the same `CompleteModel`/`StepModel` as `make api`,
each with its own micro-batcher, on whichever nodes of the Ray cluster have room. `--address`
joins a running cluster (default: start one here); `--replicas N`, or `--min-replicas` and
`--max-replicas` for Serve's autoscaling; one GPU per replica when the cluster has GPUs. Every
node must see the bundles at the same `--artifacts` path. Torch-free; needs the `ray` extra.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rowgen.bundle import find_bundles
from serve.api.flags import add_server_args, batch_settings
from serve.batching import BatchSettings

NODE_PARAMETER = "ray_node_id"  # response parameter: the Ray node of the replica that served it


class BundleReplica:
    """One replica: a bundle's two v2 models, as `make api` serves them, on this Ray node."""

    def __init__(self, bundle: str, device: str, batching: BatchSettings) -> None:
        import ray

        from serve.api.models import bundle_models
        from serve.runtime import OrtModel

        self.models = {m.name: m for m in bundle_models(OrtModel(bundle, device), batching)}
        self.node_id = ray.get_runtime_context().get_node_id()

    def names(self) -> list[str]:
        """The v2 model names this replica serves (contract.serving_names)."""
        return list(self.models)

    def metadata(self, name: str) -> tuple[list[dict], list[dict]]:
        model = self.models[name]
        return model.get_input_types(), model.get_output_types()

    async def infer(self, name: str, request, headers: dict | None):
        """(response, headers), or a refusal as data (see serve.ray_app.front)."""
        from serve.ray_app.front import refusal

        try:
            response, response_headers = await self.models[name](request, headers)
        except Exception as exc:
            if (refused := refusal(exc)) is None:
                raise
            return refused
        response.parameters = {**(response.parameters or {}), NODE_PARAMETER: self.node_id}
        return response, response_headers


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serve.ray_app", description="the v2 API on Ray Serve replicas"
    )
    add_server_args(parser)
    parser.add_argument("--address", help="a Ray cluster to join (auto, or host:port)")
    parser.add_argument("--replicas", type=int, default=1, help="replicas per bundle")
    parser.add_argument("--min-replicas", type=int, help="autoscale from this many ...")
    parser.add_argument("--max-replicas", type=int, help="... to this many replicas per bundle")
    parser.add_argument("--replica-cpus", type=float, default=1.0, help="CPUs each replica takes")
    parser.add_argument(
        "--replica-gpus", type=float, help="GPUs per replica (default: 1 if the cluster has GPUs)"
    )
    args = parser.parse_args(argv)
    if (args.min_replicas is None) != (args.max_replicas is None):
        parser.error("--min-replicas and --max-replicas go together")
    if args.min_replicas is not None and not 0 < args.min_replicas <= args.max_replicas:
        parser.error("autoscaling needs 0 < --min-replicas <= --max-replicas")
    args.batching = batch_settings(args, parser)
    return args


def deployment_options(args: argparse.Namespace, gpus: float, batching: BatchSettings) -> dict:
    """Serve options: replica count or autoscaling bounds, resources, and bounded queues."""
    options: dict = {
        "ray_actor_options": {"num_cpus": args.replica_cpus, "num_gpus": gpus},
        # A replica takes enough requests at once to fill its batches; callers beyond that wait
        # in a bounded queue at the front, then get BackPressureError (answered 503).
        "max_ongoing_requests": batching.max_queue + batching.max_batch,
        "max_queued_requests": batching.max_queue,
    }
    if args.min_replicas is not None:
        options["autoscaling_config"] = {
            "min_replicas": args.min_replicas,
            "max_replicas": args.max_replicas,
            "target_ongoing_requests": batching.max_batch,
        }
    else:
        options["num_replicas"] = args.replicas
    return options


def deploy(args: argparse.Namespace, batching: BatchSettings) -> dict[str, object]:
    """One Serve application per bundle; the handles by bundle name."""
    import ray
    from ray import serve

    ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    has_gpus = ray.cluster_resources().get("GPU", 0) > 0
    gpus = args.replica_gpus if args.replica_gpus is not None else float(has_gpus)
    serve.start(proxy_location="Disabled")  # the v2 front below is the only way in
    options = deployment_options(args, gpus, batching)
    bundles = find_bundles(args.artifacts)
    need = len(bundles) * (args.min_replicas or args.replicas) * args.replica_cpus
    if need > (have := ray.cluster_resources().get("CPU", 0)):
        print(
            f"serve.ray_app: waiting: {len(bundles)} bundles' replicas need {need:g} CPUs and "
            f"the cluster has {have:g} (Ray's autoscaler may add nodes; else pass "
            "--replica-cpus, --replicas or --address of a larger cluster)",
            file=sys.stderr,
            flush=True,
        )
    handles = {}
    for path in bundles:
        replica = serve.deployment(BundleReplica, name=path.name).options(**options)
        app = replica.bind(str(path.resolve()), args.device, batching)
        handles[path.name] = serve.run(app, name=path.name, route_prefix=None)
    return handles


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    batching = args.batching
    if not find_bundles(args.artifacts):
        print(f"serve.ray_app: no bundles under {Path(args.artifacts)}", file=sys.stderr)
        return 2
    from serve.api.server import V2Server, busy_port  # kserve, once the flags are parsed

    if message := busy_port(args.host, {"--port": args.port, "--grpc-port": args.grpc_port}):
        print(f"serve.ray_app: {message}", file=sys.stderr)
        return 2
    from serve.ray_app.front import front_models

    handles = deploy(args, batching)
    served = front_models(handles)
    print(f"serve.ray_app: {', '.join(m.name for m in served)} on Ray Serve", flush=True)
    V2Server.from_args(args).start(served)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
