"""Is a tiny SV4D's silhouette IoU lost to soft edges or to misplaced shapes? IoU per novel view when the generated
silhouette is read at stricter thresholds (the ground truth keeps the metric's standard one).

If some stricter threshold lifts a view above copy-the-input, that view's shapes are right and only soft; if none
does, they are misplaced. Validation scenes only (evaluation seed 51 by default, never the reported seed 0):
    python benchmarks/silhouette_threshold.py [MODEL_DIR] [--scenes 8] [--seed 51]
"""

import argparse

import torch

from sv4d_kit import evaluation, metrics
from sv4d_kit.pipeline import SV4DPipeline

THRESHOLDS = (0.05, 0.1, 0.2, 0.3, 0.4)  # "darkest channel below 1 - threshold"; 0.05 is the metric's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model", nargs="?", default=None, help="a kit model folder (default: the bundled one)"
    )
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=51)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pipe = SV4DPipeline.from_pretrained(args.model or "tiny")
    relative = pipe.default_azimuths()

    methods = ("tiny_sv4d", "copy_input")
    iou = {m: torch.zeros(len(THRESHOLDS), len(relative) - 1) for m in methods}  # (thresholds, V)
    for i in range(args.scenes):
        scene = evaluation.heldout_scene(i, args.seed, relative, pipe.config.image_size, 8)
        truth = metrics.silhouette(scene.images[:, 1:])  # (T, V, 1, H, W)
        for m in methods:
            out = evaluation.generate(pipe, scene, m, seed=evaluation.sampling_seed(args.seed, i))
            for k, threshold in enumerate(THRESHOLDS):
                pred = metrics.silhouette(out[:, 1:], threshold=threshold)
                # per image, then over the frames, as `sv4d-kit evaluate` averages it: (T, V) -> (V,)
                iou[m][k] += metrics.silhouette_iou(pred, truth).double().mean(0).float() / args.scenes

    print(f"{args.scenes} scenes, evaluation seed {args.seed}; IoU per novel view, then the mean")
    for m in methods:
        for k, threshold in enumerate(THRESHOLDS):
            views = " ".join(f"{x:.3f}" for x in iou[m][k].tolist())
            print(f"{m:10s} darkest channel < {1 - threshold:.2f}: {views}  mean {iou[m][k].mean():.3f}")


if __name__ == "__main__":
    main()
