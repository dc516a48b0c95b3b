"""Feasibility probe of issue #20's "objective" lever: a short fine-tune with another σ_data, and its picture.

SV4D 2.0's preconditioning is the V-scaling with σ_data = 1 (`sampling.vscaling_edm_cnoise`): at σ = 1 it passes
half the noisy input straight to the output (c_skip = 1/2), and the tiny UNet must cancel that noise. This probe
fine-tunes a model folder for a few hundred steps with `TrainConfig.sigma_data` (EDM's general form,
`sampling.vscaling_edm_sigma_data`: a number, or "per_channel") and writes its validation picture, so the lever can
be judged before a whole run is spent on it (run 17 of BENCHMARKS.md; the model folder it writes records its
sigma_data, so it samples as it was trained).
    python benchmarks/sigma_data_feasibility.py MODEL_DIR RUN_DIR --sigma-data 0.5 --steps 400 --picture OUT.png
        [--config recipes/tiny_simple.json]
"""

import argparse
import json
from pathlib import Path

import imageio.v2 as imageio
import torch

from sv4d_kit import evaluation, training


def _sigma_data(text: str):
    return text if text == "per_channel" else float(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the model folder to fine-tune (same latent space as the config)")
    parser.add_argument("run", help="run folder (checkpoints, export)")
    parser.add_argument("--config", default="recipes/tiny_simple.json")
    parser.add_argument("--sigma-data", type=_sigma_data, default=0.5, help='a number, or "per_channel"')
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--picture", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    values = json.loads(Path(args.config).read_text())
    values.update(init_from=args.model, steps=args.steps, lr=args.lr, warmup_steps=20, threads=args.threads,
                  sigma_data=args.sigma_data)  # fmt: skip
    config = training.TrainConfig.from_dict(values)
    pipe, losses = training.train(config, args.run, progress=False, log_every=50)
    torch.set_num_threads(1)
    examples = []
    for i in range(4):
        size = pipe.config.image_size
        scene = evaluation.heldout_scene(i, 50, pipe.default_azimuths(), size, 4, world=config.world)
        matrix = evaluation.generate(pipe, scene, "tiny_sv4d", seed=evaluation.sampling_seed(50, i))
        examples.append((scene, {"tiny_sv4d": matrix}))
    imageio.imwrite(args.picture, evaluation.comparison_image(examples, frames=[0]))
    print(f"final loss (mean of last 50) {sum(losses[-50:]) / len(losses[-50:]):.4f}; wrote {args.picture}")


if __name__ == "__main__":
    main()
