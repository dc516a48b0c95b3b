"""Tests of the tiny SV4D's latent space, training loop, resume, config checks and the bundled weights."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sv4d_kit import training
from sv4d_kit.models.autoencoder import decode_latents, encode_mode
from sv4d_kit.models.conditioner import SV4DConditioner
from sv4d_kit.models.latent import SpaceToDepthAutoencoder

# A very small recipe: 16-pixel images, 2 frames x 2 views, 2 scenes per step (a projected latent space is
# fitted on 4 scenes).
SMALL = dict(image_size=16, frames=2, novel_azimuths_deg=(120.0, 240.0), model_channels=32, channel_mult=(1,),
             num_head_channels=32, context_dim=32, clip_width=32, clip_layers=1, batch_scenes=2, supersample=1,
             warmup_steps=0, lr=1e-3, static_fraction=0.5, threads=1, projection_scenes=4)  # fmt: skip


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


def _blocky_images(n=24, seed=0):
    """Images whose 4x4 blocks lie in a known 5-dim affine subspace: 5 block patterns, random mixing."""
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(5, 48, generator=g)
    blocks = patterns.T @ torch.randn(5, n * 64, generator=g) * 0.2 + 0.3  # (48, N*64)
    return torch.nn.functional.pixel_shuffle(blocks.T.reshape(n, 8, 8, 48).permute(0, 3, 1, 2), 4), patterns


def test_projected_latents_fit_the_principal_directions():
    images, patterns = _blocky_images()
    vae = SpaceToDepthAutoencoder(4, scaling_factor=2.0, latent_channels=5)
    variances = vae.fit_projection(images)
    assert variances.shape == (48,)
    assert torch.all(variances[5:] < 1e-8 * variances[0])  # 5 directions carry all the variance
    basis = vae.encoder.basis
    torch.testing.assert_close(basis.T @ basis, torch.eye(5), atol=1e-5, rtol=0)  # orthonormal
    # the basis spans the pattern space: projecting the patterns onto it changes nothing
    torch.testing.assert_close(patterns @ basis @ basis.T, patterns, atol=1e-4, rtol=0)
    # so these images round-trip (nearly) exactly through 5 channels
    z = vae.encode_latents(images)
    assert z.shape == (24, 5, 8, 8)
    torch.testing.assert_close(vae.decode(z / 2.0).sample, images, atol=1e-4, rtol=0)
    # a fresh image outside the subspace loses exactly its component orthogonal to the basis
    other = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    blocks = torch.nn.functional.pixel_unshuffle(other, 4).permute(0, 2, 3, 1).reshape(-1, 48)
    blocks = blocks - vae.encoder.center
    residual = blocks - blocks @ basis @ basis.T
    error = (vae.decode(encode_mode(vae, other)).sample - other).pow(2).sum()
    torch.testing.assert_close(error, residual.pow(2).sum(), atol=1e-3, rtol=1e-4)


def test_projected_latents_with_all_channels_are_lossless_and_bad_values_raise():
    images, _ = _blocky_images()
    vae = SpaceToDepthAutoencoder(4, latent_channels=48)
    vae.fit_projection(images)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    torch.testing.assert_close(vae.decode(encode_mode(vae, x)).sample, x, atol=1e-5, rtol=0)  # a rotation
    for bad in (0, 49, 2.5, True):
        with pytest.raises(ValueError, match="latent_channels"):
            SpaceToDepthAutoencoder(4, latent_channels=bad)
    with pytest.raises(ValueError, match="fit_projection"):
        SpaceToDepthAutoencoder(4).fit_projection(images)
    with pytest.raises(ValueError, match=r"z must be \(B, 5"):
        SpaceToDepthAutoencoder(4, latent_channels=5).decode(torch.zeros(1, 48, 8, 8))
    with pytest.raises(ValueError, match="latent_channels"):
        training.TrainConfig(latent_channels=49)


def test_projected_latent_model_shares_one_projection_and_survives_export(tmp_path):
    from sv4d_kit.pipeline import SV4DPipeline

    config = training.TrainConfig(**SMALL, steps=2, latent_channels=6, latent_shift=0.0)
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
     ("frames", 30), ("lr", -1.0), ("seed", -1), ("loss", "l3")],
)  # fmt: skip
def test_bad_config_raises(field, value):
    with pytest.raises(ValueError, match=field):
        training.TrainConfig(**{field: value})
    with pytest.raises(ValueError, match="unknown"):
        training.TrainConfig.from_dict({"stepz": 3})


def test_l2_is_minimised_by_the_mean_and_l1_by_the_median():
    # one pixel channel whose posterior is 70 % white background (1.0) and 30 % a red object's green channel (0.16):
    # the squared error's best constant is the blend (a tinted halo), the absolute error's is the background
    samples = torch.tensor([1.0] * 7 + [0.16] * 3)
    grid = torch.linspace(0, 1, 101)
    best = {kind: float(grid[torch.stack([training.regression_loss(c.expand(10), samples, kind) for c in grid])
                             .argmin()]) for kind in training.LOSSES}  # fmt: skip
    assert best["l2"] == pytest.approx(0.748, abs=0.006) and best["l1"] == 1.0
    with pytest.raises(ValueError, match="loss"):
        training.regression_loss(samples, samples, "huber")


@pytest.mark.parametrize(
    "latent",
    [{}, {"latent_channels": 24, "latent_shift": 0.0, "latent_scale": 1.44}, {"loss": "l1"}],
    ids=["lossless", "projected", "l1"],
)
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(latent):
    config = training.TrainConfig(**SMALL, **latent, steps=10)
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


def test_render_workers_give_the_same_run(tmp_path):
    config = training.TrainConfig(**SMALL, steps=3, checkpoint_every=1)
    ahead = list(training.batches(config, 1, 3, workers=2))
    assert all(torch.equal(b.images, training.make_batch(config, s).images) for b, s in zip(ahead, (1, 2)))
    assert len(ahead) == 2
    _, inline = training.train(config, tmp_path / "inline", progress=False)
    training.train(config, tmp_path / "split", progress=False, stop_at=1, workers=2)
    _, resumed = training.train(config, tmp_path / "split", progress=False, resume=True, workers=2)
    assert resumed == inline and len(inline) == 3
    summary = json.loads((tmp_path / "split" / "summary.json").read_text())
    assert summary["device"] == "cpu" and summary["data_workers"] == 2


def test_init_from_fine_tunes_an_exported_model_and_rejects_a_mismatch(tmp_path):
    config = training.TrainConfig(**SMALL, steps=1, latent_channels=6, latent_shift=0.0)
    source = training.build_tiny_sv4d(config, seed=5)
    training.export(source, tmp_path / "source", fp16=False)
    tuned = replace(config, init_from=str(tmp_path / "source"), lr=1e-6, seed=0)
    pipe = training.build_tiny_sv4d(tuned)
    fresh = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    training.init_from_model(pipe, tuned.init_from)
    for name, module in (("unet", pipe.unet), ("clip", pipe.conditioner.clip), ("vae", pipe.vae)):
        other = {"unet": source.unet, "clip": source.conditioner.clip, "vae": source.vae}[name]
        mine, theirs = module.state_dict(), other.state_dict()
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
    with pytest.raises(ValueError, match="unet does not match"):
        training.init_from_model(
            training.build_tiny_sv4d(replace(config, model_channels=64)), tuned.init_from
        )
    with pytest.raises(ValueError, match="latent space"):
        training.init_from_model(
            training.build_tiny_sv4d(replace(config, latent_channels=8)), tuned.init_from
        )
    with pytest.raises(ValueError, match="not an exported model folder"):
        training.init_from_model(pipe, str(tmp_path))
    with pytest.raises(ValueError, match="init_from"):
        training.TrainConfig(init_from=3)


def test_the_bundled_recipe_files_are_valid_configs():
    root = Path(__file__).resolve().parents[1]
    stage2 = json.loads((root / "recipes" / "tiny_finetune.json").read_text())
    config = training.TrainConfig.from_dict(stage2)
    assert config.init_from == "runs/tiny-base/model" and config.P_mean > training.TrainConfig().P_mean
    assert "runs/tiny-base" in (root / "Makefile").read_text()


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
    record = json.loads((run / "model" / "training.json").read_text())
    assert record["sampling_defaults_set_after_training"] == {"num_inference_steps": 3, "sigma_min": 0.5}
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
    # fine-tuning from an exported folder; a folder that is not one gets one line and leaves no output behind
    tuned = tmp_path / "tuned"
    args = ["train", "--output", str(tuned), "--steps", "1", "--config", str(cfg), "--no-progress"]
    assert cli.main(args + ["--init-from", str(run / "model")]) == 0
    summary = json.loads((tuned / "summary.json").read_text())
    assert summary["config"]["init_from"] == str(run / "model")
    assert summary["init_from_record"]["steps"] == 2  # the record of the weights it started from
    assert cli.main(args[:2] + [str(tmp_path / "c")] + args[3:] + ["--init-from", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an exported model folder" in err[0] and not (tmp_path / "c").exists()
    # a device torch cannot use and a negative worker count: one line each, exit 2, no output folder
    for extra, words in ((["--device", "tpu"], "--device must be"), (["--workers", "-1"], "must be >= 0")):
        assert cli.main(args[:2] + [str(tmp_path / "d")] + args[3:] + extra) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and words in err[0] and not (tmp_path / "d").exists()
    if not torch.cuda.is_available():
        assert cli.main(args[:2] + [str(tmp_path / "d")] + args[3:] + ["--device", "cuda"]) == 2
        assert "no CUDA device" in capsys.readouterr().err
