"""The batch-1 floor: the bundle's recurrent layers alone, all 27 steps inside onnxruntime nodes.

Used by `python -m bench.speed` (section "Batch-1 floor" of its report). At batch 1 every
recurrent step multiplies a 1-row input by the full weight matrices, so a step costs about one
read of the weights, and 27 steps cannot run in parallel. This times the recurrence alone, as
onnxruntime's own kernel runs it: the bundle's LSTM/GRU/RNN nodes, taken out of `step.onnx`,
fed the 27 input rows as one sequence, so there is no head, no row fed back and no per-step
node. A completion does all of that and more, so `course loop / floor` is about the most the
batch-1 speed-up of an fp32 onnxruntime program with these weights can reach on the machine.

Torch-free; stream-mode bundles only (a window model's step re-reads 14 rows: no one floor).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper

from bench import measure
from rowgen import contract, sessions
from rowgen.bundle import Bundle

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
STEPS = contract.IMAGE_SIZE - 1  # a completion runs 27 recurrent steps, whatever known_rows is


class FloorUnavailable(ValueError):
    """The bundle's step.onnx has no recurrent layers to time alone; the message says why."""


def recurrence_only(step: onnx.ModelProto) -> onnx.ModelProto:
    """A graph of `step`'s recurrent nodes alone: X (27, batch, 28) -> top layer's sequence.

    Each node keeps its attributes and its W, R, B initializers; sequence_lens and the initial
    state are dropped (zeros), as at the top of an image. Layer l + 1 reads layer l's output
    with the direction axis squeezed, as the exported stack does.
    """
    inits = {i.name: i for i in step.graph.initializer}
    layers = [n for n in step.graph.node if n.op_type in RECURRENT_OPS]
    if not layers:
        raise FloorUnavailable("no LSTM, GRU or RNN node in step.onnx")
    nodes, used, x = [], [], "x"
    for i, node in enumerate(layers):
        weights = list(node.input[1:4])
        missing = [w for w in weights if w and w not in inits]
        if missing:
            raise FloorUnavailable(f"{node.op_type} weights {missing} are not initializers")
        used += [inits[w] for w in weights if w]
        y = f"y{i}"
        nodes.append(helper.make_node(node.op_type, [x, *weights], [y], name=f"layer{i}"))
        nodes[-1].attribute.extend(node.attribute)
        x = f"x{i + 1}"
        nodes.append(helper.make_node("Squeeze", [y, "direction_axis"], [x]))
    hidden = helper.get_node_attr_value(layers[-1], "hidden_size")
    axis = helper.make_tensor("direction_axis", onnx.TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        nodes,
        "recurrence_only",
        [_float("x", contract.IMAGE_SIZE)],
        [_float(x, hidden)],
        [*used, axis],
    )
    return helper.make_model(graph, opset_imports=step.opset_import, ir_version=step.ir_version)


def _float(name: str, width: int) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(
        name, onnx.TensorProto.FLOAT, [STEPS, contract.BATCH, width]
    )


def weight_bytes(model: onnx.ModelProto) -> int:
    """Bytes of the recurrent weights (W, R, B of every layer), read once per step at batch 1."""
    names = {x for n in model.graph.node if n.op_type in RECURRENT_OPS for x in n.input[1:4]}
    return sum(
        onnx.numpy_helper.to_array(i).nbytes for i in model.graph.initializer if i.name in names
    )


@dataclass(frozen=True)
class Floor:
    """The recurrence-alone program, ready to time: `run()` steps through 27 rows, no more."""

    run: Callable[[], object]
    weight_bytes: int

    def figures(self, timing: measure.Timing) -> dict[str, object]:
        return {
            "steps": STEPS,
            "weight_bytes": self.weight_bytes,
            "timing": timing.to_dict(),
            "ms": timing.median_s * 1e3,
            "us_per_step": timing.median_s / STEPS * 1e6,
            "weights_gb_per_s": self.weight_bytes * STEPS / timing.median_s / 1e9,
        }


def prepare(bundle: Bundle, settings: sessions.OrtSettings) -> Floor:
    """A session on `bundle`'s recurrence alone, fed one image's 27 rows (batch 1)."""
    if bundle.config.mode != "stream":
        raise FloorUnavailable("window mode re-reads 14 rows per step; time a stream bundle")
    model = recurrence_only(onnx.load(io.BytesIO(bundle.read(contract.STEP_ONNX))))
    session = ort.InferenceSession(
        model.SerializeToString(), settings.session_options(), providers=sessions.CPU
    )
    rows = np.random.default_rng(0).random((STEPS, 1, contract.IMAGE_SIZE), dtype=np.float32)
    return Floor(lambda: session.run(None, {"x": rows}), weight_bytes(model))
