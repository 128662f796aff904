"""The Serve application of deploy/ray/serve.yaml: `import_path: serve.ray_app.app:build`.

Torch-free. Serve calls `build` with the config's `args`: the flags of `python -m serve.api` as
keys (`max-batch: 64`), checked by serve.api.flags' own parser, so the Ray path takes exactly the
knobs `make api` takes and refuses the same bad values. --host and --port belong to the config's
`http_options` (Serve's proxies listen, not the replicas' code), so they are refused here.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rowgen.bundle import find_bundles
from serve.api.flags import add_server_args, batch_settings, limits

PROXY_FLAGS = ("host", "port", "grpc_port")  # set by the config's http_options


class AppArgsError(ValueError):
    """The config's `args` are not flags of `python -m serve.api`; the message says which."""


class _Parser(argparse.ArgumentParser):
    """serve.api's flags, whose errors are raised (Serve reports them) rather than exiting."""

    def error(self, message: str):
        raise AppArgsError(f"args: {message}")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="serve.ray_app.app args", exit_on_error=False)
    add_server_args(parser)
    return parser


def server_argv(args: dict) -> list[str]:
    """The config's `args` as a command line of `python -m serve.api`, checked; the artifacts
    folder made absolute (replicas on other nodes read the same path)."""
    argv = []
    for key, value in args.items():
        name = str(key).replace("-", "_")
        if name in PROXY_FLAGS:
            raise AppArgsError(
                f"args.{key}: Serve's proxies listen here; set http_options in the config"
            )
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [] if value is False else [flag, str(value)]
    parsed = parse(argv)
    artifacts = Path(parsed.artifacts).resolve()
    if not find_bundles(artifacts):
        raise AppArgsError(
            f"args.artifacts: no bundles under {artifacts} (from {parsed.artifacts!r}, relative "
            "to where the app is built); give an absolute path every node can read"
        )
    return [*argv, "--artifacts", str(artifacts)]


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse and check flags as `python -m serve.api` does; AppArgsError names the bad one."""
    parser = _parser()
    try:
        parsed, unknown = parser.parse_known_args(argv)
        if unknown:
            raise AppArgsError(f"not flags of `python -m serve.api`: {' '.join(unknown)}")
        parsed.batching = batch_settings(parsed, parser)
        parsed.limits = limits(parsed)
    except argparse.ArgumentError as exc:
        raise AppArgsError(f"args: {exc}") from None
    except SystemExit as exc:  # serve.api.flags.limits names the flag this way
        raise AppArgsError(f"args: {exc}") from None
    return parsed


def build(args: dict):
    """The application: V2Ingress replicas behind Serve's proxies, one per node."""
    from serve.ray_app.ingress import V2Ingress

    return V2Ingress.bind(server_argv(args))
