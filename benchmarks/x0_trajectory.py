"""The sampler's x̂0 at every step: where along the schedule a tiny-SV4D sample gets its look.

Samples validation scene 3 of seed 50 (4 frames) with the model's default sampling and writes the decoded x̂0 of the
first 4 latents of the chunk after each step, one row per step (σ_max at the top).
    python benchmarks/x0_trajectory.py MODEL_DIR OUT.png [--world patterned]
"""

import argparse

import imageio.v2 as imageio
import torch

from sv4d_kit import evaluation, media, synthetic
from sv4d_kit.models.autoencoder import decode_latents
from sv4d_kit.pipeline import SV4DPipeline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--world", choices=synthetic.WORLDS, default=synthetic.DEFAULT_WORLD)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = SV4DPipeline.from_pretrained(args.model)
    scene = evaluation.heldout_scene(
        3, 50, pipe.default_azimuths(), pipe.config.image_size, 4, world=args.world
    )
    rows = []

    def keep(pipe_, step, sigma, tensors):
        rows.append(decode_latents(pipe.vae, tensors["denoised"][:4]))
        print(f"step {step}: sigma {sigma:.3f}")

    relative = [(a - scene.azimuths_deg[0]) % 360 for a in scene.azimuths_deg]
    pipe(scene.images[:, 0], elevations_deg=scene.elevation_deg, azimuths_deg=relative,
         generator=torch.Generator().manual_seed(0), callback_on_step_end=keep)  # fmt: skip
    imageio.imwrite(args.out, media.grid_image(torch.stack(rows, dim=1), factor=2))  # rows down, views across


if __name__ == "__main__":
    main()
