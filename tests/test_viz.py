"""Figures: plotly camera frustums and the matplotlib image-matrix grid (skipped if the library is missing)."""

import pytest
import torch

from sv4d_kit import cameras as C
from sv4d_kit import viz
from sv4d_kit.checks import KitInputError


def cameras_on_orbit(n=4, size=16):
    return C.orbit_extrinsics(C.orbit_azimuths(n), 15.0, 2.5), C.intrinsics(45.0, size)


def test_frustum_corners_lie_on_the_image_rays_at_the_requested_depth():
    E, K = cameras_on_orbit(3, 16)
    centres, corners = viz.frustum_corners(E, K, 16, 16, depth=0.5)
    assert centres.shape == (3, 3) and corners.shape == (3, 4, 3)
    uv, z = C.project_points(corners, E, K)
    torch.testing.assert_close(z, torch.full((3, 4), 0.5), atol=1e-5, rtol=0)
    torch.testing.assert_close(
        uv,
        torch.tensor([[0.0, 0.0], [16.0, 0.0], [16.0, 16.0], [0.0, 16.0]]).expand(3, 4, 2),
        atol=1e-3,
        rtol=0,
    )


def test_camera_frustums_figure_has_one_trace_per_camera_plus_extras():
    pytest.importorskip("plotly")
    E, K = cameras_on_orbit(5)
    fig = viz.camera_frustums_figure(E, K, 16, 16)
    assert len(fig.data) == 5 + 1  # frustums + unit sphere
    assert [trace.name for trace in fig.data[:5]] == [f"view {i}" for i in range(5)]
    points = torch.rand(100, 3) - 0.5
    fig = viz.camera_frustums_figure(
        E, K, 16, 16, labels=list("abcde"), points=points, point_colors=torch.rand(100, 3)
    )
    assert len(fig.data) == 5 + 2 and fig.data[0].name == "a" and len(fig.data[-1].x) == 100
    assert len(viz.camera_frustums_figure(E[:2], K, 16, 16, show_unit_sphere=False).data) == 2
    with pytest.raises(KitInputError, match="labels"):
        viz.camera_frustums_figure(E, K, 16, 16, labels=["only one"])


def test_image_grid_lays_out_time_across_and_views_down():
    pytest.importorskip("matplotlib")
    images = torch.rand(3, 2, 3, 8, 10)  # (T, V, 3, H, W)
    fig = viz.image_grid(images, title="grid")
    assert len(fig.axes) == 6
    assert [ax.get_title() for ax in fig.axes[:3]] == ["t=0", "t=1", "t=2"]  # first row: view 0 over time
    assert fig.axes[0].get_ylabel() == "view 0" and fig.axes[3].get_ylabel() == "view 1"
    shown = fig.axes[3 + 2].get_images()[0].get_array()  # row 1 (view 1), column 2 (t=2)
    torch.testing.assert_close(torch.as_tensor(shown.data), images[2, 1].permute(1, 2, 0))
    fig = viz.image_grid(
        (images * 255).to(torch.uint8).numpy(), row_labels=["in", "novel"], col_labels=["a", "b", "c"]
    )
    assert fig.axes[3].get_ylabel() == "novel" and fig.axes[2].get_title() == "c"


def test_image_grid_rejects_bad_shapes_and_labels():
    pytest.importorskip("matplotlib")
    with pytest.raises(KitInputError, match="images"):
        viz.image_grid(torch.rand(2, 3, 8, 8))
    with pytest.raises(KitInputError, match="col_labels"):
        viz.image_grid(torch.rand(2, 1, 3, 8, 8), col_labels=["one"])


def test_missing_library_gives_a_clear_error(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "plotly", None)  # makes `import plotly...` fail
    monkeypatch.setitem(sys.modules, "plotly.graph_objects", None)
    E, K = cameras_on_orbit(2)
    with pytest.raises(ImportError, match="pip install plotly"):
        viz.camera_frustums_figure(E, K, 16, 16)


# ------------------------------------------------------------------------------------------------------------
# Pictures of notebooks 01 and 02: lines, crop boxes, Plücker maps, trajectories


def _on_line(line, point):
    a, b, c = line
    return abs(a * point[0] + b * point[1] + c)


def test_line_in_image_clips_a_line_through_a_known_point_to_the_image_border():
    # the line through (3.5, 2.5) and (10.5, 7.5): direction (7, 5), normal (5, -7)
    a, b = 5.0, -7.0
    c = -(a * 3.5 + b * 2.5)
    seg = viz.line_in_image((a, b, c), height=16, width=20)
    assert seg.shape == (2, 2)
    for end in seg:
        assert _on_line((a, b, c), end) < 1e-9
        assert min(end[0], end[1], 20 - end[0], 16 - end[1]) < 1e-9  # on the border
    # the known points lie between the two ends
    d = seg[1] - seg[0]
    for p in ((3.5, 2.5), (10.5, 7.5)):
        s = float(((torch.tensor(p, dtype=torch.float64) - torch.tensor(seg[0])) @ torch.tensor(d)) / (d @ d))
        assert 0 < s < 1
    # axis-parallel lines, and a line that misses the image
    torch.testing.assert_close(torch.tensor(viz.line_in_image((0, 1, -4.5), 8, 10)), torch.tensor(
        [[0.0, 4.5], [10.0, 4.5]], dtype=torch.float64))  # fmt: skip
    assert viz.line_in_image((1, 0, 20), 8, 10) is None
    with pytest.raises(KitInputError, match="line"):
        viz.line_in_image((0, 0, 1), 8, 10)
    with pytest.raises(KitInputError, match="line"):
        viz.line_in_image((1, float("nan"), 1), 8, 10)


def test_epipolar_figure_draws_the_line_through_the_true_correspondence():
    pytest.importorskip("matplotlib")
    E, K = cameras_on_orbit(3, 24)
    X = torch.tensor([[0.1, -0.2, 0.15]])  # a world point near the object
    uv, _ = C.project_points(X.expand(3, 1, 3), E, K)  # (3, 1, 2)
    lines = [None] + [C.epipolar_lines(C.fundamental_matrix(K, E[0], K, E[j]), uv[0])[0] for j in (1, 2)]
    images = torch.rand(2, 3, 3, 24, 24)  # two rows of three views
    fig = viz.epipolar_figure(images, lines=lines, points=list(uv), row_labels=["a", "b"])
    assert len(fig.axes) == 6 and fig.axes[3].get_ylabel() == "b" and fig.axes[1].get_title() == "view 1"
    for r in range(2):
        for j in (1, 2):
            line_artist, halo, ring = fig.axes[3 * r + j].get_lines()
            (u0, u1), (v0, v1) = line_artist.get_xdata(), line_artist.get_ydata()
            p = uv[j, 0].double().numpy()
            # the projection of X in view j is on the drawn segment (collinear with its ends) and is the ring
            cross = (u1 - u0) * (p[1] - v0) - (v1 - v0) * (p[0] - u0)
            assert abs(cross) / max(1e-9, float(((u1 - u0) ** 2 + (v1 - v0) ** 2) ** 0.5)) < 1e-3
            assert abs(ring.get_xdata()[0] - p[0]) < 1e-5 and abs(ring.get_ydata()[0] - p[1]) < 1e-5
        assert len(fig.axes[3 * r].get_lines()) == 2  # view 0: the query point (ring and halo), no line
    shown = fig.axes[4].get_images()[0]
    assert shown.get_extent() == [0, 24, 24, 0]  # continuous pixel coordinates
    fig = viz.epipolar_figure(images[0])  # one row, no marks
    assert len(fig.axes) == 3


def test_epipolar_figure_rejects_bad_input():
    pytest.importorskip("matplotlib")
    with pytest.raises(KitInputError, match="images"):
        viz.epipolar_figure(torch.rand(3, 8, 8))
    with pytest.raises(KitInputError, match="one entry per view"):
        viz.epipolar_figure(torch.rand(3, 3, 8, 8), lines=[None, (0, 1, -2)])
    with pytest.raises(KitInputError, match="points"):
        viz.epipolar_figure(torch.rand(3, 3, 8, 8), points=[None, (1, 2, 3), None])
    with pytest.raises(KitInputError, match="a or b"):
        viz.epipolar_figure(torch.rand(2, 3, 8, 8), lines=[None, (0, 0, 1)])
    with pytest.raises(KitInputError, match="col_labels"):
        viz.epipolar_figure(torch.rand(2, 3, 8, 8), col_labels=["x"])


def test_plucker_images_are_in_the_display_range_with_grey_for_zero():
    E, K = cameras_on_orbit(4, 16)
    rays = C.plucker_rays(E, K, 16, 16)
    pictures = viz.plucker_images(rays)
    assert pictures.shape == (4, 2, 3, 16, 16)
    assert float(pictures.min()) >= 0.0 and float(pictures.max()) <= 1.0
    torch.testing.assert_close(pictures[:, 1], rays[:, 3:] / 2 + 0.5)  # direction: (d + 1) / 2
    scale = float(rays[:, :3].abs().max())
    torch.testing.assert_close(pictures[:, 0], rays[:, :3] / (2 * scale) + 0.5)
    assert float((pictures[:, 0] - 0.5).abs().max()) == pytest.approx(
        0.5
    )  # the largest moment reaches 0 or 1
    # the rays through the image centre pass (nearly) through the origin: moment ~ 0, grey
    centre = pictures[:, 0, :, 7:9, 7:9]
    assert float((centre - 0.5).abs().max()) < 0.1
    half = viz.plucker_images(rays, moment_scale=2 * scale)
    torch.testing.assert_close(half[:, 0] - 0.5, (pictures[:, 0] - 0.5) / 2)
    assert float(viz.plucker_images(torch.zeros(1, 6, 2, 2)).sub(0.5).abs().max()) == 0.0  # no NaN for zeros


def test_plucker_images_reject_bad_input():
    with pytest.raises(KitInputError, match="rays"):
        viz.plucker_images(torch.zeros(2, 3, 8, 8))
    with pytest.raises(KitInputError, match="finite"):
        viz.plucker_images(torch.full((1, 6, 2, 2), float("nan")))
    with pytest.raises(KitInputError, match="moment_scale"):
        viz.plucker_images(torch.ones(1, 6, 2, 2), moment_scale=0)


def test_crop_box_figure_draws_the_crops_and_boxes_and_shows_a_crop_that_leaves_the_image():
    pytest.importorskip("matplotlib")
    import numpy as np

    frames = np.full((3, 20, 30, 3), 255, np.uint8)  # read_frames layout (N, H, W, C)
    crops = [(2.0, 5.0, 16.0), (-5.0, -2.0, 30.0)]  # the second leaves the image
    fig = viz.crop_box_figure(frames, crops, object_boxes=(4, 7, 16, 19), crop_labels=["0.9", "0.5"],
                              title="crops")  # fmt: skip
    assert len(fig.axes) == 3 and fig.axes[2].get_title() == "frame 2"
    ax = fig.axes[0]
    rects = [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax.patches]
    assert (0, 0, 30, 20) in rects  # the image border
    assert (7, 4, 12, 12) in rects  # the object box (x = left, y = top)
    assert (5.0, 2.0, 16.0, 16.0) in rects and (-2.0, -5.0, 30.0, 30.0) in rects
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    assert x0 < -2 and x1 > 30 and y1 < -5 and y0 > 25  # the axes show the whole crop; rows grow downwards
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["0.9", "0.5"]
    fig = viz.crop_box_figure(torch.rand(2, 3, 8, 8), (0, 0, 8), object_boxes=[(1, 1, 4, 4), (2, 2, 6, 6)])
    assert len(fig.axes) == 2 and not fig.legends
    assert fig.axes[0].get_images()[0].get_array().shape == (8, 8, 3)


def test_crop_box_figure_rejects_bad_input():
    pytest.importorskip("matplotlib")
    import numpy as np

    frames = np.zeros((2, 8, 8, 3), np.uint8)
    with pytest.raises(KitInputError, match="crops"):
        viz.crop_box_figure(frames, (0, 0, -1))
    with pytest.raises(KitInputError, match="crops"):
        viz.crop_box_figure(frames, (0, 0, 1, 2))
    with pytest.raises(KitInputError, match="object_boxes"):
        viz.crop_box_figure(frames, (0, 0, 8), object_boxes=[(0, 0, 1, 1)] * 3)
    with pytest.raises(KitInputError, match="frames"):
        viz.crop_box_figure(np.zeros((2, 8, 8, 5), np.uint8), (0, 0, 8))
    with pytest.raises(KitInputError, match="crop_labels"):
        viz.crop_box_figure(frames, (0, 0, 8), crop_labels=["a", "b"])


def test_trajectory_figure_puts_the_cameras_where_the_angles_say():
    pytest.importorskip("matplotlib")
    fig = viz.trajectory_figure([0.0, 90.0, 180.0], [0.0, 30.0, -20.0], title="t")
    top, side = fig.axes
    xy = top.collections[0].get_offsets()
    assert abs(xy[1][0]) < 1e-9 and xy[1][1] == pytest.approx(0.8660254)
    assert side.collections[0].get_offsets().tolist() == [[0.0, 0.0], [90.0, 30.0], [180.0, -20.0]]
    with pytest.raises(KitInputError, match="labels"):
        viz.trajectory_figure([0.0, 90.0], labels=["a"])
    with pytest.raises(KitInputError, match="elevation"):
        viz.trajectory_figure([0.0, 90.0], [0.0, 95.0])
