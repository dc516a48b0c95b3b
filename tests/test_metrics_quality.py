"""Sharpness, colour, background speckle and co-visible PSNR (issue #20): constructed cases with known answers."""

import math

import pytest
import torch
import torch.nn.functional as F

from sv4d_kit import cameras as C
from sv4d_kit import metrics as M
from sv4d_kit import synthetic as S
from sv4d_kit.checks import KitInputError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def scene():
    """Ground truth of a moving scene: 2 frames from the input view (0°) and views at 10° and 180°, 48×48."""
    return S.render_orbit(S.make_scene(3), [0.0, 10.0, 180.0], 10.0, size=48, num_frames=2)


def square_image(size=32, lo=10, hi=22, dtype=torch.float64):
    """A textured square (a smooth colour ramp, every pixel coloured) on white. -> (3, size, size)"""
    v, u = torch.meshgrid(torch.arange(size, dtype=dtype), torch.arange(size, dtype=dtype), indexing="ij")
    image = torch.ones(3, size, size, dtype=dtype)
    ramp = torch.stack([0.2 + 0.015 * u, 0.7 - 0.012 * v, 0.2 + 0.008 * (u + v)])  # in [0.2, 0.85] to 40 px
    image[:, lo:hi, lo:hi] = ramp[:, lo:hi, lo:hi]
    return image


def chebyshev_distance(mask: torch.Tensor) -> torch.Tensor:
    """Brute-force distance max(|dy|, |dx|) of every pixel to the nearest True pixel of a (H, W) mask."""
    H, W = mask.shape
    ys, xs = torch.nonzero(mask, as_tuple=True)
    v, u = torch.meshgrid(torch.arange(H), torch.arange(W), indexing="ij")
    d = torch.maximum((v[..., None] - ys).abs(), (u[..., None] - xs).abs())  # (H, W, N)
    return d.amin(-1)


def one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(KitInputError) as err:
        fn(*args, **kw)
    message = str(err.value)
    assert message and "\n" not in message
    return message


# --- sharpness ----------------------------------------------------------------------------------------------------


def test_gradient_magnitude_of_a_luminance_ramp():
    v, u = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in (8, 10)), indexing="ij")
    grey = (0.1 + 0.03 * u + 0.04 * v).expand(3, 8, 10)  # luma = the value for a grey image
    g = M.gradient_magnitude(grey)
    assert g.shape == (1, 7, 9)
    torch.testing.assert_close(g, torch.full_like(g, 0.05), atol=1e-12, rtol=0)  # sqrt(0.03² + 0.04²)
    red = torch.zeros(3, 8, 10, dtype=torch.float64)
    red[0] = 0.5 * u / 9  # only R varies: the gradient is scaled by its Rec. 601 weight 0.299
    g = M.gradient_magnitude(red)
    torch.testing.assert_close(g, torch.full_like(g, 0.299 * 0.5 / 9), atol=1e-12, rtol=0)


def test_sharpness_of_identical_blurred_and_noisy_copies(scene):
    gt = scene.rgb[:, 1]  # (T, 3, H, W) of the 10° view
    assert M.sharpness_ratio(gt, gt).item() == 1.0
    blurred = torch.nn.functional.avg_pool2d(gt, 3, stride=1, padding=1, count_include_pad=False)
    g = torch.Generator().manual_seed(0)
    noisy = (gt + 0.05 * torch.randn(gt.shape, generator=g)).clamp(0, 1)
    # measured: blurred 0.80, noisy 1.32
    assert M.sharpness_ratio(blurred, gt).item() < 0.9
    assert M.sharpness_ratio(noisy, gt).item() > 1.15
    assert M.sharpness_ratio(gt, blurred).item() > 1.1  # and the other way round


def test_sharpness_of_halved_contrast_is_one_half_pooled_over_the_set():
    a, b = square_image(), square_image(lo=4, hi=28)  # b's silhouette is much larger
    mask = torch.stack([M.silhouette(a), M.silhouette(b)])
    faded = 0.5 + 0.5 * (a - 0.5)  # every luminance difference halved (the silhouette is passed as a mask)
    assert M.sharpness_ratio(faded, a, mask=mask[0]).item() == pytest.approx(0.5, abs=1e-12)
    pooled = M.sharpness_ratio(torch.stack([faded, b]), torch.stack([a, b]), mask=mask)
    region = M._dilate(mask, M.SHARPNESS_DILATION_PX)[..., :-1, :-1]
    da, db = ((M.gradient_magnitude(x) * r).sum().item() for x, r in ((a, region[0]), (b, region[1])))
    assert pooled.item() == pytest.approx((0.5 * da + db) / (da + db), abs=1e-12)  # a ratio of sums
    assert abs(pooled.item() - 0.75) > 0.05  # not the mean of the two ratios 0.5 and 1 (measured 0.84)
    # an image with an empty silhouette adds nothing; a set with none gives NaN
    white = torch.ones_like(a)
    both = M.sharpness_ratio(torch.stack([faded, torch.rand_like(a)]), torch.stack([a, white]))
    assert both.item() == pytest.approx(M.sharpness_ratio(faded, a).item(), abs=1e-12)
    assert math.isnan(M.sharpness_ratio(white, white).item())


def test_sharpness_counts_the_outline_one_pixel_out():
    """A flat square: its only gradient is the outline, and forward differences put the top and left sides on the
    pixels just outside the silhouette. The 1 px dilation counts them, so a square whose top and left edges moved
    out by 1 px (where the ratio would be 1 without the dilation) keeps only about half of its outline."""
    target = torch.ones(3, 32, 32, dtype=torch.float64)
    target[:, 10:22, 10:22] = 0.3
    assert M.sharpness_ratio(torch.full_like(target, 0.3), target).item() == 0.0  # no edge left anywhere
    grown = torch.ones_like(target)
    grown[:, 9:22, 9:22] = 0.3  # one more row above and column to the left
    assert M.sharpness_ratio(grown, target).item() == pytest.approx(0.5, abs=0.05)


# --- colour -------------------------------------------------------------------------------------------------------


def test_color_of_identical_grey_and_half_desaturated_copies(scene):
    gt = scene.rgb[:, 1]
    assert M.color_ratio(gt, gt).item() == 1.0
    grey = (gt * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(-3, keepdim=True).expand_as(gt)
    assert M.color_ratio(grey, gt).item() < 0.2
    # mixing with grey halves max − min exactly
    half = 0.5 * gt + 0.5 * grey
    assert M.color_ratio(half, gt).item() == pytest.approx(0.5, abs=1e-5)
    assert math.isnan(M.color_ratio(torch.ones(3, 8, 8), torch.ones(3, 8, 8)).item())  # empty silhouette


def test_smoothed_color_tells_colour_noise_from_coloured_regions(scene):
    gt = scene.rgb[:, 1]
    inside = M.silhouette(gt)
    grey = gt.mean(-3, keepdim=True).expand_as(gt)
    noise = torch.rand(gt.shape, generator=torch.Generator().manual_seed(0)) - 0.5
    noisy_grey = torch.where(inside, (grey + 0.6 * noise).clamp(0, 1), gt)  # colour noise on a grey object
    # per pixel the noise looks as colourful as the object; over 3×3 regions it is mostly gone
    per_pixel, regions = M.color_ratio(noisy_grey, gt).item(), M.smoothed_color_ratio(noisy_grey, gt).item()
    assert per_pixel > 0.8 and regions < 0.5 * per_pixel
    assert M.smoothed_color_ratio(gt, gt).item() == 1.0
    assert M.smoothed_color_ratio(grey, gt).item() < 0.2
    # the same colours, blurred: the regions keep their colour, mixed only where two meet (blur is sharpness's
    # to catch, not colour's)
    blurred = F.avg_pool2d(gt, 3, stride=1, padding=1, count_include_pad=False)
    assert 0.8 < M.smoothed_color_ratio(blurred, gt).item() < 1.0
    # a flat colour is its own 3×3 average, at the image's border too: the ratio of a half-saturated copy is 1/2
    flat = torch.ones(3, 8, 8) * torch.tensor([0.2, 0.5, 0.8]).view(3, 1, 1)
    half = 0.5 * flat + 0.5 * flat.mean(0, keepdim=True)
    assert M.smoothed_color_ratio(half, flat).item() == pytest.approx(0.5, abs=1e-5)
    assert math.isnan(M.smoothed_color_ratio(torch.ones(3, 8, 8), torch.ones(3, 8, 8)).item())


def test_color_and_sharpness_use_the_given_mask(scene):
    gt, alpha = scene.rgb[:, 1], scene.alpha[:, 1]
    grey = gt.mean(-3, keepdim=True).expand_as(gt)
    mixed = torch.where(alpha > 0.5, gt, grey)  # the colours kept only where alpha > 0.5
    assert M.color_ratio(mixed, gt, mask=alpha).item() == 1.0
    assert M.color_ratio(mixed, gt).item() < 1.0  # silhouette(gt) also holds the soft edge pixels
    assert M.color_ratio(gt, gt, mask=alpha[0]).item() == 1.0  # a mask broadcasts over the batch


# --- background speckle -------------------------------------------------------------------------------------------


def test_background_speckle_counts_the_far_background_only():
    target = square_image(size=40, lo=12, hi=26)
    dist = chebyshev_distance(M.silhouette(target)[0])  # (H, W)
    far = dist > M.SPECKLE_MARGIN_PX
    assert M.background_speckle(target, target).item() == 0.0  # clean ground truth
    # white noise on a random 10 % of the far background: every pixel has a channel below 0.85
    g = torch.Generator().manual_seed(1)
    picked = far & (torch.rand(far.shape, generator=g) < 0.1)
    noisy = target.clone()
    noisy[:, picked] = 0.8 * torch.rand(3, int(picked.sum()), generator=g, dtype=target.dtype)
    share = picked.sum().item() / far.sum().item()
    assert 0.05 < share < 0.15
    assert M.background_speckle(noisy, target).item() == pytest.approx(share, abs=1e-12)
    # dark pixels within 3 px of the silhouette do not count; one at 4 px does
    near = target.clone()
    near[:, (dist > 0) & (dist <= 3)] = 0.0
    assert M.background_speckle(near, target).item() == 0.0
    near[:, 4, 19] = 0.0  # the square starts at row 12: 8 px above it is far
    near[:, 8, 19] = 0.0  # row 8 is 4 px above
    assert dist[8, 19] == 4 and dist[4, 19] == 8
    assert M.background_speckle(near, target).item() == pytest.approx(2 / far.sum().item(), abs=1e-12)
    # off-white by less than 0.15 (in its most-off channel) is still white; by more, it is speckle
    faint = target.clone()
    faint[:, far] = torch.tensor([0.9, 0.95, 1.0], dtype=target.dtype)[:, None]
    assert M.background_speckle(faint, target).item() == 0.0
    faint[2, far] = 0.8
    assert M.background_speckle(faint, target).item() == 1.0


def test_background_speckle_is_pooled_and_nan_without_background():
    target = torch.stack([square_image(size=40, lo=12, hi=26), square_image(size=40, lo=2, hi=38)])
    pred = torch.zeros_like(target)  # everything black
    # the second image has background only in a 2 px frame, all of it within 3 px: the first gives the share
    assert M.background_speckle(pred, target).item() == 1.0
    full = torch.zeros(1, 1, 40, 40, dtype=torch.bool)
    full[..., 1:39, 1:39] = True
    assert math.isnan(M.background_speckle(pred[:1], target[:1], mask=full).item())


# --- co-visible PSNR ----------------------------------------------------------------------------------------------


def covisible(scene, v, **kw):
    E, K = scene.extrinsics, scene.intrinsics[0]
    return M.covisible_mask(scene.depth[:, v], scene.depth[:, 0], E[v], E[0], K, **kw)


def psnr_covisible(scene, pred, v):
    E, K = scene.extrinsics, scene.intrinsics[0]
    return M.psnr_covisible(pred, scene.rgb[:, v], scene.depth[:, v], scene.depth[:, 0], E[v], E[0], K)


def test_covisible_mask_near_and_opposite_views(scene):
    near, behind = covisible(scene, 1), covisible(scene, 2)
    assert near.shape == (2, 1, 48, 48) and near.dtype == torch.bool
    foreground = scene.depth > 0
    assert not (near & ~foreground[:, 1]).any() and not (behind & ~foreground[:, 2]).any()  # background never
    # measured: 10° keeps ~95 % of the object, 180° (the back) ~0 %
    assert near.sum() > 0.85 * foreground[:, 1].sum()
    assert behind.sum() < 0.1 * near.sum()
    assert torch.equal(covisible(scene, 0), foreground[:, 0])  # the input view sees all of itself


def test_covisible_mask_excludes_points_hidden_from_the_input_view(scene):
    """Put an occluder in front of the left half of the input view (its depth there halved): novel pixels whose
    point projects there are no longer co-visible, those projecting into the right half stay."""
    E, K = scene.extrinsics, scene.intrinsics[0]
    W = scene.depth.shape[-1]
    before = covisible(scene, 1)
    occluded = scene.depth[:, 0].clone()
    occluded[..., : W // 2] *= 0.5
    after = M.covisible_mask(scene.depth[:, 1], occluded, E[1], E[0], K)
    points = C.unproject_depth(scene.depth[:, 1], E[1], K).reshape(2, -1, 3)  # (T, H*W, 3)
    u = C.project_points(points, E[0], K)[0][..., 0].reshape(after.shape)  # column in the input view
    left, right = before & (u < W // 2 - 1), before & (u > W // 2 + 1)
    assert left.sum() > 200 and right.sum() > 200
    assert not (after & left).any()
    assert torch.equal(after & right, right)
    assert not (after & ~before).any()


def test_psnr_covisible_of_ground_truth_and_of_corrupted_pixels(scene):
    gt, mask = scene.rgb[:, 1], covisible(scene, 1)
    assert torch.equal(psnr_covisible(scene, gt, 1), torch.full((2,), M.MAX_PSNR_DB))
    # corrupt every pixel that is not co-visible: the co-visible PSNR does not change, the plain one drops
    hidden = torch.where(mask, gt, 1 - gt)
    assert torch.equal(psnr_covisible(scene, hidden, 1), torch.full((2,), M.MAX_PSNR_DB))
    assert (M.psnr(hidden, gt) < 30).all()
    # a corrupted co-visible pixel does count, as the masked PSNR over the co-visible pixels
    one = gt.clone()
    t, _, y, x = torch.nonzero(mask)[0].tolist()
    one[t, :, y, x] = 1 - one[t, :, y, x]
    p = psnr_covisible(scene, one, 1)
    assert p[t] < 60 and p[1 - t] == M.MAX_PSNR_DB
    torch.testing.assert_close(p, M.psnr(one, gt, mask=mask))
    # the back view has (almost) no co-visible pixels: NaN where there are none
    back = psnr_covisible(scene, scene.rgb[:, 2], 2)
    assert all(math.isnan(b) == (covisible(scene, 2)[k].sum() == 0) for k, b in enumerate(back.tolist()))


# --- input checks -------------------------------------------------------------------------------------------------


def test_quality_metrics_keep_float64():
    a = square_image()
    for fn in (M.sharpness_ratio, M.color_ratio, M.smoothed_color_ratio, M.background_speckle):
        r = fn(a, a)
        assert r.shape == () and r.dtype == torch.float64, fn.__name__
        assert fn(a.float(), a.float()).dtype == torch.float32


@pytest.mark.parametrize(
    "fn", [M.sharpness_ratio, M.color_ratio, M.smoothed_color_ratio, M.background_speckle]
)
def test_quality_metrics_reject_bad_input(fn):
    x = square_image().float()
    for pred, target, mask in [
        (x, x[:, :16], None),  # sizes differ
        (x[:1], x[:1], None),  # one channel
        (x, torch.stack([x, x]), None),  # batches differ
        ((x * 255).to(torch.uint8), x, None),  # not floats
        (x * 2, x, None),  # outside [0, 1]
        (x, x, torch.ones(1, 16, 16)),  # mask size
        (x, x, torch.ones(3, 32, 32)),  # mask has channels
        (x, x, torch.ones(2, 1, 32, 32)),  # mask batch larger than the images'
    ]:
        one_line_error(fn, pred, target, mask=mask)


def test_covisible_rejects_bad_input(scene):
    d, E, K, rgb = scene.depth, scene.extrinsics, scene.intrinsics[0], scene.rgb
    good = dict(depth_novel=d[:, 1], depth_input=d[:, 0], E_novel=E[1], E_input=E[0], K=K)
    for change in [
        dict(depth_novel=rgb[:, 1]),  # 3 channels: an image, not a depth map
        dict(depth_input=d[:, 0, :, :24]),  # sizes differ
        dict(depth_input=d[:1, 0]),  # batches differ
        dict(depth_input=-d[:, 0]),  # negative depth
        dict(depth_novel=d[:, 1].long()),  # not floats
        dict(E_novel=E[:3]),  # (3, 4, 4) does not broadcast to the batch of 2 frames
        dict(E_input=torch.eye(3)),
        dict(K=torch.eye(4)),
        dict(depth_tol=0.0),
    ]:
        one_line_error(M.covisible_mask, **{**good, **change})
    images = dict(pred=rgb[:, 1], target=rgb[:, 1])
    one_line_error(M.psnr_covisible, **{**good, **images, "pred": rgb[:, 1, :, :24]})
    one_line_error(M.psnr_covisible, **{**good, **images, "depth_novel": d[:1, 1]})
