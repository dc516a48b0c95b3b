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
# # 01 · From a user's file to the model's frames
#
# SV4D 2.0 wants square frames with the object centred on white, filling a fixed share of the square. Users have
# photos, GIFs, phone videos and folders of frames. `sv4d_kit.preprocess` bridges the two in three steps:
#
# 1. **read** anything (`read_frames`) into uint8 frames `(N, H, W, C)`;
# 2. **matte** each frame: its alpha channel, or a plain background found by colour (rembg is optional);
# 3. cut **one square crop box for the whole clip**, sized by `image_frame_ratio`, and **resize** it (Lanczos) on
#    white.
#
# Then we look at awkward inputs (which work) and bad ones (which stop with one clear line).

# %%
import subprocess
import sys

if (
    "google.colab" in sys.modules
):  # Colab: install the kit from a clone of its repository (the folder above this one)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-e", "..[notebooks]"], check=True)

from sv4d_kit.notebook import load_pipeline, sample_path, setup, show_input_error

device = setup()  # figures as pictures, and the device (it says which)

# %% tags=["parameters"]
seed = 7  # the procedural scene (sv4d_kit.synthetic) of the RGBA example
model = "tiny"  # "tiny" (bundled, CPU) or a path to sv4d2.safetensors / sv4d2_8views.safetensors (GPU)
size = 64  # the side of the preprocessed frames in this notebook (the last section uses the model's own size)
frames = 9  # frames to keep from the clip
ratios = [0.5, 0.7, 0.9, 1.0]  # image_frame_ratio values to compare
huge_side = 3000  # side in pixels of the "huge image" example

# %% [markdown]
# ## 1. One reader for every kind of input
#
# We make the inputs a user might have from the bundled sample clip (a GIF inside the package), in a temporary
# folder: a still PNG, the GIF itself, an MP4 and a folder of numbered PNGs. `read_frames` returns the frames and
# an info dict saying what it found.

# %%
import tempfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch
from PIL import Image

from sv4d_kit import viz
from sv4d_kit.preprocess import object_box, plain_background_matte, preprocess, read_frames

work = Path(tempfile.mkdtemp(prefix="sv4d_01_"))
clip, _ = read_frames(sample_path())  # (21, 256, 256, 3) uint8
Image.fromarray(clip[0]).save(work / "image.png")
imageio.mimwrite(work / "clip.mp4", list(clip), fps=10, codec="libx264", quality=8, macro_block_size=16)
(work / "frames").mkdir()
for i, f in enumerate(clip):
    Image.fromarray(f).save(work / "frames" / f"frame{i}.png")  # frame2.png sorts before frame10.png

inputs = {
    "image.png": work / "image.png",
    "sample GIF": sample_path(),
    "clip.mp4": work / "clip.mp4",
    "frames/": work / "frames",
    "frames/frame1*.png": str(work / "frames" / "frame1*.png"),  # a glob pattern
}
print(f"{'input':20} {'kind':10} {'frames':>6}  {'H x W':9} {'alpha':5}  {'modes':12} fps")
firsts = []
for name, path in inputs.items():
    x, info = read_frames(path)
    firsts.append(x[0])
    fps = f"{info['fps']:g}" if info["fps"] else "-"
    print(f"{name:20} {info['kind']:10} {info['num_frames']:6}  {info['height']}x{info['width']:<5} "
          f"{info['has_alpha']!s:5}  {','.join(info['modes']):12} {fps}")  # fmt: skip
viz.image_grid(
    np.stack(firsts)[:, None].transpose(0, 1, 4, 2, 3),
    col_labels=list(inputs),
    row_labels=["frame 0"],
    title="the first frame of each input",
    cell_inches=1.5,
)

# %% [markdown]
# The GIF's frames come back in two modes: `P` (palette) for the first frame and `RGB` for the others, because
# a GIF stores later frames as changes on a canvas; `read_frames` composites them as a viewer shows them. The MP4
# is lossy (H.264), so its frames differ slightly from the GIF's. The glob picks `frame1.png` and `frame10.png` ...
# `frame19.png`, in natural order.

# %% [markdown]
# ## 2. Matting: which pixels are the object?
#
# - A frame **with an alpha channel** (RGBA PNG, a transparent GIF) is used as it is.
# - A frame **on a plain background** (any colour): the background colour is the median of the image border;
#   pixels within `bg_tolerance` of it that connect to the border are background (a flood fill), everything else
#   is object, so a white patch inside the object stays.
# - Anything else: pass `remove_bg=True` to cut the object out with rembg (optional: `pip install rembg
#   onnxruntime` and its `u2net.onnx` model on disk; the kit never downloads it). Without it, the kit warns and
#   keeps the whole frame.
#
# Below: the sample frame on white, the same object on a blue background, an RGBA render of a procedural scene
# (`sv4d_kit.synthetic`, scene `seed`) and the sample on a noisy background; top row the input, then the alpha the
# kit finds (white = object), then what `preprocess` makes.

# %%
import warnings

from sv4d_kit import synthetic

frame = clip[0]
alpha = plain_background_matte(frame)  # (H, W) uint8 in {0, 255}
blue = np.array([40, 90, 160], np.uint8)
on_blue = np.where(alpha[..., None] > 0, frame, blue).astype(np.uint8)
render = synthetic.render_orbit(synthetic.make_scene(seed), [30.0], 10.0, size=256, num_frames=1)
rgba = (render.rgba()[0, 0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()  # (H, W, 4)
rng = np.random.default_rng(seed)
noisy = np.where(alpha[..., None] > 0, frame, rng.integers(0, 256, frame.shape)).astype(np.uint8)

examples = {"on white": frame, "on blue": on_blue, "RGBA render": rgba, "noisy background": noisy}
tiles, mattes, outs, methods = [], [], [], []
for name, img in examples.items():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, info = preprocess(img[None], size=size)
    found = img[..., 3] if img.shape[-1] == 4 else plain_background_matte(img)
    found = np.full(img.shape[:2], 255, np.uint8) if found is None else found
    tiles.append(Image.fromarray(img).convert("RGB").resize((size, size)))
    mattes.append(np.repeat(np.asarray(Image.fromarray(found).resize((size, size)))[..., None], 3, -1))
    outs.append(out[0])
    methods.append(info["matte"][0])
    print(f"{name:17} matte: {info['matte'][0]:17}" + (f" warning: {caught[0].message}" if caught else ""))
grid = torch.stack(
    [
        torch.from_numpy(np.stack([np.asarray(t) for t in tiles])).permute(0, 3, 1, 2).float() / 255,
        torch.from_numpy(np.stack(mattes)).permute(0, 3, 1, 2).float() / 255,
        torch.stack(outs),
    ],
    dim=1,
)  # (examples, 3 rows, 3, size, size)
viz.image_grid(
    grid,
    col_labels=[f"{n}\n({m})" for n, m in zip(examples, methods)],
    row_labels=["input", "alpha", "preprocessed"],
    cell_inches=1.5,
)

# %% [markdown]
# The blue background becomes white, the RGBA render keeps its soft edges (the resize works on premultiplied
# alpha, so there is no dark fringe), and the noisy background is not plain: the whole frame is kept and the kit
# says so, suggesting `remove_bg=True`.

# %% [markdown]
# ## 3. One crop box for the whole clip
#
# The crop is a square **centred on the union of the object's boxes over all frames**, with side = the union
# box's longer side / `image_frame_ratio`. One box for the clip means the virtual camera does not move: a moving
# object moves inside a fixed frame, as it did in the input. Dashed: the object's box in each frame; red: the
# clip's crop.

# %%
x, info = preprocess(sample_path(), size=size, num_frames=frames)
picked = clip[info["frame_indices"]]
boxes = [object_box(plain_background_matte(f)[None]) for f in picked]
show = np.linspace(0, len(picked) - 1, min(5, len(picked))).round().astype(int)
crop_fig = viz.crop_box_figure(
    picked[show],
    info["crop"],
    object_boxes=[boxes[i] for i in show],
    crop_labels=[f"the clip's crop (image_frame_ratio {info['image_frame_ratio']:g})"],
    col_labels=[f"input frame {info['frame_indices'][i]}" for i in show],
    title="one square crop for the whole clip (dashed: the object in each frame)",
)
crop_fig

# %%
# NBVAL_CHECK_OUTPUT
top, left, side = info["crop"]
print("frames used", info["frame_indices"], f"({info['frame_action']} from {info['num_input_frames']})")
print("object box (top, left, bottom, right) over the clip:", info["object_box"])
print(f"crop: top {top:.2f}, left {left:.2f}, side {side:.2f} input pixels -> {size} x {size}")

# %%
viz.image_grid(x[:, None], title=f"what preprocess makes: {frames} frames, {size} px, time across")

# %% [markdown]
# ### What `image_frame_ratio` does
#
# The ratio is the share of the square's side the object's longer side fills. SV4D 2.0's script uses 0.9 for
# clips it made itself and 0.8 elsewhere; a small ratio leaves a wide white margin (a small object), 1.0 lets the
# object touch the border (and a moving one may leave the frame). A crop larger than the image is padded with
# white.

# %%
crops, ratio_outs = [], []
for r in ratios:
    out, ratio_info = preprocess(sample_path(), size=size, num_frames=frames, image_frame_ratio=r)
    crops.append(ratio_info["crop"])
    ratio_outs.append(out[0])
viz.crop_box_figure(
    clip[0], crops, object_boxes=info["object_box"], crop_labels=[f"ratio {r:g}" for r in ratios],
    col_labels=["input frame 0"], title="the crop for each image_frame_ratio", cell_inches=2.6,
)  # fmt: skip

# %%
viz.image_grid(
    torch.stack(ratio_outs)[:, None],
    col_labels=[f"ratio {r:g}" for r in ratios],
    row_labels=["frame 0"],
    title="frame 0 after preprocessing",
    cell_inches=1.5,
)

# %%
# NBVAL_CHECK_OUTPUT
# The object's share of the output square, measured on the union of all frames' non-white pixels
print(f"{'ratio':>5}  {'crop side':>9}  {'object share':>12}")
for r in ratios:
    out, ratio_info = preprocess(sample_path(), size=size, num_frames=frames, image_frame_ratio=r)
    seen = (out < 0.98).any(1).any(0)  # (size, size): non-white anywhere in the clip
    rows, cols = np.flatnonzero(seen.any(1)), np.flatnonzero(seen.any(0))
    share = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) / size
    print(f"{r:5.2f}  {ratio_info['crop'][2]:9.2f}  {share:12.3f}")

# %% [markdown]
# The measured share is the ratio plus about one output pixel: the Lanczos resize spreads the object's edge over
# a pixel or so.

# %% [markdown]
# ## 4. Resize
#
# The crop is resized with Lanczos on premultiplied alpha and put on white. A big crop is first shrunk by an
# integer box filter (keeping at least 2x for Lanczos), so a phone photo is fast. Below: the same crop at three
# output sizes (shown at the same size on screen).

# %%
sizes = sorted({max(8, size // 4), max(8, size // 2), size})
resized = [preprocess(clip[:1], size=s)[0][0] for s in sizes]
shown = torch.stack(
    [torch.nn.functional.interpolate(r[None], size=(size, size), mode="nearest")[0] for r in resized]
)
viz.image_grid(
    shown[:, None], col_labels=[f"{s} px" for s in sizes], row_labels=["frame 0"], title="output sizes",
    cell_inches=1.5,
)  # fmt: skip

# %% [markdown]
# ## 5. Awkward inputs: these work
#
# - a **grayscale** PNG (mode `L`) becomes three equal channels;
# - a **palette** PNG (mode `P`, 16 colours) is expanded to RGB;
# - a **huge** image is read and shrunk quickly;
# - a **one-frame GIF** is a still image: asked for `frames` frames, the kit repeats it;
# - a **wide frame with the object off-centre**: the crop centres on the object, not on the image (SV4D 2.0's own
#   script centres on the image, so the object would stay off-centre and smaller).

# %%
import time

Image.fromarray(frame).convert("L").save(work / "gray.png")
Image.fromarray(frame).quantize(16).save(work / "palette.png")
Image.fromarray(frame).resize((huge_side, huge_side), Image.Resampling.BICUBIC).save(
    work / "huge.png", compress_level=1
)
Image.fromarray(frame).save(work / "one_frame.gif")
wide = np.full((256, 768, 3), 255, np.uint8)
wide[:, 480:736] = frame
Image.fromarray(wide).save(work / "wide.png")

awkward = ["gray.png", "palette.png", "huge.png", "one_frame.gif", "wide.png"]
awkward_outs = []
for name in awkward:
    tic = time.perf_counter()
    read, read_info = read_frames(work / name)
    out, out_info = preprocess(work / name, size=size, num_frames=frames)
    awkward_outs.append(out[0])
    print(f"{name:14} mode {','.join(read_info['modes']):4} {read_info['width']}x{read_info['height']:<5} "
          f"-> {tuple(out.shape)} ({out_info['frame_action']}) in {time.perf_counter() - tic:.2f} s")  # fmt: skip
viz.image_grid(
    torch.stack(awkward_outs)[:, None], col_labels=awkward, row_labels=["frame 0"], cell_inches=1.5
)

# %%
_, wide_info = preprocess(wide[None], size=size)
viz.crop_box_figure(
    wide, wide_info["crop"], object_boxes=wide_info["object_box"], crop_labels=["the crop"],
    col_labels=["wide.png: the crop centres on the object, not on the image"], cell_inches=2.2,
)  # fmt: skip

# %% [markdown]
# ## 6. Bad inputs: one clear line each
#
# A learner's mistake should read as a sentence, not a traceback. `show_input_error` calls the function and
# prints the kit's one-line error (a `KitInputError`, or a missing file); anything else would be a bug in the kit
# and would show its traceback.

# %%
(work / "empty.png").write_bytes(b"")
(work / "not_an_image.png").write_text("these are words, not pixels\n")
Image.new("RGB", (64, 64), "white").save(work / "all_white.png")
Image.new("RGBA", (64, 64), (255, 0, 0, 0)).save(work / "transparent.png")
(work / "mixed").mkdir()
Image.new("RGB", (64, 64), "red").save(work / "mixed" / "a.png")
Image.new("RGB", (32, 48), "red").save(work / "mixed" / "b.png")

for name in ["missing.png", "empty.png", "not_an_image.png", "all_white.png", "transparent.png", "mixed"]:
    print(f"{name:17}", end=" ")
    show_input_error(preprocess, work / name, size=size)
print(f"{'ratio 1.5':17}", end=" ")
show_input_error(preprocess, work / "image.png", size=size, image_frame_ratio=1.5)

# %% [markdown]
# ## 7. What the model gets
#
# `sv4d-kit generate` (and notebook 00) preprocess at the model's own size and hand the frames, in [0, 1], to the
# pipeline, which maps them to the networks' [-1, 1].

# %%
pipe = load_pipeline(model, device)
model_clip, model_info = preprocess(sample_path(), size=pipe.config.image_size, num_frames=frames)
print("model input", tuple(model_clip.shape), f"in [{model_clip.min():.2f}, {model_clip.max():.2f}]")
viz.image_grid(model_clip[:, None], title=f"the model's frames ({pipe.config.image_size} px)")
