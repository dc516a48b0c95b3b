"""Evaluate a pipeline on held-out synthetic 4D scenes against ground truth, with baselines and ablations.

For each held-out scene (seeds from `synthetic.heldout_seeds`, disjoint from training) the input view's clip is
rendered, the pipeline generates the novel views, and `metrics.evaluate_matrix` compares them with the rendered
ground truth. Methods:

    tiny_sv4d                      the pipeline as it is
    copy_input                     every novel view is the input frame (the baseline to beat)
    tiny_sv4d_no_view_attention    the same weights with the view ("camera") attention stage switched off
    tiny_sv4d_no_frame_attention   the same weights with the frame ("motion") attention stage switched off

The ablations use the network's own switches (`SV4DUNet.set_block_switches`), no retraining.

`evaluate_between_views` scores views *between* the generated ones (half-way between the model's azimuths), against
ground truth rendered there that no method sees. Methods (`BETWEEN_METHODS`):

    nearest_view            the nearest generated view (ties: the one before it in azimuth), as an orbit shows it
    warp_baseline           the input view's clip warped through its true depth with the true motion (`warp`)
    recon4d                 a 4D point representation (`sv4d_kit.recon4d`) fitted to the generated matrix
    recon4d_from_gt_views   the same fitted to the ground-truth views at the model's azimuths: its own ceiling
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from sv4d_kit import cameras, checks, metrics, synthetic
from sv4d_kit.checks import KitInputError

METHODS = ("tiny_sv4d", "copy_input", "tiny_sv4d_no_view_attention", "tiny_sv4d_no_frame_attention")
SWITCHES = {
    "tiny_sv4d": dict(view=True, motion=True),
    "tiny_sv4d_no_view_attention": dict(view=False, motion=True),
    "tiny_sv4d_no_frame_attention": dict(view=True, motion=False),
}
CLIP_FRAMES = 21  # a held-out clip samples times k / (CLIP_FRAMES - 1), as the training clips do


@dataclass
class HeldOutScene:
    """Ground truth of one held-out scene: images, alpha, depth (T, V+1, ., H, W), cameras of the V+1 views."""

    seed: int
    images: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor
    extrinsics: torch.Tensor
    K: torch.Tensor
    azimuths_deg: list[float]
    elevation_deg: float
    times: torch.Tensor | None = None  # (T,) clip times in [0, 1]
    part: torch.Tensor | None = None  # (T, V+1, 1, H, W) primitive hit per pixel (-1: background)
    world: str = synthetic.DEFAULT_WORLD  # the scene distribution it comes from (synthetic.WORLDS)

    def make_scene(self) -> synthetic.Scene:
        """The scene itself (its motion, for baselines that are given the ground-truth motion)."""
        return synthetic.make_scene(self.seed, dynamic=True, world=self.world)


def heldout_scene(
    index: int,
    seed: int,
    relative_azimuths_deg: Sequence[float],
    size: int,
    frames: int,
    elevation_deg: float = 10.0,
    world: str = synthetic.DEFAULT_WORLD,
) -> HeldOutScene:
    """Render held-out scene number `index` of evaluation seed `seed` of `world` from the input view and the novel
    views."""
    scene_seed = synthetic.heldout_seeds(1, start=synthetic.HELDOUT_SEED_START + seed * 10_000 + index)[0]
    rng = np.random.default_rng([seed, index, 7])
    a0 = float(rng.uniform(0, 360))
    t0 = int(rng.integers(0, CLIP_FRAMES - frames + 1)) if frames <= CLIP_FRAMES else 0
    times = (torch.arange(t0, t0 + frames, dtype=torch.float32) / (CLIP_FRAMES - 1)).clamp(max=1.0)
    azimuths = [(a0 + float(a)) % 360 for a in relative_azimuths_deg]
    E = cameras.orbit_extrinsics(
        torch.tensor(azimuths), torch.full((len(azimuths),), elevation_deg), synthetic.DEFAULT_RADIUS
    )
    K = cameras.intrinsics(synthetic.DEFAULT_FOV, size, size)
    scene = synthetic.make_scene(scene_seed, dynamic=True, world=world)
    out = synthetic.render(scene, E, K, size, size, times)
    return HeldOutScene(
        scene_seed, out.rgb, out.alpha, out.depth, E, K, azimuths, elevation_deg, out.times, out.part, world
    )


def sampling_seed(seed: int, index: int) -> int:
    """The generator seed `evaluate` samples held-out scene `index` of evaluation seed `seed` with."""
    return seed * 100_003 + index


def generate(pipe, scene: HeldOutScene, method: str, seed: int, steps: int | None = None) -> torch.Tensor:
    """The (T, V+1, 3, H, W) matrix a method makes from the scene's input-view clip."""
    if method == "copy_input":
        return scene.images[:, :1].expand_as(scene.images).clone()
    if method not in SWITCHES:
        raise KitInputError(f"method must be one of {METHODS}, got {method!r}")
    pipe.unet.set_block_switches(**SWITCHES[method])
    try:
        relative = [(a - scene.azimuths_deg[0]) % 360 for a in scene.azimuths_deg]
        out = pipe(
            scene.images[:, 0],
            elevations_deg=scene.elevation_deg,
            azimuths_deg=relative,
            num_inference_steps=steps,
            generator=torch.Generator().manual_seed(seed),
            progress=False,
        )
    finally:
        pipe.unet.set_block_switches(view=True, motion=True)
    return out.images[: scene.images.shape[0]]  # one input frame comes back as a still clip of one chunk


def evaluate(
    pipe,
    num_scenes: int = 50,
    seed: int = 0,
    frames: int = 8,
    elevation_deg: float = 10.0,
    steps: int | None = None,
    methods: Sequence[str] = METHODS,
    progress: bool = True,
    keep_examples: int = 0,
    world: str = synthetic.DEFAULT_WORLD,
) -> tuple[dict, list]:
    """Mean metrics per method over `num_scenes` held-out scenes of `world`: {method: {metric: value}}, plus
    examples.

    Metric names are `metrics.evaluate_matrix`'s (among them sharpness_ratio, color_ratio, background_speckle and
    psnr_covisible_db), for every method; per-view means are flattened as `<metric>_view<v>` so "better on every
    novel view" can be read off directly.
    `keep_examples` scenes are returned as (scene, {method: matrix}) for pictures.
    """
    num_scenes = checks.integer("num_scenes", num_scenes, minimum=1)
    frames = checks.integer("frames", frames, minimum=1)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise KitInputError(f"methods must be among {METHODS}, got {unknown}")
    relative = pipe.default_azimuths()
    sums: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    examples = []
    for i in tqdm(range(num_scenes), desc="held-out scenes", disable=not progress):
        scene = heldout_scene(i, seed, relative, pipe.config.image_size, frames, elevation_deg, world)
        made = {}
        for method in methods:
            matrix = generate(pipe, scene, method, seed=sampling_seed(seed, i), steps=steps)
            made[method] = matrix
            result = metrics.evaluate_matrix(
                matrix, scene.images, scene.alpha, scene.depth, scene.extrinsics, scene.K
            )
            flat = {k: v for k, v in result.items() if k != "per_view"}
            for v, values in result["per_view"].items():
                flat.update({f"{k}_view{v}": x for k, x in values.items()})
            for k, x in flat.items():
                sums[method].setdefault(k, []).append(x)
        if i < keep_examples:
            examples.append((scene, made))
    summary = {m: {k: _mean(xs) for k, xs in values.items()} for m, values in sums.items()}
    return summary, examples


def _mean(xs: list[float]) -> float:
    finite = [x for x in xs if not math.isnan(x)]
    return float(np.mean(finite)) if finite else math.nan


def comparison_image(
    examples: list,
    methods: Sequence[str] = ("tiny_sv4d",),
    frames: Sequence[int] | None = None,
    factor: int = 4,
) -> np.ndarray:
    """A picture of examples: per scene, rows input | ground truth | each method, views across, a few frames."""
    rows = []
    for scene, made in examples:
        T = scene.images.shape[0]
        for t in frames if frames is not None else sorted({0, T - 1}):
            gt = scene.images[t]  # (V+1, 3, H, W)
            strips = [scene.images[t, :1].expand_as(gt), gt] + [made[m][t] for m in methods]
            rows.append(
                torch.cat([torch.cat(list(s), dim=-1) for s in strips], dim=-2)
            )  # views across, rows down
    grid = torch.cat(rows, dim=-2) if rows else torch.ones(3, 8, 8)
    img = (grid.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return img.repeat(factor, axis=0).repeat(factor, axis=1)


TABLE_METRICS = ("psnr_db", "ssim", "psnr_in_mask_db", "silhouette_iou", "silhouette_precision",
                 "silhouette_recall", "temporal_flicker",
                 "multiview_consistency_error", "multiview_consistency_correlation",
                 "multiview_consistency_correlation_gt",
                 "sharpness_ratio", "color_ratio", "smoothed_color_ratio", "background_speckle",
                 "psnr_covisible_db")  # fmt: skip
# the per-view table of `markdown_table` beside PSNR / SSIM / IoU
QUALITY_METRICS = ("sharpness_ratio", "color_ratio", "background_speckle", "psnr_covisible_db")


def novel_views(values: dict) -> list[int]:
    """The views of a method's summary, read off its flattened per-view keys (`psnr_db_view<v>`)."""
    return sorted(int(k.rsplit("_view", 1)[1]) for k in values if k.startswith("psnr_db_view"))


def markdown_table(summary: dict, metrics_: Sequence[str] = TABLE_METRICS) -> str:
    """`evaluate`'s summary as Markdown tables: the means per method, then PSNR / SSIM / IoU per novel view, then
    (when the summary has them) sharpness / colour / speckle / co-visible PSNR per novel view."""
    methods = list(summary)
    keys = [k for k in metrics_ if all(k in summary[m] for m in methods)]
    lines = ["| method | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {m} | " + " | ".join(f"{summary[m][k]:.4f}" for k in keys) + " |" for m in methods]
    views = novel_views(summary[methods[0]])
    lines += ["", "| method | " + " | ".join(f"view {v}: PSNR / SSIM / IoU" for v in views) + " |",
              "|---|" + "---|" * len(views)]  # fmt: skip
    for m in methods:
        cells = [f"{summary[m][f'psnr_db_view{v}']:.2f} / {summary[m][f'ssim_view{v}']:.3f} / "
                 f"{summary[m][f'silhouette_iou_view{v}']:.3f}" for v in views]  # fmt: skip
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    if all(f"{k}_view{v}" in summary[m] for m in methods for k in QUALITY_METRICS for v in views):
        lines += ["", "| method | " + " | ".join(f"view {v}: sharpness / colour / speckle / PSNR co-visible"
                                                 for v in views) + " |",
                  "|---|" + "---|" * len(views)]  # fmt: skip
        for m in methods:
            cells = [" / ".join(f"{summary[m][f'{k}_view{v}']:.3f}" for k in QUALITY_METRICS[:3])
                     + f" / {summary[m][f'psnr_covisible_db_view{v}']:.2f}" for v in views]  # fmt: skip
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# The tiny model's quality bar (issue #20): ranges of the measures against ground truth, and margins over copying
SHARPNESS_RANGE = (0.8, 1.25)  # sharpness_ratio: below is blur, above is noise
MIN_COLOR_RATIO = 0.8  # color_ratio and smoothed_color_ratio: muted colour below
MAX_SPECKLE = 0.01  # background_speckle: coloured dots on the far background above
# overall PSNR may fall this far below copy-the-input's (a sharp plausible back side costs some)
MAX_PSNR_LOSS_DB = 0.5


def quality_bar(summary: dict) -> dict[str, bool]:
    """The tiny model's quality bar, checked on `evaluate`'s summary (checks whose methods or measures are absent
    from it are skipped):

    sharp                           sharpness_ratio inside `SHARPNESS_RANGE` (neither blurred nor noisy)
    colourful                       color_ratio >= `MIN_COLOR_RATIO`
    colourful_regions               smoothed_color_ratio >= `MIN_COLOR_RATIO`: the colour is the regions', not
                                    pixel noise's (which `color_ratio` counts as colour)
    clean_background                background_speckle <= `MAX_SPECKLE`
    iou_above_copy_every_view       tiny_sv4d's silhouette IoU > copy_input's on every novel view
    covisible_psnr_above_copy       PSNR on the pixels the input view sees > copy_input's
    psnr_near_copy                  overall PSNR no more than `MAX_PSNR_LOSS_DB` below copy_input's
    view_attention_adds_consistency switching view attention off lowers multi-view consistency: a lower
                                    correlation *and* a higher colour error between views warped by true depth
    """
    result = {}
    model, copy, ablated = (
        summary.get(m) for m in ("tiny_sv4d", "copy_input", "tiny_sv4d_no_view_attention")
    )
    if model and "sharpness_ratio" in model:
        lo, hi = SHARPNESS_RANGE
        result["sharp"] = lo <= model["sharpness_ratio"] <= hi
        result["colourful"] = model["color_ratio"] >= MIN_COLOR_RATIO
        if "smoothed_color_ratio" in model:  # summaries written before it have no such key
            result["colourful_regions"] = model["smoothed_color_ratio"] >= MIN_COLOR_RATIO
        result["clean_background"] = model["background_speckle"] <= MAX_SPECKLE
    if model and copy:
        keys = [f"silhouette_iou_view{v}" for v in novel_views(model)]
        result["iou_above_copy_every_view"] = bool(keys) and all(model[k] > copy[k] for k in keys)
        if "psnr_covisible_db" in model:
            result["covisible_psnr_above_copy"] = model["psnr_covisible_db"] > copy["psnr_covisible_db"]
        result["psnr_near_copy"] = model["psnr_db"] >= copy["psnr_db"] - MAX_PSNR_LOSS_DB
    if model and ablated:
        result["view_attention_adds_consistency"] = (
            ablated["multiview_consistency_correlation"] < model["multiview_consistency_correlation"]
            and ablated["multiview_consistency_error"] > model["multiview_consistency_error"]
        )
    return result


# ----------------------------------------------------------------------------------------------------------------
# Between the generated views

BETWEEN_METHODS = ("nearest_view", "warp_baseline", "recon4d", "recon4d_from_gt_views")


def between_azimuths(azimuths_deg: Sequence[float]) -> list[float]:
    """Azimuths half-way between consecutive views around the circle, in increasing order from the first gap:
    0, 72, 144, 216, 288 -> 36, 108, 180, 252, 324 (one view: the opposite side)."""
    a = sorted({float(x) % 360 for x in azimuths_deg})
    if not a:
        raise KitInputError("azimuths_deg must hold at least one azimuth")
    gaps = [((a[(i + 1) % len(a)] - a[i]) % 360) or 360.0 for i in range(len(a))]
    return [(x + g / 2) % 360 for x, g in zip(a, gaps)]


def nearest_view(
    matrix: torch.Tensor, view_azimuths_deg: Sequence[float], query_azimuths_deg: Sequence[float]
):
    """For each query azimuth, the view of `matrix` (T, V, 3, H, W) whose azimuth is nearest around the circle;
    a tie (exactly half-way) goes to the view before it (counter-clockwise), the one an orbit shows up to the next
    view. -> (T, Q, 3, H, W)"""
    if matrix.ndim != 5 or matrix.shape[1] != len(view_azimuths_deg):
        raise KitInputError(
            f"matrix must be (T, V={len(view_azimuths_deg)}, 3, H, W), got {tuple(matrix.shape)}"
        )
    picks = []
    for q in query_azimuths_deg:
        ahead = [
            (float(q) - float(a)) % 360 for a in view_azimuths_deg
        ]  # how far the query is past each view
        dist = [round(min(d, 360 - d), 6) for d in ahead]
        picks.append(min(range(len(dist)), key=lambda v: (dist[v], ahead[v])))
    return matrix[:, picks]


def _between_cameras(scene: HeldOutScene, relative_between: Sequence[float]):
    """Absolute azimuths (degrees) and orbit extrinsics (Q, 4, 4) of azimuths relative to the scene's input view."""
    azimuths = [(scene.azimuths_deg[0] + float(a)) % 360 for a in relative_between]
    E = cameras.orbit_extrinsics(
        torch.tensor(azimuths), torch.full((len(azimuths),), scene.elevation_deg), synthetic.DEFAULT_RADIUS
    )
    return azimuths, E


def _between_ground_truth(scene: HeldOutScene, relative_between: Sequence[float]):
    """Ground truth of a held-out scene at azimuths relative to its input view, at the scene's times."""
    azimuths, E = _between_cameras(scene, relative_between)
    size = scene.images.shape[-1]
    out = synthetic.render(scene.make_scene(), E, scene.K, size, size, scene.times)
    return out, azimuths


def between_view_images(
    pipe, scene: HeldOutScene, method: str, relative_between: Sequence[float], sampling_seed_: int,
    steps: int | None = None, fit_config=None, generated: torch.Tensor | None = None,
) -> torch.Tensor:  # fmt: skip
    """The (T, Q, 3, H, W) images a between-views method makes at azimuths relative to the input view.

    `generated` is the model's matrix (`generate(pipe, scene, "tiny_sv4d", ...)`), made here when needed and not
    given; `fit_config` a `recon4d.FitConfig` (its defaults when None).
    """
    if method not in BETWEEN_METHODS:
        raise KitInputError(f"method must be one of {BETWEEN_METHODS}, got {method!r}")
    T, size = scene.images.shape[0], scene.images.shape[-1]
    relative = [(a - scene.azimuths_deg[0]) % 360 for a in scene.azimuths_deg]
    if method in ("nearest_view", "recon4d") and generated is None:
        generated = generate(pipe, scene, "tiny_sv4d", seed=sampling_seed_, steps=steps).cpu()
    if method == "nearest_view":
        return nearest_view(generated, relative, relative_between)
    if method == "warp_baseline":
        from sv4d_kit import warp

        _, E = _between_cameras(scene, relative_between)
        motion = warp.synthetic_motion(scene.make_scene(), scene.part[:, 0], scene.times)
        images, _ = warp.warp_baseline(
            scene.images[:, 0], scene.depth[:, 0], scene.extrinsics[0], scene.K, E, motion=motion
        )
        return images
    from sv4d_kit.recon4d import FitConfig, fit

    source = generated if method == "recon4d" else scene.images
    result = fit(source, scene.extrinsics, scene.K, config=fit_config or FitConfig(), progress=False)
    azimuths, _ = _between_cameras(scene, relative_between)
    rgb, _, _ = result.points.render(azimuths, [scene.elevation_deg] * len(azimuths), list(range(T)), size)
    return rgb.detach().float().clamp(0, 1)


def evaluate_between_views(
    pipe,
    num_scenes: int,
    seed: int,
    frames: int,
    steps: int | None = None,
    methods: Sequence[str] = BETWEEN_METHODS,
    progress: bool = True,
    fit_config=None,
    elevation_deg: float = 10.0,
    world: str = synthetic.DEFAULT_WORLD,
) -> dict:
    """Mean metrics per method at the azimuths half-way between the generated views: {method: {metric: value}}.

    The held-out scenes and the model's samples are those of `evaluate` with the same arguments; the ground truth
    is rendered at `between_azimuths(pipe.default_azimuths())` (relative to the input view). Metric names are
    `metrics.evaluate_matrix`'s, averaged over all the between views (their multi-view consistency is measured
    among the between views, through their true depth; psnr_covisible_db counts the pixels the input view sees).
    """
    num_scenes = checks.integer("num_scenes", num_scenes, minimum=1)
    frames = checks.integer("frames", frames, minimum=1)
    unknown = [m for m in methods if m not in BETWEEN_METHODS]
    if unknown or not methods:
        raise KitInputError(f"methods must be among {BETWEEN_METHODS}, got {list(methods)}")
    relative = pipe.default_azimuths()
    between = between_azimuths(relative)
    sums: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    for i in tqdm(range(num_scenes), desc="between views", disable=not progress):
        scene = heldout_scene(i, seed, relative, pipe.config.image_size, frames, elevation_deg, world)
        gt, _ = _between_ground_truth(scene, between)
        generated = None
        if any(m in ("nearest_view", "recon4d") for m in methods):
            generated = generate(pipe, scene, "tiny_sv4d", seed=sampling_seed(seed, i), steps=steps).cpu()
        for method in methods:
            images = between_view_images(
                pipe, scene, method, between, sampling_seed(seed, i), steps, fit_config, generated
            )
            result = metrics.evaluate_matrix(
                images,
                gt.rgb,
                gt.alpha,
                gt.depth,
                gt.extrinsics,
                gt.intrinsics,
                views=list(range(len(between))),
                input_depth=scene.depth[:, 0],  # co-visible with the scene's input view, not between view 0
                input_extrinsics=scene.extrinsics[0],
            )
            for k, x in result.items():
                if k != "per_view":
                    sums[method].setdefault(k, []).append(x)
    return {m: {k: _mean(xs) for k, xs in values.items()} for m, values in sums.items()}


def between_views_table(between: dict, metrics_: Sequence[str] = TABLE_METRICS) -> str:
    """`evaluate_between_views`' result as one Markdown table: the means per method."""
    methods = list(between)
    keys = [k for k in metrics_ if all(k in between[m] for m in methods)]
    lines = ["| method (between views) | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    lines += [f"| {m} | " + " | ".join(f"{between[m][k]:.4f}" for k in keys) + " |" for m in methods]
    return "\n".join(lines)
