"""Tests of `training.TrainConfig`: its checks, its round trip through JSON, and the recipe files."""

import json
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest

from sv4d_kit import training
from sv4d_kit.checks import KitInputError
from sv4d_kit.models.bundled import TINY, model_folder

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "field, value",
    [("steps", 0), ("steps", 2.0), ("steps", True), ("image_size", 20), ("P_std", 0.0), ("p_uncond", 1.5),
     ("elevation_range_deg", (30, 10)), ("elevation_range_deg", (0, 100)), ("elevation_range_deg", (0,)),
     ("novel_azimuths_deg", ()), ("novel_azimuths_deg", ("a",)), ("novel_azimuths_deg", 72.0),
     ("channel_mult", (1, 0)), ("frames", 30), ("lr", -1.0), ("lr", float("inf")), ("P_mean", float("nan")),
     ("seed", -1), ("loss", "l3"), ("weight_decay", -0.1), ("grad_clip", 0), ("latent_channels", 49),
     ("latent_channels", 2.0), ("init_from", 3), ("sigma_data", 0.0), ("sigma_data", "per_chanel"),
     ("sigma_data", True), ("sigma_data", [1.0])],
)  # fmt: skip
def test_bad_config_raises(field, value):
    with pytest.raises(KitInputError, match=rf"^{field}\b"):
        training.TrainConfig(**{field: value})


def test_unknown_keys_raise():
    with pytest.raises(KitInputError, match="unknown training config keys"):
        training.TrainConfig.from_dict({"stepz": 3})


@pytest.mark.parametrize(
    ("sampling", "message"),
    [
        ({"steps": 6}, r"unknown sampling keys \['steps'\]"),
        ({"num_inference_steps": 0}, r"sampling\.num_inference_steps must be an integer >= 1, got 0"),
        ({"num_inference_steps": 2.5}, r"sampling\.num_inference_steps must be an integer"),
        ({"num_inference_steps": "6"}, r"sampling\.num_inference_steps must be an integer"),
        ({"sigma_min": -1.0}, r"sampling\.sigma_min must be a finite number > 0"),
        ({"sigma_max": 0}, r"sampling\.sigma_max must be a finite number > 0"),
        ({"sigma_min": 80.0, "sigma_max": 20.0}, r"need sampling\.sigma_min < sampling\.sigma_max, got 80 and 20"),
        ({"sigma_min": 20.0, "sigma_max": 20.0}, r"need sampling\.sigma_min < sampling\.sigma_max"),
        ({"sigma_min": 800.0}, r"sampling\.sigma_min must be < the reference's sigma_max 700"),
        ({"sigma_max": 0.001}, r"sampling\.sigma_max must be > the reference's sigma_min 0\.002"),
        ({"guider": "magic"}, r"sampling\.guider must be one of linear, spatiotemporal"),
        ({"sampler": "dpm"}, r"sampling\.sampler must be one of euler, heun, got 'dpm'"),
        ({"min_guidance": -0.5}, r"sampling\.min_guidance must be a finite number >= 0"),
        ({"max_guidance": -1}, r"sampling\.max_guidance must be"),
        ({"max_guidance": "high"}, r"sampling\.max_guidance must be"),
        ({"rho": 0}, r"sampling\.rho must be"),
        ("fast", r"sampling must be a dict of sampler settings"),
        (None, r"sampling must be a dict of sampler settings"),
    ],
)  # fmt: skip
def test_bad_sampling_raises_one_line(sampling, message):
    """The sampling defaults the export writes are checked as the pipeline will read them, when the config is made."""
    with pytest.raises(KitInputError, match=rf"^{message}") as info:
        training.TrainConfig.from_dict({"sampling": sampling})
    assert "\n" not in str(info.value)


def test_good_sampling_is_normalised():
    sampling = {"num_inference_steps": np.int64(4), "sigma_max": 80, "sigma_min": 55, "sampler": "heun",
                "guider": "none"}  # fmt: skip
    config = training.TrainConfig(sampling=sampling)
    assert config.sampling == {"num_inference_steps": 4, "sigma_max": 80.0, "sigma_min": 55.0, "sampler": "heun",
                               "guider": "none"}  # fmt: skip
    assert type(config.sampling["num_inference_steps"]) is int and type(config.sampling["sigma_max"]) is float
    assert training.TrainConfig(sampling={}).sampling == {}  # the pipeline's reference defaults then


@pytest.mark.parametrize(
    ("values", "message"),
    [({"stepz": 3}, "unknown training config keys"), ({"steps": "100"}, "steps must be an integer"),
     ({"lr": "fast"}, "lr must be a finite number"), ({"channel_mult": 2}, "channel_mult must be a list"),
     ({"loss": "huber"}, "loss must be one of l2, l1"), ({"p_uncond": -0.1}, "p_uncond must be"),
     ({"batch_scenes": 0}, "batch_scenes must be an integer >= 1")],
)  # fmt: skip
def test_bad_json_values_raise_one_line(values, message):
    """What `sv4d-kit train --config` reads (JSON: strings, lists, numbers) gets one line naming the key."""
    with pytest.raises(KitInputError, match=f"^{message}") as info:
        training.TrainConfig.from_dict(values)
    assert "\n" not in str(info.value)


def test_config_normalises_its_values_and_survives_json():
    config = training.TrainConfig(steps=np.int64(7), novel_azimuths_deg=[90, 180], channel_mult=[1, 2],
                                  image_size=32, init_from="tiny")  # fmt: skip
    assert type(config.steps) is int and config.novel_azimuths_deg == (90.0, 180.0)
    assert config.channel_mult == (1, 2) and config.elevation_range_deg == (0.0, 20.0)
    again = training.TrainConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config


def _recipe(name: str) -> dict:
    return json.loads((ROOT / "recipes" / name).read_text())


def _bundled_record() -> dict:
    with model_folder(TINY) as folder:
        return json.loads((folder / "training.json").read_text())


def test_stage_1_recipe_is_what_the_bundled_model_started_from():
    """recipes/tiny_base.json sets every field, and each field the record of stage 1 has is what it used."""
    recipe = _recipe("tiny_base.json")
    assert list(recipe) == [f.name for f in fields(training.TrainConfig)]
    record = _bundled_record()["init_from_record"]["config"]
    differ = {k: (recipe[k], v) for k, v in record.items() if recipe.get(k, "missing") != v}
    assert not differ, differ
    # the fields added after stage 1 ran hold the values that reproduce it
    assert {k: recipe[k] for k in set(recipe) - set(record)} == dict(
        latent_channels=None,
        projection_scenes=48,
        loss="l2",
        init_from=None,
        world="patterned",
        sigma_data=None,
    )
    config = training.TrainConfig.from_dict(recipe)
    assert config.to_dict() == {**training.TrainConfig().to_dict(), "sampling": record["sampling"]}
    assert "--config recipes/tiny_base.json" in (ROOT / "Makefile").read_text()


def test_stage_2_recipe_is_what_made_the_bundled_model():
    """recipes/tiny_finetune.json on the defaults is the bundled run's config, but for where stage 1's export was
    (init_from) and the sampling defaults, set on the exported folder after training."""
    recipe = _recipe("tiny_finetune.json")
    config = training.TrainConfig.from_dict(recipe).to_dict()
    record = _bundled_record()
    assert config.keys() - {"world", "sigma_data"} == record["config"].keys()  # fields added later
    assert (config["world"], config["sigma_data"]) == ("patterned", None)
    differ = {k: (config[k], v) for k, v in record["config"].items() if config[k] != v}
    assert differ.keys() == {"init_from", "sampling"}, differ
    assert (
        recipe["init_from"] == "runs/tiny-base/model"
        and "--output runs/tiny-base " in (ROOT / "Makefile").read_text()
    )
    assert config["sampling"] == record["sampling_defaults_set_after_training"]


def test_gpu_recipe_is_a_valid_config():
    config = training.TrainConfig.from_dict(_recipe("tiny_gpu_finetune.json"))
    assert config.init_from == TINY and config.P_mean > training.TrainConfig().P_mean


def test_projected_recipe_carries_the_bundled_model():
    """recipes/tiny_projected.json (run 15, issue #20) is run 15's config, but for where it found the bundled model,
    and carries the bundled lossless latent into a projected one at its scale."""
    recipe = _recipe("tiny_projected.json")
    config = training.TrainConfig.from_dict(recipe)
    record = _bundled_record()["config"]
    assert config.init_from == TINY and record["latent_channels"] is None
    assert (config.latent_channels, config.latent_shift, config.latent_scale) == (
        24,
        0.0,
        record["latent_scale"],
    )
    assert config.sampling["sigma_min"] <= 0.05 and config.sampling["num_inference_steps"] >= 10
    assert "--config recipes/tiny_projected.json" in (ROOT / "Makefile").read_text()


def test_simple_world_recipe_carries_the_bundled_model_into_the_simple_world():
    """recipes/tiny_simple.json (run 16, issue #20): the bundled model carried into a projected latent and trained
    on the simple world down to σ ≈ 0."""
    config = training.TrainConfig.from_dict(_recipe("tiny_simple.json"))
    record = _bundled_record()["config"]
    assert config.init_from == TINY and record["latent_channels"] is None and "world" not in record
    assert (config.world, config.latent_channels, config.latent_shift, config.loss) == (
        "simple",
        24,
        0.0,
        "l2",
    )
    assert config.latent_scale == record["latent_scale"]
    assert config.sampling["sigma_min"] <= 0.05 and config.sampling["num_inference_steps"] >= 10
    assert "--config recipes/tiny_simple.json" in (ROOT / "Makefile").read_text()


def test_sigma_data_recipe_is_the_simple_world_recipe_with_per_channel_sigma_data():
    """recipes/tiny_simple_sigma_data.json (run 18, issue #20): run 16's recipe, but the V-scaling's sigma_data
    measured per latent channel, and 2000 steps."""
    simple, ours = _recipe("tiny_simple.json"), _recipe("tiny_simple_sigma_data.json")
    assert {k: v for k, v in ours.items() if k not in ("sigma_data", "steps")} == {
        k: v for k, v in simple.items() if k != "steps"
    }
    config = training.TrainConfig.from_dict(ours)
    assert (config.sigma_data, config.steps, training.TrainConfig().sigma_data) == ("per_channel", 2000, None)
    assert "--config recipes/tiny_simple_sigma_data.json" in (ROOT / "Makefile").read_text()
