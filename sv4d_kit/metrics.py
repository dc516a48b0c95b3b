"""Evaluation metrics for generated image matrices: PSNR, SSIM, silhouette IoU, temporal flicker, sharpness,
colour and background speckle, multi-view reprojection consistency and PSNR on the pixels the input view also sees,
plus `evaluate_matrix`, which reports them all for a (T, V) matrix against ground truth.

Conventions: images are float tensors (..., 3, H, W) in [0, 1] (objects on a white background, as the pipeline and
`sv4d_kit.synthetic` produce them); masks are (..., 1, H, W) bool or float in [0, 1]; videos are (..., T, 3, H, W);
image matrices are (T, V, 3, H, W) with view 0 the input view. Cameras follow `sv4d_kit.cameras` (OpenCV axes,
world-to-camera 4×4 extrinsics, pinhole K with pixel centres at +0.5, depth = camera z, 0 where nothing is hit).
Every function works in float64 when given float64 and in float32 otherwise; per-image results keep the leading
batch dimensions `...`, except sharpness, the colour ratios and speckle: one ratio of sums over the whole set of images.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from sv4d_kit import cameras, checks
from sv4d_kit.checks import KitInputError

MAX_PSNR_DB = 100.0  # PSNR of identical images: the MSE is floored at 1e-10 (peak value 1)
SSIM_WINDOW, SSIM_SIGMA, SSIM_K1, SSIM_K2 = 11, 1.5, 0.01, 0.03  # Wang et al. (2004)
SILHOUETTE_THRESHOLD = 0.05  # a pixel is "object" when some channel is below 1 - threshold
DEPTH_TOLERANCE = 0.02  # relative depth agreement that makes a reprojected point visible
CORRELATION_EPS = 1e-6  # variance floor of `Reprojection.correlation`: structureless images score 0
LUMA_WEIGHTS = (0.299, 0.587, 0.114)  # Rec. 601 luma of R, G, B: what `sharpness_ratio` differentiates
SHARPNESS_DILATION_PX = 1  # sharpness counts the silhouette grown by 1 px: the outline edge is inside
SPECKLE_MARGIN_PX = 3  # speckle counts background more than 3 px from the silhouette (edge halos excluded)
SPECKLE_THRESHOLD = 0.15  # a background pixel is speckle when some channel is more than 0.15 below white
COLOR_SMOOTHING_PX = 1  # `smoothed_color_ratio` averages each pixel's (2p+1)×(2p+1) neighbourhood first: 3×3


# ----------------------------------------------------------------------------------------------------------------
# Input checks


def _work_dtype(*tensors: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _check_images(name: str, x, channels: int | None = 3, min_ndim: int = 3) -> torch.Tensor:
    """A finite float tensor (..., channels, H, W) (any channel count if None) with values in [0, 1]."""
    x = torch.as_tensor(x)
    if not x.is_floating_point():
        raise KitInputError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}")
    if x.ndim < min_ndim or (channels is not None and x.shape[-3] != channels):
        dims = {3: "(..., C, H, W)", 4: "(..., T, C, H, W)", 5: "(T, V, C, H, W)"}[min_ndim]
        dims = dims if channels is None else dims.replace("C", str(channels))
        raise KitInputError(f"{name} must have shape {dims}, got {tuple(x.shape)}")
    if x.numel() and not (bool(torch.isfinite(x).all()) and x.min() >= -1e-6 and x.max() <= 1 + 1e-6):
        raise KitInputError(f"{name} must hold finite values in [0, 1], got range [{x.min():g}, {x.max():g}]")
    return x


def _check_mask(name: str, mask, shape: torch.Size) -> torch.Tensor:
    """A bool or float [0, 1] mask (..., 1, H, W) that broadcasts against images of `shape` (..., C, H, W)."""
    mask = torch.as_tensor(mask)
    mask = mask.float() if mask.dtype == torch.bool else mask
    mask = _check_images(name, mask, channels=1)
    pairs = zip(reversed(mask.shape[:-3]), reversed(shape[:-3]))
    if mask.shape[-2:] != shape[-2:] or mask.ndim > len(shape) or any(a not in (1, b) for a, b in pairs):
        raise KitInputError(
            f"{name} must have shape (..., 1, H, W) matching {tuple(shape)}, got {tuple(mask.shape)}"
        )
    return mask


def _check_same_shape(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape:
        raise KitInputError(
            f"pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )


# ----------------------------------------------------------------------------------------------------------------
# Per-image metrics


def psnr(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Peak signal-to-noise ratio 10·log10(1 / MSE) in dB per image (peak 1), capped at `MAX_PSNR_DB` (100 dB).

    pred, target (..., C, H, W) -> (...). With `mask` (..., 1, H, W) the MSE is the mask-weighted mean over the
    masked pixels and all channels (PSNR inside the object); an empty mask gives NaN.
    """
    pred, target = _check_images("pred", pred, channels=None), _check_images("target", target, channels=None)
    _check_same_shape(pred, target)
    dtype = _work_dtype(pred, target)
    sq = (pred.to(dtype) - target.to(dtype)) ** 2  # (..., C, H, W)
    if mask is None:
        mse = sq.mean(dim=(-3, -2, -1))
    else:
        w = _check_mask("mask", mask, pred.shape).to(dtype)
        weight = w.expand_as(sq).sum(dim=(-3, -2, -1))
        mse = (sq * w).sum(dim=(-3, -2, -1)) / weight  # 0 / 0 = NaN for an empty mask
    return 10 * torch.log10(1 / mse.clamp_min(10 ** (-MAX_PSNR_DB / 10)))


def _gaussian_window(dtype: torch.dtype) -> torch.Tensor:
    x = torch.arange(SSIM_WINDOW, dtype=torch.float64) - (SSIM_WINDOW - 1) / 2
    g = torch.exp(-(x**2) / (2 * SSIM_SIGMA**2))
    return (g / g.sum()).to(dtype)


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Structural similarity of Wang et al. (2004) per image: gaussian window 11, σ 1.5, K1 0.01, K2 0.03, peak 1.

    Computed on each channel separately and averaged over channels and over the *valid* window positions (no
    padding: an H×W image has (H − 10)×(W − 10) windows, so H, W ≥ 11). Local statistics are gaussian-weighted
    means and (biased) variances. pred, target (..., C, H, W) -> (...); identical images give exactly 1.
    """
    pred, target = _check_images("pred", pred, channels=None), _check_images("target", target, channels=None)
    _check_same_shape(pred, target)
    *batch, C, H, W = pred.shape
    if H < SSIM_WINDOW or W < SSIM_WINDOW:
        raise KitInputError(f"ssim needs images of at least {SSIM_WINDOW}×{SSIM_WINDOW} pixels, got {H}×{W}")
    dtype = _work_dtype(pred, target)
    x = pred.to(dtype).reshape(-1, 1, H, W)  # (..., C, H, W) -> (N*C, 1, H, W)
    y = target.to(dtype).reshape(-1, 1, H, W)
    g = _gaussian_window(dtype)

    def blur(z):  # separable gaussian filter, valid region only
        return F.conv2d(F.conv2d(z, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.reshape(*batch, C, -1).mean(dim=(-2, -1))  # (N*C, 1, h, w) -> (..., C, h*w) -> (...)


def silhouette(images: torch.Tensor, threshold: float = SILHOUETTE_THRESHOLD) -> torch.Tensor:
    """Object silhouette of images on a white background: pixels where any channel is below 1 − threshold.

    images (..., 3, H, W) -> bool (..., 1, H, W)
    """
    images = _check_images("images", images)
    if not 0.0 < float(threshold) < 1.0:
        raise KitInputError(f"threshold must be in (0, 1), got {threshold!r}")
    return images.amin(dim=-3, keepdim=True) < 1.0 - float(threshold)


def _as_mask(name: str, x, threshold: float) -> torch.Tensor:
    """Images (..., 3, H, W) -> their silhouettes; masks (..., 1, H, W) (bool, or float > 0.5) -> bool."""
    x = torch.as_tensor(x)
    if x.ndim >= 3 and x.shape[-3] == 3:
        return silhouette(x, threshold)
    if x.ndim >= 3 and x.shape[-3] == 1:
        return x if x.dtype == torch.bool else _check_images(name, x, channels=1) > 0.5
    raise KitInputError(f"{name} must be images (..., 3, H, W) or masks (..., 1, H, W), got {tuple(x.shape)}")


def _silhouette_counts(pred, target, threshold: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Pixel counts |pred ∩ target|, |pred|, |target| of two silhouettes per image (float64, shape (...))."""
    a, b = _as_mask("pred", pred, threshold), _as_mask("target", target, threshold)
    _check_same_shape(a, b)
    return tuple(m.sum(dim=(-3, -2, -1)).double() for m in (a & b, a, b))


def _share(part: torch.Tensor, whole: torch.Tensor, pred, target) -> torch.Tensor:
    """part / whole, 1.0 where whole is empty, in the inputs' working dtype."""
    ratio = torch.where(whole > 0, part / whole.clamp_min(1), torch.ones_like(whole))
    return ratio.to(_work_dtype(torch.as_tensor(pred), torch.as_tensor(target)))


def silhouette_iou(
    pred: torch.Tensor, target: torch.Tensor, threshold: float = SILHOUETTE_THRESHOLD
) -> torch.Tensor:
    """Intersection over union of two silhouettes per image; 1.0 when both are empty.

    `pred` and `target` are each images (..., 3, H, W), reduced by `silhouette(·, threshold)`, or masks
    (..., 1, H, W) (bool, or float thresholded at 0.5). -> (...) float
    """
    inter, n_pred, n_target = _silhouette_counts(pred, target, threshold)
    return _share(inter, n_pred + n_target - inter, pred, target)


def silhouette_precision_recall(
    pred: torch.Tensor, target: torch.Tensor, threshold: float = SILHOUETTE_THRESHOLD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Precision |pred ∩ target| / |pred| and recall |pred ∩ target| / |target| of two silhouettes per image.

    Tells how an IoU is lost: a halo of extra pixels lowers precision, missing parts lower recall. Inputs as in
    `silhouette_iou`; an empty pred (target) gives precision (recall) 1.0. -> ((...), (...)) float
    """
    inter, n_pred, n_target = _silhouette_counts(pred, target, threshold)
    return _share(inter, n_pred, pred, target), _share(inter, n_target, pred, target)


def temporal_flicker(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Temporal flicker: mean |(p_{t+1} − p_t) − (g_{t+1} − g_t)| over frames, channels and pixels, per video.

    It compares the frame-to-frame change of the prediction with that of the ground truth, so it is 0 for a
    perfect video, does not punish a constant offset, and a frozen copy of a moving target scores the target's
    own mean absolute motion. pred, target (..., T, 3, H, W) with T ≥ 2 -> (...)
    """
    pred = _check_images("pred", pred, min_ndim=4)
    target = _check_images("target", target, min_ndim=4)
    _check_same_shape(pred, target)
    if pred.shape[-4] < 2:
        raise KitInputError(f"temporal_flicker needs videos of T >= 2 frames, got T = {pred.shape[-4]}")
    dtype = _work_dtype(pred, target)
    dp, dg = pred.to(dtype).diff(dim=-4), target.to(dtype).diff(dim=-4)  # (..., T - 1, 3, H, W)
    return (dp - dg).abs().mean(dim=(-4, -3, -2, -1))


# ----------------------------------------------------------------------------------------------------------------
# Quality inside and around the object: sharpness, colour, background speckle
#
# These compare a whole set of images at once (all the leading dimensions `...`, e.g. a view's T frames): each is a
# ratio of sums over every pixel of the set, so images with a small silhouette weigh little instead of making the
# mean jump, and an image with an empty silhouette adds nothing. The ground-truth silhouette is `mask`
# (..., 1, H, W) (bool, or float thresholded at 0.5; e.g. ground-truth alpha) or, by default, `silhouette(target)`.


def _object_mask(mask, target: torch.Tensor) -> torch.Tensor:
    """The ground-truth silhouette of `target` (..., 3, H, W): `mask` or `silhouette(target)`. -> bool (..., 1, H, W)"""
    if mask is None:
        return silhouette(target)
    mask = _check_mask("mask", mask, target.shape) > 0.5
    return mask.expand(*target.shape[:-3], 1, *target.shape[-2:])


def _dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a bool mask (..., 1, H, W) by `pixels` (a (2p+1)×(2p+1) square: Chebyshev distance ≤ p)."""
    H, W = mask.shape[-2:]
    flat = mask.reshape(-1, 1, H, W).float()  # (..., 1, H, W) -> (N, 1, H, W)
    grown = F.max_pool2d(flat, 2 * pixels + 1, stride=1, padding=pixels)
    return grown.reshape(mask.shape) > 0.5


def _check_pair(pred, target) -> tuple[torch.Tensor, torch.Tensor, torch.dtype]:
    pred, target = _check_images("pred", pred), _check_images("target", target)
    _check_same_shape(pred, target)
    dtype = _work_dtype(pred, target)
    return pred.to(dtype), target.to(dtype), dtype


def _set_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den of two sums over a set; NaN when den is 0 (nothing to compare with). -> () tensor"""
    return torch.where(den > 0, num / torch.where(den > 0, den, torch.ones_like(den)), torch.nan)


def _luminance(images: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma 0.299 R + 0.587 G + 0.114 B (`LUMA_WEIGHTS`). images (..., 3, H, W) -> (..., 1, H, W)"""
    w = torch.tensor(LUMA_WEIGHTS, dtype=images.dtype).view(3, 1, 1)
    return (images * w).sum(dim=-3, keepdim=True)


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """|∇ luminance| by forward differences: sqrt((L[y, x+1] − L[y, x])² + (L[y+1, x] − L[y, x])²) at each pixel
    that has both neighbours. images (..., 3, H, W) with H, W ≥ 2 -> (..., 1, H − 1, W − 1)"""
    lum = _luminance(_check_images("images", images))
    if lum.shape[-1] < 2 or lum.shape[-2] < 2:
        raise KitInputError(f"the gradient needs images of at least 2×2 pixels, got {tuple(images.shape)}")
    dx = lum[..., :-1, 1:] - lum[..., :-1, :-1]
    dy = lum[..., 1:, :-1] - lum[..., :-1, :-1]
    return torch.sqrt(dx**2 + dy**2)


def sharpness_ratio(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Sharpness of pred relative to target: Σ |∇ luminance(pred)| / Σ |∇ luminance(target)| over the ground-truth
    silhouette grown by `SHARPNESS_DILATION_PX` (1 px), summed over the whole set (see above).

    1 for the same detail, below 1 for a blurred prediction, above 1 for added noise or ringing. Uses
    `gradient_magnitude` (forward differences of Rec. 601 luma). pred, target (..., 3, H, W) -> () tensor; NaN when
    the set's silhouette is empty or the ground truth is flat inside it.
    """
    pred, target, _ = _check_pair(pred, target)
    region = _dilate(_object_mask(mask, target), SHARPNESS_DILATION_PX)[..., :-1, :-1]  # (..., 1, H-1, W-1)
    return _set_ratio((gradient_magnitude(pred) * region).sum(), (gradient_magnitude(target) * region).sum())


def color_ratio(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Colourfulness of pred relative to target: Σ (max − min over R, G, B) of pred / the same of target over the
    ground-truth silhouette, summed over the whole set (see above).

    1 for the same colours, near 0 for a grey (desaturated) prediction. pred, target (..., 3, H, W) -> () tensor;
    NaN when the set's silhouette is empty or the ground truth is grey inside it.
    """
    pred, target, _ = _check_pair(pred, target)
    region = _object_mask(mask, target)  # (..., 1, H, W)

    def chroma(x):  # (..., 3, H, W) -> (..., 1, H, W)
        return x.amax(dim=-3, keepdim=True) - x.amin(dim=-3, keepdim=True)

    return _set_ratio((chroma(pred) * region).sum(), (chroma(target) * region).sum())


def smoothed_color_ratio(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """`color_ratio` of the images averaged over each pixel's 3×3 neighbourhood (`COLOR_SMOOTHING_PX`; edges
    average the pixels they have): the colour of regions, not of single pixels.

    `color_ratio` counts pixel-scale colour noise as colour: random colours have a large max − min over R, G, B.
    Averaged over 9 pixels, independent noise shrinks about 3× while a region's colour stays, so a grey object
    under colour noise scores high on `color_ratio` and low here; a copy with the same colours scores 1 on both.
    pred, target (..., 3, H, W) -> () tensor; NaN as `color_ratio`.
    """
    pred, target, _ = _check_pair(pred, target)
    k = 2 * COLOR_SMOOTHING_PX + 1

    def smooth(x):  # (..., 3, H, W) -> (..., 3, H, W)
        flat = x.reshape(-1, 3, *x.shape[-2:])
        out = F.avg_pool2d(flat, k, stride=1, padding=COLOR_SMOOTHING_PX, count_include_pad=False)
        return out.reshape(x.shape)

    return color_ratio(smooth(pred), smooth(target), mask=_object_mask(mask, target))


def background_speckle(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Share of the background that is not white: pixels more than `SPECKLE_MARGIN_PX` (3 px, Chebyshev) from the
    ground-truth silhouette (outside it grown by 3 px) where pred has some channel more than `SPECKLE_THRESHOLD`
    (0.15) below white (max over channels of 1 − value > 0.15), over all such pixels of the whole set (see above).

    In [0, 1]; 0 for a clean white background, whatever happens at the object's edge. `target` only gives the
    silhouette when `mask` is None. pred, target (..., 3, H, W) -> () tensor; NaN when the set has no background.
    """
    pred, target, dtype = _check_pair(pred, target)
    background = ~_dilate(_object_mask(mask, target), SPECKLE_MARGIN_PX)  # (..., 1, H, W)
    speckle = (1 - pred).amax(dim=-3, keepdim=True) > SPECKLE_THRESHOLD
    return _set_ratio((speckle & background).sum().to(dtype), background.sum().to(dtype))


# ----------------------------------------------------------------------------------------------------------------
# Multi-view consistency


@dataclass
class Reprojection:
    """Result of warping view i into view j; per-image values keep the batch dimensions `...`."""

    mean_abs_error: torch.Tensor  # (...) mean |image_i − warped| over visible pixels, channels (NaN if none)
    psnr_db: torch.Tensor  # (...) PSNR over the visible pixels
    visible_fraction: torch.Tensor  # (...) visible pixels / pixels of view i with depth_i > 0 (NaN if none)
    correlation: (
        torch.Tensor
    )  # (...) Pearson correlation of image_i and warped over visible pixels (see below)
    warped: torch.Tensor  # (..., 3, H, W) view j's image sampled at the reprojection of each pixel of view i
    visible: torch.Tensor  # (..., 1, H, W) bool: pixels of view i whose surface point is seen by view j


def _check_depth(name: str, depth, shape: torch.Size) -> torch.Tensor:
    depth = torch.as_tensor(depth)
    if not depth.is_floating_point() or depth.shape != (*shape[:-3], 1, *shape[-2:]):
        raise KitInputError(
            f"{name} must be a float tensor of shape {(*shape[:-3], 1, *shape[-2:])}, got {tuple(depth.shape)}"
        )
    if not bool(torch.isfinite(depth).all()) or bool((depth < 0).any()):
        raise KitInputError(f"{name} must hold finite depths >= 0 (0 where nothing is hit)")
    return depth


def _check_camera(name: str, value, size: int, batch: torch.Size, dtype: torch.dtype) -> torch.Tensor:
    """(size, size) or (..., size, size) matrices broadcast to `batch` and flattened. -> (B, size, size)"""
    m = cameras._check_matrices(name, value, size)
    try:
        m = torch.broadcast_to(m, (*batch, size, size))
    except RuntimeError as err:
        raise KitInputError(
            f"{name} must have shape ({size}, {size}) or {(*batch, size, size)}, got {tuple(m.shape)}"
        ) from err
    return m.to(dtype).reshape(-1, size, size)


def _reproject(depth_i, depth_j, Ei, Ej, K, depth_tol: float):
    """Where view i's pixel centres land in view j, and whether view j sees the same surface point there.

    depth_i, depth_j (..., 1, H, W) with B = prod(...) images; Ei, Ej (B, 4, 4) and K (B, 3, 3) in the working
    dtype. A pixel is visible when depth_i > 0, it projects inside view j in front of the camera, and its camera-j
    depth z agrees with depth_j at the nearest pixel: |z − depth_j| < depth_tol · depth_j.
    -> u, v (B, H*W) pixel coordinates in view j; visible, foreground (depth_i > 0) (B, H*W) bool
    """
    (H, W), B, dtype = depth_i.shape[-2:], K.shape[0], K.dtype
    # 1. Lift the pixel centres of view i into camera i, then move them into camera j
    pix = cameras.pixel_centers(H, W, dtype=dtype)  # (H*W, 2)
    homog = torch.cat([pix, torch.ones_like(pix[:, :1])], dim=-1)  # (H*W, 3)
    rays = homog @ torch.linalg.inv(K).transpose(-1, -2)  # (B, H*W, 3) with z = 1
    d_i = depth_i.to(dtype).reshape(B, H * W, 1)
    x_i = rays * d_i  # camera-i coordinates
    rel = Ej @ cameras.invert_extrinsics(Ei)  # (B, 4, 4) camera i -> camera j
    x_j = x_i @ rel[:, :3, :3].transpose(-1, -2) + rel[:, None, :3, 3]  # (B, H*W, 3)

    # 2. Project into view j and compare with view j's depth
    z = x_j[..., 2]
    in_front = z > 1e-9
    uvw = x_j @ K.transpose(-1, -2)
    uv = torch.where(
        in_front[..., None], uvw[..., :2] / z.clamp_min(1e-9)[..., None], torch.full_like(uvw[..., :2], -1.0)
    )
    u, v = uv.unbind(-1)
    inside = in_front & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    col = u.floor().clamp(0, W - 1).long()
    row = v.floor().clamp(0, H - 1).long()
    d_j = depth_j.to(dtype).reshape(B, H * W).gather(1, row * W + col)  # nearest pixel's depth in view j
    foreground = d_i[..., 0] > 0
    visible = foreground & inside & (d_j > 0) & ((z - d_j).abs() < depth_tol * d_j)  # (B, H*W)
    return u, v, visible, foreground


def reprojection_consistency(
    images_i: torch.Tensor,
    images_j: torch.Tensor,
    depth_i: torch.Tensor,
    depth_j: torch.Tensor,
    E_i: torch.Tensor,
    E_j: torch.Tensor,
    K: torch.Tensor,
    depth_tol: float = DEPTH_TOLERANCE,
    mode: str = "bilinear",
) -> Reprojection:
    """Reprojection consistency of two views: warp view j's image onto view i through view i's (ground-truth) depth.

    Each pixel centre of view i is lifted to 3D with `depth_i`, moved into camera j (E_j · E_i⁻¹) and projected;
    it is *visible* in j when depth_i > 0, it lands inside the image in front of the camera, and its camera-j depth z
    agrees with `depth_j` at the nearest pixel: |z − depth_j| < depth_tol · depth_j. View j's image is sampled there
    (`mode` "bilinear" or "nearest") and compared with view i's colour. images (..., 3, H, W), depth (..., 1, H, W),
    E (4, 4) or (..., 4, 4) world-to-camera, K (3, 3) or (..., 3, 3) shared by both views.

    The colour error rewards flat images (two blank views agree perfectly), so `correlation` also reports whether
    the *structure* agrees: the Pearson correlation of view i's and the warped colours over the visible pixels and
    channels, cov / sqrt(var_i var_j + CORRELATION_EPS) — 1 for consistent texture, about 0 for unrelated or
    structureless images, whatever their contrast (NaN when fewer than 2 pixels are visible).
    """
    # 1. Check inputs
    images_i, images_j = _check_images("images_i", images_i), _check_images("images_j", images_j)
    if images_i.shape != images_j.shape:
        raise KitInputError(
            f"images_i and images_j must have the same shape, got {tuple(images_i.shape)} and {tuple(images_j.shape)}"
        )
    depth_i = _check_depth("depth_i", depth_i, images_i.shape)
    depth_j = _check_depth("depth_j", depth_j, images_i.shape)
    depth_tol = checks.positive("depth_tol", depth_tol)
    checks.one_of("mode", mode, ("bilinear", "nearest"))
    *batch, _, H, W = images_i.shape
    batch = torch.Size(batch)
    dtype = _work_dtype(images_i, images_j, depth_i, depth_j)
    Ei, Ej = (_check_camera(n, e, 4, batch, dtype) for n, e in (("E_i", E_i), ("E_j", E_j)))  # (B, 4, 4)
    K = _check_camera("K", K, 3, batch, dtype)  # (B, 3, 3)
    B = K.shape[0]

    # 2. Reproject view i's pixels into view j and decide visibility
    u, v, visible, foreground = _reproject(depth_i, depth_j, Ei, Ej, K, float(depth_tol))  # (B, H*W) each

    # 3. Sample view j there and compare colours with view i
    # grid_sample's align_corners=False coordinates: -1 and 1 are the outer edges of the image
    grid = torch.stack([2 * u / W - 1, 2 * v / H - 1], dim=-1).reshape(B, H, W, 2)
    src = images_j.to(dtype).reshape(B, 3, H, W)
    warped = F.grid_sample(src, grid, mode=mode, padding_mode="border", align_corners=False)  # (B, 3, H, W)
    vis = visible.reshape(B, 1, H, W)
    target = images_i.to(dtype).reshape(B, 3, H, W)
    count = vis.sum(dim=(-3, -2, -1)).to(dtype)
    err = ((warped - target).abs() * vis).sum(dim=(-3, -2, -1)) / (3 * count)  # NaN when nothing is visible
    fraction = count / foreground.sum(-1).to(dtype)
    n = 3 * count.view(B, 1, 1, 1)
    a = target - (target * vis).sum(dim=(-3, -2, -1), keepdim=True) / n  # zero mean over visible pixels
    b = warped - (warped * vis).sum(dim=(-3, -2, -1), keepdim=True) / n
    cov, var_a, var_b = (
        (x * y * vis).sum(dim=(-3, -2, -1)) / n.flatten() for x, y in ((a, b), (a, a), (b, b))
    )
    corr = torch.where(count > 1, cov / torch.sqrt(var_a * var_b + CORRELATION_EPS), torch.nan)
    warped = torch.where(vis, warped, torch.ones_like(warped))  # white where view j says nothing
    return Reprojection(
        mean_abs_error=err.reshape(batch),
        psnr_db=psnr(warped, target, mask=vis).reshape(batch),
        visible_fraction=fraction.reshape(batch),
        correlation=corr.reshape(batch),
        warped=warped.reshape(*batch, 3, H, W),
        visible=vis.reshape(*batch, 1, H, W),
    )


def _check_depth_map(name: str, depth) -> torch.Tensor:
    """A depth map (..., 1, H, W) of any batch; its values are checked by `_check_depth`."""
    depth = torch.as_tensor(depth)
    if depth.ndim < 3 or depth.shape[-3] != 1:
        raise KitInputError(f"{name} must have shape (..., 1, H, W), got {tuple(depth.shape)}")
    return _check_depth(name, depth, depth.shape)


def covisible_mask(
    depth_novel: torch.Tensor,
    depth_input: torch.Tensor,
    E_novel: torch.Tensor,
    E_input: torch.Tensor,
    K: torch.Tensor,
    depth_tol: float = DEPTH_TOLERANCE,
) -> torch.Tensor:
    """Pixels of a novel view whose surface point the input view also sees (co-visible), by ground-truth depth.

    Each pixel of the novel view is lifted with `depth_novel`, reprojected into the input view and kept when the
    input view's `depth_input` there agrees within `depth_tol` (relative), as `reprojection_consistency`'s
    `visible`; background pixels (depth 0) are never co-visible. depth_novel, depth_input (..., 1, H, W);
    E (4, 4) or (..., 4, 4) world-to-camera; K (3, 3) or (..., 3, 3) shared. -> bool (..., 1, H, W)
    """
    depth_novel = _check_depth_map("depth_novel", depth_novel)
    depth_input = _check_depth("depth_input", depth_input, depth_novel.shape)
    depth_tol = checks.positive("depth_tol", depth_tol)
    batch = depth_novel.shape[:-3]
    dtype = _work_dtype(depth_novel, depth_input)
    En, Ei = (_check_camera(n, e, 4, batch, dtype) for n, e in (("E_novel", E_novel), ("E_input", E_input)))
    K = _check_camera("K", K, 3, batch, dtype)  # (B, 3, 3)
    _, _, visible, _ = _reproject(depth_novel, depth_input, En, Ei, K, float(depth_tol))  # (B, H*W)
    return visible.reshape(depth_novel.shape)


def psnr_covisible(
    pred: torch.Tensor,
    target: torch.Tensor,
    depth_novel: torch.Tensor,
    depth_input: torch.Tensor,
    E_novel: torch.Tensor,
    E_input: torch.Tensor,
    K: torch.Tensor,
    depth_tol: float = DEPTH_TOLERANCE,
) -> torch.Tensor:
    """PSNR (dB) of a novel view on its co-visible pixels only (`covisible_mask`): the part of the object the input
    view shows, where a generator has no excuse to invent. Pixels hidden from the input view do not count.

    pred, target (..., 3, H, W) the novel view; depth_novel (..., 1, H, W) its ground-truth depth, depth_input the
    input view's; cameras as in `covisible_mask`. -> (...); `MAX_PSNR_DB` for identical co-visible pixels, NaN for
    an image without co-visible pixels.
    """
    pred, target = _check_images("pred", pred), _check_images("target", target)
    _check_same_shape(pred, target)
    _check_depth("depth_novel", depth_novel, pred.shape)
    return psnr(pred, target, mask=covisible_mask(depth_novel, depth_input, E_novel, E_input, K, depth_tol))


@dataclass
class MultiviewConsistency:
    """Reprojection consistency of an image matrix; matrices are indexed [i, j] for warping view j onto view i."""

    mean_abs_error: float  # mean over the evaluated pairs of `error_matrix`
    psnr_db: float  # mean over the evaluated pairs of `psnr_matrix`
    visible_fraction: float  # mean over the evaluated pairs of `visible_matrix`
    correlation: float  # mean over the evaluated pairs of `correlation_matrix`
    error_matrix: torch.Tensor  # (V, V) mean abs colour error averaged over frames; NaN where not evaluated
    psnr_matrix: torch.Tensor  # (V, V) PSNR over visible pixels, averaged over frames
    visible_matrix: torch.Tensor  # (V, V) visible fraction averaged over frames
    correlation_matrix: torch.Tensor  # (V, V) colour correlation over visible pixels, averaged over frames


def view_pairs(num_views: int, pairs: str = "all") -> list[tuple[int, int]]:
    """Ordered view pairs (i, j): "all" is every i ≠ j; "neighbours" is j = i ± 1 (cyclic, for an orbit)."""
    if pairs not in ("all", "neighbours"):
        raise KitInputError(f"pairs must be 'all' or 'neighbours', got {pairs!r}")
    if pairs == "all":
        return [(i, j) for i in range(num_views) for j in range(num_views) if i != j]
    return sorted(
        {(i, (i + s) % num_views) for i in range(num_views) for s in (-1, 1) if (i + s) % num_views != i}
    )


def _nanmean(x: torch.Tensor) -> torch.Tensor:
    """Mean of all values that are not NaN; NaN when there are none."""
    valid = ~torch.isnan(x)
    return x[valid].sum() / valid.sum()  # 0 / 0 = NaN


def _check_views_cameras(extrinsics, K, V: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Extrinsics (V, 4, 4) and one K, given as (3, 3) or as V equal (V, 3, 3). -> ((V, 4, 4), (3, 3))"""
    E = cameras._check_matrices("extrinsics", extrinsics, 4)
    if E.shape != (V, 4, 4):
        raise KitInputError(f"extrinsics must have shape (V={V}, 4, 4), got {tuple(E.shape)}")
    K = cameras._check_matrices("K", K, 3)
    if K.shape not in ((3, 3), (V, 3, 3)):
        raise KitInputError(f"K must have shape (3, 3) or (V={V}, 3, 3), got {tuple(K.shape)}")
    if K.ndim == 3 and not torch.equal(K, K[:1].expand_as(K)):
        raise KitInputError("K must be the same for every view (the warp assumes one camera model)")
    return E, K.reshape(-1, 3, 3)[0]


def multiview_consistency(
    images: torch.Tensor,
    depth: torch.Tensor,
    extrinsics: torch.Tensor,
    K: torch.Tensor,
    pairs: str = "all",
    depth_tol: float = DEPTH_TOLERANCE,
    mode: str = "bilinear",
) -> MultiviewConsistency:
    """Multi-view consistency of an image matrix: `reprojection_consistency` for every ordered view pair (`pairs`
    "all" or cyclic "neighbours") and every frame, through the ground-truth depth; frames, then pairs, are averaged
    (NaNs from pairs without visible pixels are skipped).

    images (T, V, 3, H, W), depth (T, V, 1, H, W), extrinsics (V, 4, 4), K (3, 3) or (V, 3, 3).
    """
    images = _check_images("images", images, min_ndim=5)
    if images.ndim != 5:
        raise KitInputError(f"images must have shape (T, V, 3, H, W), got {tuple(images.shape)}")
    T, V, _, H, W = images.shape
    depth = _check_depth("depth", depth, images.shape)
    E, K = _check_views_cameras(extrinsics, K, V)
    view_pairs(V, pairs)  # checks `pairs`
    nan = torch.full((V, V), math.nan, dtype=torch.float64)
    err, pnsr_m, vis, corr = nan.clone(), nan.clone(), nan.clone(), nan.clone()
    for i, j in view_pairs(V, pairs):  # one pair at a time, batched over the T frames
        r = reprojection_consistency(
            images[:, i], images[:, j], depth[:, i], depth[:, j], E[i], E[j], K, depth_tol, mode
        )
        err[i, j] = _nanmean(r.mean_abs_error.double())
        pnsr_m[i, j] = _nanmean(r.psnr_db.double())
        vis[i, j] = _nanmean(r.visible_fraction.double())
        corr[i, j] = _nanmean(r.correlation.double())
    return MultiviewConsistency(
        mean_abs_error=float(_nanmean(err)),
        psnr_db=float(_nanmean(pnsr_m)),
        visible_fraction=float(_nanmean(vis)),
        correlation=float(_nanmean(corr)),
        error_matrix=err,
        psnr_matrix=pnsr_m,
        visible_matrix=vis,
        correlation_matrix=corr,
    )


# ----------------------------------------------------------------------------------------------------------------
# Everything at once


def evaluate_matrix(
    pred: torch.Tensor,
    gt: torch.Tensor,
    gt_alpha: torch.Tensor,
    gt_depth: torch.Tensor,
    extrinsics: torch.Tensor,
    K: torch.Tensor,
    views: Sequence[int] | None = None,
    pairs: str = "all",
    input_depth: torch.Tensor | None = None,
    input_extrinsics: torch.Tensor | None = None,
) -> dict:
    """All metrics of a generated image matrix against ground truth, averaged over `views` and per view.

    pred, gt (T, V, 3, H, W) in [0, 1]; gt_alpha (T, V, 1, H, W); gt_depth (T, V, 1, H, W); extrinsics (V, 4, 4);
    K (3, 3) or (V, 3, 3). `views` defaults to the novel views 1 … V−1 (view 0 is the input view; [0] when V = 1).
    `input_depth` (T, 1, H, W) and `input_extrinsics` (4, 4) are the input view's ground-truth depth and camera
    for `psnr_covisible_db`, given together; by default view 0 of the matrix.
    Returns floats (NaN where undefined, e.g. flicker when T = 1):
      psnr_db, ssim             per image, averaged over frames and views; PSNR capped at 100 dB
      psnr_in_mask_db           PSNR over the pixels where gt_alpha > 0.5
      silhouette_iou            IoU of `silhouette(pred)` and `silhouette(gt)` (non-white pixels)
      silhouette_precision, silhouette_recall
                                the share of the predicted silhouette inside the true one, and of the true one
                                covered (`silhouette_precision_recall`)
      temporal_flicker          `temporal_flicker` of each view's video (lower is better, 0 is perfect)
      multiview_consistency_error, multiview_consistency_psnr_db, multiview_visible_fraction
                                view v's pixels against every other view j ≠ v of the matrix (`pairs` "all") or
                                its neighbours, matched through gt_depth (`reprojection_consistency`; error: mean
                                abs colour difference, lower is better)
      multiview_consistency_error_gt
                                the same error of the ground truth itself: the floor set by anti-aliasing and
                                sampling, to read the prediction's value against
      multiview_consistency_correlation, multiview_consistency_correlation_gt
                                the same pairs' colour correlation (`Reprojection.correlation`; higher is better,
                                and flat images cannot score well), for the prediction and the ground truth
      sharpness_ratio           `sharpness_ratio` of each view's video against the ground truth inside
                                `silhouette(gt)` grown by 1 px (1 is right, < 1 blurred, > 1 noisy)
      color_ratio               `color_ratio` inside `silhouette(gt)` (1 is right, near 0 grey)
      smoothed_color_ratio      `smoothed_color_ratio`: the same of 3×3 averages, which pixel noise does not pass
      background_speckle        `background_speckle`: the share of background pixels more than 3 px from
                                `silhouette(gt)` that are not white (0 is perfect)
      psnr_covisible_db         `psnr_covisible`: PSNR on the view's pixels whose surface point the input view
                                sees, by gt_depth; frames without any are skipped (NaN when no frame has one)
    and "per_view": {v: {the same keys}} for every v in `views`. Sharpness, both colour ratios and speckle are ratios of
    sums over the view's T frames (NaN when its silhouette is empty), then averaged over views like the rest.
    """
    # 1. Check inputs
    pred = _check_images("pred", pred, min_ndim=5)
    gt = _check_images("gt", gt, min_ndim=5)
    if pred.ndim != 5:
        raise KitInputError(f"pred must have shape (T, V, 3, H, W), got {tuple(pred.shape)}")
    _check_same_shape(pred, gt)
    T, V, _, H, W = pred.shape
    gt_alpha = _check_mask("gt_alpha", gt_alpha, pred.shape)
    if gt_alpha.shape != (T, V, 1, H, W):
        raise KitInputError(f"gt_alpha must have shape {(T, V, 1, H, W)}, got {tuple(gt_alpha.shape)}")
    gt_depth = _check_depth("gt_depth", gt_depth, pred.shape)
    E, K1 = _check_views_cameras(extrinsics, K, V)
    if (input_depth is None) != (input_extrinsics is None):
        raise KitInputError("input_depth and input_extrinsics must be given together (or neither: view 0)")
    if input_depth is None:
        input_depth, input_extrinsics = gt_depth[:, 0], E[0]
    input_depth = _check_depth("input_depth", input_depth, pred[:, 0].shape)
    input_extrinsics = cameras._check_matrices("input_extrinsics", input_extrinsics, 4)
    if input_extrinsics.shape != (4, 4):
        raise KitInputError(f"input_extrinsics must have shape (4, 4), got {tuple(input_extrinsics.shape)}")
    view_pairs(V, pairs)  # checks `pairs`
    if views is None:
        views = list(range(1, V)) if V > 1 else [0]
    views = [checks.integer("views", v, 0, V - 1) for v in views]
    if not views or len(set(views)) != len(views):
        raise KitInputError(f"views must be distinct integers in [0, {V - 1}], got {views!r}")

    # 2. Per-image metrics, one view at a time (keeps memory at one view's video)
    per_view = {}
    for v in views:
        p, g = pred[:, v], gt[:, v]  # (T, 3, H, W)
        sp, sg = silhouette(p), silhouette(g)  # (T, 1, H, W), once for the three silhouette metrics
        precision, recall = silhouette_precision_recall(sp, sg)
        covisible = psnr_covisible(p, g, gt_depth[:, v], input_depth, E[v], input_extrinsics, K1)  # (T,)
        per_view[v] = {
            "psnr_db": float(psnr(p, g).double().mean()),
            "psnr_in_mask_db": float(_nanmean(psnr(p, g, mask=gt_alpha[:, v] > 0.5).double())),
            "ssim": float(ssim(p, g).double().mean()),
            "silhouette_iou": float(silhouette_iou(sp, sg).double().mean()),
            "silhouette_precision": float(precision.double().mean()),
            "silhouette_recall": float(recall.double().mean()),
            "temporal_flicker": float(temporal_flicker(p, g)) if T > 1 else math.nan,
            "sharpness_ratio": float(sharpness_ratio(p, g, mask=sg)),
            "color_ratio": float(color_ratio(p, g, mask=sg)),
            "smoothed_color_ratio": float(smoothed_color_ratio(p, g, mask=sg)),
            "background_speckle": float(background_speckle(p, g, mask=sg)),
            "psnr_covisible_db": float(_nanmean(covisible.double())),
        }

    # 3. Multi-view consistency through the ground-truth depth, for the prediction and for the ground truth
    mv_pred = multiview_consistency(pred, gt_depth, extrinsics, K, pairs=pairs)
    mv_gt = multiview_consistency(gt, gt_depth, extrinsics, K, pairs=pairs)
    for v in views:
        per_view[v]["multiview_consistency_error"] = float(_nanmean(mv_pred.error_matrix[v]))
        per_view[v]["multiview_consistency_psnr_db"] = float(_nanmean(mv_pred.psnr_matrix[v]))
        per_view[v]["multiview_visible_fraction"] = float(_nanmean(mv_pred.visible_matrix[v]))
        per_view[v]["multiview_consistency_error_gt"] = float(_nanmean(mv_gt.error_matrix[v]))
        per_view[v]["multiview_consistency_correlation"] = float(_nanmean(mv_pred.correlation_matrix[v]))
        per_view[v]["multiview_consistency_correlation_gt"] = float(_nanmean(mv_gt.correlation_matrix[v]))

    # 4. Average over the chosen views
    keys = list(per_view[views[0]])
    summary = {
        k: float(_nanmean(torch.tensor([per_view[v][k] for v in views], dtype=torch.float64))) for k in keys
    }
    summary["per_view"] = per_view
    return summary
