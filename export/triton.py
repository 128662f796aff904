"""Write a Triton model repository from verified bundles, for Triton's onnxruntime backend.

    python -m export.triton                      # every bundle in artifacts/ -> artifacts/triton/
    python -m export.triton lstm --out /models   # just these bundles
    make triton NAMES=lstm

Per bundle two models (the serving names of ../shared/DESIGN.md): `<bundle>` runs complete.onnx
with the dynamic batcher; `<bundle>_step` runs step.onnx with the sequence batcher, Triton keeping
the recurrent state between a sequence's calls (implicit state `h`->`h_out`, ..., zeros at the
start). Each has `config.pbtxt` (KIND_GPU), `configs/cpu.pbtxt` (KIND_CPU, picked by
`tritonserver --model-config-name=cpu`) and `1/model.onnx`, the bundle's own verified bytes.
Configs are `model_config_pb2.ModelConfig` messages printed with `text_format`, read back and
checked against the ONNX file (export.triton_check) before the repository replaces the old one.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.triton_check import TritonConfigError, check_model_dir
from rowgen import contract
from rowgen.bundle import Bundle, BundleError, find_bundles, open_bundle
from rowgen.publish import atomic_folder

BACKEND = "onnxruntime"
VERSION = "1"  # Triton serves the highest numeric version folder; a repository holds one
MODEL_FILE = "model.onnx"  # the onnxruntime backend's default_model_filename
CONFIG = "config.pbtxt"
CPU_CONFIG = Path("configs") / "cpu.pbtxt"  # Triton's custom config: --model-config-name=cpu
MARKER = ".rowgen-triton.json"  # says a folder is ours to replace; Triton loads folders only
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
    config = mc.ModelConfig(name=name, backend=BACKEND, max_batch_size=batching.max_batch_size)
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


def step_config(bundle: Bundle, batching: Batching) -> mc.ModelConfig:
    """`<bundle>_step`: step.onnx behind the sequence batcher, the state kept by Triton.

    Only `row` -> `next_row` are request tensors; the state pairs become implicit state, so the
    graph's inputs are exactly config inputs + states, as the onnxruntime backend requires.
    """
    ins, outs = contract.step_inputs(bundle.config), contract.step_outputs(bundle.config)
    name = bundle.name + contract.STEP_MODEL_SUFFIX
    config = _base(name, ins[:1], outs[:1], batching)
    seq = config.sequence_batching
    seq.max_sequence_idle_microseconds = IDLE_US
    # "oldest" batches the ready sequences together; more candidates than one batch holds keep
    # batches full while some clients are between calls.
    seq.oldest.max_candidate_sequences = 2 * batching.max_batch_size
    seq.oldest.preferred_batch_size.extend(batching.preferred())
    seq.oldest.max_queue_delay_microseconds = batching.queue_delay_us
    for state_in, state_out in zip(ins[1:], outs[1:], strict=True):
        dims = _io(mc.ModelInput, state_in).dims  # without the batch axis, as Triton wants
        state = seq.state.add(
            input_name=state_in.name,
            output_name=state_out.name,
            data_type=DTYPES[state_in.dtype],
            dims=dims,
        )
        state.initial_state.add(
            data_type=state.data_type, dims=dims, zero_data=True, name=f"{state_in.name}_zeros"
        )
    return config


def models_for(bundle: Bundle, batching: Batching) -> list[tuple[mc.ModelConfig, str]]:
    """(config, bundle file) of every Triton model that serves `bundle`."""
    complete = batched_config(
        bundle.name, contract.complete_inputs(), contract.complete_outputs(), batching
    )
    models = [
        (complete, contract.COMPLETE_ONNX),
        (step_config(bundle, batching), contract.STEP_ONNX),
    ]
    if bundle.config.stochastic:  # `<bundle>_sample`: stateless like complete, the noise an input
        name = bundle.name + contract.SAMPLE_MODEL_SUFFIX
        ins = contract.sample_inputs(bundle.config.noise_dim)
        sample = batched_config(name, ins, contract.sample_outputs(), batching)
        models.append((sample, contract.SAMPLE_ONNX))
    assert [c.name for c, _ in models] == list(contract.serving_names(bundle.name, bundle.config))
    return models


def cpu_variant(config: mc.ModelConfig) -> mc.ModelConfig:
    """The same model on KIND_CPU instances, for hosts without a GPU."""
    cpu = mc.ModelConfig()
    cpu.CopyFrom(config)
    for group in cpu.instance_group:
        group.kind = mc.ModelInstanceGroup.KIND_CPU
    return cpu


def render(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config, use_short_repeated_primitives=True)


def _write_model(root: Path, bundle: Bundle, config: mc.ModelConfig, onnx_file: str) -> dict:
    folder = root / config.name
    (folder / VERSION).mkdir(parents=True)
    data = bundle.read(onnx_file)  # the bytes open_bundle hashed: what is copied was checked
    (folder / VERSION / MODEL_FILE).write_bytes(data)
    (folder / CONFIG).write_text(render(config))
    (folder / CPU_CONFIG).parent.mkdir()
    (folder / CPU_CONFIG).write_text(render(cpu_variant(config)))
    check_model_dir(folder)
    return {"bundle": bundle.name, "file": onnx_file, "sha256": hashlib.sha256(data).hexdigest()}


def _check_out(out: Path) -> None:
    """Replace `out` only when it is missing, empty, or a repository this module wrote."""
    if out.exists() and not out.is_dir():
        raise TritonExportError(f"{out} is a file; pass --out a folder for the repository")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise TritonExportError(
            f"{out} is not empty and was not written by `make triton` (no {MARKER}); "
            "pass another --out or remove it"
        )


def write_repository(bundles: list[Path], out: Path, batching: Batching) -> dict[str, dict]:
    """Write the repository for `bundles` to `out` atomically; return {model name: its source}.

    Every bundle is verified before anything is written; any failure keeps the previous `out`.
    """
    if not bundles:
        raise TritonExportError("no bundles given")
    _check_out(out)
    opened = [open_bundle(p) for p in bundles]
    models: dict[str, dict] = {}
    with atomic_folder(out) as tmp:
        for bundle in opened:
            for config, file in models_for(bundle, batching):
                if config.name in models:  # e.g. a bundle named `lstm_step` beside `lstm`
                    raise TritonExportError(
                        f"two models named {config.name!r} (bundles {models[config.name]['bundle']}"
                        f" and {bundle.name}); rename one of the bundles"
                    )
                models[config.name] = _write_model(tmp, bundle, config, file)
        marker = {"batching": asdict(batching), "models": models}
        (tmp / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return models


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m export.triton", description=__doc__.split("\n")[0])
    p.add_argument("names", nargs="*", help="bundle names (default: every bundle in --artifacts)")
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="bundles folder")
    p.add_argument("--out", type=Path, help="repository folder (default: <artifacts>/triton)")
    p.add_argument("--max-batch-size", type=int, default=Batching.max_batch_size)
    p.add_argument("--queue-delay-us", type=int, default=Batching.queue_delay_us)
    p.add_argument("--instances", type=int, default=Batching.instances, help="per GPU / CPU")
    args = p.parse_args(argv)
    out = args.out or args.artifacts / "triton"
    if min(args.max_batch_size, args.instances) < 1 or args.queue_delay_us < 0:
        p.error("--max-batch-size and --instances must be >= 1, --queue-delay-us >= 0")
    names = dict.fromkeys(args.names)  # a name given twice is one bundle
    paths = [args.artifacts / n for n in names] or find_bundles(args.artifacts)
    if not paths:
        print(
            f"error: no bundles in {args.artifacts} (folders with {contract.MANIFEST}); "
            "run `make export` first or pass --artifacts",
            file=sys.stderr,
        )
        return 2
    batching = Batching(args.max_batch_size, args.queue_delay_us, args.instances)
    try:
        models = write_repository(paths, out, batching)
    except (BundleError, TritonExportError, TritonConfigError, OSError) as exc:
        print(f"error: {exc}; nothing written, {out} left as it was", file=sys.stderr)
        return 1
    for name, source in models.items():
        print(f"{name}: {source['bundle']}/{source['file']} -> {out / name}")
    print(f"wrote {len(models)} models to {out}: tritonserver --model-repository={out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
