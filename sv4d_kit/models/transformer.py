"""The SV4D 2.0 transformer: spatial, view ("camera") and frame ("motion") attention at one UNet level.

Naming: the reference calls the view-attention block `time_mix_blocks` ("camera attention") and the
frame-attention block `motion_blocks`; the kit keeps those parameter names so that checkpoints load by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from sv4d_kit.checks import KitInputError
from sv4d_kit.models.embeddings import timestep_embedding
from sv4d_kit.models.resnet import AlphaBlender


class CrossAttention(nn.Module):
    """Multi-head attention of `x` over `context` (self-attention when `context` is None).

    Two paths with the same math: PyTorch's fused `scaled_dot_product_attention` (default) and the explicit
    `softmax(Q K^T / sqrt(d)) V`, used when `explicit` is set or when `prob_sink` is set (the sink then
    receives the probabilities of every call, (N, heads, queries, keys)). `chunk_size` splits the batch
    dimension N into chunks to bound memory; it does not change results.
    """

    MAX_BATCH = 32768  # the reference's xformers path splits at the same size

    def __init__(
        self,
        query_dim: int,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        dropout: float = 0.0,
    ):
        super().__init__()
        inner_dim = heads * dim_head
        context_dim = context_dim or query_dim
        self.heads = heads
        self.scale = dim_head**-0.5
        self.to_q = nn.Linear(query_dim, inner_dim, bias=False)
        self.to_k = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_v = nn.Linear(context_dim, inner_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, query_dim), nn.Dropout(dropout))
        self.explicit = False
        self.chunk_size: int | None = None
        self.prob_sink: Callable[[torch.Tensor], None] | None = None

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, probs_out: list) -> torch.Tensor:
        if not (self.explicit or self.prob_sink is not None):
            return F.scaled_dot_product_attention(q, k, v)  # default scale is dim_head ** -0.5
        probs = (q.float() @ k.float().transpose(-1, -2) * self.scale).softmax(dim=-1)  # (N, heads, Lq, Lk)
        if self.prob_sink is not None:
            probs_out.append(probs.detach())
        return probs.to(v.dtype) @ v

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        context = x if context is None else context
        n, lq, _ = x.shape
        q, k, v = self.to_q(x), self.to_k(context), self.to_v(context)
        q, k, v = (
            t.view(n, t.shape[1], self.heads, -1).transpose(1, 2) for t in (q, k, v)
        )  # (N, heads, L, d)
        # CUDA attention kernels reject very large batches (grid limits): the view/frame blocks of the full
        # model at 576 px have over 100k sequences, so the batch is always split into at most MAX_BATCH rows.
        chunk = min(self.chunk_size or n, self.MAX_BATCH)
        probs: list[torch.Tensor] = []
        out = torch.cat(
            [
                self._attend(q[i : i + chunk], k[i : i + chunk], v[i : i + chunk], probs)
                for i in range(0, n, chunk)
            ]
        )
        if self.prob_sink is not None:
            self.prob_sink(torch.cat(probs))
        out = out.transpose(1, 2).reshape(n, lq, -1)  # (N, heads, Lq, d) -> (N, Lq, heads*d)
        return self.to_out(out)


class GEGLU(nn.Module):
    """A linear projection to twice the width whose second half gates the first through GELU."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, gate = self.proj(x).chunk(2, dim=-1)
        return x * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward (width x4). `chunk_size` runs it on chunks of tokens to bound memory."""

    def __init__(self, dim: int, dim_out: int | None = None, mult: int = 4, dropout: float = 0.0):
        super().__init__()
        inner_dim = dim * mult
        self.net = nn.Sequential(
            GEGLU(dim, inner_dim), nn.Dropout(dropout), nn.Linear(inner_dim, dim_out or dim)
        )
        self.chunk_size: int | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.chunk_size is None:
            return self.net(x)
        flat = x.reshape(-1, x.shape[-1])  # (..., C) -> (tokens, C)
        out = torch.cat([self.net(part) for part in flat.split(self.chunk_size)])
        return out.view(*x.shape[:-1], out.shape[-1])


class BasicTransformerBlock(nn.Module):
    """Pre-norm self-attention, cross-attention to `context`, GEGLU feed-forward; all residual."""

    def __init__(self, dim: int, n_heads: int, d_head: int, context_dim: int | None, dropout: float = 0.0):
        super().__init__()
        self.attn1 = CrossAttention(dim, None, n_heads, d_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = CrossAttention(dim, context_dim, n_heads, d_head, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context=context) + x
        return self.ff(self.norm3(x)) + x


class TimeMixBlock(nn.Module):
    """A transformer block that attends along a sequence axis folded into the batch (reference
    `BasicTransformerTimeMixBlock`).

    Input (B*s_len, S, C) with `timesteps=s_len`: each group of `s_len` consecutive batch rows is regrouped so
    that attention runs over those rows, separately for each of the S positions: `(B t) S C -> (B S) t C`.
    With `ff_in` (the config's `extra_ff_mix_layer`) an extra residual feed-forward runs first. The
    cross-attention context must have B*S rows (one per attention sequence), in (B S) order.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        d_head: int,
        context_dim: int | None,
        ff_in: bool = False,
        dropout: float = 0.0,
    ):
        super().__init__()
        if n_heads * d_head != dim:
            raise KitInputError(f"n_heads * d_head must equal dim, got {n_heads} * {d_head} != {dim}")
        if ff_in:
            self.norm_in = nn.LayerNorm(dim)
            self.ff_in = FeedForward(dim, dropout=dropout)
        else:
            self.ff_in = None
        self.attn1 = CrossAttention(dim, None, n_heads, d_head, dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.attn2 = CrossAttention(dim, context_dim, n_heads, d_head, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, timesteps: int = 1
    ) -> torch.Tensor:
        n, s, c = x.shape
        b = n // timesteps
        x = x.view(b, timesteps, s, c).transpose(1, 2).reshape(b * s, timesteps, c)  # (b t) s c -> (b s) t c
        if self.ff_in is not None:
            x = self.ff_in(self.norm_in(x)) + x
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), context=context) + x
        x = self.ff(self.norm3(x)) + x
        return x.view(b, s, timesteps, c).transpose(1, 2).reshape(n, s, c)  # (b s) t c -> (b t) s c


class SpatialViewFrameTransformer(nn.Module):
    """One attention stage of the UNet (reference `PostHocSpatialTransformerWithTimeMixingAndMotion`).

    On features (B*T*V, C, H, W) in (b t v) frame order, per depth step:
    1. spatial: self-attention over the H*W pixels of each frame, cross-attention to the frame's CLIP token;
    2. view ("camera"): attention along views, plus a view embedding from `cam`, blended by `time_mixer`;
    3. frame ("motion"): attention over the T time frames of each (view, pixel), plus a frame-index embedding,
       with the `cond_view` latent pixel as the one-token context, blended by `time_mixer_motion`.
    Switches `view_enabled` / `frame_enabled` (set by `SV4DUNet.set_block_switches`) skip stage 2 / 3
    entirely, embedding, attention block and blender included, so the stage passes its input through
    unchanged; this is the same as forcing that blender's alpha to 1.
    """

    def __init__(
        self,
        in_channels: int,
        n_heads: int,
        d_head: int,
        depth: int = 1,
        context_dim: int = 1024,
        motion_context_dim: int = 4,
        cam_channels: int | None = None,
        use_3d_attention: bool = True,
        separate_motion_merge_factor: bool = True,
        merge_strategy: str = "learned_with_images",
        merge_factor: float = 0.0,
        merge_factor_motion: float = 0.5,
        ff_in: bool = True,
        use_linear: bool = True,
        dropout: float = 0.0,
        max_time_embed_period: int = 10000,
    ):
        super().__init__()
        inner_dim = n_heads * d_head
        if inner_dim != in_channels:
            raise KitInputError(
                f"n_heads * d_head must equal in_channels, got {n_heads} * {d_head} != {in_channels}"
            )
        self.in_channels = in_channels
        self.use_linear = use_linear
        self.use_3d_attention = use_3d_attention
        self.use_camera_emb = cam_channels is not None
        self.max_time_embed_period = max_time_embed_period
        self.view_enabled = True
        self.frame_enabled = True

        self.norm = nn.GroupNorm(32, in_channels, eps=1e-6)  # eps 1e-6 here, 1e-5 in the resblocks
        self.proj_in = (
            nn.Linear(in_channels, inner_dim) if use_linear else nn.Conv2d(in_channels, inner_dim, 1)
        )
        self.transformer_blocks = nn.ModuleList(
            [BasicTransformerBlock(inner_dim, n_heads, d_head, context_dim, dropout) for _ in range(depth)]
        )
        self.proj_out = (
            nn.Linear(inner_dim, in_channels) if use_linear else nn.Conv2d(inner_dim, in_channels, 1)
        )
        nn.init.zeros_(self.proj_out.weight)  # zero-initialised as in the reference (training only)
        nn.init.zeros_(self.proj_out.bias)
        # View ("camera") attention: its cross-attention context is the CLIP token (context_dim wide).
        self.time_mix_blocks = nn.ModuleList(
            [TimeMixBlock(inner_dim, n_heads, d_head, context_dim, ff_in, dropout) for _ in range(depth)]
        )
        # Frame ("motion") attention: its cross-attention context is one cond_view latent pixel.
        self.motion_blocks = nn.ModuleList(
            [
                TimeMixBlock(inner_dim, n_heads, d_head, motion_context_dim, ff_in, dropout)
                for _ in range(depth)
            ]
        )
        embed_dim = in_channels * 4
        # View embedding: from the UNet embedding `cam` (use_camera_emb) or from sinusoids of the view index.
        self.time_mix_time_embed = nn.Sequential(
            nn.Linear(cam_channels or in_channels, embed_dim), nn.SiLU(), nn.Linear(embed_dim, in_channels)
        )
        # Frame embedding: from sinusoids of the time-frame index.
        self.time_mix_motion_embed = nn.Sequential(
            nn.Linear(in_channels, embed_dim), nn.SiLU(), nn.Linear(embed_dim, in_channels)
        )
        self.time_mixer = AlphaBlender(merge_factor, merge_strategy)
        self.time_mixer_motion = (
            AlphaBlender(merge_factor_motion, merge_strategy) if separate_motion_merge_factor else None
        )

    def _index_embedding(self, n: int, repeats: int, like: torch.Tensor) -> torch.Tensor:
        """Sinusoids of the indices 0..n-1, tiled `repeats` times: (repeats*n, in_channels)."""
        index = torch.arange(n, device=like.device).repeat(repeats)
        emb = timestep_embedding(index, self.in_channels, max_period=self.max_time_embed_period)
        return emb.to(like.dtype)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, cam: torch.Tensor, cond_view: torch.Tensor
    ) -> torch.Tensor:
        """x (B*T*V, C, H, W); context (B, T, D) CLIP tokens; cam (B*T*V, E) the UNet embedding;
        cond_view (B*V, 4, h', w') latents of the earlier views. B, T and V are inferred from these shapes."""
        b, t, d1 = context.shape
        v, d2 = cond_view.shape[0] // b, cond_view.shape[1]
        n, c, h, w = x.shape
        hw = h * w
        x_in = x

        cond_view = F.interpolate(cond_view, size=(h, w), mode="bilinear")
        # Every cross-attention below has a one-token context, so its softmax is 1 and attn2's to_q, to_k and
        # norm2 have no effect (structural, as in the reference): the spatial block gets the CLIP token of its
        # time frame, (B, T, D) -> (B*T*V, 1, D); the view block one CLIP token per (b, t, pixel) row.
        spatial_context = context[:, :, None].expand(b, t, v, d1).reshape(b * t * v, 1, d1)
        camera_context = context[:, :, None].expand(b, t, hw, d1).reshape(b * t * hw, 1, d1)
        # (B*V, d2, H, W) -> (B*V*HW, 1, d2): one cond_view latent pixel per (b, v, pixel)
        motion_context = cond_view.permute(0, 2, 3, 1).reshape(b * v * hw, 1, d2)

        x = self.norm(x)
        if not self.use_linear:
            x = self.proj_in(x)
        x = x.permute(0, 2, 3, 1).reshape(n, hw, c)  # (N, C, H, W) -> (N, HW, C)
        if self.use_linear:
            x = self.proj_in(x)

        emb_time = self.time_mix_motion_embed(self._index_embedding(t, b, x))[:, None]  # (B*T, 1, C)
        if self.use_camera_emb:
            # Surprise: `cam` is the UNet embedding emb = time_embed + label_emb (the reference passes emb
            # positionally as `cam`); the view embedding uses that of time frame 0 of each view.
            emb_view = self.time_mix_time_embed(cam.reshape(b, t, v, -1)[:, 0].reshape(b * v, -1))[:, None]
        else:
            emb_view = self.time_mix_time_embed(self._index_embedding(v, b, x))[:, None]  # (B*V, 1, C)
        if self.use_3d_attention:
            emb_view = emb_view.repeat_interleave(hw, dim=0)  # (B*V, 1, C) -> (B*V*HW, 1, C)
        motion_mixer = self.time_mixer_motion if self.time_mixer_motion is not None else self.time_mixer

        for block, view_block, frame_block in zip(
            self.transformer_blocks, self.time_mix_blocks, self.motion_blocks
        ):
            x = block(x, context=spatial_context)  # (B*T*V, HW, C)

            # View ("camera") attention.
            if self.use_3d_attention:
                # Surprise (kept): rows come out in (b v hw) order with T as the sequence, and the block is
                # told timesteps=V, so it attends over groups of V neighbouring rows, i.e. V neighbouring
                # pixels of one view at one time frame, not over views. Groups straddle two views when
                # HW % V != 0; the (B*T*HW) camera context rows are paired with those groups by flat index.
                # (B*T*V, HW, C) -> (B, V, HW, T, C) -> (B*V*HW, T, C)
                x = x.reshape(b, t, v, hw, c).permute(0, 2, 3, 1, 4).reshape(b * v * hw, t, c)
            else:
                # 8-view layout: attention over the V views of each (b, t, pixel).
                # (B*T*V, HW, C) -> (B, V, T, HW, C) -> (B*V, T*HW, C)
                x = x.reshape(b, t, v, hw, c).permute(0, 2, 1, 3, 4).reshape(b * v, t * hw, c)
            if self.view_enabled:
                x_mix = view_block(x + emb_view, context=camera_context, timesteps=v)
                x = self.time_mixer(x_spatial=x, x_temporal=x_mix)

            # Frame ("motion") attention over the T time frames of each (b, view, pixel).
            # (B*V*HW, T, C) or (B*V, T*HW, C) -> (B, T, V, HW, C) -> (B*T, V*HW, C)
            if self.use_3d_attention:
                x = x.reshape(b, v, hw, t, c).permute(0, 3, 1, 2, 4).reshape(b * t, v * hw, c)
            else:
                x = x.reshape(b, v, t, hw, c).permute(0, 2, 1, 3, 4).reshape(b * t, v * hw, c)
            if self.frame_enabled:
                x_mix = frame_block(x + emb_time, context=motion_context, timesteps=t)
                x = motion_mixer(x_spatial=x, x_temporal=x_mix)

            x = x.reshape(n, hw, c)  # (B*T, V*HW, C) -> (B*T*V, HW, C)

        if self.use_linear:
            x = self.proj_out(x)
        x = x.reshape(n, h, w, c).permute(0, 3, 1, 2)  # (N, HW, C) -> (N, C, H, W)
        if not self.use_linear:
            x = self.proj_out(x)
        return x + x_in
