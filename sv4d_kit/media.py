"""Writing an image matrix (T, V, 3, H, W) to disk: per-view videos, a grid, a 360° orbit video and metadata.

Everything is written into a temporary folder beside the destination and moved into place only when complete, so a
failed run never leaves half-written outputs, and an existing output folder is replaced only with `overwrite=True`.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from sv4d_kit.checks import KitInputError, positive

MIN_VIDEO_SIDE = 256  # small images are enlarged (nearest neighbour, integer factor) in videos and the grid


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float images in [0, 1], (..., 3, H, W) -> uint8 (..., H, W, 3)."""
    x = images.detach().float().cpu().clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.movedim(-3, -1).numpy()


def _enlarge(frames: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour enlargement of (..., H, W, 3) by an integer factor."""
    if factor == 1:
        return frames
    return frames.repeat(factor, axis=-3).repeat(factor, axis=-2)


def display_factor(height: int, width: int) -> int:
    """The integer enlargement that brings the shorter side to at least MIN_VIDEO_SIDE pixels."""
    return max(1, -(-MIN_VIDEO_SIDE // min(height, width)))


def grid_image(images: torch.Tensor, factor: int = 1) -> np.ndarray:
    """The image matrix as one picture, time across and views down. (T, V, 3, H, W) -> uint8 (V*H, T*W, 3)"""
    frames = _enlarge(to_uint8(images), factor)  # (T, V, H, W, 3)
    T, V, H, W, _ = frames.shape
    return frames.transpose(1, 2, 0, 3, 4).reshape(V * H, T * W, 3)  # (V, H, T, W, 3) -> (V*H, T*W, 3)


def orbit_schedule(
    azimuths_deg, num_frames: int, length: int, blend: float = 0.3
) -> list[tuple[int, int, int, float]]:
    """Plan a 360° orbit through generated views while time advances.

    The views are visited in increasing azimuth, each for an equal share of the `length` output frames; during the
    last `blend` fraction of a share the picture cross-fades into the next view. Time advances by one frame per output
    frame and loops. Returns, per output frame, `(time_index, view_a, view_b, weight_b)`.
    """
    if length < 1:
        raise KitInputError(f"orbit length must be >= 1 frame, got {length}")
    order = sorted(range(len(azimuths_deg)), key=lambda v: float(azimuths_deg[v]) % 360.0)
    n = len(order)
    plan = []
    for k in range(length):
        pos = k * n / length  # position along the orbit in units of views
        i, frac = int(pos), pos - int(pos)
        w = 0.0 if n == 1 or frac < 1 - blend else (frac - (1 - blend)) / blend
        plan.append((k % num_frames, order[i], order[(i + 1) % n], w))
    return plan


def orbit_frames(images: torch.Tensor, azimuths_deg, length: int | None = None) -> torch.Tensor:
    """Frames of the 360° orbit video (see `orbit_schedule`). (T, V, 3, H, W) -> (length, 3, H, W)"""
    T, V = images.shape[:2]
    length = length or max(2 * T, 8 * V)
    frames = []
    for t, a, b, w in orbit_schedule(azimuths_deg, T, length):
        frames.append((1 - w) * images[t, a] + w * images[t, b])
    return torch.stack(frames)


def _write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    """Write uint8 (N, H, W, 3) frames as MP4 (H.264, yuv420p) or GIF, chosen by the suffix."""
    if path.suffix == ".gif":
        imageio.mimwrite(path, list(frames), duration=1000.0 / fps, loop=0)
    else:
        writer = imageio.get_writer(
            path,
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=2,
            ffmpeg_params=["-threads", "1", "-bitexact"],
            quality=8,
        )
        with writer:
            for f in frames:
                writer.append_data(f)


def write_video(path: str | Path, frames_uint8: np.ndarray, fps: float) -> Path:
    """Write uint8 (N, H, W, 3) frames as a GIF or an MP4 (H.264, yuv420p), chosen by the suffix of `path`."""
    path = Path(path)
    if path.suffix not in (".gif", ".mp4"):
        raise KitInputError(f"video path must end in .gif or .mp4, got {str(path)!r}")
    frames = np.asarray(frames_uint8)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise KitInputError(f"video frames must be uint8 (N, H, W, 3), got {frames.dtype} {frames.shape}")
    _write_video(path, frames, positive("fps", fps))
    return path


def prepare_output_dir(folder: str | Path, overwrite: bool = False) -> Path:
    """Check that `folder` can take outputs: not a file, empty (or `overwrite`), with a writable parent."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise KitInputError(f"output path {str(folder)!r} is a file, not a folder")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise KitInputError(
            f"output folder {str(folder)!r} already has files; pass --overwrite to replace them"
        )
    parent = folder.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise KitInputError(f"output folder {str(folder)!r} is not writable")
    return folder


def write_outputs(
    folder: str | Path,
    images: torch.Tensor,
    metadata: dict,
    azimuths_deg=None,
    fps: float = 8.0,
    overwrite: bool = False,
    gifs: bool = True,
    extra=None,
) -> Path:
    """Write `view_XX.mp4` (+ `.gif`), `grid.png`, `orbit.mp4` and `metadata.json` for a (T, V, 3, H, W) matrix.

    `extra(folder)`, when given, writes more files into the (temporary) folder before metadata.json, so they are
    part of the same all-or-nothing move (the 4D reconstruction's `orbit_smooth.mp4` and `points/`)."""
    folder = prepare_output_dir(folder, overwrite)
    if images.ndim != 5 or images.shape[2] != 3:
        raise KitInputError(f"images must be (T, V, 3, H, W), got {tuple(images.shape)}")
    T, V, _, H, W = images.shape
    azimuths_deg = list(range(0, 360, 360 // V))[:V] if azimuths_deg is None else list(azimuths_deg)
    factor = display_factor(H, W)
    folder.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.partial-", dir=folder.absolute().parent))
    try:
        frames = _enlarge(to_uint8(images), factor)  # (T, V, H', W', 3)
        for v in range(V):
            _write_video(tmp / f"view_{v:02d}.mp4", frames[:, v], fps)
            if gifs:
                _write_video(tmp / f"view_{v:02d}.gif", frames[:, v], fps)
        imageio.imwrite(tmp / "grid.png", grid_image(images, factor=max(1, factor // 2)))
        _write_video(tmp / "orbit.mp4", _enlarge(to_uint8(orbit_frames(images, azimuths_deg)), factor), fps)
        if extra is not None:
            extra(tmp)
        files = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file()) + ["metadata.json"]
        meta = {**metadata, "outputs": {"files": files, "fps": fps, "display_enlargement": factor}}
        (tmp / "metadata.json").write_text(json.dumps(meta, indent=2, default=_json_default) + "\n")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def _json_default(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to metadata.json")
