"""Sinusoidal embeddings shared by the UNet (noise level) and the conditioner (noise level, polar, azimuth)."""

import math

import torch


def timestep_embedding(x: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Embed a 1-D tensor of scalars as `[cos(x f), sin(x f)]`, f_i = exp(-ln(max_period) i / half), in float32.

    Cosine comes first, as in the reference (`sgm.modules.diffusionmodules.util.timestep_embedding`).
    (N,) -> (N, dim)
    """
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=x.device) / half)
    args = x[:, None].float() * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb
