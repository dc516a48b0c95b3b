"""Fit a `DynamicPoints` to an image matrix: carve frame 0's visual hull, sample points on it, then optimise them
frame by frame with Adam on photometric + mask losses (later frames start from the previous one's points)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from sv4d_kit import checks, metrics
from sv4d_kit.checks import KitInputError
from sv4d_kit.recon4d.carve import carve, check_cameras, photo_carve
from sv4d_kit.recon4d.points import DynamicPoints
from sv4d_kit.recon4d.render import splat


@dataclass
class FitConfig:
    num_points: int = (
        1000  # points sampled on frame 0's carved hull (fewer after pruning), kept for every frame
    )
    carve_resolution: int = 32  # voxels per side of the carving grid over [-bound, bound]³
    bound: float = 1.0  # half-size of the carving cube (synthetic scenes fit in the 0.95 sphere)
    steps_first: int = 100  # Adam steps for frame 0 (colours, opacity, radius and positions from scratch)
    steps: int = 20  # Adam steps for each later frame (positions only)
    lr_position: float = 0.003
    lr_color: float = 0.05  # on colour logits
    lr_opacity: float = 0.05  # on opacity logits
    lr_radius: float = 0.02  # on log radius
    photometric: str = "l1"  # "l1" or "l2" on RGB
    mask_weight: float = 0.5  # |alpha − silhouette|
    temporal_weight: float = 10.0  # mean |x_t − x_{t−1}|² for frames t > 0
    patience: int = 20  # stop a frame after this many steps without a relative improvement > tolerance
    tolerance: float = 1e-3
    k: int = 8  # points composited per pixel
    opacity_weight: float = 0.05  # λ · mean(opacity) on frame 0: points no view needs fade out
    max_radius_scale: float = 2.0  # radii are capped at this many times the initial one
    photo_threshold: float = (
        0.1  # > 0: also carve surface voxels whose colours disagree across views by this std
    )
    photo_iterations: int = 30  # sweeps of photo-consistency carving
    prune_opacity: float = 0.05  # after frame 0, drop points whose opacity is below this (0: keep all)
    seed: int = 0


@dataclass
class FitResult:
    points: DynamicPoints
    losses: list[float] = field(default_factory=list)  # every step's loss, frames one after another
    seconds: float = 0.0


def _check_inputs(images, extrinsics, K) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """images (T, V, 3, H, W) in [0, 1]; extrinsics (V, 4, 4) or (T, V, 4, 4); K (3, 3). -> E as (T, V, 4, 4)"""
    images = torch.as_tensor(images)
    if images.ndim != 5 or images.shape[2] != 3 or not images.is_floating_point():
        raise KitInputError(f"images must be a float (T, V, 3, H, W) tensor, got shape {tuple(images.shape)}")
    if not bool(torch.isfinite(images).all()) or float(images.min()) < 0 or float(images.max()) > 1:
        raise KitInputError("images must be finite with values in [0, 1]")
    T, V = images.shape[:2]
    E = torch.as_tensor(extrinsics)
    if E.ndim == 4 and E.shape[0] != T:
        raise KitInputError(f"extrinsics (T, V, 4, 4) must have T = {T} frames, got shape {tuple(E.shape)}")
    if E.ndim == 3:
        E = E[None].expand(T, *E.shape)
    if E.ndim != 4 or E.shape[1] != V:
        raise KitInputError(f"images have {V} views but extrinsics have shape {tuple(E.shape)}")
    for t in range(T):
        check_cameras(E[t], K, views=V)
    return images.float(), E.float(), torch.as_tensor(K).float()


def _initial_colors(points, images, E, K) -> torch.Tensor:
    """Colour of each point in the view whose camera is nearest (a cheap visibility guess). -> (N, 3)"""
    V, _, H, W = images.shape
    centres = -(E[:, :3, :3].transpose(1, 2) @ E[:, :3, 3:]).squeeze(-1)  # (V, 3)
    view = torch.cdist(points, centres).argmin(1)  # (N,)
    x_cam = (E[view, :3, :3] @ points[..., None]).squeeze(-1) + E[view, :3, 3]  # (N, 3)
    u = (K[0, 0] * x_cam[:, 0] / x_cam[:, 2] + K[0, 2]).floor().long().clamp(0, W - 1)
    v = (K[1, 1] * x_cam[:, 1] / x_cam[:, 2] + K[1, 2]).floor().long().clamp(0, H - 1)
    return images[view, :, v, u]  # (N, 3)


def fit(
    images,
    extrinsics,
    K,
    config: FitConfig | None = None,
    progress: bool = True,
    callback: Callable[[int, int, float], None] | None = None,
) -> FitResult:
    """Fit dynamic points to a (T, V, 3, H, W) image matrix seen by known cameras; deterministic on CPU.

    The fit runs on one CPU thread: the splat's backward pass sums gradients with scatter-adds whose order depends
    on the threads, so with more threads two runs of the same seed drift apart in the last bits (and then more).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _fit(images, extrinsics, K, config, progress, callback)
    finally:
        torch.set_num_threads(threads)


def _fit(images, extrinsics, K, config, progress, callback) -> FitResult:
    start = time.perf_counter()
    config = FitConfig() if config is None else config
    # 1. Check inputs
    images, E, K = _check_inputs(images, extrinsics, K)
    T, V, _, H, W = images.shape
    checks.one_of("photometric", config.photometric, ("l1", "l2"))
    n_points = checks.integer("num_points", config.num_points, minimum=1)
    steps_first, steps = (checks.integer(n, getattr(config, n), minimum=0) for n in ("steps_first", "steps"))
    checks.positive("max_radius_scale", config.max_radius_scale)
    masks = metrics.silhouette(images).float()  # (T, V, 1, H, W)
    empty = [t for t in range(T) if not bool(masks[t].any())]
    if empty:
        raise KitInputError(f"frame(s) {empty} have empty silhouettes in every view (all-white images)")

    # 2. Carve frame 0 and sample points on the hull's surface
    g = torch.Generator().manual_seed(checks.integer("seed", config.seed))
    if config.photo_threshold > 0:
        hull = photo_carve(masks[0, :, 0] > 0.5, images[0], E[0], K, config.carve_resolution, config.bound,
                           config.photo_threshold, config.photo_iterations)  # fmt: skip
    else:
        hull = carve(masks[0, :, 0] > 0.5, E[0], K, config.carve_resolution, config.bound, surface_only=True)
    if len(hull) == 0:
        raise KitInputError("carving left no points: the silhouettes and cameras do not agree on any voxel")
    voxel = 2 * config.bound / config.carve_resolution
    pick = torch.randint(len(hull), (n_points,), generator=g)
    jitter = (torch.rand(n_points, 3, generator=g) - 0.5) * voxel
    x = hull[pick] + jitter  # (N, 3)
    r0 = 0.5 * voxel * math.sqrt(len(hull) / n_points)  # half the spacing of N points over the hull surface

    # 3. Parameters: logits for colour and opacity, log radius
    c0 = _initial_colors(x, images[0], E[0], K).clamp(0.02, 0.98)
    color_logit = torch.logit(c0).requires_grad_()
    opacity_logit = torch.full((n_points,), 2.0).requires_grad_()
    log_radius = torch.full((n_points,), math.log(r0)).requires_grad_()
    dev = images.device

    # 4. Frame by frame: frame 0 fits everything, later frames move the points only
    positions, losses = [], []
    bar = tqdm(total=T, desc="fitting frames", disable=not progress)
    for t in range(T):
        prev = x.detach().clone()
        xyz = prev.clone().requires_grad_()
        groups = [{"params": [xyz], "lr": config.lr_position}]
        if t == 0:
            groups += [{"params": [color_logit], "lr": config.lr_color},
                       {"params": [opacity_logit], "lr": config.lr_opacity},
                       {"params": [log_radius], "lr": config.lr_radius}]  # fmt: skip
        opt = torch.optim.Adam(groups)
        best, stale = math.inf, 0
        for step in range(steps_first if t == 0 else steps):
            rgb, alpha, _ = splat(
                xyz,
                torch.sigmoid(color_logit),
                torch.sigmoid(opacity_logit),
                log_radius.clamp(max=math.log(config.max_radius_scale * r0)).exp(),
                E[t],
                K,
                H,
                W,
                config.k,
            )  # fmt: skip  (V, 3, H, W), (V, 1, H, W)
            diff = rgb - images[t]
            photo = diff.abs().mean() if config.photometric == "l1" else (diff**2).mean()
            loss = photo + config.mask_weight * (alpha - masks[t]).abs().mean()
            if t == 0 and config.opacity_weight > 0:
                loss = loss + config.opacity_weight * torch.sigmoid(opacity_logit).mean()
            if t > 0:
                loss = loss + config.temporal_weight * ((xyz - prev) ** 2).sum(-1).mean()
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"fit diverged at frame {t} step {step} (loss {value}); lower the learning rate"
                )
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(value)
            if callback is not None:
                callback(t, step, value)
            if value < best * (1 - config.tolerance):
                best, stale = value, 0
            else:
                stale += 1
                if stale >= config.patience:
                    break
        x = xyz.detach()
        if t == 0 and config.prune_opacity > 0:
            alive = torch.sigmoid(opacity_logit.detach()) >= config.prune_opacity
            if not bool(alive.any()):  # never prune everything: keep the most opaque point
                alive = torch.zeros_like(alive).index_fill_(0, opacity_logit.detach().argmax().view(1), True)
            x = x[alive]
            color_logit = color_logit.detach()[alive].requires_grad_()
            opacity_logit = opacity_logit.detach()[alive].requires_grad_()
            log_radius = log_radius.detach()[alive].requires_grad_()
        positions.append(x)
        bar.set_postfix(loss=f"{losses[-1]:.4f}" if losses else "-")
        bar.update()
    bar.close()

    points = DynamicPoints(
        positions=torch.stack(positions).to(dev),  # (T, N, 3)
        colors=torch.sigmoid(color_logit).detach(),
        opacity=torch.sigmoid(opacity_logit).detach(),
        radius=log_radius.clamp(max=math.log(config.max_radius_scale * r0)).exp().detach(),  # capped radii
    )
    return FitResult(points, losses, time.perf_counter() - start)
