"""Camera geometry: orbit conventions, SV4D 2.0 angles (golden), trajectories, Plücker rays, epipolar geometry."""

import json
import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from sv4d_kit import cameras as C
from sv4d_kit.checks import KitInputError

# The cameras of the public golden set (reference README, "Tiny configuration"): view 0 is the input view.
GOLDEN_ELEVATIONS = [5.0, 10.0, -8.0, 0.0]
GOLDEN_AZIMUTHS = [0.0, 100.0, 230.0, 300.0]


def two_cameras(size=32):
    E = C.orbit_extrinsics(torch.tensor([20.0, 75.0]), torch.tensor([10.0, 30.0]), 2.5)
    return E, C.intrinsics(45.0, size)


# --- conventions ------------------------------------------------------------------------------------------------


def test_orbit_eye_follows_the_stated_convention():
    eye = C.orbit_eye(torch.tensor([0.0, 90.0, 33.0]), torch.tensor([0.0, 0.0, 90.0]), 2.0)
    torch.testing.assert_close(eye[0], torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(eye[1], torch.tensor([0.0, 2.0, 0.0], dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(eye[2], torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64), atol=1e-12, rtol=0)


def test_look_at_is_a_rigid_opencv_camera_with_z_up():
    E = C.orbit_extrinsics(torch.tensor([0.0, 45.0, 200.0, 0.0]), torch.tensor([0.0, 30.0, -60.0, 90.0]), 2.5)
    R = E[:, :3, :3]
    torch.testing.assert_close(R @ R.transpose(1, 2), torch.eye(3).expand(4, 3, 3), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(R), torch.ones(4), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        C.camera_centers(E).double(), C.orbit_eye([0, 45, 200, 0], [0, 30, -60, 90], 2.5)
    )
    K = C.intrinsics(40.0, 64, 96)
    uv, z = C.project_points(torch.zeros(4, 1, 3), E, K)  # the origin lands on the principal point
    torch.testing.assert_close(uv[:, 0], torch.tensor([48.0, 32.0]).expand(4, 2), atol=1e-4, rtol=0)
    torch.testing.assert_close(z[:, 0], torch.full((4,), 2.5), atol=1e-5, rtol=0)
    # World +z (up) appears towards the top of the image (smaller v) for the non-vertical cameras.
    uv_up, _ = C.project_points(torch.tensor([[0.0, 0.0, 0.3]]).expand(4, 1, 3), E, K)
    assert (uv_up[:3, 0, 1] < 32.0).all()
    # The camera at azimuth 0 sits on +x looking towards -x with +z up, so +y is on the image's right.
    uv_y, _ = C.project_points(torch.tensor([[0.0, 0.3, 0.0]]), E[0], K)
    assert uv_y[0, 0] > 48.0


def test_intrinsics_and_pixel_centres():
    K = C.intrinsics(60.0, 48, 64)
    f = 24 / math.tan(math.radians(30))
    torch.testing.assert_close(K, torch.tensor([[f, 0, 32.0], [0, f, 24.0], [0, 0, 1.0]]))
    centres = C.pixel_centers(2, 3)
    torch.testing.assert_close(
        centres, torch.tensor([[0.5, 0.5], [1.5, 0.5], [2.5, 0.5], [0.5, 1.5], [1.5, 1.5], [2.5, 1.5]])
    )


def test_project_unproject_round_trip_and_inverse():
    E, K = two_cameras(16)
    depth = 2.0 + torch.rand(2, 1, 16, 16)
    points = C.unproject_depth(depth, E, K)  # (2, 16, 16, 3)
    uv, z = C.project_points(points.reshape(2, -1, 3), E, K)
    torch.testing.assert_close(z, depth.reshape(2, -1), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(uv, C.pixel_centers(16, 16).expand(2, -1, -1), atol=1e-3, rtol=0)
    torch.testing.assert_close(C.invert_extrinsics(E) @ E, torch.eye(4).expand(2, 4, 4), atol=1e-6, rtol=0)


# --- SV4D 2.0 angles --------------------------------------------------------------------------------------------


def test_sv4d_relative_angles_reproduce_the_golden_runs(reference_dir):
    meta = json.loads((reference_dir / "golden_sampling.json").read_text())
    T, V = meta["T"], meta["V"]
    assert len(GOLDEN_AZIMUTHS) == V + 1
    polar, azimuth = C.sv4d_relative_angles(GOLDEN_ELEVATIONS, GOLDEN_AZIMUTHS, T)
    assert polar.shape == azimuth.shape == (T * V,) and polar.dtype == torch.float64
    for name, run in meta["runs"].items():
        expected_polar = torch.tensor(run["polar_rad_(t v)"], dtype=torch.float64)
        expected_azimuth = torch.tensor(run["azimuth_rad_(t v)"], dtype=torch.float64)
        torch.testing.assert_close(polar, expected_polar, atol=1e-6, rtol=0, msg=f"{name} polar")
        torch.testing.assert_close(azimuth, expected_azimuth, atol=1e-6, rtol=0, msg=f"{name} azimuth")


def test_sv4d_relative_angles_match_the_conditioner_batch(reference_dir):
    tensors = load_file(str(reference_dir / "golden_conditioner_tiny.safetensors"))
    T = json.loads((reference_dir / "golden_sampling.json").read_text())["T"]
    polar, azimuth = C.sv4d_relative_angles(GOLDEN_ELEVATIONS, GOLDEN_AZIMUTHS, T)
    torch.testing.assert_close(polar.float(), tensors["batch.polar_rad"].reshape(-1), atol=1e-6, rtol=0)
    torch.testing.assert_close(azimuth.float(), tensors["batch.azimuth_rad"].reshape(-1), atol=1e-6, rtol=0)


def test_sv4d_angles_meaning():
    # Same elevation as the input view -> polar π/2; azimuths are measured from the input view, (t v) order.
    polar, azimuth = C.sv4d_relative_angles(20.0, [40.0, 100.0, 10.0], T=2)
    torch.testing.assert_close(polar, torch.full((4,), math.pi / 2, dtype=torch.float64))
    expected = torch.deg2rad(torch.tensor([60.0, 330.0, 60.0, 330.0], dtype=torch.float64))
    torch.testing.assert_close(azimuth, expected)
    polar, _ = C.sv4d_relative_angles([0.0, 30.0], [0.0, 90.0], T=1)  # a view 30° higher: polar 60°
    torch.testing.assert_close(polar, torch.tensor([math.radians(60)], dtype=torch.float64))
    assert float(C.sv4d_polar_deg(30.0)) == 60.0
    # The script wraps into [0, 2π): a novel view far above a low input view gets 90° − 140° -> 310°.
    polar, _ = C.sv4d_relative_angles([-60.0, 80.0], [0.0, 90.0], T=1)
    torch.testing.assert_close(polar, torch.tensor([math.radians(310)], dtype=torch.float64))


@pytest.mark.parametrize("variant", ["sv4d2", "sv4d2_8views"])
def test_default_azimuths_match_hparams(reference_dir, variant):
    hp = json.loads((reference_dir / "sv4d2_hparams.json").read_text())["variants"][variant]["script"]
    azimuths = C.default_azimuths(variant)
    assert len(azimuths) == hp["V_novel_views_per_chunk"] == {"sv4d2": 4, "sv4d2_8views": 8}[variant]
    assert azimuths == hp["default_relative_azimuth_deg_per_view"]
    assert C.default_azimuths(variant, include_input_view=True) == [
        float(a) for a in hp["default_azimuths_deg"]
    ]
    # Through the script's formula, the default views give the recorded default relative radians.
    elevations, absolute = C.default_views(variant, elevation_deg=hp["elevations_deg_default"])
    polar, azimuth = C.sv4d_relative_angles(elevations, absolute, T=1)
    torch.testing.assert_close(
        polar, torch.tensor(hp["default_relative_polar_rad_per_view"], dtype=torch.float64)
    )
    torch.testing.assert_close(
        azimuth, torch.tensor(hp["default_relative_azimuth_rad_per_view"], dtype=torch.float64)
    )


def test_default_views_rotate_with_the_input_view():
    elevations, azimuths = C.default_views("sv4d2", elevation_deg=15.0, input_azimuth_deg=330.0)
    torch.testing.assert_close(azimuths, torch.tensor([330.0, 30.0, 90.0, 150.0, 210.0], dtype=torch.float64))
    assert (elevations == 15.0).all()
    _, rel = C.sv4d_relative_angles(elevations, azimuths, T=1)
    torch.testing.assert_close(
        rel, torch.deg2rad(torch.tensor([60.0, 120.0, 180.0, 240.0], dtype=torch.float64))
    )


# --- trajectories -----------------------------------------------------------------------------------------------


def test_orbit_and_spiral_trajectories():
    torch.testing.assert_close(
        C.orbit_azimuths(4), torch.tensor([0.0, 90.0, 180.0, 270.0], dtype=torch.float64)
    )
    torch.testing.assert_close(
        C.orbit_azimuths(3, start=300), torch.tensor([300.0, 60.0, 180.0], dtype=torch.float64)
    )
    azimuths, elevations = C.spiral_angles(8, elevation_range=(-10.0, 40.0), turns=2.0)
    assert azimuths.shape == elevations.shape == (8,)
    assert elevations[0] == -10.0 and elevations[-1] == 40.0 and (elevations.diff() > 0).all()
    torch.testing.assert_close(azimuths[:4], torch.tensor([0.0, 90.0, 180.0, 270.0], dtype=torch.float64))
    a, e = C.camera_trajectory([10, 20, 30], 5.0)
    assert a.tolist() == [10.0, 20.0, 30.0] and e.tolist() == [5.0, 5.0, 5.0]
    assert C.orbit_extrinsics(a, e, 2.0).shape == (3, 4, 4)


# --- Plücker rays -----------------------------------------------------------------------------------------------


def test_plucker_rays_are_valid_plucker_coordinates():
    E, K = two_cameras(9)
    rays = C.plucker_rays(E, K, 9, 9)
    assert rays.shape == (2, 6, 9, 9)
    moment, direction = rays[:, :3], rays[:, 3:]
    torch.testing.assert_close(direction.norm(dim=1), torch.ones(2, 9, 9), atol=1e-6, rtol=0)
    assert (moment * direction).sum(1).abs().max() < 1e-5  # moment ⟂ direction
    # The moment is the same for every point on the ray: p × d with p unprojected at an arbitrary depth.
    points = C.unproject_depth(1.0 + 3.0 * torch.rand(2, 9, 9), E, K).permute(0, 3, 1, 2)  # (2, 3, 9, 9)
    torch.testing.assert_close(torch.linalg.cross(points, direction, dim=1), moment, atol=2e-5, rtol=0)
    # ... including the camera centre, and the centre pixel's ray is the optical axis (principal point direction).
    centres = C.camera_centers(E)[:, :, None, None].expand_as(direction)
    torch.testing.assert_close(torch.linalg.cross(centres, direction, dim=1), moment, atol=1e-5, rtol=0)
    torch.testing.assert_close(direction[:, :, 4, 4], E[:, 2, :3], atol=1e-6, rtol=0)


def test_plucker_rays_differ_between_cameras():
    E, K = two_cameras(8)
    rays = C.plucker_rays(E, K, 8, 8)
    assert (rays[0] - rays[1]).abs().max() > 0.1


# --- epipolar geometry ------------------------------------------------------------------------------------------


def random_correspondences(E, K, n=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    points = (torch.rand(n, 3, generator=g) - 0.5) * 1.2  # inside the object's region
    uv_i, _ = C.project_points(points, E[0], K)
    uv_j, _ = C.project_points(points, E[1], K)
    return uv_i, uv_j


def test_fundamental_matrix_satisfies_the_epipolar_constraint():
    E, K = two_cameras(64)
    F = C.fundamental_matrix(K, E[0], K, E[1])
    uv_i, uv_j = random_correspondences(E, K)
    x_j = torch.cat([uv_j, torch.ones(len(uv_j), 1)], -1)
    lines = C.epipolar_lines(F, uv_i)
    assert (x_j * lines).sum(-1).abs().max() < 1e-2  # distance in pixels of x_j from x_i's line
    # F_ji = F_ijᵀ up to sign, and a wrong pose breaks the constraint.
    F_ji = C.fundamental_matrix(K, E[1], K, E[0])
    assert min((F_ji - F.T).abs().max(), (F_ji + F.T).abs().max()) < 1e-5
    F_bad = C.fundamental_matrix(K, E[0], K, C.orbit_extrinsics(80.0, 30.0, 2.5))
    assert (x_j * C.epipolar_lines(F_bad, uv_i)).sum(-1).abs().max() > 1.0
    # Batches broadcast.
    assert C.fundamental_matrix(K, E, K, E.flip(0)).shape == (2, 3, 3)


def test_epipolar_lines_are_normalised_and_pass_through_the_epipole():
    E, K = two_cameras(64)
    F = C.fundamental_matrix(K, E[0], K, E[1])
    lines = C.epipolar_lines(F, C.pixel_centers(8, 8) * 8)
    torch.testing.assert_close(lines[:, :2].norm(dim=-1), torch.ones(64))
    epipole, _ = C.project_points(C.camera_centers(E[:1]), E[1], K)  # camera i's centre seen from j
    assert (lines @ torch.cat([epipole[0], torch.ones(1)])).abs().max() < 1e-2


def test_epipolar_mask_contains_the_correspondences():
    E, K = two_cameras(32)
    F = C.fundamental_matrix(K, E[0], K, E[1])
    uv_i, uv_j = random_correspondences(E, K, n=50)
    inside = ((uv_j >= 0) & (uv_j < 32)).all(-1)
    mask = C.epipolar_mask(F, 32, 32, uv_i, k_px=1.0)  # (50, 32, 32)
    assert mask.shape == (50, 32, 32) and mask.dtype == torch.bool
    col, row = uv_j.floor().long().clamp(0, 31).unbind(-1)
    assert mask[torch.arange(50), row, col][inside].all()
    assert mask.float().mean() < 0.1  # a thin band, not the whole image
    # A point's mask misses most other points' correspondences.
    assert mask[torch.arange(50), row.roll(7), col.roll(7)][inside].float().mean() < 0.3
    # Every pixel at once: (H*W, H, W), row-major query order.
    full = C.epipolar_mask(F, 32, 32, k_px=1.0)
    assert full.shape == (32 * 32, 32, 32)
    q = 5 * 32 + 17  # pixel (u=17, v=5)
    torch.testing.assert_close(full[q], C.epipolar_mask(F, 32, 32, torch.tensor([[17.5, 5.5]]), k_px=1.0)[0])


# --- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: C.orbit_eye(0.0, 95.0, 2.0), "elevation_deg"),
        (lambda: C.orbit_eye(0.0, -90.5, 2.0), "elevation_deg"),
        (lambda: C.orbit_eye(float("nan"), 0.0, 2.0), "azimuth_deg"),
        (lambda: C.orbit_eye(0.0, 0.0, 0.0), "radius"),
        (lambda: C.orbit_extrinsics([0.0, 1.0, 2.0], [0.0, 1.0], 2.0), "elevation_deg"),
        (lambda: C.intrinsics(0.0, 64), "fov_deg"),
        (lambda: C.intrinsics(180.0, 64), "fov_deg"),
        (lambda: C.intrinsics(40.0, 4), "height"),
        (lambda: C.intrinsics(40.0, 64, 7.5), "width"),
        (lambda: C.orbit_azimuths(0), "n"),
        (lambda: C.orbit_azimuths(4, start=float("inf")), "start"),
        (lambda: C.spiral_angles(1), "n"),
        (lambda: C.spiral_angles(5, elevation_range=(0.0, 100.0)), "elevation_range"),
        (lambda: C.camera_trajectory([0.0, 90.0], [0.0, 10.0, 20.0]), "elevations_deg"),
        (lambda: C.camera_trajectory([], 0.0), "azimuths_deg"),
        (lambda: C.sv4d_relative_angles([0.0, 0.0], [0.0, 90.0], 0), "T"),
        (lambda: C.sv4d_relative_angles(0.0, [0.0], 2), "azimuths_deg"),
        (lambda: C.sv4d_relative_angles([0.0, 0.0, 0.0], [0.0, 90.0], 2), "elevations_deg"),
        (lambda: C.default_azimuths("sv3d"), "variant"),
        (lambda: C.plucker_rays(torch.eye(4), C.intrinsics(40.0, 8), 8, 8), "extrinsics"),
        (lambda: C.fundamental_matrix(torch.eye(2), torch.eye(4), torch.eye(3), torch.eye(4)), "K_i"),
        (lambda: C.epipolar_mask(torch.eye(3), 8, 8, k_px=-1.0), "k_px"),
        (lambda: C.epipolar_lines(torch.eye(3), torch.zeros(4, 3)), "pixels"),
    ],
)
def test_bad_input_raises_value_error_naming_the_parameter(call, name):
    with pytest.raises(KitInputError, match=name):
        call()


# --- properties over random cameras (hypothesis) -----------------------------------------------------------------

azimuths = st.floats(0.0, 360.0, allow_nan=False)
elevations = st.floats(
    -85.0, 85.0, allow_nan=False
)  # away from the poles, where look-at's up vector degenerates
radii = st.floats(1.5, 10.0, allow_nan=False)
PROPERTY = settings(
    max_examples=40, deadline=None, derandomize=True
)  # derandomized: the same cases every run


@PROPERTY
@given(azimuths, elevations, radii)
def test_orbit_camera_round_trips(azimuth, elevation, radius):
    """The orbit camera sits where `orbit_eye` says, is rigid, looks at the origin, and inverts exactly."""
    E = C.orbit_extrinsics(torch.tensor([azimuth]), torch.tensor([elevation]), radius)
    torch.testing.assert_close(
        C.camera_centers(E).double(), C.orbit_eye([azimuth], [elevation], radius), atol=1e-4, rtol=1e-5
    )
    R = E[0, :3, :3]
    torch.testing.assert_close(R @ R.T, torch.eye(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(C.invert_extrinsics(E) @ E, torch.eye(4)[None], atol=1e-5, rtol=0)
    _, z = C.project_points(torch.zeros(1, 1, 3), E, C.intrinsics(40.0, 16))
    torch.testing.assert_close(z[0, 0], torch.tensor(radius, dtype=z.dtype), atol=1e-4, rtol=1e-5)


@PROPERTY
@given(azimuths, elevations, radii)
def test_unproject_then_project_returns_the_pixels_and_depths(azimuth, elevation, radius):
    E = C.orbit_extrinsics(torch.tensor([azimuth]), torch.tensor([elevation]), radius)
    K = C.intrinsics(45.0, 8)
    depth = torch.full((1, 1, 8, 8), radius) + torch.linspace(-0.5, 0.5, 64).reshape(1, 1, 8, 8)
    points = C.unproject_depth(depth, E, K)  # (1, 8, 8, 3)
    uv, z = C.project_points(points.reshape(1, -1, 3), E, K)
    torch.testing.assert_close(z, depth.reshape(1, -1), atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(uv, C.pixel_centers(8, 8)[None], atol=1e-3, rtol=0)


@PROPERTY
@given(st.lists(azimuths, min_size=2, max_size=9), elevations, st.floats(-720.0, 720.0, allow_nan=False))
def test_sv4d_angles_depend_only_on_azimuths_relative_to_the_input(views, elevation, turn):
    """Turning every camera by the same angle changes nothing the model sees; the relative azimuth of view v is
    (a_v - a_0) mod 360 and a view at the input's elevation has polar 90°."""
    polar, azimuth = C.sv4d_relative_angles(elevation, views, 2)
    polar_t, azimuth_t = C.sv4d_relative_angles(elevation, [a + turn for a in views], 2)
    circular = torch.remainder(azimuth_t - azimuth + math.pi, 2 * math.pi) - math.pi
    assert circular.abs().max() < 1e-9
    torch.testing.assert_close(polar_t, polar)
    expected = torch.tensor([(a - views[0]) % 360.0 for a in views[1:]], dtype=torch.float64).deg2rad()
    gap = torch.remainder(azimuth[: len(views) - 1] - expected + math.pi, 2 * math.pi) - math.pi
    assert gap.abs().max() < 1e-9
    torch.testing.assert_close(polar, torch.full_like(polar, math.pi / 2))


@PROPERTY
@given(azimuths, elevations, azimuths, elevations)
def test_correspondences_lie_on_their_epipolar_lines(a_i, e_i, a_j, e_j):
    assume(abs((a_i - a_j + 180) % 360 - 180) > 5 or abs(e_i - e_j) > 5)  # two distinct cameras
    E = C.orbit_extrinsics(torch.tensor([a_i, a_j]), torch.tensor([e_i, e_j]), 2.5)
    K = C.intrinsics(45.0, 64)
    uv_i, uv_j = random_correspondences(E, K, n=50)
    lines = C.epipolar_lines(C.fundamental_matrix(K, E[0], K, E[1]), uv_i)  # (50, 3), unit normals
    distance = (torch.cat([uv_j, torch.ones(50, 1)], -1) * lines).sum(-1).abs()
    assert distance.max() < 0.05  # pixels
