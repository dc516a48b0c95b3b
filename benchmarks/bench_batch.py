"""Throughput of `sv4d-kit batch`: inputs per second with 1 process and with N processes under torchrun.

    python benchmarks/bench_batch.py                         # 8 held-out scene clips, bundled tiny model, CPU
    python benchmarks/bench_batch.py --inputs 16 --processes 1 2 4 --device cuda   # on a GPU machine

Each configuration runs the same command on a fresh output folder (`--threads 1` per process on the CPU, so every
configuration writes the same files); the figure is the command's wall time, model loading and process start
included. Prints one JSON line per configuration.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import imageio.v2 as imageio

from sv4d_kit import evaluation
from sv4d_kit.media import to_uint8


def make_inputs(folder: Path, n: int, frames: int) -> None:
    """`n` clips of held-out synthetic scenes (the input view only), as 128-px GIFs."""
    for i in range(n):
        scene = evaluation.heldout_scene(i, seed=7, relative_azimuths_deg=[0.0], size=128, frames=frames)
        imageio.mimwrite(folder / f"scene_{i:02d}.gif", list(to_uint8(scene.images[:, 0])), duration=100)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--inputs", type=int, default=8)
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "inputs"
        inputs.mkdir()
        make_inputs(inputs, args.inputs, args.frames)
        for n in args.processes:
            out = Path(tmp) / f"out_{n}"
            launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n),
                        "--master_addr", "127.0.0.1", "--master_port", str(free_port())]  # fmt: skip
            command = [*(launcher if n > 1 else [sys.executable]), "-m", "sv4d_kit", "batch", str(inputs),
                       "--output", str(out), "--frames", str(args.frames), "--device", args.device,
                       "--no-progress", *(["--threads", "1"] if args.device == "cpu" else [])]  # fmt: skip
            tic = time.perf_counter()
            subprocess.run(
                command, check=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True
            )
            wall = time.perf_counter() - tic
            print(json.dumps({"processes": n, "inputs": args.inputs, "frames": args.frames, "device": args.device,
                              "wall_s": round(wall, 2), "inputs_per_s": round(args.inputs / wall, 3),
                              "cpu_count": os.cpu_count()}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
