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
# # 02 · Cameras: angles, orbits, rays and epipolar lines
#
# SV4D 2.0 never sees a camera matrix: it is told, for each novel view, a **polar angle** and an **azimuth
# relative to the input view**. This notebook shows what those numbers are, where the cameras sit around the
# object (orbits, spirals, frustums in 3-D), how a camera can be described per pixel (Plücker rays), and what the
# geometry promises about the generated views: a point seen in the input view must appear, in every other view,
# on one line, its **epipolar line**.
#
# The kit's conventions (`sv4d_kit.cameras`): world +z is up, the object at the origin; a camera at azimuth `a`,
# elevation `e` on a sphere of radius `r` sits at `r (cos e cos a, cos e sin a, sin e)` looking at the origin;
# azimuth grows counter-clockwise seen from above; camera axes are OpenCV's (x right, y down, z forward); pixel
# `(u, v)` (column, row) covers `[u, u+1) × [v, v+1)`, its centre at `(u + 0.5, v + 0.5)`.

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
seed = 0  # the evaluation seed: which held-out scenes, and the sampler's noise
model = "tiny"  # "tiny" (bundled, CPU) or a path to sv4d2.safetensors / sv4d2_8views.safetensors (GPU)
scene = 0  # which held-out scene
frames = 4  # frames of the held-out clip to generate
frame = 0  # the time (frame) the epipolar lines are drawn at
elevation = 10.0  # degrees above the equator of all views
pixel = None  # (u, v) pixel of the input view to follow; None: an object pixel most other views see
orbit_views = 8  # cameras on the example orbit
spiral_views = 24  # cameras on the example spiral

# %% [markdown]
# ## 1. What the conditioner receives
#
# The released script describes view `i` by its polar angle `90° − elevation` (0° looks straight down) and its
# azimuth. `cameras.sv4d_relative_angles` follows it step by step:
#
#     polar   = (polar_j − polar_0 + π/2) mod 2π          (j = 1..V, the novel views)
#     azimuth = (azim_j − azim_0) mod 2π
#
# so only **differences from the input view** reach the model: a novel view at the input's elevation has polar
# π/2 whatever the elevation is, and the input's own azimuth drops out. The values are tiled over the `T` frames
# of a chunk in (t v) order. Below: the default views of the tiny model and of the released SV4D 2.0, then views
# at other elevations.

# %%
import math

import torch

from sv4d_kit import cameras, viz

pipe = load_pipeline(model, device)
tiny_azimuths = pipe.default_azimuths()  # the input view first
examples = {
    f"{pipe.config.variant} (this model)": (elevation, tiny_azimuths),
    "sv4d2": (elevation, cameras.default_azimuths("sv4d2", include_input_view=True)),
    "sv4d2, input at 30° azimuth": (elevation, [(a + 30) % 360 for a in cameras.default_azimuths("sv4d2", True)]),
    "sv4d2, views at 0°/20°/30°": ([elevation, 0.0, 20.0, 30.0, elevation], cameras.default_azimuths("sv4d2", True)),
}  # fmt: skip

# %%
# NBVAL_CHECK_OUTPUT
for name, (elevations, azimuths) in examples.items():
    polar, azimuth = cameras.sv4d_relative_angles(elevations, azimuths, T=1)
    elevs = [elevations] * len(azimuths) if isinstance(elevations, float) else elevations
    print(f"{name}: input view at elevation {elevs[0]:g}°, azimuth {azimuths[0]:g}°")
    print(f"  {'view':>4} {'elev °':>7} {'azim °':>7} {'polar rad':>10} {'azim rad':>9} {'azim °':>7}")
    for j, (p, a) in enumerate(zip(polar.tolist(), azimuth.tolist()), start=1):
        print(f"  {j:4d} {elevs[j]:7.1f} {azimuths[j]:7.1f} {p:10.4f} {a:9.4f} {math.degrees(a):7.1f}")

# %% [markdown]
# The first three tables only differ in their absolute azimuths: the model receives the same numbers. In the
# last, a view 10° below the input gets polar π/2 + 10° = 1.7453, one 10° above gets 1.3963: a larger polar angle
# means lower, as in spherical coordinates. (Which way SV4D 2.0's azimuth turns cannot be checked without the
# released weights; the kit assumes it grows as ours, counter-clockwise from above.)

# %% [markdown]
# ## 2. Orbits and spirals
#
# `orbit_azimuths(n)` spreads `n` cameras evenly around a full turn at one elevation; `spiral_angles(n)` turns
# once while the elevation climbs (default −20° to 30°), for a video that also looks from below and above.

# %%
orbit = cameras.orbit_azimuths(orbit_views, start=30.0)
viz.trajectory_figure(orbit, elevation, title=f"orbit_azimuths({orbit_views}, start=30) at {elevation:g}°")

# %%
spiral_az, spiral_el = cameras.spiral_angles(spiral_views)
viz.trajectory_figure(spiral_az, spiral_el, title=f"spiral_angles({spiral_views}): one turn, −20° to 30°")

# %%
v8 = cameras.default_azimuths("sv4d2_8views", include_input_view=True)
viz.trajectory_figure(v8, 0.0, labels=["in", *range(1, len(v8))], title="sv4d2_8views: the input and 8 views")

# %% [markdown]
# ## 3. The cameras around the object, in 3-D
#
# A held-out scene (`sv4d_kit.evaluation.heldout_scene`: a procedural object the tiny model was not trained on)
# rendered from the model's views, with its ground-truth depth. Each view's depth, unprojected, gives a coloured
# point cloud; the frustums show where each camera sits and which way its image's top edge points (the dot).
# Drag to turn the figure.

# %%
from sv4d_kit import evaluation

H = W = pipe.config.image_size
truth = evaluation.heldout_scene(scene, seed, tiny_azimuths, H, frames, elevation_deg=elevation)
E, K = truth.extrinsics, truth.K
labels = ["view 0 (input)"] + [f"view {j} (+{a:g}°)" for j, a in enumerate(tiny_azimuths[1:], start=1)]
viz.image_grid(
    truth.images[frame].unsqueeze(1), col_labels=labels, row_labels=[f"t={frame}"], cell_inches=1.5,
    title=f"held-out scene {truth.seed}: the ground-truth views",
)  # fmt: skip

# %%
# NBVAL_IGNORE_OUTPUT
points = cameras.unproject_depth(truth.depth[frame], E, K)  # (V+1, H, W, 3)
hit = truth.depth[frame, :, 0] > 0
colors = truth.images[frame].permute(0, 2, 3, 1)  # (V+1, H, W, 3)
viz.camera_frustums_figure(
    E, K, H, W, depth=0.5, labels=labels, points=points[hit], point_colors=colors[hit],
    title="cameras and the ground-truth point cloud (world +z up)",
)  # fmt: skip

# %% [markdown]
# ## 4. Plücker ray maps: a camera, pixel by pixel
#
# Camera-controlled video models such as CamCo give the network, for every pixel, the ray through it: its unit
# direction `d` and its moment `o × d` (o = the camera centre). Together they fix the ray as a line in space,
# independent of where along it you start. (SV4D 2.0 itself only gets the two angles above.) Shown as RGB (x, y,
# z → red, green, blue; grey = 0) with `viz.plucker_images`:
#
# - **direction**: every camera looks at the origin, so the centre colour is the direction from the camera to
#   the object, and it turns around the orbit; the image's gradient is the field of view;
# - **moment**: zero (grey) for rays through the origin, the image centre; it grows towards the border, and its
#   pattern turns with the camera.

# %%
rays = cameras.plucker_rays(E, K, H, W)  # (V+1, 6, H, W): moment, then direction
viz.image_grid(
    viz.plucker_images(rays), col_labels=labels, row_labels=["moment o × d", "direction d"], cell_inches=1.5,
    title="Plücker ray maps of the model's views",
)  # fmt: skip

# %%
# NBVAL_CHECK_OUTPUT
# At the image centre the ray points from the camera to the object and passes (nearly) through the origin
c = H // 2
for j in range(len(labels)):
    d, m = rays[j, 3:, c, c], rays[j, :3, c, c]
    centre = cameras.camera_centers(E[j])
    print(f"view {j}: camera at ({', '.join(f'{x:6.3f}' for x in centre.tolist())})  centre-pixel direction "
          f"({', '.join(f'{x:6.3f}' for x in d.tolist())})  |moment| {m.norm():.3f}")  # fmt: skip

# %% [markdown]
# ## 5. Epipolar lines across the generated views
#
# Take a pixel on the object in the input view (view 0). The 3-D point it shows lies somewhere on its ray; seen
# from view j, that ray is a line, the **epipolar line** `l = F x` with the fundamental matrix
# `F = K⁻ᵀ [t]ₓ R K⁻¹` of the two cameras (`cameras.fundamental_matrix`, `cameras.epipolar_lines`). A consistent
# novel view must show the point somewhere on that line; the ground-truth depth tells exactly where (the ring).
# Below, the model's generated views (top) and the ground truth (bottom), with the line of the same pixel in each.

# %%

generated = evaluation.generate(pipe, truth, "tiny_sv4d", evaluation.sampling_seed(seed, scene))
alpha0, depth0 = (
    truth.alpha[frame, 0, 0],
    truth.depth[frame, 0, 0],
)  # (H, W) coverage and depth of the input view


def visible_in(points, j, tol=0.1):
    """Which world points (..., 3) view j sees: inside its image and not behind the surface its depth map shows
    (within `tol`, about a pixel's footprint on a slanted surface at this size)."""
    uvj, zj = cameras.project_points(points.reshape(1, -1, 3), E[j : j + 1], K)
    ui, vi = uvj[0, :, 0].floor().long(), uvj[0, :, 1].floor().long()
    inside = (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
    surface = truth.depth[frame, j, 0][vi.clamp(0, H - 1), ui.clamp(0, W - 1)]
    return (inside & (surface > 0) & ((zj[0] - surface).abs() < tol)).reshape(points.shape[:-1])


if pixel is None:  # the object pixel seen by the most other views, nearest the object's centre among those
    world0 = cameras.unproject_depth(truth.depth[frame, :1], E[:1], K)[0]  # (H, W, 3)
    seen_by = sum(visible_in(world0, j).int() for j in range(1, len(E)))  # (H, W)
    seen_by = torch.where((alpha0 > 0.99) & (depth0 > 0), seen_by, torch.full_like(seen_by, -1))
    vs, us = torch.nonzero(seen_by == seen_by.max(), as_tuple=True)
    cu, cv = (
        (alpha0 * torch.arange(W)).sum() / alpha0.sum(),
        (alpha0.T * torch.arange(H)).sum() / alpha0.sum(),
    )
    k = int(((us - cu) ** 2 + (vs - cv) ** 2).argmin())
    pixel = (int(us[k]), int(vs[k]))
u, v = pixel
if not float(depth0[v, u]) > 0:
    raise ValueError(f"pixel {pixel} is not on the object in view 0; pick one where the object is")
query = torch.tensor([[u + 0.5, v + 0.5]])  # the pixel's centre, continuous coordinates

X = cameras.unproject_depth(truth.depth[frame, :1], E[:1], K)[0, v, u]  # the world point the pixel shows
uv, _ = cameras.project_points(X.expand(len(E), 1, 3), E, K)  # (V+1, 1, 2), (V+1, 1)
lines, marks, rows = [None], [query[0]], []
for j in range(1, len(E)):
    line = cameras.epipolar_lines(cameras.fundamental_matrix(K, E[0], K, E[j]), query)[0]  # (a, b, c)
    p = uv[j, 0]
    seen = bool(visible_in(X, j))
    lines.append(line)
    marks.append(p if seen else None)  # a hidden point gets no ring
    rows.append((j, p, float((line[:2] @ p + line[2]).abs()), seen))
epi_fig = viz.epipolar_figure(
    torch.stack([generated[frame], truth.images[frame]]), lines=lines, points=marks,
    row_labels=["generated", "ground truth"], col_labels=labels, cell_inches=1.8,
    title=f"pixel {pixel} of view 0 and its epipolar line in every other view (ring: the true point)",
)  # fmt: skip
epi_fig

# %%
# NBVAL_CHECK_OUTPUT
print(
    f"pixel {pixel} of view 0 at t={frame} shows the world point ({', '.join(f'{x:.3f}' for x in X.tolist())})"
)
print(f"{'view':>4} {'true (u, v)':>16} {'distance to line (px)':>22} {'visible':>8}")
for j, p, dist, seen in rows:
    print(f"{j:4d} ({p[0]:6.2f}, {p[1]:6.2f}) {dist:22.3f} {'yes' if seen else 'hidden':>8}")

# %% [markdown]
# The true correspondence sits on its line (distance 0 up to rounding): the fundamental matrix and the projection
# agree. Where it is hidden (another part of the object is in front, or it faces away), the line still says where
# it would be. Look along each line in the generated row: a view-consistent model puts the matching surface on
# it, near the ring; where it does not, the view attention has not learnt the geometry. `cameras.epipolar_mask`
# turns such lines into an attention mask (each pixel may only look along its line in the other views).
