"""The model configuration: the one description of a row generator that every part shares.

Torch-free, so the server can read it from a manifest. Training builds the network from it,
export writes it into the bundle, serving reads it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

CELLS = ("rnn", "lstm", "gru")
MODES = ("stream", "window")
HEADS = ("mse", "cvae", "flow")
SAMPLING_HEADS = ("cvae", "flow")
FLOW_INTEGRATORS = ("euler", "heun")
FLOW_NOISE_DIM = 28  # one standard normal draw per pixel of a row (contract.IMAGE_SIZE)
FLOW_FIELDS = ("flow_width", "flow_steps", "flow_integrator")  # a flow head's size and solver


@dataclass(frozen=True)
class ModelConfig:
    """What a row generator is: recurrent cell, how it reads the image, and its size.

    mode "stream": state carried row to row over the whole image (one step per row).
    mode "window": the course's model, a 14-row window re-read from zero state every step.
    head "mse": one guess of the next row (the mean); "cvae": that mean head plus a per-row
    latent variable of `noise_dim` dimensions for sampled completions (training.latent);
    "flow": that mean head plus a rectified-flow decoder of the next row (training.flow_head),
    `flow_width` hidden units, integrated by `flow_steps` unrolled `flow_integrator` steps from
    one standard normal draw per pixel (noise_dim = 28).
    """

    cell: str = "lstm"
    mode: str = "stream"
    hidden: int = 256
    layers: int = 1
    head: str = "mse"
    noise_dim: int = 0
    flow_width: int = 0
    flow_steps: int = 0
    flow_integrator: str = ""
    flow_classes: int = 0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ValueError(f"unknown cell {self.cell!r}: choose one of {', '.join(CELLS)}")
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}: choose one of {', '.join(MODES)}")
        if self.hidden < 1 or self.layers < 1:
            raise ValueError(f"hidden and layers must be >= 1, got {self.hidden}, {self.layers}")
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}: choose one of {', '.join(HEADS)}")
        if self.stochastic and (self.mode != "stream" or self.noise_dim < 1):
            raise ValueError(
                f"head {self.head!r} needs mode 'stream' and noise_dim >= 1, got {self.mode!r}, "
                f"{self.noise_dim}"
            )
        if not self.stochastic and self.noise_dim:
            raise ValueError(f"noise_dim {self.noise_dim} needs head 'cvae', not {self.head!r}")
        self._check_flow()

    def _check_flow(self) -> None:
        sizes = {name: getattr(self, name) for name in (*FLOW_FIELDS, "flow_classes")}
        if self.head != "flow":
            if any(sizes.values()):
                raise ValueError(f"{', '.join(sizes)} need head 'flow', not {self.head!r}")
            return
        if self.flow_classes < 0:
            raise ValueError(f"flow_classes must be >= 0 (0: none), got {self.flow_classes}")
        if self.noise_dim != FLOW_NOISE_DIM or self.flow_width < 1 or self.flow_steps < 1:
            raise ValueError(
                f"head 'flow' needs noise_dim {FLOW_NOISE_DIM} (one draw per pixel), flow_width "
                f">= 1 and flow_steps >= 1, got {self.noise_dim}, {self.flow_width}, "
                f"{self.flow_steps}"
            )
        if self.flow_integrator not in FLOW_INTEGRATORS:
            raise ValueError(
                f"unknown flow_integrator {self.flow_integrator!r}: choose one of "
                f"{', '.join(FLOW_INTEGRATORS)}"
            )

    @property
    def has_cell_state(self) -> bool:
        """LSTM carries a cell state `c` beside `h`."""
        return self.cell == "lstm"

    @property
    def holds_kind(self) -> bool:
        """sample_step.onnx carries the class decided at the prompt (`kind`) as state."""
        return self.flow_classes > 0

    @property
    def stochastic(self) -> bool:
        """The model samples completions (ships sample.onnx beside the mean programs)."""
        return self.head in SAMPLING_HEADS

    @property
    def default_name(self) -> str:
        """Bundle folder name: `lstm`, `gru`, `lstm-window`, ..."""
        return self.cell if self.mode == "stream" else f"{self.cell}-{self.mode}"

    def to_dict(self) -> dict[str, object]:
        """As data; a plain MSE model leaves out head and noise_dim, every model but a flow one
        the flow fields, and a flow head without classes flow_classes, so manifests and weights
        files of the older heads stay exactly as they were."""
        data = asdict(self)
        if not self.flow_classes:
            del data["flow_classes"]
        if self.head != "flow":
            for name in FLOW_FIELDS:
                del data[name]
        if not self.stochastic:
            del data["head"], data["noise_dim"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ModelConfig:
        """Rebuild from a manifest or checkpoint; unknown keys are an error, not ignored."""
        known = {
            "cell",
            "mode",
            "hidden",
            "layers",
            "head",
            "noise_dim",
            *FLOW_FIELDS,
            "flow_classes",
        }
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown model config keys: {sorted(extra)}")
        return cls(**data)  # type: ignore[arg-type]
