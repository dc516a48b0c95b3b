"""Tests of the resumable checkpoints and of fine-tuning from an exported model folder (`init_from`)."""

from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from sv4d_kit import training
from sv4d_kit.checks import KitInputError
from sv4d_kit.pipeline import SV4DPipeline
from sv4d_kit.training.model import measure_sigma_data


def test_resume_reproduces_an_uninterrupted_run(tmp_path, small):
    config = training.TrainConfig(**small, steps=4, checkpoint_every=1)
    _, full = training.train(config, tmp_path / "full", progress=False)
    training.train(config, tmp_path / "split", progress=False, stop_at=2)
    assert not (tmp_path / "split" / "model").exists()
    assert sorted(p.name for p in (tmp_path / "split").iterdir()) == ["checkpoint", "config.json"]
    _, resumed = training.train(config, tmp_path / "split", progress=False, resume=True)
    assert len(full) == 4 and resumed == full
    a = load_file(tmp_path / "full" / "checkpoint" / "weights.safetensors")
    b = load_file(tmp_path / "split" / "checkpoint" / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "split" / "model" / "model_index.json").exists()


def test_a_save_interrupted_between_its_renames_resumes_from_the_previous_checkpoint(tmp_path, small):
    """Killed after moving `checkpoint` aside and before moving the new one in: `checkpoint.old` is the latest
    complete checkpoint, and resuming from it still reproduces the uninterrupted run."""
    config = training.TrainConfig(**small, steps=3, checkpoint_every=1)
    _, full = training.train(config, tmp_path / "full", progress=False)
    run = tmp_path / "split"
    training.train(config, run, progress=False, stop_at=2)
    (run / "checkpoint").rename(run / "checkpoint.old")  # the state a kill between the two renames leaves
    assert training.checkpoint.latest_checkpoint(run) == run / "checkpoint.old"
    _, resumed = training.train(config, run, progress=False, resume=True)
    assert resumed == full
    assert (
        not (run / "checkpoint.old").exists()
        and training.checkpoint.latest_checkpoint(run) == run / "checkpoint"
    )


def test_init_from_fine_tunes_an_exported_model_and_rejects_a_mismatch(tmp_path, small):
    config = training.TrainConfig(**small, steps=1, latent_channels=6, latent_shift=0.0)
    source = training.build_tiny_sv4d(config, seed=5)
    training.export(source, tmp_path / "source", fp16=False)
    tuned = replace(config, init_from=str(tmp_path / "source"), lr=1e-6, seed=0)
    pipe = training.build_tiny_sv4d(tuned)
    fresh = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    training.init_from_model(pipe, tuned.init_from)
    others = {"unet": source.unet, "clip": source.conditioner.clip, "vae": source.vae}
    for name, module in (("unet", pipe.unet), ("clip", pipe.conditioner.clip), ("vae", pipe.vae)):
        mine, theirs = module.state_dict(), others[name].state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), name
    assert torch.equal(pipe.conditioner.cond_view_encoder.encoder.basis, source.vae.encoder.basis)
    assert not all(torch.equal(fresh[k], v) for k, v in pipe.unet.state_dict().items())  # seeds differ
    # train() starts from the source: one step at a tiny learning rate stays next to it
    returned, _ = training.train(tuned, tmp_path / "run", progress=False)
    trained = load_file(tmp_path / "run" / "checkpoint" / "weights.safetensors")
    # the float16 export leaves the returned pipeline in float32, equal to the checkpoint
    assert all(torch.equal(trained[f"unet.{k}"], v) for k, v in returned.unet.state_dict().items())
    drift = max((trained[f"unet.{k}"] - v).abs().max().item() for k, v in source.unet.state_dict().items())
    assert 0 < drift < 1e-4
    assert training.TrainConfig.from_dict(tuned.to_dict()).init_from == str(tmp_path / "source")
    with pytest.raises(KitInputError, match="unet does not match"):
        training.init_from_model(
            training.build_tiny_sv4d(replace(config, model_channels=64)), tuned.init_from
        )
    with pytest.raises(KitInputError, match="latent space"):
        training.init_from_model(
            training.build_tiny_sv4d(replace(config, latent_channels=8)), tuned.init_from
        )
    with pytest.raises(KitInputError, match="not an exported model folder"):
        training.init_from_model(pipe, str(tmp_path))
    # train() checks init_from before it writes anything
    with pytest.raises(KitInputError, match="not an exported model folder"):
        training.train(replace(config, init_from=str(tmp_path / "nowhere")), tmp_path / "bad", progress=False)
    assert not (tmp_path / "bad").exists()


def test_resume_keeps_a_carried_latent_space_and_its_measured_sigma_data(tmp_path, small):
    """A run carried into a projected latent (fitted about the source's shift, not the mean) with sigma_data
    measured per channel resumes in that latent space with that sigma_data: the resumed run and its export are
    the uninterrupted run's."""
    source = training.build_tiny_sv4d(training.TrainConfig(**small, steps=1), seed=5)
    training.export(source, tmp_path / "source", fp16=False)
    config = training.TrainConfig(**small, steps=3, checkpoint_every=1, latent_channels=6, latent_shift=0.0,
                                  init_from=str(tmp_path / "source"), sigma_data="per_channel")  # fmt: skip
    full_pipe, full = training.train(config, tmp_path / "full", progress=False)
    sigma_data = full_pipe.config.sigma_data
    assert sigma_data == measure_sigma_data(full_pipe.vae, training.projection_images(config))
    assert len(sigma_data) == 6 and min(sigma_data) < 0.5 * max(sigma_data)
    fresh = training.build_tiny_sv4d(
        config
    )  # a projection fitted about the blocks' mean: another latent space
    assert not torch.equal(fresh.vae.encoder.center, full_pipe.vae.encoder.center)
    training.train(config, tmp_path / "split", progress=False, stop_at=1)
    resumed_pipe, resumed = training.train(config, tmp_path / "split", progress=False, resume=True)
    assert resumed == full and resumed_pipe.config.sigma_data == sigma_data
    assert torch.equal(resumed_pipe.vae.encoder.basis, full_pipe.vae.encoder.basis)
    exported = training.export_checkpoint(tmp_path / "split", tmp_path / "exported")
    loaded = SV4DPipeline.from_pretrained(exported)
    assert loaded.config.sigma_data == sigma_data
    torch.testing.assert_close(
        loaded.vae.encoder.center.float(), full_pipe.vae.encoder.center, atol=2e-3, rtol=0
    )
