"""Tests of the tiny SV4D's latent space, training loop, resume, config checks and the bundled weights."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sv4d_kit import training
from sv4d_kit.models.autoencoder import decode_latents, encode_mode
from sv4d_kit.models.conditioner import SV4DConditioner
from sv4d_kit.models.latent import SpaceToDepthAutoencoder

# A very small recipe: 16-pixel images, 2 frames x 2 views, 2 scenes per step.
SMALL = dict(image_size=16, frames=2, novel_azimuths_deg=(120.0, 240.0), model_channels=32, channel_mult=(1,),
             num_head_channels=32, context_dim=32, clip_width=32, clip_layers=1, batch_scenes=2, supersample=1,
             warmup_steps=0, lr=1e-3, static_fraction=0.5, threads=1)  # fmt: skip


def test_space_to_depth_round_trip_is_exact():
    vae = SpaceToDepthAutoencoder(4, scaling_factor=2.1, shift_factor=0.8)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    raw = encode_mode(vae, x)  # the conditioner's path: unscaled posterior mean
    assert raw.shape == (3, 48, 8, 8)
    assert torch.equal(vae.decode(raw).sample, x)
    z = vae.encode_latents(x)  # the sampler's path: scaled and shifted
    torch.testing.assert_close(decode_latents(vae, z) * 2 - 1, x, atol=1e-6, rtol=0)
    assert sum(p.numel() for p in vae.parameters()) == 0


def test_space_to_depth_bad_values():
    with pytest.raises(ValueError, match="downsample_factor"):
        SpaceToDepthAutoencoder(0)
    with pytest.raises(ValueError, match="scaling_factor"):
        SpaceToDepthAutoencoder(4, scaling_factor=0.0)
    with pytest.raises(ValueError, match="divisible"):
        SpaceToDepthAutoencoder(4).encoder(torch.zeros(1, 3, 30, 30))


def test_conditioner_space_to_depth_encoders_are_parameter_free():
    cond = SV4DConditioner(
        clip_config=dict(image_size=16, patch_size=8, width=32, layers=1, head_width=16, embed_dim=32),
        sigma_embed_dim=32, angle_embed_dim=48, latent_type="space_to_depth", downsample_factor=4,
    )  # fmt: skip
    assert all(n.startswith("clip.") for n, _ in cond.named_parameters())
    motion, view = torch.rand(2, 3, 16, 16) * 2 - 1, torch.rand(3, 3, 16, 16) * 2 - 1
    c = cond(motion, view, torch.zeros(6), torch.zeros(6))
    assert c["concat"].shape == (6, 48, 4, 4) and c["cond_view"].shape == (3, 48, 4, 4)
    torch.testing.assert_close(
        c["cond_motion"], torch.nn.functional.pixel_unshuffle(motion, 4), atol=1e-4, rtol=0
    )
    with pytest.raises(ValueError, match="latent_type"):
        SV4DConditioner(latent_type="pixels")


@pytest.mark.parametrize(
    "field, value",
    [("steps", 0), ("image_size", 20), ("P_std", 0.0), ("p_uncond", 1.5), ("elevation_range_deg", (30, 10)),
     ("frames", 30), ("lr", -1.0), ("seed", -1)],
)  # fmt: skip
def test_bad_config_raises(field, value):
    with pytest.raises(ValueError, match=field):
        training.TrainConfig(**{field: value})
    with pytest.raises(ValueError, match="unknown"):
        training.TrainConfig.from_dict({"stepz": 3})


def test_a_few_steps_on_a_fixed_batch_lower_the_loss():
    config = training.TrainConfig(**SMALL, steps=10)
    pipe = training.build_tiny_sv4d(config)
    assert not pipe.unet.config.use_3d_attention  # view attention across the V views (8-view layout)
    batch = training.make_batch(config, step=7)
    assert batch.images.shape == (2, 2, 3, 3, 16, 16) and batch.polar.shape == (2, 4)
    params = [p for m in (pipe.unet, pipe.conditioner.clip) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    losses = []
    for _ in range(8):
        loss = training.diffusion_loss(pipe, batch, config, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_batches_are_deterministic_and_progressive():
    config = training.TrainConfig(**SMALL, steps=10)
    a, b = training.make_batch(config, 3), training.make_batch(config, 3)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, training.make_batch(config, 4).images)
    assert a.static.all()  # the first half of the steps: static orbits only
    assert torch.equal(a.images[:, 0], a.images[:, 1])  # a static scene looks the same at every frame


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    config = training.TrainConfig(**SMALL, steps=4, checkpoint_every=1)
    _, full = training.train(config, tmp_path / "full", progress=False)
    training.train(config, tmp_path / "split", progress=False, stop_at=2)
    assert not (tmp_path / "split" / "model").exists()
    _, resumed = training.train(config, tmp_path / "split", progress=False, resume=True)
    assert resumed == full and len(full) == 4
    a = load_file(tmp_path / "full" / "checkpoint" / "weights.safetensors")
    b = load_file(tmp_path / "split" / "checkpoint" / "weights.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert (tmp_path / "split" / "model" / "model_index.json").exists()


def test_bundled_folder_is_small():
    folder = Path(training.__file__).parent / "assets" / training.TINY_ASSET
    assert (folder / "model_index.json").exists()
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    assert size <= 20 * 2**20


def test_bundled_weights_generate_a_finite_matrix():
    pipe = training.load_tiny_pipeline()
    assert pipe.config.variant == "tiny" and pipe.unet.dtype == torch.float32
    S = pipe.config.image_size
    frames = torch.ones(2, 3, S, S)
    frames[:, :, S // 4 : -S // 4, S // 4 : -S // 4] = torch.tensor([0.8, 0.2, 0.2]).view(3, 1, 1)
    out = pipe(frames, elevations_deg=10.0, num_inference_steps=2, progress=False).images
    assert out.shape == (2, pipe.config.num_views + 1, 3, S, S)
    assert torch.isfinite(out).all() and 0 <= out.min() and out.max() <= 1


def test_cli_train_runs_resumes_and_rejects_bad_input(tmp_path, capsys):
    import json

    from sv4d_kit import cli

    cfg = tmp_path / "small.json"
    cfg.write_text(json.dumps({**SMALL, "checkpoint_every": 1}))
    run = tmp_path / "run"
    assert (
        cli.main(["train", "--output", str(run), "--steps", "2", "--config", str(cfg), "--no-progress"]) == 0
    )
    assert (run / "model" / "model_index.json").exists() and (run / "model" / "training.json").exists()
    assert json.loads((run / "summary.json").read_text())["steps"] == 2
    training.set_sampling_defaults(run / "model", {"num_inference_steps": 3, "sigma_min": 0.5})
    from sv4d_kit.pipeline import SV4DPipeline

    assert SV4DPipeline.from_pretrained(run / "model").sampling_options()["sigma_min"] == 0.5
    with pytest.raises(ValueError, match="sampling keys"):
        training.set_sampling_defaults(run / "model", {"sigmamin": 0.5})
    # a non-empty folder needs --resume or --overwrite
    assert cli.main(["train", "--output", str(run), "--steps", "2", "--config", str(cfg)]) == 2
    assert "--resume" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"P_std": -1}))
    assert cli.main(["train", "--output", str(tmp_path / "b"), "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "P_std" in err[0]
