"""The speed benchmark's results as targets, a markdown report and a PNG plot.

Used by `python -m bench.speed`; everything here reads the results dict that it builds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt
from matplotlib import ticker

from bench.runners import COURSE, EAGER, ORT_COMPLETE
from rowgen.tables import markdown_table, sig

# (what, numerator row, denominator row, batch key, goal, aim): ratios of time per image.
TIME_TARGETS = (
    ("eager PyTorch / onnxruntime complete.onnx", EAGER, ORT_COMPLETE, "batch1", 6, None),
    ("course loop / onnxruntime complete.onnx", COURSE, ORT_COMPLETE, "batch1", 15, 30),
    ("course loop / onnxruntime complete.onnx", COURSE, ORT_COMPLETE, "big", 50, None),
)
FLOPS_GOAL = 0.5  # of the machine's measured matmul GFLOP/s, at the big batch


def targets(results: dict) -> list[dict]:
    """The issue's speed targets as measured ratios (reported, never asserted)."""
    rows = {r["name"]: r for r in results["rows"] if not r["skip"]}
    big = results["big_batch"]
    found = []
    for what, slow, fast, key, goal, aim in TIME_TARGETS:
        if slow in rows and fast in rows:
            ratio = rows[slow][key]["ms_per_image"] / rows[fast][key]["ms_per_image"]
            batch = 1 if key == "batch1" else big
            found.append(_target(f"batch {batch}: {what}, time per image", ratio, goal, aim))
    if ORT_COMPLETE in rows:
        achieved = rows[ORT_COMPLETE]["big"]["gflops"]
        for kind, roof in results["roofline"].items():
            m, k, n = roof["shape"]
            what = f"batch {big}: onnxruntime complete.onnx GFLOP/s / {kind} matmul {m}x{k}x{n}"
            found.append(_target(what, achieved / roof["gflops"], FLOPS_GOAL, None))
    return found


def _target(what: str, ratio: float, goal: float, aim: float | None) -> dict:
    return {"what": what, "ratio": ratio, "goal": goal, "aim": aim, "met": ratio >= goal}


def markdown(results: dict) -> str:
    """The whole report: setup, the main table, both sweeps, the roofline and the targets."""
    big = results["big_batch"]
    setup = results["setup"]
    lines = [
        "# rowgen speed",
        "",
        f"- machine: {setup['machine']}; threads: {results['threads']} (torch and onnxruntime)",
        f"- bundle: {setup['bundle']}; course anchor: {setup['window_model']}",
        f"- onnxruntime session: {setup['ort_settings']}",
        f"- {results['repeats']} timed runs after {results['warmup']} warm-up runs per cell; "
        f"known_rows {results['known_rows']} unless a column says otherwise; the batch-1 "
        f"columns of the main table and the floor: {results.get('passes', 1)} such passes, "
        "the runners taking turns, so the machine's drift hits them alike",
        f"- FLOPs: {setup['flops_note']}",
        "",
        markdown_table(
            [
                "runner",
                "batch 1 ms (median)",
                "batch 1 ms (p90)",
                f"batch {big} ms/image",
                f"batch {big} images/s",
                f"batch {big} GFLOP/s",
            ],
            [_main_row(r) for r in results["rows"]],
        ),
        "",
        "## Latency (ms, batch 1, median) against known_rows",
        "",
        _sweep_table(results, "known_rows_sweep", "k", "ms"),
        "",
        f"## Throughput (images/s, known_rows {results['known_rows']}) against batch",
        "",
        _sweep_table(results, "batch_sweep", "batch", "images_per_s"),
        "",
        "## Roofline: this machine's fp32 CPU matmul (torch, same threads, same run)",
        "",
        markdown_table(
            ["product (m x k x n)", "GFLOP/s"],
            [
                [f"{kind}: {'x'.join(map(str, r['shape']))}", sig(r["gflops"])]
                for kind, r in results["roofline"].items()
            ],
        ),
        "",
        "## Targets (ratios, not asserted)",
        "",
        markdown_table(
            ["target", "measured", "goal", "met"],
            [
                [
                    t["what"],
                    f"{t['ratio']:.2f}",
                    f">= {t['goal']}" + (f" (aim {t['aim']})" if t["aim"] else ""),
                    "yes" if t["met"] else "no",
                ]
                for t in results["targets"]
            ],
        ),
    ]
    lines += [
        "",
        "## Batch-1 floor: the recurrence alone (onnxruntime, same run)",
        "",
        floor_text(results),
    ]
    if results.get("ort_options"):
        lines += ["", "## onnxruntime session options", "", _options_table(results)]
    return "\n".join(lines) + "\n"


def floor_text(results: dict) -> str:
    """bench.floor's figures and the course-loop ratio they cap, or why there are none."""
    low = results.get("floor") or {"skip": "not measured"}
    if low["skip"]:
        return f"Skipped: {low['skip']}."
    text = (
        f"The bundle's recurrent layers alone, {low['steps']} steps inside onnxruntime's own "
        f"nodes (no head, no fed-back rows, no per-step nodes): {sig(low['ms'])} ms per image, "
        f"{sig(low['us_per_step'])} µs per step, reading {low['weight_bytes'] / 1e6:.2f} MB of "
        f"weights per step ({sig(low['weights_gb_per_s'])} GB/s). A completion does this and "
        "more (the head, each prediction fed back)"
    )
    course = {r["name"]: r for r in results["rows"] if not r["skip"]}.get(COURSE)
    if course:
        bound = course["batch1"]["ms"] / low["ms"]
        text += f", so at batch 1 the course loop / complete.onnx ratio stays under {bound:.1f}×"
    return text + "."


def _main_row(row: dict) -> list[str]:
    if row["skip"]:
        return [row["name"], f"skipped: {row['skip']}", "", "", "", ""]
    one, big = row["batch1"], row["big"]
    return [
        row["name"],
        sig(one["median_s"] * 1e3),
        sig(one["p90_s"] * 1e3),
        sig(big["ms_per_image"]),
        sig(big["images_per_s"]),
        sig(big["gflops"]),
    ]


def _sweep_table(results: dict, key: str, axis: str, field: str) -> str:
    sweep = results[key]
    headers = ["runner", *(f"{axis}={x}" for x in sweep["values"])]
    rows = [
        [name, *(sig(p[field]) if p else "-" for p in points)]
        for name, points in sweep["series"].items()
    ]
    note = sweep.get("note")
    return markdown_table(headers, rows) + (f"\n\n{note}" if note else "")


def _options_table(results: dict) -> str:
    headers = ["session options", *(c["case"] for c in results["ort_options"][0]["cases"])]
    rows = [
        [o["settings"], *(sig(c["median_s"] * 1e3) + " ms" for c in o["cases"])]
        for o in results["ort_options"]
    ]
    return markdown_table(headers, rows)


def plot(results: dict, path: Path) -> None:
    """Latency against known_rows and throughput against batch, both on log axes."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    for ax, key, field in (
        (left, "known_rows_sweep", "ms"),
        (right, "batch_sweep", "images_per_s"),
    ):
        sweep = results[key]
        for name, points in sweep["series"].items():
            xs = [x for x, p in zip(sweep["values"], points, strict=True) if p]
            ys = [p[field] for p in points if p]
            if xs:
                ax.plot(xs, ys, marker="o", ms=3, label=name)
        ax.set(xscale="log", yscale="log")
        ax.set_xticks(sweep["values"], labels=[str(v) for v in sweep["values"]])
        ax.xaxis.set_minor_locator(ticker.NullLocator())
        ax.yaxis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        ax.grid(alpha=0.3, which="both")
    low = results.get("floor") or {"skip": "not measured"}
    if not low["skip"]:
        left.axhline(low["ms"], color="grey", ls="--", lw=1, label="floor: recurrence alone")
    left.set(title="latency per image, batch 1", xlabel="known rows", ylabel="ms (median)")
    right.set(
        title=f"throughput, known_rows {results['known_rows']}",
        xlabel="batch",
        ylabel="images / s (median)",
    )
    handles, labels = left.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"rowgen speed, {results['threads']} threads: {results['setup']['machine']}")
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)
