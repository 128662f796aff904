"""The model configuration: the one description of a row generator that every part shares.

Torch-free, so the server can read it from a manifest. Training builds the network from it,
export writes it into the bundle, serving reads it back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

CELLS = ("rnn", "lstm", "gru")
MODES = ("stream", "window")
HEADS = ("mse", "cvae")


@dataclass(frozen=True)
class ModelConfig:
    """What a row generator is: recurrent cell, how it reads the image, and its size.

    mode "stream": state carried row to row over the whole image (one step per row).
    mode "window": the course's model, a 14-row window re-read from zero state every step.
    head "mse": one guess of the next row (the mean); "cvae": that mean head plus a per-row
    latent variable of `noise_dim` dimensions for sampled completions (training.latent).
    """

    cell: str = "lstm"
    mode: str = "stream"
    hidden: int = 256
    layers: int = 1
    head: str = "mse"
    noise_dim: int = 0

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
                f"head 'cvae' needs mode 'stream' and noise_dim >= 1, got {self.mode!r}, "
                f"{self.noise_dim}"
            )
        if not self.stochastic and self.noise_dim:
            raise ValueError(f"noise_dim {self.noise_dim} needs head 'cvae', not {self.head!r}")

    @property
    def has_cell_state(self) -> bool:
        """LSTM carries a cell state `c` beside `h`."""
        return self.cell == "lstm"

    @property
    def stochastic(self) -> bool:
        """The model samples completions (ships sample.onnx beside the mean programs)."""
        return self.head == "cvae"

    @property
    def default_name(self) -> str:
        """Bundle folder name: `lstm`, `gru`, `lstm-window`, ..."""
        return self.cell if self.mode == "stream" else f"{self.cell}-{self.mode}"

    def to_dict(self) -> dict[str, object]:
        """As data; a plain MSE model leaves out head and noise_dim, so its manifests and
        weights files stay exactly as they were before stochastic heads existed."""
        data = asdict(self)
        if not self.stochastic:
            del data["head"], data["noise_dim"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ModelConfig:
        """Rebuild from a manifest or checkpoint; unknown keys are an error, not ignored."""
        known = {"cell", "mode", "hidden", "layers", "head", "noise_dim"}
        extra = set(data) - known
        if extra:
            raise ValueError(f"unknown model config keys: {sorted(extra)}")
        return cls(**data)  # type: ignore[arg-type]
