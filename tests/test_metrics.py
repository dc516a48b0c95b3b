"""Evaluation metrics against ground truth: analytic values, an independent SSIM, discs and rendered scenes."""

import math

import numpy as np
import pytest
import torch

from sv4d_kit import cameras as C
from sv4d_kit import metrics as M
from sv4d_kit import synthetic as S
from sv4d_kit.checks import KitInputError

AZIMUTHS = [0.0, 30.0, 60.0, 180.0]  # views 0-1-2 overlap a lot, view 3 looks from behind


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene():
    """Ground truth of a moving scene: 3 frames × 4 views at 64×64 (default supersampling)."""
    return S.render_orbit(S.make_scene(3), AZIMUTHS, 10.0, size=64, num_frames=3)


@pytest.fixture(scope="module")
def other():
    """Another scene seen by the same cameras."""
    return S.render_orbit(S.make_scene(7), AZIMUTHS, 10.0, size=64, num_frames=3)


def smooth_image(seed, shape=(3, 32, 32), dtype=torch.float64):
    """A smooth random image in [0.1, 0.9]: upsampled low-resolution noise."""
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, shape[0], shape[1] // 4, shape[2] // 4, generator=g, dtype=torch.float64)
    up = torch.nn.functional.interpolate(low, size=shape[1:], mode="bilinear", align_corners=False)
    return (0.1 + 0.8 * up[0]).to(dtype)


# --- PSNR -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_psnr_of_identical_images_is_the_documented_cap(dtype):
    x = torch.rand(2, 3, 3, 16, 16, dtype=dtype)
    p = M.psnr(x, x)
    assert p.shape == (2, 3) and p.dtype == dtype
    assert torch.equal(p, torch.full_like(p, M.MAX_PSNR_DB)) and M.MAX_PSNR_DB == 100.0


def test_psnr_of_a_known_mse():
    target = 0.8 * torch.rand(4, 3, 20, 24, dtype=torch.float64)
    assert torch.allclose(
        M.psnr(target + 0.1, target), torch.full((4,), 20.0, dtype=torch.float64), atol=1e-9
    )
    # MSE 0.01 / 2 when half of the pixels are off by 0.1 -> 10·log10(200)
    pred = target.clone()
    pred[..., :12] += 0.1
    assert torch.allclose(M.psnr(pred, target), torch.full((4,), 10 * math.log10(200), dtype=torch.float64))


def test_psnr_mask_restricts_the_error_to_the_masked_pixels():
    target = 0.5 * torch.rand(3, 16, 16, dtype=torch.float64)
    mask = torch.zeros(1, 16, 16, dtype=torch.bool)
    mask[:, 4:10, 2:14] = True
    outside = target + 0.3 * (~mask).double()  # error only outside the mask
    inside = target + 0.2 * mask.double()  # error 0.2 on every masked pixel
    assert M.psnr(outside, target, mask=mask) == 100.0
    assert M.psnr(outside, target) < 20
    assert M.psnr(inside, target, mask=mask).item() == pytest.approx(10 * math.log10(1 / 0.04), abs=1e-9)
    assert M.psnr(inside, target, mask=mask.double()).item() == pytest.approx(
        10 * math.log10(1 / 0.04), abs=1e-9
    )
    fraction = mask.double().mean().item()
    assert M.psnr(inside, target).item() == pytest.approx(10 * math.log10(1 / (0.04 * fraction)), abs=1e-9)
    assert torch.isnan(M.psnr(inside, target, mask=torch.zeros_like(mask)))


def test_psnr_rejects_bad_input():
    x = torch.rand(3, 8, 8)
    for pred, target, mask in [
        (x, x[:, :4], None),  # shapes differ
        ((x * 255).to(torch.uint8), x, None),  # not floats
        (x * 2, x, None),  # outside [0, 1]
        (x, x, torch.ones(1, 4, 4)),  # mask size
        (x, x, torch.ones(3, 8, 8)),  # mask has channels
    ]:
        with pytest.raises(KitInputError):
            M.psnr(pred, target, mask=mask)


# --- SSIM -------------------------------------------------------------------------------------------------------


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. (2004), written out: every 11×11 window inside the image, gaussian weights σ = 1.5, channels
    averaged. x, y (C, H, W) float64."""
    r = np.arange(11) - 5.0
    g = np.exp(-(r**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - 10):
            for j in range(x.shape[2] - 10):
                a, b = x[c, i : i + 11, j : j + 11], y[c, i : i + 11, j : j + 11]
                mu_a, mu_b = (w * a).sum(), (w * b).sum()
                var_a, var_b = (w * (a - mu_a) ** 2).sum(), (w * (b - mu_b) ** 2).sum()
                cov = (w * (a - mu_a) * (b - mu_b)).sum()
                values.append(
                    ((2 * mu_a * mu_b + c1) * (2 * cov + c2))
                    / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
                )
    return float(np.mean(values))


def test_ssim_of_identical_images_is_one():
    x = torch.rand(2, 3, 3, 24, 20, dtype=torch.float64)
    s = M.ssim(x, x)
    assert s.shape == (2, 3)
    assert torch.allclose(s, torch.ones_like(s), atol=1e-12)
    assert torch.allclose(M.ssim(x.float(), x.float()), torch.ones(2, 3), atol=1e-6)


def test_ssim_matches_an_independent_implementation():
    g = torch.Generator().manual_seed(0)
    for k in range(3):
        x = torch.rand(3, 17, 21, generator=g, dtype=torch.float64)
        y = (0.6 * x + 0.4 * torch.rand(3, 17, 21, generator=g, dtype=torch.float64)) ** (1 + k)
        expected = reference_ssim(x.numpy(), y.numpy())
        assert 0.05 < expected < 0.95
        assert M.ssim(x, y).item() == pytest.approx(expected, abs=1e-10)
        assert M.ssim(x.float(), y.float()).item() == pytest.approx(expected, abs=1e-5)


def test_ssim_of_flat_images_is_the_luminance_term():
    x, y = (
        torch.full((3, 16, 16), 0.5, dtype=torch.float64),
        torch.full((3, 16, 16), 0.7, dtype=torch.float64),
    )
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.7 + c1) / (0.5**2 + 0.7**2 + c1)
    assert M.ssim(x, y).item() == pytest.approx(expected, abs=1e-12)


def test_ssim_falls_with_noise_and_is_symmetric():
    x = smooth_image(1)
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(x.shape, generator=g, dtype=torch.float64)
    scores = [M.ssim((x + s * noise).clamp(0, 1), x).item() for s in (0.0, 0.01, 0.03, 0.1, 0.3)]
    assert scores[0] == pytest.approx(1.0) and all(a > b for a, b in zip(scores, scores[1:])), scores
    y = (x + 0.05 * noise).clamp(0, 1)
    assert M.ssim(x, y).item() == pytest.approx(M.ssim(y, x).item(), abs=1e-14)


def test_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(KitInputError):
        M.ssim(torch.rand(3, 10, 32), torch.rand(3, 10, 32))
    with pytest.raises(KitInputError):
        M.ssim(torch.rand(3, 16, 16), torch.rand(3, 16, 17))


# --- silhouettes --------------------------------------------------------------------------------------------------


def disc_image(center, radius, size=128, color=(0.8, 0.2, 0.3)):
    """A disc (pixel centres inside the circle) of a colour on white. -> (3, size, size)"""
    v, u = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    inside = (u - center[0]) ** 2 + (v - center[1]) ** 2 < radius**2
    image = torch.ones(3, size, size)
    image[:, inside] = torch.tensor(color)[:, None]
    return image


def lens_area(r1, r2, d):
    """Area of the intersection of two circles with radii r1, r2 whose centres are d apart."""
    if d >= r1 + r2:
        return 0.0
    if d <= abs(r1 - r2):
        return math.pi * min(r1, r2) ** 2
    a1 = r1**2 * math.acos((d * d + r1 * r1 - r2 * r2) / (2 * d * r1))
    a2 = r2**2 * math.acos((d * d + r2 * r2 - r1 * r1) / (2 * d * r2))
    return a1 + a2 - 0.5 * math.sqrt((-d + r1 + r2) * (d + r1 - r2) * (d - r1 + r2) * (d + r1 + r2))


def test_silhouette_of_a_disc_has_its_area():
    image = disc_image((60.0, 70.0), 30.0)
    mask = M.silhouette(image)
    assert mask.shape == (1, 128, 128) and mask.dtype == torch.bool
    assert mask.sum().item() == pytest.approx(math.pi * 30**2, rel=0.01)


def test_silhouette_threshold_separates_object_from_white():
    image = torch.ones(3, 1, 4)
    image[:, 0, 1] = 0.98  # off-white: background at the default threshold
    image[2, 0, 2] = 0.9  # one dark channel is enough
    image[:, 0, 3] = 0.0
    assert M.silhouette(image)[0, 0].tolist() == [False, False, True, True]
    assert M.silhouette(image, threshold=0.01)[0, 0].tolist() == [False, True, True, True]
    with pytest.raises(KitInputError):
        M.silhouette(image, threshold=1.5)


@pytest.mark.parametrize(
    "c1, r1, c2, r2",
    [
        ((60, 64), 30, (80, 64), 30),  # equal discs, overlapping
        ((50, 50), 25, (70, 75), 35),
        ((64, 64), 40, (70, 60), 15),  # one inside the other
        ((30, 30), 20, (95, 95), 20),  # disjoint
    ],
)
def test_silhouette_iou_of_discs_matches_the_analytic_value(c1, r1, c2, r2):
    d = math.dist(c1, c2)
    inter = lens_area(r1, r2, d)
    expected = inter / (math.pi * r1**2 + math.pi * r2**2 - inter)
    a, b = disc_image(c1, r1), disc_image(c2, r2, color=(0.1, 0.5, 0.9))
    assert M.silhouette_iou(a, b).item() == pytest.approx(expected, abs=0.01)
    # the same from masks, and symmetric
    assert M.silhouette_iou(M.silhouette(a), M.silhouette(b)).item() == M.silhouette_iou(b, a).item()


def test_silhouette_precision_recall_of_nested_discs():
    big, small = disc_image((64, 64), 40), disc_image((64, 64), 20, color=(0.1, 0.5, 0.9))
    precision, recall = M.silhouette_precision_recall(big, small)  # a halo around the truth
    assert recall.item() == 1.0 and precision.item() == pytest.approx(0.25, abs=0.01)
    precision, recall = M.silhouette_precision_recall(small, big)  # a part of the truth
    assert precision.item() == 1.0 and recall.item() == pytest.approx(0.25, abs=0.01)
    white = torch.ones(3, 128, 128)
    assert [x.item() for x in M.silhouette_precision_recall(white, big)] == [1.0, 0.0]
    assert [x.item() for x in M.silhouette_precision_recall(big, white)] == [0.0, 1.0]
    with pytest.raises(KitInputError):
        M.silhouette_precision_recall(torch.ones(2, 32, 32), big)


def test_silhouette_iou_edge_cases_and_batches():
    white, disc = torch.ones(3, 32, 32), disc_image((16, 16), 8, size=32)
    assert M.silhouette_iou(white, white).item() == 1.0  # both empty
    assert M.silhouette_iou(white, disc).item() == 0.0
    assert M.silhouette_iou(disc, disc).item() == 1.0
    batch = torch.stack([white, disc])
    assert M.silhouette_iou(batch, torch.stack([disc, disc])).tolist() == [0.0, 1.0]
    soft = M.silhouette(disc).float() * 0.9  # float masks are thresholded at 0.5
    assert M.silhouette_iou(soft, disc).item() == 1.0
    with pytest.raises(KitInputError):
        M.silhouette_iou(torch.ones(2, 32, 32), disc)


# --- temporal flicker -----------------------------------------------------------------------------------------


def test_temporal_flicker_is_zero_for_a_perfect_video_and_ignores_offsets():
    video = torch.rand(2, 5, 3, 8, 8, dtype=torch.float64) * 0.8
    assert torch.equal(M.temporal_flicker(video, video), torch.zeros(2, dtype=torch.float64))
    assert torch.allclose(
        M.temporal_flicker(video + 0.1, video), torch.zeros(2, dtype=torch.float64), atol=1e-15
    )


def test_temporal_flicker_of_a_hand_computed_example():
    # one pixel, three frames: target 0 -> 0.5 -> 0.2, prediction 0.2 -> 0.2 -> 0.6 (all channels)
    target = torch.tensor([0.0, 0.5, 0.2]).view(3, 1, 1, 1).expand(3, 3, 1, 1)
    pred = torch.tensor([0.2, 0.2, 0.6]).view(3, 1, 1, 1).expand(3, 3, 1, 1)
    # changes: target (+0.5, −0.3), prediction (0, +0.4) -> mean(|0 − 0.5|, |0.4 + 0.3|) = 0.6
    assert M.temporal_flicker(pred, target).item() == pytest.approx(0.6, abs=1e-7)
    # a second video in the batch whose red channel alone flickers by ±0.1: |Δ| = 0.1 on 1 of 3 channels
    flicker = target.clone()
    flicker[1, 0] += 0.1
    both = M.temporal_flicker(torch.stack([pred, flicker]), torch.stack([target, target]))
    assert both.shape == (2,) and both[1].item() == pytest.approx(0.1 / 3, abs=1e-7)


def test_a_frozen_copy_of_a_moving_target_scores_its_motion(scene):
    target = scene.rgb[:, 1]  # (T, 3, H, W) of one view
    frozen = target[:1].expand_as(target)
    motion = (target[1:] - target[:-1]).abs().mean().item()
    assert motion > 0.005
    assert M.temporal_flicker(frozen, target).item() == pytest.approx(motion, rel=1e-5)
    with pytest.raises(KitInputError):
        M.temporal_flicker(target[:1], target[:1])  # one frame has no change


# --- reprojection consistency ------------------------------------------------------------------------------------


def warp(out, i, j, images=None, **kw):
    images = out.rgb if images is None else images
    E, K = out.extrinsics, out.intrinsics[0]
    return M.reprojection_consistency(
        out.rgb[:, i], images[:, j], out.depth[:, i], out.depth[:, j], E[i], E[j], K, **kw
    )


def test_reprojection_onto_the_same_view_is_exact(scene):
    r = warp(scene, 1, 1)
    assert (
        r.mean_abs_error.shape == (3,)
        and r.warped.shape == (3, 3, 64, 64)
        and r.visible.shape == (3, 1, 64, 64)
    )
    assert r.mean_abs_error.max() < 1e-5
    assert torch.equal(r.visible_fraction, torch.ones(3))
    assert torch.equal(r.visible, scene.depth[:, 1] > 0)
    assert r.psnr_db.min() > 80


def test_reprojection_of_ground_truth_between_near_views_is_consistent(scene):
    for i, j in [(0, 1), (1, 0), (1, 2), (2, 1)]:
        r = warp(scene, i, j)
        assert r.mean_abs_error.max() < 0.05, (i, j, r.mean_abs_error)
        assert r.visible_fraction.min() > 0.5, (i, j, r.visible_fraction)
        assert r.psnr_db.min() > 17


def test_reprojection_with_a_wrong_view_has_a_much_larger_error(scene, other):
    for i, j in [(0, 1), (1, 2)]:
        right = warp(scene, i, j).mean_abs_error
        flipped = warp(scene, i, j, images=scene.rgb.flip(-1)).mean_abs_error
        wrong_scene = warp(scene, i, j, images=other.rgb).mean_abs_error
        assert (flipped > 3 * right).all() and (wrong_scene > 3 * right).all(), (right, flipped, wrong_scene)


def test_reprojection_correlation_scores_structure_not_flatness(scene, other):
    for i, j in [(0, 1), (1, 2)]:
        right = warp(scene, i, j).correlation
        assert (right > 0.8).all(), (i, j, right)
        assert (warp(scene, i, j, images=other.rgb).correlation < 0.5 * right).all()
        assert (warp(scene, i, j, images=scene.rgb.flip(-1)).correlation < 0.5 * right).all()
        # flat grey views agree in colour (small error) but carry no structure: correlation 0
        flat = torch.full_like(scene.rgb, 0.6)
        E, K = scene.extrinsics, scene.intrinsics[0]
        r = M.reprojection_consistency(
            flat[:, i], flat[:, j], scene.depth[:, i], scene.depth[:, j], E[i], E[j], K
        )
        assert r.mean_abs_error.max() < 1e-6 and r.correlation.abs().max() < 1e-6
    # contrast does not matter: a consistent but washed-out pair keeps its correlation
    faded = 0.5 + 0.2 * (scene.rgb - 0.5)
    torch.testing.assert_close(warp(scene, 0, 1, images=faded).correlation,
                               warp(scene, 0, 1).correlation, atol=0.02, rtol=0)  # fmt: skip
    E, K = scene.extrinsics, scene.intrinsics[0]
    empty = M.reprojection_consistency(scene.rgb[:, 0], scene.rgb[:, 1], torch.zeros_like(scene.depth[:, 0]),
                                       scene.depth[:, 1], E[0], E[1], K)  # fmt: skip
    assert torch.isnan(empty.correlation).all()  # no visible pixel: no correlation


def test_reprojection_hides_points_occluded_in_the_other_view(scene):
    assert warp(scene, 0, 3).visible_fraction.max() < 0.1  # view 3 looks at the back
    assert warp(scene, 0, 1).visible_fraction.min() > 0.7


def test_reprojection_finds_the_same_surface_point_without_antialiasing():
    """A flat-shaded box with a fine 3D checker, one ray per pixel: nearest sampling lands on the same checker cell
    (exactly the same colour) except within half a pixel of a cell edge; one pixel off, many more cells differ."""
    identity = ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0))
    colors = ((0.9, 0.2, 0.2), (0.2, 0.3, 0.9), (0.2, 0.8, 0.3))
    box = S.Primitive("box", (0.5, 0.4, 0.3), (0.0, 0.0, 0.0), identity, "checker3d", colors)
    scene = S.Scene(seed=0, dynamic=False, primitives=(box,))
    out = S.render_orbit(scene, [20.0, 60.0], 25.0, size=64, num_frames=1, supersample=1)

    def exact_fraction(images):
        r = warp(out, 0, 1, images=images, mode="nearest")
        assert r.visible_fraction.item() > 0.85
        err = (r.warped - out.rgb[:, 0]).abs().amax(dim=1, keepdim=True)[r.visible]
        return (err < 1e-6).float().mean().item()

    assert exact_fraction(out.rgb) > 0.65
    assert exact_fraction(out.rgb.roll(1, dims=-1)) < 0.45


def test_reprojection_samples_where_cameras_project_points(scene):
    """Warp an image of pixel coordinates: the sampled values must be the projections of the GT depth's points."""
    i, j = 0, 2
    H = W = 64
    v, u = torch.meshgrid(torch.arange(H) + 0.5, torch.arange(W) + 0.5, indexing="ij")
    coords = torch.stack([u / W, v / H, torch.full_like(u, 0.5)]).expand(3, 3, H, W)  # value = centre / size
    images = scene.rgb.clone()
    images[:, j] = coords
    r = warp(scene, i, j, images=images)
    E, K = scene.extrinsics, scene.intrinsics[0]
    points = C.unproject_depth(scene.depth[:, i], E[i], K).reshape(3, H * W, 3)
    uv, z = C.project_points(points, E[j], K)  # (3, H*W, 2)
    sampled = r.warped.flatten(2).transpose(1, 2)[..., :2] * torch.tensor([W, H])  # (3, H*W, 2)
    keep = (
        r.visible.reshape(3, H * W) & (uv >= 0.5).all(-1) & (uv <= 63.5).all(-1)
    )  # bilinear is exact inside
    assert keep.sum() > 500
    assert (sampled[keep] - uv[keep]).abs().max() < 2e-3
    assert (z[keep] > 0).all()


def test_reprojection_in_float64_and_batches(scene):
    r32 = warp(scene, 0, 1)
    E, K = scene.extrinsics.double(), scene.intrinsics[0].double()
    rgb, d = scene.rgb.double(), scene.depth.double()
    r64 = M.reprojection_consistency(rgb[:, 0], rgb[:, 1], d[:, 0], d[:, 1], E[0], E[1], K)
    assert r64.mean_abs_error.dtype == torch.float64
    assert torch.allclose(r64.mean_abs_error, r32.mean_abs_error.double(), atol=1e-4)
    # per-frame cameras broadcast like shared ones
    r = M.reprojection_consistency(
        rgb[:, 0], rgb[:, 1], d[:, 0], d[:, 1], E[0].expand(3, 4, 4), E[1].expand(3, 4, 4), K.expand(3, 3, 3)
    )
    assert torch.allclose(r.mean_abs_error, r64.mean_abs_error)


def test_reprojection_rejects_bad_input(scene):
    rgb, d, E, K = scene.rgb[:, :2], scene.depth[:, :2], scene.extrinsics, scene.intrinsics[0]
    good = dict(
        images_i=rgb[:, 0], images_j=rgb[:, 1], depth_i=d[:, 0], depth_j=d[:, 1], E_i=E[0], E_j=E[1], K=K
    )
    for change in [
        dict(depth_i=d[:, 0, :, :32]),  # depth size
        dict(depth_j=-d[:, 1]),  # negative depth
        dict(images_j=rgb[:2, 1]),  # batch differs
        dict(E_i=E[:2]),  # cameras do not broadcast to the batch of 3
        dict(K=torch.eye(4)),
        dict(mode="bicubic"),
        dict(depth_tol=0.0),
    ]:
        with pytest.raises(KitInputError):
            M.reprojection_consistency(**{**good, **change})


def test_multiview_consistency_of_ground_truth_and_of_a_wrong_view(scene, other):
    gt = M.multiview_consistency(scene.rgb, scene.depth, scene.extrinsics, scene.intrinsics[0])
    assert gt.error_matrix.shape == (4, 4) and torch.isnan(gt.error_matrix.diagonal()).all()
    assert gt.error_matrix[0, 1] < 0.05 and gt.error_matrix[1, 2] < 0.05
    assert gt.correlation_matrix[0, 1] > 0.8 and torch.isnan(gt.correlation_matrix.diagonal()).all()
    assert 0 < gt.mean_abs_error < 0.1 and 0 < gt.visible_fraction < 1
    bad = scene.rgb.clone()
    bad[:, 2] = other.rgb[:, 2]  # one view of another object
    mv = M.multiview_consistency(bad, scene.depth, scene.extrinsics, scene.intrinsics)
    assert mv.mean_abs_error > gt.mean_abs_error
    for k in (0, 1):
        assert (
            mv.error_matrix[2, k] > 3 * gt.error_matrix[2, k]
            and mv.error_matrix[k, 2] > 3 * gt.error_matrix[k, 2]
        )
        assert mv.error_matrix[k, 1 - k] == gt.error_matrix[k, 1 - k]  # pairs without view 2 do not change
        assert mv.correlation_matrix[2, k] < gt.correlation_matrix[2, k]
    assert mv.correlation < gt.correlation


def test_view_pairs():
    assert M.view_pairs(3) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert M.view_pairs(4, "neighbours") == [(0, 1), (0, 3), (1, 0), (1, 2), (2, 1), (2, 3), (3, 0), (3, 2)]
    assert M.view_pairs(1) == [] and M.view_pairs(2, "neighbours") == [(0, 1), (1, 0)]
    with pytest.raises(KitInputError):
        M.view_pairs(3, "random")


# --- evaluate_matrix -------------------------------------------------------------------------------------------

KEYS = {
    "psnr_db",
    "psnr_in_mask_db",
    "ssim",
    "silhouette_iou",
    "silhouette_precision",
    "silhouette_recall",
    "temporal_flicker",
    "multiview_consistency_error",
    "multiview_consistency_psnr_db",
    "multiview_visible_fraction",
    "multiview_consistency_error_gt",
    "multiview_consistency_correlation",
    "multiview_consistency_correlation_gt",
    "sharpness_ratio",
    "color_ratio",
    "smoothed_color_ratio",
    "background_speckle",
    "psnr_covisible_db",
}


def evaluate(scene, pred, **kw):
    return M.evaluate_matrix(
        pred, scene.rgb, scene.alpha, scene.depth, scene.extrinsics, scene.intrinsics[0], **kw
    )


def test_evaluate_matrix_of_ground_truth_gives_the_best_scores(scene):
    result = evaluate(scene, scene.rgb)
    assert set(result) == KEYS | {"per_view"}
    assert set(result["per_view"]) == {1, 2, 3}  # the novel views by default
    for v, values in [("mean", result), *result["per_view"].items()]:
        assert set(values) >= KEYS and all(isinstance(values[k], float) for k in KEYS), v
        assert values["psnr_db"] == values["psnr_in_mask_db"] == M.MAX_PSNR_DB
        assert values["ssim"] == pytest.approx(1.0, abs=1e-6) and values["silhouette_iou"] == 1.0
        assert values["silhouette_precision"] == values["silhouette_recall"] == 1.0
        assert values["temporal_flicker"] == 0.0
        assert values["multiview_consistency_error"] == values["multiview_consistency_error_gt"]
        assert values["multiview_consistency_correlation"] == values["multiview_consistency_correlation_gt"]
        assert values["sharpness_ratio"] == values["color_ratio"] == values["smoothed_color_ratio"] == 1.0, v
        assert values["background_speckle"] == 0.0, v
    covisible = {v: values["psnr_covisible_db"] for v, values in result["per_view"].items()}
    assert covisible[1] == covisible[2] == result["psnr_covisible_db"] == M.MAX_PSNR_DB
    assert math.isnan(covisible[3])  # view 3 at 180° sees none of the input view's surface
    mean = sum(result["per_view"][v]["multiview_consistency_error"] for v in (1, 2, 3)) / 3
    assert result["multiview_consistency_error"] == pytest.approx(mean)


def test_evaluate_matrix_ranks_a_degraded_view_worst(scene, other):
    pred = scene.rgb.clone()
    g = torch.Generator().manual_seed(0)
    pred[:, 1] = (pred[:, 1] + 0.03 * torch.randn(pred[:, 1].shape, generator=g)).clamp(0, 1)  # mild noise
    pred[:, 2] = other.rgb[:, 2]  # a wrong object
    result = evaluate(scene, pred, views=[1, np.int64(2)])
    assert set(result["per_view"]) == {1, 2}
    good, bad = result["per_view"][1], result["per_view"][2]
    for key in ("psnr_db", "psnr_in_mask_db", "ssim", "silhouette_iou", "multiview_consistency_psnr_db",
                "psnr_covisible_db"):  # fmt: skip
        assert M.MAX_PSNR_DB > good[key] > bad[key], key
    # measured: mild noise sharpness 1.17, no speckle (σ 0.03 stays within 0.15 of white); the wrong object leaves
    # parts of itself in the far background (speckle 0.019)
    assert good["sharpness_ratio"] > 1.05 and good["background_speckle"] == 0.0 < bad["background_speckle"]
    for key in ("temporal_flicker", "multiview_consistency_error"):
        assert 0 < good[key] < bad[key], key
    assert bad["multiview_consistency_error"] > 2 * bad["multiview_consistency_error_gt"]
    assert result["psnr_db"] == pytest.approx((good["psnr_db"] + bad["psnr_db"]) / 2)
    single = evaluate(scene, pred, views=[0])  # view 0 untouched, but its pairs with views 1 and 2 suffer
    assert single["psnr_db"] == M.MAX_PSNR_DB and set(single["per_view"]) == {0}
    assert single["multiview_consistency_error"] > single["multiview_consistency_error_gt"]


def test_evaluate_matrix_with_one_frame_reports_no_flicker(scene):
    first = [
        scene.rgb[:1],
        scene.alpha[:1],
        scene.depth[:1],
        scene.extrinsics,
        scene.intrinsics,
        scene.times[:1],
    ]
    one = S.RenderOutput(*first)
    result = evaluate(one, one.rgb)
    assert math.isnan(result["temporal_flicker"]) and result["psnr_db"] == M.MAX_PSNR_DB


def test_evaluate_matrix_rejects_bad_shapes(scene):
    rgb, alpha, depth, E, K = scene.rgb, scene.alpha, scene.depth, scene.extrinsics, scene.intrinsics[0]
    good = dict(pred=rgb, gt=rgb, gt_alpha=alpha, gt_depth=depth, extrinsics=E, K=K)
    for change in [
        dict(pred=rgb[0]),  # no time axis
        dict(pred=rgb[:, :3]),  # pred and gt differ
        dict(gt_alpha=alpha[:, :, :, :32]),
        dict(gt_alpha=alpha[0]),
        dict(gt_depth=depth[:2]),
        dict(extrinsics=E[:3]),
        dict(K=torch.eye(3).expand(2, 3, 3)),
        dict(views=[4]),
        dict(views=[1, 1]),
        dict(views=[]),
        dict(views=[1.0]),
        dict(views=[True]),
        dict(pairs="some"),
        dict(input_depth=depth[:, 0]),  # without input_extrinsics
        dict(input_depth=depth[:, 0, :, :32], input_extrinsics=E[0]),
        dict(input_depth=depth[:, 0], input_extrinsics=E[:2]),
    ]:
        with pytest.raises(KitInputError):
            M.evaluate_matrix(**{**good, **change})


def test_evaluate_matrix_covisible_psnr_with_another_input_view(scene):
    """The input view defaults to view 0; given view 1 instead, view 0 counts only the pixels view 1 sees."""
    pred = scene.rgb.clone()
    E, K = scene.extrinsics, scene.intrinsics[0]
    seen = M.covisible_mask(scene.depth[:, 0], scene.depth[:, 1], E[0], E[1], K)
    pred[:, 0] = torch.where(seen, pred[:, 0], 1 - pred[:, 0])  # view 0 wrong where view 1 does not see it
    default = evaluate(scene, pred, views=[0, 2])
    explicit = evaluate(scene, pred, views=[0, 2], input_depth=scene.depth[:, 0], input_extrinsics=E[0])
    assert default == explicit and default["per_view"][0]["psnr_covisible_db"] < 30
    other = evaluate(scene, pred, views=[0, 2], input_depth=scene.depth[:, 1], input_extrinsics=E[1])
    assert other["per_view"][0]["psnr_covisible_db"] == M.MAX_PSNR_DB
    assert other["per_view"][0]["psnr_db"] == default["per_view"][0]["psnr_db"] < 30
