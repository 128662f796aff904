"""The bundle contract as data: file names, tensor names, shapes, tolerances (docs/contract.md).

Torch-free. Export writes bundles from it, serving and tests read names and shapes from it, and
the manifest carries it so an outside runtime needs nothing else. Nobody retypes a tensor name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from rowgen.config import ModelConfig

FORMAT = "rowgen-bundle/1"

IMAGE_SIZE = 28  # an image is IMAGE_SIZE rows of IMAGE_SIZE pixels, float32 in [0, 1]
WINDOW = 14  # rows the window-mode model reads at every step (the course's n_time)
KNOWN_ROWS_MIN, KNOWN_ROWS_MAX = 1, IMAGE_SIZE - 1
EVAL_KNOWN_ROWS = (7, 14, 21)  # the metrics every bundle reports: test_mse_k7, _k14, _k21

OPSET = 17
STEP_TOLERANCE = 1e-5  # max abs difference allowed between runtimes for step outputs
COMPLETE_TOLERANCE = 1e-4  # ... and for `completed`
# A sampled completion feeds every drawn row back, so float32 rounding (about 1e-7 a step) grows
# along it by the sampler's gain: eager PyTorch in float32 is itself up to 4.5e-4 from the same
# model in float64 on the test split (the shipped head, k=1; docs/contract.md has more). So
# runtimes must agree on one sampled step (sample_step.onnx given the same row, state and noise)
# within STEP_TOLERANCE, and on a whole sampled completion within 1/256, under one level of an
# 8-bit pixel (1/255).
SAMPLE_TOLERANCE = 1 / 256

# Files of a bundle folder `artifacts/<name>/`.
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
STEP_ONNX = "step.onnx"
COMPLETE_ONNX = "complete.onnx"
STEP_TS = "step.ts"
COMPLETE_TS = "complete.ts"
BUNDLE_FILES = (WEIGHTS, STEP_ONNX, COMPLETE_ONNX, STEP_TS, COMPLETE_TS)
# Stochastic bundles (config.stochastic) add one sampled completion per call.
SAMPLE_ONNX = "sample.onnx"
SAMPLE_TS = "sample.ts"
SAMPLE_STEP_ONNX = "sample_step.onnx"  # one sampled row per call, to stream samples
SAMPLE_FILES = (SAMPLE_ONNX, SAMPLE_TS, SAMPLE_STEP_ONNX)
SAMPLE_STEPS = IMAGE_SIZE - 1  # noise slices: one per row that can be generated (rows 1..27)

BATCH = "batch"  # the one dynamic axis, always first
# sample_step.onnx of a head that holds a class: the class vector, carried as state, and the
# flag that says whether the row a call reads is known (decide the class again) or drawn (keep it)
KIND = "kind"
ROW_KNOWN = "row_known"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of an exported program. A `str` dimension is dynamic."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def _state_specs(config: ModelConfig, suffix: str) -> list[TensorSpec]:
    if config.mode == "window":
        return [TensorSpec("window" + suffix, "float32", (BATCH, WINDOW, IMAGE_SIZE))]
    shape = (BATCH, config.layers, config.hidden)
    names = ["h", "c"] if config.has_cell_state else ["h"]
    return [TensorSpec(n + suffix, "float32", shape) for n in names]


def step_inputs(config: ModelConfig) -> list[TensorSpec]:
    """`row` then the state (`h`[, `c`] or `window`), zeros meaning "top of the image"."""
    return [TensorSpec("row", "float32", (BATCH, IMAGE_SIZE)), *_state_specs(config, "")]


def step_outputs(config: ModelConfig) -> list[TensorSpec]:
    """`next_row` (clipped to [0, 1]) then the state after the step (`h_out`, ...)."""
    return [TensorSpec("next_row", "float32", (BATCH, IMAGE_SIZE)), *_state_specs(config, "_out")]


def complete_inputs() -> list[TensorSpec]:
    return [
        TensorSpec("image", "float32", (BATCH, IMAGE_SIZE, IMAGE_SIZE)),
        TensorSpec("known_rows", "int64", (BATCH,)),
    ]


def complete_outputs() -> list[TensorSpec]:
    return [TensorSpec("completed", "float32", (BATCH, IMAGE_SIZE, IMAGE_SIZE))]


def sample_inputs(noise_dim: int) -> list[TensorSpec]:
    """`image`, `known_rows`, then `noise` (standard normal draws, slice t for row t + 1) and
    `temperature` (0: deterministic, 1: the model's distribution; negative acts as 0)."""
    return [
        *complete_inputs(),
        TensorSpec("noise", "float32", (BATCH, SAMPLE_STEPS, noise_dim)),
        TensorSpec("temperature", "float32", (BATCH,)),
    ]


def sample_outputs() -> list[TensorSpec]:
    return complete_outputs()


def _kind_specs(config: ModelConfig, suffix: str) -> list[TensorSpec]:
    """A head that holds a class carries it as state: `kind`, the class vector it draws with."""
    if not config.holds_kind:
        return []
    return [TensorSpec(KIND + suffix, "float32", (BATCH, config.flow_classes))]


def sample_step_inputs(config: ModelConfig) -> list[TensorSpec]:
    """step.onnx's `row` and state (and `kind`, for a head that holds a class), then, for such a
    head, `row_known`, then this row's `noise_row` and `temperature`."""
    row, *state = step_inputs(config)
    known = [TensorSpec(ROW_KNOWN, "float32", (BATCH,))] if config.holds_kind else []
    return [
        row,
        *state,
        *_kind_specs(config, ""),
        *known,
        TensorSpec("noise_row", "float32", (BATCH, config.noise_dim)),
        TensorSpec("temperature", "float32", (BATCH,)),
    ]


def sample_step_outputs(config: ModelConfig) -> list[TensorSpec]:
    """A sampled `next_row` and the state after the step, named as step.onnx's (and `kind_out`)."""
    return [*step_outputs(config), *_kind_specs(config, "_out")]


def bundle_files(config: ModelConfig) -> tuple[str, ...]:
    """The files a bundle of this model must list in its manifest (besides the manifest)."""
    return BUNDLE_FILES + (SAMPLE_FILES if config.stochastic else ())


def metadata_props(config: ModelConfig) -> dict[str, str]:
    """Key/values stored in every ONNX file so a runtime holding only the file knows the model."""
    props = {
        "rowgen.cell": config.cell,
        "rowgen.mode": config.mode,
        "rowgen.hidden": str(config.hidden),
        "rowgen.layers": str(config.layers),
        "rowgen.known_rows_range": f"{KNOWN_ROWS_MIN}..{KNOWN_ROWS_MAX}",
        "rowgen.format": FORMAT,
    }
    if config.stochastic:
        props |= {"rowgen.head": config.head, "rowgen.noise_dim": str(config.noise_dim)}
    return props


def as_data(config: ModelConfig) -> dict[str, object]:
    """The whole contract for one model, as JSON-ready data for the manifest."""

    def specs(items: list[TensorSpec]) -> list[dict[str, object]]:
        return [s.to_dict() for s in items]

    data = {
        "image_size": IMAGE_SIZE,
        "known_rows_range": [KNOWN_ROWS_MIN, KNOWN_ROWS_MAX],
        "opset": OPSET,
        STEP_ONNX: {"inputs": specs(step_inputs(config)), "outputs": specs(step_outputs(config))},
        COMPLETE_ONNX: {"inputs": specs(complete_inputs()), "outputs": specs(complete_outputs())},
        "tolerance": {"step": STEP_TOLERANCE, "complete": COMPLETE_TOLERANCE},
    }
    if config.stochastic:  # plain bundles' contracts stay exactly as they were
        data["noise_dim"] = config.noise_dim
        data[SAMPLE_ONNX] = {
            "inputs": specs(sample_inputs(config.noise_dim)),
            "outputs": specs(sample_outputs()),
        }
        data[SAMPLE_STEP_ONNX] = {
            "inputs": specs(sample_step_inputs(config)),
            "outputs": specs(sample_step_outputs(config)),
        }
        data["tolerance"] |= {"sample": SAMPLE_TOLERANCE, "sample_step": STEP_TOLERANCE}
    return data


def program_specs(program: str, config: ModelConfig) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs of one of a bundle's ONNX programs, in the contract's order."""
    if program == COMPLETE_ONNX:
        return complete_inputs(), complete_outputs()
    if program == STEP_ONNX:
        return step_inputs(config), step_outputs(config)
    if program == SAMPLE_ONNX:
        return sample_inputs(config.noise_dim), sample_outputs()
    if program == SAMPLE_STEP_ONNX:
        return sample_step_inputs(config), sample_step_outputs(config)
    raise ValueError(f"{program!r} is not an ONNX program of the contract")


# The programs whose recurrent state goes in and comes back out on every call (step.onnx's
# state tensors, by the same names): a caller or a server carries it between calls.
STATEFUL_PROGRAMS = (STEP_ONNX, SAMPLE_STEP_ONNX)


def state_inputs(config: ModelConfig, program: str = STEP_ONNX) -> list[TensorSpec]:
    """The state inputs of a stateful program: those right after `row`, one per output after
    `next_row` (`h`[, `c`], and sample_step.onnx's `kind` where it holds a class)."""
    ins, outs = program_specs(program, config)
    return ins[1 : len(outs)]


def state_pairs(config: ModelConfig, program: str = STEP_ONNX) -> list[tuple[str, str]]:
    """(input, output) names of the state a stateful program passes on: (`h`, `h_out`), ..."""
    outs = program_specs(program, config)[1][1:]
    return [(i.name, o.name) for i, o in zip(state_inputs(config, program), outs, strict=True)]


# Serving names (Open Inference Protocol v2, Triton): model `<bundle>` runs complete.onnx and
# `<bundle>` + STEP_MODEL_SUFFIX runs step.onnx, with the tensor names above.
STEP_MODEL_SUFFIX = "_step"
SAMPLE_MODEL_SUFFIX = "_sample"  # sample.onnx, for bundles whose model samples
SAMPLE_STEP_MODEL_SUFFIX = "_sample_step"  # sample_step.onnx, for bundles whose model samples


def serving_names(bundle: str, config: ModelConfig) -> dict[str, str]:
    """The served model names of one bundle -> the program each one runs."""
    names = {bundle: COMPLETE_ONNX, bundle + STEP_MODEL_SUFFIX: STEP_ONNX}
    if config.stochastic:
        names[bundle + SAMPLE_MODEL_SUFFIX] = SAMPLE_ONNX
        names[bundle + SAMPLE_STEP_MODEL_SUFFIX] = SAMPLE_STEP_ONNX
    return names


# What each tensor means, for the doc_string a model viewer (Netron, ...) shows.
_MEANINGS = {
    "row": "the current image row, pixels in [0, 1], white object on black",
    "h": "hidden state; zeros mean 'top of the image'",
    "c": "LSTM cell state; zeros mean 'top of the image'",
    "window": f"the last {WINDOW} rows read, oldest first; zeros mean 'above the image'",
    "next_row": "the predicted row below the current one, clipped to [0, 1]",
    "image": "the images, pixels in [0, 1]; rows at and below known_rows are ignored",
    "known_rows": f"per image, how many top rows are given ({KNOWN_ROWS_MIN}..{KNOWN_ROWS_MAX}, "
    "others clamped into it)",
    "completed": "the known rows copied exactly, every row below generated",
    "noise": "standard normal draws, one slice per generated step; the same noise gives the "
    "same sample in every runtime",
    "temperature": "per image: 0 gives the deterministic completion, 1 samples the model",
    "noise_row": "standard normal draws for the row this call generates: slice t of "
    "sample.onnx's noise for the call that receives row t",
    KIND: "the class vector the draws hold: decided from the state after each known row, then "
    "kept; zeros at the top of the image",
    ROW_KNOWN: "per image, 1 if `row` is a known (prompt) row, 0 if it was drawn: a known row "
    "decides `kind` again from the new state, a drawn one keeps it",
}
_PURPOSES = {
    STEP_ONNX: "One recurrent step with explicit state. Start from zero state and feed rows 0, "
    "1, ... in turn: the call that receives row t returns the prediction of row t+1 and the "
    "next state. Feed the known top rows, then each returned next_row as the next input.",
    COMPLETE_ONNX: "The whole completion in one call (the generation loop unrolled, no control "
    "flow); equal to driving step.onnx row by row.",
    SAMPLE_ONNX: "One sampled completion per image in one call (unrolled, no control flow): each "
    "generated row is drawn by the model's sampling head from its slice of the given noise, "
    "scaled by temperature, so the randomness is an input.",
    SAMPLE_STEP_ONNX: "One sampled row per call with explicit state, as step.onnx gives the mean: "
    "the call that receives row t and noise slice t returns a draw of row t+1 and the next state. "
    "Feed the known rows, then each returned next_row; equal to sample.onnx driven row by row. "
    "Where it takes `kind` and `row_known`, `kind` is state like `h`, and `row_known` says "
    "whether `row` was known (1) or drawn (0).",
}


def doc_string(
    file: str, config: ModelConfig, inputs: list[TensorSpec], outputs: list[TensorSpec]
) -> str:
    """An ONNX file's doc_string: what it does, what each tensor means, the known-rows rule."""

    def meaning(name: str) -> str:
        state = name.removesuffix("_out")
        if state != name:
            return f"the state after the step: the next call's {state}"
        return _MEANINGS.get(name, "")

    def lines(specs: list[TensorSpec]) -> list[str]:
        return [
            f"  {s.name} {s.dtype} [{', '.join(map(str, s.shape))}]: {meaning(s.name)}"
            for s in specs
        ]

    article = "an" if config.cell in ("lstm", "rnn") else "a"

    return "\n".join(
        [
            f"rowgen {file}: {article} {config.cell.upper()} {config.mode}-mode row generator "
            f"(hidden {config.hidden}, {config.layers} layer(s)) that completes a "
            f"{IMAGE_SIZE}x{IMAGE_SIZE} image whose bottom rows are missing, one row at a time.",
            _PURPOSES.get(file, ""),
            "Inputs:",
            *lines(inputs),
            "Outputs:",
            *lines(outputs),
            f"Known rows: the top k rows ({KNOWN_ROWS_MIN} <= k <= {KNOWN_ROWS_MAX}) are given "
            f"and copied exactly; rows k..{IMAGE_SIZE - 1} are the model's predictions, each fed "
            "back as the next input. Batch is the first axis everywhere and is dynamic.",
        ]
    )
