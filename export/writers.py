"""Writing the programs to disk: ONNX (legacy TorchScript-based exporter) and TorchScript.

The exporters' deprecation chatter is silenced here, and only here; any other warning still
reaches the user. Every ONNX file is read back and checked against the contract at once.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from pathlib import Path

import onnx
import torch

from export.errors import ExportError
from rowgen import contract
from rowgen.config import ModelConfig

_ONNX_DTYPES = {"float32": onnx.TensorProto.FLOAT, "int64": onnx.TensorProto.INT64}
FORBIDDEN_OPS = {"Loop", "Scan", "If"}  # complete.onnx must run everywhere, CUDA graphs too


@contextlib.contextmanager
def quiet_exporters() -> Iterator[None]:
    """Hide torch's deprecation notices of TorchScript and the legacy ONNX exporter."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=r".*(deprecat|TorchScript|torch\.jit).*")
        # Printed for every recurrent op exported with batch > 1. It does not apply here: the
        # state is always given, and export.validate runs batches 1, 3 and 64 on every file.
        warnings.filterwarnings("ignore", message=r".*batch_size other than 1.*")
        # nn.RNNBase checks the state's size in Python while tracing; the batch axis still
        # comes out dynamic (checked on every file), so this TracerWarning is noise here.
        warnings.filterwarnings(
            "ignore", category=torch.jit.TracerWarning, module=r"torch\.nn\.modules\.rnn"
        )
        yield


def write_onnx(
    program: torch.nn.Module,
    example: tuple[torch.Tensor, ...],
    inputs: list[contract.TensorSpec],
    outputs: list[contract.TensorSpec],
    config: ModelConfig,
    path: Path,
) -> None:
    """Export, stamp the metadata, save as one self-contained file, and check it."""
    names = [s.name for s in inputs + outputs]
    with quiet_exporters():
        torch.onnx.export(
            program,
            example,
            str(path),
            dynamo=False,  # the new exporter froze dynamic sizes in some versions
            input_names=[s.name for s in inputs],
            output_names=[s.name for s in outputs],
            dynamic_axes={n: {0: contract.BATCH} for n in names},
            opset_version=contract.OPSET,
        )
    model = onnx.load(str(path))
    # The exporter names output dims it could not infer (e.g. "Concath_out_dim_2"); state the
    # contract's shapes. checker's full_check then runs strict shape inference against them.
    for spec, value in zip(outputs, model.graph.output, strict=True):
        for dim, want in zip(value.type.tensor_type.shape.dim, spec.shape, strict=True):
            if isinstance(want, str):
                dim.dim_param = want
            else:
                dim.dim_value = want
    shorten_value_names(model.graph)
    onnx.helper.set_model_props(model, contract.metadata_props(config))
    model.doc_string = contract.doc_string(path.name, config, inputs, outputs)
    onnx.save_model(model, str(path), save_as_external_data=False)
    check_onnx(path, inputs, outputs, config)


def shorten_value_names(graph: onnx.GraphProto) -> None:
    """Rename the intermediate values `v0`, `v1`, ... in the order nodes make them.

    The exporter names each after its node's module path ("/row_in/MatMul_27_output_0"),
    and every name is stored again at each reader: in the unrolled sample.onnx that was 370 kB of
    its 2.1 MB. The nodes keep their names, so a viewer still shows which layer each one is; the
    contract's inputs and outputs and the initializers keep theirs.
    """
    kept = {v.name for v in (*graph.input, *graph.output)} | {t.name for t in graph.initializer}
    short: dict[str, str] = {}
    for node in graph.node:
        for i, name in enumerate(node.input):
            node.input[i] = short.get(name, name)
        for i, name in enumerate(node.output):
            if name and name not in kept:
                short[name] = node.output[i] = f"v{len(short)}"
    for info in graph.value_info:
        info.name = short.get(info.name, info.name)


def check_onnx(
    path: Path,
    inputs: list[contract.TensorSpec],
    outputs: list[contract.TensorSpec],
    config: ModelConfig,
) -> None:
    """Read the file back: checker, opset, one file, names, dtypes, dynamic axes, ops, metadata."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path.name} fails onnx.checker: {exc}") from exc
    model = onnx.load(str(path), load_external_data=False)
    opset = max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset < contract.OPSET:
        raise ExportError(f"{path.name}: opset {opset}, the contract needs >= {contract.OPSET}")
    external = [
        t.name for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL
    ]
    if external:
        raise ExportError(f"{path.name}: weights stored outside the file: {external[:3]}")
    for kind, specs, values in (
        ("input", inputs, model.graph.input),
        ("output", outputs, model.graph.output),
    ):
        found = [v.name for v in values]
        if found != [s.name for s in specs]:
            raise ExportError(
                f"{path.name}: {kind}s are {found}, the contract says {[s.name for s in specs]}"
            )
        for spec, value in zip(specs, values, strict=True):
            _check_value(path.name, spec, value)
    ops = {n.op_type for n in model.graph.node}
    if ops & FORBIDDEN_OPS:
        raise ExportError(f"{path.name}: holds control flow {sorted(ops & FORBIDDEN_OPS)}")
    props = {p.key: p.value for p in model.metadata_props}
    for key, value in contract.metadata_props(config).items():
        if props.get(key) != value:
            raise ExportError(f"{path.name}: metadata {key} is {props.get(key)!r}, not {value!r}")


def _check_value(file: str, spec: contract.TensorSpec, value: onnx.ValueInfoProto) -> None:
    tensor = value.type.tensor_type
    if tensor.elem_type != _ONNX_DTYPES[spec.dtype]:
        raise ExportError(
            f"{file}: {spec.name} has element type {tensor.elem_type}, expected {spec.dtype}"
        )
    dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
    if len(dims) != len(spec.shape):
        raise ExportError(f"{file}: {spec.name} has rank {len(dims)}, expected {spec.shape}")
    for axis, (got, want) in enumerate(zip(dims, spec.shape, strict=True)):
        dynamic = isinstance(want, str)
        if dynamic and not isinstance(got, str):
            raise ExportError(
                f"{file}: {spec.name} axis {axis} is frozen to {got}; "
                f"it must be the dynamic axis {want!r}"
            )
        if not dynamic and got != want:
            raise ExportError(f"{file}: {spec.name} axis {axis} is {got}, expected {want}")


def write_torchscript(
    program: torch.nn.Module, example: tuple[torch.Tensor, ...], path: Path
) -> None:
    """Trace and save; the file loads with torch.jit.load and needs no rowgen code."""
    with quiet_exporters(), torch.no_grad():
        traced = torch.jit.trace(program, example, check_trace=False)
        torch.jit.save(traced, str(path))
