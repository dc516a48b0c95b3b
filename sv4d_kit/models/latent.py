"""A lossless, parameter-free latent space: space-to-depth (pixel unshuffle), shaped like a diffusers VAE.

The tiny SV4D needs a latent space without pretrained weights. `SpaceToDepthAutoencoder` folds each f×f pixel
block into f²·3 channels; its `.encoder` returns the "moments" [latent, zeros] so that `encode_mode` takes the exact
mean, `.quant_conv` is None and `.decode(z).sample` unfolds the channels again, so the conditioner and
`decode_latents` treat it exactly like SV4D 2.0's VAE. `scaling_factor` and `shift_factor` map the unscaled latents
(pixels in [-1, 1]) to the ~zero-mean, unit-std space the diffusion preconditioning assumes:
`z = scaling_factor * (latent - shift_factor)`.
"""

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput
from diffusers.models.modeling_utils import ModelMixin
from torch import nn


class SpaceToDepthEncoder(nn.Module):
    """Images (B, C, H, W) in [-1, 1] -> moments (B, 2*C*f², H/f, W/f) = [pixel_unshuffle(x), zeros]."""

    def __init__(self, downsample_factor: int):
        super().__init__()
        self.downsample_factor = int(downsample_factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.downsample_factor
        if x.ndim != 4 or x.shape[-1] % f or x.shape[-2] % f:
            raise ValueError(f"x must be (B, C, H, W) with H and W divisible by {f}, got {tuple(x.shape)}")
        z = F.pixel_unshuffle(x, f)  # (B, C, H, W) -> (B, C*f*f, H/f, W/f)
        return torch.cat([z, torch.zeros_like(z)], dim=1)  # (mean, "logvar") -> (B, 2*C*f*f, H/f, W/f)


class SpaceToDepthAutoencoder(ModelMixin, ConfigMixin):
    """The tiny model's "VAE": exact pixel unshuffle / shuffle, no parameters.

    Config: `downsample_factor` f, `in_channels` (3), `scaling_factor` and `shift_factor` (sampler latents are
    `scaling_factor * (unshuffled pixels - shift_factor)`). Latents have in_channels * f² channels.
    """

    @register_to_config
    def __init__(
        self,
        downsample_factor: int = 4,
        in_channels: int = 3,
        scaling_factor: float = 1.0,
        shift_factor: float = 0.0,
    ):
        super().__init__()
        if (
            isinstance(downsample_factor, bool)
            or not isinstance(downsample_factor, int)
            or downsample_factor < 1
        ):
            raise ValueError(f"downsample_factor must be an integer >= 1, got {downsample_factor!r}")
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels!r}")
        if not scaling_factor > 0:
            raise ValueError(f"scaling_factor must be > 0, got {scaling_factor!r}")
        self.encoder = SpaceToDepthEncoder(downsample_factor)
        self.quant_conv = None
        # diffusers reads a model's dtype from its tensors and saves one weights file: one scalar buffer
        self.register_buffer("dtype_marker", torch.zeros(()))

    def encode_latents(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) in [-1, 1] -> sampler latents (B, C*f², H/f, W/f), scaled and shifted."""
        z = self.encoder(x).chunk(2, dim=1)[0]
        return (z - self.config.shift_factor) * self.config.scaling_factor

    def decode(self, z: torch.Tensor, return_dict: bool = True):
        """Unscaled latents (B, C*f², h, w) -> images (B, C, h*f, w*f) (`DecoderOutput.sample`)."""
        f = self.config.downsample_factor
        if z.ndim != 4 or z.shape[1] != self.config.in_channels * f * f:
            raise ValueError(f"z must be (B, {self.config.in_channels * f * f}, h, w), got {tuple(z.shape)}")
        x = F.pixel_shuffle(z, f)  # (B, C*f*f, h, w) -> (B, C, h*f, w*f)
        return DecoderOutput(sample=x) if return_dict else (x,)
