"""A Make-It-4D-style warp baseline: lift the input view's pixels to 3D with a depth map and splat them elsewhere.

Every input pixel with a finite, positive depth becomes one world point (`cameras.unproject_depth`), coloured by
its pixel. For output frame t the points are splatted into each target camera with a z-buffer: each point lands on
the one pixel its projection falls in, the nearest point wins, and pixels no point reaches stay white with alpha 0.
There is no hole filling on purpose: the holes are what the input view could not see, the part a generative
model has to invent.

Without `motion` frame t is splatted from input frame t's own points. With `motion(points, t_from, t_to)` (frame
indices of the clip; `synthetic_motion` gives the ground truth of a synthetic scene) it is Make-It-4D's setting:
one image animated, so every frame t is splatted from input frame 0's points moved from frame 0 to frame t. (Points
of all frames together would fill holes with surface seen at other times; a single image has no such help.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from sv4d_kit import cameras, synthetic
from sv4d_kit.checks import KitInputError

Motion = Callable[[torch.Tensor, int, int], torch.Tensor]


def _check(rgb, depth, E_in, K, targets_E):
    rgb = torch.as_tensor(rgb)
    if (
        rgb.ndim != 4
        or rgb.shape[1] != 3
        or not rgb.is_floating_point()
        or not bool(torch.isfinite(rgb).all())
    ):
        raise KitInputError(f"rgb must be finite (T, 3, H, W) images in [0, 1], got {tuple(rgb.shape)}")
    T, _, H, W = rgb.shape
    depth = torch.as_tensor(depth)
    if depth.shape != (T, 1, H, W) or not depth.is_floating_point() or bool(torch.isnan(depth).any()):
        raise KitInputError(
            f"depth must be (T, 1, H, W) = {(T, 1, H, W)} without NaN, got {tuple(depth.shape)}"
        )
    E_in = torch.as_tensor(E_in, dtype=torch.float32)
    if E_in.shape != (4, 4) or not bool(torch.isfinite(E_in).all()):
        raise KitInputError(f"E_in must be one finite (4, 4) world-to-camera matrix, got {tuple(E_in.shape)}")
    K = torch.as_tensor(K, dtype=torch.float32)
    if K.shape != (3, 3) or not bool(torch.isfinite(K).all()) or not (K[0, 0] > 0 and K[1, 1] > 0):
        raise KitInputError(
            f"K must be finite (3, 3) intrinsics with positive focal lengths, got {tuple(K.shape)}"
        )
    targets_E = torch.as_tensor(targets_E, dtype=torch.float32)
    if targets_E.ndim != 3 or targets_E.shape[1:] != (4, 4) or len(targets_E) == 0:
        raise KitInputError(
            f"targets_E must be (V, 4, 4) world-to-camera matrices, got {tuple(targets_E.shape)}"
        )
    if not bool(torch.isfinite(targets_E).all()):
        raise KitInputError("targets_E must be finite")
    return rgb.float().clamp(0, 1), depth.float(), E_in, K, targets_E


def splat(
    points: torch.Tensor, colors: torch.Tensor, E: torch.Tensor, K: torch.Tensor, height: int, width: int
):
    """Z-buffer splat of world points into cameras: one pixel per point, nearest wins, white where none lands.

    points (M, 3), colors (M, 3), E (V, 4, 4), K (3, 3) -> (images (V, 3, H, W), alpha (V, 1, H, W))
    """
    V = E.shape[0]
    images = torch.ones(V, 3, height * width)
    alpha = torch.zeros(V, 1, height * width)
    if len(points) == 0:
        return images.reshape(V, 3, height, width), alpha.reshape(V, 1, height, width)
    uv, z = cameras.project_points(
        points[None].expand(V, -1, -1), E, K[None].expand(V, 3, 3)
    )  # (V, M, 2), (V, M)
    col, row = torch.floor(uv[..., 0]), torch.floor(uv[..., 1])
    ok = (z > 1e-6) & (col >= 0) & (col < width) & (row >= 0) & (row < height) & torch.isfinite(uv).all(-1)
    for v in range(V):
        keep = ok[v].nonzero()[:, 0]
        if len(keep) == 0:
            continue
        pix = (row[v, keep] * width + col[v, keep]).long()
        order = torch.argsort(
            z[v, keep]
        )  # nearest first, then grouped by pixel (stable): first of a group wins
        order = order[torch.argsort(pix[order], stable=True)]
        pix_sorted = pix[order]
        first = torch.ones_like(pix_sorted, dtype=torch.bool)
        first[1:] = pix_sorted[1:] != pix_sorted[:-1]
        winners = keep[order[first]]
        images[v, :, pix_sorted[first]] = colors[winners].T
        alpha[v, 0, pix_sorted[first]] = 1.0
    return images.reshape(V, 3, height, width), alpha.reshape(V, 1, height, width)


def warp_baseline(
    rgb: torch.Tensor,
    depth: torch.Tensor,
    E_in: torch.Tensor,
    K: torch.Tensor,
    targets_E: torch.Tensor,
    motion: Motion | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Warp the input view's clip into target cameras through its depth (see the module docstring).

    rgb (T, 3, H, W) in [0, 1] on white, depth (T, 1, H, W) camera z (0 or inf: background), E_in (4, 4) the input
    camera, K (3, 3), targets_E (V, 4, 4). `motion(points (M, 3), t_from, t_to) -> (M, 3)` moves input frame
    t_from's points (its valid pixels in row-major order) to frame t_to; with it, frame 0 is animated.
    -> (images (T, V, 3, H, W), alpha (T, V, 1, H, W)); alpha is 1 where a point landed and 0 in the holes.
    """
    rgb, depth, E_in, K, targets_E = _check(rgb, depth, E_in, K, targets_E)
    if motion is not None and not callable(motion):
        raise KitInputError(f"motion must be None or a callable(points, t_from, t_to), got {motion!r}")
    T, _, H, W = rgb.shape
    valid = (torch.isfinite(depth) & (depth > 0)).reshape(T, H * W)
    world = cameras.unproject_depth(torch.where(valid.reshape(T, 1, H, W), depth, 1.0), E_in, K)
    points = [world[t].reshape(H * W, 3)[valid[t]] for t in range(T)]
    colors = [rgb[t].reshape(3, H * W).T[valid[t]] for t in range(T)]
    images, alpha = [], []
    for t in range(T):
        if motion is None:
            p, c = points[t], colors[t]
        else:  # frame 0's points, animated to frame t
            p = torch.as_tensor(motion(points[0], 0, t), dtype=torch.float32)
            if p.shape != points[0].shape:
                raise KitInputError(
                    f"motion must return (M, 3) = {tuple(points[0].shape)} points, got {tuple(p.shape)}"
                )
            c = colors[0]
        img, a = splat(p, c, targets_E, K, H, W)
        images.append(img)
        alpha.append(a)
    return torch.stack(images), torch.stack(alpha)


def synthetic_motion(scene: synthetic.Scene, part: torch.Tensor, times) -> Motion:
    """The ground-truth `motion` of a synthetic scene for `warp_baseline`: input frame s's points are its pixels
    with part >= 0 (row-major), moved with `synthetic.scene_motion` from times[s] to times[t].

    part (T, 1, H, W) the input view's `RenderOutput.part`, times (T,) the clip's times in [0, 1].
    """
    part = torch.as_tensor(part)
    times = [float(x) for x in torch.as_tensor(times).reshape(-1)]
    if part.ndim != 4 or part.shape[0] != len(times):
        raise KitInputError(f"part must be (T={len(times)}, 1, H, W), got {tuple(part.shape)}")
    ids = [p.reshape(-1)[p.reshape(-1) >= 0] for p in part]

    def motion(points: torch.Tensor, t_from: int, t_to: int) -> torch.Tensor:
        if len(ids[t_from]) != len(points):
            raise KitInputError(
                f"frame {t_from} has {len(ids[t_from])} object pixels but {len(points)} points were given"
            )
        return synthetic.scene_motion(scene, ids[t_from], points, times[t_from], times[t_to])

    return motion
