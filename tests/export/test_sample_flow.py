"""The flow head's programs: sample_step.onnx driven row by row is sample.onnx, the noise alone
decides the sample, and every runtime (eager, TorchScript, onnxruntime, reference) agrees."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.reference
import onnxruntime as ort
import pytest
import torch

from export.writers import quiet_exporters
from rowgen import contract
from rowgen.bundle import open_bundle
from rowgen.config import FLOW_NOISE_DIM, ModelConfig
from rowgen.sampling import draw_noise
from rowgen.stepping import sample_by_steps
from tests.conftest import TINY_FLOW, tiny_flow_sampler
from training.latent import sample

NOISE = FLOW_NOISE_DIM


def _sessions(folder) -> tuple[ort.InferenceSession, ort.InferenceSession]:
    cpu = ["CPUExecutionProvider"]
    return tuple(
        ort.InferenceSession(str(folder / TINY_FLOW / name), providers=cpu)
        for name in (contract.SAMPLE_ONNX, contract.SAMPLE_STEP_ONNX)
    )


def _inputs(batch: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    image = rng.random((batch, 28, 28), dtype=np.float32)
    known = rng.integers(-2, 31, batch)  # out-of-range prompts are clamped, as everywhere
    temperature = rng.uniform(-0.5, 2.0, batch).astype(np.float32)
    return image, known, draw_noise(seed, batch, NOISE), temperature


def _sample(session: ort.InferenceSession, *inputs: np.ndarray) -> np.ndarray:
    names = [s.name for s in contract.sample_inputs(NOISE)]
    return session.run(None, dict(zip(names, inputs, strict=True)))[0]


def _step_fn(session, config: ModelConfig):
    names = [s.name for s in contract.sample_step_inputs(config)]
    return lambda *inputs: session.run(None, dict(zip(names, inputs, strict=True)))


def test_flow_config_is_checked_and_its_contract_lists_sample_step() -> None:
    config = tiny_flow_sampler().config
    assert ModelConfig.from_dict(config.to_dict()) == config and config.stochastic
    data = contract.as_data(config)
    assert data["noise_dim"] == NOISE
    step_inputs = [i["name"] for i in data[contract.SAMPLE_STEP_ONNX]["inputs"]]
    step_outputs = [o["name"] for o in data[contract.SAMPLE_STEP_ONNX]["outputs"]]
    held = ["kind", "row_known"]
    assert step_inputs == ["row", "h", "c", *held, "noise_row", "temperature"]
    assert step_outputs == ["next_row", "h_out", "c_out", "kind_out"]
    assert contract.state_pairs(config, contract.SAMPLE_STEP_ONNX)[-1] == ("kind", "kind_out")
    classless = tiny_flow_sampler(classes=0).config
    assert "flow_classes" not in classless.to_dict()  # older flow bundles' manifests, unchanged
    names = [s.name for s in contract.sample_step_inputs(classless)]
    assert names == ["row", "h", "c", "noise_row", "temperature"]
    for bad, match in (
        (dict(noise_dim=16), "noise_dim 28"),
        (dict(flow_steps=0), "flow_steps >= 1"),
        (dict(flow_integrator="rk4"), "unknown flow_integrator"),
        (dict(flow_classes=-1), "flow_classes must be >= 0"),
    ):
        with pytest.raises(ValueError, match=match):
            ModelConfig(**{**config.to_dict(), **bad})
    with pytest.raises(ValueError, match="need head 'flow'"):
        ModelConfig("lstm", "stream", 8, 1, "cvae", 4, flow_width=16)


def test_sample_step_driven_over_the_rows_is_sample_onnx(tiny_flow_bundles) -> None:
    whole, step = _sessions(tiny_flow_bundles)
    config = tiny_flow_sampler().config
    for batch in (1, 5, 70):
        inputs = _inputs(batch, batch)
        got = sample_by_steps(_step_fn(step, config), config, *inputs)
        want = _sample(whole, *inputs)
        diff = np.abs(got - want).max()
        assert diff <= contract.COMPLETE_TOLERANCE, f"batch {batch}: completed differs by {diff}"


def test_every_runtime_draws_the_same_sample(tiny_flow_bundles) -> None:
    whole, _ = _sessions(tiny_flow_bundles)
    model = tiny_flow_sampler()
    config = model.config
    inputs = _inputs(3, 11)
    want = sample(model, *(torch.from_numpy(a) for a in inputs)).numpy()
    folder = tiny_flow_bundles / TINY_FLOW
    with quiet_exporters():
        scripted = torch.jit.load(str(folder / contract.SAMPLE_TS))
    with torch.no_grad():
        by_ts = scripted(*(torch.from_numpy(a) for a in inputs)).numpy()
    reference = onnx.reference.ReferenceEvaluator(str(folder / contract.SAMPLE_STEP_ONNX))
    by_reference = sample_by_steps(_step_fn(reference, config), config, *inputs)
    for runtime, got in (
        ("sample.onnx", _sample(whole, *inputs)),
        ("sample.ts", by_ts),
        ("sample_step.onnx in the reference evaluator", by_reference),
    ):
        diff = np.abs(got - want).max()
        assert diff <= contract.COMPLETE_TOLERANCE, f"{runtime}: completed differs by {diff}"
    parity = open_bundle(folder).manifest["parity"]
    for entry in (contract.SAMPLE_STEP_ONNX, "sample_step_reference_evaluator"):
        assert parity[entry]["max_abs_diff"]["completed"] <= contract.COMPLETE_TOLERANCE, entry
    for entry in ("sample_step_one_step", "sample_step_one_step_reference_evaluator"):
        gaps = parity[entry]["max_abs_diff"]
        assert set(gaps) == {s.name for s in contract.sample_step_outputs(config)}, entry
        assert max(gaps.values()) <= contract.STEP_TOLERANCE, entry


def test_a_known_row_decides_the_class_and_a_drawn_row_keeps_it(tiny_flow_bundles) -> None:
    """sample_step.onnx's `kind`: with row_known 1 it is the probe's reading of the new state
    (FlowHead.decide), with row_known 0 exactly the kind it was given; and it steers the draw."""
    _, step = _sessions(tiny_flow_bundles)
    model = tiny_flow_sampler()
    config = model.config
    names = [s.name for s in contract.sample_step_inputs(config)]
    rng = np.random.default_rng(4)
    row = rng.random((4, 28), dtype=np.float32)
    h, c = (rng.standard_normal((4, 1, 8)).astype(np.float32) for _ in range(2))
    given = np.eye(config.flow_classes, dtype=np.float32)[[0, 1, 2, 0]]
    noise, one = draw_noise(2, 4, NOISE)[:, 0], np.ones(4, np.float32)

    def run(kind: np.ndarray, known: float) -> list[np.ndarray]:
        inputs = (row, h, c, kind, np.full(4, known, np.float32), noise, one)
        return step.run(None, dict(zip(names, inputs, strict=True)))

    drawn = run(given, 0.0)
    np.testing.assert_array_equal(drawn[-1], given)
    decided = run(given, 1.0)
    with torch.no_grad():
        _, (h_new, _) = model.rnn(torch.from_numpy(row)[:, None], (
            torch.from_numpy(h).transpose(0, 1), torch.from_numpy(c).transpose(0, 1)
        ))  # fmt: skip
        want = model.flow.decide(h_new[0]).numpy()
    np.testing.assert_allclose(decided[-1], want, atol=contract.STEP_TOLERANCE)
    assert np.abs(decided[-1] - given).max() > 0.1, "the probe's reading is not the given kind"
    other = run(np.roll(given, 1, axis=1), 0.0)
    assert np.abs(other[0] - drawn[0]).max() > 1e-3, "the class held does not steer the draw"


def test_the_noise_alone_decides_a_flow_sample(tiny_flow_bundles) -> None:
    whole, _ = _sessions(tiny_flow_bundles)
    image, known = np.repeat(_inputs(1, 3)[0], 6, axis=0), np.full(6, 9)
    warm, cold = np.ones(6, np.float32), np.zeros(6, np.float32)
    first = _sample(whole, image, known, draw_noise(5, 6, NOISE), warm)
    assert np.array_equal(first, _sample(whole, image, known, draw_noise(5, 6, NOISE), warm))
    other = _sample(whole, image, known, draw_noise(6, 6, NOISE), warm)
    assert np.abs(other[:, 9:] - first[:, 9:]).mean() > 1e-3, "other noise, same rows"
    np.testing.assert_array_equal(first[:, :9], image[:, :9])  # known rows: exact copies
    at_zero = [_sample(whole, image, known, draw_noise(s, 6, NOISE), cold) for s in (1, 2)]
    assert np.array_equal(*at_zero), "temperature 0 must not depend on the noise"


def test_no_control_flow_and_no_random_ops_in_the_sample_programs(tiny_flow_bundles) -> None:
    for name in (contract.SAMPLE_ONNX, contract.SAMPLE_STEP_ONNX):
        ops = {n.op_type for n in onnx.load(str(tiny_flow_bundles / TINY_FLOW / name)).graph.node}
        assert not ops & {"Loop", "Scan", "If", "RandomNormal", "RandomNormalLike"}, name


def test_intermediate_values_have_short_names_and_nodes_keep_theirs(tiny_flow_bundles) -> None:
    """export.writers.shorten_value_names: the contract's tensors and the initializers keep their
    names, every other value is `v<n>`, and the nodes still say which layer they are."""
    graph = onnx.load(str(tiny_flow_bundles / TINY_FLOW / contract.SAMPLE_ONNX)).graph
    config = tiny_flow_sampler().config
    ins, outs = contract.program_specs(contract.SAMPLE_ONNX, config)
    assert [v.name for v in graph.input] == [s.name for s in ins]
    assert [v.name for v in graph.output] == [s.name for s in outs]
    kept = {s.name for s in ins + outs} | {t.name for t in graph.initializer}
    made = [name for node in graph.node for name in node.output if name not in kept]
    assert made and all(name.startswith("v") and name[1:].isdigit() for name in made)
    assert len(set(made)) == len(made)
    assert any(node.name.startswith("/row_in/") for node in graph.node)  # the layer it is
