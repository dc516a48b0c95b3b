"""A picture of a model's samples on validation scenes: per scene, input | ground truth | model, views across.

python benchmarks/picture_validation.py MODEL OUT.png ["key=value;..." over the model's sampling settings]
    [--scenes 3] [--seed 50] [--world patterned]
"""

import argparse

import imageio.v2 as imageio
import torch

from sv4d_kit import evaluation, synthetic
from sv4d_kit.pipeline import SV4DPipeline

TEXT_KEYS = ("guider", "sampler")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("setting", nargs="?", default="")
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--seed", type=int, default=50)
    parser.add_argument("--world", choices=synthetic.WORLDS, default=synthetic.DEFAULT_WORLD)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = SV4DPipeline.from_pretrained(args.model)
    options = dict(pipe.config.sampling)
    for item in filter(None, args.setting.split(";")):
        key, value = item.split("=")
        options[key] = (
            value if key in TEXT_KEYS else int(value) if key == "num_inference_steps" else float(value)
        )
    pipe.register_to_config(sampling=options)
    examples = []
    for i in range(args.scenes):
        size = pipe.config.image_size
        scene = evaluation.heldout_scene(i, args.seed, pipe.default_azimuths(), size, 4, world=args.world)
        matrix = evaluation.generate(pipe, scene, "tiny_sv4d", seed=evaluation.sampling_seed(args.seed, i))
        examples.append((scene, {"tiny_sv4d": matrix}))
    imageio.imwrite(args.out, evaluation.comparison_image(examples, frames=[0]))


if __name__ == "__main__":
    main()
