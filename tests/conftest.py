"""Shared fixtures (tiny random-weight models and bundles) and the property-based test setup.

Fuzzing convention: property-based (hypothesis) tests live in `tests/test_fuzz_<area>.py`. Every
test in such a file gets the `fuzz` marker here, and every run counts the cases hypothesis ran
(one line at the end). `make test` runs them with the "rowgen" profile (150 examples
each); `make fuzz` runs only them with the "fuzz" profile, $ROWGEN_FUZZ_EXAMPLES examples each
(`make fuzz FUZZ_EXAMPLES=...`). A property test anywhere else is counted but not marked.
"""

from __future__ import annotations

import collections
import fcntl
import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from tests import scheduling
from tests.scheduling import pytest_xdist_make_scheduler  # noqa: F401 (a hook: xdist's units)

# gradio must never phone home, in any test.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# No deadline: this 2-core machine is shared, and a slow example is not a failing one.
# Under CI the examples are derived from each test, not drawn afresh, so a submission is judged
# on its code and not on the draw; developers' runs and `make fuzz` keep exploring new inputs.
settings.register_profile(
    "rowgen",
    max_examples=150,  # the fast suite; `make fuzz` explores
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    derandomize=bool(os.environ.get("CI")),
)
settings.register_profile(
    "fuzz",
    parent=settings.get_profile("rowgen"),
    max_examples=int(os.environ.get("ROWGEN_FUZZ_EXAMPLES", "5000")),
)
settings.load_profile("rowgen")  # `--hypothesis-profile fuzz` (make fuzz) replaces it
FUZZ_FILE_PREFIX = "test_fuzz_"
CASES: collections.Counter[str] = collections.Counter()  # property test -> cases it ran

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "artifacts"

TINY_CONFIGS = {  # name -> (cell, mode, hidden, layers)
    "lstm": ("lstm", "stream", 8, 1),
    "gru": ("gru", "stream", 8, 1),
    "rnn": ("rnn", "stream", 8, 2),
    "lstm-window": ("lstm", "window", 6, 1),
}


def tiny_model(cell: str, mode: str = "stream", hidden: int = 8, layers: int = 1, seed: int = 0):
    """A random-weight RowGenerator (torch imported lazily: serve tests must not need it)."""
    import torch

    from rowgen.config import ModelConfig
    from training.model import RowGenerator

    torch.manual_seed(seed)
    return RowGenerator(ModelConfig(cell, mode, hidden, layers)).eval()


def built_once(factory: pytest.TempPathFactory, name: str, build: Callable[[Path], None]) -> Path:
    """The folder `name`, filled by `build` once per test run: under pytest-xdist the workers
    share one copy (the first builds it under a file lock, the others wait and reuse it), so
    `make test -n 2` exports each set of tiny bundles once, not once per worker. Tests must
    treat it as read-only, as they treat any session fixture."""
    base = factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent  # the run's folder, above every worker's own
    root, partial = base / name, base / f"{name}.partial"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not root.exists():
            # built aside and renamed when whole: a build that failed leaves no half folder
            # for the next worker to take as done; that worker tries again and shows the error
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            build(partial)
            partial.rename(root)
    return root


def _export_tiny_set(root: Path) -> None:
    for name, (cell, mode, hidden, layers) in TINY_CONFIGS.items():
        export_tiny(tiny_model(cell, mode, hidden, layers), root / name)


@pytest.fixture(scope="session")
def tiny_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of exported, parity-checked bundles of tiny random models, one per cell/mode."""
    return built_once(tmp_path_factory, "artifacts", _export_tiny_set)


def export_tiny(model, folder: Path) -> None:
    """Export `model` as a bundle at `folder` (its weights file only passes through)."""
    from export.build import build_bundle
    from training.checkpoint import save_weights

    weights = folder.with_suffix(".safetensors")
    save_weights(model, weights)
    info = {"dataset": "fashion-mnist", "metrics": {"test_mse_k14": 0.1}}
    build_bundle(model, folder, weights, info=info)
    weights.unlink()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real Fashion-MNIST files: $ROWGEN_DATA_DIR, else Debian's package (skip when absent)."""
    from training.data import DATA_DIR_ENV, DEBIAN_DIRS

    path = Path(os.environ.get(DATA_DIR_ENV) or DEBIAN_DIRS["fashion-mnist"])
    if not (path / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"no Fashion-MNIST files at {path} (set ROWGEN_DATA_DIR)")
    return path


def _counting(test):
    @functools.wraps(test)
    def run(*args, **kwargs):
        CASES[test.__qualname__] += 1
        return test(*args, **kwargs)

    run.rowgen_counted = True
    return run


@pytest.hookimpl(tryfirst=True)  # before `-m` selection, so `-m fuzz` sees the marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of test_fuzz_*.py `fuzz`; count the cases of every hypothesis test; order
    the tests for pytest-xdist's workers (tests/scheduling.py)."""
    scheduling.check_units(items)
    scheduling.order(items)
    for item in items:
        if item.path.name.startswith(FUZZ_FILE_PREFIX):
            item.add_marker(pytest.mark.fuzz)
        handle = getattr(getattr(item, "obj", None), "hypothesis", None)
        if handle is not None and not getattr(handle.inner_test, "rowgen_counted", False):
            handle.inner_test = _counting(handle.inner_test)  # hypothesis allows replacing it


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if CASES:
        terminalreporter.write_line(
            f"hypothesis: {sum(CASES.values())} cases run by {len(CASES)} property tests "
            f"(up to {settings.default.max_examples} generated examples each)"
        )


TINY_SAMPLER = "lstm-cvae"  # the stochastic bundle of `tiny_sampler_bundles`


def tiny_sampler(hidden: int = 8, noise_dim: int = 4, seed: int = 0):
    """A random-weight cvae RowGenerator: a mean head plus a latent head that samples."""
    import torch

    from rowgen.config import ModelConfig
    from training.model import RowGenerator

    torch.manual_seed(seed)
    return RowGenerator(ModelConfig("lstm", "stream", hidden, 1, "cvae", noise_dim)).eval()


TINY_FLOW = "lstm-flow"  # the flow-head bundle of `tiny_flow_bundles`
TINY_HELD = "lstm-held"  # `tiny_sampler_bundles`' flow head, which holds a class as state


def tiny_flow_sampler(
    hidden: int = 8, width: int = 16, steps: int = 3, seed: int = 0, classes: int = 3
):
    """A random-weight flow RowGenerator: a mean head plus a rectified-flow head (Heun) that
    holds one of `classes` classes from the prompt on (its probe random too; 0: none)."""
    import torch

    from rowgen.config import FLOW_NOISE_DIM, ModelConfig
    from training.model import RowGenerator

    torch.manual_seed(seed)
    flow = (width, steps, "heun", classes)
    config = ModelConfig("lstm", "stream", hidden, 1, "flow", FLOW_NOISE_DIM, *flow)
    model = RowGenerator(config).eval()
    if classes:  # a probe that reads the state, so the class it decides differs by prompt
        torch.nn.init.normal_(model.flow.probe.linear.weight, std=3.0)
    return model


@pytest.fixture(scope="session")
def tiny_flow_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding one exported, parity-checked flow-head bundle."""
    return built_once(
        tmp_path_factory,
        "flow-artifacts",
        lambda root: export_tiny(tiny_flow_sampler(), root / TINY_FLOW),
    )


@pytest.fixture(scope="session")
def tiny_sampler_bundles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding two exported, parity-checked stochastic bundles (a cvae head, and a flow
    head that holds a class, as the shipped one does) and one plain one."""

    def build(root: Path) -> None:
        models = (
            (TINY_SAMPLER, tiny_sampler()),
            (TINY_HELD, tiny_flow_sampler()),
            ("gru", tiny_model("gru")),
        )
        for name, model in models:
            export_tiny(model, root / name)

    return built_once(tmp_path_factory, "sampler-artifacts", build)
