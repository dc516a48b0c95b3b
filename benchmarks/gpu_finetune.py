"""Fine-tune the tiny SV4D on a CUDA device inside a fixed time budget (one lent-GPU session).

    python benchmarks/gpu_finetune.py --config recipes/tiny_gpu_finetune.json --budget-s 450 --out OUT

Times the recipe's step on this machine (a 10-step and a 40-step run from the same start: the difference is the
per-step time, without start-up), picks the largest step count (a multiple of 50) that fits the budget, then runs
`training.train` with that many steps and writes `OUT/model.tar` (the exported pipeline folder), `OUT/run.json`
(device, probe, chosen steps, wall time, peak GPU memory, final loss) and the training log on stdout. The chosen
step count goes into the run's config, so `sv4d-kit train --config ... --steps N --device cuda` reproduces it
(up to GPU kernel differences).
"""

import argparse
import json
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from sv4d_kit import training


def timed_steps(config, steps: int, folder: Path, device: str, workers: int) -> float:
    tic = time.perf_counter()
    training.train(replace(config, steps=steps, checkpoint_every=10**9), folder, resume=False, progress=False,
                   log_every=10**9, device=device, workers=workers, stop_at=steps)  # fmt: skip
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - tic


def main() -> None:
    start = time.perf_counter()
    p = argparse.ArgumentParser()
    p.add_argument("--config", required=True)
    p.add_argument("--budget-s", type=float, required=True, help="seconds for everything, from the start")
    p.add_argument("--out", required=True)
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--max-steps", type=int, default=8000)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    out = Path(args.out)
    config = training.TrainConfig.from_dict(json.loads(Path(args.config).read_text()))
    device = args.device
    gpu = torch.cuda.get_device_name(0) if device.startswith("cuda") else None
    info = {"device": device, "gpu": gpu, "torch": torch.__version__, "workers": args.workers}

    # 1. Probe the step time (the difference of two runs from the same start)
    t10 = timed_steps(config, 10, Path("/tmp/probe10"), device, args.workers)
    t40 = timed_steps(config, 40, Path("/tmp/probe40"), device, args.workers)
    per_step = (t40 - t10) / 30
    info.update(probe_10_steps_s=t10, probe_40_steps_s=t40, s_per_step=per_step)
    print(json.dumps(info), flush=True)

    # 2. The largest step count that fits, leaving a margin for start-up, export and packing
    left = args.budget_s - (time.perf_counter() - start) - t10 - 20
    steps = max(50, int(min(args.max_steps, left / (per_step * 1.1)) // 50 * 50))
    config = replace(config, steps=steps, checkpoint_every=500)
    info["steps"] = steps
    print(f"training {steps} steps", flush=True)

    # 3. Train and export
    if gpu:
        torch.cuda.reset_peak_memory_stats()
    tic = time.perf_counter()
    _, losses = training.train(config, Path("/tmp/run"), resume=False, progress=False, log_every=50,
                               device=device, workers=args.workers, export_dir=Path("/tmp/model"))  # fmt: skip
    info.update(train_wall_s=time.perf_counter() - tic, final_loss_avg50=float(np.mean(losses[-50:])),
                peak_gpu_memory_gib=torch.cuda.max_memory_allocated() / 2**30 if gpu else None,
                config=config.to_dict())  # fmt: skip
    with tarfile.open(out / "model.tar", "w") as tar:
        tar.add("/tmp/model", arcname="model")
    info["total_wall_s"] = time.perf_counter() - start
    (out / "run.json").write_text(json.dumps(info, indent=2))
    print(json.dumps({k: v for k, v in info.items() if k != "config"}), flush=True)


if __name__ == "__main__":
    main()
