"""Capture the self-attention probabilities of an SV4D UNet's spatial, view and frame attention layers.

    with capture_attention(unet, kinds=("view",), layers=["input_blocks.1.1"]) as maps:
        unet(**inputs)
    maps["input_blocks.1.1.time_mix_blocks.0.attn1"]  # (batch*, heads, queries, keys)

Layer kinds and what one row of probabilities attends over:
- "spatial" (`transformer_blocks.*.attn1`): the H*W pixels of one frame; batch* = B*T*V, keys = H*W.
- "view" (`time_mix_blocks.*.attn1`, the reference "camera" attention): keys = V. In the 8-view layout
  (`use_3d_attention=False`) these are the V views of one (b, t, pixel), batch* = B*T*H*W. In the sv4d2
  layout (`use_3d_attention=True`) they are V neighbouring pixels of one view and frame (the reference's
  reshape), not views.
- "frame" (`motion_blocks.*.attn1`, the reference "motion" attention): the T time frames of one
  (b, view, pixel); batch* = B*V*H*W, keys = T.
Inside the block the chosen layers use the explicit softmax path; outside they are restored. If the UNet runs
more than once inside the block, the maps hold the last call's probabilities.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from sv4d_kit.checks import KitInputError
from sv4d_kit.models.transformer import CrossAttention

# Attention kind -> the ModuleList of a transformer whose blocks' attn1 is that kind of self-attention.
ATTENTION_KINDS = {"spatial": "transformer_blocks", "view": "time_mix_blocks", "frame": "motion_blocks"}


def attention_layers(
    unet: nn.Module, kinds: Iterable[str] = ("spatial", "view", "frame"), layers: Iterable[str] | None = None
) -> dict[str, CrossAttention]:
    """The self-attention modules (`...attn1`) of the given kinds, by name.

    `layers` (optional) keeps only names equal to one of its entries or under it (e.g. `"input_blocks.1.1"` or
    `"middle_block.1.motion_blocks.0.attn1"`).
    """
    kinds = tuple(kinds)
    bad = [k for k in kinds if k not in ATTENTION_KINDS]
    if bad or not kinds:
        raise KitInputError(f"kinds must be a non-empty subset of {tuple(ATTENTION_KINDS)}, got {kinds}")
    layers = None if layers is None else [str(name).rstrip(".") for name in layers]
    found = {}
    for name, module in unet.named_modules():
        parts = name.split(".")
        if not (isinstance(module, CrossAttention) and parts[-1] == "attn1" and len(parts) >= 3):
            continue
        if parts[-3] not in {ATTENTION_KINDS[k] for k in kinds}:
            continue
        if layers is not None and not any(name == p or name.startswith(p + ".") for p in layers):
            continue
        found[name] = module
    if not found:
        raise KitInputError(f"layers {layers} select no attention layer of kinds {kinds}")
    return found


@contextmanager
def capture_attention(
    unet: nn.Module,
    kinds: Iterable[str] = ("spatial", "view", "frame"),
    layers: Iterable[str] | None = None,
    store_device: torch.device | str | None = None,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield a dict that fills, during the block, with layer name -> attention probabilities (float32).

    `store_device` (e.g. "cpu") moves each map off the accelerator as it is captured.
    """
    selected = attention_layers(unet, kinds, layers)
    maps: dict[str, torch.Tensor] = {}

    def sink_for(name: str):
        def sink(probs: torch.Tensor) -> None:
            maps[name] = probs if store_device is None else probs.to(store_device)

        return sink

    for name, module in selected.items():
        module.prob_sink = sink_for(name)
    try:
        yield maps
    finally:
        for module in selected.values():
            module.prob_sink = None
