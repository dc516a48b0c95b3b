"""The attention explorer: pick a frame, a view and a query pixel, see where that token attends.

`explore(capture, layer, frame, view, y, x)` is the pure part: the query's maps (`sv4d_kit.attention.QueryAttention`)
and one matplotlib `Figure` with the spatial attention as a heatmap over the query's view, the view attention as
bars, the frame attention over time, and the query's epipolar lines drawn on the other views of its frame.
`attention_explorer(pipe, frames, ...)` runs the pipeline once (`sv4d_kit.attention.pipeline_attention`) and wraps
`explore` in ipywidgets; bad input shows the kit's one-line error, never a traceback.

Views are numbered as in the image matrix: 0 is the input view (not generated, so not in the UNet's attention),
1 … V the generated views (the UNet's view index is view − 1). The query pixel (y, x) is on the grid of the chosen
transformer (8×8 at the tiny model's finest level), its epipolar lines go through the centre of that grid cell.
"""

from __future__ import annotations

import numpy as np
import torch

from sv4d_kit import cameras, checks, synthetic, viz
from sv4d_kit.attention import PipelineAttention, QueryAttention, pipeline_attention
from sv4d_kit.checks import KitInputError
from sv4d_kit.notebook import try_input


def view_cameras(capture: PipelineAttention) -> tuple[torch.Tensor, torch.Tensor]:
    """Cameras of the V+1 views of a capture, as `evaluation.heldout_scene` places them: orbit extrinsics at the
    pipeline's azimuths and elevations, `synthetic.DEFAULT_RADIUS`, intrinsics of `synthetic.DEFAULT_FOV`.
    -> (extrinsics (V+1, 4, 4), K (3, 3))"""
    size = capture.images.shape[-1]
    E = cameras.orbit_extrinsics(
        torch.tensor(capture.cameras["azimuths_deg"], dtype=torch.float64),
        torch.tensor(capture.cameras["elevations_deg"], dtype=torch.float64),
        synthetic.DEFAULT_RADIUS,
    )
    return E, cameras.intrinsics(synthetic.DEFAULT_FOV, size, size)


def query_point(q: QueryAttention, size: int) -> tuple[float, float]:
    """The image coordinates (u, v) (pixel centres at +0.5) of the centre of the query's grid cell."""
    return (q.x + 0.5) * size / q.layout.width, (q.y + 0.5) * size / q.layout.height


def clip_line(line, size: float) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The segment of the line a·u + b·v + c = 0 inside the image [0, size]², or None if it misses it."""
    a, b, c = (float(z) for z in line)
    points = []
    if abs(b) > 1e-12:
        points += [(u, -(a * u + c) / b) for u in (0.0, size)]
    if abs(a) > 1e-12:
        points += [(-(b * v + c) / a, v) for v in (0.0, size)]
    inside = [(u, v) for u, v in points if -1e-6 <= u <= size + 1e-6 and -1e-6 <= v <= size + 1e-6]
    if len(inside) < 2:
        return None
    p0 = inside[0]
    p1 = max(inside, key=lambda p: (p[0] - p0[0]) ** 2 + (p[1] - p0[1]) ** 2)
    return (p0, p1) if p1 != p0 else None


def epipolar_segments(capture: PipelineAttention, q: QueryAttention) -> dict[int, tuple | None]:
    """For every image-matrix view j other than the query's: the segment of the query's epipolar line in view j
    (None where it misses the image)."""
    E, K = view_cameras(capture)
    size = capture.images.shape[-1]
    i = q.view + 1
    pixel = torch.tensor([query_point(q, size)], dtype=torch.float64)
    segments = {}
    for j in range(E.shape[0]):
        if j == i:
            continue
        F = cameras.fundamental_matrix(K, E[i], K, E[j])
        segments[j] = clip_line(cameras.epipolar_lines(F, pixel)[0], size)
    return segments


def _image(capture: PipelineAttention, frame: int, view: int) -> np.ndarray:
    return capture.images[frame, view].clamp(0, 1).permute(1, 2, 0).numpy()  # (3, H, W) -> (H, W, 3)


def attention_figure(capture: PipelineAttention, q: QueryAttention):
    """One figure of a query: spatial heatmap over its view, view bars, frame bars; below, the V+1 views of its
    frame with the query marked and its epipolar lines drawn on the others."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    size = capture.images.shape[-1]
    T, V, h, w = q.layout.frames, q.layout.views, q.layout.height, q.layout.width
    azimuths = capture.cameras["azimuths_deg"]
    u, v = query_point(q, size)
    cell = (q.x * size / w, q.y * size / h, size / w, size / h)
    extent = (0, size, size, 0)

    fig = Figure(figsize=(max(8.0, 1.75 * (V + 1)), 5.6), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[1.15, 1.0])
    ax_s, ax_v, ax_t = top.subplots(1, 3, width_ratios=[1.0, 1.25, 1.0])

    # 1. spatial: where the query looks inside its own view and frame
    ax_s.imshow(_image(capture, q.frame, q.view + 1).mean(-1), cmap="gray", vmin=0, vmax=1, extent=extent)
    if q.spatial is not None:
        heat = ax_s.imshow(
            q.spatial.numpy(), cmap="magma", alpha=0.65, extent=extent, interpolation="nearest"
        )
        top.colorbar(heat, ax=ax_s, shrink=0.8).ax.tick_params(labelsize=7)
    ax_s.add_patch(Rectangle(cell[:2], cell[2], cell[3], fill=False, ec="cyan", lw=1.5))
    ax_s.plot([u], [v], "+", color="cyan", ms=10, mew=2)
    ax_s.set_title(f"spatial: over view {q.view + 1}'s {h}×{w} grid", fontsize=9)
    ax_s.set_xticks([])
    ax_s.set_yticks([])

    # 2. view block: over views (8-view layout) or neighbouring pixels (sv4d2 layout)
    if q.view_weights is not None:
        weights = q.view_weights.numpy()
        if q.views_are_pixels:
            labels = [f"v{k[2] + 1}\n({k[3]},{k[4]})" for k in q.view_keys]
            own = [k[2] == q.view and (k[3], k[4]) == (q.y, q.x) for k in q.view_keys]
            ax_v.set_title("'view' block: V neighbouring pixels\n(sv4d2 quirk, not views)", fontsize=9)
        else:
            labels = [f"v{k[2] + 1}\n{azimuths[k[2] + 1]:.0f}°" for k in q.view_keys]
            own = [k[2] == q.view for k in q.view_keys]
            ax_v.set_title("view attention: the same pixel in each view", fontsize=9)
        ax_v.bar(range(len(weights)), weights, color=["tab:orange" if o else "tab:blue" for o in own])
        ax_v.axhline(1 / len(weights), color="gray", ls=":", lw=1)
        ax_v.set_xticks(range(len(weights)), labels, fontsize=8)
        ax_v.set_ylim(0, max(1.05 * float(weights.max()), 2 / len(weights)))
    # 3. frame block: over the T frames of the chunk
    if q.frame_weights is not None:
        weights = q.frame_weights.numpy()
        ax_t.bar(range(T), weights, color=["tab:orange" if t == q.frame else "tab:green" for t in range(T)])
        ax_t.axhline(1 / T, color="gray", ls=":", lw=1)
        ax_t.set_xticks(range(T), [f"t={t}" for t in range(T)], fontsize=8)
        ax_t.set_ylim(0, max(1.05 * float(weights.max()), 2 / T))
        ax_t.set_title(f"frame attention: view {q.view + 1}, pixel ({q.y},{q.x})", fontsize=9)
    for ax in (ax_v, ax_t):
        ax.tick_params(axis="y", labelsize=7)
    ax_v.set_ylabel("weight (orange: the query's own; dotted: uniform)", fontsize=7)

    # 4. epipolar lines of the query on the other views of its frame
    segments = epipolar_segments(capture, q)
    view_weight = {}
    if q.view_weights is not None and not q.views_are_pixels:
        view_weight = {k[2] + 1: float(wt) for k, wt in zip(q.view_keys, q.view_weights)}
    axes = bottom.subplots(1, V + 1)
    for j, ax in enumerate(axes):
        ax.imshow(_image(capture, q.frame, j), extent=extent)
        name = "input" if j == 0 else f"view {j}"
        title = f"{name} {azimuths[j]:.0f}°" + (
            f"\nview attn {view_weight[j]:.2f}" if j in view_weight else ""
        )
        if j == q.view + 1:
            ax.add_patch(Rectangle(cell[:2], cell[2], cell[3], fill=False, ec="cyan", lw=1.5))
            ax.plot([u], [v], "+", color="cyan", ms=10, mew=2)
            if q.views_are_pixels:  # the 'view' block's keys: pixels of this view
                for k in q.view_keys:
                    if k[2] == q.view:
                        ax.add_patch(Rectangle((k[4] * size / w, k[3] * size / h), size / w, size / h,
                                               fill=False, ec="orange", lw=1, ls="--"))  # fmt: skip
            title += "\n(query)"
        elif segments.get(j) is not None:
            (u0, v0), (u1, v1) = segments[j]
            ax.plot([u0, u1], [v0, v1], "-", color="red", lw=1.5)
        ax.set_xlim(0, size)
        ax.set_ylim(size, 0)
        ax.set_title(title, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    bottom.suptitle(
        f"frame t={q.frame}: the query (cyan) and its epipolar lines (red) in the other views", fontsize=9
    )
    top.suptitle(f"layer {q.layer}, denoising step {capture.step} (σ = {capture.sigma:.1f})", fontsize=10)
    return fig


def explore(
    capture: PipelineAttention, layer: str, frame: int, view: int, y: int, x: int, head: int | None = None
) -> tuple[QueryAttention, object]:
    """The maps and the figure of one query: `frame` of the first chunk, image-matrix `view` (1 … V), pixel (y, x)
    of `layer`'s grid. Bad input raises KitInputError (the widget shows it as one line)."""
    V = capture.images.shape[1] - 1
    view = checks.integer("view", view, minimum=None)
    if not 1 <= view <= V:
        raise KitInputError(
            f"view must be a generated view 1 … {V}, got {view} (view 0 is the input, which the UNet does not make)"
        )
    q = capture.query(layer, frame, view - 1, y, x, head)
    return q, attention_figure(capture, q)


def _widgets():
    try:
        import ipywidgets
    except ImportError as e:  # pragma: no cover - the notebooks extra installs it
        raise ImportError("the explorers need ipywidgets: pip install 'sv4d_kit[notebooks]'") from e
    return ipywidgets


class AttentionExplorer:
    """The widget (`.widget`, shown by Jupyter through `_ipython_display_`) and its state: `.query` the maps now
    shown, `.error` the one-line error now shown (or None), `.image` the PNG widget, sliders in `.controls`."""

    def __init__(self, capture: PipelineAttention | None, error: str | None = None, layer: str | None = None):
        w = _widgets()
        self.capture, self.query, self.figure, self.error = capture, None, None, error
        self._quiet = False
        self.status = w.HTML()
        self.image = w.Image(format="png")
        layers = capture.layers if capture is not None else []
        layout = capture.layouts[layers[0]] if layers else None
        T, V = (layout.frames, layout.views) if layout else (1, 1)
        H, W = (layout.height, layout.width) if layout else (1, 1)
        style = {"description_width": "initial"}
        self.controls = {
            "layer": w.Dropdown(
                options=layers,
                value=layer if layer in layers else (layers[0] if layers else None),
                description="layer",
                style=style,
            ),  # fmt: skip
            "frame": w.IntSlider(0, 0, T - 1, description="frame t", continuous_update=False),
            "view": w.IntSlider(1, 1, V, description="view", continuous_update=False),
            "y": w.IntSlider(H // 2, 0, H - 1, description="query y", continuous_update=False),
            "x": w.IntSlider(W // 2, 0, W - 1, description="query x", continuous_update=False),
        }
        self.controls["layer"].observe(self._layer_changed, names="value")
        for name in ("frame", "view", "y", "x"):
            self.controls[name].observe(self._changed, names="value")
        rows = [w.HBox([self.controls["layer"], self.controls["frame"], self.controls["view"]]),
                w.HBox([self.controls["y"], self.controls["x"]]), self.status, self.image]  # fmt: skip
        self.widget = w.VBox(rows)
        if capture is None:
            for c in self.controls.values():
                c.disabled = True
            self.status.value = f"<code>{error}</code>"
        else:
            self._layer_changed()

    def _changed(self, _change=None) -> None:
        if not self._quiet:
            self.update()

    def _layer_changed(self, _change=None) -> None:
        """A new layer: the pixel sliders get its grid (a value past the end is clamped), then one redraw."""
        layout = self.capture.layouts.get(self.controls["layer"].value)
        if layout is not None:
            self._quiet = True
            try:
                for name, size in (("y", layout.height), ("x", layout.width)):
                    slider = self.controls[name]
                    slider.value = min(slider.value, size - 1)
                    slider.max = size - 1
            finally:
                self._quiet = False
        self.update()

    def update(self, **values) -> None:
        """Set any of layer, frame, view, y, x (as the sliders would, unclamped) and redraw."""
        args = {name: c.value for name, c in self.controls.items()}
        args.update(values)
        result, error = try_input(explore, self.capture, args["layer"], args["frame"], args["view"], args["y"],
                                  args["x"])  # fmt: skip
        self.error = error
        if error:
            self.status.value = f"<code>{error}</code>"
            return
        self.query, self.figure = result
        q = self.query
        self.status.value = (f"query: frame {q.frame}, view {q.view + 1}, pixel ({q.y}, {q.x}) of "
                             f"{q.layout.height}×{q.layout.width}; spatial peak at "
                             f"{divmod(int(q.spatial.argmax()), q.layout.width)}")  # fmt: skip
        self.image.value = viz.figure_png(self.figure, dpi=80)

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def attention_explorer(
    pipe,
    frames,
    elevation_deg: float = 10.0,
    azimuths_deg=None,
    seed: int = 0,
    steps: int | None = None,
    step: int = -1,
    layers=None,
    layer: str | None = None,
) -> AttentionExplorer:
    """Run `pipe` on `frames` once, capturing attention at denoising `step` of the first chunk
    (`pipeline_attention`; `layers` default: the transformers with grids of at most 16×16), and explore it.
    `azimuths_deg` are the V+1 relative azimuths (input view first) as the pipeline takes them. A bad input gives
    an explorer that shows the one-line error."""
    options = dict(
        layers=layers, step=step, elevation_deg=elevation_deg, azimuths_deg=azimuths_deg, seed=seed
    )
    capture, error = try_input(pipeline_attention, pipe, frames, steps=steps, **options)
    return AttentionExplorer(capture, error, layer)
