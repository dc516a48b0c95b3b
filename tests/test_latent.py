"""Tests of the tiny SV4D's latent space: space-to-depth, exact or through a fitted projection."""

import pytest
import torch

from sv4d_kit.checks import KitInputError
from sv4d_kit.models.autoencoder import decode_latents, encode_mode
from sv4d_kit.models.conditioner import SV4DConditioner
from sv4d_kit.models.latent import SpaceToDepthAutoencoder


def test_space_to_depth_round_trip_is_exact():
    vae = SpaceToDepthAutoencoder(4, scaling_factor=2.1, shift_factor=0.8)
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    raw = encode_mode(vae, x)  # the conditioner's path: unscaled posterior mean
    assert raw.shape == (3, 48, 8, 8)
    assert torch.equal(vae.decode(raw).sample, x)
    z = vae.encode_latents(x)  # the sampler's path: scaled and shifted
    torch.testing.assert_close(decode_latents(vae, z) * 2 - 1, x, atol=1e-6, rtol=0)
    assert sum(p.numel() for p in vae.parameters()) == 0


@pytest.mark.parametrize(
    "kwargs, field",
    [({"downsample_factor": 0}, "downsample_factor"), ({"downsample_factor": 2.0}, "downsample_factor"),
     ({"downsample_factor": True}, "downsample_factor"), ({"in_channels": 0}, "in_channels"),
     ({"scaling_factor": 0.0}, "scaling_factor"), ({"scaling_factor": float("inf")}, "scaling_factor")],
)  # fmt: skip
def test_space_to_depth_bad_values(kwargs, field):
    with pytest.raises(KitInputError, match=rf"^{field} must be"):
        SpaceToDepthAutoencoder(**kwargs)


def test_space_to_depth_rejects_images_it_cannot_fold():
    with pytest.raises(KitInputError, match="divisible"):
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
        with pytest.raises(KitInputError, match="^latent_channels must be"):
            SpaceToDepthAutoencoder(4, latent_channels=bad)
    with pytest.raises(KitInputError, match="fit_projection"):
        SpaceToDepthAutoencoder(4).fit_projection(images)
    with pytest.raises(KitInputError, match=r"z must be \(B, 5"):
        SpaceToDepthAutoencoder(4, latent_channels=5).decode(torch.zeros(1, 48, 8, 8))


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
    with pytest.raises(KitInputError, match="latent_type"):
        SV4DConditioner(latent_type="pixels")
