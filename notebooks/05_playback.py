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
# # 05 · Playback: watching the image matrix
#
# SV4D makes an **image matrix** `(T, V, 3, H, W)`: T frames of V views (view 0 is the input). A person does not
# look at a matrix; they watch it: one view playing over time, or a camera that sweeps around the object while it
# moves. This notebook generates a matrix with the bundled tiny model, plays it with the kit's player
# (`sv4d_kit.playback`), and writes the same orbit as a GIF and an MP4.

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
fps = 8  # playback and export speed, frames a second
export_dir = "outputs/05_playback"  # where the GIF and MP4 go (relative: to the working folder)

# %% [markdown]
# ## 1. A matrix to play
#
# The bundled sample clip, preprocessed to the model's size, and one seeded run of the pipeline (as in notebook 00).

# %%
import torch

from sv4d_kit.preprocess import preprocess

pipe = load_pipeline(model, device)
clip, _ = preprocess(sample_path(), size=pipe.config.image_size, num_frames=frames)
out = pipe(clip, elevations_deg=10.0, generator=torch.Generator().manual_seed(seed), progress=False)
images, azimuths = out.images.float().cpu(), out.cameras["azimuths_deg"]
print("image matrix", tuple(images.shape), "= (T, V, 3, H, W); azimuths", azimuths)

# %% [markdown]
# ## 2. The player
#
# - **▶ (play)** advances the **frame** slider: time runs, the camera stays where the **view** slider puts it.
#   The Play and the slider are linked in the browser (`jslink`), so ticking needs no trip to Python; in Colab,
#   whose Play breaks `jslink`, they are linked in the kernel instead.
# - **frame** picks the moment, **view** picks the camera (0 is the input; the label says its azimuth).
# - **orbit** makes each tick a step of the 360° orbit: the camera walks through the views in azimuth order while
#   time advances, the way `orbit.mp4` is made. Switch it off to get plain time back.
#
# Every frame was encoded to PNG once when the player was made (`frame_png`, enlarged with nearest neighbour, so a
# 32-pixel model stays sharp), so moving a slider only swaps bytes. The player needs a live kernel: in a static
# view of this notebook (GitHub, nbviewer) it does not appear.

# %%
# NBVAL_IGNORE_OUTPUT
from sv4d_kit.playback import player

view = player(images, azimuths, fps=fps)
view

# %%
# NBVAL_CHECK_OUTPUT
# The seeded matrix and the orbit the player walks (per step: frame, view); CI re-runs this and compares
p = view.player
print(f"mean {images.mean():.4f}  std {images.std():.4f}  novel-view mean {images[:, 1:].mean():.4f}")
print(f"orbit: {len(p.steps)} steps, views in the order {list(dict.fromkeys(v for _, v in p.steps))}")
print("first steps (frame, view):", p.steps[:6])

# %% [markdown]
# ## 3. The orbit, step by step
#
# The same steps as pictures: time moves one frame a step, and the view changes every `len(steps) / V` steps.
# These are the very bytes the player shows (`p.pngs[t][v] == frame_png(images, t, v, p.factor)`).

# %%
from sv4d_kit import viz

every = max(1, len(p.steps) // 12)
picked = p.steps[::every]
strip = torch.stack([images[t, v] for t, v in picked])[:, None]  # (steps, 1, 3, H, W): steps across
viz.image_grid(strip, col_labels=[f"t{t} v{v}" for t, v in picked], row_labels=["orbit"],
               title="the orbit: every few steps (t = frame, v = view)")  # fmt: skip

# %% [markdown]
# ## 4. Driving it from code
#
# The widgets are ordinary Python objects: setting a slider's value changes the picture (this is how the kit's
# tests check the player, since the browser link does not run inside a kernel).

# %%
from IPython.display import Image

from sv4d_kit.playback import frame_png

p.frame.value, p.view.value = frames // 2, 2
assert p.image.value == frame_png(images, frames // 2, 2, p.factor)
print(p.label.value)
Image(data=p.image.value)

# %% [markdown]
# ## 5. Export: GIF and MP4
#
# `export` writes the orbit (views cross-faded, exactly like `sv4d-kit generate`'s `orbit.mp4`) or one view over
# time, enlarged like the player; the suffix picks the format. The file appears only once it is complete.

# %%
from pathlib import Path

from sv4d_kit.playback import export

folder = Path(export_dir)
gif = export(images, folder / "orbit.gif", azimuths, fps=fps)
mp4 = export(images, folder / "orbit.mp4", azimuths, fps=fps)
view_gif = export(images, folder / "view_02.gif", azimuths, view=2, fps=fps)
for path in (gif, mp4, view_gif):
    print(f"{path}  {path.stat().st_size / 1024:.0f} KiB")
Image(filename=str(gif))

# %% [markdown]
# ## 6. Bad input is one line
#
# A player needs one azimuth per view; with the wrong count it says so instead of guessing.

# %%
from sv4d_kit.notebook import show_input_error

show_input_error(player, images, azimuths_deg=[0.0, 90.0])
show_input_error(player, images, azimuths, fps=0)

# %% [markdown]
# ## What next
#
# `06_training` trains a tiny SV4D live. To watch a run written by `sv4d-kit generate`, load its views into a
# matrix and pass it to `player`; `sv4d_kit.media.write_outputs` writes the per-view videos and the orbit.
