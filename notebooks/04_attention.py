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
# # 04 · Attention: where each token looks
#
# Every transformer of the SV4D UNet runs three kinds of self-attention, one after the other, on the latent grid of
# all T frames × V generated views of a chunk:
#
# | kind | module (reference name) | one query attends over |
# |---|---|---|
# | **spatial** | `transformer_blocks` | the H×W pixels of its own frame and view |
# | **view** | `time_mix_blocks` ("camera" attention) | the V views at its pixel and frame (but see §3) |
# | **frame** | `motion_blocks` ("motion" attention) | the T frames at its view and pixel |
#
# This notebook captures the attention probabilities during a real generation (`sv4d_kit.attention`), turns them
# into pictures for one query token, lets you pick the query in an explorer, and finally switches the view and the
# frame attention **off** to see what each one buys, measured against ground truth.

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
seed = 0  # the held-out scene's evaluation seed and the sampler's noise
model = "tiny"  # "tiny" (bundled, CPU) or a path to sv4d2.safetensors / sv4d2_8views.safetensors (GPU)
frames = 8  # frames of the held-out clip (the attention maps come from its first chunk)
steps = 6  # denoising steps (the tiny model's default is 6)
scene_index = 0  # which held-out scene
elevation = 10.0  # degrees above the equator of every view

# %% [markdown]
# ## 1. A held-out scene and its attention
#
# `evaluation.heldout_scene` renders a procedural 4D scene the tiny model never saw in training, from the input
# view and from the model's novel views, with ground-truth depth. The pipeline gets only the input view's clip.
# `pipeline_attention` runs the pipeline once inside `capture_attention` and keeps the probabilities of the last
# denoising step of the first chunk, for the transformers with grids up to 16×16 (at the tiny model's 32 px the
# latent is 8×8, so every transformer; on the released model at 576 px only the 9×9 middle one).

# %%
from sv4d_kit import evaluation, viz
from sv4d_kit.attention import pipeline_attention

pipe = load_pipeline(model, device)
scene = evaluation.heldout_scene(scene_index, seed, pipe.default_azimuths(), pipe.config.image_size, frames,
                                 elevation)  # fmt: skip
relative = [(a - scene.azimuths_deg[0]) % 360 for a in scene.azimuths_deg]  # the input view is at 0°
capture = pipeline_attention(pipe, scene.images[:, 0], azimuths_deg=relative, elevation_deg=elevation, seed=seed,
                             steps=steps)  # fmt: skip
print(f"captured step {capture.step} (sigma {capture.sigma:.1f}) of chunk 0; layers and their token grids:")
for name, layout in capture.layouts.items():
    print(f"  {name:18s} B={layout.batch} T={layout.frames} V={layout.views} {layout.height}x{layout.width} "
          f"use_3d_attention={layout.use_3d_attention}")  # fmt: skip
viz.image_grid(scene.images[: capture.layouts[capture.layers[0]].frames], row_labels=[f"{a:g}°" for a in relative],
               title="ground truth of the first chunk: time across, views down (view 0 is the input)")  # fmt: skip

# %% [markdown]
# ## 2. One query, three kinds of attention
#
# A *query* is one token: a frame t, a generated view (1 … V, as in the image matrix; the input view 0 is not
# generated, so it is not in the UNet) and a pixel (y, x) **of the layer's grid** (8×8 at the tiny model's finest
# level; each cell covers 4×4 image pixels). We pick the centre of the object in view 2 at the last frame of the
# chunk and draw, at the finest layer:
#
# - **spatial**: a heatmap over the query's own view (cyan: the query cell);
# - **view**: one bar per view, the weight the query gives the *same pixel* in each view (orange: its own view);
# - **frame**: one bar per frame of the chunk at the same view and pixel;
# - below: the query's **epipolar lines** (red) in the other views of its frame. The cameras are the pipeline's
#   azimuths and elevation on the orbit of `synthetic.DEFAULT_RADIUS` with `synthetic.DEFAULT_FOV`, as
#   `evaluation.heldout_scene` places them. A point seen at the query lies somewhere on each red line, but view
#   attention only ever compares the *same* pixel (x, y) across views: it has no way to follow the line.

# %%
import torch
import torch.nn.functional as F

from sv4d_kit.explorers.attention import explore

layer = capture.layers[0]  # the finest grid
grid = capture.layouts[layer]
query_frame, query_view = grid.frames - 1, 2
alpha = F.adaptive_avg_pool2d(scene.alpha[query_frame, query_view], (grid.height, grid.width))[
    0
]  # coverage per cell
ys, xs = torch.meshgrid(torch.arange(grid.height), torch.arange(grid.width), indexing="ij")
query_y = int(((alpha * ys).sum() / alpha.sum()).round())  # the object's centre of mass on the grid
query_x = int(((alpha * xs).sum() / alpha.sum()).round())
query, figure = explore(capture, layer, query_frame, query_view, query_y, query_x)
figure

# %%
# NBVAL_CHECK_OUTPUT
# The same seed gives the same maps: the query and its weights
print(f"query: layer {layer}, frame {query_frame}, view {query_view}, pixel ({query_y}, {query_x})")
print("spatial peak (y, x):", divmod(int(query.spatial.argmax()), grid.width),
      f" weight {float(query.spatial.max()):.4f} (uniform {1 / grid.pixels:.4f})")  # fmt: skip
print("view weights: ", " ".join(f"{w:.4f}" for w in query.view_weights.tolist()))
print("frame weights:", " ".join(f"{w:.4f}" for w in query.frame_weights.tolist()))

# %% [markdown]
# ## 3. The released 4-view model's quirk: its "view" attention does not look at other views
#
# The table above holds for the tiny model and the 8-view model (`use_3d_attention=False`). The released 4-view
# model `sv4d2` has `use_3d_attention=True`, and there the view block sees a different grouping. The transformer
# lays its tokens out as (b, view, pixel) rows with the T frames as the sequence, and tells the view block that
# its "timesteps" are V. The block then cuts the flattened (b, view, y, x) index into groups of **V consecutive
# entries** and attends inside each group, separately for every frame. So with V = 4 a query attends over
# **4 neighbouring pixels in raster order of its own view and frame** (a 1×4 run of its row: x // 4 · 4 … x // 4 ·
# 4 + 3 when the latent width is divisible by 4, as the 72, 36 and 18 px levels are), not over the 4 views. Where
# H·W is not divisible by 4 (the 9×9 middle level) the groups wrap to the next row and can straddle two views.
# The kit keeps this on purpose (it is what the released weights were trained with); `attention_index` knows both
# layouts, and the explorer labels the bars by key pixel and outlines them (orange, dashed) in that case. Here is
# the same bookkeeping for a 4-view model with `use_3d_attention=True`, on a 72×72 latent:

# %%
from sv4d_kit.attention import VIEW_QUIRK, AttentionLayout, attention_index

released = AttentionLayout(batch=2, frames=12, views=4, height=72, width=72, use_3d_attention=True)
for v, y, x in [(0, 10, 21), (2, 40, 0)]:
    keys = attention_index("view", released, frame=5, view=v, y=y, x=x).keys
    print(
        f"query view {v + 1}, pixel ({y},{x}) -> keys (view, y, x):", [(k[2] + 1, k[3], k[4]) for k in keys]
    )
middle = AttentionLayout(batch=2, frames=12, views=4, height=9, width=9, use_3d_attention=True)
keys = attention_index("view", middle, frame=5, view=0, y=8, x=8).keys
print("9x9 middle level, view 1, pixel (8,8) -> keys:", [(k[2] + 1, k[3], k[4]) for k in keys])
print()
print(VIEW_QUIRK)

# %% [markdown]
# ## 4. The explorer
#
# Pick a layer, a frame, a view and the query pixel (on that layer's grid); the maps and the epipolar lines follow.
# (`attention_explorer(pipe, frames, ...)` runs the pipeline and builds the same explorer in one call; here it
# reuses the capture above.)

# %%
# NBVAL_IGNORE_OUTPUT
from sv4d_kit.explorers.attention import AttentionExplorer

explorer = AttentionExplorer(capture)
explorer

# %% [markdown]
# ## 5. Ablation: switch the view or the frame attention off
#
# `pipe.unet.set_block_switches(view=..., motion=...)` skips a whole stage in every transformer (its embedding,
# attention block and blender), with the same weights and no retraining; `evaluation.generate` does that for its
# ablation methods. We generate the held-out clip three ways with the same seed and compare with the ground truth:
#
# - **multi-view consistency**: each novel view warped into every other one through the *true* depth; the colour
#   error (lower is better) and correlation (higher is better) of the overlapping pixels;
# - **temporal flicker**: how much the frame-to-frame change of each novel view differs from the true one (lower
#   is better);
# - PSNR against the ground truth, for reference. One scene is a small sample: `sv4d-kit evaluate` averages many.

# %%
from sv4d_kit import metrics

methods = {"full model": "tiny_sv4d", "view attention off": "tiny_sv4d_no_view_attention",
           "frame attention off": "tiny_sv4d_no_frame_attention"}  # fmt: skip
made, results = {}, {}
for label, method in methods.items():
    made[label] = evaluation.generate(pipe, scene, method, seed=seed, steps=steps)
    results[label] = metrics.evaluate_matrix(made[label], scene.images, scene.alpha, scene.depth, scene.extrinsics,
                                             scene.K)  # fmt: skip

last = frames - 1
rows = [scene.images[last]] + [m[last] for m in made.values()]  # each (V+1, 3, H, W)
viz.image_grid(torch.stack(rows, dim=1), col_labels=[f"{a:g}°" for a in relative],
               row_labels=["ground truth", *methods], title=f"frame t={last}: views across")  # fmt: skip

# %%
view = 2
rows = [scene.images[:, view]] + [m[:, view] for m in made.values()]  # each (T, 3, H, W)
viz.image_grid(torch.stack(rows, dim=1), row_labels=["ground truth", *methods],
               title=f"view {view} ({relative[view]:g}°): time across")  # fmt: skip

# %%
# NBVAL_CHECK_OUTPUT
# Multi-view consistency and temporal flicker of the novel views against the ground truth (one scene, seeded)
columns = {"mv error ↓": "multiview_consistency_error", "mv correlation ↑": "multiview_consistency_correlation",
           "flicker ↓": "temporal_flicker", "PSNR dB ↑": "psnr_db"}  # fmt: skip
print(f"{'':22s}" + "".join(f"{c:>18s}" for c in columns))
for label, result in results.items():
    print(f"{label:22s}" + "".join(f"{result[k]:18.4f}" for k in columns.values()))
gt = results["full model"]
print(f"{'ground truth itself':22s}{gt['multiview_consistency_error_gt']:18.4f}"
      f"{gt['multiview_consistency_correlation_gt']:18.4f}{0.0:18.4f}{'':>18s}")  # fmt: skip

# %% [markdown]
# Read the table against the ground truth's own row (its consistency error is the floor set by sampling). The
# expectation: with the view attention off the novel views are made without talking to each other, so they should
# agree less when warped into one another; with the frame attention off each frame is made on its own, so the clip
# should flicker more. One scene of the tiny model need not show both: flicker usually follows, but washed-out,
# flatter views can score a *lower* colour error between views, and the consistency figures of one scene can favour
# an ablation. Judge on means over many scenes: `sv4d-kit evaluate` (or `evaluation.evaluate`, whose
# `quality_bar` checks "view attention adds consistency" on them).
