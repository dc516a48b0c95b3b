"""SV4D 2.0's conditioner: CLIP of the input frames, VAE latents of input and earlier views, cameras.

The reference (`sgm GeneralConditioner` from sv4d2.yaml) runs six embedders in this order; the kit holds their
networks under these names:

    reference embedder (input key)           kit module            output
    0 CLIP (cond_frames_without_noise)       clip                  crossattn (1, T, D)
    1 VAE + sigma emb (cond_frames)          cond_frames_encoder   concat (T*V, 4, h, w), vector[:, :sigma]
    2 timestep emb (polar_rad)               -                     vector[:, sigma : sigma + angle]
    3 timestep emb (azimuth_rad)             -                     vector[:, sigma + angle :]
    4 VAE (cond_view)                        cond_view_encoder     cond_view (V, 4, h, w)
    5 VAE (cond_motion)                      cond_motion_encoder   cond_motion (T, 4, h, w)

`cond_frames` is `cond_motion` repeated V times per frame, in (t v) order. Every VAE encoder sees its images
plus `encoder_noise_sigma * randn` (the reference's `ZeroSampler` returns 1e-5, not 0), and its latents are
the unscaled posterior mode. The reference embedders' decoders and `post_quant_conv` are unused and not held.
"""

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from sv4d_kit.checks import KitInputError
from sv4d_kit.models.autoencoder import (
    SV4D2_DDCONFIG,
    VAEEncoder,
    encode_mode,
    sgm_vae_name_to_diffusers,
    sgm_vae_tensor_to_diffusers,
)
from sv4d_kit.models.clip import VIT_H_14, CLIPImageEncoder, clip_preprocess
from sv4d_kit.models.embeddings import timestep_embedding
from sv4d_kit.models.latent import SpaceToDepthAutoencoder

# Reference embedder index -> kit module holding its VAE encoder.
VAE_EMBEDDERS = {1: "cond_frames_encoder", 4: "cond_view_encoder", 5: "cond_motion_encoder"}
# The order the reference runs (and draws noise for) the VAE embedders; the keys of `noise`, `encoder_inputs`.
VAE_INPUTS = ("cond_frames", "cond_view", "cond_motion")
# The latent spaces the VAE embedders can encode into (`latent_type`).
LATENT_TYPES = ("vae", "space_to_depth")


def checkpoint_name_to_kit(name: str) -> str | None:
    """A released-checkpoint key under `conditioner.embedders.` -> the `SV4DConditioner` state-dict key.

    Returns None for tensors the kit deliberately does not hold: open_clip's text-side leftovers (everything
    under `open_clip.model.` outside `visual.`) and the VAE embedders' `decoder.*`, `post_quant_conv.*`.
    """
    prefix = "conditioner.embedders."
    if not name.startswith(prefix):
        raise KitInputError(f"name must start with {prefix!r}, got {name!r}")
    index, _, rest = name[len(prefix) :].partition(".")
    if index == "0" and rest.startswith("open_clip.model."):
        rest = rest[len("open_clip.model.") :]
        return "clip." + rest[len("visual.") :] if rest.startswith("visual.") else None
    if index.isdigit() and int(index) in VAE_EMBEDDERS and rest.startswith("encoder."):
        rest = rest[len("encoder.") :]
        if rest.startswith(("decoder.", "post_quant_conv.")):
            return None
        if rest.startswith(("encoder.", "quant_conv.")):
            return f"{VAE_EMBEDDERS[int(index)]}.{sgm_vae_name_to_diffusers(rest)}"
    raise KitInputError(f"{name!r} is not a key of the SV4D 2.0 conditioner")


def convert_checkpoint_tensor(kit_name: str, tensor: torch.Tensor) -> torch.Tensor:
    """A checkpoint tensor in the layout of its kit key (the VAE attention's 1x1 convs become linear)."""
    return sgm_vae_tensor_to_diffusers(kit_name, tensor)


class SV4DConditioner(ModelMixin, ConfigMixin):
    """Turns one chunk's frames and cameras into the UNet conditioning `c` (and `uc` via `unconditional`).

    Config: `clip_config` (`CLIPImageEncoder` kwargs), `vae_config` (the sgm `ddconfig` of the VAE encoders),
    `sigma_embed_dim` / `angle_embed_dim` (256 / 512 in SV4D 2.0), `encoder_noise_sigma` (1e-5).
    None means SV4D 2.0's full size (ViT-H/14, the SD VAE). `latent_type` "vae" (SV4D 2.0) or "space_to_depth"
    (the tiny model: parameter-free `SpaceToDepthAutoencoder` encoders with `downsample_factor` and
    `latent_channels`, no vae_config; their projection must equal the pipeline VAE's, see `share_projection`).
    """

    @register_to_config
    def __init__(
        self,
        clip_config: dict | None = None,
        vae_config: dict | None = None,
        sigma_embed_dim: int = 256,
        angle_embed_dim: int = 512,
        encoder_noise_sigma: float = 1e-5,
        latent_type: str = "vae",
        downsample_factor: int = 4,
        latent_channels: int | None = None,
    ):
        super().__init__()
        if latent_type not in LATENT_TYPES:
            raise KitInputError(f"latent_type must be one of {LATENT_TYPES}, got {latent_type!r}")
        clip_config = dict(clip_config or CLIPImageEncoder.config_from_open_clip(VIT_H_14))
        vae_config = dict(vae_config or SV4D2_DDCONFIG) if latent_type == "vae" else {}
        self.register_to_config(clip_config=clip_config, vae_config=vae_config)
        if sigma_embed_dim < 2 or angle_embed_dim < 2:
            raise KitInputError(
                f"sigma_embed_dim and angle_embed_dim must be >= 2, got {sigma_embed_dim}, {angle_embed_dim}"
            )
        self.clip = CLIPImageEncoder(**clip_config)
        if latent_type == "vae":
            self.cond_frames_encoder = VAEEncoder(vae_config)
            self.cond_view_encoder = VAEEncoder(vae_config)
            self.cond_motion_encoder = VAEEncoder(vae_config)
        else:  # the tiny model's parameter-free latent space: unscaled space-to-depth latents
            latent = dict(downsample_factor=downsample_factor, latent_channels=latent_channels)
            self.cond_frames_encoder = SpaceToDepthAutoencoder(**latent)
            self.cond_view_encoder = SpaceToDepthAutoencoder(**latent)
            self.cond_motion_encoder = SpaceToDepthAutoencoder(**latent)

    @classmethod
    def from_reference_configs(
        cls, clip_config: dict | None, vae_ddconfig: dict | None, conditioner_config: dict | list
    ) -> "SV4DConditioner":
        """Build from the reference's configs, as sv4d2.yaml or a golden set records them.

        clip_config: an open_clip model config (`{"embed_dim", "vision_cfg"}`), or None for the arch the
        conditioner names (ViT-H-14 by default). vae_ddconfig: an sgm `ddconfig`, or None for the embedders'.
        conditioner_config: the `GeneralConditioner` config, or its `emb_models` list.
        """
        emb_models = conditioner_config
        if isinstance(conditioner_config, dict):
            emb_models = conditioner_config.get("params", conditioner_config).get("emb_models")
        if not isinstance(emb_models, list):
            raise KitInputError(
                "conditioner_config must be a GeneralConditioner config or its emb_models list"
            )
        by_key = {m.get("input_key"): m.get("params", {}) for m in emb_models}
        expected = [
            "cond_frames_without_noise",
            "cond_frames",
            "polar_rad",
            "azimuth_rad",
            "cond_view",
            "cond_motion",
        ]
        if [m.get("input_key") for m in emb_models] != expected:
            raise KitInputError(f"conditioner_config must have the embedders {expected} in this order")

        # the VAE embedders: one ddconfig, unscaled latents, ZeroSampler noise
        ddconfigs = [by_key[k]["encoder_config"]["params"]["ddconfig"] for k in VAE_INPUTS]
        if any(d != ddconfigs[0] for d in ddconfigs):
            raise KitInputError("the cond_frames, cond_view and cond_motion VAEs must share one ddconfig")
        for key in VAE_INPUTS:
            params = by_key[key]
            if float(params.get("scale_factor", 1.0)) != 1.0:
                raise KitInputError(
                    f"embedder {key!r} must have scale_factor 1.0, got {params['scale_factor']}"
                )
            sampler = (params.get("sigma_sampler_config") or {}).get("target", "")
            if not sampler.endswith("ZeroSampler"):
                raise KitInputError(f"embedder {key!r} must use ZeroSampler noise, got {sampler!r}")
            embed_dim = params["encoder_config"]["params"].get("embed_dim", ddconfigs[0]["z_channels"])
            if embed_dim != ddconfigs[0]["z_channels"]:
                raise KitInputError(f"embedder {key!r}: embed_dim ({embed_dim}) must equal z_channels")

        # the embedding widths
        sigma_dim = by_key["cond_frames"]["sigma_cond_config"]["params"]["outdim"]
        polar_dim, azimuth_dim = by_key["polar_rad"]["outdim"], by_key["azimuth_rad"]["outdim"]
        if polar_dim != azimuth_dim:
            raise KitInputError(f"polar and azimuth widths must be equal, got {polar_dim} and {azimuth_dim}")

        # the CLIP tower
        if clip_config is None:
            clip_params = by_key["cond_frames_without_noise"]["open_clip_embedding_config"].get("params", {})
            arch = clip_params.get("arch", "ViT-H-14")
            if arch != "ViT-H-14":
                raise KitInputError(
                    f"clip_config is needed for the open_clip arch {arch!r} (only ViT-H-14 is built in)"
                )
            clip_config = VIT_H_14
        return cls(
            clip_config=CLIPImageEncoder.config_from_open_clip(clip_config),
            vae_config=dict(vae_ddconfig if vae_ddconfig is not None else ddconfigs[0]),
            sigma_embed_dim=int(sigma_dim),
            angle_embed_dim=int(polar_dim),
            encoder_noise_sigma=1e-5,
        )

    def load_reference_state_dict(self, state_dict: dict[str, torch.Tensor]) -> list[str]:
        """Load the `conditioner.embedders.*` tensors of a reference state dict (other keys are skipped).

        Every kit tensor must be filled exactly once. Returns the checkpoint keys deliberately ignored.
        On the meta device the tensors are assigned, not copied.
        """
        own = self.state_dict()
        filled, ignored = {}, []
        for name, tensor in state_dict.items():
            if not name.startswith("conditioner.embedders."):
                continue
            kit = checkpoint_name_to_kit(name)
            if kit is None:
                ignored.append(name)
                continue
            if kit not in own or kit in filled:
                raise KitInputError(
                    f"checkpoint key {name!r} maps to {kit!r}, which is unknown or already filled"
                )
            tensor = convert_checkpoint_tensor(kit, tensor)
            if tensor.shape != own[kit].shape:
                raise KitInputError(
                    f"{name!r} has shape {tuple(tensor.shape)}, {kit!r} needs {tuple(own[kit].shape)}"
                )
            filled[kit] = tensor
        missing = sorted(set(own) - set(filled))
        if missing:
            raise KitInputError(
                f"state_dict lacks {len(missing)} conditioner tensors, e.g. the one for {missing[0]!r}"
            )
        self.load_state_dict(filled, strict=True, assign=any(p.is_meta for p in self.parameters()))
        return ignored

    def vae_encoder_inputs(
        self,
        cond_motion: torch.Tensor,
        cond_view: torch.Tensor,
        noise: dict[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """What each VAE encoder sees: its images + `encoder_noise_sigma` * noise (drawn unless given)."""
        v = cond_view.shape[0]
        images = {
            "cond_frames": cond_motion.repeat_interleave(
                v, dim=0
            ),  # (T, 3, H, W) -> (T*V, 3, H, W), (t v) order
            "cond_view": cond_view,
            "cond_motion": cond_motion,
        }
        noise = noise or {}
        unknown = set(noise) - set(VAE_INPUTS)
        if unknown:
            raise KitInputError(f"noise keys must be among {VAE_INPUTS}, got {sorted(unknown)}")
        out = {}
        for key in VAE_INPUTS:
            x = images[key]
            eps = noise.get(key)
            if eps is None:
                # drawn where the generator lives (CPU by default), so CPU and CUDA runs see the same noise
                gen_device = generator.device if generator is not None else x.device
                eps = torch.randn(x.shape, generator=generator, device=gen_device, dtype=x.dtype).to(x.device)
            elif eps.shape != x.shape:
                raise KitInputError(
                    f"noise[{key!r}] must have shape {tuple(x.shape)}, got {tuple(eps.shape)}"
                )
            out[key] = x + self.config.encoder_noise_sigma * eps
        return out

    def forward(
        self,
        cond_motion: torch.Tensor,
        cond_view: torch.Tensor,
        polar_rad: torch.Tensor,
        azimuth_rad: torch.Tensor,
        noise: dict[str, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
        encoder_inputs: dict[str, torch.Tensor] | None = None,
        encode_chunk_size: int | None = None,
    ) -> dict[str, torch.Tensor]:
        """The conditioning `c` of one chunk.

        cond_motion: (T, 3, H, W) input-view frames in [-1, 1].
        cond_view: (V, 3, H, W) novel views at the chunk's first frame in [-1, 1] (zeros for the first chunk).
        polar_rad, azimuth_rad: (T*V,) relative cameras in (t v) order.
        noise: standard-normal noise per VAE input (keys `VAE_INPUTS`); what is missing is drawn.
        generator: draws the missing noise.
        encoder_inputs: the exact (already noised) VAE inputs, used instead of images + noise.
        encode_chunk_size: images per VAE encoder call (None: all, as the reference). At 576 px the T*V = 48
        cond_frames at once peaked at about 24 GiB in fp16 on an H200; the peak scales with the chunk.
        Returns crossattn (1, T, D), concat (T*V, 4, h, w), vector (T*V, sigma + 2 angle),
        cond_view (V, 4, h, w), cond_motion (T, 4, h, w).
        """
        # 1. Check inputs
        if cond_motion.ndim != 4 or cond_motion.shape[1] != 3:
            raise KitInputError(f"cond_motion must have shape (T, 3, H, W), got {tuple(cond_motion.shape)}")
        if cond_view.ndim != 4 or cond_view.shape[1:] != cond_motion.shape[1:]:
            raise KitInputError(
                f"cond_view must have shape (V, 3, H, W) = (V, *{tuple(cond_motion.shape[1:])}), "
                f"got {tuple(cond_view.shape)}"
            )
        t, v = cond_motion.shape[0], cond_view.shape[0]
        for name, angles in (("polar_rad", polar_rad), ("azimuth_rad", azimuth_rad)):
            if angles.shape != (t * v,):
                raise KitInputError(f"{name} must have shape (T*V,) = ({t * v},), got {tuple(angles.shape)}")

        # 2. CLIP embedding of the T input-view frames
        pixels = clip_preprocess(cond_motion, image_size=self.clip.config.image_size)
        crossattn = self.clip(pixels)[None]  # (T, D) -> (1, T, D)

        # 3. VAE latents (unscaled posterior mode) of the noised images
        if encoder_inputs is None:
            encoder_inputs = self.vae_encoder_inputs(cond_motion, cond_view, noise, generator)
        elif set(encoder_inputs) != set(VAE_INPUTS):
            raise KitInputError(
                f"encoder_inputs must have exactly the keys {VAE_INPUTS}, got {sorted(encoder_inputs)}"
            )
        n = encode_chunk_size
        concat = encode_mode(self.cond_frames_encoder, encoder_inputs["cond_frames"], n)  # (T*V, 4, h, w)
        view_latents = encode_mode(self.cond_view_encoder, encoder_inputs["cond_view"], n)  # (V, 4, h, w)
        motion_latents = encode_mode(
            self.cond_motion_encoder, encoder_inputs["cond_motion"], n
        )  # (T, 4, h, w)

        # 4. Vector: [noise-level embedding, polar embedding, azimuth embedding]
        sigma = torch.full(
            (t * v,), self.config.encoder_noise_sigma, dtype=torch.float32, device=polar_rad.device
        )
        vector = torch.cat(
            [
                timestep_embedding(sigma, self.config.sigma_embed_dim),
                timestep_embedding(polar_rad, self.config.angle_embed_dim),
                timestep_embedding(azimuth_rad, self.config.angle_embed_dim),
            ],
            dim=1,
        ).to(device=concat.device, dtype=concat.dtype)

        return {
            "crossattn": crossattn,
            "concat": concat,
            "vector": vector,
            "cond_view": view_latents,
            "cond_motion": motion_latents,
        }

    @torch.no_grad()
    def share_projection(self, vae: SpaceToDepthAutoencoder) -> None:
        """Give the space-to-depth encoders the projection (`center`, `basis`) of the pipeline's latent space."""
        for encoder in (self.cond_frames_encoder, self.cond_view_encoder, self.cond_motion_encoder):
            if not isinstance(encoder, SpaceToDepthAutoencoder):
                raise KitInputError("share_projection needs latent_type 'space_to_depth'")
            encoder.encoder.load_state_dict(vae.encoder.state_dict())

    def unconditional(self, c: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The negative conditioning `uc` for `c`: what the reference gets with `force_uc_zero_embeddings`.

        Every output of the image embedders is zero: crossattn, concat, cond_view, cond_motion and the
        noise-level part of vector. The polar and azimuth parts of vector are those of `c`.
        """
        uc = {k: torch.zeros_like(c[k]) for k in ("crossattn", "concat", "cond_view", "cond_motion")}
        vector = c["vector"].clone()
        vector[:, : self.config.sigma_embed_dim] = 0
        uc["vector"] = vector
        return uc
