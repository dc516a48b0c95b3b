"""Golden check of a released checkpoint layout (`<variant>_checkpoint_layout.json`) against the kit's presets.

The full-size preset is built on the meta device (nothing allocated). Every checkpoint key must map to a kit tensor
of the same shape or be one of the tensors the reference never uses (`checkpoint.IGNORED`); every kit tensor must be
covered once; and the element counts must add up per prefix and in total.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from sv4d_kit.golden import CaseResult, GoldenSet
from sv4d_kit.models import checkpoint


def _count(name: str, actual: int, expected: int) -> CaseResult:
    return CaseResult(
        name, actual == expected, float(abs(actual - expected)), f"({actual:,} vs {expected:,})"
    )


def check(gset: GoldenSet, folder: Path) -> Iterator[CaseResult]:
    meta = gset.meta
    variant = meta.get("variant") or gset.name.removesuffix("_checkpoint_layout")
    unet, cond, vae = checkpoint.build_models(variant, device="meta")
    modules = {"unet": unet, "conditioner": cond, "vae": vae}
    layout = {k: v["shape"] for k, v in meta["tensors"].items()}
    report = checkpoint.compare_layout(layout, modules, len(vae.config.block_out_channels))

    ok = not (report["missing"] or report["unexpected"])
    yield CaseResult(
        "names",
        ok,
        float(len(report["missing"]) + len(report["unexpected"])),
        f"({report['mapped']} mapped, {report['ignored']} ignored on purpose"
        + (f"; {checkpoint._problems(report)})" if not ok else ")"),
    )
    yield CaseResult(
        "shapes", not report["misshaped"], float(len(report["misshaped"])), "; ".join(report["misshaped"][:3])
    )
    yield _count("num_tensors", len(layout), int(meta.get("num_tensors", len(layout))))
    total = report["mapped_elements"] + report["ignored_elements"]
    yield _count("total_elements", total, int(meta["total_elements"]))

    # Per prefix: the kit's own parameter counts against the layout's element counts.
    per_prefix = meta.get("elements_per_prefix", {})
    if "model.diffusion_model" in per_prefix:
        yield _count(
            "unet_parameters",
            sum(p.numel() for p in unet.state_dict().values()),
            per_prefix["model.diffusion_model"],
        )
    if "first_stage_model" in per_prefix:
        decoder = sum(t.numel() for k, t in vae.state_dict().items() if k.startswith("decoder."))
        yield _count("first_stage_decoder_parameters", decoder, per_prefix["first_stage_model"])
    cond_prefixes = [p for p in per_prefix if p.startswith("conditioner.")]
    if cond_prefixes:
        expected = sum(per_prefix[p] for p in cond_prefixes) - report["ignored_elements"]
        yield _count("conditioner_parameters", sum(t.numel() for t in cond.state_dict().values()), expected)
