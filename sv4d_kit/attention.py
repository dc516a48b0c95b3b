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

Per-query maps: `attention_index` says where one query token (frame, view, y, x of the layer's H×W grid) sits in
a captured map and which tokens its keys are; `spatial_attention_map` (H, W), `view_attention` (V,) and
`frame_attention` (T,) read its weights, `query_attention` all three at one transformer, with the
`AttentionLayout` from `layer_layout`. `pipeline_attention` runs a pipeline and keeps the maps of one denoising
step. The quirk of the released 4-view model (`VIEW_QUIRK`): with `use_3d_attention=True` its "view" attention
attends over V = 4 consecutive pixels (raster order) of one view and frame, a 1×4 run of one row where the width
is divisible by 4, not over the 4 views.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from sv4d_kit import checks
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


# ----------------------------------------------------------------------------------------------------------------
# From captured probabilities to per-query maps
#
# Token layouts inside one `SpatialViewFrameTransformer` (frames in (b t v) order, pixel p = y*W + x of the layer's
# H×W grid; B is 2 when the sampler runs the [uncond; cond] pair, 1 when guidance is off):
#   spatial  row (b*T + t)*V + v,  query p,  keys: the H*W pixels of that frame and view
#   frame    row (b*V + v)*HW + p, query t,  keys: the T frames of that view and pixel
#   view, 8-view layout (use_3d_attention=False)
#            row (b*T + t)*HW + p, query v,  keys: the V views of that frame and pixel
#   view, sv4d2 layout (use_3d_attention=True)
#            the transformer flattens (b, v, p) to f = (b*V + v)*HW + p and the block cuts that flat index into
#            groups of V consecutive entries: row (f // V)*T + t, query f % V, keys f // V * V + k for k < V,
#            i.e. V neighbouring pixels in raster order of one view at one frame (see `VIEW_QUIRK`).

VIEW_QUIRK = (
    "In the sv4d2 layout (use_3d_attention=True, the released 4-view model) the 'view' (camera) attention does not "
    "attend over views: the transformer lays the tokens out in (b, view, pixel) order with the frames as the "
    "sequence and tells the block timesteps=V, so the block cuts the flattened (b, view, y, x) index into groups "
    "of V consecutive entries and attends within each group, separately for each frame. With V = 4 and a latent "
    "width divisible by 4 (72, 36, 18 px at 576 px) a query attends over the 1×4 run of pixels x // 4 * 4 … "
    "x // 4 * 4 + 3 of its own row, view and frame; where H*W is not divisible by V (the 9×9 middle level) groups "
    "wrap to the next row and can straddle two views. The 8-view model (use_3d_attention=False) attends over the "
    "V views of one pixel and frame, as the name says."
)


@dataclass(frozen=True)
class AttentionLayout:
    """The token grid of one transformer: B videos (2 with guidance: [uncond; cond]), T frames, V views, H×W."""

    batch: int
    frames: int
    views: int
    height: int
    width: int
    use_3d_attention: bool = False

    @property
    def pixels(self) -> int:
        return self.height * self.width


@dataclass(frozen=True)
class AttentionIndex:
    """Where one query sits in a captured map: probs[row, :, query, :] are its weights over `keys`, and key k is
    the token (b, t, v, y, x) `keys[k]`."""

    row: int
    query: int
    keys: tuple[tuple[int, int, int, int, int], ...]


@dataclass
class QueryAttention:
    """The three attention kinds of one query token (b, t, v, y, x) at one layer, averaged over heads unless
    one head was asked for.

    spatial (H, W): over the pixels of the query's own frame and view; view (V,): over the view block's V keys,
    `view_keys` naming each key's (b, t, v, y, x) (views of the query pixel in the 8-view layout, neighbouring
    pixels of the query view in the sv4d2 layout, see `VIEW_QUIRK`); frame (T,): over the T frames of the query
    view and pixel. A kind that was not captured is None.
    """

    layer: str
    layout: AttentionLayout
    batch: int
    frame: int
    view: int
    y: int
    x: int
    spatial: torch.Tensor | None
    view_weights: torch.Tensor | None
    view_keys: tuple[tuple[int, int, int, int, int], ...]
    frame_weights: torch.Tensor | None

    @property
    def views_are_pixels(self) -> bool:
        """Whether the view block's keys are neighbouring pixels of one view (the sv4d2 quirk), not views."""
        return self.layout.use_3d_attention


def _query(layout: AttentionLayout, frame, view, y, x, batch) -> tuple[int, int, int, int, int]:
    if not isinstance(layout, AttentionLayout):
        raise KitInputError(f"layout must be an AttentionLayout, got {type(layout).__name__}")
    B, T, V, H, W = layout.batch, layout.frames, layout.views, layout.height, layout.width
    b = checks.integer("batch", batch, -B, B - 1) % B
    t = checks.integer("frame", frame, 0, T - 1)
    v = checks.integer("view", view, 0, V - 1)
    yy = checks.integer("y", y, 0, H - 1)
    xx = checks.integer("x", x, 0, W - 1)
    return b, t, v, yy, xx


def attention_index(
    kind: str, layout: AttentionLayout, frame: int, view: int, y: int, x: int, batch: int = -1
) -> AttentionIndex:
    """Where the query token (batch, frame, view, y, x) of the layer's grid sits in a captured `kind` map.

    `view` counts the V generated views the UNet sees (0 … V-1: image-matrix views 1 … V; the input view is not
    in the UNet); `batch` -1 is the last video, the conditional half when guidance runs [uncond; cond].
    Bad kinds or indices raise KitInputError.
    """
    if kind not in ATTENTION_KINDS:
        raise KitInputError(f"kind must be one of {tuple(ATTENTION_KINDS)}, got {kind!r}")
    b, t, v, yy, xx = _query(layout, frame, view, y, x, batch)
    T, V, W, HW = layout.frames, layout.views, layout.width, layout.pixels
    p = yy * W + xx
    if kind == "spatial":
        keys = tuple((b, t, v, k // W, k % W) for k in range(HW))
        return AttentionIndex((b * T + t) * V + v, p, keys)
    if kind == "frame":
        keys = tuple((b, k, v, yy, xx) for k in range(T))
        return AttentionIndex((b * V + v) * HW + p, t, keys)
    if not layout.use_3d_attention:
        keys = tuple((b, t, k, yy, xx) for k in range(V))
        return AttentionIndex((b * T + t) * HW + p, v, keys)
    flat = (b * V + v) * HW + p  # the (b v hw) flattening, cut into groups of V consecutive entries
    group = flat // V
    keys = []
    for k in range(V):
        kb, rest = divmod(group * V + k, V * HW)
        kv, kp = divmod(rest, HW)
        keys.append((kb, t, kv, kp // W, kp % W))
    return AttentionIndex(group * T + t, flat % V, tuple(keys))


def _check_probs(name: str, probs, rows: int, keys: int) -> torch.Tensor:
    if (
        not isinstance(probs, torch.Tensor)
        or probs.ndim != 4
        or probs.shape[0] != rows
        or probs.shape[-1] != keys
    ):
        shape = tuple(probs.shape) if isinstance(probs, torch.Tensor) else type(probs).__name__
        raise KitInputError(
            f"{name} must have shape ({rows}, heads, queries, {keys}) for this layout, got {shape}"
        )
    return probs


def query_weights(
    probs: torch.Tensor,
    kind: str,
    layout: AttentionLayout,
    frame: int,
    view: int,
    y: int,
    x: int,
    batch: int = -1,
    head: int | None = None,
) -> tuple[torch.Tensor, AttentionIndex]:
    """One query's attention weights over its keys in a captured `kind` map (N, heads, queries, keys):
    the mean over heads, or head `head`. -> ((keys,) float32, its `AttentionIndex`)"""
    index = attention_index(kind, layout, frame, view, y, x, batch)
    B, T, V, HW = layout.batch, layout.frames, layout.views, layout.pixels
    rows, keys = {"spatial": (B * T * V, HW), "view": (B * T * HW, V), "frame": (B * V * HW, T)}[kind]
    probs = _check_probs(f"{kind} probs", probs, rows, keys)
    weights = probs[index.row, :, index.query].float()  # (heads, keys)
    if head is None:
        return weights.mean(0), index
    return weights[checks.integer("head", head, 0, probs.shape[1] - 1)], index


def spatial_attention_map(probs, layout, frame, view, y, x, batch=-1, head=None) -> torch.Tensor:
    """The spatial attention of the query pixel over the pixels of its own frame and view. -> (H, W)"""
    weights, _ = query_weights(probs, "spatial", layout, frame, view, y, x, batch, head)
    return weights.view(layout.height, layout.width)


def view_attention(probs, layout, frame, view, y, x, batch=-1, head=None):
    """The view block's attention of the query over its V keys: ((V,), keys (b, t, v, y, x) each).

    8-view layout: the V views at the query's pixel and frame. sv4d2 layout: V neighbouring pixels (see
    `VIEW_QUIRK`), so read `keys` to see which."""
    weights, index = query_weights(probs, "view", layout, frame, view, y, x, batch, head)
    return weights, index.keys


def frame_attention(probs, layout, frame, view, y, x, batch=-1, head=None) -> torch.Tensor:
    """The frame block's attention of the query over the T frames at its view and pixel. -> (T,)"""
    weights, _ = query_weights(probs, "frame", layout, frame, view, y, x, batch, head)
    return weights


def transformer_layers(unet: nn.Module) -> dict[str, int]:
    """The UNet's transformers (`SpatialViewFrameTransformer`) by name, in forward order, with the downsampling
    factor of their grid (1: the latent's resolution, 2: half of it, ...)."""
    from sv4d_kit.models.resnet import Downsample, Upsample
    from sv4d_kit.models.transformer import SpatialViewFrameTransformer

    found, ds = {}, 1
    blocks = [(f"input_blocks.{i}", b) for i, b in enumerate(getattr(unet, "input_blocks", []))]
    blocks += [("middle_block", unet.middle_block)] if hasattr(unet, "middle_block") else []
    blocks += [(f"output_blocks.{i}", b) for i, b in enumerate(getattr(unet, "output_blocks", []))]
    for prefix, block in blocks:
        for j, layer in enumerate(block):
            if isinstance(layer, SpatialViewFrameTransformer):
                found[f"{prefix}.{j}"] = ds
            elif isinstance(layer, Downsample):
                ds *= 2
            elif isinstance(layer, Upsample):
                ds //= 2
    if not found:
        raise KitInputError("the model has no SpatialViewFrameTransformer")
    return found


def layer_layout(
    maps: dict[str, torch.Tensor], layer: str, frames: int, views: int, use_3d_attention: bool, block: int = 0
) -> AttentionLayout:
    """The `AttentionLayout` of transformer `layer` (e.g. "input_blocks.1.1") read off its captured maps, given the
    UNet's T frames and V views: B from the row count, H = W from the key count (the pipeline's latents are
    square)."""
    frames = checks.integer("frames", frames, minimum=1)
    views = checks.integer("views", views, minimum=1)
    names = {kind: f"{layer}.{ATTENTION_KINDS[kind]}.{block}.attn1" for kind in ATTENTION_KINDS}
    present = {kind: maps[n] for kind, n in names.items() if n in maps}
    if not present:
        raise KitInputError(
            f"no captured map of layer {layer!r} (block {block}); captured: {sorted(maps)[:6]}"
        )
    kind, probs = next(iter(present.items()))
    n, keys = probs.shape[0], probs.shape[-1]
    if kind == "spatial":
        hw, batch = keys, n // (frames * views) if n % (frames * views) == 0 else 0
    else:  # view: (B*T*HW) rows, frame: (B*V*HW) rows; guess B from B*HW by trying squares
        per = frames if kind == "view" else views
        batch, hw = 0, 0
        for b in (1, 2, 3, 4):
            side = math.isqrt(n // (per * b)) if n % (per * b) == 0 else 0
            if side and side * side * per * b == n:
                batch, hw = b, side * side
                break
    side = math.isqrt(hw)
    if batch < 1 or side * side != hw:
        raise KitInputError(
            f"the {kind} map of {layer!r} has shape {tuple(probs.shape)}, which does not fit T={frames}, "
            f"V={views} on a square grid"
        )
    return AttentionLayout(batch, frames, views, side, side, bool(use_3d_attention))


def query_attention(
    maps: dict[str, torch.Tensor],
    layer: str,
    layout: AttentionLayout,
    frame: int,
    view: int,
    y: int,
    x: int,
    batch: int = -1,
    head: int | None = None,
    block: int = 0,
) -> QueryAttention:
    """The spatial, view and frame attention of one query at transformer `layer` (its depth step `block`) from
    `capture_attention`'s maps; kinds that were not captured are None."""
    _query(layout, frame, view, y, x, batch)
    found = {}
    for kind, blocks in ATTENTION_KINDS.items():
        name = f"{layer}.{blocks}.{block}.attn1"
        found[kind] = (
            query_weights(maps[name], kind, layout, frame, view, y, x, batch, head) if name in maps else None
        )
    if not any(found.values()):
        raise KitInputError(f"no captured map of layer {layer!r} (block {block})")
    spatial, view_w, frame_w = found["spatial"], found["view"], found["frame"]
    return QueryAttention(
        layer=layer,
        layout=layout,
        batch=int(batch) % layout.batch,
        frame=int(frame),
        view=int(view),
        y=int(y),
        x=int(x),
        spatial=None if spatial is None else spatial[0].view(layout.height, layout.width),
        view_weights=None if view_w is None else view_w[0],
        view_keys=() if view_w is None else view_w[1].keys,
        frame_weights=None if frame_w is None else frame_w[0],
    )


# ----------------------------------------------------------------------------------------------------------------
# Capturing attention during a pipeline run


@dataclass
class PipelineAttention:
    """What `pipeline_attention` captured: the maps of one denoising step of the first chunk, the layouts of the
    captured transformers, and the generation (images (T_all, V+1, 3, H, W), view 0 the input; cameras as the
    pipeline returns them)."""

    maps: dict[str, torch.Tensor]
    layouts: dict[str, AttentionLayout]
    images: torch.Tensor
    cameras: dict
    step: int
    sigma: float

    @property
    def layers(self) -> list[str]:
        return list(self.layouts)

    def query(
        self, layer: str, frame: int, view: int, y: int, x: int, head: int | None = None
    ) -> QueryAttention:
        """`query_attention` of the conditional video at a captured layer."""
        if layer not in self.layouts:
            raise KitInputError(f"layer must be one of the captured layers {self.layers}, got {layer!r}")
        return query_attention(self.maps, layer, self.layouts[layer], frame, view, y, x, -1, head)


def default_layers(unet: nn.Module, latent_size: int, max_side: int = 16) -> list[str]:
    """The transformers whose grid side is at most `max_side` (the highest resolution first): small enough to hold
    an (H*W)² spatial map per frame and view. At least the coarsest one."""
    layers = transformer_layers(unet)
    sides = {name: max(1, latent_size // ds) for name, ds in layers.items()}
    chosen = [n for n, s in sorted(sides.items(), key=lambda kv: -kv[1]) if s <= max_side]
    return chosen or [min(sides, key=sides.get)]


def pipeline_attention(
    pipe,
    frames: torch.Tensor,
    layers: Iterable[str] | None = None,
    step: int = -1,
    elevation_deg: float = 10.0,
    azimuths_deg: Iterable[float] | None = None,
    seed: int = 0,
    steps: int | None = None,
) -> PipelineAttention:
    """Run the pipeline on `frames` and capture the spatial, view and frame attention of transformers `layers`
    (default `default_layers`) at denoising step `step` (-1: the last) of the first chunk, stored on the CPU.

    `azimuths_deg` (V+1 values, the input view's first; default the pipeline's) and `elevation_deg` as the
    pipeline takes them; `seed` seeds the sampler.
    """
    n_steps = pipe.sampling_options(num_inference_steps=steps)["num_inference_steps"]
    n_steps = checks.integer("steps", n_steps, minimum=1)
    step = checks.integer("step", step, -n_steps, n_steps - 1) % n_steps
    latent_size = pipe.config.image_size // pipe.vae_scale_factor
    layers = default_layers(pipe.unet, latent_size) if layers is None else [str(n) for n in layers]
    known = transformer_layers(pipe.unet)
    bad = [n for n in layers if n not in known]
    if bad or not layers:
        raise KitInputError(
            f"layers must be transformers of the UNet, some of {list(known)}, got {bad or layers}"
        )
    snapshot: dict = {}

    def keep(_pipe, i, sigma, tensors):
        if tensors["chunk"] == 0 and i == step:
            snapshot.update(maps=dict(maps), sigma=float(sigma))

    with capture_attention(pipe.unet, layers=layers, store_device="cpu") as maps:
        out = pipe(
            frames,
            elevations_deg=elevation_deg,
            azimuths_deg=None if azimuths_deg is None else list(azimuths_deg),
            num_inference_steps=n_steps,
            generator=torch.Generator().manual_seed(int(seed)),
            callback_on_step_end=keep,
            progress=False,
        )
    T, V = out.cameras["frames_per_chunk"], pipe.config.num_views
    layouts = {
        n: layer_layout(snapshot["maps"], n, T, V, pipe.unet.get_submodule(n).use_3d_attention)
        for n in layers
    }
    return PipelineAttention(snapshot["maps"], layouts, out.images, out.cameras, step, snapshot["sigma"])
