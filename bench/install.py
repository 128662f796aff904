"""From a fresh clone to a serving API, and what the development set adds: `make install-times`.

Clones this repository's HEAD into a temporary folder and times, with the wall clock, what a new
user's first commands do there:
1. `make api` on a free loopback port until `/v2/health/ready` answers: pip creates `.venv` with
   the serving set (no torch), then the server starts. Reported as the install and the start
   separately, and their sum.
2. `make venv`: the development set added to the same `.venv` (what `make train`, `make export`
   and `make test` do first).
Sizes are `du` of `.venv` after each. pip reads the same indexes and wheel mirror as any install
on this host, with its cache off (`PIP_NO_CACHE_DIR`), so every run downloads what a fresh
machine would. Writes `artifacts/bench/install.json` and `install.md` and prints the table.

    python -m bench.install [--out artifacts/bench] [--no-dev] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.servers import REPO, free_port
from rowgen.tables import markdown_table

READY = "/v2/health/ready"
START_TIMEOUT_S = 900.0  # pip's install is part of the wait


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.install", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench")
    parser.add_argument("--no-dev", action="store_true", help="stop after the serving set")
    parser.add_argument("--keep", action="store_true", help="keep the clone (its path is printed)")
    return parser.parse_args(argv)


def du_mib(path: Path) -> int:
    out = subprocess.run(["du", "-sm", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0])


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def serve_from_scratch(clone: Path, env: dict[str, str], log: Path) -> dict:
    """`make api` in a clone without .venv: seconds until pip finished (the serving set's stamp
    appears) and until the API answers ready; then SIGTERM."""
    port, grpc_port = free_port(), free_port()
    url = f"http://127.0.0.1:{port}{READY}"
    command = ["make", "api", f"PORT={port}", f"GRPC_PORT={grpc_port}", "DEVICE=cpu"]
    stamp = clone / ".venv" / ".rowgen-serving"
    start = time.monotonic()
    with log.open("wb") as sink:
        make = subprocess.Popen(command, cwd=clone, env=env, stdout=sink, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        installed = None
        try:
            while not ready(url):
                if installed is None and stamp.exists():
                    installed = time.monotonic() - start
                if make.poll() is not None or time.monotonic() - start > START_TIMEOUT_S:
                    raise RuntimeError(f"`make api` did not answer {READY}: see {log}")
                time.sleep(0.2)
            answered = time.monotonic() - start
        finally:
            os.killpg(make.pid, signal.SIGTERM)
            make.wait(60)
    installed = installed if installed is not None else answered
    return {"install_s": round(installed, 1), "start_s": round(answered - installed, 1),
            "total_s": round(answered, 1), "venv_mib": du_mib(clone / ".venv")}  # fmt: skip


def add_dev(clone: Path, env: dict[str, str], log: Path) -> dict:
    """`make venv` on top of the serving set: seconds and the size after."""
    start = time.monotonic()
    with log.open("wb") as sink:
        subprocess.run(["make", "venv"], cwd=clone, env=env, stdout=sink, stderr=subprocess.STDOUT,
                       check=True)  # fmt: skip
    return {"install_s": round(time.monotonic() - start, 1), "venv_mib": du_mib(clone / ".venv")}


def minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60} s" if whole >= 60 else f"{whole} s"


def markdown(result: dict) -> str:
    serving, dev = result["serving"], result.get("dev")
    rows = [
        ["`make api` from a fresh clone: pip, serving set", minutes(serving["install_s"]),
         f"{serving['venv_mib']:,} MiB"],
        ["... then the API starts and answers ready", minutes(serving["start_s"]), ""],
        ["**fresh clone to a serving API**", f"**{minutes(serving['total_s'])}**", ""],
    ]  # fmt: skip
    if dev:
        rows.append(["`make venv`: the development set added", minutes(dev["install_s"]),
                     f"{dev['venv_mib']:,} MiB in all"])  # fmt: skip
    head = (
        f"Measured by `make install-times` on commit {result['commit']} ({result['cpus']} CPUs, "
        f"load average {result['loadavg_before'][0]} before); pip with no cache.\n\n"
    )
    return head + markdown_table(["step", "time", ".venv size"], rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("make") is None or shutil.which("git") is None:
        print("bench.install: needs make and git on PATH (apt install make git)", file=sys.stderr)
        return 2
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                            text=True, check=True).stdout.strip()  # fmt: skip
    env = {**os.environ, "PIP_NO_CACHE_DIR": "1"}
    env.pop("VIRTUAL_ENV", None)
    work = Path(tempfile.mkdtemp(prefix="rowgen-install-"))
    clone = work / "rowgen"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    result: dict = {"commit": commit, "cpus": os.cpu_count(),
                    "loadavg_before": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    try:
        result["serving"] = serve_from_scratch(clone, env, work / "serving.log")
        print(f"bench.install: serving set {result['serving']}", flush=True)
        if not args.no_dev:
            result["dev"] = add_dev(clone, env, work / "dev.log")
            print(f"bench.install: development set {result['dev']}", flush=True)
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"bench.install: {exc} (logs in {work})", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "install.json").write_text(json.dumps(result, indent=2) + "\n")
    table = markdown(result)
    (args.out / "install.md").write_text(table)
    print(
        table
        + f"-> {args.out}/install.json, install.md"
        + (f" (clone: {clone})" if args.keep else "")
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
