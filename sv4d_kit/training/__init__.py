"""Train the kit's tiny SV4D on its own procedural 4D scenes, the way SV4D 2.0 was trained, in miniature.

`train(TrainConfig(...), output_dir)` renders random scenes (`data`), regresses the UNet and a small image tower
onto SV4D 2.0's v-objective (`objective`), writes resumable checkpoints (`checkpoint`) and ends with an exported
`SV4DPipeline` folder (`export`). The bundled model, `SV4DPipeline.from_pretrained("tiny")`, is the two-stage
recipe in `recipes/` (`make tiny-model` runs both; how long each stage took, and on what, is in BENCHMARKS.md):

    sv4d-kit train --output runs/tiny-base --config recipes/tiny_base.json --no-progress
    sv4d-kit train --output runs/tiny-finetune --config recipes/tiny_finetune.json \
        --export sv4d_kit/assets/tiny_sv4d --no-progress

Stage 1 trains from scratch: 5500 steps of 8 scenes x 4 frames x 5 views at 32 px, seed 0, log sigma ~ N(0.7, 1.6).
Stage 2 starts from stage 1's export and trains 1000 steps at log sigma ~ N(3.3, 0.7), the noise levels the sampler
visits, at lr 1e-4 with the L1 loss; its sampling defaults (6 steps, sigma 80 -> 55, no guidance) were chosen on
validation scenes. Add --resume to continue an interrupted stage. On a GPU, `--device cuda --workers N` trains
there while N processes render the scenes (`make tiny-model-gpu`: a stage 3 from the bundled model).

Data-parallel (`distributed`): `torchrun --nproc_per_node N -m sv4d_kit train ...` (or `accelerate launch
--num_processes N -m sv4d_kit train ...`) shares each batch among N processes, one GPU each with `--device cuda`
(gloo on the CPU); the run is the one-process run up to float rounding, and resumes with any number of processes.
"""

from sv4d_kit.training.checkpoint import init_from_model
from sv4d_kit.training.config import LOSSES, TrainConfig
from sv4d_kit.training.data import Batch, batches, make_batch, projection_images

# after this line `training.export` is the function (it shadows the submodule of the same name)
from sv4d_kit.training.export import export, export_checkpoint, set_sampling_defaults
from sv4d_kit.training.loop import train
from sv4d_kit.training.model import build_tiny_sv4d
from sv4d_kit.training.objective import diffusion_loss, lr_at, regression_loss

__all__ = [
    "LOSSES",
    "Batch",
    "TrainConfig",
    "batches",
    "build_tiny_sv4d",
    "diffusion_loss",
    "export",
    "export_checkpoint",
    "init_from_model",
    "lr_at",
    "make_batch",
    "projection_images",
    "regression_loss",
    "set_sampling_defaults",
    "train",
]
