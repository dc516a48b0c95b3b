"""A dynamic point cloud: per-frame positions with colours, opacities and radii shared over time, rendered from
any orbit camera and saved as one PLY per frame."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from sv4d_kit import cameras, checks, synthetic
from sv4d_kit.checks import KitInputError
from sv4d_kit.recon4d.render import splat


@dataclass
class DynamicPoints:
    """N points over T frames; point i is the same surface point in every frame."""

    positions: torch.Tensor  # (T, N, 3) world positions per frame
    colors: torch.Tensor  # (N, 3) in [0, 1]
    opacity: torch.Tensor  # (N,) in [0, 1]
    radius: torch.Tensor  # (N,) world units

    @property
    def num_frames(self) -> int:
        return self.positions.shape[0]

    def render(
        self,
        azimuths_deg,
        elevations_deg,
        times,
        size: int,
        fov_deg: float = synthetic.DEFAULT_FOV,
        distance: float = synthetic.DEFAULT_RADIUS,
        k: int = 8,
    ):
        """Render frames `times` (frame indices) from orbit cameras (`cameras.orbit_extrinsics`, V views).

        -> rgb (T', V, 3, size, size), alpha (T', V, 1, size, size), depth (T', V, 1, size, size)
        """
        E = cameras.orbit_extrinsics(azimuths_deg, elevations_deg, distance).reshape(-1, 4, 4)  # (V, 4, 4)
        K = cameras.intrinsics(fov_deg, size, size)
        frames = [checks.integer("times", t, minimum=0, maximum=self.num_frames - 1) for t in _as_list(times)]
        if not frames:
            raise KitInputError("times must name at least one frame index")
        out = [
            splat(
                self.positions[t],
                self.colors,
                self.opacity,
                self.radius,
                E.to(self.positions),
                K,
                size,
                size,
                k,
            )
            for t in frames
        ]
        return tuple(torch.stack([o[i] for o in out]) for i in range(3))  # 3 × (T', V, C, H, W)

    def to_ply(self, folder) -> list[Path]:
        """Write `frame_XXX.ply` per frame (x, y, z float32, red/green/blue uint8, opacity/radius float32)."""
        from plyfile import PlyData, PlyElement

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        fields = [("x", "f4"), ("y", "f4"), ("z", "f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"),
                  ("opacity", "f4"), ("radius", "f4")]  # fmt: skip
        rgb = (self.colors.detach().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()  # (N, 3)
        paths = []
        for t in range(self.num_frames):
            xyz = self.positions[t].detach().cpu().float().numpy()  # (N, 3)
            vertex = np.empty(len(xyz), dtype=fields)
            vertex["x"], vertex["y"], vertex["z"] = xyz.T
            vertex["red"], vertex["green"], vertex["blue"] = rgb.T
            vertex["opacity"] = self.opacity.detach().cpu().float().numpy()
            vertex["radius"] = self.radius.detach().cpu().float().numpy()
            path = folder / f"frame_{t:03d}.ply"
            tmp = path.with_name(f".{path.name}.tmp")
            PlyData([PlyElement.describe(vertex, "vertex")]).write(str(tmp))
            os.replace(tmp, path)  # atomic: readers never see a half-written file
            paths.append(path)
        return paths


def _as_list(x) -> list:
    if isinstance(x, torch.Tensor | np.ndarray):
        return x.reshape(-1).tolist()
    return list(x) if isinstance(x, list | tuple | range) else [x]
