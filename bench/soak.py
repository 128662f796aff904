"""Soak benchmark: the Gradio app and the v2 API under steady load for minutes: `make soak`.

Each target is started by bench.servers (as `make load` starts it), with its own temporary folders
(TMPDIR, GRADIO_TEMP_DIR), driven by `--clients` callers on loopback for `--minutes`. Prints,
per target: requests, errors, requests/s, the server's RSS (VmRSS) and temporary-disk use at
the start (after the first answer) and the end, their peaks, and the disk left after SIGTERM;
writes `artifacts/bench/soak.json`. Torch-free. What is driven, and how: bench.soak_targets.

    python -m bench.soak [--minutes 10] [--clients 8] [--artifacts artifacts] [--targets app api]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from bench import servers
from bench.soak_targets import TARGETS, Target, write_images

SAMPLE_S = 5.0  # how often RSS and disk are read while the load runs


def folder_usage(folder: Path) -> tuple[int, int]:
    """(bytes of the files, number of files and folders) under `folder`, while it changes."""
    size = count = 0
    for parent, folders, files in os.walk(folder):  # os.walk skips what vanishes meanwhile
        count += len(folders) + len(files)
        for name in files:
            try:
                size += os.lstat(os.path.join(parent, name)).st_size
            except FileNotFoundError:  # swept while counting
                continue
    return size, count


def sample(server: servers.Running, folders: list[Path]) -> dict:
    disk = [folder_usage(f) for f in folders]
    return {
        "rss_mb": servers.rss_mib(server),
        "disk_mb": round(sum(d[0] for d in disk) / 2**20, 2),
        "disk_entries": sum(d[1] for d in disk),
    }


def soak(target: Target, artifacts: str, clients: int, seconds: float, root: Path) -> dict:
    """Start `target`, load it for `seconds`, stop it with SIGTERM; the figures as data."""
    work = root / target.name
    folders = [work / "tmp", work / "gradio"]
    for folder in folders:
        folder.mkdir(parents=True)
    env = {**os.environ, "TMPDIR": str(folders[0]), "GRADIO_TEMP_DIR": str(folders[1])}
    server = servers.start(target.kind, artifacts, "auto", work, env=env)
    url = server.base + "/"
    images = sorted((root / "images").glob("*.png"))
    counts = {"requests": 0, "errors": 0, "examples": set()}
    lock = threading.Lock()
    try:
        target.caller(url, images, root / "warm")(1)  # loads what the first request needs
        start = sample(server, folders)
        peak = dict(start)
        deadline = time.monotonic() + seconds

        def client(c: int) -> None:
            call = target.caller(url, images, root / f"{target.name}-{c}")
            i = c
            while time.monotonic() < deadline:
                try:
                    call(i)
                    error = None
                except Exception as exc:  # counted: the server's answers are what is measured
                    error = f"{type(exc).__name__}: {exc}"[:200]
                with lock:
                    counts["requests"] += 1
                    if error:
                        counts["errors"] += 1
                        counts["examples"].add(error)
                i += clients

        threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            time.sleep(SAMPLE_S)
            now = sample(server, folders)
            peak = {k: max(peak[k], now[k]) for k in peak}
        end = sample(server, folders)
    finally:
        exit_code = server.stop()
    stopped = {"disk_mb": sample_disk(folders)}
    return {
        "target": target.name,
        "clients": clients,
        "seconds": seconds,
        "requests": counts["requests"],
        "errors": counts["errors"],
        "error_examples": sorted(counts["examples"])[:5],
        "requests_per_s": round(counts["requests"] / seconds, 2),
        "start": start,
        "end": end,
        "peak": peak,
        "after_stop": stopped,
        "exit_code": exit_code,
    }


def sample_disk(folders: list[Path]) -> float:
    return round(sum(folder_usage(f)[0] for f in folders) / 2**20, 2)


def table(results: list[dict]) -> str:
    header = ["target", "requests", "errors", "req/s", "RSS start → end (peak), MB",
              "temp disk start → end (peak), MB", "temp disk after stop, MB"]  # fmt: skip
    rows = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for r in results:
        s, e, p = r["start"], r["end"], r["peak"]
        rows.append(
            f"| {r['target']} | {r['requests']} | {r['errors']} | {r['requests_per_s']} "
            f"| {s['rss_mb']} → {e['rss_mb']} ({p['rss_mb']}) "
            f"| {s['disk_mb']} → {e['disk_mb']} ({p['disk_mb']}) | {r['after_stop']['disk_mb']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="how long to load each target")
    parser.add_argument("--clients", type=int, default=8, help="concurrent callers per target")
    parser.add_argument("--artifacts", default="artifacts", help="bundles the servers load")
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=["app", "api"])
    parser.add_argument("--out", type=Path, default=Path("artifacts/bench/soak.json"))
    args = parser.parse_args(argv)

    targets = [TARGETS[name] for name in args.targets]
    seconds = args.minutes * 60.0
    with tempfile.TemporaryDirectory(prefix="rowgen-soak-") as tmp:
        root = Path(tmp)
        write_images(root / "images")
        tempfile.tempdir = str(root)  # the clients' own temporary files stay in here too
        results: list[dict] = [{}] * len(targets)

        def run(i: int) -> None:
            results[i] = soak(targets[i], args.artifacts, args.clients, seconds, root)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
        for thread in threads:  # the targets run side by side, each with its own clients
            thread.start()
        for thread in threads:
            thread.join()
        tempfile.tempdir = None
    if not all(results):
        print("soak: a target failed to run", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"minutes": args.minutes, "results": results}, indent=2) + "\n")
    print(f"{args.clients} clients per target for {args.minutes:g} min -> {args.out}")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
