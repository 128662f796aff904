"""Fast tests of the speed benchmark (bench.speed) on tiny bundles: code paths, never timings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image

from bench import floor, measure, runners, speed, speed_report
from rowgen import contract, sessions
from rowgen.bundle import open_bundle
from rowgen.config import ModelConfig
from rowgen.sampling import draw_noise
from tests.conftest import TINY_FLOW
from training.checkpoint import load_weights
from training.latent import sample
from training.model import complete


@pytest.fixture(scope="module")
def quick_run(tiny_bundles: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("bench")
    argv = [
        "--bundle",
        str(tiny_bundles / "lstm"),
        "--window-bundle",
        str(tiny_bundles / "lstm-window"),
        "--quick",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--threads",
        "1",
        "--ort-options",
        "--out",
        str(out),
    ]
    assert speed.main(argv) == 0
    return out


def row_flops(name: str, artifacts: Path) -> float:
    """FLOPs of one completion at known_rows 14 for the runner `name` of `quick_run`."""
    if name == runners.COURSE:  # the course loop runs the window bundle
        return measure.course_flops(open_bundle(artifacts / "lstm-window").config, 14)
    return measure.program_flops(open_bundle(artifacts / "lstm").config)


def test_quick_run_times_every_cpu_runner(quick_run: Path, tiny_bundles: Path) -> None:
    results = json.loads((quick_run / "speed.json").read_text())
    rows = {r["name"]: r for r in results["rows"]}
    cpu = [runners.COURSE, runners.EAGER, runners.TORCHSCRIPT, runners.ORT_COMPLETE]
    for name in [*cpu, runners.ORT_STEP]:
        row = rows[name]
        assert not row["skip"], f"{name} skipped: {row['skip']}"
        for key, batch, passes in (("batch1", 1, speed.PASSES), ("big", results["big_batch"], 1)):
            point = row[key]
            assert point["batch"] == batch and point["known_rows"] == 14
            assert point["runs"] == 2 * passes
            assert 0 < point["median_s"] <= point["p90_s"], f"{name} {key}: {point}"
            # per-image figures follow from the median and the model's FLOP count
            per_image = point["median_s"] / batch
            assert point["ms_per_image"] == pytest.approx(per_image * 1e3)
            assert point["images_per_s"] == pytest.approx(1 / per_image)
            flops = row_flops(name, tiny_bundles)
            assert point["gflops"] == pytest.approx(flops / per_image / 1e9), name
    assert results["threads"] == 1
    assert "trained weights" in results["setup"]["window_model"]


def test_quick_run_sweeps_roofline_targets_and_options(quick_run: Path) -> None:
    results = json.loads((quick_run / "speed.json").read_text())
    for key in ("known_rows_sweep", "batch_sweep"):
        sweep = results[key]
        for name, points in sweep["series"].items():
            assert len(points) == len(sweep["values"]), f"{key} {name}"
    for roof in results["roofline"].values():
        assert roof["gflops"] > 0
    # every target is the ratio of two measured rows of this same run, or of a row to the roofline
    assert results["targets"] == speed_report.targets(results)
    rows = {r["name"]: r for r in results["rows"]}
    eager_vs_ort = results["targets"][0]
    want = rows[runners.EAGER]["batch1"]["ms_per_image"]
    want /= rows[runners.ORT_COMPLETE]["batch1"]["ms_per_image"]
    assert eager_vs_ort["ratio"] == pytest.approx(want)
    assert eager_vs_ort["met"] == (want >= eager_vs_ort["goal"])
    assert {o["settings"] for o in results["ort_options"]} >= {sessions.OrtSettings(1).label()}


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU skip messages")
def test_cuda_rows_are_skipped_with_a_reason_without_a_gpu(quick_run: Path) -> None:
    results = json.loads((quick_run / "speed.json").read_text())
    cuda = [r for r in results["rows"] if r["name"].endswith("CUDA")]
    assert len(cuda) == 3
    assert all(r["skip"] for r in cuda)
    assert "torch.cuda.is_available() is False" in cuda[0]["skip"]
    assert "CUDAExecutionProvider" in cuda[2]["skip"]


def test_quick_run_writes_markdown_and_png(quick_run: Path) -> None:
    report = (quick_run / "speed.md").read_text()
    assert report.startswith("# rowgen speed")
    headings = (
        "| runner |",
        "## Latency",
        "## Throughput",
        "## Roofline",
        "## Targets",
        "## Batch-1",
    )
    for heading in headings:
        assert heading in report
    assert runners.ORT_COMPLETE in report
    targets = report.split("## Targets")[1].split("\n## ")[0]
    for target in json.loads((quick_run / "speed.json").read_text())["targets"]:
        assert f"{target['ratio']:.2f}" in targets, target  # the measured ratio, as written
    with Image.open(quick_run / "speed.png") as png:
        assert png.format == "PNG" and png.width > png.height > 100


def test_quick_run_times_the_batch1_floor(quick_run: Path) -> None:
    low = json.loads((quick_run / "speed.json").read_text())["floor"]
    assert not low["skip"], low["skip"]
    assert low["steps"] == 27 and low["timing"]["runs"] == 2 * speed.PASSES
    assert low["ms"] > 0 and low["us_per_step"] > 0 and low["weights_gb_per_s"] > 0
    assert "ratio stays under" in (quick_run / "speed.md").read_text()


@pytest.mark.parametrize("name", ["lstm", "gru", "rnn"])  # rnn: two layers
def test_floor_graph_is_the_models_own_recurrence(tiny_bundles: Path, name: str) -> None:
    bundle = open_bundle(tiny_bundles / name)
    alone = floor.recurrence_only(onnx.load(str(bundle.file(contract.STEP_ONNX))))
    onnx.checker.check_model(alone, full_check=True)
    session = ort.InferenceSession(alone.SerializeToString(), providers=sessions.CPU)
    rows = np.random.default_rng(2).random((27, 3, 28), dtype=np.float32)  # (steps, batch, 28)
    got = session.run(None, {"x": rows})[0]  # (27, 3, H), the top layer's outputs
    model = load_weights(bundle.file(contract.WEIGHTS))
    with torch.no_grad():
        want, _ = model.rnn(torch.from_numpy(rows).transpose(0, 1))  # batch-first (3, 27, H)
    diff = float(np.abs(got - want.transpose(0, 1).numpy()).max())
    assert diff <= contract.STEP_TOLERANCE, f"{name}: recurrence alone differs by {diff}"
    size = sum(p.numel() * 4 for p in model.rnn.parameters())
    assert floor.weight_bytes(alone) == size


def test_floor_of_a_window_bundle_says_why_not(tiny_bundles: Path) -> None:
    bundle = open_bundle(tiny_bundles / "lstm-window")
    with pytest.raises(floor.FloorUnavailable, match="window mode"):
        floor.prepare(bundle, sessions.OrtSettings(threads=1))
    assert "window mode" in speed.prepare_floor(bundle, sessions.OrtSettings(threads=1))


def test_runners_of_one_bundle_agree(tiny_bundles: Path) -> None:
    bundle = open_bundle(tiny_bundles / "lstm")
    model = load_weights(bundle.file(contract.WEIGHTS))
    found = runners.cpu_candidates(bundle, model, model, sessions.OrtSettings(threads=1))
    rng = np.random.default_rng(0)
    image = rng.random((5, 28, 28), dtype=np.float32)
    known = np.array([1, 7, 14, 21, 27], np.int64)
    want = complete(model, torch.from_numpy(image), torch.from_numpy(known)).numpy()
    for candidate in found[1:]:  # the course loop runs a window model; tested below
        got = candidate.run(image, known)
        diff = float(np.abs(got - want).max())
        assert diff <= contract.COMPLETE_TOLERANCE, f"{candidate.name}: completed differs by {diff}"


def test_course_loop_is_the_window_model_row_by_row(tiny_bundles: Path) -> None:
    net = load_weights(open_bundle(tiny_bundles / "lstm-window").file(contract.WEIGHTS))
    image = np.random.default_rng(1).random((3, 28, 28), dtype=np.float32)
    known = np.array([7, 14, 27], np.int64)
    got = runners.course_loop(net)(image, known)
    want = complete(net, torch.from_numpy(image), torch.from_numpy(known)).numpy()
    for b, k in enumerate(known):
        assert np.array_equal(got[b, :k], image[b, :k]), f"known rows of sample {b} changed"
        # The first generated row reads known rows only; the course does not clip, rowgen does.
        diff = float(np.abs(np.clip(got[b, k], 0, 1) - want[b, k]).max())
        assert diff <= 1e-5, f"row {k} of sample {b} differs by {diff}"


def test_flops_follow_the_model_shape() -> None:
    lstm = ModelConfig("lstm", "stream", 256, 1)
    step = (28 + 256) * 4 * 256 + 256 * 28
    assert measure.program_flops(lstm) == 2 * 27 * step
    gru2 = ModelConfig("gru", "stream", 16, 2)
    assert measure.cell_macs(gru2) == (28 + 16) * 48 + (16 + 16) * 48
    window = ModelConfig("lstm", "window", 256, 1)
    assert measure.program_flops(window) == 2 * 27 * (14 * (step - 256 * 28) + 256 * 28)
    assert measure.course_flops(window, 14) == 2 * 14 * (14 * (step - 256 * 28) + 256 * 28)
    assert measure.course_flops(window, 27) < measure.course_flops(window, 1)


def test_time_call_warms_up_then_times_each_run() -> None:
    calls = []
    timing = measure.time_call(lambda: calls.append(1), warmup=3, repeats=7)
    assert len(calls) == 10 and timing.runs == 7
    assert 0 <= timing.median_s <= timing.p90_s


def test_time_in_turns_gives_each_call_a_block_per_pass() -> None:
    order: list[str] = []
    calls = {name: (lambda n=name: order.append(n)) for name in ("a", "b")}
    timings = measure.time_in_turns(calls, warmup=1, repeats=2, passes=2)
    assert "".join(order) == "aaabbbaaabbb"  # per pass: a's warm-up and runs, then b's
    assert {name: t.runs for name, t in timings.items()} == {"a": 4, "b": 4}


def test_targets_are_ratios_of_time_per_image() -> None:
    def row(name: str, ms1: float, ms_big: float, gflops: float = 1.0) -> dict:
        point = {"ms_per_image": ms_big, "gflops": gflops}
        return {"name": name, "skip": "", "batch1": {"ms_per_image": ms1}, "big": point}

    results = {
        "big_batch": 256,
        "rows": [
            row(runners.COURSE, 30.0, 30.0),
            row(runners.EAGER, 12.0, 1.0),
            row(runners.ORT_COMPLETE, 1.0, 0.5, gflops=40.0),
        ],
        "roofline": {"step_sized": {"shape": [256, 284, 1024], "gflops": 50.0}},
    }
    found = {t["what"]: t for t in speed_report.targets(results)}
    ratios = [t["ratio"] for t in found.values()]
    assert ratios == pytest.approx([12.0, 30.0, 60.0, 0.8])
    assert all(t["met"] for t in found.values())


def test_session_settings_reach_onnxruntime(tiny_bundles: Path) -> None:
    settings = sessions.OrtSettings(threads=1, optimization="basic", spinning=False)
    options = settings.session_options()
    assert options.intra_op_num_threads == 1
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    session = sessions.open_session(tiny_bundles / "lstm" / contract.COMPLETE_ONNX, settings)
    assert not sessions.uses_cuda(session)


def test_a_flow_bundle_times_its_sample_program(tiny_flow_bundles: Path) -> None:
    bundle = open_bundle(tiny_flow_bundles / TINY_FLOW)
    model = load_weights(bundle.file(contract.WEIGHTS))
    candidates = runners.cpu_candidates(bundle, model, model, sessions.OrtSettings(threads=1))
    found = {c.name: c for c in candidates}
    drawn = found[runners.ORT_SAMPLE]
    image = np.random.default_rng(1).random((3, 28, 28), dtype=np.float32)
    known = np.array([2, 14, 26], np.int64)
    noise = torch.from_numpy(draw_noise(0, 3, bundle.config.noise_dim))
    want = sample(model, torch.from_numpy(image), torch.from_numpy(known), noise, torch.ones(3))
    diff = float(np.abs(drawn.run(image, known) - want.numpy()).max())
    assert diff <= contract.COMPLETE_TOLERANCE, f"sample.onnx runner differs by {diff}"
    assert drawn.flops(14) > found[runners.ORT_COMPLETE].flops(14)  # the flow's field on top
