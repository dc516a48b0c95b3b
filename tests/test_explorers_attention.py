"""Tests of the attention explorer: its pure part (maps, epipolar lines, figure) and its widget."""

import pytest
import torch

from sv4d_kit import cameras, evaluation
from sv4d_kit.attention import AttentionLayout, PipelineAttention, QueryAttention, pipeline_attention
from sv4d_kit.checks import KitInputError

pytest.importorskip("ipywidgets", reason="the explorers need the notebooks extra")
pytest.importorskip("matplotlib", reason="the explorers need the notebooks extra")

from sv4d_kit.explorers.attention import (  # noqa: E402
    AttentionExplorer,
    attention_explorer,
    clip_line,
    epipolar_segments,
    explore,
)


@pytest.fixture(scope="module")
def pipe():
    from sv4d_kit.pipeline import SV4DPipeline

    return SV4DPipeline.from_pretrained("tiny")


@pytest.fixture(scope="module")
def scene(pipe):
    return evaluation.heldout_scene(0, 0, pipe.default_azimuths(), pipe.config.image_size, 4)


def relative(scene):
    return [(a - scene.azimuths_deg[0]) % 360 for a in scene.azimuths_deg]


@pytest.fixture(scope="module")
def capture(pipe, scene):
    return pipeline_attention(pipe, scene.images[:, 0], azimuths_deg=relative(scene), steps=2, seed=1)


def test_pipeline_attention_keeps_the_maps_of_the_asked_step(pipe, scene, capture):
    assert capture.step == 1 and capture.layers[0] == "input_blocks.1.1"
    layout = capture.layouts["input_blocks.1.1"]
    assert layout == AttentionLayout(1, 4, 4, 8, 8, False)  # guidance 1: only the conditional video runs
    first = pipeline_attention(pipe, scene.images[:, 0], azimuths_deg=relative(scene), steps=2, seed=1, step=0,
                               layers=["middle_block.1"])  # fmt: skip
    assert first.layers == ["middle_block.1"] and first.sigma > capture.sigma
    assert capture.images.shape == (4, 5, 3, 32, 32)
    with pytest.raises(KitInputError, match="layers"):
        pipeline_attention(pipe, scene.images[:, 0], layers=["input_blocks.0"], steps=1)
    with pytest.raises(KitInputError, match="step"):
        pipeline_attention(pipe, scene.images[:, 0], steps=2, step=2)


def test_explore_gives_the_maps_of_the_query(capture):
    q, fig = explore(capture, "input_blocks.1.1", frame=2, view=3, y=1, x=6)
    assert (q.frame, q.view, q.y, q.x) == (2, 2, 1, 6)  # the UNet's view index is view - 1
    assert q.spatial.shape == (8, 8) and q.view_weights.shape == (4,) and q.frame_weights.shape == (4,)
    probs = capture.maps["input_blocks.1.1.motion_blocks.0.attn1"]  # rows (b v hw)
    torch.testing.assert_close(q.frame_weights, probs[(0 * 4 + 2) * 64 + 1 * 8 + 6, :, 2].mean(0))
    assert len(fig.axes) >= 3 + 5
    with pytest.raises(KitInputError, match="view 0 is the input"):
        explore(capture, "input_blocks.1.1", 0, 0, 0, 0)
    with pytest.raises(KitInputError, match="layer"):
        explore(capture, "nope", 0, 1, 0, 0)
    with pytest.raises(KitInputError, match="y"):
        explore(capture, "input_blocks.3.1", 0, 1, 5, 0)  # a 4×4 grid


def test_epipolar_lines_pass_through_the_true_point(scene):
    """With the scene's own cameras, a surface point seen at the query lies on its epipolar line in every other
    view (ground-truth depth), so the explorer draws the right lines."""
    T, V1, _, S, _ = scene.images.shape
    fake = PipelineAttention({}, {}, scene.images, {"azimuths_deg": scene.azimuths_deg,
                             "elevations_deg": [scene.elevation_deg] * V1}, 0, 1.0)  # fmt: skip
    layout = AttentionLayout(1, T, V1 - 1, S, S)  # a grid of the image's size: cell centres are pixel centres
    depth = scene.depth[0, 1, 0]  # view 1 at frame 0
    ys, xs = torch.nonzero(depth > 0, as_tuple=True)
    assert len(ys) > 10
    points = cameras.unproject_depth(scene.depth[0, 1:2], scene.extrinsics[1:2], scene.K)[0]  # (S, S, 3)
    checked = 0
    for i in torch.linspace(0, len(ys) - 1, 6).long().tolist():
        y, x = int(ys[i]), int(xs[i])
        q = QueryAttention("l", layout, 0, 0, 0, y, x, None, None, (), None)
        segments = epipolar_segments(fake, q)
        assert sorted(segments) == [0, 2, 3, 4]
        for j, seg in segments.items():
            pix, _ = cameras.project_points(points[y, x][None], scene.extrinsics[j], scene.K)  # (1, 2)
            u, v = pix[0].tolist()
            if seg is None or not (0 <= u <= S and 0 <= v <= S):
                continue
            (u0, v0), (u1, v1) = seg
            distance = (
                abs((u1 - u0) * (v - v0) - (v1 - v0) * (u - u0)) / ((u1 - u0) ** 2 + (v1 - v0) ** 2) ** 0.5
            )
            assert distance < 0.05, (y, x, j, distance)
            checked += 1
    assert checked >= 12


def test_clip_line():
    assert clip_line((0.0, 1.0, -5.0), 10) == ((0.0, 5.0), (10.0, 5.0))  # v = 5
    assert clip_line((1.0, 0.0, -3.0), 10) == ((3.0, 0.0), (3.0, 10.0))  # u = 3
    assert clip_line((0.0, 1.0, 5.0), 10) is None  # v = -5: outside


def test_the_widget_follows_its_sliders_and_shows_bad_input_as_one_line(pipe, scene, capture):
    ex = AttentionExplorer(capture)
    assert ex.error is None and ex.image.value and ex.query.layer == "input_blocks.1.1"
    before, png = ex.query.spatial.clone(), ex.image.value
    ex.controls["y"].value, ex.controls["x"].value = 0, 7
    assert (ex.query.y, ex.query.x) == (0, 7)
    assert not torch.equal(ex.query.spatial, before) and ex.image.value != png
    ex.controls["frame"].value = 3
    ex.controls["view"].value = 4
    assert (ex.query.frame, ex.query.view) == (3, 3)
    ex.controls["layer"].value = "input_blocks.3.1"  # a 4×4 grid: the pixel sliders follow
    assert ex.controls["x"].max == 3 and ex.query.x == 3 and ex.query.spatial.shape == (4, 4)
    shown = ex.query
    ex.update(view=0)  # bad input: one line, the last good maps stay
    assert ex.error.startswith("error: view must be") and "\n" not in ex.error and ex.query is shown
    assert ex.error in ex.status.value
    ex.update()
    assert ex.error is None

    bad = attention_explorer(pipe, scene.images[:, 0], steps=1, layers=["nope"])
    assert bad.capture is None and bad.error.startswith("error: layers") and "\n" not in bad.error
    assert all(c.disabled for c in bad.controls.values()) and bad.error in bad.status.value
    bad = attention_explorer(pipe, scene.images[:, 0, :, :30, :30], steps=1)  # not a valid frame size
    assert bad.error.startswith("error: frames")
