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
        ):
            assert key in values and isinstance(values[key], float)
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
    assert fig.exists()
    printed = capsys.readouterr().out
    assert "| tiny_sv4d |" in printed and "beats_copy_input_every_view:" in printed
    assert main(args) == 2  # existing outputs are kept unless --overwrite
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0]
    assert main(args + ["--overwrite", "--device", "tpu"]) == 2  # checked before any work
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--device must be" in err[0]


def _summary(model_psnr=(16.0, 16.5), model_corr=0.6, ablated_corr=0.3, model_err=0.2, ablated_err=0.3):
    """A hand-made `evaluate` summary: 2 novel views, the model's PSNRs given, SSIM/IoU above copy's."""

    def method(psnrs, ssim, iou, corr, err):
        values = {"psnr_db": sum(psnrs) / 2, "ssim": ssim, "silhouette_iou": iou,
                  "multiview_consistency_correlation": corr, "multiview_consistency_error": err}  # fmt: skip
        for v, p in enumerate(psnrs, start=1):
            values.update({f"psnr_db_view{v}": p, f"ssim_view{v}": ssim, f"silhouette_iou_view{v}": iou})
        return values

    return {
        "tiny_sv4d": method(model_psnr, 0.6, 0.7, model_corr, model_err),
        "copy_input": method((15.5, 15.5), 0.5, 0.6, 0.9, 0.25),
        "tiny_sv4d_no_view_attention": method((14.0, 14.0), 0.4, 0.5, ablated_corr, ablated_err),
    }


def test_quality_bar_needs_every_view_and_both_consistency_measures():
    assert evaluation.quality_bar(_summary()) == {
        "beats_copy_input_every_view": True, "view_attention_adds_consistency": True}  # fmt: skip
    assert not evaluation.quality_bar(_summary(model_psnr=(15.4, 16.5)))["beats_copy_input_every_view"]
    assert not evaluation.quality_bar(_summary(ablated_corr=0.7))["view_attention_adds_consistency"]
    assert not evaluation.quality_bar(_summary(ablated_err=0.1))["view_attention_adds_consistency"]
    assert evaluation.quality_bar({"copy_input": {}}) == {}


def test_markdown_table_lists_every_method_and_view():
    table = evaluation.markdown_table(_summary())
    lines = table.splitlines()
    assert lines[0].startswith("| method | psnr_db | ssim | silhouette_iou |")
    assert "| tiny_sv4d | 16.2500 | 0.6000 | 0.7000 |" in table
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
                    "silhouette_recall", "temporal_flicker", "multiview_consistency_error"):  # fmt: skip
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
