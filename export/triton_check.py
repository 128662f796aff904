"""Check a Triton model folder the way Triton will when it loads it, without a Triton server.

Used by `python -m export.triton` right after writing each model, and by tests/test_triton.py.
`config.pbtxt` and `configs/*.pbtxt` are parsed strictly into Triton's own schema
(`model_config_pb2.ModelConfig`; an unknown field is an error), then held against the graph as
an onnxruntime session sees it (as Triton's backend does), with the rules of Triton's core
(model config validation, the sequence batcher's initial state) and of its onnxruntime backend:
graph inputs = config inputs + states + control inputs, names and datatypes equal, dims without
the batch axis (inputs: a dynamic graph dim matches any; outputs and states: exactly).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

ORT_TO_TRITON = {  # onnxruntime's type strings -> Triton datatypes
    "tensor(float)": mc.TYPE_FP32,
    "tensor(float16)": mc.TYPE_FP16,
    "tensor(double)": mc.TYPE_FP64,
    "tensor(int32)": mc.TYPE_INT32,
    "tensor(int64)": mc.TYPE_INT64,
    "tensor(uint8)": mc.TYPE_UINT8,
    "tensor(bool)": mc.TYPE_BOOL,
}


class TritonConfigError(ValueError):
    """A model config Triton would reject; the message names the file and every problem."""


@dataclass(frozen=True)
class Graph:
    """An ONNX graph's request-facing signature: name -> (Triton datatype, dims, -1 = dynamic)."""

    inputs: dict[str, tuple[int, list[int]]]
    outputs: dict[str, tuple[int, list[int]]]

    @classmethod
    def load(cls, path: Path) -> Graph:
        """Read through an onnxruntime session, as Triton's onnxruntime backend reads it."""
        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime's errors share no base class beyond Exception
            raise TritonConfigError(f"{path}: onnxruntime cannot load it: {exc}") from exc

        def sig(args) -> dict[str, tuple[int, list[int]]]:
            return {
                a.name: (
                    ORT_TO_TRITON.get(a.type, mc.TYPE_INVALID),
                    [d if isinstance(d, int) else -1 for d in a.shape],
                )
                for a in args
            }

        return cls(sig(session.get_inputs()), sig(session.get_outputs()))


def read_config(path: Path) -> mc.ModelConfig:
    """Parse a .pbtxt into Triton's schema; unknown fields and bad enum values are errors."""
    try:
        return text_format.Parse(Path(path).read_text(), mc.ModelConfig())
    except text_format.ParseError as exc:
        raise TritonConfigError(f"{path}: not a valid Triton model config: {exc}") from exc


def _dtype(value: int) -> str:
    return mc.DataType.Name(value)


def _shape_problems(io, batching: bool) -> list[str]:
    where = f"'{io.name}'"
    if not io.dims:
        return [f"{where}: must specify dims"]
    if any(d < 1 and d != -1 for d in io.dims):
        return [f"{where}: dims must be >= 1 or -1, got {list(io.dims)}"]
    if io.HasField("reshape") and not io.reshape.shape:
        if not batching:
            return [f"{where}: an empty reshape needs max_batch_size > 0"]
        if list(io.dims) != [1]:
            return [f"{where}: an empty reshape needs dims [1], got {list(io.dims)}"]
    return []


def _compare(kind: str, io, graph_io: dict, batching: bool, exact: bool) -> list[str]:
    """One config tensor against the graph, as the onnxruntime backend compares them."""
    if io.name not in graph_io:
        return [f"{kind} '{io.name}' is not in the graph (it has {sorted(graph_io)})"]
    problems = _shape_problems(io, batching)
    dtype, shape = graph_io[io.name]
    if dtype != io.data_type:
        problems.append(f"{kind} '{io.name}': config {_dtype(io.data_type)}, graph {_dtype(dtype)}")
    dims = list(io.reshape.shape) if io.HasField("reshape") else list(io.dims)
    if batching:
        if not shape or shape[0] != -1:
            return [*problems, f"{kind} '{io.name}': graph shape {shape} has no dynamic batch axis"]
        shape = shape[1:]
    same = len(shape) == len(dims) and all(
        m == d or (m == -1 and not exact) for m, d in zip(shape, dims, strict=False)
    )
    if not same:
        problems.append(
            f"{kind} '{io.name}': config dims {dims}, graph {shape} (batch axis left out)"
        )
    return problems


def _state_problems(config: mc.ModelConfig, graph: Graph) -> list[str]:
    problems: list[str] = []
    batching = config.max_batch_size > 0
    for state in config.sequence_batching.state:
        for name, side, kind in (
            (state.input_name, graph.inputs, "state input"),
            (state.output_name, graph.outputs, "state output"),
        ):
            io = mc.ModelInput(name=name, data_type=state.data_type, dims=state.dims)
            problems += _compare(kind, io, side, batching, exact=True)
        if state.input_name in {i.name for i in config.input}:
            problems.append(f"state input '{state.input_name}' is also a request input")
        if len(state.initial_state) > 1:
            problems.append(f"state '{state.input_name}': more than one initial_state")
        for init in state.initial_state:
            if not init.name:
                problems.append(f"state '{state.input_name}': initial_state needs a name")
            if init.data_type != state.data_type:
                problems.append(f"state '{state.input_name}': initial_state datatype differs")
            fixed = all(d >= 1 for d in init.dims) and len(init.dims) == len(state.dims)
            if not fixed or any(
                s not in (-1, i) for s, i in zip(state.dims, init.dims, strict=False)
            ):
                problems.append(
                    f"state '{state.input_name}': initial_state dims {list(init.dims)} "
                    f"do not fill state dims {list(state.dims)}"
                )
            if init.WhichOneof("state_data") is None:
                problems.append(f"state '{state.input_name}': initial_state has no data")
    return problems


def problems(config: mc.ModelConfig, graph: Graph) -> list[str]:
    """Everything Triton (core + onnxruntime backend) would refuse in `config` for `graph`."""
    found: list[str] = []
    batching = config.max_batch_size > 0
    if config.backend != "onnxruntime":
        found.append(f"backend is {config.backend!r}, expected 'onnxruntime'")
    for io in config.input:
        found += _compare("input", io, graph.inputs, batching, exact=False)
    for io in config.output:
        found += _compare("output", io, graph.outputs, batching, exact=True)
    seq = config.sequence_batching
    controls = len(seq.control_input)
    expected = len(config.input) + len(seq.state) + controls
    if len(graph.inputs) != expected:
        found.append(
            f"the graph has {len(graph.inputs)} inputs {sorted(graph.inputs)}, the config "
            f"expects {expected} ({len(config.input)} inputs + {len(seq.state)} states + "
            f"{controls} control inputs)"
        )
    found += _state_problems(config, graph)
    sizes = [*config.dynamic_batching.preferred_batch_size, *seq.oldest.preferred_batch_size]
    if any(not 1 <= s <= config.max_batch_size for s in sizes):
        found.append(f"preferred batch sizes {sizes} must be in 1..{config.max_batch_size}")
    if not config.instance_group:
        found.append("no instance_group")
    return found


def model_files(folder: Path) -> tuple[list[Path], Path]:
    """(config.pbtxt and configs/*.pbtxt, the model file of the highest numeric version)."""
    configs = [folder / "config.pbtxt", *sorted((folder / "configs").glob("*.pbtxt"))]
    versions = sorted((int(p.name), p) for p in folder.iterdir() if p.name.isdigit())
    if not versions:
        raise TritonConfigError(f"{folder}: no numeric version folder (such as 1/)")
    return configs, versions[-1][1] / "model.onnx"


def check_model_dir(folder: Path) -> None:
    """Raise TritonConfigError unless every config in `folder` fits its model.onnx."""
    configs, model = model_files(Path(folder))
    if not model.is_file():
        raise TritonConfigError(f"{model} is missing")
    graph = Graph.load(model)
    for path in configs:
        config = read_config(path)
        found = problems(config, graph)
        if config.name != Path(folder).name:
            found.append(f"name {config.name!r} differs from its folder {Path(folder).name!r}")
        if found:
            raise TritonConfigError(f"{path}: " + "; ".join(found))
