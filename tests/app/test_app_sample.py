"""The app's "mean / sample" choice and the `/complete` endpoint's sampling options."""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from rowgen import contract
from rowgen.pictures import to_uint8
from rowgen.sampling import draw_noise
from serve.app.gallery import load_gallery
from serve.app.handlers import GALLERY, MEAN, SAMPLE, Handlers, picture
from serve.app.layout import build_app, free_port, launch
from serve.runtime import load_models
from tests.conftest import TINY_SAMPLER


@pytest.fixture(scope="module")
def handlers(tiny_sampler_bundles: Path) -> Handlers:
    return Handlers(load_models(tiny_sampler_bundles, "cpu"), load_gallery())


def run(handlers: Handlers, model: str = TINY_SAMPLER, k: object = 14, mode: str = SAMPLE,
        samples: object = 3, temperature: object = 1.0, seed: object = 5) -> list:  # fmt: skip
    frames = handlers.stream(
        GALLERY, 2, None, None, False, k, model, "onnxruntime", mode, samples, temperature, seed
    )
    return [np.asarray(Image.open(png)) for png, _ in frames]


def test_samples_stream_side_by_side_and_repeat_for_a_seed(handlers: Handlers) -> None:
    frames = run(handlers, k=20)
    assert len(frames) == contract.IMAGE_SIZE - 20 + 1  # the known rows, then each new row
    original = handlers.gallery[2].image
    model = handlers.models.get(TINY_SAMPLER)
    noise = draw_noise(5, 3, model.config.noise_dim)
    want = model.sample(np.repeat(original[None], 3, 0), np.full(3, 20), noise, np.ones(3))
    mean = model.complete(original[None], np.array([20]))  # shown first, beside the samples
    shown = np.concatenate([mean, want])
    assert np.array_equal(frames[-1], picture(original, shown, 20, contract.IMAGE_SIZE))
    assert frames[0].shape == frames[-1].shape == (112, 6 * 112 + 5 * 6, 3)  # 2 + 1 + 3 panels
    assert np.array_equal(run(handlers, k=20)[-1], frames[-1]), "same seed, other samples"
    assert not np.array_equal(run(handlers, k=20, seed=6)[-1], frames[-1])


def test_temperature_zero_ignores_the_seed(handlers: Handlers) -> None:
    cold = [run(handlers, temperature=0, seed=s)[-1] for s in (1, 2)]
    assert np.array_equal(cold[0], cold[1])


def test_mean_mode_is_unchanged_on_a_stochastic_model(handlers: Handlers) -> None:
    frames = run(handlers, mode=MEAN, k=20)
    original = handlers.gallery[2].image
    done = handlers.models.get(TINY_SAMPLER).complete(original[None], np.array([20]))[0]
    assert np.array_equal(frames[-1], picture(original, done, 20, contract.IMAGE_SIZE))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"samples": 9}, "samples must be a whole number from 1 to 8"),
        ({"samples": 1.5}, "samples must be a whole number"),
        ({"temperature": 2.5}, "temperature must be a number from 0.0 to 2.0"),
        ({"temperature": "hot"}, "temperature must be"),
        ({"seed": -1}, "seed must be a whole number"),
        ({"model": "gru"}, "'gru' gives only the mean.*lstm-cvae"),
    ],
)
def test_bad_sampling_options_are_named(handlers: Handlers, options: dict, message: str) -> None:
    with pytest.raises(gr.Error, match=message):
        run(handlers, **options)


def test_complete_api_samples(handlers: Handlers, tmp_path: Path) -> None:
    sample = handlers.gallery[0].image
    Image.fromarray(to_uint8(sample)).save(tmp_path / "s.png")
    path = str(tmp_path / "s.png")
    out = np.asarray(Image.open(handlers.complete_api(path, 10, TINY_SAMPLER, SAMPLE, 4, 1.0, 3)))
    assert out.shape == (28, 4 * 28)
    for i in range(4):
        assert np.array_equal(out[:10, 28 * i : 28 * (i + 1)], to_uint8(sample)[:10])
    again = Image.open(handlers.complete_api(path, 10, TINY_SAMPLER, SAMPLE, 4, 1.0, 3))
    assert np.array_equal(np.asarray(again), out)
    with pytest.raises(gr.Error, match="mode must be"):
        handlers.complete_api(path, 10, TINY_SAMPLER, "median")


@pytest.mark.filterwarnings("ignore:::gradio.queueing")  # pandas deprecations inside gradio
def test_complete_endpoint_samples_over_http(tiny_sampler_bundles: Path, tmp_path: Path) -> None:
    from gradio_client import Client, handle_file

    demo = build_app(load_models(tiny_sampler_bundles, "cpu"))
    _, url, _ = launch(demo, port=free_port(), block=False)
    try:
        client = Client(url, verbose=False)
        picture_in = to_uint8(load_gallery()[5].image)
        Image.fromarray(picture_in).save(tmp_path / "in.png")
        image = handle_file(str(tmp_path / "in.png"))
        got = [
            np.asarray(Image.open(client.predict(
                image, 12, TINY_SAMPLER, SAMPLE, 2, 1.0, seed, api_name="/complete"
            )).convert("L"))
            for seed in (4, 4, 9)
        ]  # fmt: skip
        assert got[0].shape == (28, 56) and np.array_equal(got[0], got[1])
        assert not np.array_equal(got[0], got[2])
        mean = client.predict(image, 12, TINY_SAMPLER, api_name="/complete")  # defaults: mean
        assert np.asarray(Image.open(mean)).shape == (28, 28)
    finally:
        demo.close()
