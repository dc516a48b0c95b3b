"""The orbit/time player without a browser: the pure frame renderer, the orbit schedule, and the widgets moving
together when a value is set in the kernel (jslink does not sync inside a kernel, so Play -> frame is tested through
the kernel-side `link` that Colab uses; the sliders -> Image path is the same in both)."""

import io
import sys

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

from sv4d_kit import playback
from sv4d_kit.checks import KitInputError

widgets = pytest.importorskip("ipywidgets", reason="the player needs the notebooks extras (ipywidgets)")

AZIMUTHS = [0.0, 240.0, 120.0, 60.0]  # not in azimuth order, so the orbit must sort them


def _matrix(T=5, V=4, H=8, W=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, V, 3, H, W, generator=g)


def _decode(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_frame_png_is_that_frame_enlarged_by_nearest_neighbour():
    x = _matrix()
    png = playback.frame_png(x, 3, 2, factor=4)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = _decode(png)
    expected = (x[3, 2].clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert pixels.shape == (32, 32, 3)
    assert (pixels[::4, ::4] == expected).all() and (pixels[3::4, 3::4] == expected).all()
    assert playback.frame_png(x, 3, 2, factor=4) == png  # pure: same input, same bytes
    assert playback.frame_png(x, 3, 1, factor=4) != png


@pytest.mark.parametrize("T, V", [(5, 4), (21, 9), (1, 3), (3, 1), (7, 5)])
def test_orbit_steps_visit_every_view_in_azimuth_order_and_every_frame(T, V):
    azimuths = [(360.0 * v / V * 7) % 360 for v in range(V)]  # a scrambled order
    steps = playback.orbit_steps(azimuths, T)
    assert len(steps) == max(2 * T, 8 * V)
    assert {t for t, _ in steps} == set(range(T)) and {v for _, v in steps} == set(range(V))
    assert [t for t, _ in steps] == [k % T for k in range(len(steps))]  # time advances one frame a step
    order = sorted(range(V), key=lambda v: azimuths[v])
    visited = [v for k, (_, v) in enumerate(steps) if k == 0 or steps[k - 1][1] != v]
    assert visited == order  # each view once, in increasing azimuth


def test_setting_the_sliders_shows_exactly_that_frame():
    x = _matrix()
    w = playback.player(x, AZIMUTHS, fps=4, factor=2)
    p = w.player
    assert isinstance(w, widgets.Box) and {p.play, p.orbit} <= set(w.children[0].children)
    assert p.frame.description == "frame" and p.view.description == "view"
    assert isinstance(p.image, widgets.Image) and isinstance(p.orbit, widgets.ToggleButton)
    assert p.image.value == playback.frame_png(x, 0, 0, 2)
    p.frame.value = 3
    assert p.image.value == playback.frame_png(x, 3, 0, 2)
    p.view.value = 2
    assert p.image.value == playback.frame_png(x, 3, 2, 2)
    assert "frame 3/4" in p.label.value and "view 2" in p.label.value and "120°" in p.label.value
    assert p.play.interval == 250


def test_play_drives_the_frame_with_the_kernel_link():
    x = _matrix()
    p = playback.player(x, AZIMUTHS, factor=1, sync="kernel").player
    p.view.value = 1
    p.play.value = 4
    assert p.frame.value == 4 and p.view.value == 1
    assert p.image.value == playback.frame_png(x, 4, 1, 1)
    p.frame.value = 2  # the link goes both ways
    assert p.play.value == 2


def test_browser_link_is_a_jslink_and_colab_gets_the_kernel_link(monkeypatch):
    x = _matrix(T=2, V=2)
    assert isinstance(
        playback.player(x).player._link, widgets.widgets.widget_link.Link
    )  # jslink: a Link widget for the browser
    monkeypatch.setitem(sys.modules, "google.colab", object())
    assert isinstance(playback.player(x).player._link, widgets.link)  # traitlets' kernel-side link


def test_orbit_toggle_moves_view_and_time_as_the_schedule_says():
    x = _matrix()
    p = playback.player(x, AZIMUTHS, factor=1, sync="kernel").player
    shown = []
    p.image.observe(lambda change: shown.append(change["new"]), "value")
    p.orbit.value = True
    assert p.play.max == len(p.steps) - 1 and p.play.value == 0
    for k in range(1, len(p.steps)):
        p.play.value = k  # what a tick of the Play does
        t, v = p.steps[k]
        assert (p.frame.value, p.view.value) == (t, v)
        assert p.image.value == playback.frame_png(x, t, v, 1)
    assert len(shown) == len(p.steps) - 1  # one picture a step, no in-between frame of the other slider
    assert [v for _, v in p.steps[:: len(p.steps) // 4]] == [0, 3, 2, 1]  # 0°, 60°, 120°, 240°
    p.orbit.value = False  # back to plain time: the Play drives the frame again, from where it was
    assert p.play.max == 4 and p.play.value == p.frame.value
    p.play.value = 1
    assert p.frame.value == 1 and p.view.value == p.steps[-1][1]


def test_orbit_starts_at_the_current_view():
    p = playback.player(_matrix(), AZIMUTHS, factor=1, sync="kernel").player
    p.view.value = 2  # 120°: the third view of the orbit
    p.orbit.value = True
    assert p.view.value == 2 and p.steps[p.play.value][1] == 2
    assert "orbit step" in p.label.value


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: playback.player(torch.rand(4, 3, 8, 8)), "shape"),
        (lambda: playback.player(torch.rand(2, 3, 4, 8, 8)), "shape"),
        (lambda: playback.player(torch.zeros(0, 3, 3, 8, 8)), "shape"),
        (lambda: playback.player(torch.zeros(2, 3, 3, 8, 8, dtype=torch.uint8)), "floats"),
        (lambda: playback.player(torch.full((2, 3, 3, 8, 8), float("nan"))), "finite"),
        (lambda: playback.player([[0.0]]), "tensor"),
        (lambda: playback.player(_matrix(V=4), azimuths_deg=[0, 90, 180]), "one azimuth per view"),
        (lambda: playback.player(_matrix(), fps=0), "fps"),
        (lambda: playback.player(_matrix(), fps=-2), "fps"),
        (lambda: playback.player(_matrix(), factor=0), "factor"),
        (lambda: playback.player(_matrix(), sync="js"), "sync"),
        (lambda: playback.frame_png(_matrix(), 5, 0), "frame"),
        (lambda: playback.frame_png(_matrix(), 0, -1), "view"),
        (lambda: playback.export(_matrix(), "orbit.webm"), "suffix"),
        (lambda: playback.export(_matrix(), "orbit.gif", fps=0), "fps"),
        (lambda: playback.export(_matrix(V=4), "orbit.gif", view=4), "view"),
    ],
)
def test_bad_input_is_one_clear_line(call, message):
    with pytest.raises(KitInputError, match=message) as error:
        call()
    assert "\n" not in str(error.value)


def test_export_writes_the_orbit_and_one_view(tmp_path):
    x = _matrix(T=3, V=4, H=8, W=8)
    gif = playback.export(x, tmp_path / "sub" / "orbit.gif", AZIMUTHS, fps=5, factor=2)
    frames = iio.imread(gif, index=None)
    assert frames.shape[:3] == (32, 16, 16)  # max(2 T, 8 V) orbit frames, enlarged twice
    mp4 = playback.export(x, tmp_path / "view_02.mp4", AZIMUTHS, view=2, factor=2)
    assert iio.imread(mp4, index=None).shape[:3] == (3, 16, 16)  # one frame per time step
    first = iio.imread(gif, index=0)[..., :3]
    assert (
        np.abs(first[::2, ::2].astype(int) - _decode(playback.frame_png(x, 0, 0))).max() <= 8
    )  # GIF palette
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sub", "view_02.mp4"]  # no partial files left


def test_any_angle_mode_renders_the_points_at_every_angle():
    """The player over a 4D representation: one "view" per angle, the orbit turns one angle a step while time
    advances, and the image shown is the points' render at that frame and angle."""
    from sv4d_kit.playback import any_angle_player
    from sv4d_kit.recon4d import DynamicPoints

    g = torch.Generator().manual_seed(0)
    positions = (torch.rand(2, 50, 3, generator=g) - 0.5) * 0.8  # (T, N, 3)
    points = DynamicPoints(
        positions, torch.rand(50, 3, generator=g), torch.full((50,), 0.9), torch.full((50,), 0.05)
    )
    w = any_angle_player(points, elevation_deg=10.0, angles=12, size=32, sync="kernel")
    p = w.player
    assert p.view.max == 11 and p.frame.max == 1 and len(p.steps) == 12
    rgb, _, _ = points.render([90.0], 10.0, times=[1], size=32)
    p.frame.value, p.view.value = 1, 3  # azimuth 3 * 30° = 90°
    assert bytes(p.image.value) == playback.frame_png(rgb.clamp(0, 1), 0, 0, p.factor)
    assert "azimuth 90°" in p.label.value and "4D points" in p.label.value
    p.orbit.value = True
    seen = set()
    for k in range(12):
        p.play.value = k
        seen.add((p.frame.value, p.view.value))
    assert {v for _, v in seen} == set(range(12)) and {t for t, _ in seen} == {0, 1}
