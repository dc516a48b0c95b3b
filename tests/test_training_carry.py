"""Tests of carrying a trained model from the lossless latent into a projected one (`training.carry`)."""

import pytest
import torch

from sv4d_kit import training
from sv4d_kit.checks import KitInputError
from sv4d_kit.models.latent import SpaceToDepthAutoencoder
from sv4d_kit.sampling import vscaling_edm_cnoise
from sv4d_kit.training.carry import carry_weights
from sv4d_kit.training.data import make_batch, projection_images


def test_projection_about_a_fixed_centre_is_the_lossless_latent_projected():
    images = torch.rand(6, 3, 16, 16) * 2 - 1
    lossless = SpaceToDepthAutoencoder(4, scaling_factor=2.1, shift_factor=0.8)
    projected = SpaceToDepthAutoencoder(4, scaling_factor=2.1, shift_factor=0.0, latent_channels=12)
    variances = projected.fit_projection(images, center=0.8)
    basis = projected.encoder.basis
    assert torch.allclose(projected.encoder.center, torch.full((48,), 0.8))
    assert torch.allclose(basis.T @ basis, torch.eye(12), atol=1e-5)
    assert (variances[:-1] >= variances[1:]).all()
    z48, z12 = lossless.encode_latents(images), projected.encode_latents(images)
    assert torch.allclose(z12, torch.einsum("bnhw,nk->bkhw", z48, basis), atol=1e-5)
    # the PCA centre is the mean instead: a different latent
    projected.fit_projection(images)
    assert not torch.allclose(projected.encoder.center, torch.full((48,), 0.8))


def test_carry_weights_reads_and_writes_latent_channels_through_the_basis():
    n, k = 6, 2
    basis = torch.linalg.qr(torch.randn(n, k, dtype=torch.float64))[0]
    conv_in = torch.randn(5, 2 * n, 3, 3, dtype=torch.float64)  # reads [noisy latent, input latent]
    conv_out = torch.randn(n, 5, 3, 3, dtype=torch.float64)
    bias_out = torch.randn(n, dtype=torch.float64)
    other = torch.randn(5, 5, dtype=torch.float64)
    weights = dict(conv_in=conv_in, conv_out=conv_out, bias_out=bias_out, other=other)
    shapes = dict(conv_in=(5, 2 * k, 3, 3), conv_out=(k, 5, 3, 3), bias_out=(k,), other=(5, 5))
    carried = carry_weights(weights, {a: torch.Size(s) for a, s in shapes.items()}, basis)
    x = torch.randn(2 * k, 8, 8, dtype=torch.float64)  # a projected input: the source sees B x, per half
    lifted = torch.cat([basis @ x[:k].flatten(1), basis @ x[k:].flatten(1)]).view(2 * n, 8, 8)
    conv = torch.nn.functional.conv2d
    assert torch.allclose(conv(x[None], carried["conv_in"]), conv(lifted[None], conv_in))
    h = torch.randn(1, 5, 8, 8, dtype=torch.float64)
    projected = torch.einsum("bnhw,nk->bkhw", conv(h, conv_out, bias_out), basis)
    assert torch.allclose(conv(h, carried["conv_out"], carried["bias_out"]), projected)
    assert torch.equal(carried["other"], other)
    with pytest.raises(KitInputError, match="cannot carry other"):
        carry_weights(weights, {"other": torch.Size((5, 4))}, basis)


def test_a_carried_model_predicts_the_source_model_projected(tmp_path, small):
    source_config = training.TrainConfig(**small, steps=2)
    source, _ = training.train(source_config, tmp_path / "source", progress=False)
    config = training.TrainConfig(**{**small, "latent_channels": 24, "latent_shift": 0.0,
                                     "latent_scale": source_config.latent_scale,
                                     "init_from": str(tmp_path / "source" / "model")})  # fmt: skip
    fresh = training.build_tiny_sv4d(config)
    pipe = training.build_tiny_sv4d(config)
    training.init_from_model(pipe, config.init_from, lambda: projection_images(config))
    basis, center = pipe.vae.encoder.basis, pipe.vae.encoder.center
    assert torch.equal(pipe.conditioner.cond_view_encoder.encoder.basis, basis)  # the conditioner shares it
    batch = make_batch(config, 0)
    lifts = dict(
        # the source sees the projected inputs: unscaled conditioner latents c + B z, the target B z (scaled)
        unscaled=lambda z: torch.einsum("bkhw,nk->bnhw", z, basis) + center.view(1, -1, 1, 1),
        scaled=lambda z: torch.einsum("bkhw,nk->bnhw", z, basis),
    )

    x0 = pipe.vae.encode_latents(batch.images[0, :, 1:].flatten(0, 1))  # (T*V, 24, 4, 4)
    noise = torch.randn(x0.shape, generator=torch.Generator().manual_seed(0))
    for sigma in (20.0, 1.0):
        c = pipe.conditioner(batch.images[0, :, 0], batch.images[0, 0, 1:], batch.polar[0], batch.azimuth[0],
                             generator=torch.Generator().manual_seed(1))  # fmt: skip
        s = torch.full((x0.shape[0], 1, 1, 1), sigma)
        _, _, c_in, c_noise = vscaling_edm_cnoise(s)
        x = x0 + s * noise
        args = (c_noise.flatten(), c["crossattn"], c["vector"])
        with torch.no_grad():
            mine = pipe.unet(torch.cat([x * c_in, c["concat"]], 1), *args, c["cond_view"])
            untrained = fresh.unet(torch.cat([x * c_in, c["concat"]], 1), *args, c["cond_view"])
            theirs = source.unet(torch.cat([lifts["scaled"](x) * c_in, lifts["unscaled"](c["concat"])], 1), *args,
                                 lifts["unscaled"](c["cond_view"]))  # fmt: skip
        theirs = torch.einsum("bnhw,nk->bkhw", theirs, basis)
        # equal but at the borders, where the zero padding of the input-view latent means u = 0 to the source and
        # u = c to the carried model (4x4 latents here: every pixel is near one)
        error, baseline = (mine - theirs).abs().mean(), (untrained - theirs).abs().mean()
        assert error < 0.5 * baseline, (sigma, error, baseline)
    with pytest.raises(KitInputError, match="latent_scale"):
        bad = training.TrainConfig(
            **{**small, "latent_channels": 24, "latent_shift": 0.0, "latent_scale": 1.0}
        )
        training.init_from_model(
            training.build_tiny_sv4d(bad), config.init_from, lambda: projection_images(bad)
        )
