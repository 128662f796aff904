"""bench.load's outputs: the markdown tables, the bar chart, the target check, the API picture."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt

from rowgen.tables import markdown_table, sig

LABELS = {
    "gradio": "Gradio app `/complete`",
    "rest-json": "v2 REST, JSON",
    "rest-binary": "v2 REST, binary tensors",
    "grpc": "v2 gRPC",
    "ray-rest-json": "Ray Serve, v2 REST JSON",
    "triton-rest-json": "Triton (python backend), REST JSON",
    "triton-rest-binary": "Triton (python backend), REST binary tensors",
    "triton-grpc": "Triton (python backend), gRPC",
}
HEADLINE = ("rest-json", 8, 1)  # the target: v2 REST, single-image JSON, 8 clients


def cell_key(cell: dict) -> tuple[str, int, int]:
    return cell["path"], cell["clients"], cell["images_per_request"]


def targets(cells: list[dict]) -> dict:
    """The issue's targets, checked on this run's figures."""
    by_key = {cell_key(c): c for c in cells}
    head, gradio = by_key.get(HEADLINE), by_key.get(("gradio", 8, 1))
    checks: dict = {}
    if head and gradio and gradio["completions_per_s"]:
        ratio = head["completions_per_s"] / gradio["completions_per_s"]
        checks["rest_json_vs_gradio_8_clients"] = round(ratio, 1)
        checks["ratio_at_least_30x"] = ratio >= 30
    if head:
        checks["rest_json_8_clients_p99_ms"] = head["p99_ms"]
        checks["p99_at_most_50ms"] = head["p99_ms"] is not None and head["p99_ms"] <= 50
        checks["rest_json_8_clients_errors"] = head["errors"] + head["refused_503"]
    for path, name in (("ray-rest-json", "ray"), ("triton-rest-json", "triton")):
        other = by_key.get((path, 8, 1))
        if head and other and head["completions_per_s"]:  # the same run, the same machine
            ratio = other["completions_per_s"] / head["completions_per_s"]
            checks[f"{name}_vs_rest_json_8_clients"] = round(ratio, 2)
            checks[f"{name}_8_clients_errors"] = other["errors"]
    at64 = [c for c in cells if c["clients"] == 64 and c["path"] != "gradio"]
    checks["errors_at_64_clients_besides_503"] = sum(c["errors"] for c in at64)
    return checks


def table(cells: list[dict]) -> str:
    headers = ["path", "clients", "images/request", "completions/s", "p50 ms", "p99 ms"]
    headers += ["503 answers", "errors", "mean server batch"]
    rows = [
        [
            LABELS[c["path"]],
            c["clients"],
            c["images_per_request"],
            sig(c["completions_per_s"]),
            sig(c["p50_ms"]),
            sig(c["p99_ms"]),
            c["refused_503"],
            c["errors"],
            sig(c.get("mean_batch")),
        ]
        for c in cells
    ]
    return markdown_table(headers, rows)


def markdown(result: dict) -> str:
    servers = [
        [LABELS.get(k, k), s["rss_mib_before"], s["rss_mib_after"]]
        for k, s in result["servers"].items()
    ]
    tuning = [
        [t["label"], sig(t["completions_per_s"]), sig(t["p50_ms"]), sig(t["p99_ms"])]
        for t in result["tuning"]
    ]
    parts = [
        f"# Load: {result['model']}, known_rows {result['known_rows']}",
        "",
        result["machine"]["note"],
        "",
        table(result["cells"]),
        "",
        markdown_table(["server", "RSS before, MiB", "RSS after, MiB"], servers),
    ]
    if tuning:
        headers = ["v2 REST JSON, 8 clients, 1 image", "completions/s", "p50 ms", "p99 ms"]
        parts += ["", markdown_table(headers, tuning)]
    parts += ["", "Targets: " + ", ".join(f"{k} = {v}" for k, v in result["targets"].items())]
    return "\n".join(parts) + "\n"


def chart(cells: list[dict], out: Path) -> None:
    names = [
        f"{LABELS[c['path']]}, {c['clients']} clients, {c['images_per_request']}/req" for c in cells
    ]
    values = [max(c["completions_per_s"], 0.1) for c in cells]
    fig, ax = plt.subplots(figsize=(9, 0.32 * len(cells) + 1.2))
    ax.barh(
        range(len(cells)),
        values,
        color=["#999" if c["path"] == "gradio" else "#3b6" for c in cells],
    )
    ax.set_yticks(range(len(cells)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("completions/s (log scale)")
    ax.set_title("rowgen under load: one 2-core machine, load generator included")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
