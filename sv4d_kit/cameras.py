"""Camera geometry for SV4D: orbit poses, SV4D 2.0's polar/azimuth conventions, Plücker rays and epipolar geometry.

Conventions (used everywhere in the kit):
- World frame: right-handed, +z up. The object sits at the origin.
- A camera at azimuth `a` and elevation `e` (degrees) on a sphere of radius `r` sits at
  `eye = r * (cos e cos a, cos e sin a, sin e)` and looks at the origin. Azimuth grows counter-clockwise seen from
  above (+z); elevation 90° is straight above.
- Camera axes are OpenCV's: +x right, +y down, +z forward (viewing direction).
- `extrinsics` are world-to-camera 4×4 matrices `[R | t]` (x_cam = R x_world + t); `c2w` is their inverse.
- Intrinsics are 3×3 pinhole matrices in pixels with the principal point at the image centre; pixel (u, v) has its
  centre at (u + 0.5, v + 0.5). `u` is the column (x), `v` the row (y).
- Depth is the camera-space z of a point (distance along the optical axis), not the distance along the ray.

SV4D 2.0 (Stability AI's `simple_video_sample_4d2.py`) describes a view by its polar angle `90° − elevation` and its
azimuth relative to the input view (view 0). We assume its azimuth grows in the same sense as ours (the sense cannot
be checked without the released weights).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sv4d_kit import checks
from sv4d_kit.checks import KitInputError

# Defaults of the two released SV4D 2.0 variants: time frames per chunk T, novel views V and the novel views'
# azimuths relative to the input view (degrees; the script's `azimuths_deg` minus its leading 0). Elevation 0.
SV4D_VARIANTS = {
    "sv4d2": {"T": 12, "V": 4, "azimuths_deg": (60.0, 120.0, 180.0, 240.0)},
    "sv4d2_8views": {"T": 5, "V": 8, "azimuths_deg": (30.0, 75.0, 120.0, 165.0, 210.0, 255.0, 300.0, 330.0)},
}


def _check_range(name: str, value, lo: float | None = None, hi: float | None = None, lo_open: bool = False):
    """Return `value` as a float64 tensor after checking it is finite and inside [lo, hi] (or (lo, hi])."""
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError) as err:
        raise KitInputError(f"{name} must be a number or a list of numbers, got {value!r}") from err
    below = lo is not None and bool((t <= lo).any() if lo_open else (t < lo).any())
    above = hi is not None and bool((t > hi).any())
    if not bool(torch.isfinite(t).all()) or below or above:
        left = "(-inf" if lo is None else ("(" if lo_open else "[") + f"{lo:g}"
        right = "inf)" if hi is None else f"{hi:g}]"
        raise KitInputError(f"{name} must be finite and in {left}, {right}, got {value!r}")
    return t


def _check_pixels(name: str, value: int, minimum: int = 8) -> int:
    return checks.integer(f"{name} (pixels)", value, minimum=minimum)


def _check_matrices(name: str, value, size: int) -> torch.Tensor:
    t = torch.as_tensor(value)
    if t.ndim < 2 or t.shape[-2:] != (size, size) or not bool(torch.isfinite(t).all()):
        raise KitInputError(
            f"{name} must be finite (..., {size}, {size}) matrices, got shape {tuple(t.shape)}"
        )
    return t


# ----------------------------------------------------------------------------------------------------------------
# Poses and intrinsics


def look_at(
    eye: torch.Tensor, target: torch.Tensor | None = None, up: torch.Tensor | None = None
) -> torch.Tensor:
    """World-to-camera extrinsics (OpenCV axes) for cameras at `eye` looking at `target`. (..., 3) -> (..., 4, 4)"""
    eye = torch.as_tensor(eye, dtype=torch.float64)
    target = (
        torch.zeros_like(eye)
        if target is None
        else torch.as_tensor(target, dtype=torch.float64).expand_as(eye)
    )
    up = (
        torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
        if up is None
        else torch.as_tensor(up, dtype=torch.float64)
    )
    fwd = target - eye
    if bool((fwd.norm(dim=-1) < 1e-12).any()):
        raise KitInputError("eye must differ from target")
    fwd = fwd / fwd.norm(dim=-1, keepdim=True)
    right = torch.linalg.cross(fwd, up.expand_as(fwd), dim=-1)
    # Straight above/below: the up vector is parallel to the view direction; pick a stable fallback.
    degenerate = right.norm(dim=-1, keepdim=True) < 1e-9
    alt = torch.linalg.cross(fwd, torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64).expand_as(fwd), dim=-1)
    right = torch.where(degenerate, alt, right)
    right = right / right.norm(dim=-1, keepdim=True)
    down = torch.linalg.cross(fwd, right, dim=-1)
    R = torch.stack([right, down, fwd], dim=-2)  # rows are the camera axes in world coordinates
    t = -(R @ eye.unsqueeze(-1)).squeeze(-1)
    E = torch.zeros(*eye.shape[:-1], 4, 4, dtype=torch.float64)
    E[..., :3, :3] = R
    E[..., :3, 3] = t
    E[..., 3, 3] = 1.0
    return E.float()


def _broadcast_angles(azimuth_deg, elevation_deg, radius=None) -> tuple[torch.Tensor, ...]:
    """Validate orbit angles (and radius) and broadcast them; lists of different lengths are an error."""
    a = _check_range("azimuth_deg", azimuth_deg)
    e = _check_range("elevation_deg", elevation_deg, -90.0, 90.0)
    values = [a, e]
    if radius is not None:
        values.append(_check_range("radius", radius, 0.0, lo_open=True))
    try:
        return torch.broadcast_tensors(*values)
    except RuntimeError as err:
        shapes = ", ".join(str(tuple(v.shape)) for v in values)
        raise KitInputError(
            f"azimuth_deg, elevation_deg and radius must have matching lengths, got {shapes}"
        ) from err


def orbit_eye(azimuth_deg, elevation_deg, radius) -> torch.Tensor:
    """Camera centres on a sphere around the origin. Broadcasts its inputs; (...,) -> (..., 3) float64"""
    a, e, r = _broadcast_angles(azimuth_deg, elevation_deg, radius)
    a, e = torch.deg2rad(a), torch.deg2rad(e)
    return torch.stack(
        [r * torch.cos(e) * torch.cos(a), r * torch.cos(e) * torch.sin(a), r * torch.sin(e)], dim=-1
    )


def orbit_extrinsics(azimuth_deg, elevation_deg, radius) -> torch.Tensor:
    """World-to-camera matrices of cameras on an orbit, looking at the origin. (...,) -> (..., 4, 4)"""
    return look_at(orbit_eye(azimuth_deg, elevation_deg, radius))


def intrinsics(fov_deg: float, height: int, width: int | None = None) -> torch.Tensor:
    """Pinhole intrinsics for a vertical field of view, square pixels, principal point at the image centre. -> (3, 3)"""
    width = height if width is None else width
    fov = _check_range("fov_deg", fov_deg)
    if fov.ndim != 0 or not 0.0 < float(fov) < 180.0:
        raise KitInputError(f"fov_deg must be one number in (0, 180), got {fov_deg!r}")
    fov = float(fov)
    height, width = _check_pixels("height", height), _check_pixels("width", width)
    f = 0.5 * height / math.tan(math.radians(fov) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float32)


def camera_centers(extrinsics: torch.Tensor) -> torch.Tensor:
    """World positions of the camera centres, `-Rᵀ t`. (..., 4, 4) -> (..., 3)"""
    E = _check_matrices("extrinsics", extrinsics, 4)
    R, t = E[..., :3, :3], E[..., :3, 3]
    return -(R.transpose(-1, -2) @ t.unsqueeze(-1)).squeeze(-1)


def invert_extrinsics(extrinsics: torch.Tensor) -> torch.Tensor:
    """World-to-camera -> camera-to-world (and back) for rigid `[R | t]` matrices. (..., 4, 4) -> (..., 4, 4)"""
    E = _check_matrices("extrinsics", extrinsics, 4)
    out = torch.zeros_like(E)
    Rt = E[..., :3, :3].transpose(-1, -2)
    out[..., :3, :3] = Rt
    out[..., :3, 3] = -(Rt @ E[..., :3, 3].unsqueeze(-1)).squeeze(-1)
    out[..., 3, 3] = 1.0
    return out


def project_points(points: torch.Tensor, extrinsics: torch.Tensor, K: torch.Tensor):
    """Project world points into cameras: pixel coordinates (continuous, pixel centres at +0.5) and depth z.

    points (..., P, 3) with extrinsics (..., 4, 4) and K (..., 3, 3) (batches broadcast) -> ((..., P, 2), (..., P))
    """
    E = _check_matrices("extrinsics", extrinsics, 4).to(points.dtype)
    K = _check_matrices("K", K, 3).to(points.dtype)
    x_cam = points @ E[..., :3, :3].transpose(-1, -2) + E[..., None, :3, 3]  # R x + t
    uvw = x_cam @ K.transpose(-1, -2)
    return uvw[..., :2] / uvw[..., 2:3], x_cam[..., 2]


def pixel_centers(height: int, width: int, dtype=torch.float32) -> torch.Tensor:
    """Continuous coordinates (u + 0.5, v + 0.5) of every pixel centre, row-major. -> (H*W, 2)"""
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype), torch.arange(width, dtype=dtype), indexing="ij")
    return torch.stack([u.reshape(-1) + 0.5, v.reshape(-1) + 0.5], dim=-1)


def pixel_rays(extrinsics: torch.Tensor, K: torch.Tensor, pixels: torch.Tensor):
    """World-space rays through continuous pixel coordinates: origins (N, 3) and unit directions (N, P, 3).

    extrinsics (N, 4, 4), K (3, 3) or (N, 3, 3), pixels (P, 2) or (N, P, 2).
    """
    E = _check_matrices("extrinsics", extrinsics, 4).float()
    K = _check_matrices("K", K, 3).float().expand(E.shape[0], 3, 3)
    pixels = pixels.float().expand(E.shape[0], *pixels.shape[-2:])
    homog = torch.cat([pixels, torch.ones_like(pixels[..., :1])], dim=-1)  # (N, P, 3)
    d_cam = homog @ torch.linalg.inv(K).transpose(-1, -2)
    d_world = d_cam @ E[:, :3, :3]  # Rᵀ d for each row vector d
    return camera_centers(E), d_world / d_world.norm(dim=-1, keepdim=True)


def unproject_depth(depth: torch.Tensor, extrinsics: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """World points of every pixel centre from a z-depth map. depth (N, 1, H, W) or (N, H, W) -> (N, H, W, 3)"""
    depth = depth.reshape(depth.shape[0], depth.shape[-2], depth.shape[-1]) if depth.ndim == 4 else depth
    N, H, W = depth.shape
    E = _check_matrices("extrinsics", extrinsics, 4).float().expand(N, 4, 4)
    K = _check_matrices("K", K, 3).float().expand(N, 3, 3)
    pix = pixel_centers(H, W)
    homog = torch.cat([pix, torch.ones_like(pix[:, :1])], dim=-1)  # (H*W, 3)
    x_cam = (homog @ torch.linalg.inv(K).transpose(-1, -2)) * depth.reshape(N, -1, 1)  # z = depth
    x_world = (x_cam - E[:, None, :3, 3]) @ E[:, :3, :3]  # Rᵀ (x_cam - t)
    return x_world.reshape(N, H, W, 3)


# ----------------------------------------------------------------------------------------------------------------
# Trajectories


def orbit_azimuths(n: int, start: float = 0.0) -> torch.Tensor:
    """`n` azimuths (degrees) evenly covering a full 360° turn, starting at `start`, wrapped to [0, 360). -> (n,)"""
    n = checks.integer("n", n, minimum=1)
    start = float(_check_range("start", start))
    return (start + 360.0 * torch.arange(n, dtype=torch.float64) / n) % 360.0


def spiral_angles(
    n: int, elevation_range: tuple[float, float] = (-20.0, 30.0), turns: float = 1.0, start: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """A spiral trajectory: azimuth turns `turns`×360° while elevation goes linearly across `elevation_range`.

    Returns (azimuths_deg (n,), elevations_deg (n,)); the first camera is at (start, elevation_range[0]).
    """
    n = checks.integer("n", n, minimum=2)
    if len(elevation_range) != 2:
        raise KitInputError(f"elevation_range must be two numbers (low, high), got {elevation_range!r}")
    lo, hi = _check_range("elevation_range", elevation_range, -90.0, 90.0).tolist()
    turns = float(_check_range("turns", turns))
    start = float(_check_range("start", start))
    s = torch.arange(int(n), dtype=torch.float64) / int(n)
    azimuths = (start + 360.0 * turns * s) % 360.0
    elevations = torch.linspace(lo, hi, int(n), dtype=torch.float64)
    return azimuths, elevations


def camera_trajectory(azimuths_deg, elevations_deg=0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate a custom list of views: azimuths (list) and elevations (one number or a list of the same length).

    Returns float64 (azimuths_deg (n,), elevations_deg (n,)).
    """
    a = _check_range("azimuths_deg", azimuths_deg)
    if a.ndim != 1 or a.numel() == 0:
        raise KitInputError(f"azimuths_deg must be a non-empty list of numbers, got {azimuths_deg!r}")
    e = _check_range("elevations_deg", elevations_deg, -90.0, 90.0)
    if e.ndim == 0:
        e = e.expand_as(a).clone()
    if e.shape != a.shape:
        raise KitInputError(
            f"elevations_deg must be one number or a list of {a.numel()} values (one per azimuth), got {e.numel()}"
        )
    return a, e


# ----------------------------------------------------------------------------------------------------------------
# SV4D 2.0 angle conventions


def _check_variant(variant: str) -> dict:
    if variant not in SV4D_VARIANTS:
        raise KitInputError(f"variant must be one of {sorted(SV4D_VARIANTS)}, got {variant!r}")
    return SV4D_VARIANTS[variant]


def default_azimuths(variant: str = "sv4d2", include_input_view: bool = False) -> list[float]:
    """The novel views' azimuths (degrees, relative to the input view) the released script uses by default:
    4 views for "sv4d2", 8 for "sv4d2_8views". With `include_input_view`, the input view's 0 comes first."""
    azimuths = list(_check_variant(variant)["azimuths_deg"])
    return [0.0, *azimuths] if include_input_view else azimuths


def default_views(
    variant: str = "sv4d2", elevation_deg: float = 0.0, input_azimuth_deg: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute (elevations_deg, azimuths_deg) of the V+1 default views of a variant, view 0 = input view.

    Feed them to `sv4d_relative_angles` (what the model sees) and `orbit_extrinsics` (the matching cameras).
    """
    rel = torch.tensor(default_azimuths(variant, include_input_view=True), dtype=torch.float64)
    elevation = _check_range("elevation_deg", elevation_deg, -90.0, 90.0)
    azimuths = (rel + _check_range("input_azimuth_deg", input_azimuth_deg)) % 360.0
    return elevation.expand_as(azimuths).clone(), azimuths


def sv4d_polar_deg(elevation_deg):
    """SV4D's polar angle of a view: `90° − elevation` (0° looks straight down from above)."""
    return 90.0 - _check_range("elevation_deg", elevation_deg, -90.0, 90.0)


def sv4d_relative_angles(elevations_deg, azimuths_deg, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The polar and azimuth radians SV4D 2.0's conditioner receives for one chunk of T frames, in (t v) order.

    `elevations_deg` (one number or V+1 values) and `azimuths_deg` (V+1 values) describe view 0 (the input view)
    followed by the V novel views. Follows `simple_video_sample_4d2.py` step by step in float64:
        polar_i = rad(90 − e_i),  azim_i = rad((a_i − a_V) mod 360)
        polar   = (tile(polar_1..V, T) − polar_0 + π/2) mod 2π
        azimuth = (tile(azim_1..V, T) − azim_0) mod 2π
    so an input-level novel view has polar π/2 and the azimuth is measured from the input view.
    Returns (polar_rad (T*V,), azimuth_rad (T*V,)) float64.
    """
    azimuths, elevations = camera_trajectory(azimuths_deg, elevations_deg)
    if azimuths.numel() < 2:
        raise KitInputError(
            f"azimuths_deg must hold the input view and at least one novel view, got {azimuths_deg!r}"
        )
    T = checks.integer("T", T, minimum=1)
    e, a = elevations.numpy(), azimuths.numpy()
    polars = np.deg2rad(90.0 - e)
    azims = np.deg2rad((a - a[-1]) % 360.0)
    polar = np.tile(polars[1:], int(T))  # (V,) -> (T*V,) in (t v) order
    azim = np.tile(azims[1:], int(T))
    polar = (polar - polars[0] + np.pi / 2) % (np.pi * 2)
    azim = (azim - azims[0]) % (np.pi * 2)
    return torch.from_numpy(polar), torch.from_numpy(azim)


# ----------------------------------------------------------------------------------------------------------------
# Plücker rays (CamCo) and epipolar geometry


def plucker_rays(extrinsics: torch.Tensor, K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Per-pixel Plücker coordinates of the rays through the pixel centres, as CamCo conditions on them.

    Channels 0-2 are the moment `o × d`, channels 3-5 the unit direction `d` (world frame, o = camera centre).
    extrinsics (N, 4, 4), K (3, 3) or (N, 3, 3) -> (N, 6, H, W)
    """
    height, width = _check_pixels("height", height, 1), _check_pixels("width", width, 1)
    E = _check_matrices("extrinsics", extrinsics, 4)
    if E.ndim != 3:
        raise KitInputError(f"extrinsics must have shape (N, 4, 4), got {tuple(E.shape)}")
    origins, dirs = pixel_rays(E, K, pixel_centers(height, width))  # (N, 3), (N, H*W, 3)
    moments = torch.linalg.cross(origins[:, None].expand_as(dirs), dirs, dim=-1)
    rays = torch.cat([moments, dirs], dim=-1)  # (N, H*W, 6)
    return rays.transpose(1, 2).reshape(E.shape[0], 6, height, width)  # (N, H*W, 6) -> (N, 6, H, W)


def _skew(v: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(v[..., 0])
    x, y, z = v.unbind(-1)
    rows = [torch.stack([zero, -z, y], -1), torch.stack([z, zero, -x], -1), torch.stack([-y, x, zero], -1)]
    return torch.stack(rows, dim=-2)


def fundamental_matrix(
    K_i: torch.Tensor, E_i: torch.Tensor, K_j: torch.Tensor, E_j: torch.Tensor
) -> torch.Tensor:
    """Fundamental matrix F with `x_jᵀ F x_i = 0` for homogeneous pixels (u, v, 1) of the same point in views i, j.

    F = K_j⁻ᵀ [t]ₓ R K_i⁻¹ with the relative pose R = R_j R_iᵀ, t = t_j − R t_i. Batches broadcast. -> (..., 3, 3)
    """
    K_i, K_j = (_check_matrices(n, k, 3).double() for n, k in (("K_i", K_i), ("K_j", K_j)))
    E_i, E_j = (_check_matrices(n, e, 4).double() for n, e in (("E_i", E_i), ("E_j", E_j)))
    R = E_j[..., :3, :3] @ E_i[..., :3, :3].transpose(-1, -2)
    t = E_j[..., :3, 3] - (R @ E_i[..., :3, 3].unsqueeze(-1)).squeeze(-1)
    F = torch.linalg.inv(K_j).transpose(-1, -2) @ _skew(t) @ R @ torch.linalg.inv(K_i)
    # The scale of F is arbitrary: make it unit norm (F = 0 when the two camera centres coincide).
    return (F / F.flatten(-2).norm(dim=-1).clamp_min(1e-300)[..., None, None]).float()


def epipolar_lines(F: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Epipolar lines in view j of pixels of view i: (a, b, c) with a² + b² = 1, so |a u + b v + c| is the distance
    in pixels of (u, v) from the line. F (..., 3, 3), pixels (..., M, 2) continuous coordinates -> (..., M, 3)"""
    F = _check_matrices("F", F, 3).float()
    if pixels.shape[-1] != 2:
        raise KitInputError(f"pixels must have shape (..., M, 2), got {tuple(pixels.shape)}")
    homog = torch.cat([pixels.float(), torch.ones_like(pixels[..., :1], dtype=torch.float32)], dim=-1)
    lines = homog @ F.transpose(-1, -2)  # rows are F x_i
    return lines / lines[..., :2].norm(dim=-1, keepdim=True).clamp_min(1e-12)


def epipolar_mask(
    F: torch.Tensor, height: int, width: int, pixels_i: torch.Tensor | None = None, k_px: float = 1.0
) -> torch.Tensor:
    """Which pixels of view j (H×W) lie within `k_px` pixels of the epipolar line of each query pixel of view i.

    `pixels_i` (..., M, 2) are continuous coordinates; None means every pixel centre of an H×W view i in row-major
    order (M = H*W, so the result reshapes to an (H*W, H*W) attention mask). Returns bool (..., M, H, W).
    """
    height, width = _check_pixels("height", height, 1), _check_pixels("width", width, 1)
    k_px = float(_check_range("k_px", k_px, 0.0))
    if pixels_i is None:
        pixels_i = pixel_centers(height, width)
    lines = epipolar_lines(F, pixels_i)  # (..., M, 3)
    pix_j = pixel_centers(height, width)
    homog_j = torch.cat([pix_j, torch.ones_like(pix_j[:, :1])], dim=-1)  # (H*W, 3)
    dist = (lines @ homog_j.T).abs()  # (..., M, H*W)
    return (dist <= k_px).reshape(*dist.shape[:-1], height, width)
