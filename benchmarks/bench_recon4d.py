"""Time sv4d_kit.recon4d: the fit of a 13-frame × 5-view clip at 32 px and splatting 256² frames; JSON lines out.

OMP_NUM_THREADS=2 python benchmarks/bench_recon4d.py [--threads 2] [--frames 13] [--points 2000 4000]
"""

import argparse
import datetime
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from _common import machine, timed  # noqa: E402

from sv4d_kit import evaluation, metrics  # noqa: E402
from sv4d_kit.recon4d import FitConfig, fit  # noqa: E402

RELATIVE = [0, 72, 144, 216, 288]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--size", type=int, default=256, help="render resolution")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cpu = torch.device("cpu")
    common = {
        "machine": machine(cpu),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(sys.argv),
        "load_average": os.getloadavg(),
    }

    # 1. Fit ground-truth views of held-out scene 0
    scene = evaluation.heldout_scene(0, 0, RELATIVE, size=32, frames=args.frames)
    result = fit(scene.images, scene.extrinsics, scene.K, FitConfig(), progress=False)
    rgb, _, _ = result.points.render(scene.azimuths_deg, scene.elevation_deg, range(args.frames), 32)
    mid = evaluation.heldout_scene(0, 0, [36, 108], size=32, frames=args.frames)
    novel, _, _ = result.points.render(mid.azimuths_deg, mid.elevation_deg, range(args.frames), 32)
    nearest = scene.images[:, [0, 1]]
    psnr, iou = metrics.psnr, metrics.silhouette_iou
    fit_row = {
        "bench": "fit", "frames": args.frames, "views": 5, "size": 32,
        "seconds": round(result.seconds, 2), "steps": len(result.losses),
        "train_psnr_db": round(psnr(rgb, scene.images).mean().item(), 2),
        "inbetween_psnr_db": round(psnr(novel, mid.images).mean().item(), 2),
        "nearest_view_psnr_db": round(psnr(nearest, mid.images).mean().item(), 2),
        "inbetween_iou": round(iou(novel, mid.images).mean().item(), 3),
        "nearest_view_iou": round(iou(nearest, mid.images).mean().item(), 3),
    }  # fmt: skip
    print(json.dumps({**common, **fit_row}))

    # 2. Render the fitted points (and 2× / 4× as many, jittered copies) at size², one view per frame
    p = result.points
    for copies in (1, 2, 4):
        g = torch.Generator().manual_seed(0)
        pos = p.positions.repeat(1, copies, 1) + 0.01 * (copies > 1) * torch.randn(
            p.positions.shape[0], p.positions.shape[1] * copies, 3, generator=g
        )
        q = type(p)(pos, p.colors.repeat(copies, 1), p.opacity.repeat(copies), p.radius.repeat(copies))
        for size in (args.size, args.size // 2):
            seconds, _ = timed(lambda q=q, size=size: q.render([30.0], 10.0, [0], size), cpu, repeats=9)
            row = {"bench": "render", "points": pos.shape[1], "size": size}
            print(
                json.dumps(
                    {**common, **row, "seconds_per_frame": round(seconds, 4), "fps": round(1 / seconds, 1)}
                )
            )


if __name__ == "__main__":
    main()
