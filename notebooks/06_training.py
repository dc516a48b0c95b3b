# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Training a tiny SV4D, live
#
# SV4D 2.0 was trained on multi-view videos of animated 3D objects: static orbits first (3D), then moving objects
# (4D), with the EDM v-objective at log-normal noise levels. The kit does the same in miniature on procedural scenes
# it renders itself (`sv4d_kit.synthetic`), with `sv4d_kit.training.train`. This notebook trains one for a few
# minutes on the CPU, with the loss plotted as it goes, samples from it, and compares it with the bundled tiny model
# (which took hours of the same recipe).

# %%
import subprocess
import sys

if (
    "google.colab" in sys.modules
):  # Colab: install the kit from a clone of its repository (the folder above this one)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "..[notebooks]"], check=True)

from sv4d_kit.notebook import load_pipeline, setup

device = setup()  # figures as pictures, and the device (it says which)

# %% tags=["parameters"]
seed = 0  # the run's seed: scenes, noise levels and initial weights are all drawn from it
model = "tiny"  # the model to compare with: "tiny" (bundled: the full recipe) or an exported model folder
steps = 400  # training steps (0.5-0.7 s each at these sizes on a 2-core CPU: about 5 minutes)
batch_scenes = 4  # scenes rendered per step
model_channels = 32  # UNet width (the recipe's is 64)
image_size = 32  # pixels (the bundled model's)
threads = 2  # torch CPU threads for training
plot_every = 10  # redraw the loss plot every this many steps

# %% [markdown]
# ## 1. The run's settings and what it learns from
#
# `TrainConfig` holds every setting of a run (checked when it is made). Each step renders `batch_scenes` random
# scenes, each a chunk of T = 4 frames seen from the input view and V = 4 novel views around it. For the first
# `static_fraction` of the steps the scenes stand still (3D: only the viewpoint changes), after that they move (4D),
# SV4D 2.0's progressive schedule; a `static_mix` share stays static.

# %%
from IPython.display import display

from sv4d_kit import training, viz

config = training.TrainConfig(
    seed=seed, steps=steps, batch_scenes=batch_scenes, model_channels=model_channels, image_size=image_size,
    context_dim=32, clip_width=32, clip_layers=1, threads=threads, warmup_steps=min(50, steps // 10),
    static_fraction=0.25, checkpoint_every=max(steps, 1),
    # sample with the bundled model's defaults, so the comparison below is like for like
    sampling=dict(num_inference_steps=6, sigma_max=80.0, sigma_min=55.0, guider="constant", min_guidance=1.0,
                  max_guidance=1.0),
)  # fmt: skip
print({k: getattr(config, k) for k in ("steps", "batch_scenes", "model_channels", "image_size", "frames",
                                       "novel_azimuths_deg", "static_fraction", "P_mean", "P_std", "lr")})  # fmt: skip

static_batch = training.make_batch(config, step=0)  # a step of the static phase
moving_step = int(config.static_fraction * config.steps)  # the first step of the moving phase
moving_batch = training.make_batch(config, step=moving_step)
azimuths = ["input"] + [f"+{a:g}°" for a in config.novel_azimuths_deg]
for batch, when in (
    (static_batch, "step 0 (static phase)"),
    (moving_batch, f"step {moving_step} (moving phase)"),
):
    b = int(batch.static.float().argmin()) if when.endswith("(moving phase)") else 0  # a moving scene if any
    kind = "static" if batch.static[b] else "moving"
    display_grid = viz.image_grid((batch.images[b] + 1) / 2, row_labels=azimuths,
                                  title=f"{when}: a {kind} scene, time across, views down")  # fmt: skip
    display(display_grid)

# %% [markdown]
# ## 2. The noise levels it trains at
#
# Each scene gets one noise level σ with log σ ~ N(P_mean, P_std): SV4D's N(0.7, 1.6) here (stage 1 of the
# recipe). The bundled model's stage 2 fine-tunes at N(3.3, 0.7), around the σ = 55–80 its sampler visits (notebook
# 03 explains why it stops there).

# %%
import numpy as np
from matplotlib.figure import Figure

fig = Figure(figsize=(8, 3), layout="constrained")
ax = fig.subplots()
grid = np.linspace(-6, 8, 400)
for (mean, std), label in (
    ((config.P_mean, config.P_std), "this run (stage 1)"),
    ((3.3, 0.7), "stage 2 (finetune)"),
):
    ax.plot(np.exp(grid), np.exp(-0.5 * ((grid - mean) / std) ** 2) / (std * np.sqrt(2 * np.pi)), label=label)
ax.axvspan(55, 80, color="C1", alpha=0.2, label="the bundled sampler's σ")
ax.set_xscale("log")
ax.set_xlabel("σ (log)")
ax.set_ylabel("density of log σ")
ax.legend()
fig

# %% [markdown]
# ## 3. Train, live
#
# `training.train(config, folder, callback=...)` calls `callback(step, loss)` after every step; here it redraws the
# loss plot in place. The run writes a checkpoint and, at the end, an exported `SV4DPipeline` folder into a
# temporary folder. The loss is noisy (every step has new scenes and noise levels); the running mean is the line to
# watch. It falls fast at first, while the model learns the average object, then slowly.

# %%
import tempfile
import time

from diffusers.utils import logging as diffusers_logging

diffusers_logging.set_verbosity_error()  # diffusers' notes about float32 modules are not for us
run_dir = tempfile.mkdtemp(prefix="sv4d_training_")
history, tic = [], time.perf_counter()
fig = Figure(figsize=(8, 3.4), layout="constrained")
ax = fig.subplots()


def draw(done: int):
    ax.clear()
    static_end = config.static_fraction * config.steps
    ax.axvspan(0, static_end, color="0.92", label="static orbits (3D)")
    ax.axvspan(static_end, config.steps, color="C2", alpha=0.08, label="moving scenes (4D)")
    if history:
        x = np.arange(1, len(history) + 1)
        ax.plot(x, history, color="C0", alpha=0.35, lw=1, label="loss per step")
        mean = [np.mean(history[max(0, i - 19) : i + 1]) for i in range(len(history))]  # the last 20 steps
        ax.plot(x, mean, color="C0", lw=2, label="running mean (20 steps)")
    ax.set_xlim(0, config.steps)
    ax.set_xlabel("step")
    ax.set_ylabel(f"v-objective loss ({config.loss.upper()})")
    ax.set_title(f"step {done}/{config.steps}, {time.perf_counter() - tic:.0f} s")
    ax.legend(loc="upper right", fontsize=8)


def on_step(step: int, loss: float):
    history.append(loss)
    if step % plot_every == 0 or step == config.steps:
        draw(step)
        plot.update(fig)


draw(0)
plot = display(fig, display_id=True)
trained, losses = training.train(
    config, run_dir, progress=False, log_every=max(1, steps // 4), callback=on_step
)

# %%
# NBVAL_CHECK_OUTPUT
# Seeded: the same config gives the same losses, in any kernel (and resumed or not)
print("first losses:", [round(loss, 3) for loss in losses[:6]])
print(f"{len(losses)} steps; mean of the first 5 {np.mean(losses[:5]):.3f}")

# %% [markdown]
# ## 4. Sample from it
#
# The run ends by exporting an `SV4DPipeline` folder (`RUN/model`), which loads like any kit model. Both models get a
# held-out scene (`sv4d_kit.evaluation.heldout_scene`: never seen in training) from its input view and make the
# other views; the ground truth is rendered from those cameras. Expect little from a few minutes of training: a grey
# or coloured blob where the object is, at best. The bundled model, trained by the full recipe, makes **blurry
# blobs** of roughly the right colours and place, a known limit of a model this small (being worked on separately);
# it is a kit for learning the machinery, not for pretty pictures. The printed PSNR is one scene's and mostly
# measures the white background: a dark blob in the right place scores about as well as a coloured one, so look at
# the pictures (`sv4d-kit evaluate` scores 50 held-out scenes, with silhouette and multi-view consistency).

# %%
import torch

from sv4d_kit.evaluation import heldout_scene

mine = load_pipeline(f"{run_dir}/model", device)
reference = load_pipeline(model, device)


def novel_views(pipe, name):
    """Held-out scene 0 at the pipeline's size and azimuths: (ground truth, generated), each (T, V+1, 3, H, W)."""
    scene = heldout_scene(0, seed=50, relative_azimuths_deg=pipe.default_azimuths(), size=pipe.config.image_size,
                          frames=pipe.config.frames_per_chunk)  # fmt: skip
    relative = [(a - scene.azimuths_deg[0]) % 360 for a in scene.azimuths_deg]
    out = pipe(scene.images[:, 0], elevations_deg=scene.elevation_deg, azimuths_deg=relative, seed=seed,
               progress=False)  # fmt: skip
    made, truth = out.images, scene.images
    mse = float(((made[:, 1:] - truth[:, 1:]) ** 2).mean())
    print(f"{name}: novel-view PSNR {10 * np.log10(1 / mse):.2f} dB")
    return truth, made


for pipe, name in ((mine, f"this run ({steps} steps)"), (reference, f"{model}")):
    truth, made = novel_views(pipe, name)
    rows = torch.stack([truth[0], made[0]])  # frame 0: (2, V+1, 3, H, W), views across
    labels = [f"{a:g}°" for a in pipe.default_azimuths()]
    display(viz.image_grid(rows.transpose(0, 1), col_labels=labels, row_labels=["truth", "made"],
                           title=f"{name}: frame 0, views across (view 0 is the input)"))  # fmt: skip

# %% [markdown]
# ## 5. The full recipe
#
# The bundled model is two stages of the same loop (`recipes/`), each resumable with `--resume`:
#
# ```
# make tiny-model
# # = sv4d-kit train --output runs/tiny-base --config recipes/tiny_base.json --no-progress
# #   sv4d-kit train --output runs/tiny-finetune --config recipes/tiny_finetune.json \
# #       --export sv4d_kit/assets/tiny_sv4d --no-progress
# ```
#
# Stage 1 (`tiny_base.json`): 5500 steps of 8 scenes from scratch, model_channels 64, log σ ~ N(0.7, 1.6); about
# 1.1 s a step, 103 min, on a 2-core CPU. Stage 2 (`tiny_finetune.json`): 1000 steps from stage 1's export at
# log σ ~ N(3.3, 0.7) with the L1 loss; 51 min on a 2-core CPU. Together about two to three hours, depending on the
# machine; BENCHMARKS.md has every run, its wall time and its loss. On a CUDA GPU, `make tiny-model-gpu` runs an
# optional stage 3 (8 min on an H200). `torchrun --nproc_per_node N -m sv4d_kit train ...` shares each batch among
# N processes.
#
# To train longer here, raise `steps` (and `model_channels` to 64 for the recipe's model) and re-run from section 1.

# %%
import shutil

shutil.rmtree(run_dir, ignore_errors=True)  # the run's temporary folder (skip this cell to keep the model)
print("removed the run folder")
