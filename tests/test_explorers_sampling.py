"""The sampling explorer (notebook 03): parsing what a learner typed, and the run button on a tiny random pipeline:
a good run moves "new" to "last", bad values show one `error:` line and keep both pictures, the bar fills up."""

import pytest
import torch

pytest.importorskip("ipywidgets", reason="the explorers need the notebooks extras (ipywidgets)")

from sv4d_kit.checks import KitInputError  # noqa: E402
from sv4d_kit.explorers.sampling import KEYS, parse_azimuths, parse_settings, sampling_explorer  # noqa: E402
from sv4d_kit.models.checkpoint import build_tiny_models  # noqa: E402
from sv4d_kit.pipeline import SV4DPipeline  # noqa: E402

SIZE = 64
GOOD = dict(steps=2, sigma_max=80.0, sigma_min=0.5, guider="linear", min_scale=1.0, max_scale=2.0, churn=0.0,
            seed=3, elevation=10.0, azimuths="0, 120, 240")  # fmt: skip


@pytest.fixture(scope="module")
def pipe():
    unet, cond, vae = build_tiny_models("sv4d2", seed=3)
    return SV4DPipeline(unet, cond, vae, variant="sv4d2", frames_per_chunk=3, num_views=2, image_size=SIZE)


@pytest.fixture(scope="module")
def frames():
    return torch.rand(4, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def test_parse_settings_gives_pipeline_kwargs():
    s = parse_settings(GOOD, num_views=2)
    assert set(s) == set(KEYS.values())
    assert s["num_inference_steps"] == 2 and s["azimuths_deg"] == [0.0, 120.0, 240.0]
    assert s["min_guidance"] == 1.0 and s["s_churn"] == 0.0 and s["elevations_deg"] == 10.0
    # typed text is read as numbers; an empty azimuth box means the model's defaults
    typed = parse_settings({**GOOD, "steps": " 12", "sigma_min": "0.002", "seed": "7", "azimuths": " "}, 2)
    assert typed["num_inference_steps"] == 12 and typed["sigma_min"] == 0.002 and typed["seed"] == 7
    assert typed["azimuths_deg"] is None
    assert parse_azimuths([0, 90.5], None) == [0.0, 90.5]


@pytest.mark.parametrize(
    "bad, words",
    [
        (dict(steps=0), "steps must be an integer in [1, 1000]"),
        (dict(steps="ten"), "steps"),
        (dict(steps=2.5), "steps"),
        (dict(sigma_min=80.0), "sigma_min < sigma_max"),
        (dict(sigma_min=90.0), "sigma_min < sigma_max"),
        (dict(sigma_max=-1.0), "sigma_max"),
        (dict(sigma_min=float("nan")), "sigma_min"),
        (dict(guider="fancy"), "guider"),
        (dict(max_scale=-2.0), "max_scale"),
        (dict(churn="lots"), "churn"),
        (dict(elevation=120.0), "elevation"),
        (dict(azimuths="0, 120"), "azimuths must hold 3"),
        (dict(azimuths="0, 120, 240, 300"), "azimuths must hold 3"),
        (dict(azimuths="0, north, 240"), "azimuths[1]"),
    ],
)
def test_parse_settings_rejects_bad_values(bad, words):
    with pytest.raises(KitInputError, match=None) as e:
        parse_settings({**GOOD, **bad}, num_views=2)
    message = str(e.value)
    assert words in message and "\n" not in message


def test_parse_settings_names_unknown_and_missing_controls():
    with pytest.raises(KitInputError, match="unknown"):
        parse_settings({**GOOD, "cfg": 3}, 2)
    with pytest.raises(KitInputError, match="missing"):
        parse_settings({k: v for k, v in GOOD.items() if k != "seed"}, 2)


def test_run_button_moves_new_to_last_and_keeps_both_on_bad_input(pipe, frames):
    ex = sampling_explorer(pipe, frames, run_first=False)
    assert ex.new_image.value == b"" and ex.last_image.value == b""
    assert ex.num_chunks == 2  # 4 frames in chunks of 3: the second realigned to end on the last frame
    ex.set_values(**GOOD)
    ex.button.click()  # the handler the button calls
    first = bytes(ex.new_image.value)
    assert first.startswith(b"\x89PNG") and ex.last_image.value == b""
    assert ex.message.value.startswith("ok") and ex.result.images.shape == (4, 3, 3, SIZE, SIZE)
    assert ex.progress.value == ex.progress.max == 2 * 2  # steps x chunks, every step reported once
    assert "2 steps" in ex.new_caption.value

    ex.set_values(steps=3, seed=4)
    assert ex.run() is None
    second = bytes(ex.new_image.value)
    assert ex.last_image.value == first and second != first and second.startswith(b"\x89PNG")
    assert ex.progress.value == ex.progress.max == 3 * 2
    assert ex.last_settings["num_inference_steps"] == 2 and ex.settings["num_inference_steps"] == 3
    assert "2 steps" in ex.last_caption.value and "3 steps" in ex.new_caption.value

    for bad in (dict(steps=0), dict(sigma_min=100.0), dict(azimuths="0, 90"), dict(azimuths="a, b, c")):
        ex.set_values(**{**GOOD, "steps": 3, "seed": 4, **bad})
        ex.button.click()
        error = ex.message.value
        assert error.startswith("error: ") and "\n" not in error, error
        assert ex.run() == error
        assert ex.new_image.value == second and ex.last_image.value == first
        assert ex.settings["num_inference_steps"] == 3


def test_same_settings_same_grid_and_error_from_the_pipeline(pipe, frames):
    ex = sampling_explorer(pipe, frames[0], seed=3, num_inference_steps=1)
    assert ex.values()["steps"] == 1 and ex.values()["seed"] == 3  # starts at the given sampling defaults
    assert ex.result is not None and ex.num_chunks == 1  # one frame: a still clip of one chunk
    first = ex.result.images
    assert ex.run() is None and torch.equal(ex.result.images, first)
    # a value only the pipeline checks (the settings passed directly) still gives the one line, not a traceback
    kept = bytes(ex.new_image.value)
    error = ex.run({**ex.settings, "guider": "fancy"})
    assert error.startswith("error: guider") and ex.new_image.value == kept
