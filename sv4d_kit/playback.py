"""The orbit/time player: an image matrix (T, V, 3, H, W) as a widget that plays time, picks a view, or orbits.

    >>> w = player(out.images, out.cameras["azimuths_deg"])  # a VBox: shows in a notebook cell
    >>> p = w.player  # its parts: p.play, p.frame, p.view, p.orbit, p.image, p.label
    >>> p.view.value = 2  # the Image now shows frame_png(out.images, p.frame.value, 2, p.factor)
    >>> export(out.images, "outputs/orbit.gif", out.cameras["azimuths_deg"])  # the orbit as a GIF (or .mp4)

Every frame is encoded to PNG once, up front (`frame_png`, a pure function), so moving a slider only swaps bytes.
The `Play` widget drives the frame slider through `jslink` in the browser (no kernel round trip), or through a
kernel-side `link` in Colab, whose `Play` breaks `jslink` (googlecolab/colabtools#1612). With "orbit" on, each tick
of the `Play` is one step of `orbit_steps`: the camera walks through the views in azimuth order while time advances,
the way `media.orbit_frames` makes `orbit.mp4` (there the views cross-fade; the player shows each view as generated).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from sv4d_kit import checks, media
from sv4d_kit.checks import KitInputError


def check_images(images) -> torch.Tensor:
    """`images` as a float tensor (T, V, 3, H, W) with T, V >= 1 and finite values, or KitInputError."""
    if not isinstance(images, torch.Tensor | np.ndarray):
        raise KitInputError(f"images must be a tensor (T, V, 3, H, W), got {type(images).__name__}")
    x = torch.as_tensor(images)
    if x.ndim != 5 or x.shape[2] != 3 or 0 in x.shape:
        raise KitInputError(f"images must have shape (T, V, 3, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise KitInputError(f"images must be floats in [0, 1], got {x.dtype}")
    if not torch.isfinite(x).all():
        raise KitInputError("images must be finite floats in [0, 1], got NaN or infinite values")
    return x


def check_azimuths(azimuths_deg, num_views: int) -> list[float]:
    """One finite azimuth (degrees) per view; None means evenly spaced from 0°."""
    if azimuths_deg is None:
        return [360.0 * v / num_views for v in range(num_views)]
    azimuths = [checks.number("azimuth", a) for a in azimuths_deg]
    if len(azimuths) != num_views:
        raise KitInputError(f"need one azimuth per view ({num_views}), got {len(azimuths)}")
    return azimuths


def frame_png(images: torch.Tensor, t: int, v: int, factor: int = 1) -> bytes:
    """Frame `t` of view `v` of the matrix (T, V, 3, H, W) as PNG bytes, enlarged `factor` times (nearest neighbour)."""
    T, V = images.shape[:2]
    t, v = checks.integer("frame", t, 0, T - 1), checks.integer("view", v, 0, V - 1)
    factor = checks.integer("factor", factor, minimum=1)
    pixels = media.to_uint8(images[t, v])  # (3, H, W) -> uint8 (H, W, 3)
    pixels = pixels.repeat(factor, axis=0).repeat(factor, axis=1)  # (H*factor, W*factor, 3)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def orbit_steps(azimuths_deg, num_frames: int, length: int | None = None) -> list[tuple[int, int]]:
    """The player's orbit: per step, `(frame, view)`. The views come in increasing azimuth, each for an equal share
    of the steps, while time advances one frame a step and loops (`media.orbit_schedule` without cross-fades).
    The default length is that of `media.orbit_frames`, max(2 T, 8 V): every frame and every view appear."""
    num_frames = checks.integer("num_frames", num_frames, minimum=1)
    length = max(2 * num_frames, 8 * len(azimuths_deg)) if length is None else length
    length = checks.integer("orbit length", length, minimum=1)
    return [(t, a) for t, a, _, _ in media.orbit_schedule(azimuths_deg, num_frames, length, blend=0.0)]


class Player:
    """The widgets of one player and how they move together (`player()` makes one; `widget` is what displays).

    play: `Play`, ticking the frame (or, with orbit on, the orbit step); frame, view: `IntSlider`s; orbit:
    `ToggleButton`; image: `Image` showing `pngs[frame][view]`; label: what is shown, in words.
    """

    def __init__(
        self,
        images,
        azimuths_deg=None,
        fps: float = 8,
        factor: int | None = None,
        sync: str | None = None,
        orbit_length: int | None = None,
        any_angle: bool = False,
    ):
        import ipywidgets as widgets

        from sv4d_kit.notebook import in_colab

        # 1. Check inputs
        images = check_images(images)
        T, V, _, H, W = images.shape
        self.azimuths = check_azimuths(azimuths_deg, V)
        fps = checks.positive("fps", fps)
        self.factor = (
            media.display_factor(H, W) if factor is None else checks.integer("factor", factor, minimum=1)
        )
        self.sync = checks.one_of(
            "sync", sync or ("kernel" if in_colab() else "browser"), ("browser", "kernel")
        )

        # 2. Encode every frame once: pngs[t][v]
        self.pngs = [[frame_png(images, t, v, self.factor) for v in range(V)] for t in range(T)]
        self.steps = orbit_steps(self.azimuths, T, orbit_length)
        self.any_angle = (
            any_angle  # the "views" are angles rendered from a 4D representation, not generated views
        )

        # 3. The widgets
        interval = max(1, round(1000 / fps))  # ms a tick
        self.play = widgets.Play(value=0, min=0, max=T - 1, step=1, interval=interval, repeat=True,
                                 tooltip="play time (or the orbit, with orbit on)")  # fmt: skip
        self.frame = widgets.IntSlider(value=0, min=0, max=T - 1, description="frame")
        self.view = widgets.IntSlider(value=0, min=0, max=V - 1, description="view")
        self.orbit = widgets.ToggleButton(value=False, description="orbit", icon="refresh",
                                          tooltip="move the camera through the views while time advances")  # fmt: skip
        self.image = widgets.Image(
            value=self.pngs[0][0],
            format="png",
            width=W * self.factor,
            height=H * self.factor,
            layout=widgets.Layout(border="1px solid #ddd"),
        )
        self.label = widgets.Label()
        self.widget = widgets.VBox(
            [widgets.HBox([self.play, self.orbit]), self.frame, self.view, self.image, self.label],
            layout=widgets.Layout(width="max-content"),
        )
        # the widget carries its player, so `player(...)` can return the widget alone
        self.widget.player = self

        # 4. How they move together
        self._link = None
        self._moving = False  # set while an orbit step moves both sliders: show the picture once
        self._link_play()
        self.frame.observe(self._on_slider, "value")
        self.view.observe(self._on_slider, "value")
        self.play.observe(self._on_play, "value")
        self.orbit.observe(self._on_orbit, "value")
        self.show()

    def show(self):
        """Put the frame and view the sliders name on the Image, and say what it is."""
        t, v = self.frame.value, self.view.value
        self.image.value = self.pngs[t][v]
        name = "the input" if v == 0 else "novel"
        text = f"frame {t}/{len(self.pngs) - 1} · view {v} ({name}, azimuth {self.azimuths[v]:g}°)"
        if self.any_angle:
            text = f"frame {t}/{len(self.pngs) - 1} · azimuth {self.azimuths[v]:g}° (rendered from the 4D points)"
        if self.orbit.value:
            text = f"orbit step {self.play.value}/{len(self.steps) - 1} · {text}"
        self.label.value = text

    def _link_play(self):
        import ipywidgets as widgets

        link = widgets.jslink if self.sync == "browser" else widgets.link
        # frame first: linking copies its value onto the Play, so a frame set from code before the page shows stays
        self._link = link((self.frame, "value"), (self.play, "value"))

    def _unlink_play(self):
        if self._link is not None:
            self._link.unlink()
            self._link = None

    def _on_slider(self, change):
        if not self._moving:
            self.show()

    def _on_play(self, change):
        if self.orbit.value:  # the Play's value is a step of the orbit: move both sliders, then show once
            t, v = self.steps[change["new"]]
            self._moving = True
            try:
                self.frame.value, self.view.value = t, v
            finally:
                self._moving = False
            self.show()

    def _on_orbit(self, change):
        if change["new"]:  # Play -> orbit step (kernel side), from the first step that shows the current view
            self._unlink_play()
            start = next((k for k, (_, v) in enumerate(self.steps) if v == self.view.value), 0)
            self.play.max = len(self.steps) - 1
            self.play.value = start
            self._on_play({"new": start})  # when the value did not change, no event came
        else:  # Play -> frame slider again
            self.play.max = len(self.pngs) - 1
            self.play.value = self.frame.value
            self._link_play()


def player(images, azimuths_deg=None, fps: float = 8, factor: int | None = None, sync: str | None = None):
    """An orbit/time player for an image matrix (T, V, 3, H, W) in [0, 1] (view 0 = the input): a `Play`, "frame"
    and "view" sliders, an "orbit" toggle and the `Image`, in one `VBox` (its `.player` holds the parts).

    azimuths_deg: one per view (default evenly spaced), for the orbit's order and the label; fps: frames a second;
    factor: the nearest-neighbour enlargement (default: up to 256 px, `media.display_factor`); sync: "browser"
    (`jslink`) or "kernel" (`link`) for Play -> frame, default "kernel" in Colab only.
    """
    return Player(images, azimuths_deg, fps, factor, sync).widget


def any_angle_player(points, elevation_deg: float = 10.0, angles: int = 72, size: int = 64,
                     start_azimuth_deg: float = 0.0, fps: float = 8, sync: str | None = None):  # fmt: skip
    """The player's "any angle" mode: a 4D representation (`sv4d_kit.recon4d.DynamicPoints`) rendered at `angles`
    azimuths around the orbit for every frame, in the same player. The "view" slider picks an angle; "orbit" turns
    the camera one angle a step while time advances (what `orbit_smooth.mp4` shows)."""
    angles = checks.integer("angles", angles, minimum=1)
    azimuths = [start_azimuth_deg + 360.0 * k / angles for k in range(angles)]
    rgb, _, _ = points.render(azimuths, elevation_deg, times=list(range(points.num_frames)), size=size)
    matrix = rgb.detach().cpu().clamp(0, 1)  # (T, angles, 3, size, size)
    return Player(matrix, azimuths, fps, sync=sync, orbit_length=angles, any_angle=True).widget


def export(
    images,
    path: str | Path,
    azimuths_deg=None,
    view: int | None = None,
    fps: float = 8,
    factor: int | None = None,
) -> Path:
    """Write the orbit (view None; cross-faded like `orbit.mp4`) or one view over time as a GIF or MP4 (by the
    suffix), enlarged like the player. The file appears only when complete. Returns its path."""
    images = check_images(images)
    T, V, _, H, W = images.shape
    path = Path(path)
    checks.one_of("export suffix", path.suffix, (".gif", ".mp4"))
    fps = checks.positive("fps", fps)
    factor = media.display_factor(H, W) if factor is None else checks.integer("factor", factor, minimum=1)
    if view is None:
        frames = media.orbit_frames(images, check_azimuths(azimuths_deg, V))  # (length, 3, H, W)
    else:
        frames = images[:, checks.integer("view", view, 0, V - 1)]  # (T, 3, H, W)
    pixels = media.to_uint8(frames).repeat(factor, axis=1).repeat(factor, axis=2)  # (N, H*f, W*f, 3)
    path.absolute().parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(
        f".{path.stem}.partial-{os.getpid()}{path.suffix}"
    )  # the suffix picks the format
    try:
        media.write_video(partial, pixels, fps)
        os.replace(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path
