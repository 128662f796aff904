"""A rectified-flow (conditional flow-matching) decoder of the next row given the recurrent state.

The row lives in y = 2 x - 1 (pixels x in [0, 1]). A field v(y, s, h, row above) carries a
standard normal draw y_0 at s = 0 to a row y_1 at s = 1; sampling integrates it with a fixed
number of Euler (or Heun) steps, unrolled, so the exported programs hold no control flow:

    y_0 = temperature * noise ─► y += dt v(y, 0) ─► y += dt v(y, dt) ─► ... ─► clip((y + 1) / 2)

The network predicts the clean row and v = (prediction - y) / (1 - s), so the last Euler step
lands on a predicted row, not on a partly denoised one; the loss is the velocity's squared
error. Three options the sweep measured stay here for it: the row loss (`loss(...,
weighting="row")`: the prediction's error, every time s weighted alike; the shipped recipe's
second stage uses it), `around_mean` (draw y - m(h), m the mean head's row from `base`, a frozen
copy of fc) and `skip` (the prediction is a linear guess from the row above plus the network's
output, mixed with y by EDM's preconditioning). Every step is a smooth function of the noise,
so runtimes that differ by float rounding differ in the row by about as much (no discrete
choice to flip); over a whole completion the drawn rows are fed back and the difference grows
(rowgen.contract.SAMPLE_TOLERANCE says how far).
Temperature 0 starts every row at y_0 = 0: a deterministic completion. The state h and the row
above enter through one projection per row, which all the steps of that row share; each step's
time s is a constant, so its embedding folds away.

Chosen by `python -m evaluation.sweep_sampler` on the shipped core (frozen), 2,000 test images,
Fréchet distance under the project's CNN, raw-pixel PCA and a second (fully connected) network,
k = 14 / 7 (docs/sampling.md has every column and what each run changed; "x 6": 6 epochs of
every (state, next row) pair; temperature 1):

    run                                   CNN          PCA          MLP          diversity
    10-NN sampler                         0.92 / 2.08  0.26 / 0.69  1.10 / 2.38  0.106 / 0.130
    cvae head (before)                    7.76 / 23.5  1.09 / 4.95  2.67 / 27.5  0.047 / 0.062
    128 wide, 8 Euler, velocity, short    15.2 / 68.0  1.29 / 4.53  3.79 / 28.1  0.108 / 0.128
    ... predicting the row                13.0 / 50.0  1.29 / 4.70  3.59 / 27.3  0.117 / 0.136
    ... + the row above as input          12.2 / 45.9  1.48 / 5.03  4.35 / 30.5  0.116 / 0.134
    ... + noisy rows read in training     12.1 / 44.3  3.30 / 8.73  14.3 / 65.7  0.117 / 0.127
    ... row loss                          8.36 / 37.9  0.89 / 3.88  2.52 / 23.7  0.093 / 0.113
    ... around the mean                   12.2 / 54.5  1.22 / 3.24  2.42 / 16.5  0.088 / 0.108
    ... around the mean, row loss         9.39 / 41.9  0.82 / 2.56  1.90 / 11.8  0.091 / 0.114
    160 wide, 12 Euler, x 6               5.87 / 21.3  0.60 / 2.22  1.94 / 13.8  0.106 / 0.130
    ... row loss, around the mean         6.40 / 26.7  0.60 / 1.76  1.65 / 8.15  0.095 / 0.122
    256 wide, x 12                        4.97 / 16.5  0.48 / 1.48  1.67 / 9.40  0.098 / 0.125
    160 wide, 12 Euler, x 12              4.98 / 16.8  0.53 / 1.75  1.72 / 10.3  0.101 / 0.129
    160 wide, 12 Euler, x 24              4.66 / 14.9  0.47 / 1.33  1.48 / 7.61  0.100 / 0.128
    ... with a skip from the row above    6.53 / 23.0  0.54 / 1.50  1.84 / 8.31  0.100 / 0.127
    ... rows drawn given real rows above  1.62 / 3.23  0.23 / 0.30  0.92 / 1.23  (nothing fed back)
    ... then 6 more on real rows          4.91 / 15.6  0.49 / 1.36  1.64 / 8.18  0.100 / 0.127
    ... then 6 reading own draws          3.68 / 11.8  0.43 / 1.02  1.47 / 6.11  0.115 / 0.140
    ...   two rounds of draws             3.23 / 10.8  0.42 / 0.91  1.22 / 4.68  0.122 / 0.146
    ...   four rounds (speckled: 1.16)    3.04 / 11.2  0.47 / 1.01  1.03 / 4.19  0.129 / 0.152
    ...   two rounds, row loss            2.86 / 10.7  0.38 / 0.91  0.97 / 4.29  0.115 / 0.141
    ...   the same, 24 epochs             2.09 / 8.48  0.31 / 0.67  0.79 / 3.08  0.113 / 0.140
    shipped: x 12, then 24 of the same    1.89 / 6.66  0.30 / 0.61  0.80 / 2.59  0.115 / 0.143
    make train's head of those two stages 2.02 / 7.65  0.30 / 0.64  0.80 / 2.72  0.114 / 0.142
    ...   integrated with 20 Euler steps  1.33 / 4.48  0.26 / 0.46  0.71 / 1.81  (speckled: 1.11)
    then 2 epochs scoring its own
      completions, prompts of 4-24 rows   1.09 / 3.26  0.22 / 0.35  0.59 / 1.13  0.116 / 0.143
    ...   + a penalty on the chain's gain 1.22 / 5.61  0.23 / 0.47  0.54 / 1.68  0.115 / 0.141
    ...   prompts of 4-14 rows            1.07 / 2.70  0.24 / 0.34  0.56 / 0.91  (speckled: 1.11)
    ...   4-14, + each row drawn given
            the real rows above, scored
            alone, weight 2               0.81 / 2.05  0.21 / 0.29  0.53 / 0.82  0.116 / 0.147
    ...   the same, weight 8              0.72 / 1.91  0.21 / 0.28  0.55 / 0.94  0.112 / 0.146
    a class held (classes 10): the label
      in FLOW, FLOW_OWN and the flow loss,
      the class read at every row         0.76 / 1.50  0.20 / 0.28  0.52 / 0.71  0.111 / 0.143
    ... decided at the prompt, held       0.76 / 2.51  0.21 / 0.35  0.57 / 1.38  0.110 / 0.137
    ... the rollout drawing with it held  0.76 / 2.05  0.21 / 0.29  0.53 / 0.92  0.110 / 0.141

Class agreement, the share of completions the project's CNN puts in the prompt's class, on those
images (the 10-NN sampler's 0.786 / 0.632): weight 8 0.766 / 0.587; the class read at every row
0.769 / 0.587 (it follows the drawn rows); decided at the prompt and held 0.783 / 0.625; the
rollout trained that way 0.781 / 0.618. The shipped head is the last (the class decided with
softmax(probe(h) / 0.3) in training), sampling with CLASS_TEMPERATURE 0.1.

("Own draws": training.flow_loop.own_draws; "scoring its own completions":
training.rollout_loop; the recipes are training.recipe.FLOW, FLOW_OWN and FLOW_ROLLOUT.)

On the whole test split (`make eval`): CNN 0.21 / 2.01 against the 10-NN sampler's 0.44 / 1.39
(0.48x / 1.45x), PCA 0.084 / 0.22 against 0.12 / 0.49, MLP 0.11 / 0.98 against 0.30 / 1.13;
diversity 0.112 / 0.138 against 0.107 / 0.132; sharpness 1.07 / 1.07 of real's; class agreement
0.3 / 0.9 points under the sampler's (0.2 / 0.8 as the MLP classifies). Holding the class cost
realism at k = 7 (CNN 1.30, MLP 0.22 before it) for 4 points of class agreement there;
docs/sampling.md has every reading.

A head with `classes` also reads a class vector `kind` beside h: in training the image's one-hot
label; when drawing, decide(h) of the state after the prompt's last known row, held for every
drawn row (training.latent.sample, export.programs). Sampling earlier heads at temperature 1.1
helped only under the project's CNN, so the head samples at 1.
"""

from __future__ import annotations

import torch
from torch import nn

from rowgen import contract
from rowgen.config import FLOW_INTEGRATORS
from training.class_probe import ClassProbe

TIME_FREQUENCIES = 8  # sin/cos features of s: enough for a field that changes smoothly in s
PREDICTIONS = ("row", "velocity")
WEIGHTINGS = ("velocity", "row")  # the loss: the field's error, or the predicted row's
MIN_GAP = 0.05  # 1 - s below this is not divided by: the row prediction's velocity stays finite
# With a skip: the spread (y units) of a row about the best linear guess from the row above, on
# the training split (0.31). It sets how the prediction mixes y_s and the network's output.
RESIDUAL_STD = 0.3
# A head with classes samples holding softmax(probe(h) / CLASS_TEMPERATURE) of the prompt's last
# state: sharpened, so the draws commit to the class the prompt most likely shows. Its rollout
# stage trains with a softer one (RolloutRecipe.class_temperature, 0.3). On the whole test split,
# sampling at 0.1 against 0.3 kept the class 0.5-0.7 points more often at k = 7 (under both
# classifiers) for a higher distance there (docs/sampling.md has the trade).
CLASS_TEMPERATURE = 0.1


def _last(x: torch.Tensor) -> torch.Tensor:
    """A per-row time (...,) as (..., 1) to scale rows by; a scalar time stays a scalar."""
    return x[..., None] if x.dim() else x


def time_features(s: torch.Tensor) -> torch.Tensor:
    """(...,) times in [0, 1] -> (..., 2 * TIME_FREQUENCIES) sin/cos features."""
    freqs = torch.pi * 2.0 ** torch.arange(TIME_FREQUENCIES, dtype=s.dtype, device=s.device) / 2
    angles = s[..., None] * freqs  # (..., F)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


def _silu_slope(a: torch.Tensor) -> torch.Tensor:
    """d silu(a) / da."""
    sig = torch.sigmoid(a)
    return sig * (1.0 + a * (1.0 - sig))


class FlowHead(nn.Module):
    """v(y, s, h) = out(act(mid(act(W_y y + W_h h + W_s phi(s))))) with `width` hidden units."""

    def __init__(
        self,
        hidden: int,
        width: int,
        steps: int,
        integrator: str = "euler",
        predicts: str = "row",
        around_mean: bool = False,
        skip: bool = False,
        classes: int = 0,
    ) -> None:
        super().__init__()
        self.predicts = predicts
        self.classes = classes
        if integrator not in FLOW_INTEGRATORS or steps < 1:
            raise ValueError(
                f"flow head: integrator in {FLOW_INTEGRATORS} and steps >= 1, got "
                f"{integrator!r}, {steps}"
            )
        if skip and predicts != "row":
            raise ValueError("flow head: a skip needs predicts='row' (it mixes the predicted row)")
        size = contract.IMAGE_SIZE
        self.steps, self.integrator = steps, integrator
        self.cond = nn.Linear(hidden, width)  # once per row
        self.above = nn.Linear(size, width, bias=False)  # the row just read, pixel for pixel
        self.row_in = nn.Linear(size, width, bias=False)
        self.time_in = nn.Linear(2 * TIME_FREQUENCIES, width, bias=False)
        self.mid = nn.Linear(width, width)
        self.out = nn.Linear(width, size)
        # With a base, the flow draws the row's difference from the mean head's prediction (a
        # frozen copy of `fc`, set by training.flow_loop), in the same y units.
        self.base = nn.Linear(hidden, size) if around_mean else None
        # With a skip, the predicted row is guess + c_skip(s) r + c_out(s) F(c_in(s) r, ...), r =
        # y - s guess, guess a linear map of the row above (starting as that row itself): the
        # network models only what the row above does not say, and at s near 1 the prediction is
        # y itself, not a copy of it through two nonlinear layers (EDM's preconditioning).
        self.guess = nn.Linear(size, size) if skip else None
        # With classes, the class vector `kind` (C,) enters beside h and the row above: a one-hot
        # label in training, the probe's reading of the prompt when drawing (decide). The probe
        # is fitted by training.flow_loop.fit_kind_probe and stays frozen.
        self.kind_in = nn.Linear(classes, width, bias=False) if classes else None
        self.probe = None
        if classes:
            self.probe = ClassProbe(torch.zeros(hidden), torch.ones(hidden), classes)
            self.probe.requires_grad_(False)
        if self.guess is not None:
            with torch.no_grad():
                self.guess.weight.copy_(2.0 * torch.eye(size))  # pixels [0, 1] -> y [-1, 1]
                self.guess.bias.fill_(-1.0)

    def centre(self, h: torch.Tensor) -> torch.Tensor | float:
        """Where a row's draws are centred in y: the mean head's row, or 0 without a base."""
        if self.base is None:
            return 0.0
        return 2.0 * self.base(h).clamp(0.0, 1.0) - 1.0

    def velocity(self, y: torch.Tensor, s: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """y (..., 28), s broadcastable to y's leading axes, cond = self.condition(h, above)."""
        if self.guess is not None:
            return self._skip_velocity(y, s, cond)
        first = self.row_in(y) + cond + self.time_in(time_features(s))
        out = self.out(nn.functional.silu(self.mid(nn.functional.silu(first))))
        if self.predicts == "velocity":
            return out
        # The network predicts the clean row y_1; the velocity that reaches it from y at time s is
        # (y_1 - y) / (1 - s), so the last Euler step lands exactly on a predicted clean row.
        return (out - y) / _last((1.0 - s).clamp(min=MIN_GAP))

    def _mixing(self, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """c_in, c_skip, c_out at times s, each shaped as s: r = (1 - s) y_0 + s (y_1 - guess)
        has variance (1 - s)^2 + s^2 sd^2 if y_1 - guess has sd^2; c_skip r is the best linear
        guess of y_1 - guess from r, and c_out scales the network to that guess's error."""
        var = (1.0 - s).pow(2) + (s * RESIDUAL_STD).pow(2)
        c_skip = s * RESIDUAL_STD**2 / var
        c_out = (1.0 - s) * RESIDUAL_STD / var.sqrt()
        return var.rsqrt(), c_skip, c_out

    def _split(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cond (..., W + 28) with a skip -> the shared projection (..., W), the guess (..., 28)."""
        return cond[..., : -contract.IMAGE_SIZE], cond[..., -contract.IMAGE_SIZE :]

    def _skip_velocity(self, y: torch.Tensor, s: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        cond, guess = self._split(cond)
        r = y - _last(s) * guess
        c_in, c_skip, c_out = map(_last, self._mixing(s))
        first = self.row_in(c_in * r) + cond + self.time_in(time_features(s))
        out = self.out(nn.functional.silu(self.mid(nn.functional.silu(first))))
        row = guess + c_skip * r + c_out * out
        return (row - y) / _last((1.0 - s).clamp(min=MIN_GAP))

    def divergence(self, y: torch.Tensor, s: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Exact trace of dv/dy, (...,): tr(W_out D2 W_mid D1 W_y) for the two SiLU layers'
        derivatives D1, D2, less 28 / (1 - s) where the network predicts the row; with a skip,
        (28 c_skip + c_out c_in tr(...) - 28) / (1 - s).

        The trace is d2' Q d1 with Q = W_mid * (W_y W_out)' elementwise: (W, W), no Jacobian.
        """
        size = contract.IMAGE_SIZE
        if self.guess is not None:
            cond, guess = self._split(cond)
            c_in, c_skip, c_out = self._mixing(s)
            y = _last(c_in) * (y - _last(s) * guess)
        first = self.row_in(y) + cond + self.time_in(time_features(s))  # (..., W)
        second = self.mid(nn.functional.silu(first))
        d1, d2 = _silu_slope(first), _silu_slope(second)  # (..., W)
        q = self.mid.weight * (self.row_in.weight @ self.out.weight).T  # (W, W)
        trace = ((d2 @ q) * d1).sum(-1)
        gap = (1.0 - s).clamp(min=MIN_GAP)
        if self.guess is not None:  # d row / dy = c_skip I + c_out c_in (the network's Jacobian)
            return (size * c_skip + c_out * c_in * trace - size) / gap
        if self.predicts == "velocity":
            return trace
        return (trace - size) / gap

    def decide(self, h: torch.Tensor, temperature: float = CLASS_TEMPERATURE) -> torch.Tensor:
        """The class vector (..., C) a state h (..., H) reads as: the probe's probabilities,
        sharpened by `temperature`. Drawing, it is decided after the prompt's last row and
        held for every drawn row (rowgen.stepping says how a runtime carries it)."""
        if self.probe is None:
            raise ValueError("flow head: decide() needs a head with classes")
        return torch.softmax(self.probe(h) / temperature, dim=-1)

    def condition(
        self, h: torch.Tensor, above: torch.Tensor, kind: torch.Tensor | None = None
    ) -> torch.Tensor:
        """What a row's every step shares, from h (..., H), the row above it (..., 28) and, for a
        head with classes, the class vector `kind` (..., C): their projection (..., W), and with a
        skip the guess of the row in y units after it."""
        shared = self.cond(h) + self.above(above)
        if self.kind_in is not None:
            if kind is None:
                raise ValueError(
                    f"flow head with {self.classes} classes: pass `kind` (a one-hot label in "
                    "training, decide(h) of the prompt's last state when drawing)"
                )
            shared = shared + self.kind_in(kind)
        if self.guess is None:
            return shared
        return torch.cat([shared, self.guess(above)], dim=-1)

    def loss(
        self,
        h: torch.Tensor,
        above: torch.Tensor,
        rows: torch.Tensor,
        dequantize: bool = True,
        weighting: str = "velocity",
        kind: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Flow-matching loss per row, (...,): |v(y_s, s, h) - (y_1 - y_0)|² summed over pixels.

        h (..., H) the state that read `above` (..., 28); rows (..., 28) the real next rows in
        [0, 1]; with `dequantize`, uniform noise within each 8-bit grey level, so the field
        models a density over [0, 1]^28; kind (..., C) the images' one-hot labels, for a head
        with classes.
        """
        if weighting not in WEIGHTINGS:
            raise ValueError(f"flow loss: weighting in {WEIGHTINGS}, got {weighting!r}")
        x = rows
        if dequantize:
            x = (rows * 255.0 + torch.rand_like(rows)) / 256.0
        y1 = 2.0 * x - 1.0 - self.centre(h)
        y0 = torch.randn_like(y1)
        s = torch.rand(y1.shape[:-1], device=y1.device)  # (...,)
        ys = (1.0 - s[..., None]) * y0 + s[..., None] * y1
        v = self.velocity(ys, s, self.condition(h, above, kind))
        loss = (v - (y1 - y0)).pow(2).sum(-1)
        if weighting == "row":  # |predicted row - row|², every time s weighted alike
            loss = loss * (1.0 - s).clamp(min=MIN_GAP).pow(2)
        return loss

    def sample_row(
        self,
        h: torch.Tensor,
        above: torch.Tensor,
        noise: torch.Tensor,
        temperature: torch.Tensor,
        kind: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """One sampled row in [0, 1]: h (..., H) after reading `above` (..., 28), noise (..., 28)
        standard normal, temperature broadcastable to (..., 1) and already >= 0; kind (..., C)
        the class held (a head with classes)."""
        cond = self.condition(h, above, kind)
        y = temperature * noise
        dt = 1.0 / self.steps
        for i in range(self.steps):
            s = torch.full((), i * dt, dtype=y.dtype)
            v = self.velocity(y, s, cond)
            if self.integrator == "heun":
                ahead = self.velocity(y + dt * v, s + dt, cond)
                v = 0.5 * (v + ahead)
            y = y + dt * v
        return (0.5 * (y + self.centre(h) + 1.0)).clamp(0.0, 1.0)

    def __repr__(self) -> str:
        classes = f", {self.classes} classes" if self.classes else ""
        return (
            f"FlowHead(width={self.mid.in_features}, steps={self.steps}, {self.integrator}"
            f"{classes})"
        )


def evaluations_per_row(head: FlowHead) -> int:
    """Velocity evaluations per sampled row: the sampler's cost."""
    return head.steps * (2 if head.integrator == "heun" else 1)
