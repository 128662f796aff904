"""The Gradio app (serve.app): handlers called directly, bad inputs, HTTP, main()."""

from __future__ import annotations

import json
import shutil
import socket
import struct
import zlib
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image, ImageFile

from rowgen import contract
from rowgen.pictures import panel, to_uint8
from serve.app import images
from serve.app.__main__ import main
from serve.app.gallery import load_gallery
from serve.app.handlers import DRAW, GALLERY, UPLOAD, Handlers, picture
from serve.app.layout import build_app, free_port, launch
from serve.app.outputs import PngFiles
from serve.runtime import CUDA, OrtModel, load_models
from serve.torchscript import torch_available


@pytest.fixture(scope="module")
def handlers(tiny_bundles: Path) -> Handlers:
    return Handlers(load_models(tiny_bundles, "cpu"), load_gallery())


def run(handlers: Handlers, source: str = GALLERY, picked: int | None = 0, upload=None,
        sketch=None, invert: bool = False, k: object = 14, model: str = "lstm",
        backend: str = "onnxruntime") -> list[tuple[np.ndarray, str]]:  # fmt: skip
    frames = handlers.stream(source, picked, upload, sketch, invert, k, model, backend)
    return [(np.asarray(Image.open(png)), text) for png, text in frames]  # outputs are PNG files


def png_with_size(path: Path, width: int, height: int) -> Path:
    """A 1x1 PNG whose header claims width x height: big to a lazy open, tiny on disk."""
    Image.new("L", (1, 1)).save(path)
    data = bytearray(path.read_bytes())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    path.write_bytes(bytes(data))
    return path


def test_gallery_completion_streams_row_by_row(handlers: Handlers) -> None:
    frames = run(handlers, picked=3, k=20)
    assert len(frames) == (contract.IMAGE_SIZE - 20 + 1) + 1  # known rows, each new row, final
    first, last = frames[0][0], frames[-1][0]
    assert first.shape == last.shape == (224, 3 * 224 + 2 * 6, 3)
    assert first[-8:, -224:].max() == 0  # nothing generated yet at the bottom of the completion
    model = handlers.models.get("lstm")
    original = handlers.gallery[3].image
    completed = model.complete(original[None], np.array([20]))[0]
    assert np.array_equal(last, picture(original, completed, 20, contract.IMAGE_SIZE))
    assert np.array_equal(last[:, -224:], panel(completed, 20, 8))
    assert "MSE" in frames[-1][1] and "CPUExecutionProvider" in frames[-1][1]
    assert "MSE" not in frames[0][1]


def test_pick_from_the_gallery(handlers: Handlers) -> None:
    index, chosen = handlers.pick(gr.SelectData(None, {"index": 4, "value": None}))
    assert index == 4 and "Pullover" in chosen


@pytest.mark.parametrize("name", ["gru", "rnn", "lstm-window"])
def test_every_model_serves(handlers: Handlers, name: str) -> None:
    assert name in run(handlers, model=name)[-1][1]


@pytest.mark.skipif(not torch_available(), reason="torch is not installed")
def test_torchscript_backend(handlers: Handlers) -> None:
    onnx, script = run(handlers, picked=7)[-1], run(handlers, picked=7, backend="torchscript")[-1]
    assert "torchscript on torch.jit (cpu)" in script[1]
    assert np.abs(onnx[0].astype(int) - script[0].astype(int)).max() <= 1  # same picture


def test_upload_of_any_size_and_mode(handlers: Handlers, tmp_path: Path) -> None:
    cases = {
        "wide.png": Image.new("RGB", (280, 140), (255, 255, 255)),
        "alpha.png": Image.new("RGBA", (50, 60), (255, 255, 255, 128)),
        "sixteen.png": Image.new("I;16", (40, 40), 60000),
        "palette.gif": Image.new("P", (33, 17), 3),
        "photo.jpg": Image.new("RGB", (640, 480), (200, 30, 30)),
        "tiny.bmp": Image.new("1", (5, 7), 1),
    }
    for name, image in cases.items():
        image.save(tmp_path / name)
        grid = images.load_upload(tmp_path / name)
        assert grid.shape == (28, 28) and grid.dtype == np.float32, name
        assert grid.min() >= 0.0 and grid.max() <= 1.0, name
    wide = images.load_upload(tmp_path / "wide.png")  # aspect kept: white band, black above
    assert wide[:7].max() == 0.0 and wide[21:].max() == 0.0 and wide[10:18].min() > 0.99
    assert run(handlers, UPLOAD, upload=str(tmp_path / "photo.jpg"))[-1][0].ndim == 3


def test_invert_for_dark_on_light_drawings(handlers: Handlers, tmp_path: Path) -> None:
    drawing = Image.new("L", (100, 100), 255)
    drawing.paste(0, (30, 30, 70, 70))  # a black square on white paper
    drawing.save(tmp_path / "drawing.png")
    grid = images.load_upload(tmp_path / "drawing.png", invert=True)
    assert grid[0, 0] == 0.0 and grid[14, 14] == 1.0
    with pytest.warns(UserWarning, match="Invert"):
        run(handlers, UPLOAD, upload=str(tmp_path / "drawing.png"))


def test_sketch(handlers: Handlers) -> None:
    canvas = np.full((280, 280), 255, np.uint8)
    canvas[40:240, 100:180] = 0  # a black stroke on the white canvas
    frames = run(handlers, DRAW, sketch={"background": None, "layers": [], "composite": canvas})
    assert "MSE" not in frames[-1][1]  # a sketch is only a prompt: no original to compare
    rgba = np.zeros((280, 280, 4), np.uint8)  # a transparent canvas with a black stroke
    rgba[40:240, 100:180, 3] = 255
    assert images.load_sketch({"composite": rgba}).max() == 1.0


@pytest.mark.parametrize(
    "sketch", [None, {"background": None, "layers": [], "composite": None},
               {"composite": np.full((280, 280), 255, np.uint8)}],
)  # fmt: skip
def test_empty_sketch(handlers: Handlers, sketch) -> None:
    with pytest.raises(gr.Error, match="sketch is empty"):
        run(handlers, DRAW, sketch=sketch)


def test_no_image(handlers: Handlers) -> None:
    with pytest.raises(gr.Error, match="no image was uploaded"):
        run(handlers, UPLOAD, upload=None)
    with pytest.raises(gr.Error, match="click an image in the gallery"):
        run(handlers, GALLERY, picked=None)
    with pytest.raises(gr.Error, match="no image"):
        handlers.complete_api(None, 14, "lstm")


def test_bad_files(handlers: Handlers, tmp_path: Path) -> None:
    (tmp_path / "notes.png").write_text("not an image at all\n")
    Image.new("L", (64, 64), 128).save(tmp_path / "good.png")
    raw = (tmp_path / "good.png").read_bytes()
    (tmp_path / "corrupt.png").write_bytes(raw[:45] + bytes(len(raw) - 45))  # IDAT zeroed
    (tmp_path / "truncated.png").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "big.png").write_bytes(bytes(images.MAX_BYTES + 1))
    png_with_size(tmp_path / "huge.png", 5000, 5000)  # over our limit, under Pillow's bomb
    png_with_size(tmp_path / "bomb.png", 60000, 60000)  # over Pillow's bomb limit too
    (tmp_path / "empty.png").write_bytes(b"")
    expected = {
        "notes.png": "not an image",
        "corrupt.png": "corrupt",
        "truncated.png": "corrupt",
        "big.png": "MiB",
        "huge.png": "5000x5000 pixels",
        "bomb.png": "60000x60000 pixels; the limit",  # the app's words, not Pillow's
        "empty.png": "empty",
    }
    for name, message in expected.items():
        with pytest.raises(gr.Error, match=message):
            run(handlers, UPLOAD, upload=str(tmp_path / name))
        with pytest.raises(gr.Error, match=message):
            handlers.complete_api(str(tmp_path / name), 14, "lstm")


def test_oversized_header_is_refused_before_decoding(monkeypatch, tmp_path: Path) -> None:
    def no_decoding(self) -> None:
        raise AssertionError("decoded an image that the header already showed too large")

    huge = png_with_size(tmp_path / "huge.png", 8000, 8000)
    monkeypatch.setattr(Image.Image, "load", no_decoding)
    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(images.ImageInputError, match="limit"):
        images.open_image(huge)


@pytest.mark.parametrize("k", [0, 28, -3, 3.5, None, "abc", float("nan"), 10**400])
def test_known_rows_out_of_range(handlers: Handlers, k: object) -> None:
    with pytest.raises(gr.Error, match="known rows must be a whole number from 1 to 27"):
        run(handlers, k=k)
    with pytest.raises(gr.Error, match="known rows"):
        handlers.complete_api(None, k, "lstm")


def test_unknown_model_and_backend(handlers: Handlers) -> None:
    with pytest.raises(gr.Error, match=r"unknown model 'vae'.*lstm"):
        run(handlers, model="vae")
    with pytest.raises(gr.Error, match="not available"):
        run(handlers, backend="tensorrt")


def test_complete_api_handler(handlers: Handlers, tmp_path: Path) -> None:
    sample = handlers.gallery[0].image
    Image.fromarray(to_uint8(sample)).save(tmp_path / "s.png")
    out = np.asarray(Image.open(handlers.complete_api(str(tmp_path / "s.png"), 10, "gru")))
    assert out.shape == (28, 28) and out.dtype == np.uint8
    assert np.array_equal(out[:10], to_uint8(sample)[:10])


@pytest.mark.filterwarnings("ignore:::gradio.queueing")  # pandas deprecations inside gradio
def test_app_over_http_with_gradio_client(tiny_bundles: Path, tmp_path: Path, monkeypatch) -> None:
    from gradio_client import Client, handle_file

    peers: list[object] = []  # every address the server or the client connects to
    connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect", lambda s, a: (peers.append(a), connect(s, a))[1])
    demo = build_app(load_models(tiny_bundles, "cpu"))
    _, url, _ = launch(demo, port=free_port(), block=False)
    try:
        assert url.startswith("http://127.0.0.1:")
        client = Client(url, verbose=False)
        sample = to_uint8(load_gallery()[5].image)
        Image.fromarray(sample).save(tmp_path / "sample.png")
        path = client.predict(handle_file(str(tmp_path / "sample.png")), 12, "rnn",
                              api_name="/complete")  # fmt: skip
        with Image.open(path) as image:
            out = np.asarray(image.convert("L"))
        assert out.shape == (28, 28) and np.array_equal(out[:12], sample[:12])
        (tmp_path / "bad.png").write_text("nope")
        with pytest.raises(Exception, match="not an image"):
            client.predict(handle_file(str(tmp_path / "bad.png")), 12, "lstm", api_name="/complete")
        with pytest.raises(Exception, match="unknown model"):
            client.predict(handle_file(str(tmp_path / "sample.png")), 12, "nope",
                           api_name="/complete")  # fmt: skip
        with pytest.raises(Exception, match="whole number"):  # not rounded to 14 on the way
            client.predict(handle_file(str(tmp_path / "sample.png")), 14.5, "lstm",
                           api_name="/complete")  # fmt: skip
        again = client.predict(handle_file(str(tmp_path / "sample.png")), 12, api_name="/complete")
        assert Path(again).is_file()  # still serving after the bad requests
    finally:
        demo.close()
    hosts = {a[0] for a in peers if isinstance(a, tuple)}
    assert hosts and hosts <= {"127.0.0.1", "localhost", "::1"}, f"connections went to {hosts}"


def test_main_refuses_missing_bundles(tmp_path: Path, capsys) -> None:
    assert main(["--artifacts", str(tmp_path / "nothing-here")]) == 2
    err = capsys.readouterr().err
    assert "no bundles under" in err and "make train export" in err


def test_main_refuses_tampered_bundle(tiny_bundles: Path, tmp_path: Path, capsys) -> None:
    shutil.copytree(tiny_bundles / "gru", tmp_path / "gru")
    weights = tmp_path / "gru" / contract.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:-1] + b"\x00")
    assert main(["--artifacts", str(tmp_path)]) == 2
    assert "weights.safetensors" in capsys.readouterr().err
    manifest = json.loads((tmp_path / "gru" / contract.MANIFEST).read_text())
    del manifest["files"][contract.COMPLETE_ONNX]
    (tmp_path / "gru" / contract.MANIFEST).write_text(json.dumps(manifest))
    assert main(["--artifacts", str(tmp_path)]) == 2
    assert "complete.onnx" in capsys.readouterr().err


def test_main_device_cuda_without_gpu(tiny_bundles: Path, capsys) -> None:
    if CUDA in OrtModel(tiny_bundles / "rnn", "auto").providers:
        pytest.skip("CUDA works here")
    assert main(["--artifacts", str(tiny_bundles), "--device", "cuda"]) == 2
    assert "--device cuda" in capsys.readouterr().err


def test_identical_outputs_are_separate_files(tmp_path: Path) -> None:
    """gradio rewrites a cached array output in place; equal pictures must not share a file."""
    pngs = PngFiles()
    picture_ = np.full((28, 28), 7, np.uint8)
    first, second = pngs.write(picture_), pngs.write(picture_)
    assert first != second
    assert np.array_equal(np.asarray(Image.open(second)), picture_)
    pngs.close()


def test_default_model_is_the_best_by_its_own_test_metric(tiny_bundles: Path) -> None:
    models = load_models(tiny_bundles, "cpu")
    metrics = {"gru": 0.0301, "lstm": 0.0290, "rnn": None, "lstm-window": float("nan")}
    for name, mse in metrics.items():
        models.models[name].bundle.manifest["metrics"] = {"test_mse_k14": mse}
    assert models.best == "lstm"  # not the alphabetical first, gru
    del models.models["lstm"].bundle.manifest["metrics"]
    assert models.best == "gru"  # bundles without the metric come last
    demo = build_app(models)
    chooser = next(b for b in demo.blocks.values() if getattr(b, "label", None) == "Model")
    assert chooser.value == "gru"
