"""The Triton model repositories (`make triton`): schema, ONNX agreement, state wiring, safe writes.

The onnxruntime-backend repository cannot be served here: each config is parsed with Triton's own
schema, held against its ONNX file, loaded by Triton's own server core up to the onnxruntime
backend it lacks (the binary `.ci/get-tritonserver` fetches), and the step model is driven with
onnxruntime the way Triton's implicit state would drive it. The python-backend repository is
checked here as files; tests/export/test_triton_server.py serves it.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from export.triton import configs, repository
from export.triton.__main__ import main
from export.triton.check import (
    Graph,
    TritonConfigError,
    check_model_dir,
    check_python_model_dir,
    problems,
    read_config,
)
from export.triton.server import Install
from rowgen import contract
from rowgen.bundle import find_bundles, open_bundle
from rowgen.config import ModelConfig
from rowgen.sampling import draw_noise
from tests.conftest import TINY_CONFIGS, TINY_HELD, TINY_SAMPLER

ONNX_DTYPES = {onnx.TensorProto.FLOAT: mc.TYPE_FP32, onnx.TensorProto.INT64: mc.TYPE_INT64}


@pytest.fixture(scope="module")
def repo(tiny_bundles: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("repo") / "triton"
    assert main(["--artifacts", str(tiny_bundles), "--out", str(out)]) == 0
    return out


def _models(repo: Path) -> list[Path]:
    return sorted(p for p in repo.iterdir() if p.is_dir())


def _configs(repo: Path) -> list[Path]:
    return [c for m in _models(repo) for c in (m / repository.CONFIG, m / repository.CPU_CONFIG)]


def _parse(path: Path) -> mc.ModelConfig:
    return text_format.Parse(path.read_text(), mc.ModelConfig())  # unknown fields raise


def _graph_dims(value: onnx.ValueInfoProto) -> list[int]:
    return [
        d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim
    ]


def test_two_models_per_bundle_under_the_serving_names(repo: Path) -> None:
    names = {m.name for m in _models(repo)}
    expected = {b + s for b in TINY_CONFIGS for s in ("", contract.STEP_MODEL_SUFFIX)}
    assert names == expected
    for model in _models(repo):
        assert sorted(p.name for p in model.iterdir()) == ["1", "config.pbtxt", "configs"]
        assert [p.name for p in (model / "1").iterdir()] == ["model.onnx"]


def test_every_config_parses_with_tritons_schema(repo: Path) -> None:
    configs = _configs(repo)
    assert len(configs) == 2 * len(TINY_CONFIGS) * 2
    for path in configs:
        config = _parse(path)
        model = path.parent if path.name == repository.CONFIG else path.parent.parent
        assert config.name == model.name, path
        assert config.backend == "onnxruntime" and config.max_batch_size > 0, path
        kinds = {g.kind for g in config.instance_group}
        cpu = path.name == "cpu.pbtxt"
        assert kinds == {mc.ModelInstanceGroup.KIND_CPU if cpu else mc.ModelInstanceGroup.KIND_GPU}


def test_a_config_with_an_unknown_field_or_value_is_rejected(repo: Path, tmp_path: Path) -> None:
    text = (repo / "lstm" / repository.CONFIG).read_text()
    for bad in (text + "max_batch: 8\n", text.replace("KIND_GPU", "KIND_TPU")):
        (tmp_path / "bad.pbtxt").write_text(bad)
        with pytest.raises(text_format.ParseError):
            _parse(tmp_path / "bad.pbtxt")
        with pytest.raises(TritonConfigError, match=r"bad\.pbtxt"):
            read_config(tmp_path / "bad.pbtxt")


def test_configs_agree_with_their_onnx_files(repo: Path) -> None:
    for path in _configs(repo):
        config = _parse(path)
        model = path.parent if path.name == repository.CONFIG else path.parent.parent
        graph = onnx.load(str(model / "1" / "model.onnx")).graph
        inputs = {v.name: v for v in graph.input}
        outputs = {v.name: v for v in graph.output}
        seq = config.sequence_batching
        assert len(inputs) == len(config.input) + len(seq.state) + len(seq.control_input), path
        for io, side in [(i, inputs) for i in config.input] + [(o, outputs) for o in config.output]:
            value = side[io.name]
            assert ONNX_DTYPES[value.type.tensor_type.elem_type] == io.data_type, (path, io.name)
            batch, *dims = _graph_dims(value)
            assert batch == -1, (path, io.name)  # the batch axis is dynamic in the graph
            assert (list(io.reshape.shape) if io.HasField("reshape") else list(io.dims)) == dims
        for state in seq.state:
            for value in (inputs[state.input_name], outputs[state.output_name]):
                assert ONNX_DTYPES[value.type.tensor_type.elem_type] == state.data_type
                assert _graph_dims(value) == [-1, *state.dims], (path, value.name)
            (init,) = state.initial_state
            assert init.zero_data and init.name and list(init.dims) == list(state.dims)
        assert problems(config, Graph.load(model / "1" / "model.onnx")) == [], path


def test_configs_use_the_contracts_names(repo: Path, tiny_bundles: Path) -> None:
    for name in TINY_CONFIGS:
        config = open_bundle(tiny_bundles / name).config
        done = _parse(repo / name / repository.CONFIG)
        assert [i.name for i in done.input] == [s.name for s in contract.complete_inputs()]
        assert [o.name for o in done.output] == [s.name for s in contract.complete_outputs()]
        known_rows = done.input[1]
        assert list(known_rows.dims) == [1] and known_rows.HasField("reshape")
        assert not known_rows.reshape.shape  # clients send [B, 1]; the graph gets [B]
        step = _parse(repo / (name + contract.STEP_MODEL_SUFFIX) / repository.CONFIG)
        ins, outs = contract.step_inputs(config), contract.step_outputs(config)
        assert [i.name for i in step.input] == [ins[0].name]
        assert [o.name for o in step.output] == [outs[0].name]
        pairs = [(s.input_name, s.output_name) for s in step.sequence_batching.state]
        assert pairs == [(i.name, o.name) for i, o in zip(ins[1:], outs[1:], strict=True)]
        if config.mode == "window":
            assert pairs == [("window", "window_out")]


def test_model_files_are_the_bundles_bytes(repo: Path, tiny_bundles: Path) -> None:
    sources = json.loads((repo / repository.MARKER).read_text())["models"]
    for name in TINY_CONFIGS:
        for model, file in ((name, contract.COMPLETE_ONNX), (name + "_step", contract.STEP_ONNX)):
            data = (repo / model / "1" / "model.onnx").read_bytes()
            assert data == (tiny_bundles / name / file).read_bytes(), model
            listed = open_bundle(tiny_bundles / name).manifest["files"][file]
            assert sources[model]["sha256"] == listed["sha256"], model


@pytest.fixture(scope="module")
def python_repo(repo: Path) -> Path:
    return repo.with_name(repo.name + "-python")  # written beside it by the same `main` call


def test_the_python_repository_serves_the_same_models(repo: Path, python_repo: Path) -> None:
    assert {m.name for m in _models(python_repo)} == {m.name for m in _models(repo)}
    assert json.loads((python_repo / repository.MARKER).read_text())["backend"] == "python"
    for model in _models(python_repo):
        config = _parse(model / repository.CONFIG)
        onnxruntime_config = _parse(repo / model.name / repository.CONFIG)
        assert config == configs.python_variant(onnxruntime_config), model.name
        assert config.backend == "python" and not config.sequence_batching.state
        assert {g.kind for g in config.instance_group} == {mc.ModelInstanceGroup.KIND_CPU}
        assert config.input == onnxruntime_config.input  # clients send the same requests
        assert sorted(p.name for p in model.iterdir()) == ["1", "config.pbtxt"]
        version = model / "1"
        assert (version / "model.py").read_bytes() == repository.MODEL_SOURCE.read_bytes()
        (copy,) = find_bundles(version)  # one bundle, the one whose serving name this is
        assert model.name in contract.serving_names(copy.name, open_bundle(copy).config)
        check_python_model_dir(model)


def test_the_python_models_carry_the_bundles_verified_files(
    python_repo: Path, tiny_bundles: Path
) -> None:
    for name in TINY_CONFIGS:
        for model in contract.serving_names(name, open_bundle(tiny_bundles / name).config):
            copy = open_bundle(python_repo / model / "1" / name)
            original = open_bundle(tiny_bundles / name)
            assert copy.manifest == original.manifest, model
            assert copy.blobs == original.blobs, model


def test_the_python_checker_catches_what_would_not_load(python_repo: Path, tmp_path: Path) -> None:
    model = tmp_path / "lstm_step"
    shutil.copytree(python_repo / "lstm_step", model)
    good = _parse(model / repository.CONFIG)
    breakages = {
        "implicit state": lambda c: c.sequence_batching.state.add(input_name="h"),
        "not in the graph": lambda c: setattr(c.input[0], "name", "pixels"),
        "expected 'python'": lambda c: setattr(c, "backend", "onnxruntime"),
        "config dims": lambda c: c.input[0].dims.append(2),
    }
    for needle, breakage in breakages.items():
        config = mc.ModelConfig()
        config.CopyFrom(good)
        breakage(config)
        (model / repository.CONFIG).write_text(configs.render(config))
        with pytest.raises(TritonConfigError, match=needle):
            check_python_model_dir(model)
    (model / repository.CONFIG).write_text(configs.render(good))
    check_python_model_dir(model)
    with open(model / "1" / "lstm" / contract.STEP_ONNX, "ab") as f:
        f.write(b"\0")
    with pytest.raises(TritonConfigError, match=r"step\.onnx"):
        check_python_model_dir(model)
    (model / "1" / "model.py").unlink()
    with pytest.raises(TritonConfigError, match=r"model\.py is missing"):
        check_python_model_dir(model)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _triton_sequence(step: ort.InferenceSession, config: mc.ModelConfig, image, known_rows):
    """What Triton does for one sequence of `<bundle>_step` calls: the state from the config's
    zero initial_state, each call's state outputs fed back as the next call's state inputs.
    The client feeds known rows, then its own predictions; each request has batch 1."""
    seq = config.sequence_batching
    state = {s.input_name: np.zeros([1, *s.initial_state[0].dims], np.float32) for s in seq.state}
    row_in, row_out = config.input[0].name, config.output[0].name
    rows = [image[0]]
    for t in range(contract.IMAGE_SIZE - 1):
        wanted = [row_out, *(s.output_name for s in seq.state)]
        got = dict(zip(wanted, step.run(wanted, {row_in: rows[-1][None], **state}), strict=True))
        state = {s.input_name: got[s.output_name] for s in seq.state}
        rows.append(image[t + 1] if t + 1 < known_rows else got[row_out][0])
    return np.stack(rows)


def test_step_model_with_implicit_state_reproduces_the_complete_model(repo: Path) -> None:
    rng = np.random.default_rng(0)
    images = rng.random((3, contract.IMAGE_SIZE, contract.IMAGE_SIZE), dtype=np.float32)
    known = np.array([[1], [14], [27]], np.int64)  # as a client sends it: dims [1] per sample
    for name in TINY_CONFIGS:
        done_config = _parse(repo / name / repository.CONFIG)
        reshaped = known.reshape(-1, *done_config.input[1].reshape.shape)  # Triton's reshape
        done = _session(repo / name / "1" / "model.onnx")
        (expected,) = done.run(None, {"image": images, "known_rows": reshaped})
        step_dir = repo / (name + contract.STEP_MODEL_SUFFIX)
        step = _session(step_dir / "1" / "model.onnx")
        step_config = _parse(step_dir / repository.CONFIG)
        pairs = zip(images, known[:, 0], strict=True)
        got = np.stack([_triton_sequence(step, step_config, im, k) for im, k in pairs])
        diff = float(np.abs(got - expected).max())
        assert diff <= contract.COMPLETE_TOLERANCE, f"{name}: completed differs by {diff:.3g}"


@pytest.mark.parametrize("sampler", [TINY_SAMPLER, TINY_HELD])
def test_sample_step_model_with_implicit_state_reproduces_sample_onnx(
    tiny_sampler_bundles: Path, tmp_path: Path, sampler: str
) -> None:
    """`<bundle>_sample_step`: row, noise_row and temperature (and a held class's row_known) per
    request, h/c (and kind) as Triton's implicit state; one sequence per image equals sample.onnx
    on the same noise."""
    out = tmp_path / "triton"
    assert main(["--artifacts", str(tiny_sampler_bundles), "--out", str(out), sampler]) == 0
    bundle = open_bundle(tiny_sampler_bundles / sampler)
    held = bundle.config.holds_kind
    name = sampler + contract.SAMPLE_STEP_MODEL_SUFFIX
    config = _parse(out / name / repository.CONFIG)
    ins = contract.sample_step_inputs(bundle.config)
    flag = [contract.ROW_KNOWN] if held else []
    assert [i.name for i in config.input] == [ins[0].name, *flag, *(s.name for s in ins[-2:])]
    temperature_in = config.input[-1]
    assert list(temperature_in.dims) == [1] and not temperature_in.reshape.shape  # [B, 1] -> [B]
    pairs = [(s.input_name, s.output_name) for s in config.sequence_batching.state]
    kind = [(contract.KIND, contract.KIND + "_out")] if held else []
    program = contract.SAMPLE_STEP_ONNX
    assert pairs == contract.state_pairs(bundle.config, program) == [
        ("h", "h_out"), ("c", "c_out"), *kind
    ]  # fmt: skip
    python = _parse(out.with_name("triton-python") / name / repository.CONFIG)
    assert python == configs.python_variant(config)

    rng = np.random.default_rng(3)
    images = rng.random((3, contract.IMAGE_SIZE, contract.IMAGE_SIZE), dtype=np.float32)
    known = np.array([1, 9, 20], np.int64)
    noise = draw_noise(3, 3, bundle.config.noise_dim)
    temperature = np.array([1.0, 0.5, 2.0], np.float32)
    whole = _session(out / (sampler + contract.SAMPLE_MODEL_SUFFIX) / "1" / "model.onnx")
    names = [s.name for s in contract.sample_inputs(bundle.config.noise_dim)]
    values = (images, known, noise, temperature)
    (expected,) = whole.run(None, dict(zip(names, values, strict=True)))
    step = _session(out / name / "1" / "model.onnx")
    seq = config.sequence_batching
    row_in, *_, noise_in, temperature_in = (i.name for i in config.input)
    row_out = config.output[0].name
    for b in range(3):  # what Triton does for one sequence, zero state from initial_state
        state = {
            s.input_name: np.zeros([1, *s.initial_state[0].dims], np.float32) for s in seq.state
        }
        rows = [images[b, 0]]
        for t in range(contract.IMAGE_SIZE - 1):
            feeds = {row_in: rows[-1][None], noise_in: noise[b, t][None],
                     temperature_in: temperature[b : b + 1], **state}  # fmt: skip
            if held:  # 1 while the sequence sends the prompt's rows
                feeds[contract.ROW_KNOWN] = np.float32([t < known[b]])
            wanted = [row_out, *(s.output_name for s in seq.state)]
            got = dict(zip(wanted, step.run(wanted, feeds), strict=True))
            state = {s.input_name: got[s.output_name] for s in seq.state}
            rows.append(images[b, t + 1] if t + 1 < known[b] else got[row_out][0])
        diff = float(np.abs(np.stack(rows) - expected[b]).max())
        assert diff <= contract.COMPLETE_TOLERANCE, f"{name}, image {b}: differs by {diff:.3g}"


def test_the_checker_catches_what_triton_would_refuse(repo: Path) -> None:
    graph = Graph.load(repo / "lstm_step" / "1" / "model.onnx")
    good = _parse(repo / "lstm_step" / repository.CONFIG)
    breakages = {
        "state dims": lambda c: c.sequence_batching.state[0].dims.append(1),
        "initial_state needs a name": lambda c: (
            c.sequence_batching.state[0].initial_state[0].ClearField("name")
        ),
        "control inputs": lambda c: c.sequence_batching.control_input.add(name="START"),
        "TYPE_INT64": lambda c: setattr(c.input[0], "data_type", mc.TYPE_INT64),
        "not in the graph": lambda c: setattr(c.output[0], "name", "next"),
        "preferred batch sizes": lambda c: c.sequence_batching.oldest.preferred_batch_size.append(
            c.max_batch_size + 1
        ),
    }
    assert problems(good, graph) == []
    for needle, breakage in breakages.items():
        config = mc.ModelConfig()
        config.CopyFrom(good)
        breakage(config)
        found = problems(config, graph)
        assert any(needle in p for p in found), (needle, found)


def test_rewrite_replaces_the_repository_whole(tiny_bundles: Path, tmp_path: Path) -> None:
    out = tmp_path / "triton"
    args = ["--artifacts", str(tiny_bundles), "--out", str(out)]
    assert main([*args, "lstm", "gru"]) == 0
    first = (out / "lstm" / repository.CONFIG).read_text()
    assert main([*args, "lstm"]) == 0  # NAMES selects exactly what the repository serves
    assert {m.name for m in _models(out)} == {"lstm", "lstm_step"}
    assert (out / "lstm" / repository.CONFIG).read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["triton", "triton-python"]  # no tmp left
    check_model_dir(out / "lstm_step")


def test_batching_knobs_reach_every_config(tiny_bundles: Path, tmp_path: Path) -> None:
    out = tmp_path / "triton"
    knobs = ["--max-batch-size", "8", "--queue-delay-us", "0", "--instances", "2"]
    assert main(["--artifacts", str(tiny_bundles), "--out", str(out), *knobs]) == 0
    for path in _configs(out):
        config = _parse(path)
        assert config.max_batch_size == 8 and config.instance_group[0].count == 2, path
        batcher = (
            config.sequence_batching.oldest
            if config.HasField("sequence_batching")
            else config.dynamic_batching
        )
        assert list(batcher.preferred_batch_size) == [2, 8], path
        assert batcher.max_queue_delay_microseconds == 0, path
    assert json.loads((out / repository.MARKER).read_text())["batching"]["max_batch_size"] == 8
    assert configs.Batching(max_batch_size=1).preferred() == [1]


def test_a_bad_bundle_writes_nothing(tiny_bundles: Path, tmp_path: Path, capsys) -> None:
    artifacts = tmp_path / "artifacts"
    shutil.copytree(tiny_bundles / "gru", artifacts / "gru")
    assert main(["--artifacts", str(artifacts)]) == 0
    before = {p: p.read_bytes() for p in artifacts.glob("triton*/**/*") if p.is_file()}
    with open(artifacts / "gru" / contract.STEP_ONNX, "ab") as f:
        f.write(b"\0")
    assert main(["--artifacts", str(artifacts)]) == 1
    err = capsys.readouterr().err
    assert "step.onnx" in err and "left as they were" in err
    assert {p: p.read_bytes() for p in artifacts.glob("triton*/**/*") if p.is_file()} == before
    assert find_bundles(artifacts) == [artifacts / "gru"]  # and no temporary folder left behind
    assert sorted(p.name for p in artifacts.iterdir()) == ["gru", "triton", "triton-python"]


def test_clear_errors(tiny_bundles: Path, tmp_path: Path, capsys) -> None:
    assert main(["--artifacts", str(tmp_path / "none")]) == 2
    assert "no bundles" in capsys.readouterr().err
    assert main(["--artifacts", str(tiny_bundles), "--out", str(tmp_path / "r"), "cnn"]) == 1
    assert "no bundle at" in capsys.readouterr().err
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["--artifacts", str(tiny_bundles), "--out", str(other), "gru"]) == 1
    assert "not written by `make triton`" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"
    with pytest.raises(SystemExit):
        main(["--artifacts", str(tiny_bundles), "--max-batch-size", "0"])
    clash = tmp_path / "clash"
    shutil.copytree(tiny_bundles / "gru", clash / "gru")
    shutil.copytree(tiny_bundles / "lstm", clash / "gru_step")  # the name of gru's step model
    assert main(["--artifacts", str(clash)]) == 1
    assert "two models named 'gru_step'" in capsys.readouterr().err
    assert sorted(p.name for p in clash.iterdir()) == ["gru", "gru_step"]


def test_check_model_dir_names_what_is_wrong(repo: Path, tmp_path: Path) -> None:
    moved = tmp_path / "gru_renamed"
    shutil.copytree(repo / "gru", moved)
    with pytest.raises(TritonConfigError, match="differs from its folder 'gru_renamed'"):
        check_model_dir(moved)
    broken = tmp_path / "gru"
    shutil.copytree(repo / "gru", broken)
    (broken / "1" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(TritonConfigError, match="onnxruntime cannot load it"):
        check_model_dir(broken)
    shutil.rmtree(broken / "1")
    with pytest.raises(TritonConfigError, match="no numeric version folder"):
        check_model_dir(broken)


def test_no_tensor_name_is_retyped_in_the_triton_code() -> None:
    """Names come from rowgen.contract: the modules hold no tensor name as a string literal."""
    configs_ = [ModelConfig("lstm", mode) for mode in ("stream", "window")]
    names = {s.name for c in configs_ for s in contract.step_inputs(c) + contract.step_outputs(c)}
    names |= {s.name for s in contract.complete_inputs() + contract.complete_outputs()}
    names |= {s.name for s in contract.sample_inputs(4)}
    modules = sorted(Path(configs.__file__).parent.glob("*.py"))
    assert repository.MODEL_SOURCE in modules and len(modules) >= 7
    for module in modules:  # the python backend's model.py too: it runs inside Triton
        tree = ast.parse(module.read_text())
        literals = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)}
        assert not names & literals, f"{module.name} retypes {sorted(names & literals)}"


BACKEND_MISSING = "unable to find backend library for backend 'onnxruntime'"


def _tritonserver() -> Install:
    """The tritonserver .ci/get-tritonserver unpacks; CI (ROWGEN_REQUIRE_TRITONSERVER) fails
    without it, a developer's run skips."""
    install = Install.default()
    if not install.binary.is_file():
        why = f"no tritonserver at {install.binary}: run `bash .ci/get-tritonserver`"
        if os.environ.get("ROWGEN_REQUIRE_TRITONSERVER"):
            pytest.fail(why)
        pytest.skip(why)
    return install


def _load_errors(repo: Path, config_name: str, tmp_path: Path) -> dict[str, str]:
    """Start Triton's server on `repo` and return {model: why it did not load}.

    Auto-completion is off, so Triton's core validates each config in full (schema, names,
    dims, batching) before it looks for the backend; with no onnxruntime backend installed, a
    valid model stops at exactly that point. No endpoint is opened.
    """
    install = _tritonserver()
    backends = tmp_path / "backends"  # empty: the core check only, no backend can load
    backends.mkdir(exist_ok=True)
    args = [
        str(install.binary),
        f"--model-repository={repo}",
        f"--backend-directory={backends}",
        "--disable-auto-complete-config",
        "--allow-http=false",
        "--allow-grpc=false",
        "--allow-metrics=false",
        *([f"--model-config-name={config_name}"] if config_name else []),
    ]
    env = {**os.environ, "LD_LIBRARY_PATH": str(install.libs)}
    run = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60, check=False)
    log = run.stdout + run.stderr
    found = re.findall(
        r"(?:failed to load|Poll failed for model directory) '([^']+)'[^:]*: (.*)", log
    )
    assert found, f"tritonserver said nothing about the models:\n{log[-3000:]}"
    return dict(found)


def test_tritons_own_server_validates_every_config(repo: Path, tmp_path: Path) -> None:
    models = {m.name for m in _models(repo)}
    for config_name in ("", "cpu"):
        errors = _load_errors(repo, config_name, tmp_path)
        assert set(errors) == models, config_name
        assert all(BACKEND_MISSING in e for e in errors.values()), (config_name, errors)
    broken = tmp_path / "broken"  # a bad configs/cpu.pbtxt: only --model-config-name=cpu reads it
    shutil.copytree(repo, broken)
    cpu = broken / "lstm_step" / repository.CPU_CONFIG
    cpu.write_text(cpu.read_text().replace("dims: [28]", "dims: [0]", 1))
    assert BACKEND_MISSING in _load_errors(broken, "", tmp_path)["lstm_step"]
    assert "dimension must be integer >= 1" in _load_errors(broken, "cpu", tmp_path)["lstm_step"]
