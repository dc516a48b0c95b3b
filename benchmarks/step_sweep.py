"""Does the sampler matter? Sharpness, colour, background speckle and IoU of a tiny SV4D at 1, 2, 5, 10, 25 steps.

Each row samples the whole EDM schedule of the model's defaults (σ_max → σ_min, then σ = 0) with that many steps,
on validation scenes (seeds 50, 51; never the reported seed 0), next to copy-the-input; the default is where the
measures settle. Writes the rows as JSON:
    python benchmarks/step_sweep.py [--model DIR] [--seed 50] [--scenes 8] [--steps 1 2 5 10 25]
        [--sampler euler heun] [--sigma-min S] [--world patterned] [--json benchmarks/results/step_sweep.json]
"""

import argparse
import json
import time
from pathlib import Path

import torch

from sv4d_kit import evaluation, synthetic
from sv4d_kit.pipeline import SV4DPipeline

KEYS = (
    "sharpness_ratio",
    "color_ratio",
    "smoothed_color_ratio",
    "background_speckle",
    "silhouette_iou",
    "psnr_db",
    "psnr_covisible_db",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="a kit model folder (default: the bundled one)")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=50)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 5, 10, 25])
    parser.add_argument("--sampler", nargs="+", default=["euler"], choices=["euler", "heun"])
    parser.add_argument("--sigma-min", type=float, default=None, help="override the model's sigma_min")
    parser.add_argument("--world", choices=synthetic.WORLDS, default=synthetic.DEFAULT_WORLD)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the rows here")
    args = parser.parse_args()
    if args.seed == 0:
        raise SystemExit("error: seed 0 is the reported held-out set; sweep on validation seeds (50, 51)")
    torch.set_num_threads(args.threads)
    pipe = SV4DPipeline.from_pretrained(args.model or "tiny")
    base = dict(pipe.config.sampling)
    if args.sigma_min is not None:
        base["sigma_min"] = args.sigma_min
    rows, copy = [], None
    for sampler in args.sampler:
        for steps in args.steps:
            pipe.register_to_config(sampling={**base, "sampler": sampler, "num_inference_steps": steps})
            methods = ("tiny_sv4d",) if copy else ("tiny_sv4d", "copy_input")
            tic = time.perf_counter()
            summary, _ = evaluation.evaluate(
                pipe, args.scenes, args.seed, methods=methods, progress=False, world=args.world
            )
            seconds = time.perf_counter() - tic
            copy = copy or summary["copy_input"]
            row = {"sampler": sampler, "steps": steps, "seconds": seconds,
                   **{k: summary["tiny_sv4d"][k] for k in KEYS}}  # fmt: skip
            rows.append(row)
            print(f"{sampler} {steps:>2} steps ({seconds:.0f} s): "
                  + " ".join(f"{k} {row[k]:.3f}" for k in KEYS), flush=True)  # fmt: skip
    print("copy_input: " + " ".join(f"{k} {copy[k]:.3f}" for k in KEYS))
    if args.json:
        record = {"command": "python benchmarks/step_sweep.py " + " ".join(f"--{k} {v}" for k, v in vars(args).items()
                                                                              if v is not None),
                  "model": args.model or "tiny", "sampling": base, "rows": rows,
                  "copy_input": {k: copy[k] for k in KEYS}}  # fmt: skip
        Path(args.json).write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
