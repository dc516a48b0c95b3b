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
