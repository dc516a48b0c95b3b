"""Write the kit's notebooks from the cell lists below (so they stay diff-able: no outputs, no widget state).

    python notebooks/make_notebooks.py
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).parent

SETUP = """\
import sys
if "google.colab" in sys.modules:  # Colab: run from the notebooks/ folder of a clone of the repository
    %pip install -q -e "..[notebooks]"
import torch
device = "cuda" if torch.cuda.is_available() else "cpu"
print(f"running on {device}")"""

TOUR = [
    new_markdown_cell("""\
# 01 · A tour of sv4d-kit

One clip of a moving object in, novel-view videos and a 360° orbit out. This notebook walks through the stages on
the kit's own data and its bundled tiny SV4D, so it runs on a laptop CPU in about a minute:

1. a procedural 4D scene with ground truth, and the cameras around it;
2. the tiny SV4D generating the novel views of a clip it has never seen;
3. watching the sampler denoise, step by step;
4. what the view attention looks at."""),
    new_code_cell(SETUP),
    new_code_cell(
        """\
# Parameters (papermill overrides these in CI)
size = 32        # image size of the renders (the tiny model works at 32 px)
frames = 8       # frames of the clip
steps = None     # sampling steps (None: the model's default)
seed = 0""",
        metadata={"tags": ["parameters"]},
    ),
    new_markdown_cell("""\
## 1. A 4D scene and its cameras

`sv4d_kit.synthetic` builds scenes of patterned primitives that spin, bob and swing, and renders them from any
camera with RGB, alpha and depth. View 0 is the input view; SV4D's novel views sit around the orbit at azimuths
relative to it (conventions at the top of `sv4d_kit/cameras.py`)."""),
    new_code_cell("""\
from sv4d_kit import evaluation, synthetic, viz
from sv4d_kit import SV4DPipeline

pipe = SV4DPipeline.from_pretrained("tiny")  # the bundled tiny SV4D, 32 px, on the CPU
azimuths = pipe.default_azimuths()            # input view + the model's novel views, degrees (relative)
# a held-out scene (its seed is never used in training), seen from the input view and the novel views
gt = evaluation.heldout_scene(0, seed, azimuths, size, frames, elevation_deg=10.0)
print(synthetic.make_scene(gt.seed).describe())
print("image matrix", tuple(gt.images.shape), "= (T, V+1, 3, H, W)")
viz.image_grid(gt.images, title="ground truth: time across, views down")"""),
    new_code_cell("""\
# NBVAL_IGNORE_OUTPUT
viz.camera_frustums_figure(gt.extrinsics, gt.K, size, size, labels=[f"view {v}" for v in range(len(azimuths))])"""),
    new_markdown_cell("""\
## 2. Generating the novel views

The pipeline sees only view 0 (the input clip). Its `__call__` is a list of numbered steps: encode the
conditioning, prepare noise, run the guided Euler sampler, decode — chunk by chunk, later chunks conditioned on the
views already made."""),
    new_code_cell("""\
out = pipe(gt.images[:, 0], elevations_deg=10.0, azimuths_deg=azimuths, num_inference_steps=steps,
           generator=torch.Generator().manual_seed(seed), progress=False)
print("generated", tuple(out.images.shape), "chunks start at frames", out.cameras["chunk_starts"])
viz.image_grid(out.images, title="generated (view 0 is the input)")"""),
    new_code_cell("""\
from sv4d_kit import metrics

scores = metrics.evaluate_matrix(out.images, gt.images, gt.alpha, gt.depth, gt.extrinsics, gt.K)
copy_input = gt.images[:, :1].expand_as(gt.images)
copy = metrics.evaluate_matrix(copy_input, gt.images, gt.alpha, gt.depth, gt.extrinsics, gt.K)
for key in ("psnr_db", "ssim", "silhouette_iou"):
    print(f"{key:15s} tiny SV4D {scores[key]:7.3f}   copy the input {copy[key]:7.3f}")"""),
    new_markdown_cell("""\
## 3. Watching the sampler

`callback_on_step_end` receives the latents and the denoised preview x̂0 at every step (and may change them)."""),
    new_code_cell("""\
previews = []

def keep_preview(pipe, step, sigma, tensors):
    if tensors["chunk"] == 0:
        previews.append((sigma, tensors["denoised"][: pipe.config.num_views]))

pipe(gt.images[:, 0], elevations_deg=10.0, azimuths_deg=azimuths, num_inference_steps=steps,
     generator=torch.Generator().manual_seed(seed), callback_on_step_end=keep_preview, progress=False)
from sv4d_kit.models.autoencoder import decode_latents
shown = previews[:: max(1, len(previews) // 6)]
images = torch.stack([decode_latents(pipe.vae, x) for _, x in shown])   # (steps shown, V, 3, H, W)
viz.image_grid(images, title="x̂0 at σ = " + ", ".join(f"{s:.2g}" for s, _ in shown))"""),
    new_markdown_cell("""\
## 4. What the view attention looks at

`capture_attention` switches chosen layers to the explicit softmax path and keeps their probabilities. In the
tiny model's view blocks every pixel attends over the V novel views of its frame."""),
    new_code_cell("""\
from sv4d_kit.attention import capture_attention

with capture_attention(pipe.unet, kinds=("view",)) as maps:
    pipe(gt.images[:, 0], elevations_deg=10.0, azimuths_deg=azimuths, num_inference_steps=1,
         generator=torch.Generator().manual_seed(seed), progress=False)
name, probs = next(iter(maps.items()))
print(name, tuple(probs.shape), "= (pixels x frames x batch, heads, views, views)")
mean = probs.mean(dim=(0, 1))   # (views, views): how much each view reads from each other view
print((mean * 100).round().int())"""),
]


def write(name: str, cells: list) -> None:
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, HERE / name)


if __name__ == "__main__":
    write("01_tour.ipynb", TOUR)
