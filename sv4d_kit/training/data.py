"""The training data: batches of procedural 4D scenes from `synthetic.py`, each a pure function of (seed, step).

One training step renders `batch_scenes` random scenes, each as a chunk of T frames seen from the input view and
V novel views on an orbit; static orbits first (3D), then moving scenes (4D): SV4D 2.0's progressive schedule.
`batches` can render them ahead in DataLoader worker processes (rendering is CPU work) with the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from sv4d_kit import cameras, synthetic
from sv4d_kit.training.config import TrainConfig


@dataclass
class Batch:
    """One training batch of B scenes (pixels in [-1, 1]): scenes `scenes` of its step's `total` (all of them,
    unless the batch is one process's share of the step's).

    images: (B, T, V+1, 3, H, W), view 0 = input view; polar, azimuth: (B, T*V) relative radians (t v);
    static: (B,) bool.
    """

    images: torch.Tensor
    polar: torch.Tensor
    azimuth: torch.Tensor
    static: torch.Tensor
    scenes: range | None = None  # None: range(B)
    total: int | None = None  # None: B

    def __post_init__(self):
        self.scenes = range(len(self.images)) if self.scenes is None else self.scenes
        self.total = len(self.images) if self.total is None else self.total

    def to(self, device) -> Batch:
        """The batch with its images and angles on `device` (where the network runs)."""
        return replace(self, images=self.images.to(device), polar=self.polar.to(device),
                       azimuth=self.azimuth.to(device))  # fmt: skip


def make_batch(
    config: TrainConfig, step: int, batch_scenes: int | None = None, scenes: range | None = None
) -> Batch:
    """Render the batch of training step `step`: a pure function of (config.seed, step).

    Each scene: a random training seed, input azimuth uniform in [0, 360), one elevation for all views, T
    consecutive clip frames; static (the t = 0 object at rest) for the first `static_fraction` of the steps and
    for a `static_mix` share of the scenes after that. `scenes` (a range of the batch's scenes; default all)
    renders only those, one process's share: every scene's parameters are still drawn, in order, so each scene is
    the one of the whole batch.
    """
    rng = np.random.default_rng([config.seed, step, 1])
    B = batch_scenes or config.batch_scenes
    scenes = range(B) if scenes is None else scenes
    T, S = config.frames, config.image_size
    images, polars, azimuths, static = [], [], [], []
    for b in range(B):
        seed = int(rng.integers(0, config.num_train_scenes))
        is_static = step < config.static_fraction * config.steps or rng.uniform() < config.static_mix
        a0 = float(rng.uniform(0, 360))
        elev = float(rng.uniform(*config.elevation_range_deg))
        t0 = int(rng.integers(0, config.clip_frames - T + 1))
        if b not in scenes:  # another process's scene: its parameters are drawn, it is not rendered
            continue
        scene = synthetic.make_scene(seed, dynamic=not is_static, world=config.world)
        times = torch.arange(t0, t0 + T, dtype=torch.float32) / max(config.clip_frames - 1, 1)
        azims = [a0] + [(a0 + a) % 360 for a in config.novel_azimuths_deg]
        E = cameras.orbit_extrinsics(
            torch.tensor(azims), torch.full((len(azims),), elev), synthetic.DEFAULT_RADIUS
        )
        K = cameras.intrinsics(synthetic.DEFAULT_FOV, S, S)
        out = synthetic.render(scene, E, K, S, S, times, config.supersample)
        images.append(out.rgb * 2 - 1)  # (T, V+1, 3, S, S) in [-1, 1]
        polar, azimuth = cameras.sv4d_relative_angles([elev] * len(azims), azims, T)  # (T*V,), (T*V,)
        polars.append(polar.float())
        azimuths.append(azimuth.float())
        static.append(is_static)
    return Batch(
        torch.stack(images), torch.stack(polars), torch.stack(azimuths), torch.tensor(static), scenes, B
    )


def projection_images(config: TrainConfig) -> torch.Tensor:
    """The images the projected latent space is fitted on: all frames and views of `projection_scenes` training
    scenes as the 4D phase renders them, from a seed of their own. -> (N, 3, S, S) in [-1, 1]"""
    cfg = replace(config, seed=config.seed + 7919, static_fraction=0.0, batch_scenes=16, steps=1)
    parts = [make_batch(cfg, i, min(16, config.projection_scenes - 16 * i))
             for i in range(math.ceil(config.projection_scenes / 16))]  # fmt: skip
    return torch.cat([b.images.flatten(0, 2) for b in parts])


class _Batches(torch.utils.data.Dataset):
    """The batches of steps `start`, `start + 1`, ... for a DataLoader's worker processes (rendering is CPU work)."""

    def __init__(self, config: TrainConfig, start: int, end: int, scenes: range | None = None):
        self.config, self.start, self.end, self.scenes = config, start, end, scenes

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, i: int) -> Batch:
        return make_batch(self.config, self.start + i, scenes=self.scenes)


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


def batches(config: TrainConfig, start: int, end: int, workers: int = 0, scenes: range | None = None):
    """Yield `make_batch(config, step, scenes=scenes)` for step in [start, end), rendered ahead by `workers`
    processes (0: in this process). The batches are the same either way: each is a pure function of
    (config.seed, step)."""
    if workers <= 0:
        yield from (make_batch(config, step, scenes=scenes) for step in range(start, end))
        return
    # batch_size=None: each item is one step's Batch, passed through as it is
    loader = torch.utils.data.DataLoader(
        _Batches(config, start, end, scenes),
        batch_size=None,
        num_workers=workers,
        worker_init_fn=_one_thread,
        prefetch_factor=4,
    )
    yield from loader
