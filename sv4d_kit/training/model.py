"""The tiny SV4D model: `build_tiny_sv4d` makes a freshly initialised `SV4DPipeline` from a `TrainConfig`.

Latents live in the parameter-free space-to-depth space (`SpaceToDepthAutoencoder`; with `latent_channels` k,
projected onto the k leading principal directions of the blocks, fitted on rendered scenes when the model is
built); a small CLIP-shaped image tower is trained jointly from scratch with the UNet.
"""

from __future__ import annotations

import torch

from sv4d_kit.models.checkpoint import tiny_configs
from sv4d_kit.models.conditioner import SV4DConditioner
from sv4d_kit.models.latent import SpaceToDepthAutoencoder
from sv4d_kit.models.unet import SV4DUNet
from sv4d_kit.training.config import TrainConfig
from sv4d_kit.training.data import projection_images


def build_tiny_sv4d(config: TrainConfig, seed: int | None = None):
    """The tiny SV4D as an `SV4DPipeline` (variant "tiny"): 8-view-layout UNet (view attention across the V views),
    a small CLIP-shaped image tower and the space-to-depth latent space, freshly initialised from `seed`."""
    from sv4d_kit.pipeline import SV4DPipeline

    torch.manual_seed(config.seed if seed is None else seed)
    f = config.downsample_factor
    vae = SpaceToDepthAutoencoder(f, scaling_factor=config.latent_scale, shift_factor=config.latent_shift,
                                  latent_channels=config.latent_channels)  # fmt: skip
    if config.latent_channels is not None:
        vae.fit_projection(projection_images(config))
    latent = vae.num_latent_channels
    mc = config.model_channels
    unet_params = dict(tiny_configs("sv4d2_8views", mc, config.context_dim)["unet"])
    unet_params.update(
        in_channels=2 * latent, out_channels=latent, motion_context_dim=latent, channel_mult=list(config.channel_mult),
        attention_resolutions=[2**i for i in range(len(config.channel_mult))], num_res_blocks=config.num_res_blocks,
        num_head_channels=config.num_head_channels, adm_in_channels=4 * mc, use_3d_attention=False,
    )  # fmt: skip
    unet = SV4DUNet.from_reference_config(unet_params)
    clip = dict(
        image_size=config.image_size,
        patch_size=config.clip_patch_size,
        width=config.clip_width,
        layers=config.clip_layers,
        head_width=min(32, config.clip_width),
        embed_dim=config.context_dim,
    )
    angle = (4 * mc - mc) // 2
    conditioner = SV4DConditioner(clip_config=clip, sigma_embed_dim=4 * mc - 2 * angle, angle_embed_dim=angle,
                                  latent_type="space_to_depth", downsample_factor=f,
                                  latent_channels=config.latent_channels)  # fmt: skip
    conditioner.share_projection(vae)
    sigma_data = (
        config.sigma_data if not isinstance(config.sigma_data, str) else None
    )  # per_channel: measured
    return SV4DPipeline(unet, conditioner, vae, variant="tiny", frames_per_chunk=config.frames,
                        num_views=len(config.novel_azimuths_deg), image_size=config.image_size,
                        sampling=config.sampling, sigma_data=sigma_data)  # fmt: skip


@torch.no_grad()
def measure_sigma_data(vae, images: torch.Tensor, floor: float = 1e-3) -> list[float]:
    """Each sampler-latent channel's RMS over images (N, 3, H, W) in [-1, 1] (at least `floor`): the per-channel
    sigma_data of `TrainConfig.sigma_data = "per_channel"`. The RMS about 0, not the std: the V-scaling's c_skip
    is the minimiser of the network target's second moment, and the latents need not have zero mean."""
    z = vae.encode_latents(images.float())  # (N, k, h, w)
    rms = z.square().mean(dim=(0, 2, 3)).sqrt().clamp_min(floor)
    return [float(v) for v in rms]
