"""The SV4D 2.0 denoising UNet (reference `SpatialUNetModelWithTime` with motion attention), diffusers-shaped.

Parameter names equal the released checkpoint's with the prefix `model.diffusion_model.` stripped, so loading
a checkpoint is a prefix strip. Frames are (b t v) ordered: index = (b*T + t)*V + v.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn
from torch.utils.checkpoint import checkpoint

from sv4d_kit.checks import KitInputError
from sv4d_kit.models.embeddings import timestep_embedding
from sv4d_kit.models.resnet import Downsample, GroupNorm32, Upsample, VideoResBlock
from sv4d_kit.models.transformer import CrossAttention, FeedForward, SpatialViewFrameTransformer

# Reference keys that do not change what the network computes at this commit (the reason is given).
_INERT_REFERENCE_KEYS = {
    "use_checkpoint": "activation checkpointing, same math",
    "legacy": "only changes head widths for level widths not divisible by num_head_channels (rejected)",
    "spatial_transformer_attn_type": "softmax and softmax-xformers have the same parameters and math",
    "replicate_time_mix_bug": "its branch is `if False` at the reference commit",
    "num_heads_upsample": "unused with spatial transformers",
    "use_new_attention_order": "unused with spatial transformers",
    "time_context_dim": "overridden by context_dim because use_spatial_context is required",
    "view_context_dim": "unused",
    "view_block_merge_factor": "unused",
}
# Reference keys with the only value the kit supports: key -> (reference default, supported value).
_FIXED_REFERENCE_KEYS = {
    "num_classes": (None, "sequential"),
    "use_spatial_transformer": (False, True),
    "use_temporal_resblock": (True, True),
    "use_motion_attention": (False, True),
    "use_spatial_context": (False, True),
    "time_mix_legacy": (True, False),
    "disable_temporal_crossattention": (False, False),
    "resblock_updown": (False, False),
    "use_scale_shift_norm": (False, False),
    "conv_resample": (True, True),
    "dims": (2, 2),
    "time_downup": (False, False),
}
# Reference keys mapped 1:1 onto the kit config, with the reference default (None: required).
_MAPPED_REFERENCE_KEYS = {
    "in_channels": None,
    "model_channels": None,
    "out_channels": None,
    "num_res_blocks": None,
    "attention_resolutions": None,
    "channel_mult": (1, 2, 4, 8),
    "num_head_channels": -1,
    "num_heads": -1,
    "transformer_depth": 1,
    "transformer_depth_middle": None,
    "context_dim": None,
    "motion_context_dim": None,
    "adm_in_channels": None,
    "extra_ff_mix_layer": False,
    "use_linear_in_transformer": False,
    "time_block_merge_strategy": "fixed",
    "time_block_merge_factor": 0.5,
    "motion_block_merge_factor": 0.5,
    "separate_motion_merge_factor": False,
    "time_kernel_size": 3,
    "use_camera_emb": False,
    "use_3d_attention": False,
    "max_ddpm_temb_period": 10000,
    "dropout": 0.0,
}


class UNetBlock(nn.Sequential):
    """A sequence of UNet layers; each gets the inputs it needs (reference `TimestepEmbedSequential`)."""

    def forward(self, x, emb, context, cond_view, num_video_frames):
        for layer in self:
            if isinstance(layer, VideoResBlock):
                x = layer(x, emb, num_video_frames)
            elif isinstance(layer, SpatialViewFrameTransformer):
                x = layer(x, context, emb, cond_view)  # the reference passes emb positionally as `cam`
            else:
                x = layer(x)
        return x


class SV4DUNet(ModelMixin, ConfigMixin):
    """The SV4D 2.0 UNet. Defaults build the released `sv4d2` network (about 2.0 B parameters).

    Runtime switches (not config): `set_block_switches` (ablate view / frame attention), `set_attention_path`
    (fused SDPA or explicit softmax), `set_chunking` (memory), `enable_gradient_checkpointing` (diffusers).
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        in_channels: int = 8,  # noisy latent (4) concatenated with the conditioning-frame latent (4)
        model_channels: int = 320,  # width of level 0; the embedding is 4x this wide
        out_channels: int = 4,  # predicted latent channels
        num_res_blocks: int = 2,  # resblocks per level (the decoder has one more)
        attention_resolutions: Sequence[int] = (4, 2, 1),  # downsampling factors that get a transformer
        channel_mult: Sequence[int] = (1, 2, 4, 4),  # width multiplier per level
        num_head_channels: int = 64,  # attention head width; -1: use num_heads heads instead
        num_heads: int = -1,  # number of heads when num_head_channels == -1
        transformer_depth: int | Sequence[int] = 1,  # transformer blocks per attention stage, per level
        transformer_depth_middle: int | None = None,  # the same for the middle block (default: last level's)
        context_dim: int = 1024,  # CLIP token width (cross-attention of the spatial and view blocks)
        motion_context_dim: int = 4,  # cond_view latent channels (cross-attention of the frame blocks)
        adm_in_channels: int = 1280,  # width of the vector input y (sigma, polar, azimuth embeddings)
        extra_ff_mix_layer: bool = True,  # an extra residual feed-forward (ff_in) first in view/frame blocks
        use_linear_in_transformer: bool = True,  # proj_in/proj_out as Linear (else 1x1 convs)
        time_block_merge_strategy: str = "learned_with_images",  # blender: learned(_with_images) or fixed
        time_block_merge_factor: float = 0.0,  # initial mix_factor of the resblock and view blenders
        motion_block_merge_factor: float = 0.5,  # initial mix_factor of the frame blender
        separate_motion_merge_factor: bool = True,  # frame attention has its own blender (time_mixer_motion)
        time_kernel_size: int | Sequence[int] = (3, 1, 1),  # kernel of the resblocks' 3-D time stack
        use_camera_emb: bool = True,  # view embedding from the UNet embedding (else from the view index)
        use_3d_attention: bool = True,  # sv4d2 layout (True) or the 8-view layout (False) of view attention
        max_ddpm_temb_period: int = 10000,  # max period of the frame/view index sinusoids
        dropout: float = 0.0,  # dropout (training only)
    ):
        super().__init__()
        channel_mult = list(channel_mult)
        if not channel_mult or num_res_blocks < 1:
            raise KitInputError("channel_mult must be non-empty and num_res_blocks >= 1")
        depths = (
            [transformer_depth] * len(channel_mult)
            if isinstance(transformer_depth, int)
            else list(transformer_depth)
        )
        if len(depths) != len(channel_mult):
            raise KitInputError(
                f"transformer_depth must be an int or have {len(channel_mult)} entries, got {depths}"
            )
        depth_middle = depths[-1] if transformer_depth_middle is None else transformer_depth_middle
        time_embed_dim = model_channels * 4
        if use_camera_emb and adm_in_channels != time_embed_dim:
            # The view embedding feeds emb (4*model_channels wide) to a Linear(adm_in_channels).
            raise KitInputError(
                f"adm_in_channels must equal 4*model_channels={time_embed_dim} when use_camera_emb, "
                f"got {adm_in_channels}"
            )
        for ch in {model_channels * m for m in channel_mult}:
            if ch % 32:
                raise KitInputError(f"every level width must be a multiple of 32 (GroupNorm), got {ch}")
            if (num_head_channels == -1 and (num_heads < 1 or ch % num_heads)) or (
                num_head_channels != -1 and (num_head_channels < 1 or ch % num_head_channels)
            ):
                raise KitInputError(
                    f"level width {ch} must be divisible by num_head_channels ({num_head_channels}) or, "
                    f"when that is -1, by num_heads ({num_heads})"
                )

        def heads(ch: int) -> tuple[int, int]:
            if num_head_channels == -1:
                return num_heads, ch // num_heads
            return ch // num_head_channels, num_head_channels

        def resblock(ch: int, out_ch: int) -> VideoResBlock:
            return VideoResBlock(
                ch,
                time_embed_dim,
                out_ch,
                time_kernel_size,
                time_block_merge_strategy,
                time_block_merge_factor,
                dropout,
            )

        def transformer(ch: int, depth: int) -> SpatialViewFrameTransformer:
            return SpatialViewFrameTransformer(
                ch,
                *heads(ch),
                depth=depth,
                context_dim=context_dim,
                motion_context_dim=motion_context_dim,
                cam_channels=adm_in_channels if use_camera_emb else None,
                use_3d_attention=use_3d_attention,
                separate_motion_merge_factor=separate_motion_merge_factor,
                merge_strategy=time_block_merge_strategy,
                merge_factor=time_block_merge_factor,
                merge_factor_motion=motion_block_merge_factor,
                ff_in=extra_ff_mix_layer,
                use_linear=use_linear_in_transformer,
                dropout=dropout,
                max_time_embed_period=max_ddpm_temb_period,
            )

        self.time_embed = nn.Sequential(
            nn.Linear(model_channels, time_embed_dim), nn.SiLU(), nn.Linear(time_embed_dim, time_embed_dim)
        )
        # num_classes="sequential": an MLP of the vector y, nested once more (hence `label_emb.0.0`).
        self.label_emb = nn.Sequential(
            nn.Sequential(
                nn.Linear(adm_in_channels, time_embed_dim),
                nn.SiLU(),
                nn.Linear(time_embed_dim, time_embed_dim),
            )
        )

        # Encoder: per level, num_res_blocks x (resblock [+ transformer]), then a stride-2 conv (not last).
        self.input_blocks = nn.ModuleList([UNetBlock(nn.Conv2d(in_channels, model_channels, 3, padding=1))])
        skip_channels = [model_channels]
        ch, ds = model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [resblock(ch, model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(transformer(ch, depths[level]))
                self.input_blocks.append(UNetBlock(*layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(UNetBlock(Downsample(ch)))
                skip_channels.append(ch)
                ds *= 2

        # Middle: resblock, transformer, resblock (the transformer is there at every resolution).
        self.middle_block = UNetBlock(resblock(ch, ch), transformer(ch, depth_middle), resblock(ch, ch))

        # Decoder: per level, num_res_blocks+1 x (resblock on [h ; skip] [+ transformer]), then upsampling.
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [resblock(ch + skip_channels.pop(), model_channels * mult)]
                ch = model_channels * mult
                if ds in attention_resolutions:
                    layers.append(transformer(ch, depths[level]))
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    ds //= 2
                self.output_blocks.append(UNetBlock(*layers))

        self.out = nn.Sequential(
            GroupNorm32(ch), nn.SiLU(), nn.Conv2d(model_channels, out_channels, 3, padding=1)
        )
        nn.init.zeros_(self.out[-1].weight)  # zero-initialised as in the reference (training only)
        nn.init.zeros_(self.out[-1].bias)
        self.gradient_checkpointing = False

    @classmethod
    def from_reference_config(cls, params: dict) -> SV4DUNet:
        """Build from the reference `network_config["params"]` of `SpatialUNetModelWithTime` (yaml or golden).

        Inert reference keys are ignored; keys with values the kit does not implement raise KitInputError.
        """
        unknown = (
            set(params)
            - set(_INERT_REFERENCE_KEYS)
            - set(_FIXED_REFERENCE_KEYS)
            - set(_MAPPED_REFERENCE_KEYS)
        )
        if unknown:
            raise KitInputError(f"params has unknown reference UNet keys: {sorted(unknown)}")
        for key, (default, supported) in _FIXED_REFERENCE_KEYS.items():
            if params.get(key, default) != supported:
                raise KitInputError(
                    f"params[{key!r}] must be {supported!r} (the only value supported), got "
                    f"{params.get(key, default)!r}"
                )
        missing = [k for k, d in _MAPPED_REFERENCE_KEYS.items() if d is None and k not in params]
        missing = [k for k in missing if k != "transformer_depth_middle"]
        if missing:
            raise KitInputError(f"params misses required reference UNet keys: {missing}")
        kwargs = {k: params.get(k, d) for k, d in _MAPPED_REFERENCE_KEYS.items()}
        for key in ("attention_resolutions", "channel_mult", "time_kernel_size", "transformer_depth"):
            if isinstance(kwargs[key], (list, tuple)):
                kwargs[key] = list(kwargs[key])
        return cls(**kwargs)

    def _modules_of(self, kind: type) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, kind)]

    def set_block_switches(self, view: bool = True, motion: bool = True) -> None:
        """Turn the view ("camera") and frame ("motion") attention stages of every transformer on or off.

        Off means the whole stage is skipped (its embedding, attention block and blender), so the stage output
        is its input: the spatial block's output goes straight on (the same as forcing that alpha to 1).
        """
        for m in self._modules_of(SpatialViewFrameTransformer):
            m.view_enabled, m.frame_enabled = bool(view), bool(motion)

    def set_attention_path(self, path: str = "sdpa") -> None:
        """`"sdpa"`: PyTorch's fused attention (default); `"explicit"`: softmax(Q K^T / sqrt(d)) V."""
        if path not in ("sdpa", "explicit"):
            raise KitInputError(f"path must be 'sdpa' or 'explicit', got {path!r}")
        for m in self._modules_of(CrossAttention):
            m.explicit = path == "explicit"

    def set_chunking(self, ff: int | None = None, attention: int | None = None) -> None:
        """Run feed-forwards on chunks of `ff` tokens and attention on chunks of `attention` batch rows.

        None turns chunking off. Lowers peak memory; results are unchanged up to float rounding.
        """
        for name, value in (("ff", ff), ("attention", attention)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise KitInputError(f"{name} must be None or a positive int, got {value!r}")
        for m in self._modules_of(FeedForward):
            m.chunk_size = ff
        for m in self._modules_of(CrossAttention):
            m.chunk_size = attention

    def embed(self, timesteps: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """emb = time_embed(sinusoids(timesteps)) + label_emb(y): (N, 4*model_channels).

        The sinusoids are computed in float32, then cast to the model dtype.
        """
        dtype = self.time_embed[0].weight.dtype
        t_emb = timestep_embedding(timesteps, self.config.model_channels).to(dtype)
        return self.time_embed(t_emb) + self.label_emb(y.to(dtype))

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        context: torch.Tensor,
        y: torch.Tensor,
        cond_view: torch.Tensor,
        cond_motion: torch.Tensor | None = None,
        image_only_indicator: torch.Tensor | None = None,
        num_video_frames: int | torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the network output for frames in (b t v) order.

        x (B*T*V, in_channels, h, w); timesteps (B*T*V,) = c_noise; context (B, T, context_dim) CLIP tokens;
        y (B*T*V, adm_in_channels); cond_view (B*V, motion_context_dim, h, w); num_video_frames = T*V (default
        inferred). B, T, V are inferred: B = context.shape[0], T = context.shape[1], V = cond_view.shape[0]/B.
        `cond_motion` (B*T, 4, h, w) and `image_only_indicator` (B, T*V) are accepted for parity with the
        reference call and are inert there: cond_motion is never read, every use of the indicator is zeroed.
        Returns (B*T*V, out_channels, h, w) in the dtype of x.
        """
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise KitInputError(f"x must be (N, {self.config.in_channels}, h, w), got {tuple(x.shape)}")
        if context.ndim != 3:
            raise KitInputError(f"context must be (B, T, D), got {tuple(context.shape)}")
        b, t = context.shape[:2]
        if cond_view.ndim != 4 or cond_view.shape[0] % b:
            raise KitInputError(f"cond_view must be (B*V, C, h, w) with B={b}, got {tuple(cond_view.shape)}")
        v = cond_view.shape[0] // b
        if x.shape[0] != b * t * v:
            raise KitInputError(f"x must have B*T*V = {b}*{t}*{v} frames, got {x.shape[0]}")
        if num_video_frames is None:
            num_video_frames = t * v
        num_video_frames = int(
            num_video_frames.item() if torch.is_tensor(num_video_frames) else num_video_frames
        )
        if num_video_frames != t * v:
            raise KitInputError(f"num_video_frames must be T*V = {t * v}, got {num_video_frames}")
        timesteps = torch.as_tensor(timesteps, device=x.device)
        if timesteps.ndim == 0:
            timesteps = timesteps.expand(x.shape[0])
        if timesteps.shape != (x.shape[0],) or y.shape[0] != x.shape[0]:
            raise KitInputError(
                f"timesteps and y must have {x.shape[0]} rows, got {tuple(timesteps.shape)}, {tuple(y.shape)}"
            )

        dtype = self.time_embed[0].weight.dtype
        emb = self.embed(timesteps, y)
        args = (emb, context.to(dtype), cond_view.to(dtype), num_video_frames)
        h = x.to(dtype)
        skips = []
        for block in self.input_blocks:
            h = self._run(block, h, *args)
            skips.append(h)
        h = self._run(self.middle_block, h, *args)
        for block in self.output_blocks:
            h = self._run(block, torch.cat([h, skips.pop()], dim=1), *args)
        return self.out(h).to(x.dtype)

    def _run(self, block: UNetBlock, h: torch.Tensor, *args) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(block, h, *args, use_reentrant=False)
        return block(h, *args)
