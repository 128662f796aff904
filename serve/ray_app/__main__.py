"""The v2 API on Ray Serve, run from deploy/ray/serve.yaml with `serve run`: `make api-ray`.

    python -m serve.ray_app [--config deploy/ray/serve.yaml] [--port 8080] [--address auto]

Ray Serve's own way in: an HTTP proxy on every node of the cluster (Serve's HAProxy mode) sends
each request straight to one of the `V2Ingress` replicas (serve.ray_app.ingress), each of which
answers v2 REST itself with `make api`'s app: the same protocol, codec, checks and errors, every
bundle's models and micro-batchers in each replica. No process sits in front of all requests, so
nodes add ingress as well as replicas. Not a kserve front per node: that front would decode each
request and hand it to a replica through a Serve handle, a second Python hop per request, which
measured a fifth of `make api`'s throughput here; gRPC is served by `make api` only (Serve's gRPC
proxy would need the KServe servicer rebuilt on Serve's calling convention).

This runs `serve run` on the config: as it is, or with the flags given replacing its fields (the
flags of `python -m serve.api`; checked, with Ray's own schema, before Serve sees them), in a
cluster started here with serve.ray_app.config's CLUSTER_ENV, or one joined with `--address`
(started with that environment). Replicas and autoscaling are the config's. A bad flag or config
exits 2. Torch-free; needs the `ray` extra.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from serve.api.flags import add_server_args, batch_settings
from serve.ray_app.app import AppArgsError, parse, server_argv
from serve.ray_app.config import CLUSTER_ENV, CONFIG, REPO, ConfigError, check, load, with_overrides


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m serve.ray_app", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--config", type=Path, default=CONFIG, help="a Serve config file")
    parser.add_argument("--address", help="a running Ray cluster to join (auto, or host:port)")
    parser.add_argument("--replicas", type=int, help="a fixed replica count, no autoscaling")
    parser.add_argument("--replica-cpus", type=float, help="CPUs each replica reserves")
    # `python -m serve.api`'s flags: each one given replaces its field of the config (--host and
    # --port: http_options; the others: the application's args), the rest stay the config's.
    add_server_args(parser)
    defaults = vars(parser.parse_args([]))
    server_flags = [
        dest for dest in defaults if dest not in ("config", "address", "replicas", "replica_cpus")
    ]
    parser.set_defaults(**dict.fromkeys(server_flags, None))
    args = parser.parse_args(argv)
    if args.replicas is not None and args.replicas < 1:
        parser.error("--replicas must be at least 1")
    if args.grpc_port is not None:
        parser.error("--grpc-port: the Ray path serves REST; gRPC is `make api`'s")
    given = {d: v for d in server_flags if (v := getattr(args, d)) is not None and v is not False}
    batch_settings(argparse.Namespace(**{**defaults, **given}), parser)  # as serve.api: exit 2
    args.app_args = {d.replace("_", "-"): v for d, v in given.items() if d not in ("host", "port")}
    return args


def _default_sigint() -> None:
    """In the child before it starts: Ctrl-C as Python handles it, even when this process was
    started with SIGINT ignored (a shell's background job), which the child would inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _run(command: list[str], env: dict[str, str]) -> int:
    """`serve run` in its own session; Ctrl-C or SIGTERM here reaches it once, as Ctrl-C, on
    which it shuts Serve down and stops the cluster it started."""
    child = subprocess.Popen(command, env=env, start_new_session=True, preexec_fn=_default_sigint)

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child.send_signal(signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    return child.wait()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = with_overrides(
            load(args.config), args.host, args.port, args.app_args, args.replicas, args.replica_cpus
        )
        check(config, str(args.config))
        app = config["applications"][0]
        checked = parse(server_argv(app.get("args", {})))  # bad args fail here, not in Ray
    except (ConfigError, AppArgsError) as exc:
        print(f"serve.ray_app: {exc}", file=sys.stderr)
        return 2
    app["args"]["artifacts"] = checked.artifacts  # absolute: the cluster's cwd may differ
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", prefix="rowgen-serve-") as file:
        yaml.safe_dump(config, file, sort_keys=False)
        file.flush()
        command = [sys.executable, "-m", "ray.serve.scripts", "run", file.name]
        command += ["--app-dir", str(REPO), *(["--address", args.address] if args.address else [])]
        http = config["http_options"]
        print(f"serve.ray_app: serve run {args.config}: http://{http['host']}:{http['port']}/v2")
        sys.stdout.flush()
        return _run(command, {**os.environ, **CLUSTER_ENV})


if __name__ == "__main__":
    raise SystemExit(main())
