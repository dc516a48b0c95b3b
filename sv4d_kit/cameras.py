"""Camera geometry for SV4D: orbit poses, SV4D 2.0's polar/azimuth conventions, Plücker rays and epipolar geometry.

Conventions (used everywhere in the kit):
- World frame: right-handed, +z up. The object sits at the origin.
- A camera at azimuth `a` and elevation `e` (degrees) on a sphere of radius `r` sits at
  `eye = r * (cos e cos a, cos e sin a, sin e)` and looks at the origin. Azimuth grows counter-clockwise seen from
  above (+z); elevation 90° is straight above.
- Camera axes are OpenCV's: +x right, +y down, +z forward (viewing direction).
- `extrinsics` are world-to-camera 4×4 matrices `[R | t]` (x_cam = R x_world + t); `c2w` is their inverse.
- Intrinsics are 3×3 pinhole matrices in pixels with the principal point at the image centre; pixel (u, v) has its
  centre at (u + 0.5, v + 0.5).
"""

from __future__ import annotations

import math

import torch


def _check_finite(name: str, value, lo: float | None = None, hi: float | None = None, lo_open: bool = False):
    t = torch.as_tensor(value, dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite numbers, got {value!r}")
    if lo is not None and (t <= lo).any() if lo_open else lo is not None and (t < lo).any():
        bound = f"> {lo}" if lo_open else f">= {lo}"
        raise ValueError(f"{name} must be {bound}" + (f" and <= {hi}" if hi is not None else "") + f", got {value!r}")
    if hi is not None and (t > hi).any():
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value!r}")


def look_at(eye: torch.Tensor, target: torch.Tensor | None = None, up: torch.Tensor | None = None) -> torch.Tensor:
    """World-to-camera extrinsics (OpenCV axes) for cameras at `eye` looking at `target`. (..., 3) -> (..., 4, 4)"""
    eye = torch.as_tensor(eye, dtype=torch.float64)
    target = torch.zeros_like(eye) if target is None else torch.as_tensor(target, dtype=torch.float64).expand_as(eye)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64) if up is None else torch.as_tensor(up, dtype=torch.float64)
    fwd = target - eye
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


def orbit_eye(azimuth_deg, elevation_deg, radius) -> torch.Tensor:
    """Camera centres on a sphere around the origin. Broadcasts its inputs; (...,) -> (..., 3)"""
    _check_finite("elevation", elevation_deg, -90.0, 90.0)
    _check_finite("azimuth", azimuth_deg)
    _check_finite("radius", radius, 0.0, lo_open=True)
    a, e, r = torch.broadcast_tensors(
        *(torch.as_tensor(v, dtype=torch.float64) for v in (azimuth_deg, elevation_deg, radius))
    )
    a, e = torch.deg2rad(a), torch.deg2rad(e)
    return torch.stack([r * torch.cos(e) * torch.cos(a), r * torch.cos(e) * torch.sin(a), r * torch.sin(e)], dim=-1)


def orbit_extrinsics(azimuth_deg, elevation_deg, radius) -> torch.Tensor:
    """World-to-camera matrices of cameras on an orbit, looking at the origin. (...,) -> (..., 4, 4)"""
    return look_at(orbit_eye(azimuth_deg, elevation_deg, radius))


def intrinsics(fov_deg: float, height: int, width: int | None = None) -> torch.Tensor:
    """Pinhole intrinsics for a vertical field of view, principal point at the image centre. -> (3, 3)"""
    width = height if width is None else width
    _check_finite("fov_deg", fov_deg, 0.0, 180.0, lo_open=True)
    if fov_deg >= 180.0:
        raise ValueError(f"fov_deg must be in (0, 180), got {fov_deg!r}")
    for name, v in (("height", height), ("width", width)):
        if int(v) != v or v < 8:
            raise ValueError(f"{name} must be an integer >= 8 pixels, got {v!r}")
    f = 0.5 * height / math.tan(math.radians(fov_deg) / 2)
    return torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float32)
