"""From a generated image matrix to a 4D asset: fit the points to its views, then a smooth orbit and point clouds.

points = fit_matrix(out.images, out.cameras)          # what `generate(..., reconstruct=True)` does
frames = smooth_orbit(points, elevation_deg=10.0)     # (72, 3, 128, 128): one revolution, time advancing
"""

from __future__ import annotations

from pathlib import Path

import torch

from sv4d_kit import cameras, checks, synthetic
from sv4d_kit.recon4d.fit import FitConfig, FitResult, fit
from sv4d_kit.recon4d.points import DynamicPoints

ORBIT_ANGLES = 72  # camera angles per revolution of orbit_smooth.mp4 (5° apart)
ORBIT_SCALE = 4  # orbit_smooth.mp4 is rendered at this many times the model's image size


def fit_matrix(images: torch.Tensor, camera_info: dict, config: FitConfig | None = None, progress: bool = True,
               callback=None) -> FitResult:  # fmt: skip
    """Fit dynamic points to a pipeline's image matrix (T, V+1, 3, H, W), view 0 included, with the cameras of its
    `cameras` record (absolute azimuths and elevations): orbit cameras at the kit's distance and field of view."""
    size = images.shape[-1]
    E = cameras.orbit_extrinsics(
        camera_info["azimuths_deg"], camera_info["elevations_deg"], synthetic.DEFAULT_RADIUS
    )
    K = cameras.intrinsics(synthetic.DEFAULT_FOV, size, size)
    return fit(images, E, K, config or FitConfig(), progress=progress, callback=callback)


def smooth_orbit(points: DynamicPoints, elevation_deg: float, start_azimuth_deg: float = 0.0,
                 angles: int = ORBIT_ANGLES, size: int = 128) -> torch.Tensor:  # fmt: skip
    """One revolution of the camera in `angles` steps while time advances one frame a step (and loops), rendered
    from the points at `size` px. -> (angles, 3, size, size) in [0, 1]"""
    angles = checks.integer("angles", angles, minimum=1)
    T = points.num_frames
    azimuths = [start_azimuth_deg + 360.0 * k / angles for k in range(angles)]
    frames = torch.empty(angles, 3, size, size)
    for t in range(T):  # every angle that shows frame t, in one render call
        steps = list(range(t, angles, T))
        if steps:
            rgb, _, _ = points.render([azimuths[k] for k in steps], elevation_deg, times=[t], size=size)
            frames[steps] = (
                rgb[0].detach().cpu().clamp(0, 1)
            )  # (1, len(steps), 3, S, S) -> (len(steps), 3, S, S)
    return frames


def write_reconstruction(folder: Path, points: DynamicPoints, elevation_deg: float, start_azimuth_deg: float,
                         size: int, fps: float = 8.0) -> list[str]:  # fmt: skip
    """Write `orbit_smooth.mp4` and `points/frame_XXX.ply` into `folder`; returns the files' relative names."""
    from sv4d_kit.media import to_uint8, write_video

    frames = smooth_orbit(points, elevation_deg, start_azimuth_deg, ORBIT_ANGLES, size)
    write_video(Path(folder) / "orbit_smooth.mp4", to_uint8(frames), fps)
    plys = points.to_ply(Path(folder) / "points")
    return ["orbit_smooth.mp4", *(f"points/{p.name}" for p in plys)]
