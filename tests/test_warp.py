"""The depth-warp baseline: exact in its own camera, holes where the input could not see, ground-truth motion."""

import pytest
import torch

from sv4d_kit import cameras as C
from sv4d_kit import synthetic as S
from sv4d_kit import warp
from sv4d_kit.checks import KitInputError

SIZE = 32


def cameras(azimuths):
    E = C.orbit_extrinsics(torch.tensor(azimuths), torch.full((len(azimuths),), 10.0), S.DEFAULT_RADIUS)
    return E, C.intrinsics(S.DEFAULT_FOV, SIZE)


def seen_from(depth_target, E_target, depth_input, E_input, K, tol=0.03):
    """Target pixels (on the object) whose surface point the input camera sees. (H, W) bool"""
    points = C.unproject_depth(depth_target[None, None], E_target, K)[0].reshape(-1, 3)
    uv, z = C.project_points(points, E_input, K)
    col = uv[:, 0].floor().long().clamp(0, SIZE - 1)
    row = uv[:, 1].floor().long().clamp(0, SIZE - 1)
    d = depth_input[row, col]
    return ((z - d).abs() < tol * d).reshape(SIZE, SIZE) & (depth_target > 0)


def test_render_reports_the_primitive_of_each_pixel():
    scene = S.make_scene(3)
    E, K = cameras([0.0, 90.0])
    out = S.render(scene, E, K, SIZE, SIZE, [0.0, 0.5])
    assert out.part.shape == (2, 2, 1, SIZE, SIZE) and out.part.dtype == torch.int64
    assert torch.equal(out.part >= 0, out.depth > 0)
    assert set(out.part.unique().tolist()) <= {-1, *range(len(scene.primitives))}


def test_same_camera_reproduces_the_input():
    scene = S.make_scene(3, dynamic=False)
    E, K = cameras([0.0])
    out = S.render(scene, E, K, SIZE, SIZE, [0.0])
    images, alpha = warp.warp_baseline(out.rgb[:, 0], out.depth[:, 0], E[0], K, E)
    assert images.shape == (1, 1, 3, SIZE, SIZE) and alpha.shape == (1, 1, 1, SIZE, SIZE)
    assert torch.equal(alpha[0, 0] > 0, out.depth[0, 0] > 0)
    inside = out.depth[0, 0, 0] > 0
    assert torch.allclose(images[0, 0][:, inside], out.rgb[0, 0][:, inside])
    assert bool((images[0, 0][:, ~inside] == 1).all())  # white background, no filling


def test_novel_camera_matches_where_visible_and_leaves_holes_elsewhere():
    scene = S.make_scene(3, dynamic=False)
    E, K = cameras([0.0, 40.0])
    out = S.render(scene, E, K, SIZE, SIZE, [0.0])
    images, alpha = warp.warp_baseline(out.rgb[:, 0], out.depth[:, 0], E[0], K, E[1:])
    covered = alpha[0, 0, 0] > 0
    seen = seen_from(out.depth[0, 1, 0], E[1], out.depth[0, 0, 0], E[0], K)
    unseen = (out.depth[0, 1, 0] > 0) & ~seen
    assert seen.sum() > 100 and unseen.sum() > 30
    assert covered[seen].float().mean() > 0.6  # co-visible pixels are mostly filled ...
    err = (images[0, 0] - out.rgb[0, 1]).abs().amax(0)[seen & covered]
    # ... with the right colours, but for points behind the surface that show through its holes
    assert err.median() < 0.05 and (err < 0.1).float().mean() > 0.5
    assert covered[unseen].float().mean() < 0.1  # what the input could not see stays a hole
    assert bool((images[0, 0][:, ~covered] == 1).all())


def test_ground_truth_motion_follows_the_scene():
    scene = S.make_scene(3)
    E, K = cameras([0.0, 40.0])
    times = torch.tensor([0.0, 0.3, 0.6])
    out = S.render(scene, E, K, SIZE, SIZE, times)
    # The first frame as a still clip: without motion it stays frozen, with the true motion it follows the scene.
    still_rgb, still_depth = out.rgb[:1, 0].expand(3, -1, -1, -1), out.depth[:1, 0].expand(3, -1, -1, -1)
    ids = out.part[0, 0].reshape(-1)
    ids = ids[ids >= 0]

    def motion(points, t_from, t_to):
        return S.scene_motion(scene, ids, points, 0.0, float(times[t_to]))

    moved, moved_alpha = warp.warp_baseline(still_rgb, still_depth, E[0], K, E, motion=motion)
    frozen, frozen_alpha = warp.warp_baseline(still_rgb, still_depth, E[0], K, E)
    precision = {"moved": [], "frozen": []}  # the share of drawn pixels on the object at frame t
    for t in (1, 2):
        for v in (0, 1):
            on_object = out.depth[t, v, 0] > 0
            precision["moved"].append(on_object[moved_alpha[t, v, 0] > 0].float().mean())
            precision["frozen"].append(on_object[frozen_alpha[t, v, 0] > 0].float().mean())
            assert precision["moved"][-1] > max(0.85, precision["frozen"][-1]), (t, v, precision)
    assert sum(precision["moved"]) / 4 > sum(precision["frozen"]) / 4 + 0.1
    assert ((moved[1:] - out.rgb[1:]) ** 2).mean() < ((frozen[1:] - out.rgb[1:]) ** 2).mean()
    # The whole clip with `synthetic_motion`: other frames' points fill some of frame t's holes.
    gt_motion = warp.synthetic_motion(scene, out.part[:, 0], times)
    with_motion, a_with = warp.warp_baseline(out.rgb[:, 0], out.depth[:, 0], E[0], K, E[1:], motion=gt_motion)
    own, a_own = warp.warp_baseline(out.rgb[:, 0], out.depth[:, 0], E[0], K, E[1:])
    for t in (1, 2):
        assert a_with[t].sum() > a_own[t].sum()
        mse_with = ((with_motion[t] - out.rgb[t, 1:]) ** 2).mean()
        assert mse_with < ((own[t] - out.rgb[t, 1:]) ** 2).mean()


def test_scene_motion_is_exact_and_keeps_background():
    scene = S.make_scene(5)
    points = torch.tensor([[0.1, 0.2, 0.3], [0.5, -0.1, 0.0]])
    assert torch.allclose(S.scene_motion(scene, torch.tensor([0, -1]), points, 0.4, 0.4), points, atol=1e-5)
    there = S.scene_motion(scene, torch.tensor([0, -1]), points, 0.1, 0.9)
    back = S.scene_motion(scene, torch.tensor([0, -1]), there, 0.9, 0.1)
    assert torch.allclose(back, points, atol=1e-5) and torch.equal(there[1], points[1])
    with pytest.raises(KitInputError):
        S.scene_motion(scene, torch.tensor([len(scene.primitives)]), points[:1], 0.0, 1.0)
    with pytest.raises(KitInputError):
        S.scene_motion(scene, torch.tensor([0]), points[:1], 0.0, 1.5)


@pytest.mark.parametrize(
    "change",
    [
        dict(rgb=torch.ones(2, 3, SIZE)),  # no time axis
        dict(rgb=torch.ones(2, 4, SIZE, SIZE)),  # four channels
        dict(depth=torch.ones(1, 1, SIZE, SIZE)),  # one depth map for two frames
        dict(depth=torch.full((2, 1, SIZE, SIZE), float("nan"))),
        dict(E_in=torch.eye(3)),
        dict(K=torch.zeros(3, 3)),
        dict(targets_E=torch.eye(4)),  # one matrix, not (V, 4, 4)
        dict(targets_E=torch.full((1, 4, 4), float("inf"))),
        dict(motion="spin"),
        dict(motion=lambda p, s, t: p[:1]),  # returns the wrong number of points
    ],
)
def test_bad_input(change):
    E, K = cameras([0.0, 40.0])
    args = dict(
        rgb=torch.ones(2, 3, SIZE, SIZE),
        depth=torch.full((2, 1, SIZE, SIZE), 2.5),
        E_in=E[0],
        K=K,
        targets_E=E,
        motion=None,
    )
    with pytest.raises(KitInputError):
        warp.warp_baseline(**{**args, **change})
