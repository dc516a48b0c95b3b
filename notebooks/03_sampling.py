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
# # 03 · Sampling: from noise to an image matrix
#
# SV4D 2.0 is an EDM diffusion model (Karras et al., 2022). Generating one chunk of novel views means: start from
# pure noise at a high noise level σ, ask the network for its guess of the clean latents x̂0 (the *denoised*
# estimate), take an Euler step towards it to a lower σ, and repeat until σ = 0. This notebook takes that loop
# apart: the σ schedule, the V-scaling preconditioning around the network, one Euler step by hand, the per-frame ×
# per-view guidance scale, and x̂0 sharpening step by step; then an explorer to try settings.
#
# The bundled tiny model runs on a CPU. Change `model` to a path to `sv4d2.safetensors` on a GPU to run the
# released model (the pictures then take minutes instead of seconds).

# %%
import subprocess
import sys

if (
    "google.colab" in sys.modules
):  # Colab: install the kit from a clone of its repository (the folder above this one)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "..[notebooks]"], check=True)

from sv4d_kit.notebook import load_pipeline, sample_path, setup

device = setup()  # figures as pictures, and the device (it says which)

# %% tags=["parameters"]
seed = 23  # the sampler's noise
model = "tiny"  # "tiny" (bundled, CPU) or a path to sv4d2.safetensors / sv4d2_8views.safetensors (GPU)
frames = 4  # frames of the clip to generate (the tiny model's chunk is 4 frames)
steps = 50  # Euler steps of the full schedule (the reference's 50)
elevation = 10.0  # degrees above the object's equator for the novel views

# %% [markdown]
# ## 0. The model and its input
#
# The bundled sample clip, preprocessed to the model's size (notebook 01 shows how).

# %%
from sv4d_kit import viz
from sv4d_kit.pipeline import REFERENCE_SAMPLING
from sv4d_kit.preprocess import preprocess

pipe = load_pipeline(model, device)
clip, _ = preprocess(sample_path(), size=pipe.config.image_size, num_frames=frames)
opts = pipe.sampling_options()  # the reference's settings, overridden by the model's own
T, V = min(pipe.config.frames_per_chunk, len(clip)), pipe.config.num_views
shown = ("num_inference_steps", "sigma_max", "sigma_min", "guider")
print("this model samples with:", {k: opts[k] for k in shown})
print("the reference script uses:", {k: REFERENCE_SAMPLING[k] for k in shown[:3]}, "(guider by variant)")
viz.image_grid(clip[:, None], title="the input clip (time across)")

# %% [markdown]
# ## 1. The noise schedule
#
# `sampling.edm_sigmas(n, σ_min, σ_max, ρ=7)` spaces n noise levels evenly in σ^(1/ρ), from σ_max down to σ_min, and
# appends a final 0: many small steps at low noise, where detail is decided, few at high noise. SV4D 2.0's reference
# script samples 50 steps from σ = 700 to 0.002.
#
# **The bundled tiny model stops early**: its defaults are 6 steps from σ = 80 to σ = 55, and the last step jumps
# from 55 straight to 0, i.e. it returns the network's x̂0 guess at σ = 55. That was chosen on validation scenes: the
# tiny network cannot tell content at σ ≈ 1–5 and paints coloured speckle there, so a blurred x̂0 scores better than
# the full schedule (BENCHMARKS.md). Section 5 shows both.

# %%
from matplotlib.figure import Figure

from sv4d_kit import sampling

ref = REFERENCE_SAMPLING
model_sigmas = sampling.edm_sigmas(
    opts["num_inference_steps"], opts["sigma_min"], opts["sigma_max"], opts["rho"]
)
full_sigmas = sampling.edm_sigmas(steps, ref["sigma_min"], ref["sigma_max"], ref["rho"])

fig = Figure(figsize=(8, 3.4), layout="constrained")
ax = fig.subplots()
for sig, label, marker in ((full_sigmas, f"reference: {steps} steps, 700 → 0.002", "."),
                           (model_sigmas, f"this model: {opts['num_inference_steps']} steps, "
                                          f"{opts['sigma_max']:g} → {opts['sigma_min']:g}", "o")):  # fmt: skip
    n = len(sig) - 1
    ax.plot(range(n), sig[:-1], marker=marker, label=label)  # the final 0 has no place on a log axis
    ax.annotate("→ 0", (n - 1, float(sig[-2])), textcoords="offset points", xytext=(6, -4), fontsize=8)
ax.set_yscale("log")
ax.set_xlabel("step i")
ax.set_ylabel("σ_i (log)")
ax.set_title("EDM noise levels (ρ = 7); every chain ends with a step to σ = 0")
ax.grid(True, which="both", alpha=0.3)
ax.legend()
fig

# %%
# NBVAL_CHECK_OUTPUT
print("this model:", [round(float(s), 2) for s in model_sigmas])
print("reference: first", [round(float(s), 2) for s in full_sigmas[:5]], "... last",
      [round(float(s), 4) for s in full_sigmas[-4:]])  # fmt: skip

# %% [markdown]
# ## 2. V-scaling: what the network actually predicts
#
# The network F never sees x at its raw scale. SV4D 2.0 wraps it in sgm's `VScalingWithEDMcNoise`
# (`sampling.vscaling_edm_cnoise`):
#
# D(x, σ) = c_skip(σ) · x + c_out(σ) · F(c_in(σ) · x, c_noise(σ)), with c_skip = 1/(σ²+1), c_out = −σ/√(σ²+1),
# c_in = 1/√(σ²+1), c_noise = ¼ ln σ.
#
# `c_in` keeps the network's input at unit variance; at high σ, c_skip ≈ 0 and c_out ≈ −1, so the network's output
# *is* the (negated) clean image; at low σ, c_skip ≈ 1 and the network only adds a small correction to x. The
# shaded bands are the σ ranges each schedule visits.

# %%
import torch

grid_sigma = torch.logspace(-3, 3, 400)
c_skip, c_out, c_in, c_noise = sampling.vscaling_edm_cnoise(grid_sigma)
fig = Figure(figsize=(10, 3.4), layout="constrained")
ax1, ax2 = fig.subplots(1, 2)
for values, name in ((c_skip, "c_skip"), (c_out, "c_out"), (c_in, "c_in")):
    ax1.plot(grid_sigma, values, label=name)
ax2.plot(grid_sigma, c_noise, color="C3", label="c_noise = ln(σ)/4")
for ax in (ax1, ax2):
    ax.set_xscale("log")
    ax.set_xlabel("σ (log)")
    ax.axvspan(
        REFERENCE_SAMPLING["sigma_min"], REFERENCE_SAMPLING["sigma_max"], color="0.9", label="reference"
    )
    ax.axvspan(opts["sigma_min"], opts["sigma_max"], color="C1", alpha=0.3, label="this model")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
ax1.set_title("the scales around the network")
ax2.set_title("the noise level the network is told")
fig

# %% [markdown]
# ## 3. One Euler step by hand
#
# The sampler (`sampling.sample_euler_edm`, Karras et al.'s Algorithm 2 without churn) treats x̂0 = D(x_i, σ_i) as
# fixed for one step and follows the probability-flow ODE: the slope is d = (x_i − x̂0) / σ_i, and
# x_{i+1} = x_i + (σ_{i+1} − σ_i) · d. The pipeline's `callback_on_step_end(pipe, i, σ_i, tensors)` hands us the
# latents after every step and the x̂0 of that step, so each step can be redone by hand and compared.
#
# Note the last step: σ_{i+1} = 0 gives x_{i+1} = x̂0 exactly: a chain always returns the network's final guess.

# %%
import numpy as np

record = []  # per step of the first chunk: (σ_i, latents after the step, x̂0 of the step)


def keep(_pipe, i, sigma, tensors):
    if tensors["chunk"] == 0:
        record.append((sigma, tensors["latents"].float().cpu(), tensors["denoised"].float().cpu()))


out_full = pipe(clip, elevations_deg=elevation, num_inference_steps=steps, sigma_min=REFERENCE_SAMPLING["sigma_min"],
                sigma_max=REFERENCE_SAMPLING["sigma_max"], seed=seed, callback_on_step_end=keep,
                progress=False)  # fmt: skip
sig = full_sigmas.tolist()
by_hand, one_step = [], []
for i in range(1, len(record)):  # x_i is the latents the previous step left
    x_i, (_, x_next, x0) = record[i - 1][1], record[i]
    d = (x_i - x0) / sig[i]  # the slope of the ODE
    mine = x_i + (sig[i + 1] - sig[i]) * d  # one Euler step
    by_hand.append(float((mine - x_next).abs().max()))
    # the kit's sampler for one step, with a "network" that answers this step's x̂0
    theirs = sampling.sample_euler_edm(
        lambda x, s, x0=x0: x0, x_i, torch.tensor(sig[i : i + 2]), disable=True
    )
    one_step.append(float((theirs - x_next).abs().max()))
last_is_x0 = float((record[-1][1] - record[-1][2]).abs().max())

# %%
# NBVAL_CHECK_OUTPUT
print(f"{len(by_hand)} steps redone by hand: max |by hand - pipeline| = {max(by_hand):.6f}")
print(f"sample_euler_edm, one step at a time:  max |kit - pipeline|     = {max(one_step):.6f}")
print(f"last step (σ -> 0): max |latents - x̂0| = {last_is_x0:.6f}")

# %% [markdown]
# ## 4. Guidance: one scale per frame and view
#
# With guidance the network runs twice a step, without and with the conditioning, and the guider mixes the two
# answers: x̂0 = x̂0_uncond + w · (x̂0_cond − x̂0_uncond), with **one scale w per frame of the chunk** (T frames × V
# views, in (t v) order; `pipeline.guidance_scale`). SV4D 2.0 ramps w from 1 to 2 over time (`linear`); the 8-view
# model also peaks it at the middle views (`spatiotemporal`, 1.5 → 2.5). Drawn here for the reference's chunk of
# 12 frames × 4 views, scales 1 → 2 (`constant` is the max scale everywhere, `none` is 1). The tiny model samples
# with `constant` 1, i.e. no guidance, which runs the network only once a step (it scored better on validation
# scenes).

# %%
from sv4d_kit.pipeline import GUIDERS, guidance_scale

T_ref, V_ref = 12, 4
fig = Figure(figsize=(12, 2.6), layout="constrained")
axes = fig.subplots(1, len(GUIDERS))
for ax, kind in zip(axes, GUIDERS):
    w = guidance_scale(kind, T_ref, V_ref, 1.0, 2.0).view(T_ref, V_ref)  # (1, T*V) in (t v) order -> (T, V)
    image = ax.imshow(w.T, vmin=1.0, vmax=2.0, cmap="viridis")  # views down, time across, as the image grids
    ax.set_title(kind)
    ax.set_xlabel("frame t")
    ax.set_ylabel("novel view v")
    ax.set_yticks(range(V_ref))
fig.colorbar(image, ax=axes, shrink=0.8, label="guidance scale w")
fig

# %% [markdown]
# ## 5. x̂0 sharpening, step by step
#
# The x̂0 of every step can be decoded to images, as the pipeline decodes its final latents (step 8 of
# `SV4DPipeline.__call__`: `models.autoencoder.decode_latents(vae, latents)`). Early x̂0s are the network's average
# guess; as σ falls, it commits to detail. Shown: the novel views at frame 0 after a few of the steps, first for the
# full schedule (σ 700 → 0.002), then for the model's own schedule.

# %%
from sv4d_kit.models.autoencoder import decode_latents


def decode(latents):
    """x̂0 latents (N, C, h, w) -> images (N, 3, H, W) in [0, 1]."""
    vae = pipe.vae
    with torch.no_grad():
        return decode_latents(vae, latents.to(vae.device, vae.dtype), chunk_size=4).float().cpu()


def sharpening(record, columns, title):
    """The novel views at frame 0 (views down) of the x̂0 of the chosen steps (across)."""
    shown = [int(i) for i in np.unique(np.linspace(0, len(record) - 1, columns).round())]
    x0 = torch.stack([decode(record[i][2][:V]) for i in shown])  # (steps, V, 3, H, W): frame 0 is the first V
    labels = [f"σ={record[i][0]:.3g}" for i in shown]
    azimuths = out_full.cameras["azimuths_deg"][1:]
    return viz.image_grid(x0, col_labels=labels, row_labels=[f"{a:g}°" for a in azimuths], title=title)


sharpening(record, 10, f"x̂0 of the full schedule ({steps} steps, 700 → 0.002), frame 0")

# %%
record_full = record
record = []
out_model = pipe(clip, elevations_deg=elevation, seed=seed, callback_on_step_end=keep, progress=False)
sharpening(record, opts["num_inference_steps"], f"x̂0 of this model's schedule ({opts['num_inference_steps']} "
           f"steps, {opts['sigma_max']:g} → {opts['sigma_min']:g}), frame 0")  # fmt: skip

# %% [markdown]
# The two results, whole (time across, views down; view 0 is the input). **The tiny model's novel views are blurry
# blobs** of roughly the object's colours and place, with either schedule: a known limit of a 7-million-parameter
# model trained for hours on a CPU, being worked on separately. Its early stop trades the speckle of the full
# schedule for blur. The released SV4D 2.0 does the same loop on 72 × 72 latents (576 px) with a network hundreds
# of times larger, and there the full schedule is what you want.

# %%
both = torch.cat([out_model.images, out_full.images])  # (2T, V+1, 3, H, W): the two runs side by side
n = len(out_model.images)
viz.image_grid(both, col_labels=[f"model t={t}" for t in range(n)] + [f"full t={t}" for t in range(n)],
               row_labels=[f"{a:g}°" for a in out_model.cameras["azimuths_deg"]],
               title="this model's schedule (left) and the full schedule (right)")  # fmt: skip

# %%
# NBVAL_CHECK_OUTPUT
for name, out in (("model schedule", out_model), ("full schedule", out_full)):
    novel = out.images[:, 1:]
    print(f"{name}: novel-view mean {novel.mean():.4f}  std {novel.std():.4f}")
print(
    "x̂0 std by step (full):", [round(float(x0.std()), 3) for _, _, x0 in record_full[:: max(1, steps // 6)]]
)

# %% [markdown]
# ## 6. Try it: the sampling explorer
#
# Change the settings and press **run**: the new grid appears on the right, the previous one moves to the left, so
# you can compare. Things to try: σ_min 0.002 (the full schedule) against the model's 55; more steps; a churn of
# 10 (fresh noise injected at each step); guidance kinds with scales above 1 (slower: the network runs twice a
# step); other azimuths (comma-separated, input view first). Impossible values (0 steps, σ_min ≥ σ_max, the wrong
# number of azimuths) show a one-line error and keep the last result.

# %%
# NBVAL_IGNORE_OUTPUT
from sv4d_kit.explorers.sampling import sampling_explorer

explorer = sampling_explorer(pipe, clip, seed=seed, elevation=elevation)
explorer

# %%
# What the explorer does with a bad value, without a browser: one line, the last result kept
explorer.set_values(sigma_min=100.0)
print(explorer.run())
explorer.set_values(sigma_min=float(opts["sigma_min"]))
