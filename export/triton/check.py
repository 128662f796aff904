"""Check a Triton model folder the way Triton will when it loads it, without a Triton server.

Used by export.triton.repository right after writing each model, and by
tests/export/test_triton.py. `config.pbtxt` and `configs/*.pbtxt` are parsed strictly into
Triton's own schema (`model_config_pb2.ModelConfig`; an unknown field is an error), then held
against the graph as an onnxruntime session sees it (as Triton's backend does), with the rules of
Triton's core (model config validation, the sequence batcher's initial state) and of its
onnxruntime backend: graph inputs = config inputs + states + control inputs, names and datatypes
equal, dims without the batch axis (inputs: a dynamic graph dim matches any; outputs and states:
exactly). A python-backend model (export.triton.model) is held against the program its bundle
copy runs, the state inputs left to the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from rowgen import contract
from rowgen.bundle import BundleError, find_bundles, open_bundle

PYTHON_MODEL_FILE = "model.py"  # the python backend's default_model_filename

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
    def load(cls, path: Path, data: bytes | None = None) -> Graph:
        """Read through an onnxruntime session, as Triton's onnxruntime backend reads it (from
        `data`, the file's verified bytes, when given)."""
        try:
            source = str(path) if data is None else data
            session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
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


def _request_problems(config: mc.ModelConfig, graph: Graph, backend: str) -> list[str]:
    """The backend, the request tensors against the graph, the batchers' sizes, the instances."""
    found: list[str] = []
    batching = config.max_batch_size > 0
    if config.backend != backend:
        found.append(f"backend is {config.backend!r}, expected {backend!r}")
    for io in config.input:
        found += _compare("input", io, graph.inputs, batching, exact=False)
    for io in config.output:
        found += _compare("output", io, graph.outputs, batching, exact=True)
    seq = config.sequence_batching
    sizes = [*config.dynamic_batching.preferred_batch_size, *seq.oldest.preferred_batch_size]
    if any(not 1 <= s <= config.max_batch_size for s in sizes):
        found.append(f"preferred batch sizes {sizes} must be in 1..{config.max_batch_size}")
    if not config.instance_group:
        found.append("no instance_group")
    return found


def problems(config: mc.ModelConfig, graph: Graph) -> list[str]:
    """Everything Triton (core + onnxruntime backend) would refuse in `config` for `graph`."""
    found = _request_problems(config, graph, "onnxruntime")
    seq = config.sequence_batching
    controls = len(seq.control_input)
    expected = len(config.input) + len(seq.state) + controls
    if len(graph.inputs) != expected:
        found.append(
            f"the graph has {len(graph.inputs)} inputs {sorted(graph.inputs)}, the config "
            f"expects {expected} ({len(config.input)} inputs + {len(seq.state)} states + "
            f"{controls} control inputs)"
        )
    return found + _state_problems(config, graph)


def python_problems(config: mc.ModelConfig, graph: Graph, states: list[str]) -> list[str]:
    """What is wrong in a python-backend `config` whose model runs `graph`, feeding the state
    inputs `states` itself (export.triton.model): implicit state would arrive as zeros."""
    found = _request_problems(config, graph, "python")
    fed = sorted({i.name for i in config.input} | set(states))
    if fed != sorted(graph.inputs):
        found.append(f"the graph takes {sorted(graph.inputs)}; the config and model feed {fed}")
    if config.sequence_batching.state:
        found.append("implicit state: the python backend feeds it as zeros on every call")
    return found


def version_folder(folder: Path) -> Path:
    """The highest numeric version folder of a model folder: the one Triton serves."""
    versions = sorted((int(p.name), p) for p in folder.iterdir() if p.name.isdigit())
    if not versions:
        raise TritonConfigError(f"{folder}: no numeric version folder (such as 1/)")
    return versions[-1][1]


def model_files(folder: Path) -> tuple[list[Path], Path]:
    """(config.pbtxt and configs/*.pbtxt, the model file of the highest numeric version)."""
    configs = [folder / "config.pbtxt", *sorted((folder / "configs").glob("*.pbtxt"))]
    return configs, version_folder(folder) / "model.onnx"


def _raise(path: Path, config: mc.ModelConfig, folder: Path, found: list[str]) -> None:
    if config.name != folder.name:
        found.append(f"name {config.name!r} differs from its folder {folder.name!r}")
    if found:
        raise TritonConfigError(f"{path}: " + "; ".join(found))


def check_model_dir(folder: Path) -> None:
    """Raise TritonConfigError unless every config in `folder` fits its model.onnx."""
    folder = Path(folder)
    configs, model = model_files(folder)
    if not model.is_file():
        raise TritonConfigError(f"{model} is missing")
    graph = Graph.load(model)
    for path in configs:
        config = read_config(path)
        _raise(path, config, folder, problems(config, graph))


def check_python_model_dir(folder: Path) -> None:
    """Raise TritonConfigError unless `folder` is a python-backend model that can load: its
    `model.py`, one bundle that verifies and serves the model's name, a config that fits it."""
    folder = Path(folder)
    path = folder / "config.pbtxt"
    config = read_config(path)
    version = version_folder(folder)
    if not (version / PYTHON_MODEL_FILE).is_file():
        raise TritonConfigError(f"{version / PYTHON_MODEL_FILE} is missing")
    bundles = find_bundles(version)
    if len(bundles) != 1:
        raise TritonConfigError(f"{version}: {len(bundles)} bundle folders, the model needs one")
    try:
        bundle = open_bundle(bundles[0])
    except BundleError as exc:
        raise TritonConfigError(f"{folder}: {exc}") from None
    program = contract.serving_names(bundle.name, bundle.config).get(config.name)
    if program is None:
        raise TritonConfigError(f"{path}: bundle {bundle.name!r} serves no model {config.name!r}")
    graph = Graph.load(bundle.file(program), bundle.read(program))
    stateful = program in contract.STATEFUL_PROGRAMS
    states = [i for i, _ in contract.state_pairs(bundle.config, program)] if stateful else []
    _raise(path, config, folder, python_problems(config, graph, states))
