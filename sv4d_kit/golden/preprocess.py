"""Golden checker for `golden_preprocess*` sets: the reference `preprocess_video` and `read_video` frames."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from sv4d_kit.golden import CaseResult, GoldenSet, compare
from sv4d_kit.preprocess import reference_preprocess, reference_read_video


def check(gset: GoldenSet, folder: Path) -> Iterator[CaseResult]:
    """For every case in the set's json: crop/resize its stored input frames with the case's W and ratio."""
    tensors = gset.tensors()
    for case, cfg in gset.meta["cases"].items():
        if cfg.get("remove_bg", False):
            yield CaseResult(
                f"{case}", False, float("nan"), "remove_bg=True cases need rembg; not reproducible"
            )
            continue
        frames = tensors[f"{case}.input_uint8_hwc"].numpy()
        if not np.array_equal(frames, np.round(frames)) or frames.min() < 0 or frames.max() > 255:
            yield CaseResult(f"{case}.input_uint8_hwc", False, float("nan"), "input is not uint8-valued")
            continue
        width = int(cfg.get("W", cfg.get("W=H")))
        height = int(cfg.get("H", width))
        out = reference_preprocess(
            frames.astype(np.uint8), W=width, image_frame_ratio=cfg.get("image_frame_ratio"), H=height
        )
        yield compare(f"{case}.output_uint8_hwc", out, tensors[f"{case}.output_uint8_hwc"], "exact")
        if f"{case}.read_video" in tensors:
            yield compare(
                f"{case}.read_video", reference_read_video(out), tensors[f"{case}.read_video"], "exact_math"
            )
