"""Figures for looking at cameras and image matrices: plotly camera frustums and a matplotlib time × view grid.

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
