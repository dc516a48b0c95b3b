"""Held-out evaluation: scenes are disjoint from training, methods and ablations, JSON and figure outputs."""

import json
import math

import pytest
import torch

from sv4d_kit import evaluation, synthetic
from sv4d_kit.checks import KitInputError
from sv4d_kit.cli import main
from sv4d_kit.models.checkpoint import build_tiny_models
from sv4d_kit.pipeline import SV4DPipeline

QUALITY_KEYS = ("sharpness_ratio", "color_ratio", "background_speckle", "psnr_covisible_db")  # issue #20


@pytest.fixture(scope="module")
def pipe():
    unet, cond, vae = build_tiny_models("sv4d2_8views", seed=1)
    return SV4DPipeline(
        unet, cond, vae, variant="sv4d2_8views", frames_per_chunk=2, num_views=2, image_size=32
    )


def test_heldout_scenes_are_disjoint_from_training_and_deterministic():
    a = evaluation.heldout_scene(0, 0, [0, 120, 240], 32, 3)
    b = evaluation.heldout_scene(0, 0, [0, 120, 240], 32, 3)
    c = evaluation.heldout_scene(1, 0, [0, 120, 240], 32, 3)
    assert a.seed >= synthetic.HELDOUT_SEED_START and a.seed != c.seed
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert a.images.shape == (3, 3, 3, 32, 32) and a.depth.shape == (3, 3, 1, 32, 32)
    assert [round((x - a.azimuths_deg[0]) % 360) for x in a.azimuths_deg] == [0, 120, 240]


def test_heldout_scenes_come_from_the_chosen_world():
    patterned = evaluation.heldout_scene(0, 0, [0, 120], 24, 2)
    simple = evaluation.heldout_scene(0, 0, [0, 120], 24, 2, world="simple")
    assert patterned.world == synthetic.DEFAULT_WORLD == "patterned" and simple.world == "simple"
    assert simple.seed == patterned.seed and not torch.equal(simple.images, patterned.images)
    assert simple.make_scene() == synthetic.make_scene(simple.seed, world="simple")
    with pytest.raises(KitInputError, match="world"):
        evaluation.heldout_scene(0, 0, [0, 120], 24, 2, world="toys")


def test_evaluate_reports_every_method_and_view(pipe):
    summary, examples = evaluation.evaluate(
        pipe, num_scenes=1, frames=2, steps=1, progress=False, keep_examples=1
    )
    assert set(summary) == set(evaluation.METHODS)
    for values in summary.values():
        for key in (
            "psnr_db",
            "ssim",
            "psnr_in_mask_db",
            "silhouette_iou",
            "silhouette_precision",
            "silhouette_recall",
            "temporal_flicker",
            "multiview_consistency_error",
            "multiview_consistency_correlation",
            "psnr_db_view1",
            "psnr_db_view2",
            *QUALITY_KEYS,
            *(f"{k}_view{v}" for k in QUALITY_KEYS for v in (1, 2)),
        ):
            assert key in values and isinstance(values[key], float), key
    # a copy of the input view is not the novel view, even on the surface both views see
    copy = summary["copy_input"]
    assert 0 <= copy["background_speckle"] <= 1 and copy["psnr_covisible_db"] < evaluation.metrics.MAX_PSNR_DB
    assert len(examples) == 1
    image = evaluation.comparison_image(examples, methods=("tiny_sv4d", "copy_input"), factor=2)
    assert image.shape == (2 * 2 * 4 * 32, 2 * 3 * 32, 3)  # 2 frames x 4 rows, 3 views across, enlarged 2x


def test_evaluate_one_frame(pipe):
    # one input frame is generated as a still clip of one chunk; its first frame is what gets compared
    summary, _ = evaluation.evaluate(
        pipe, num_scenes=1, frames=1, steps=1, methods=("tiny_sv4d",), progress=False
    )
    assert math.isfinite(summary["tiny_sv4d"]["psnr_db_view1"])


def test_copy_input_baseline_is_the_input(pipe):
    scene = evaluation.heldout_scene(0, 3, pipe.default_azimuths(), 32, 2)
    copied = evaluation.generate(pipe, scene, "copy_input", seed=0)
    assert torch.equal(copied[:, 2], scene.images[:, 0])


def test_ablations_change_the_output_and_restore_the_switches(pipe):
    scene = evaluation.heldout_scene(0, 0, pipe.default_azimuths(), 32, 2)
    full = evaluation.generate(pipe, scene, "tiny_sv4d", seed=0, steps=2)
    no_view = evaluation.generate(pipe, scene, "tiny_sv4d_no_view_attention", seed=0, steps=2)
    no_frame = evaluation.generate(pipe, scene, "tiny_sv4d_no_frame_attention", seed=0, steps=2)
    assert not torch.equal(full, no_view) and not torch.equal(full, no_frame)
    assert torch.equal(full, evaluation.generate(pipe, scene, "tiny_sv4d", seed=0, steps=2))


@pytest.mark.parametrize("bad", [{"num_scenes": 0}, {"frames": 0}, {"methods": ["magic"]}])
def test_bad_arguments(pipe, bad):
    with pytest.raises(KitInputError):
        evaluation.evaluate(pipe, **{"num_scenes": 1, **bad})


def test_evaluate_command(pipe, tmp_path, capsys):
    pipe.save_pretrained(tmp_path / "model")
    out, fig = tmp_path / "eval.json", tmp_path / "eval.png"
    args = [
        "evaluate",
        "--scenes",
        "1",
        "--seed",
        "2",
        "--json",
        str(out),
        "--model",
        str(tmp_path / "model"),
        "--frames",
        "2",
        "--steps",
        "1",
        "--figure",
        str(fig),
        "--no-progress",
    ]
    assert main(args) == 0
    data = json.loads(out.read_text())
    assert set(data) == set(evaluation.METHODS)
    assert all(
        isinstance(v, float) and (math.isfinite(v) or math.isnan(v))
        for m in data.values()
        for v in m.values()
    )
    for values in data.values():  # every method, as means and per novel view
        assert all(k in values and f"{k}_view1" in values and f"{k}_view2" in values for k in QUALITY_KEYS)
    assert fig.exists()
    printed = capsys.readouterr().out
    assert "| tiny_sv4d |" in printed and "iou_above_copy_every_view:" in printed
    header = next(line for line in printed.splitlines() if line.startswith("| method | psnr_db"))
    assert all(f" {k} |" in header for k in QUALITY_KEYS)
    assert "view 1: sharpness / colour / speckle / PSNR co-visible" in printed
    assert main(args) == 2  # existing outputs are kept unless --overwrite
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert main(args + ["--overwrite", "--device", "tpu"]) == 2  # checked before any work
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device must be" in err[0]


def _summary(
    model_iou=(0.7, 0.7),
    model_corr=0.6,
    ablated_corr=0.3,
    model_err=0.2,
    ablated_err=0.3,
    model_psnr=15.2,
    sharpness=1.0,
    color=0.9,
    smoothed=0.85,
    speckle=0.005,
    covisible=18.0,
):
    """A hand-made `evaluate` summary: 2 novel views, the model's IoUs given, every measure inside the bar."""

    def method(psnr, ssim, ious, corr, err, sharp, col, speck, cov, smooth=1.0):
        values = {"psnr_db": psnr, "ssim": ssim, "silhouette_iou": sum(ious) / 2,
                  "multiview_consistency_correlation": corr, "multiview_consistency_error": err,
                  "sharpness_ratio": sharp, "color_ratio": col, "smoothed_color_ratio": smooth,
                  "background_speckle": speck,
                  "psnr_covisible_db": cov}  # fmt: skip
        for v, iou in enumerate(ious, start=1):
            values.update({f"psnr_db_view{v}": psnr, f"ssim_view{v}": ssim, f"silhouette_iou_view{v}": iou})
        return values

    return {
        "tiny_sv4d": method(
            model_psnr, 0.6, model_iou, model_corr, model_err, sharpness, color, speckle, covisible, smoothed
        ),
        "copy_input": method(15.5, 0.5, (0.6, 0.6), 0.9, 0.25, 1.0, 1.0, 0.0, 17.0),
        "tiny_sv4d_no_view_attention": method(14.0, 0.4, (0.5, 0.5), ablated_corr, ablated_err, 1, 1, 0, 16),
    }


def test_quality_bar_checks_every_measure_of_the_goal():
    bar = evaluation.quality_bar(_summary())
    assert bar == dict.fromkeys(("sharp", "colourful", "colourful_regions", "clean_background",
                                 "iou_above_copy_every_view", "covisible_psnr_above_copy", "psnr_near_copy",
                                 "view_attention_adds_consistency"), True)  # fmt: skip
    failing = {
        "sharp": [dict(sharpness=0.7), dict(sharpness=1.3)],  # blur, noise
        "colourful": [dict(color=0.79)],
        "colourful_regions": [dict(smoothed=0.79)],  # colourful pixels, grey regions: colour noise
        "clean_background": [dict(speckle=0.011)],
        "iou_above_copy_every_view": [dict(model_iou=(0.59, 0.8)), dict(model_iou=(0.8, 0.6))],
        "covisible_psnr_above_copy": [dict(covisible=17.0)],
        "psnr_near_copy": [dict(model_psnr=14.9)],
        "view_attention_adds_consistency": [dict(ablated_corr=0.7), dict(ablated_err=0.1)],
    }
    for name, cases in failing.items():
        for case in cases:
            bar = evaluation.quality_bar(_summary(**case))
            assert not bar[name], (name, case)
            assert all(passed for other, passed in bar.items() if other != name), (name, case)
    assert evaluation.quality_bar(_summary(model_psnr=15.0))["psnr_near_copy"]  # exactly 0.5 dB below
    assert evaluation.quality_bar({"copy_input": {}}) == {}
    old = _summary()  # a summary written before smoothed_color_ratio existed: that check is skipped
    del old["tiny_sv4d"]["smoothed_color_ratio"]
    assert "colourful_regions" not in evaluation.quality_bar(old)


def test_markdown_table_adds_the_quality_measures_when_present():
    summary = _summary()
    for values in summary.values():
        values.update({"sharpness_ratio": 0.8, "color_ratio": 0.9, "background_speckle": 0.01,
                       "psnr_covisible_db": 18.0})  # fmt: skip
        for v in (1, 2):
            values.update({f"sharpness_ratio_view{v}": 0.75, f"color_ratio_view{v}": 0.5,
                           f"background_speckle_view{v}": 0.02, f"psnr_covisible_db_view{v}": 17.25})  # fmt: skip
    table = evaluation.markdown_table(summary)
    lines = table.splitlines()
    assert lines[0].endswith(
        "| sharpness_ratio | color_ratio | smoothed_color_ratio | background_speckle | psnr_covisible_db |"
    )
    row = "| tiny_sv4d | 15.2000 | 0.6000 | 0.7000 | 0.2000 | 0.6000 | 0.8000 | 0.9000 | 0.8500 | 0.0100 | 18.0000 |"
    assert row in table
    assert "| copy_input | 0.750 / 0.500 / 0.020 / 17.25 | 0.750 / 0.500 / 0.020 / 17.25 |" in table
    assert len(lines) == 2 + 3 + 1 + 2 + 3 + 1 + 2 + 3


def test_markdown_table_lists_every_method_and_view():
    table = evaluation.markdown_table(_summary())
    lines = table.splitlines()
    assert lines[0].startswith("| method | psnr_db | ssim | silhouette_iou |")
    assert "| tiny_sv4d | 15.2000 | 0.6000 | 0.7000 |" in table
    assert "| copy_input | 15.50 / 0.500 / 0.600 | 15.50 / 0.500 / 0.600 |" in table
    assert len(lines) == 2 + 3 + 1 + 2 + 3


# --- between the generated views -----------------------------------------------------------------------------------

FAST_FIT = dict(num_points=300, carve_resolution=24, steps_first=20, steps=4)


def test_between_azimuths_are_half_way_around_the_circle():
    assert evaluation.between_azimuths([0, 72, 144, 216, 288]) == [36, 108, 180, 252, 324]
    assert evaluation.between_azimuths([0, 120, 240]) == [60, 180, 300]
    assert evaluation.between_azimuths([0]) == [180]
    assert evaluation.between_azimuths([300, 0, 60]) == [30, 180, 330]


def test_nearest_view_at_the_generated_azimuths_is_the_generated_view(pipe):
    scene = evaluation.heldout_scene(0, 0, pipe.default_azimuths(), 32, 2)
    generated = evaluation.generate(pipe, scene, "tiny_sv4d", seed=0, steps=1)
    relative = pipe.default_azimuths()  # 0, 120, 240
    assert torch.equal(evaluation.nearest_view(generated, relative, relative), generated)
    picked = evaluation.nearest_view(generated, relative, [60.0, 100.0, 300.0, 359.0])
    assert torch.equal(picked, generated[:, [0, 1, 2, 0]])  # a tie goes to the view before the query
    with pytest.raises(KitInputError):
        evaluation.nearest_view(generated, [0.0, 120.0], [60.0])


def test_evaluate_between_views_reports_every_method(pipe):
    from sv4d_kit.recon4d import FitConfig

    between = evaluation.evaluate_between_views(
        pipe, num_scenes=1, seed=0, frames=2, steps=1, progress=False, fit_config=FitConfig(**FAST_FIT)
    )
    assert list(between) == list(evaluation.BETWEEN_METHODS)
    for values in between.values():
        for key in ("psnr_db", "ssim", "psnr_in_mask_db", "silhouette_iou", "silhouette_precision",
                    "silhouette_recall", "temporal_flicker", "multiview_consistency_error",
                    *QUALITY_KEYS):  # fmt: skip
            assert key in values and isinstance(values[key], float) and math.isfinite(values[key]), key
    # the warp baseline only draws what the input view saw: its silhouette is mostly inside the true one
    assert between["warp_baseline"]["silhouette_precision"] > between["warp_baseline"]["silhouette_recall"]
    table = evaluation.between_views_table(between)
    assert "| warp_baseline |" in table and "| recon4d_from_gt_views |" in table
    with pytest.raises(KitInputError):
        evaluation.evaluate_between_views(pipe, num_scenes=1, seed=0, frames=2, methods=["magic"])


def test_evaluate_command_between_views(pipe, tmp_path, capsys, monkeypatch):
    import functools

    from sv4d_kit.recon4d import FitConfig

    fast = functools.partial(evaluation.evaluate_between_views, fit_config=FitConfig(**FAST_FIT))
    monkeypatch.setattr(evaluation, "evaluate_between_views", fast)
    pipe.save_pretrained(tmp_path / "model")
    out = tmp_path / "eval.json"
    args = ["evaluate", "--scenes", "1", "--json", str(out), "--model", str(tmp_path / "model"),
            "--frames", "2", "--steps", "1", "--no-progress", "--between-views"]  # fmt: skip
    assert main(args) == 0
    data = json.loads(out.read_text())
    assert set(data) == {*evaluation.METHODS, "between_views"}
    assert set(data["between_views"]) == set(evaluation.BETWEEN_METHODS)
    assert all("psnr_db" in m and "silhouette_iou" in m for m in data["between_views"].values())
    printed = capsys.readouterr().out
    assert "| method (between views) |" in printed and "| nearest_view |" in printed
