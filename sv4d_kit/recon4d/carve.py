"""Space carving: the voxels of [-bound, bound]³ whose projection lies inside the silhouette in every view that
sees them, the visual hull 4K4D initialises its points from."""

from __future__ import annotations

import torch

from sv4d_kit import cameras, checks
from sv4d_kit.checks import KitInputError


def check_cameras(extrinsics, K, views: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Finite extrinsics (V, 4, 4) (V = `views` when given) and one finite K (3, 3), as float32."""
    E, K = torch.as_tensor(extrinsics), torch.as_tensor(K)
    if E.ndim != 3 or E.shape[1:] != (4, 4) or (views is not None and E.shape[0] != views):
        want = "(V, 4, 4)" if views is None else f"({views}, 4, 4)"
        raise KitInputError(f"extrinsics must be {want} matrices, got shape {tuple(E.shape)}")
    if K.shape != (3, 3):
        raise KitInputError(f"K must be one (3, 3) matrix, got shape {tuple(K.shape)}")
    if not (bool(torch.isfinite(E).all()) and bool(torch.isfinite(K).all())):
        raise KitInputError("extrinsics and K must be finite (no NaN or inf)")
    return E.float(), K.float()


def voxel_grid(resolution: int, bound: float) -> torch.Tensor:
    """Centres of a resolution³ grid of cells covering [-bound, bound]³. -> (resolution, resolution, resolution, 3)"""
    c = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2 * bound - bound
    return torch.stack(torch.meshgrid(c, c, c, indexing="ij"), dim=-1)


def carve(masks, extrinsics, K, resolution: int = 48, bound: float = 1.0, surface_only: bool = False):
    """Voxel centres inside the visual hull of one frame's silhouettes. masks (V, H, W) bool -> (M, 3)

    A voxel is kept when it projects into at least one view and, in every view it projects into, onto a silhouette
    pixel. `surface_only` keeps only hull voxels with a carved-away (or out-of-grid) neighbour.
    """
    # 1. Check inputs
    masks = torch.as_tensor(masks)
    if masks.ndim != 3 or masks.dtype != torch.bool:
        raise KitInputError(f"masks must be a (V, H, W) bool tensor, got {masks.dtype} {tuple(masks.shape)}")
    V, H, W = masks.shape
    E, K = check_cameras(extrinsics, K, views=V)
    resolution = checks.integer("resolution", resolution, minimum=2, maximum=256)
    bound = checks.positive("bound", bound)
    if not bool(masks.any()):
        raise KitInputError("masks are empty in every view: nothing to carve")

    # 2. Project every voxel centre into every view
    grid = voxel_grid(resolution, bound)  # (R, R, R, 3)
    uv, z = cameras.project_points(grid.reshape(1, -1, 3), E, K)  # (V, R³, 2), (V, R³)
    u, v = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inside = (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)  # (V, R³)
    views = torch.arange(V)[:, None].expand_as(u)
    on_mask = masks[views, v.clamp(0, H - 1), u.clamp(0, W - 1)]  # (V, R³)

    # 3. Keep voxels seen at least once and never seen outside a silhouette
    keep = inside.any(0) & (on_mask | ~inside).all(0)  # (R³,)
    occupied = keep.reshape(resolution, resolution, resolution)
    if surface_only:
        padded = torch.nn.functional.pad(occupied[None, None].float(), (1, 1, 1, 1, 1, 1))
        full = -torch.nn.functional.max_pool3d(-padded, 3, stride=1)[0, 0] > 0.5  # all 27 neighbours kept
        occupied = occupied & ~full
    return grid[occupied]  # (M, 3)


def _surface(occupied: torch.Tensor) -> torch.Tensor:
    """Occupied cells with a carved-away (or out-of-grid) neighbour among their 26."""
    padded = torch.nn.functional.pad(occupied[None, None].float(), (1, 1, 1, 1, 1, 1))
    full = -torch.nn.functional.max_pool3d(-padded, 3, stride=1)[0, 0] > 0.5
    return occupied & ~full


def photo_carve(masks, images, extrinsics, K, resolution: int = 48, bound: float = 1.0, threshold: float = 0.15,
                iterations: int = 8, min_views: int = 2):  # fmt: skip
    """Visual hull, then Kutulakos–Seitz space carving: surface voxels whose colours disagree across the views that
    see them (std over views of the pixel colour > `threshold`) are removed, a few sweeps over the newly exposed
    surface. Visibility: a voxel is seen in a view when its depth is within one voxel of the nearest surface voxel
    projecting to the same pixel. masks (V, H, W) bool, images (V, 3, H, W) -> surface voxel centres (M, 3)"""
    masks = torch.as_tensor(masks)
    V, H, W = masks.shape
    E, K = check_cameras(extrinsics, K, views=V)
    grid = voxel_grid(resolution, bound).reshape(-1, 3)
    hull = carve(masks, E, K, resolution, bound)  # validates the inputs
    voxel = 2 * bound / resolution
    idx = ((hull + bound) / voxel).floor().long().clamp(0, resolution - 1)
    occupied = torch.zeros(resolution, resolution, resolution, dtype=torch.bool)
    occupied[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    images = torch.as_tensor(images).float()
    if images.shape != (V, 3, H, W):
        raise KitInputError(
            f"images must be ({V}, 3, {H}, {W}) to match the masks, got {tuple(images.shape)}"
        )
    for _ in range(iterations):
        surf = _surface(occupied).reshape(-1).nonzero().squeeze(1)
        if len(surf) == 0:
            break
        uv, z = cameras.project_points(grid[surf][None], E, K)  # (V, S, 2), (V, S)
        u, v = uv[..., 0].floor().long(), uv[..., 1].floor().long()
        inside = (z > 1e-6) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
        pix = v.clamp(0, H - 1) * W + u.clamp(0, W - 1)  # (V, S)
        zbuf = torch.full((V, H * W), float("inf")).scatter_reduce(
            1, pix, torch.where(inside, z, torch.full_like(z, float("inf"))), "amin"
        )
        seen = inside & (z <= zbuf.gather(1, pix) + voxel)  # (V, S)
        colour = images.reshape(V, 3, H * W).gather(2, pix[:, None].expand(V, 3, -1))  # (V, 3, S)
        n = seen.sum(0).clamp_min(1)  # (S,)
        w = seen[:, None].float()
        mean = (colour * w).sum(0) / n
        std = (((colour - mean) ** 2 * w).sum(0) / n).mean(0).sqrt()  # (S,) over views and channels
        drop = (seen.sum(0) >= min_views) & (std > threshold)
        if not bool(drop.any()) or int(drop.sum()) >= len(surf):
            break
        occupied.view(-1)[surf[drop]] = False
    return grid[_surface(occupied).reshape(-1)]
