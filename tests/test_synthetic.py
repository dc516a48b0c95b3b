"""Procedural 4D scenes: determinism, motion, ground truth (alpha, depth) and multi-view consistency."""

import math
from dataclasses import replace

import pytest
import torch

from sv4d_kit import cameras as C
from sv4d_kit import synthetic as S
from sv4d_kit.checks import KitInputError

IDENTITY = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
COLORS = ((0.9, 0.2, 0.2), (0.2, 0.3, 0.9))


def single(kind, size, pattern="sectors"):
    prim = S.Primitive(kind, size, (0.0, 0.0, 0.0), IDENTITY, pattern, COLORS)
    return S.Scene(seed=0, dynamic=False, primitives=(prim,))


def erode(alpha):
    """Pixels whose 3×3 neighbourhood is fully covered. (..., H, W) -> bool"""
    shape = alpha.shape
    x = alpha.reshape(-1, 1, *shape[-2:])
    return (-torch.nn.functional.max_pool2d(-x, 3, 1, 1) >= 1.0).reshape(shape)


# --- scenes -----------------------------------------------------------------------------------------------------


def test_scenes_are_deterministic_and_seeds_differ():
    assert S.make_scene(5) == S.make_scene(5)
    assert S.make_scene(5) != S.make_scene(6)
    a = S.render_orbit(S.make_scene(5), [0.0, 120.0], 10.0, size=24, num_frames=2)
    b = S.render_orbit(S.make_scene(5), [0.0, 120.0], 10.0, size=24, num_frames=2)
    c = S.render_orbit(S.make_scene(6), [0.0, 120.0], 10.0, size=24, num_frames=2)
    for name in ("rgb", "alpha", "depth"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert (a.rgb - c.rgb).abs().mean() > 0.01


def test_patterned_scenes_have_one_to_four_multicoloured_primitives_and_fit_inside_the_unit_sphere():
    kinds, counts = set(), set()
    for seed in range(30):
        scene = S.make_scene(seed)  # the default world
        assert scene == S.make_scene(seed, world="patterned")
        counts.add(len(scene.primitives))
        assert all(len(p.colors) >= 2 and p.pattern in S.PATTERNS[p.kind] for p in scene.primitives)
        assert 0.9 < scene.bounding_radius() <= 0.95 + 1e-5
        kinds.update(p.kind for p in scene.primitives)
    assert kinds == set(S.KINDS) and counts == {1, 2, 3, 4}


def test_simple_scenes_have_one_to_three_solid_or_banded_primitives():
    kinds, counts, patterns = set(), set(), set()
    for seed in range(40):
        scene = S.make_scene(seed, world="simple")
        counts.add(len(scene.primitives))
        for p in scene.primitives:
            assert (p.pattern, len(p.colors) == 1) in {("solid", True), ("bands", False)}
            assert p.pattern == "solid" or p.frequency == len(p.colors) in (2, 3)
        assert 0.9 < scene.bounding_radius() <= 0.95 + 1e-5
        kinds.update(p.kind for p in scene.primitives)
        patterns.update(p.pattern for p in scene.primitives)
    assert kinds == set(S.KINDS) and counts == {1, 2, 3} and patterns == {"solid", "bands"}
    assert S.DEFAULT_WORLD == "patterned" and S.make_scene(3, world="simple") != S.make_scene(3)


def test_bands_depend_only_on_the_height_along_the_axis_and_use_every_colour_in_order():
    palette = S.PALETTE[:3]
    cylinder = S.Primitive("cylinder", (0.3, 0.4), (0.0,) * 3, IDENTITY, "bands", palette, frequency=3)
    z = torch.linspace(-0.99, 0.99, 7) * cylinder.bound
    for angle in torch.linspace(0, 2 * math.pi, 5):  # around the axis: the same colours at every angle
        p = torch.stack([0.3 * torch.cos(angle).expand(7), 0.3 * torch.sin(angle).expand(7), z], dim=-1)
        colour = S._pattern_color(cylinder, p, torch.zeros_like(p))
        expected = torch.tensor([palette[i] for i in (0, 0, 1, 1, 1, 2, 2)])
        torch.testing.assert_close(colour, expected)
    solid = replace(cylinder, pattern="solid", colors=palette[:1])
    colour = S._pattern_color(solid, torch.randn(20, 3) * 0.3, torch.zeros(20, 3))
    assert torch.equal(colour, torch.tensor(palette[:1]).expand(20, 3))


def test_a_simple_object_looks_alike_from_opposite_sides():
    # bands around a vertical axis: front and back show the same colours (what makes the back predictable)
    cylinder = S.Primitive("cylinder", (0.3, 0.4), (0.0,) * 3, IDENTITY, "bands", S.PALETTE[:2], frequency=2)
    out = S.render_orbit(S.Scene(0, False, (cylinder,)), [0.0, 180.0], 0.0, size=24, num_frames=1)
    front, back = (out.rgb[0, v][:, out.alpha[0, v, 0] > 0].mean(-1) for v in (0, 1))
    assert (front - back).abs().max() < 0.05


def test_dynamic_scenes_move_and_static_scenes_do_not():
    for seed in range(4):
        moving = S.render_orbit(S.make_scene(seed), [0.0, 90.0], 10.0, size=24, num_frames=5)
        change = (moving.rgb[1:] - moving.rgb[:1]).abs().mean(dim=(1, 2, 3, 4))  # (F - 1,) vs the first frame
        assert change.max() > 0.01, (seed, change)
        still = S.render_orbit(S.make_scene(seed, dynamic=False), [0.0, 90.0], 10.0, size=24, num_frames=3)
        assert torch.equal(still.rgb[0], still.rgb[-1]) and torch.equal(still.depth[0], still.depth[-1])
        assert not S.make_scene(seed, dynamic=False).dynamic


def test_seed_helpers():
    assert S.training_seeds(3, start=5) == [5, 6, 7]
    assert S.heldout_seeds(2) == [S.HELDOUT_SEED_START, S.HELDOUT_SEED_START + 1]
    assert max(S.training_seeds(10, start=S.HELDOUT_SEED_START - 10)) < S.HELDOUT_SEED_START
    with pytest.raises(KitInputError, match="start"):
        S.training_seeds(5, start=S.HELDOUT_SEED_START - 2)
    with pytest.raises(KitInputError, match="start"):
        S.heldout_seeds(5, start=10)


# --- images -----------------------------------------------------------------------------------------------------


def test_render_output_shapes_ranges_and_white_background():
    out = S.render_orbit(S.make_scene(3), [0.0, 72.0, 144.0], [0.0, 20.0, -10.0], size=32, num_frames=4)
    assert out.rgb.shape == (4, 3, 3, 32, 32) and out.alpha.shape == out.depth.shape == (4, 3, 1, 32, 32)
    assert out.extrinsics.shape == (3, 4, 4) and out.intrinsics.shape == (3, 3, 3) and out.times.shape == (4,)
    assert out.rgb.min() >= 0 and out.rgb.max() <= 1 and out.alpha.min() >= 0 and out.alpha.max() <= 1
    empty = (out.alpha == 0).expand_as(out.rgb)
    assert empty.any() and (out.rgb[empty] == 1.0).all()
    assert ((out.alpha > 0) & (out.alpha < 1)).any()  # anti-aliased edges
    rgba = out.rgba()
    torch.testing.assert_close(rgba[:, :, :3] * out.alpha + 1 - out.alpha, out.rgb, atol=1e-5, rtol=0)


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 5])
def test_object_is_visible_and_inside_the_frame_in_every_default_orbit_view(seed):
    out = S.render_orbit(
        S.make_scene(seed), C.orbit_azimuths(8), [0, 10, 30, 60, -20, 89, -89, 0], size=24, num_frames=3
    )
    coverage = out.alpha.mean(dim=(2, 3, 4))  # (F, N)
    assert (coverage > 0.03).all(), coverage
    border = torch.cat(
        [out.alpha[..., 0, :], out.alpha[..., -1, :], out.alpha[..., 0], out.alpha[..., -1]], -1
    )
    assert border.max() == 0  # the whole object stays in frame


def test_depth_is_positive_exactly_where_the_pixel_centre_ray_hits():
    out = S.render_orbit(S.make_scene(2), [0.0, 200.0], 15.0, size=32, num_frames=2, supersample=1)
    assert set(out.alpha.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out.depth > 0, out.alpha == 1)
    out = S.render_orbit(S.make_scene(2), [0.0, 200.0], 15.0, size=32, num_frames=2, supersample=2)
    assert (out.alpha[out.depth > 0] > 0).all() and (out.depth >= 0).all()
    assert (out.depth[out.depth > 0] > S.DEFAULT_RADIUS - 1).all() and (
        out.depth < S.DEFAULT_RADIUS + 1
    ).all()


@pytest.mark.parametrize(
    ("kind", "size", "expected"),
    [
        ("sphere", (0.5,), 2.0),
        ("box", (0.3, 0.4, 0.5), 2.2),
        ("cylinder", (0.4, 0.5), 2.1),
        ("cone", (0.4, 0.5), 2.3),  # radius 0.2 at mid-height
        ("torus", (0.5, 0.15), 1.85),
    ],
)
def test_depth_of_each_primitive_matches_the_analytic_value(kind, size, expected):
    # Camera on +x at distance 2.5 looking at the origin; the centre pixel of an odd-sized image is the axis.
    out = S.render(
        single(kind, size), C.orbit_extrinsics(0.0, 0.0, 2.5), C.intrinsics(40.0, 33), 33, 33, [0.0]
    )
    assert abs(float(out.depth[0, 0, 0, 16, 16]) - expected) < 2e-4


def test_depth_map_of_a_sphere_matches_ray_casting_in_float64():
    # An off-centre sphere seen from an oblique camera: depth is camera z (not ray length) at every pixel centre.
    prim = S.Primitive("sphere", (0.4,), (0.2, -0.1, 0.15), IDENTITY, "sectors", COLORS)
    scene = S.Scene(seed=0, dynamic=False, primitives=(prim,))
    E, K = C.orbit_extrinsics(40.0, 25.0, 2.5), C.intrinsics(45.0, 40)
    out = S.render(scene, E, K, 40, 40, [0.3], supersample=1)
    origin = C.camera_centers(E).double()
    R, t = E[:3, :3].double(), E[:3, 3].double()
    pix = C.pixel_centers(40, 40).double()
    d = (
        torch.cat([pix, torch.ones(len(pix), 1, dtype=torch.float64)], -1)
        @ torch.linalg.inv(K.double()).T
        @ R
    )
    d = d / d.norm(dim=-1, keepdim=True)  # world directions
    oc = origin - torch.tensor(prim.position, dtype=torch.float64)
    b = d @ oc
    disc = b * b - (oc @ oc - 0.4**2)
    ray_t = -b - disc.clamp_min(0).sqrt()
    z = ((origin + ray_t[:, None] * d) @ R.T + t)[:, 2]
    expected = torch.where(disc > 0, z, torch.zeros_like(z)).reshape(40, 40).float()
    hit, expected_hit = out.depth[0, 0, 0] > 0, expected > 0
    assert (hit != expected_hit).sum() <= 2  # only grazing pixels may differ
    both = hit & expected_hit
    torch.testing.assert_close(out.depth[0, 0, 0][both], expected[both], atol=1e-4, rtol=0)


def test_torus_hole_and_sphere_silhouette():
    top = S.render(
        single("torus", (0.5, 0.15)), C.orbit_extrinsics(0.0, 90.0, 2.5), C.intrinsics(40.0, 33), 33, 33, [0]
    )
    assert top.depth[0, 0, 0, 16, 16] == 0 and top.alpha[0, 0, 0, 16, 16] == 0  # looking down the hole
    assert top.alpha[0, 0, 0, 16, 16 + 9] == 1  # the ring itself (radius 0.5 -> 9 px)
    K = C.intrinsics(40.0, 64)
    out = S.render(
        single("sphere", (0.5,)), C.orbit_extrinsics(30.0, 20.0, 2.5), K, 64, 64, [0.0], supersample=4
    )
    radius_px = float(K[0, 0]) * math.tan(math.asin(0.5 / 2.5))
    assert abs(float(out.alpha.sum()) - math.pi * radius_px**2) < 0.02 * math.pi * radius_px**2


def test_patterns_show_rotation_and_the_back_side():
    # A box with differently coloured faces looks different from opposite sides; a spinning sphere changes.
    box = S.Scene(0, False, (S.Primitive("box", (0.4,) * 3, (0.0,) * 3, IDENTITY, "faces", S.PALETTE[:6]),))
    out = S.render_orbit(box, [0.0, 180.0], 0.0, size=24, num_frames=1, supersample=1)
    front, back = (out.rgb[0, v][:, out.alpha[0, v, 0] > 0].mean(-1) for v in (0, 1))  # mean object colour
    assert (front - back).abs().max() > 0.1
    spin = S.Motion("spin", math.pi / 2)
    ball = S.Scene(
        0, True, (S.Primitive("sphere", (0.6,), (0.0,) * 3, IDENTITY, "sectors", COLORS, 4, (spin,)),)
    )
    out = S.render_orbit(ball, [0.0], 0.0, size=24, num_frames=2)
    assert (out.rgb[0] - out.rgb[1]).abs().mean() > 0.05


# --- multi-view consistency -------------------------------------------------------------------------------------


def correspondences(out, f, i, j):
    """Unproject view i's interior pixels at time f and project them into view j; keep the ones view j sees."""
    E, K = out.extrinsics, out.intrinsics
    H, W = out.depth.shape[-2:]
    inner = erode(out.alpha[f, i, 0]) & (out.depth[f, i, 0] > 0)
    points = C.unproject_depth(out.depth[f, i], E[i], K[i])[0][inner]  # (M, 3)
    uv_j, z_j = C.project_points(points, E[j], K[j])
    col, row = uv_j.floor().long().unbind(-1)
    in_frame = (col >= 1) & (col < W - 1) & (row >= 1) & (row < H - 1)
    col, row = col.clamp(1, W - 2), row.clamp(1, H - 2)
    visible = in_frame & ((out.depth[f, j, 0, row, col] - z_j).abs() < 0.03)
    uv_i = C.pixel_centers(H, W)[inner.reshape(-1)]
    return inner, uv_i[visible], uv_j[visible], row[visible], col[visible], visible


def colour_agreement(out, f, i, j, mirror_j=False):
    """Fraction of corresponding points whose colour in view j (best of its 3×3 neighbourhood) matches view i.

    `mirror_j` flips view j's images left-right: what a wrong sign of the camera x axis would do.
    """
    if mirror_j:
        flip = torch.ones(out.rgb.shape[1], 1, 1, 1, dtype=torch.bool)
        flip[j] = True
        rgb, alpha, depth = (torch.where(flip, x.flip(-1), x) for x in (out.rgb, out.alpha, out.depth))
        out = S.RenderOutput(rgb, alpha, depth, out.extrinsics, out.intrinsics, out.times)
    inner, _, _, row, col, visible = correspondences(out, f, i, j)
    colour_i = out.rgb[f, i][:, inner].T[visible]  # (M, 3)
    offsets = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)]
    colour_j = torch.stack([out.rgb[f, j][:, row + dr, col + dc].T for dr, dc in offsets])  # (9, M, 3)
    err = (colour_j - colour_i).abs().max(-1).values.min(0).values
    return float((err < 0.05).float().mean()), int(visible.sum())


@pytest.mark.parametrize("seed", [0, 4, 9])
def test_unprojected_points_have_the_same_colour_in_another_view(seed):
    out = S.render_orbit(S.make_scene(seed), [10.0, 55.0], [10.0, 30.0], size=64, num_frames=2, supersample=1)
    for f in (0, 1):
        agreement, n = colour_agreement(out, f, 0, 1)
        assert n > 100 and agreement > 0.95, (f, agreement, n)
    # Negative control: a mirrored view j (a flipped camera x axis) breaks the agreement.
    agreement, n = colour_agreement(out, 1, 0, 1, mirror_j=True)
    assert n < 20 or agreement < 0.8, (agreement, n)


def test_correspondences_satisfy_the_epipolar_constraint():
    out = S.render_orbit(S.make_scene(1), [0.0, 60.0], [5.0, 25.0], size=64, num_frames=2)
    E, K = out.extrinsics, out.intrinsics
    F = C.fundamental_matrix(K[0], E[0], K[1], E[1])
    _, uv_i, uv_j, row, col, _ = correspondences(out, 1, 0, 1)
    assert len(uv_i) > 50
    x_i = torch.cat([uv_i, torch.ones(len(uv_i), 1)], -1)
    x_j = torch.cat([uv_j, torch.ones(len(uv_j), 1)], -1)
    algebraic = (x_j * (x_i @ F.T)).sum(-1).abs() / (x_i @ F.T)[:, :2].norm(dim=-1)  # = distance in pixels
    assert algebraic.max() < 0.05
    mask = C.epipolar_mask(F, 64, 64, uv_i, k_px=1.0)  # the pixel containing x_j is inside its band
    assert mask[torch.arange(len(uv_i)), row, col].all()


# --- bad input --------------------------------------------------------------------------------------------------

SCENE = S.make_scene(0)
E1, K1 = C.orbit_extrinsics([0.0], [0.0], 2.5), C.intrinsics(45.0, 16)


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: S.render(SCENE, E1 * float("nan"), K1, 16, 16, [0.0]), "extrinsics"),
        (lambda: S.render(SCENE, torch.eye(3)[None], K1, 16, 16, [0.0]), "extrinsics"),
        (lambda: S.render(SCENE, E1, torch.eye(4), 16, 16, [0.0]), "K"),
        (lambda: S.render(SCENE, E1, K1.expand(2, 3, 3), 16, 16, [0.0]), "K"),
        (lambda: S.render(SCENE, E1, K1, 4, 16, [0.0]), "height"),
        (lambda: S.render(SCENE, E1, K1, 16, 7, [0.0]), "width"),
        (lambda: S.render(SCENE, E1, K1, 16, 16, [0.0, 1.5]), "times"),
        (lambda: S.render(SCENE, E1, K1, 16, 16, [float("nan")]), "times"),
        (lambda: S.render(SCENE, E1, K1, 16, 16, []), "times"),
        (lambda: S.render(SCENE, E1, K1, 16, 16, [0.0], supersample=0), "supersample"),
        (lambda: S.render_orbit(SCENE, [0.0], 0.0, radius=0.0), "radius"),
        (lambda: S.render_orbit(SCENE, [0.0], 0.0, radius=-2.0), "radius"),
        (lambda: S.render_orbit(SCENE, [0.0], 91.0), "elevations_deg"),
        (lambda: S.render_orbit(SCENE, [float("nan")], 0.0), "azimuths_deg"),
        (lambda: S.render_orbit(SCENE, [0.0, 90.0], [0.0, 10.0, 20.0]), "elevations_deg"),
        (lambda: S.render_orbit(SCENE, [0.0], 0.0, size=4), "size"),
        (lambda: S.render_orbit(SCENE, [0.0], 0.0, fov_deg=0.0), "fov_deg"),
        (lambda: S.render_orbit(SCENE, [0.0], 0.0, num_frames=0), "num_frames"),
        (lambda: S.make_scene(-1), "seed"),
        (lambda: S.make_scene(1.5), "seed"),
        (lambda: S.make_scene(1, world="toys"), "world"),
    ],
)
def test_bad_input_raises_value_error_naming_the_parameter(call, name):
    with pytest.raises(KitInputError, match=name):
        call()


def test_write_sample_data(tmp_path):
    import imageio.v2 as imageio

    paths = S.write_sample_data(tmp_path, seed=3, size=32, num_frames=3, supersample=1)
    assert [p.name for p in paths] == [
        "object.png",
        "object_rgba.png",
        "moving_object.gif",
        "moving_object.mp4",
    ]
    assert imageio.imread(paths[0]).shape == (32, 32, 3)
    rgba = imageio.imread(paths[1])
    assert rgba.shape == (32, 32, 4) and rgba[..., 3].min() == 0 and rgba[..., 3].max() == 255
    assert len(imageio.mimread(paths[2])) == 3
    assert len(imageio.mimread(paths[3])) == 3
