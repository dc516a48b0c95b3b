"""Differentiable point splatting: screen-space Gaussian discs, the k nearest per pixel (4K4D's depth peeling),
alpha-composited front to back over white, in plain torch."""

from __future__ import annotations

import math

import torch

MAX_PIXEL_RADIUS = (
    8  # footprint windows are at most (2·8 + 1)² pixels; larger discs are clamped to this radius
)
MIN_PIXEL_RADIUS = (
    0.75  # discs are dilated to at least this radius so every point covers its pixel (anti-aliasing)
)
NEAR = 1e-3  # points closer to the camera than this (camera z) are dropped


def splat(points, colors, opacity, radius, extrinsics, K, height: int, width: int, k: int = 8):
    """Render points as Gaussian discs (pixel radius ρ = √((f·r/z)² + 1), σ = ρ/2, cut at ρ), keeping per pixel
    the `k` nearest by depth, composited as rgb = Σ c_i α_i Π_{j<i}(1 − α_j) + white · Π(1 − α).

    points (N, 3), colors (N, 3), opacity (N,), radius (N,) world units, extrinsics (B, 4, 4), K (3, 3)
    -> rgb (B, 3, H, W), alpha (B, 1, H, W), depth (B, 1, H, W) (alpha-weighted camera z, 0 where empty).
    Gradients flow to points, colors, opacity and radius (not through the depth order).
    """
    B, N, P = extrinsics.shape[0], points.shape[0], height * width
    dev, E, K = points.device, extrinsics.to(points), K.to(points)

    # 1. Project: camera coordinates, pixel centre and pixel radius of every point in every view
    x_cam = points @ E[:, :3, :3].transpose(1, 2) + E[:, None, :3, 3]  # (B, N, 3)
    z = x_cam[..., 2]
    zc = z.clamp_min(NEAR)
    u = K[0, 0] * x_cam[..., 0] / zc + K[0, 2]  # (B, N)
    v = K[1, 1] * x_cam[..., 1] / zc + K[1, 2]
    f = 0.5 * (K[0, 0] + K[1, 1])
    rho = ((f * radius / zc) ** 2 + MIN_PIXEL_RADIUS**2).sqrt().clamp(max=MAX_PIXEL_RADIUS)  # (B, N)

    # 2. Footprints: every pixel of a disc-shaped window of radius w around each point is a candidate
    w = min(MAX_PIXEL_RADIUS, math.ceil(float(rho.detach().max()))) if N else 1
    d = torch.arange(-w, w + 1, device=dev)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    disc = (
        dx**2 + dy**2 <= (w + 1) ** 2
    )  # pixel centres within ρ ≤ w of the point lie in this disc of offsets
    dx, dy = dx[disc], dy[disc]  # (O,)
    cx, cy = u.detach().floor(), v.detach().floor()
    px, py = cx[..., None] + dx, cy[..., None] + dy  # (B, N, O) pixel coordinates (float, exact integers)
    d2 = (px + 0.5 - u[..., None]) ** 2 + (py + 0.5 - v[..., None]) ** 2  # squared pixel distance
    r2 = (rho**2)[..., None]
    valid = (d2 < r2) & (px >= 0) & (px < width) & (py >= 0) & (py < height) & (z[..., None] > NEAR)
    flat = valid.reshape(-1).nonzero().squeeze(1)  # (C,) candidates, index into B·N·O
    b, n = flat // (N * len(dx)), flat // len(dx) % N
    pix = (b * height + py.reshape(-1)[flat].long()) * width + px.reshape(-1)[flat].long()  # over B·H·W
    bn = flat // len(dx)  # index into B·N
    depth = z.reshape(-1)[bn]
    alpha = opacity[n] * torch.exp(-2.0 * d2.reshape(-1)[flat] / r2.reshape(-1)[bn])  # Gaussian with σ = ρ/2

    # 3. Depth peeling: sort by (pixel, depth) with one argsort, keep the first k of each pixel
    zd = depth.detach()
    lo, hi = (zd.min(), zd.max()) if len(zd) else (0.0, 1.0)
    key = (
        pix.double() + 0.5 * ((zd - lo) / max(hi - lo, 1e-12)).double()
    )  # pixel in the integer part, depth in [0, 0.5]
    order = torch.argsort(key, stable=True)
    pix, depth, alpha, n = pix[order], depth[order], alpha[order], n[order]
    _, counts = torch.unique_consecutive(pix, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(pix), device=dev) - torch.repeat_interleave(
        starts, counts
    )  # place within its pixel
    keep = rank < k
    pix, rank, depth, alpha, n = pix[keep], rank[keep], depth[keep], alpha[keep], n[keep]

    # 4. Composite front to back over white: (B·H·W, k) layers
    A = torch.zeros(B * P, k, device=dev, dtype=points.dtype).index_put((pix, rank), alpha)
    Z = torch.zeros(B * P, k, device=dev, dtype=points.dtype).index_put((pix, rank), depth)
    C = torch.zeros(B * P, k, 3, device=dev, dtype=points.dtype).index_put((pix, rank), colors[n])
    T = torch.cumprod(1 - A, dim=1)  # transmittance after each layer
    weight = A * torch.cat([torch.ones_like(T[:, :1]), T[:, :-1]], dim=1)  # α_i Π_{j<i}(1 − α_j)
    acc = 1 - T[:, -1]  # (B·H·W,)
    rgb = (weight[..., None] * C).sum(1) + T[:, -1:]  # white background
    z_mean = torch.where(acc > 1e-6, (weight * Z).sum(1) / acc.clamp_min(1e-6), torch.zeros_like(acc))

    # (B·H·W, C) -> (B, C, H, W)
    def image(x):
        return x.reshape(B, height, width, -1).permute(0, 3, 1, 2)

    return image(rgb), image(acc), image(z_mean)
