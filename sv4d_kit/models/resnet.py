"""Residual blocks of the SV4D 2.0 UNet: ResBlock, its 3-D time stack, the alpha blender, resampling."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sv4d_kit.checks import KitInputError


class GroupNorm32(nn.GroupNorm):
    """GroupNorm, 32 groups, eps 1e-5, computed in float32 and cast back (the reference `normalization`)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w, b = self.weight.float(), self.bias.float()
        return F.group_norm(x.float(), self.num_groups, w, b, self.eps).to(x.dtype)


class AlphaBlender(nn.Module):
    """Blend a spatial and a temporal branch: `alpha x_spatial + (1 - alpha) x_temporal`.

    `learned` / `learned_with_images`: alpha = sigmoid(mix_factor), a learned `[1]` parameter.
    `fixed`: alpha = mix_factor, a buffer. SV4D 2.0 uses `learned_with_images`, whose per-frame override by
    `image_only_indicator` never fires: every reference call site zeroes the indicator (`indicator * 0.0` in
    the resblocks, `zeros_like` in the transformers), so alpha is the same scalar for every frame.
    """

    STRATEGIES = ("fixed", "learned", "learned_with_images")

    def __init__(self, alpha: float = 0.5, merge_strategy: str = "learned_with_images"):
        super().__init__()
        if merge_strategy not in self.STRATEGIES:
            raise KitInputError(f"merge_strategy must be one of {self.STRATEGIES}, got {merge_strategy!r}")
        self.merge_strategy = merge_strategy
        if merge_strategy == "fixed":
            self.register_buffer("mix_factor", torch.tensor([float(alpha)]))
        else:
            self.mix_factor = nn.Parameter(torch.tensor([float(alpha)]))

    def alpha(self) -> torch.Tensor:
        return self.mix_factor if self.merge_strategy == "fixed" else torch.sigmoid(self.mix_factor)

    def forward(self, x_spatial: torch.Tensor, x_temporal: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha()
        return alpha.to(x_spatial.dtype) * x_spatial + (1.0 - alpha).to(x_spatial.dtype) * x_temporal


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with the embedding added in between, plus a skip connection.

    `temporal=False`: a 2-D block on (N, C, H, W) with emb (N, E).
    `temporal=True`: the "time stack" of a video resblock, a 3-D block on (B, C, F, H, W) with emb (B, F, E)
    and a kernel like (3, 1, 1) that convolves over the frame axis only.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        kernel_size: int | Sequence[int] = 3,
        temporal: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        out_channels = out_channels or channels
        self.temporal = temporal
        conv = nn.Conv3d if temporal else nn.Conv2d
        padding = [k // 2 for k in kernel_size] if isinstance(kernel_size, Sequence) else kernel_size // 2
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), conv(channels, out_channels, kernel_size, padding=padding)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels),
            nn.SiLU(),
            nn.Dropout(dropout),
            conv(out_channels, out_channels, kernel_size, padding=padding),
        )
        nn.init.zeros_(self.out_layers[-1].weight)  # zero-initialised as in the reference (training only)
        nn.init.zeros_(self.out_layers[-1].bias)
        if out_channels == channels:
            self.skip_connection = nn.Identity()
        else:
            self.skip_connection = conv(channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers(x)
        emb_out = self.emb_layers(emb).type(h.dtype)
        if self.temporal:
            emb_out = emb_out.transpose(1, 2)[..., None, None]  # (B, F, C) -> (B, C, F, 1, 1)
        else:
            emb_out = emb_out[..., None, None]  # (N, C) -> (N, C, 1, 1)
        return self.skip_connection(x) + self.out_layers(h + emb_out)


class VideoResBlock(ResBlock):
    """A 2-D ResBlock per frame, then a 3-D time stack over all frames, blended by a learned alpha.

    The time stack sees the `num_video_frames` = T*V frames of each batch element in (t v) order and its
    (3, 1, 1) kernel convolves over neighbouring entries of that flattening (neighbouring views, and across
    time at the view wrap-around), exactly as the reference.
    """

    def __init__(
        self,
        channels: int,
        emb_channels: int,
        out_channels: int | None = None,
        time_kernel_size: int | Sequence[int] = (3, 1, 1),
        merge_strategy: str = "learned_with_images",
        merge_factor: float = 0.5,
        dropout: float = 0.0,
    ):
        super().__init__(channels, emb_channels, out_channels, dropout=dropout)
        out_channels = out_channels or channels
        self.time_mix_blocks = ResBlock(
            out_channels,
            emb_channels,
            out_channels,
            kernel_size=time_kernel_size,
            temporal=True,
            dropout=dropout,
        )
        self.time_mixer = AlphaBlender(merge_factor, merge_strategy)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_video_frames: int) -> torch.Tensor:
        x = super().forward(x, emb)
        n, c, h, w = x.shape
        f = num_video_frames
        x = x.view(n // f, f, c, h, w).transpose(1, 2)  # (B*F, C, H, W) -> (B, C, F, H, W)
        x_temporal = self.time_mix_blocks(x, emb.view(n // f, f, -1))  # emb (B*F, E) -> (B, F, E)
        x = self.time_mixer(x_spatial=x, x_temporal=x_temporal)
        return x.transpose(1, 2).reshape(n, c, h, w)  # (B, C, F, H, W) -> (B*F, C, H, W)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 convolution."""

    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.op = nn.Conv2d(channels, out_channels or channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Double H and W (nearest neighbour), then a 3x3 convolution."""

    def __init__(self, channels: int, out_channels: int | None = None):
        super().__init__()
        self.conv = nn.Conv2d(channels, out_channels or channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))
