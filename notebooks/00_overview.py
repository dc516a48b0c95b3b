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
# # 00 · One frame in, a 360° orbit out
#
# SV4D 2.0 takes one frame (or a short clip) of an object and makes **novel-view videos**: the same object, moving
# the same way, seen from cameras around it. This notebook answers "what does it do?" by running it: the kit's
# bundled tiny SV4D (32 px, trained by this kit on procedural scenes) on the bundled sample clip, on a laptop CPU.
# Change `model` to a path to `sv4d2.safetensors` on a GPU machine to run the released model instead.

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
frames = 9  # frames of the clip to generate
elevation = 10.0  # degrees above the object's equator for the novel views

# %% [markdown]
# ## 1. The input
#
# A short clip: a patterned object that spins and moves. `preprocess` reads it, finds the object (alpha or a plain
# background), cuts **one** square crop box for the whole clip, and resizes it to the model's size on white.

# %%
from sv4d_kit import viz
from sv4d_kit.preprocess import preprocess

pipe = load_pipeline(model, device)
clip, info = preprocess(sample_path(), size=pipe.config.image_size, num_frames=frames)
print("clip", tuple(clip.shape), "= (T, 3, H, W); crop box", info["crop"], "in input pixels")
viz.image_grid(clip[:, None], title="the input clip (time across)")

# %% [markdown]
# ## 2. The image matrix
#
# The pipeline returns an **image matrix** `(T, V+1, 3, H, W)`: time across, views down; view 0 is the input, the
# others sit around the orbit at the model's azimuths. That is all SV4D makes: a handful of views per frame.

# %%
import torch

out = pipe(clip, elevations_deg=elevation, generator=torch.Generator().manual_seed(seed), progress=False)
azimuths = out.cameras["azimuths_deg"]
print(
    "image matrix",
    tuple(out.images.shape),
    "; azimuths",
    azimuths,
    "; chunks start at",
    out.cameras["chunk_starts"],
)
viz.image_grid(
    out.images, row_labels=[f"{a:g}°" for a in azimuths], title="generated: time across, views down"
)

# %%
# NBVAL_CHECK_OUTPUT
# The same seed gives the same matrix: a fingerprint to check it (CI re-runs this notebook and compares)
print(
    f"mean {out.images.mean():.4f}  std {out.images.std():.4f}  novel-view mean {out.images[:, 1:].mean():.4f}"
)

# %% [markdown]
# ## 3. The orbit
#
# The 360° video a person watches walks the camera through the views in azimuth order while time advances
# (`sv4d_kit.media.orbit_frames`). Here are its frames; `sv4d-kit generate` writes it as `orbit.mp4`, and notebook 05
# plays it.

# %%
from sv4d_kit.media import orbit_frames

orbit = orbit_frames(out.images, azimuths)  # (length, 3, H, W)
print("orbit", tuple(orbit.shape))
viz.image_grid(orbit[:: max(1, len(orbit) // 12), None], title="the orbit, every few frames")

# %% [markdown]
# ## 4. The map of the stages
#
# | stage | what happens | where to look |
# |---|---|---|
# | preprocessing | read image/GIF/MP4/folder, matte, one crop per clip, resize | `01_preprocessing`, `preprocess.py` |
# | cameras | SV4D's polar/azimuth angles, orbits, Plücker rays, epipolar lines | `02_cameras`, `cameras.py` |
# | sampling | EDM noise levels, V-scaling, Euler steps, guidance per frame × view | `03_sampling`, `sampling.py` |
# | attention | spatial, view and frame attention; switching them off | `04_attention`, `attention.py` |
# | playback | the orbit/time player, GIF/MP4 export | `05_playback`, `playback.py` |
# | training | a tiny SV4D trained live on procedural 4D scenes | `06_training`, `training/` |
#
# (modules under `sv4d_kit/`)
#
# The same run as one command: `sv4d-kit generate INPUT --output DIR` (or `sv4d_kit.generate(INPUT, DIR)`).
