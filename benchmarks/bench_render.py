"""Time the synthetic renderer on the reference workload: 5 views × 21 frames at 64×64 (supersample 2).

Prints one line: median and min seconds over the timed runs, the scene seed, torch threads and the machine.
    python benchmarks/bench_render.py [--runs 5] [--threads N] [--seed 0] [--size 64]
"""

import argparse
import os
import platform
import statistics
import time

import torch

from sv4d_kit import cameras, synthetic


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs after one warm-up (default 5)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0, help="scene seed (default 0: 4 primitives)")
    parser.add_argument("--size", type=int, default=64, help="image size in pixels (default 64)")
    parser.add_argument("--views", type=int, default=5)
    parser.add_argument("--frames", type=int, default=21)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    scene = synthetic.make_scene(args.seed)
    azimuths = cameras.orbit_azimuths(args.views)

    def run():
        return synthetic.render_orbit(scene, azimuths, 10.0, size=args.size, num_frames=args.frames)

    run()  # warm-up
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    cpu = platform.processor() or platform.machine()
    print(
        f"render {args.views} views x {args.frames} frames at {args.size}x{args.size} (supersample 2, seed "
        f"{args.seed}, {len(scene.primitives)} primitives): median {statistics.median(times):.3f} s, "
        f"min {min(times):.3f} s over {args.runs} runs | torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, {os.cpu_count()} CPUs ({cpu}, {platform.system()})"
    )


if __name__ == "__main__":
    main()
