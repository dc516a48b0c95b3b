"""Golden checker for `golden_unet*` sets: the kit UNet against the reference UNet's recorded calls."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors.torch import load_file

from sv4d_kit.golden import CaseResult, GoldenSet, compare
from sv4d_kit.models.embeddings import timestep_embedding
from sv4d_kit.models.unet import SV4DUNet

PREFIX = "model.diffusion_model."
# Name of a recorded sub-block -> the module of a transformer that receives/returns those tensors.
SUB_BLOCKS = {
    "spatial_block": "transformer_blocks.0",
    "camera_block": "time_mix_blocks.0",
    "motion_block": "motion_blocks.0",
}


def build_unet(meta: dict, tensors: dict[str, torch.Tensor]) -> SV4DUNet:
    """Build the UNet from a golden set's `network_config.params` and load its weights."""
    unet = SV4DUNet.from_reference_config(meta["network_config"]["params"])
    state = {k[len(PREFIX) :]: v for k, v in tensors.items() if k.startswith(PREFIX)}
    unet.load_state_dict(state, strict=True)
    return unet.eval()


def load_golden_unet(folder: Path, filename: str) -> SV4DUNet:
    """The tiny UNet of golden set `filename` (`golden_unet_tiny`, with or without extension) in eval mode."""
    stem = Path(filename).name.removesuffix(".json").removesuffix(".safetensors")
    meta = json.loads((Path(folder) / f"{stem}.json").read_text())
    return build_unet(meta, load_file(str(Path(folder) / f"{stem}.safetensors")))


def _case_inputs(tensors: dict[str, torch.Tensor], case: str) -> dict:
    prefix = f"{case}.in."
    inputs = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
    inputs["num_video_frames"] = int(inputs["num_video_frames"].reshape(-1)[0])
    return inputs


def _capture(unet: SV4DUNet, names: dict[str, str], subs: dict[str, str]) -> tuple[dict, list]:
    """Forward hooks: block outputs under `names` (module -> key), sub-block in/context/out under `subs`."""
    got: dict[str, torch.Tensor] = {}
    handles = []
    modules = dict(unet.named_modules())
    for module_name, key in names.items():
        if module_name not in modules:
            continue  # reported as "not captured"
        handles.append(
            modules[module_name].register_forward_hook(lambda m, a, o, key=key: got.setdefault(key, o))
        )

    def sub_hook(module, args, kwargs, output, key):
        if key + ".in" in got:  # only the first call (depth step 0)
            return
        got[key + ".in"] = args[0] if args else kwargs["x"]
        context = args[1] if len(args) > 1 else kwargs.get("context")
        if context is not None:
            got[key + ".context"] = context
        got[key + ".out"] = output

    for module_name, key in subs.items():
        if module_name not in modules:
            continue
        handles.append(
            modules[module_name].register_forward_hook(
                lambda m, a, kw, o, key=key: sub_hook(m, a, kw, o, key), with_kwargs=True
            )
        )
    return got, handles


def check(gset: GoldenSet, folder: Path) -> Iterator[CaseResult]:
    tensors = gset.tensors()
    unet = build_unet(gset.meta, tensors)
    cases = sorted(
        {
            m.group(1)
            for k in tensors
            if (m := re.match(r"^(.+?)\.in\.[^.]+$", k)) and not k.startswith(PREFIX)
        }
    )
    if not cases:
        yield CaseResult(f"{gset.name}/cases", False, float("nan"), "no <case>.in.* tensors")
        return
    for case in cases:
        inputs = _case_inputs(tensors, case)
        # Which block outputs and sub-block tensors this case records.
        names = {}
        for key in tensors:
            if key.startswith(f"{case}.block."):
                names[key[len(f"{case}.block.") :]] = key
        subs = {}
        for key in tensors:
            m = re.match(rf"^{re.escape(case)}\.sub\.(.+)\.({'|'.join(SUB_BLOCKS)})\.(in|context|out)$", key)
            if m:
                subs[f"{m.group(1)}.{SUB_BLOCKS[m.group(2)]}"] = f"{case}.sub.{m.group(1)}.{m.group(2)}"
        got, handles = _capture(unet, names, subs)
        with torch.no_grad():
            out = unet(**inputs)
        for h in handles:
            h.remove()

        yield compare(f"{case}.out", out, tensors[f"{case}.out"], "unet")
        for key in sorted(
            k for k in tensors if k.startswith(f"{case}.block.") or k.startswith(f"{case}.sub.")
        ):
            if key not in got:
                yield CaseResult(key, False, float("nan"), "not captured")
            else:
                yield compare(key, got[key], tensors[key], "unet")

        # Embeddings: time_embed(sinusoids), label_emb(y), and their sum.
        emb_keys = [k for k in tensors if k.startswith(f"{case}.emb.")]
        if emb_keys:
            with torch.no_grad():
                t_emb = timestep_embedding(inputs["timesteps"], unet.config.model_channels)
                emb = {
                    "time_embed_out": unet.time_embed(t_emb),
                    "label_emb_out": unet.label_emb(inputs["y"]),
                    "emb": unet.embed(inputs["timesteps"], inputs["y"]),
                }
            for key in sorted(emb_keys):
                part = key[len(f"{case}.emb.") :]
                if part in emb:
                    yield compare(key, emb[part], tensors[key], "unet")
                else:
                    yield CaseResult(key, False, float("nan"), "unknown embedding tensor")

        yield from _invariants(unet, inputs, out, gset.meta.get("cases", {}).get(case, {}), case)


def _invariants(
    unet: SV4DUNet, inputs: dict, out: torch.Tensor, recorded: dict, case: str
) -> Iterator[CaseResult]:
    """The json's recorded invariants: indicator and cond_motion are inert, cond_view is not."""
    gen = torch.Generator().manual_seed(0)
    variants = {}
    if recorded.get("output_identical_when_image_only_indicator_flipped"):
        variants["invariant.image_only_indicator_flipped"] = dict(
            inputs, image_only_indicator=1.0 - inputs["image_only_indicator"]
        )
    if recorded.get("output_identical_when_cond_motion_replaced"):
        variants["invariant.cond_motion_replaced"] = dict(
            inputs, cond_motion=torch.randn(inputs["cond_motion"].shape, generator=gen)
        )
    for name, kwargs in variants.items():
        with torch.no_grad():
            yield compare(f"{case}.{name}", unet(**kwargs), out, "exact")
    if "max_abs_change_when_cond_view_replaced" in recorded:
        with torch.no_grad():
            changed = unet(**dict(inputs, cond_view=torch.randn(inputs["cond_view"].shape, generator=gen)))
        change = float((changed - out).abs().max())
        reference_change = recorded["max_abs_change_when_cond_view_replaced"]
        yield CaseResult(
            f"{case}.invariant.cond_view_changes_output",
            change > 1e-3,
            change,
            f"(must change by > 1e-3; the reference changed by {reference_change:.3g})",
        )
