"""Figures for looking at cameras and image matrices: plotly camera frustums, a matplotlib time × view grid, crop
boxes on input frames, camera trajectories seen from above, Plücker ray maps as pictures and epipolar lines over a
row of views.

Pixel coordinates are the kit's continuous ones (`sv4d_kit.cameras`): pixel (u, v) covers [u, u+1) × [v, v+1), so
images are drawn with `extent=(0, W, H, 0)` and lines and points land where the geometry says.

plotly and matplotlib are optional (`pip install sv4d-kit[notebooks]`); they are imported only when a function here
is called.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from sv4d_kit import cameras
from sv4d_kit.checks import KitInputError


def _require(module: str, extra: str = "notebooks"):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        package = module.split(".")[0]
        raise ImportError(
            f"{package} is needed for this figure: pip install {package} (or sv4d-kit[{extra}])"
        ) from err


def frustum_corners(extrinsics: torch.Tensor, K: torch.Tensor, height: int, width: int, depth: float = 0.4):
    """World positions of each camera centre and its image corners at camera depth `depth`.

    extrinsics (N, 4, 4), K (3, 3) or (N, 3, 3) -> centres (N, 3), corners (N, 4, 3) in the order top-left,
    top-right, bottom-right, bottom-left of the image.
    """
    E = torch.as_tensor(extrinsics, dtype=torch.float32)
    E = E[None] if E.ndim == 2 else E
    corners_px = torch.tensor([[0.0, 0.0], [width, 0.0], [width, height], [0.0, height]])
    centres, dirs = cameras.pixel_rays(
        E, torch.as_tensor(K, dtype=torch.float32), corners_px
    )  # (N, 3), (N, 4, 3)
    z = (dirs * E[:, None, 2, :3]).sum(-1, keepdim=True)  # camera z of each unit direction
    return centres, centres[:, None] + dirs / z * depth


def camera_frustums_figure(
    extrinsics: torch.Tensor,
    K: torch.Tensor,
    height: int,
    width: int,
    depth: float = 0.4,
    labels: list[str] | None = None,
    points: torch.Tensor | None = None,
    point_colors: torch.Tensor | None = None,
    show_unit_sphere: bool = True,
    title: str | None = None,
):
    """A 3-D plotly figure of camera frustums around the object at the origin.

    Traces, in order: one line trace per camera (frustum edges, the image's top edge drawn thicker via a marker at
    its middle, named by `labels`), then a wireframe of the unit sphere (if `show_unit_sphere`), then a point cloud
    (if `points` (M, 3) is given, coloured by `point_colors` (M, 3) in [0, 1]). World +z is up.
    """
    go = _require("plotly.graph_objects")
    centres, corners = frustum_corners(extrinsics, K, height, width, depth)
    n = centres.shape[0]
    labels = [f"view {i}" for i in range(n)] if labels is None else list(labels)
    if len(labels) != n:
        raise KitInputError(f"labels must have one entry per camera ({n}), got {len(labels)}")
    fig = go.Figure()
    for i in range(n):
        c, (tl, tr, br, bl) = centres[i].tolist(), corners[i].tolist()
        path = [c, tl, tr, c, br, bl, c, tl, bl, None, tr, br]  # apex edges and the image rectangle
        xs, ys, zs = ([None if p is None else p[k] for p in path] for k in range(3))
        color = f"hsl({int(360 * i / max(n, 1))}, 70%, 45%)"
        top = [(a + b) / 2 for a, b in zip(tl, tr)]
        fig.add_trace(
            go.Scatter3d(
                x=xs + [None, top[0]],
                y=ys + [None, top[1]],
                z=zs + [None, top[2]],
                mode="lines+markers",
                line={"color": color, "width": 4},
                marker={"size": [0] * len(xs) + [0, 5], "color": color},
                name=labels[i],
            )
        )
    if show_unit_sphere:
        xs, ys, zs = [], [], []
        a = np.linspace(0, 2 * math.pi, 49)
        for e in np.radians([-60, -30, 0, 30, 60]):  # parallels
            xs += [*(np.cos(e) * np.cos(a)), None]
            ys += [*(np.cos(e) * np.sin(a)), None]
            zs += [*(np.sin(e) * np.ones_like(a)), None]
        for az in np.radians(range(0, 180, 30)):  # meridians
            xs += [*(np.cos(a) * np.cos(az)), None]
            ys += [*(np.cos(a) * np.sin(az)), None]
            zs += [*np.sin(a), None]
        fig.add_trace(
            go.Scatter3d(
                x=xs, y=ys, z=zs, mode="lines", line={"color": "lightgray", "width": 1}, name="unit sphere"
            )
        )
    if points is not None:
        pts = torch.as_tensor(points, dtype=torch.float32).reshape(-1, 3).numpy()
        marker = {"size": 2}
        if point_colors is not None:
            rgb = (
                (torch.as_tensor(point_colors, dtype=torch.float32).reshape(-1, 3).clamp(0, 1) * 255)
                .int()
                .tolist()
            )
            marker["color"] = [f"rgb({r},{g},{b})" for r, g, b in rgb]
        fig.add_trace(
            go.Scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", marker=marker, name="points")
        )
    fig.update_layout(
        title=title,
        scene={"aspectmode": "data", "xaxis_title": "x", "yaxis_title": "y", "zaxis_title": "z (up)"},
        margin={"l": 0, "r": 0, "t": 30 if title else 0, "b": 0},
    )
    return fig


def figure_png(fig, dpi: int = 100) -> bytes:
    """A matplotlib figure as PNG bytes (for an ipywidgets `Image`, or a file)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def image_grid(
    images,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    title: str | None = None,
    cell_inches: float = 1.2,
):
    """A matplotlib figure of an image matrix (T, V, 3, H, W) in [0, 1] (or uint8): time across, views down.

    Axes are in row-major order (view 0's frames first). Default labels are "t=0", "t=1", … and "view 0", ….
    """
    figure_module = _require("matplotlib.figure")
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images)
    if x.ndim != 5 or x.shape[2] not in (1, 3, 4):
        raise KitInputError(
            f"images must have shape (T, V, C, H, W) with C in (1, 3, 4), got {tuple(x.shape)}"
        )
    x = x.float() / 255.0 if x.dtype == torch.uint8 else x.float()
    T, V = x.shape[:2]
    col_labels = [f"t={t}" for t in range(T)] if col_labels is None else list(col_labels)
    row_labels = [f"view {v}" for v in range(V)] if row_labels is None else list(row_labels)
    if len(col_labels) != T or len(row_labels) != V:
        raise KitInputError(
            f"need {T} col_labels and {V} row_labels, got {len(col_labels)} and {len(row_labels)}"
        )
    aspect = x.shape[-1] / x.shape[-2]
    size = (cell_inches * aspect * T + 0.4, cell_inches * V + (0.5 if title else 0.25))
    fig = figure_module.Figure(figsize=size, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.01, h_pad=0.01, wspace=0.0, hspace=0.0)
    axes = fig.subplots(V, T, squeeze=False)
    for v in range(V):
        for t in range(T):
            ax = axes[v][t]
            img = x[t, v].clamp(0, 1).permute(1, 2, 0).numpy()  # (C, H, W) -> (H, W, C)
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if v == 0:
                ax.set_title(col_labels[t], fontsize=8)
            if t == 0:
                ax.set_ylabel(row_labels[v], fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------------------------------
# Helpers for the pictures of notebooks 01 (preprocessing) and 02 (cameras)

# Distinct colours for lines, points and boxes (matplotlib's "tab10" without the grey).
COLORS = ("#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")


def _as_hwc_images(images, name: str, ndim: int) -> np.ndarray:
    """Images as float (..., H, W, C) in [0, 1], C in (1, 3, 4); `ndim` counts all dimensions, C, H, W included.

    Tensors are read channels first (..., C, H, W), the kit's layout; arrays channels last (..., H, W, C), what
    `read_frames` returns, unless only the channels-first reading fits. uint8 is divided by 255."""
    tensor = isinstance(images, torch.Tensor)
    x = images.detach().cpu().numpy() if tensor else np.asarray(images)
    if x.ndim == ndim:
        first, last = x.shape[-3] in (1, 3, 4), x.shape[-1] in (1, 3, 4)
        if first and (tensor or not last):
            x = np.moveaxis(x, -3, -1)
    if x.ndim != ndim or x.shape[-1] not in (1, 3, 4) or x.size == 0:
        raise KitInputError(
            f"{name} must have {ndim} dimensions ending in (C, H, W) or (H, W, C) with C in (1, 3, 4), "
            f"got shape {tuple(x.shape)}"
        )
    x = x.astype(np.float32) / 255.0 if x.dtype == np.uint8 else x.astype(np.float32)
    if not np.isfinite(x).all():
        raise KitInputError(f"{name} must be finite")
    return np.clip(x, 0.0, 1.0)


def _show(ax, img: np.ndarray) -> None:
    """One (H, W, C) image in continuous pixel coordinates, no ticks."""
    H, W = img.shape[:2]
    ax.imshow(
        img[..., 0] if img.shape[-1] == 1 else img,
        cmap="gray",
        vmin=0,
        vmax=1,
        extent=(0, W, H, 0),
        interpolation="nearest",
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _per_view(values, n: int, name: str, width: int) -> list[np.ndarray | None]:
    """`values`: None, or one entry per view, each None or (width,) / (M, width) numbers -> list of (M, width)."""
    if values is None:
        return [None] * n
    if isinstance(values, (torch.Tensor, np.ndarray)):
        values = list(values)
    values = list(values)
    if len(values) != n:
        raise KitInputError(f"{name} must have one entry per view ({n}), got {len(values)}")
    out = []
    for v in values:
        if v is None:
            out.append(None)
            continue
        a = np.asarray(v.detach().cpu() if isinstance(v, torch.Tensor) else v, dtype=np.float64)
        a = a[None] if a.ndim == 1 else a
        if a.ndim != 2 or a.shape[-1] != width or not np.isfinite(a).all():
            raise KitInputError(
                f"each entry of {name} must be None or finite ({width},) / (M, {width}) numbers, "
                f"got shape {a.shape}"
            )
        out.append(a)
    return out


def line_in_image(line, height: int, width: int) -> np.ndarray | None:
    """The part of the line a·u + b·v + c = 0 (continuous pixel coordinates) inside the image [0, W] × [0, H]:
    its two end points ((u0, v0), (u1, v1)) as a (2, 2) array, or None if the line misses the image."""
    a, b, c = (float(x) for x in np.asarray(line, dtype=np.float64).reshape(-1)[:3])
    if np.asarray(line).size != 3 or not np.isfinite([a, b, c]).all() or math.hypot(a, b) < 1e-12:
        raise KitInputError(
            f"a line must be three finite numbers (a, b, c) with a or b non-zero, got {line!r}"
        )
    eps = 1e-9 * max(height, width)
    candidates = []
    if abs(b) > 1e-12:  # crossings of the left and right edges
        candidates += [(u, -(a * u + c) / b) for u in (0.0, float(width))]
    if abs(a) > 1e-12:  # crossings of the top and bottom edges
        candidates += [(-(b * v + c) / a, v) for v in (0.0, float(height))]
    inside = [(u, v) for u, v in candidates if -eps <= u <= width + eps and -eps <= v <= height + eps]
    if len(inside) < 2:
        return None
    pts = np.array(inside)
    d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
    i, j = np.unravel_index(np.argmax(d), d.shape)
    if d[i, j] <= eps:  # touches a corner only
        return None
    return np.clip(pts[[i, j]], [0.0, 0.0], [float(width), float(height)])


def epipolar_figure(
    images,
    lines=None,
    points=None,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    title: str | None = None,
    cell_inches: float = 1.8,
):
    """A row of views (V, C, H, W) — or rows of them (R, V, C, H, W) — with lines and points drawn over them.

    `lines`: None, or one entry per view: None or (a, b, c) / (M, 3) lines a·u + b·v + c = 0 in continuous pixel
    coordinates (what `cameras.epipolar_lines` returns), clipped to the image. `points`: None, or one entry per
    view: None or (u, v) / (M, 2) points, drawn as rings. Line and point number m get colour `COLORS[m]`, so a query
    pixel and its epipolar lines match. The same lines and points are drawn on every row (e.g. generated views
    above, ground truth below). Axes are in row-major order.
    """
    figure_module = _require("matplotlib.figure")
    x = _as_hwc_images(images, "images", 5 if np.ndim(images) == 5 else 4)
    x = x[None] if x.ndim == 4 else x  # (V, H, W, C) -> (1, V, H, W, C)
    R, V, H, W = x.shape[:4]
    lines = _per_view(lines, V, "lines", 3)
    points = _per_view(points, V, "points", 2)
    for entry in lines:
        for line in [] if entry is None else entry:
            if math.hypot(line[0], line[1]) < 1e-12:
                raise KitInputError(f"a line must have a or b non-zero, got {tuple(line)}")
    col_labels = [f"view {v}" for v in range(V)] if col_labels is None else list(col_labels)
    row_labels = [""] * R if row_labels is None else list(row_labels)
    if len(col_labels) != V or len(row_labels) != R:
        raise KitInputError(
            f"need {V} col_labels and {R} row_labels, got {len(col_labels)} and {len(row_labels)}"
        )
    size = (cell_inches * W / H * V + 0.4, cell_inches * R + (0.5 if title else 0.3))
    fig = figure_module.Figure(figsize=size, layout="constrained")
    axes = fig.subplots(R, V, squeeze=False)
    ring = 5.0 * cell_inches  # marker size in points: about two pixels of a 32-pixel view
    for r in range(R):
        for v in range(V):
            ax = axes[r][v]
            _show(ax, x[r, v])
            for m, line in enumerate([] if lines[v] is None else lines[v]):
                seg = line_in_image(line, H, W)
                if seg is not None:
                    ax.plot(seg[:, 0], seg[:, 1], color=COLORS[m % len(COLORS)], linewidth=1.2)
            for m, (u, pv) in enumerate([] if points[v] is None else points[v]):
                ax.plot([u], [pv], "o", ms=ring, mfc="none", mec="white", mew=3.0)  # a halo, for contrast
                ax.plot([u], [pv], "o", ms=ring, mfc="none", mec=COLORS[m % len(COLORS)], mew=1.5)
            ax.set_xlim(0, W)
            ax.set_ylim(H, 0)
            if r == 0:
                ax.set_title(col_labels[v], fontsize=8)
            if v == 0 and row_labels[r]:
                ax.set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _boxes(values, name: str, n: int | None = None) -> np.ndarray:
    """One box (k numbers) or a list of boxes -> (B, k) float; with `n`, a list must have n boxes."""
    a = np.asarray(values, dtype=np.float64)
    a = a[None] if a.ndim == 1 else a
    if a.ndim != 2 or a.shape[0] < 1 or not np.isfinite(a).all():
        raise KitInputError(
            f"{name} must be one box or a list of boxes of finite numbers, got {values!r:.80}"
        )
    if n is not None and a.shape[0] not in (1, n):
        raise KitInputError(f"{name} must be one box or one per frame ({n}), got {a.shape[0]}")
    return a


def crop_box_figure(
    frames,
    crops,
    object_boxes=None,
    crop_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    title: str | None = None,
    cell_inches: float = 1.8,
):
    """Input frames with square crop boxes and object boxes drawn on them: what `preprocess` cuts out.

    `frames`: (N, H, W, C) uint8 (what `read_frames` returns), (N, C, H, W) tensors, or one frame. `crops`: one
    (top, left, side) square (`preprocess`'s `info["crop"]`) or a list of them (e.g. one per `image_frame_ratio`),
    each drawn on every frame in its own colour and named by `crop_labels` (a legend). `object_boxes`: None, one
    (top, left, bottom, right) box (`info["object_box"]`) or one per frame, drawn dashed. A crop may leave the
    image (preprocess fills that with white): the axes show it, the area outside the image in grey.
    """
    figure_module = _require("matplotlib.figure")
    patches = _require("matplotlib.patches")
    nd = np.ndim(frames) if not isinstance(frames, torch.Tensor) else frames.ndim
    x = _as_hwc_images(frames, "frames", 4 if nd == 4 else 3)
    x = x[None] if x.ndim == 3 else x
    N, H, W = x.shape[:3]
    crops = _boxes(crops, "crops")
    if crops.shape[1] != 3 or (crops[:, 2] <= 0).any():
        raise KitInputError(f"crops must be (top, left, side) with side > 0, got {crops.tolist()!r:.80}")
    boxes = None if object_boxes is None else _boxes(object_boxes, "object_boxes", N)
    if boxes is not None and boxes.shape[1] != 4:
        raise KitInputError(f"object_boxes must be (top, left, bottom, right), got {boxes.tolist()!r:.80}")
    crop_labels = [None] * len(crops) if crop_labels is None else list(crop_labels)
    col_labels = [f"frame {i}" for i in range(N)] if col_labels is None else list(col_labels)
    if len(crop_labels) != len(crops) or len(col_labels) != N:
        raise KitInputError(
            f"need {len(crops)} crop_labels and {N} col_labels, got {len(crop_labels)} and {len(col_labels)}"
        )
    top, left = min(0.0, crops[:, 0].min()), min(0.0, crops[:, 1].min())
    bottom, right = (
        max(float(H), (crops[:, 0] + crops[:, 2]).max()),
        max(float(W), (crops[:, 1] + crops[:, 2]).max()),
    )
    pad = 0.02 * max(bottom - top, right - left)
    aspect = (right - left) / (bottom - top)
    legend = any(label is not None for label in crop_labels)
    fig = figure_module.Figure(
        figsize=(
            cell_inches * aspect * N + 0.3,
            cell_inches + (0.5 if title else 0.3) + (0.3 if legend else 0),
        ),
        layout="constrained",
    )
    axes = fig.subplots(1, N, squeeze=False)[0]
    for i, ax in enumerate(axes):
        ax.set_facecolor("0.8")  # outside the image
        for spine in ax.spines.values():
            spine.set_visible(False)
        _show(ax, x[i])
        ax.add_patch(patches.Rectangle((0, 0), W, H, fill=False, edgecolor="0.4", linewidth=0.8))
        if boxes is not None:
            t, l, b, r = boxes[i if len(boxes) == N else 0]
            ax.add_patch(
                patches.Rectangle(
                    (l, t), r - l, b - t, fill=False, edgecolor="0.2", linestyle="--", linewidth=1
                )
            )
        for k, (t, l, side) in enumerate(crops):
            ax.add_patch(
                patches.Rectangle(
                    (l, t),
                    side,
                    side,
                    fill=False,
                    edgecolor=COLORS[k % len(COLORS)],
                    linewidth=1.5,
                    label=crop_labels[k],
                )  # fmt: skip
            )
        ax.set_xlim(left - pad, right + pad)
        ax.set_ylim(bottom + pad, top - pad)
        ax.set_title(col_labels[i], fontsize=8)
    if legend:
        fig.legend(
            *axes[0].get_legend_handles_labels(), loc="outside lower center", ncols=len(crops), fontsize=8
        )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def plucker_images(rays, moment_scale: float | None = None) -> torch.Tensor:
    """Plücker ray maps (N, 6, H, W) (`cameras.plucker_rays`: moment o × d, then direction d) as pictures
    (N, 2, 3, H, W) in [0, 1]: [:, 0] the moment, [:, 1] the direction, each xyz shown as RGB.

    The direction is a unit vector: (d + 1) / 2 (so +x is red, +y green, +z blue, and grey means 0). The moment is
    m / (2 s) + 1/2 with s = `moment_scale`, by default the largest |component| over all cameras, so cameras share
    one scale (a ray through the origin has moment 0: grey). Pass the result to `image_grid` (cameras across).
    """
    r = torch.as_tensor(rays, dtype=torch.float32)
    if r.ndim != 4 or r.shape[1] != 6 or r.shape[2] < 1 or r.shape[3] < 1:
        raise KitInputError(f"rays must have shape (N, 6, H, W) (cameras.plucker_rays), got {tuple(r.shape)}")
    if not bool(torch.isfinite(r).all()):
        raise KitInputError("rays must be finite")
    moment, direction = r[:, :3], r[:, 3:]
    if moment_scale is None:
        s = float(moment.abs().max())
    else:
        s = float(moment_scale)
        if not math.isfinite(s) or s <= 0:
            raise KitInputError(f"moment_scale must be a positive number or None, got {moment_scale!r}")
    moment = moment / (2 * s) + 0.5 if s > 0 else torch.full_like(moment, 0.5)
    return torch.stack([moment, direction / 2 + 0.5], dim=1).clamp(0, 1)


def trajectory_figure(
    azimuths_deg,
    elevations_deg=0.0,
    labels: list[str] | None = None,
    title: str | None = None,
    inches: float = 2.6,
):
    """Where the cameras are: seen from above (+z; azimuth 0 along +x, growing counter-clockwise, the object a disc
    at the origin) and unrolled (azimuth across, elevation up). Points are numbered in order (or by `labels`)."""
    figure_module = _require("matplotlib.figure")
    a, e = cameras.camera_trajectory(azimuths_deg, elevations_deg)
    a, e = a.numpy(), e.numpy()
    labels = [str(i) for i in range(len(a))] if labels is None else [str(s) for s in labels]
    if len(labels) != len(a):
        raise KitInputError(f"labels must have one entry per camera ({len(a)}), got {len(labels)}")
    fig = figure_module.Figure(
        figsize=(2 * inches + 0.6, inches + (0.4 if title else 0.1)), layout="constrained"
    )
    top, side = fig.subplots(1, 2, width_ratios=[1, 1.4])
    ar, er = np.radians(a), np.radians(e)
    xs, ys = np.cos(er) * np.cos(ar), np.cos(er) * np.sin(ar)
    circle = np.linspace(0, 2 * np.pi, 97)
    top.plot(np.cos(circle), np.sin(circle), color="0.85", linewidth=0.8)
    top.fill(0.25 * np.cos(circle), 0.25 * np.sin(circle), color="0.6")
    colors = [f"C{i % 10}" for i in range(len(a))]
    top.plot(xs, ys, color="0.5", linewidth=0.8)
    top.scatter(xs, ys, c=colors, s=18, zorder=3)
    side.plot(a, e, color="0.5", linewidth=0.8)
    side.scatter(a, e, c=colors, s=18, zorder=3)
    step = max(1, len(a) // 12)
    for i in range(0, len(a), step):
        top.annotate(labels[i], (xs[i], ys[i]), xytext=(1.18 * xs[i], 1.18 * ys[i]), fontsize=7, ha="center",
                     va="center")  # fmt: skip
        side.annotate(
            labels[i], (a[i], e[i]), xytext=(0, 5), textcoords="offset points", fontsize=7, ha="center"
        )
    top.annotate("", (0.0, 0.5), (0.5, 0.0), arrowprops={"arrowstyle": "->", "color": "0.4",
                                                        "connectionstyle": "arc3,rad=0.4"})  # fmt: skip
    top.set_aspect("equal")
    top.set_xlim(-1.35, 1.35)
    top.set_ylim(-1.35, 1.35)
    top.set_xlabel("x", fontsize=8)
    top.set_ylabel("y", fontsize=8)
    top.set_title("from above (+z)", fontsize=8)
    top.tick_params(labelsize=7)
    side.set_xlim(-15, 375)
    side.set_xticks(range(0, 361, 90))
    lo, hi = min(e.min(), 0.0), max(e.max(), 0.0)
    side.set_ylim(lo - 10, hi + 10)
    side.axhline(0, color="0.85", linewidth=0.8)
    side.set_xlabel("azimuth (°)", fontsize=8)
    side.set_ylabel("elevation (°)", fontsize=8)
    side.set_title("unrolled", fontsize=8)
    side.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
