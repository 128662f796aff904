"""Speed of every way to complete an image: same weights, same inputs, one process.

    python -m bench.speed [--bundle artifacts/lstm] [--threads N] [--repeats 20] [--quick]
    make bench

Rows: the course notebook's loop (window LSTM in eager PyTorch, one image at a time: the anchor),
then the bundle's model as eager PyTorch, TorchScript complete.ts, onnxruntime complete.onnx and
step.onnx driven from Python, and CUDA rows when a GPU is there. Latency at batch 1 and time
per image at batch 256 (known_rows 14), then sweeps over known_rows and batch, FLOPs and the
machine's own matmul rate as the roofline, and the batch-1 floor (bench.floor). Writes
speed.json, speed.md and speed.png to --out and prints the table with the targets as ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from tqdm import tqdm

from bench import floor, measure, runners, speed_report
from rowgen import contract, sessions
from rowgen.bundle import Bundle, BundleError, open_bundle
from rowgen.config import ModelConfig
from training.checkpoint import load_weights
from training.model import RowGenerator

KNOWN_ROWS = 14
FULL = {"big": 256, "known": (1, 7, 14, 21, 27), "batches": (1, 4, 16, 64, 256, 1024)}
QUICK = {"big": 8, "known": (7, 14), "batches": (1, 8)}
COURSE_SWEEP_MAX = 16  # the course loop's cost is linear in batch (one image at a time)
PASSES = 3  # passes of the batch-1 headline cells, timed in turns (measure.time_in_turns)
FLOOR = "floor"  # bench.floor's program, timed in the batch-1 turns beside the runners


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.speed", description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, default=Path("artifacts/lstm"), help="bundle to time")
    p.add_argument(
        "--window-bundle",
        type=Path,
        default=Path("artifacts/lstm-window"),
        help="course-style window model for the anchor row (random weights when absent)",
    )
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch and ORT threads")
    p.add_argument("--repeats", type=int, default=20, help="timed runs per cell")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs before each cell")
    p.add_argument("--quick", action="store_true", help="tiny sweeps and batch 8 (tests)")
    p.add_argument(
        "--ort-options",
        action="store_true",
        help="also time onnxruntime session option variants (threads, spinning, optimization)",
    )
    p.add_argument("--out", type=Path, default=Path("artifacts/bench"), help="output folder")
    return p.parse_args(argv)


def window_net(path: Path) -> tuple[RowGenerator, str]:
    """The course's model: a trained window bundle if there is one, else random weights."""
    if (path / contract.MANIFEST).is_file():
        net = load_weights(open_bundle(path).file(contract.WEIGHTS))
        return net, f"{path} (trained weights, {net.config})"
    torch.manual_seed(0)
    net = RowGenerator(ModelConfig("lstm", "window", 256, 1)).eval()
    return net, f"random weights, {net.config} (no bundle at {path}; speed ignores the weights)"


def inputs(batch: int, known_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Random pixels: the work done does not depend on them."""
    rng = np.random.default_rng(batch * 100 + known_rows)
    image = rng.random((batch, contract.IMAGE_SIZE, contract.IMAGE_SIZE), dtype=np.float32)
    return image, np.full(batch, known_rows, np.int64)


def point(candidate: runners.Candidate, batch: int, k: int, warmup: int, repeats: int) -> dict:
    """Time one runner at one batch and known_rows; per-image figures derived from the median."""
    image, known = inputs(batch, k)
    timing = measure.time_call(lambda: candidate.run(image, known), warmup, repeats)
    return _figures(candidate, batch, k, timing)


def headline(
    candidates: list[runners.Candidate], low: floor.Floor | None, warmup: int, repeats: int
) -> tuple[dict[str, dict], measure.Timing | None]:
    """Batch 1, known_rows 14 for every runner and the floor, timed in turns (PASSES passes):
    the cells the batch-1 targets divide, so they share the machine's drift."""
    image, known = inputs(1, KNOWN_ROWS)
    calls = {c.name: (lambda c=c: c.run(image, known)) for c in candidates}
    if low:
        calls[FLOOR] = low.run
    timings = measure.time_in_turns(calls, warmup, repeats, PASSES)
    points = {c.name: _figures(c, 1, KNOWN_ROWS, timings.pop(c.name)) for c in candidates}
    return points, timings.get(FLOOR)


def _figures(candidate: runners.Candidate, batch: int, k: int, timing: measure.Timing) -> dict:
    per_image = timing.median_s / batch
    return {
        "batch": batch,
        "known_rows": k,
        **timing.to_dict(),
        "ms": timing.median_s * 1e3,
        "ms_per_image": per_image * 1e3,
        "images_per_s": 1.0 / per_image,
        "gflops": candidate.flops(k) / per_image / 1e9,
    }


def option_sweep(bundle: Bundle, threads: int, big: int, warmup: int, repeats: int) -> list[dict]:
    """complete.onnx (batch 1 and big) and step.onnx from Python (batch 1) per session variant."""
    base = replace(sessions.DEFAULT, threads=threads)
    variants = [
        base,
        replace(base, threads=1),
        replace(base, spinning=not base.spinning),
        replace(base, optimization="basic"),
        replace(base, optimization="disable"),
        replace(base, parallel=not base.parallel),
    ]
    found = []
    for settings in dict.fromkeys(variants):  # distinct, in order (threads may already be 1)
        done = sessions.open_session(bundle.read(contract.COMPLETE_ONNX), settings)
        step = sessions.open_session(bundle.read(contract.STEP_ONNX), settings)
        cases = [
            ("complete.onnx batch 1", runners.ort_complete(done), 1),
            (f"complete.onnx batch {big}", runners.ort_complete(done), big),
            ("step.onnx batch 1", runners.ort_steps(step, bundle), 1),
        ]
        timed = []
        for case, run, batch in cases:
            image, known = inputs(batch, KNOWN_ROWS)
            timing = measure.time_call(lambda r=run, i=image, k=known: r(i, k), warmup, repeats)
            timed.append({"case": case, **timing.to_dict()})
        found.append({"settings": settings.label(), "cases": timed})
    return found


def run_benchmark(args: argparse.Namespace) -> dict:
    """Every measurement of the report, as one JSON-ready dict."""
    sizes = QUICK if args.quick else FULL
    settings = replace(sessions.DEFAULT, threads=args.threads)
    bundle = open_bundle(args.bundle)
    model = load_weights(bundle.file(contract.WEIGHTS))
    course_net, course_source = window_net(args.window_bundle)
    candidates = runners.cpu_candidates(bundle, model, course_net, settings)
    candidates += runners.cuda_candidates(bundle, model, settings)
    w, r, big = args.warmup, args.repeats, sizes["big"]

    low = prepare_floor(bundle, settings)
    live = [c for c in candidates if c.run is not None]
    ones, floor_timing = headline(live, None if isinstance(low, str) else low, w, r)
    rows, by_k, by_batch = [], {}, {}
    for c in tqdm(candidates, desc="timing", unit="runner", leave=False):
        if c.run is None:
            rows.append({"name": c.name, "skip": c.skip})
            continue
        big_point = point(c, big, KNOWN_ROWS, w, r)
        rows.append({"name": c.name, "skip": "", "batch1": ones[c.name], "big": big_point})
        by_k[c.name] = [point(c, 1, k, w, r) for k in sizes["known"]]
        by_batch[c.name] = [
            point(c, b, KNOWN_ROWS, w, r)
            if not (c.one_at_a_time and b > COURSE_SWEEP_MAX)
            else None
            for b in sizes["batches"]
        ]
    results = {
        "setup": {
            "machine": machine(),
            "bundle": f"{bundle.path} ({bundle.config})",
            "window_model": course_source,
            "ort_settings": settings.label(),
            "flops_note": measure.FLOPS_NOTE,
            "versions": {"torch": torch.__version__, "onnxruntime": ort.__version__},
        },
        "threads": args.threads,
        "repeats": r,
        "warmup": w,
        "known_rows": KNOWN_ROWS,
        "big_batch": big,
        "flops_per_image": {c.name: c.flops(KNOWN_ROWS) for c in candidates},
        "rows": rows,
        "known_rows_sweep": {"values": list(sizes["known"]), "series": by_k},
        "batch_sweep": {
            "values": list(sizes["batches"]),
            "series": by_batch,
            "note": f"The course loop runs one image at a time; it is timed up to batch "
            f"{COURSE_SWEEP_MAX} here (and at batch {big} in the main table).",
        },
        "roofline": measure.roofline(bundle.config, big, 256 if args.quick else 2048, w, r),
        "floor": {"skip": low}
        if isinstance(low, str)
        else {"skip": "", **low.figures(floor_timing)},
        "passes": PASSES,
    }
    if args.ort_options:
        results["ort_options"] = option_sweep(bundle, args.threads, big, w, r)
    results["targets"] = speed_report.targets(results)
    return results


def prepare_floor(bundle: Bundle, settings: sessions.OrtSettings) -> floor.Floor | str:
    """bench.floor's program for the batch-1 turns, or why there is none (a window bundle)."""
    try:
        return floor.prepare(bundle, settings)
    except floor.FloorUnavailable as exc:
        return str(exc)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            ln.split(":", 1)[1].strip()
            for ln in cpuinfo.read_text().splitlines()
            if ln.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} cores{gpu}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        results = run_benchmark(args)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)  # names the bundle and how to make one
        return 2
    finally:
        torch.set_num_threads(threads_before)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "speed.json").write_text(json.dumps(results, indent=2) + "\n")
    report = speed_report.markdown(results)
    (args.out / "speed.md").write_text(report)
    speed_report.plot(results, args.out / "speed.png")
    print(report)
    for row in results["rows"]:
        if row["skip"]:
            print(f"skipped {row['name']}: {row['skip']}")
    print(f"wrote {args.out / 'speed.json'}, speed.md and speed.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
