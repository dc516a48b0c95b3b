"""Tests of exported model folders: export, export_checkpoint, sampling defaults, and the bundled tiny model."""

import json

import pytest
import torch
from safetensors.torch import load_file

from sv4d_kit import training
from sv4d_kit.checks import KitInputError
from sv4d_kit.models.bundled import TINY, model_folder
from sv4d_kit.pipeline import SV4DPipeline


def test_projected_latent_model_shares_one_projection_and_survives_export(tmp_path, small):
    config = training.TrainConfig(**small, steps=2, latent_channels=6, latent_shift=0.0)
    pipe = training.build_tiny_sv4d(config)
    again = training.build_tiny_sv4d(config)  # the fit is a pure function of the config
    assert torch.equal(pipe.vae.encoder.basis, again.vae.encoder.basis)
    assert pipe.unet.config.in_channels == 12 and pipe.unet.config.out_channels == 6
    for name in ("cond_frames_encoder", "cond_view_encoder", "cond_motion_encoder"):
        assert torch.equal(getattr(pipe.conditioner, name).encoder.basis, pipe.vae.encoder.basis)
    batch = training.make_batch(config, 0)
    loss = training.diffusion_loss(pipe, batch, config, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss)
    training.export(pipe, tmp_path / "m", fp16=False)
    loaded = SV4DPipeline.from_pretrained(tmp_path / "m")
    assert torch.equal(loaded.vae.encoder.basis, pipe.vae.encoder.basis)
    assert torch.equal(loaded.conditioner.cond_view_encoder.encoder.center, pipe.vae.encoder.center)
    out = loaded(torch.rand(2, 3, 16, 16), num_inference_steps=2, generator=torch.Generator().manual_seed(0),
                 progress=False)  # fmt: skip
    assert out.images.shape == (2, 3, 3, 16, 16) and torch.isfinite(out.images).all()


def test_export_checkpoint_and_sampling_defaults(tmp_path, small):
    config = training.TrainConfig(**small, steps=2, checkpoint_every=1)
    training.train(config, tmp_path / "run", progress=False, stop_at=1)  # a checkpoint, no export
    folder = training.export_checkpoint(tmp_path / "run")
    assert folder == tmp_path / "run" / "model" and not (folder / "training.json").exists()
    weights = load_file(tmp_path / "run" / "checkpoint" / "weights.safetensors")
    pipe = SV4DPipeline.from_pretrained(folder, torch_dtype=torch.float32)
    assert all(torch.equal(weights[f"unet.{k}"].half().float(), v) for k, v in pipe.unet.state_dict().items())
    # a finished run's folder carries its record, which notes sampling defaults set afterwards
    training.train(config, tmp_path / "run", progress=False)
    model = tmp_path / "run" / "model"
    assert training.set_sampling_defaults(model, {"num_inference_steps": 3, "sigma_min": 0.5}) == {
        "num_inference_steps": 3, "sigma_min": 0.5}  # fmt: skip
    assert SV4DPipeline.from_pretrained(model).sampling_options()["sigma_min"] == 0.5
    record = json.loads((model / "training.json").read_text())
    assert record["sampling_defaults_set_after_training"] == {"num_inference_steps": 3, "sigma_min": 0.5}
    assert record["config"]["sampling"] == config.sampling  # the run's own record is kept
    with pytest.raises(KitInputError, match="sampling keys"):
        training.set_sampling_defaults(model, {"sigmamin": 0.5})


def test_bundled_folder_is_small():
    with model_folder(TINY) as folder:
        assert (folder / "model_index.json").exists()
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert 0 < size <= 20 * 2**20


def test_bundled_weights_generate_a_finite_matrix():
    pipe = SV4DPipeline.from_pretrained(TINY)
    assert pipe.config.variant == "tiny" and pipe.unet.dtype == torch.float32
    S = pipe.config.image_size
    frames = torch.ones(2, 3, S, S)
    frames[:, :, S // 4 : -S // 4, S // 4 : -S // 4] = torch.tensor([0.8, 0.2, 0.2]).view(3, 1, 1)
    out = pipe(frames, elevations_deg=10.0, num_inference_steps=2, progress=False).images
    assert out.shape == (2, pipe.config.num_views + 1, 3, S, S)
    assert torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1
