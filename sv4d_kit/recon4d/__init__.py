"""4K4D-style dynamic point representation fitted to an image matrix: carve, splat, fit, render novel views.

from sv4d_kit import evaluation
from sv4d_kit.recon4d import fit, FitConfig
scene = evaluation.heldout_scene(0, 0, [0, 72, 144, 216, 288], size=32, frames=3)
result = fit(scene.images, scene.extrinsics, scene.K, FitConfig(steps_first=100))
rgb, alpha, depth = result.points.render([36.0, 108.0], 10.0, times=[0, 1, 2], size=64)  # (3, 2, ., 64, 64)
result.points.to_ply("points/")  # frame_000.ply, frame_001.ply, ...
"""

from sv4d_kit.recon4d.carve import carve
from sv4d_kit.recon4d.fit import FitConfig, FitResult, fit
from sv4d_kit.recon4d.points import DynamicPoints
from sv4d_kit.recon4d.render import splat

__all__ = ["carve", "splat", "DynamicPoints", "FitConfig", "FitResult", "fit"]
