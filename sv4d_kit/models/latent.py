"""A latent space without pretrained weights: space-to-depth (pixel unshuffle), shaped like a diffusers VAE.

The tiny SV4D needs a latent space without pretrained weights. `SpaceToDepthAutoencoder` folds each f×f pixel
block into f²·3 channels; its `.encoder` returns the "moments" [latent, zeros] so that `encode_mode` takes the exact
mean, `.quant_conv` is None and `.decode(z).sample` unfolds the channels again, so the conditioner and
`decode_latents` treat it exactly like SV4D 2.0's VAE. `scaling_factor` and `shift_factor` map the unscaled latents
(pixels in [-1, 1]) to the ~zero-mean, unit-std space the diffusion preconditioning assumes:
`z = scaling_factor * (latent - shift_factor)`.

With `latent_channels` k < f²·3 the blocks are also projected onto k principal directions (a linear autoencoder:
`basis` and `center` buffers, fitted by `fit_projection` on rendered images, PCA). It is lossy, but it gives the
denoiser k noise channels to see through instead of f²·3: with 48 lossless channels and a 64-channel UNet the tiny
model cannot cancel the noise it is given at σ ≈ 0.3–2 (see BENCHMARKS.md, "pure-background tokens").
"""

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from sv4d_kit.checks import KitInputError, integer, number, positive


def check_latent_channels(latent_channels, block_channels: int) -> int | None:
    """`latent_channels` if it is None or an integer in [1, block_channels] (C·f²); else `KitInputError`."""
    if latent_channels is None:
        return None
    return integer("latent_channels", latent_channels, minimum=1, maximum=block_channels)


class SpaceToDepthEncoder(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> moments (B, 2k, H/f, W/f) = [z, zeros], z = pixel_unshuffle(x) (k = C·f²),
    or its projection `(z - center) @ basis` onto k principal directions when `latent_channels` is k."""

    def __init__(self, downsample_factor: int, in_channels: int = 3, latent_channels: int | None = None):
        super().__init__()
        self.downsample_factor = int(downsample_factor)
        n = in_channels * self.downsample_factor**2
        if latent_channels is None:
            self.register_buffer("center", None)
            self.register_buffer("basis", None)
        else:
            self.register_buffer("center", torch.zeros(n))  # (C·f²,)
            self.register_buffer("basis", torch.eye(n)[:, :latent_channels].clone())  # (C·f², k), orthonormal

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """Unshuffled blocks (B, C·f², h, w) -> coefficients (B, k, h, w) (the identity without a basis)."""
        if self.basis is None:
            return z
        return torch.einsum("bnhw,nk->bkhw", z - self.center.view(1, -1, 1, 1), self.basis)

    def unproject(self, z: torch.Tensor) -> torch.Tensor:
        """Coefficients (B, k, h, w) -> blocks (B, C·f², h, w) (the identity without a basis)."""
        if self.basis is None:
            return z
        return torch.einsum("bkhw,nk->bnhw", z, self.basis) + self.center.view(1, -1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.downsample_factor
        if x.ndim != 4 or x.shape[-1] % f or x.shape[-2] % f:
            raise KitInputError(f"x must be (B, C, H, W) with H and W divisible by {f}, got {tuple(x.shape)}")
        z = self.project(F.pixel_unshuffle(x, f))  # (B, C, H, W) -> (B, C*f*f, H/f, W/f) -> (B, k, H/f, W/f)
        return torch.cat([z, torch.zeros_like(z)], dim=1)  # (mean, "logvar") -> (B, 2k, H/f, W/f)


class SpaceToDepthAutoencoder(ModelMixin, ConfigMixin):
    """The tiny model's "VAE": pixel unshuffle / shuffle (exact, or through a fitted projection), no trained
    parameters.

    Config: `downsample_factor` f, `in_channels` (3), `scaling_factor` and `shift_factor` (sampler latents are
    `scaling_factor * (unshuffled pixels - shift_factor)`), `latent_channels` (None: all in_channels * f²
    channels, lossless; k: the top-k principal directions of the blocks, set by `fit_projection`).
    """

    @register_to_config
    def __init__(
        self,
        downsample_factor: int = 4,
        in_channels: int = 3,
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
        latent_channels: int | None = None,
    ):
        super().__init__()
        integer("downsample_factor", downsample_factor, minimum=1)
        integer("in_channels", in_channels, minimum=1)
        positive("scaling_factor", scaling_factor)
        check_latent_channels(latent_channels, in_channels * downsample_factor**2)
        self.encoder = SpaceToDepthEncoder(downsample_factor, in_channels, latent_channels)
        self.quant_conv = None
        # diffusers reads a model's dtype from its tensors and saves one weights file: one scalar buffer
        self.register_buffer("dtype_marker", torch.zeros(()))

    @property
    def num_latent_channels(self) -> int:
        """Channels of the latents: `latent_channels`, or in_channels * f² (lossless)."""
        c = self.config
        return c.latent_channels or c.in_channels * c.downsample_factor**2

    @torch.no_grad()
    def fit_projection(self, images: torch.Tensor, center: float | None = None) -> torch.Tensor:
        """Fit `center` and `basis` to images (N, C, H, W) in [-1, 1] by PCA of their f×f blocks; returns the
        variances of all C·f² principal directions (descending), so the kept share can be read off.

        `center` None centres the blocks on their mean (PCA). A number fixes the centre at that value in every
        channel and keeps the leading directions of the blocks' second moment about it: with the lossless latent's
        `shift_factor` there, the projected latent is exactly the lossless one projected onto the basis (same
        scale), which is what carrying a trained model into this latent space needs (`training.carry`)."""
        if self.encoder.basis is None:
            raise KitInputError(
                "fit_projection needs latent_channels (this latent space is the lossless one)"
            )
        f, k = self.config.downsample_factor, self.config.latent_channels
        blocks = F.pixel_unshuffle(images.float(), f).permute(0, 2, 3, 1)  # (N, h, w, C·f²)
        blocks = blocks.reshape(-1, blocks.shape[-1]).double()
        if center is None:
            middle = blocks.mean(0)
            moment = torch.cov((blocks - middle).T)
        else:
            middle = torch.full_like(blocks[0], float(number("center", center)))
            moment = (blocks - middle).T @ (blocks - middle) / len(blocks)
        variances, vectors = torch.linalg.eigh(moment)  # ascending
        variances, vectors = variances.flip(0), vectors.flip(1)
        # a fixed sign per direction: its largest entry is positive
        vectors = vectors * vectors.gather(0, vectors.abs().argmax(0, keepdim=True)).sign()
        self.encoder.center.copy_(middle.to(self.encoder.center.dtype))
        self.encoder.basis.copy_(vectors[:, :k].to(self.encoder.basis.dtype))
        return variances.float()

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> sampler latents (B, k, H/f, W/f), scaled and shifted."""
        z = self.encoder(x).chunk(2, dim=1)[0]
        return (z - self.config.shift_factor) * self.config.scaling_factor

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        """Unscaled latents (B, k, h, w) -> images (B, C, h*f, w*f) (`DecoderOutput.sample`)."""
        f, k = self.config.downsample_factor, self.num_latent_channels
        if z.ndim != 4 or z.shape[1] != k:
            raise KitInputError(f"z must be (B, {k}, h, w), got {tuple(z.shape)}")
        z = self.encoder.unproject(z)  # (B, k, h, w) -> (B, C*f*f, h, w)
        x = F.pixel_shuffle(z, f)  # (B, C*f*f, h, w) -> (B, C, h*f, w*f)
        return DecoderOutput(sample=x) if return_dict else (x,)
