"""Triton model configs for a verified bundle, as `model_config_pb2.ModelConfig` messages.

Per bundle (the serving names of rowgen.contract): `<bundle>` runs complete.onnx behind the
dynamic batcher; `<bundle>_step` runs step.onnx behind the sequence batcher; a sampling bundle's
`<bundle>_sample` runs sample.onnx like `<bundle>`, and its `<bundle>_sample_step` runs
sample_step.onnx like `<bundle>_step`. Three variants of each config:

- onnxruntime backend on KIND_GPU (`config.pbtxt`) and on KIND_CPU (`configs/cpu.pbtxt`), for real
  deployments: the recurrent state of the step models is Triton's implicit state (`h`->`h_out`,
  ..., zeros at a sequence's start);
- python backend on KIND_CPU (export.triton.model), for a Triton without the onnxruntime backend:
  the same tensors and batchers, but no implicit state (the python backend gets none), so the
  model keeps each sequence's state itself.

Printed with `text_format` by export.triton.repository; checked by export.triton.check.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from rowgen import contract
from rowgen.bundle import Bundle

ONNXRUNTIME, PYTHON = "onnxruntime", "python"  # Triton backend names
DTYPES = {"float32": mc.TYPE_FP32, "int64": mc.TYPE_INT64}
Specs = list[contract.TensorSpec]
IDLE_US = 5_000_000  # a sequence whose client stops calling frees its slot after 5 s


class TritonExportError(RuntimeError):
    """The repository cannot be written; the message names the problem and the fix."""


@dataclass(frozen=True)
class Batching:
    """Knobs shared by both batchers; `python -m export.triton --help` lists them."""

    max_batch_size: int = 64
    queue_delay_us: int = 500  # how long the batcher may hold a request to fill a batch
    instances: int = 1
    sequence_idle_us: int = IDLE_US

    def preferred(self) -> list[int]:
        # Full batches, and a quarter-full one so a light load does not wait out the delay.
        return sorted({max(1, self.max_batch_size // 4), self.max_batch_size})


def _io(cls: type, spec: contract.TensorSpec) -> mc.ModelInput | mc.ModelOutput:
    """A config tensor from a contract spec: the leading batch axis is implied by max_batch_size."""
    if not spec.shape or spec.shape[0] != contract.BATCH:
        raise TritonExportError(f"{spec.name}: shape {spec.shape} has no leading batch axis")
    dims = [-1 if isinstance(d, str) else d for d in spec.shape[1:]]
    io = cls(name=spec.name, data_type=DTYPES[spec.dtype], dims=dims or [1])
    if not dims:  # a per-sample scalar such as known_rows: clients send [B, 1], the graph takes [B]
        io.reshape.SetInParent()
    return io


def _base(name: str, ins: Specs, outs: Specs, batching: Batching) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, backend=ONNXRUNTIME, max_batch_size=batching.max_batch_size)
    config.input.extend(_io(mc.ModelInput, s) for s in ins)
    config.output.extend(_io(mc.ModelOutput, s) for s in outs)
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_GPU, count=batching.instances)
    return config


def batched_config(name: str, ins: Specs, outs: Specs, batching: Batching) -> mc.ModelConfig:
    """A stateless program behind the dynamic batcher (`<bundle>`: complete.onnx)."""
    config = _base(name, ins, outs, batching)
    config.dynamic_batching.preferred_batch_size.extend(batching.preferred())
    config.dynamic_batching.max_queue_delay_microseconds = batching.queue_delay_us
    return config


def sequence_config(name: str, program: str, bundle: Bundle, batching: Batching) -> mc.ModelConfig:
    """A stateful program (contract.STATEFUL_PROGRAMS) behind the sequence batcher, the state
    kept by Triton.

    The state pairs (`h` -> `h_out`, ...) become implicit state and every other tensor is a
    request tensor, so the graph's inputs are exactly config inputs + states, as the onnxruntime
    backend requires.
    """
    ins, outs = contract.program_specs(program, bundle.config)
    pairs = contract.state_pairs(bundle.config, program)
    held_in, held_out = {i for i, _ in pairs}, {o for _, o in pairs}
    specs = {s.name: s for s in ins}
    request_ins = [s for s in ins if s.name not in held_in]
    request_outs = [s for s in outs if s.name not in held_out]
    config = _base(name, request_ins, request_outs, batching)
    seq = config.sequence_batching
    seq.max_sequence_idle_microseconds = batching.sequence_idle_us
    # "oldest" batches the ready sequences together; more candidates than one batch holds keep
    # batches full while some clients are between calls.
    seq.oldest.max_candidate_sequences = 2 * batching.max_batch_size
    seq.oldest.preferred_batch_size.extend(batching.preferred())
    seq.oldest.max_queue_delay_microseconds = batching.queue_delay_us
    for state_in, state_out in pairs:
        spec = specs[state_in]
        dims = _io(mc.ModelInput, spec).dims  # without the batch axis, as Triton wants
        state = seq.state.add(
            input_name=state_in, output_name=state_out, data_type=DTYPES[spec.dtype], dims=dims
        )
        state.initial_state.add(
            data_type=state.data_type, dims=dims, zero_data=True, name=f"{state_in}_zeros"
        )
    return config


def step_config(name: str, bundle: Bundle, batching: Batching) -> mc.ModelConfig:
    """`<bundle>_step`: step.onnx behind the sequence batcher; `row` -> `next_row` per request."""
    return sequence_config(name, contract.STEP_ONNX, bundle, batching)


def sample_step_config(name: str, bundle: Bundle, batching: Batching) -> mc.ModelConfig:
    """`<bundle>_sample_step`: sample_step.onnx like `<bundle>_step`, each request bringing its
    row's `noise_row` and `temperature` beside `row` (and `row_known`, where the head holds a
    class: its `kind` is implicit state like `h`)."""
    return sequence_config(name, contract.SAMPLE_STEP_ONNX, bundle, batching)


def complete_config(name: str, bundle: Bundle, batching: Batching) -> mc.ModelConfig:
    """`<bundle>`: complete.onnx behind the dynamic batcher."""
    ins, outs = contract.complete_inputs(), contract.complete_outputs()
    return batched_config(name, ins, outs, batching)


def sample_config(name: str, bundle: Bundle, batching: Batching) -> mc.ModelConfig:
    """`<bundle>_sample`: stateless like complete, the noise an input."""
    ins = contract.sample_inputs(bundle.config.noise_dim)
    return batched_config(name, ins, contract.sample_outputs(), batching)


# The onnxruntime config that serves each program of the contract.
CONFIGS = {
    contract.COMPLETE_ONNX: complete_config,
    contract.STEP_ONNX: step_config,
    contract.SAMPLE_ONNX: sample_config,
    contract.SAMPLE_STEP_ONNX: sample_step_config,
}


def models_for(bundle: Bundle, batching: Batching) -> list[tuple[mc.ModelConfig, str]]:
    """(onnxruntime config, bundle file) of every Triton model that serves `bundle`: one per
    contract.serving_names entry."""
    names = contract.serving_names(bundle.name, bundle.config)
    return [(CONFIGS[program](name, bundle, batching), program) for name, program in names.items()]


def cpu_variant(config: mc.ModelConfig) -> mc.ModelConfig:
    """The same model on KIND_CPU instances, for hosts without a GPU."""
    cpu = mc.ModelConfig()
    cpu.CopyFrom(config)
    for group in cpu.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
    return cpu


def python_variant(config: mc.ModelConfig) -> mc.ModelConfig:
    """The same model on Triton's python backend (export.triton.model), on CPU instances.

    Its onnxruntime is the CPU build of `make triton-env`. The sequence batcher keeps its
    strategy and idle timeout but no implicit state: the python backend would feed the model
    zeros for it on every call, so the model keeps each sequence's state by correlation ID.
    """
    python = cpu_variant(config)
    python.backend = PYTHON
    if python.HasField("sequence_batching"):
        python.sequence_batching.ClearField("state")
    return python


def render(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config, use_short_repeated_primitives=True)
