"""Tests of attention capture and of the explicit attention path of the UNet."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sv4d_kit.attention import attention_layers, capture_attention
from sv4d_kit.checks import KitInputError
from sv4d_kit.golden.unet import build_unet
from sv4d_kit.models.transformer import CrossAttention


def golden_unet(reference_dir: Path, **overrides):
    """The golden tiny UNet (its weights) with config overrides, and chunk1 inputs (B=2, T=2, V=3, 8x8)."""
    meta = json.loads((reference_dir / "golden_unet_tiny.json").read_text())
    meta["network_config"]["params"].update(overrides)
    tensors = load_file(str(reference_dir / "golden_unet_tiny.safetensors"))
    inputs = {k[len("chunk1.in.") :]: v for k, v in tensors.items() if k.startswith("chunk1.in.")}
    inputs["num_video_frames"] = int(inputs["num_video_frames"])
    return build_unet(meta, tensors), inputs


def test_explicit_path_matches_sdpa(reference_dir):
    unet, inputs = golden_unet(reference_dir)
    with torch.no_grad():
        fused = unet(**inputs)
        unet.set_attention_path("explicit")
        explicit = unet(**inputs)
        unet.set_attention_path("sdpa")
    assert all(m.explicit is False for m in unet.modules() if isinstance(m, CrossAttention))
    torch.testing.assert_close(explicit, fused, rtol=0, atol=1e-5)
    with pytest.raises(KitInputError, match="path"):
        unet.set_attention_path("flash")


@pytest.mark.parametrize("use_3d_attention", [False, True])
def test_captured_maps_are_distributions_of_the_right_shape(reference_dir, use_3d_attention):
    unet, inputs = golden_unet(reference_dir, use_3d_attention=use_3d_attention)
    b, t = inputs["context"].shape[:2]
    v = inputs["cond_view"].shape[0] // b
    with torch.no_grad():
        fused = unet(**inputs)
        with capture_attention(unet) as maps:
            captured = unet(**inputs)
    torch.testing.assert_close(captured, fused, rtol=0, atol=1e-5)
    assert all(m.prob_sink is None for m in unet.modules() if isinstance(m, CrossAttention))
    # one map per kind in every transformer
    assert len(maps) == 3 * len(attention_layers(unet, ["spatial"]))
    heads = {"input_blocks.1.1": 2, "middle_block.1": 4}  # 32 and 64 channels, 16 per head
    sizes = {"input_blocks.1.1": 8 * 8, "middle_block.1": 2 * 2}
    for prefix, hw in sizes.items():
        spatial = maps[f"{prefix}.transformer_blocks.0.attn1"]
        view = maps[f"{prefix}.time_mix_blocks.0.attn1"]
        frame = maps[f"{prefix}.motion_blocks.0.attn1"]
        h = heads[prefix]
        assert spatial.shape == (b * t * v, h, hw, hw)
        assert frame.shape == (b * v * hw, h, t, t)
        # 8-view layout: the V views of each (b, t, pixel); 3-D layout: V neighbouring rows of the (b v hw)
        # flattening for each time frame, B*V*HW/V*T = B*T*HW groups as well.
        assert view.shape == (b * t * hw, h, v, v)
        for probs in (spatial, view, frame):
            assert probs.dtype == torch.float32 and (probs >= 0).all()
            torch.testing.assert_close(probs.sum(-1), torch.ones(probs.shape[:-1]), rtol=0, atol=1e-5)
        assert spatial.std() > 1e-3 and view.std() > 1e-3 and frame.std() > 1e-3  # not uniform


def test_capture_filters_kinds_and_layers(reference_dir):
    unet, inputs = golden_unet(reference_dir)
    with torch.no_grad(), capture_attention(unet, kinds=("frame",), layers=["middle_block.1"]) as maps:
        unet(**inputs)
    assert list(maps) == ["middle_block.1.motion_blocks.0.attn1"]
    with pytest.raises(KitInputError, match="kinds"):
        attention_layers(unet, ["camera"])
    with pytest.raises(KitInputError, match="select no"):
        attention_layers(unet, ["spatial"], layers=["input_blocks.0"])


def test_capture_with_attention_chunking_gives_whole_maps(reference_dir):
    unet, inputs = golden_unet(reference_dir)
    with torch.no_grad():
        with capture_attention(unet, kinds=("view",)) as whole:
            unet(**inputs)
        unet.set_chunking(attention=7)
        with capture_attention(unet, kinds=("view",)) as chunked:
            unet(**inputs)
    assert whole.keys() == chunked.keys()
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name], rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# Per-query maps

from sv4d_kit.attention import (  # noqa: E402
    VIEW_QUIRK,
    AttentionLayout,
    attention_index,
    frame_attention,
    layer_layout,
    query_attention,
    spatial_attention_map,
    transformer_layers,
    view_attention,
)
from sv4d_kit.models.transformer import SpatialViewFrameTransformer  # noqa: E402


def pass_through_transformer(use_3d_attention: bool, channels: int = 32) -> SpatialViewFrameTransformer:
    """A transformer whose stages only move tokens around: no norm before the blocks, identity proj_in, every
    residual branch and embedding zeroed, so each attn1 sees LayerNorm of the very token that came in."""
    m = SpatialViewFrameTransformer(channels, 2, channels // 2, context_dim=8, motion_context_dim=4,
                                    cam_channels=None, use_3d_attention=use_3d_attention)  # fmt: skip
    m.norm = torch.nn.Identity()
    with torch.no_grad():
        m.proj_in.weight.copy_(torch.eye(channels))
        m.proj_in.bias.zero_()
        for name, p in m.named_parameters():
            if any(s in name for s in ("to_out.0", "ff.net.2", "ff_in.net.2", "embed.2")):
                p.zero_()
    return m.eval()


@pytest.mark.parametrize(
    "use_3d_attention, views, height, width", [(False, 3, 2, 3), (True, 3, 2, 3), (True, 4, 2, 3)]
)
def test_attention_index_follows_the_transformer_token_layout(use_3d_attention, views, height, width):
    """Tag every input token with a random code, record what each attn1 gets, and check that `attention_index`
    finds the query token and every key token where the real transformer put them (also when V does not divide
    H*W, where the sv4d2 groups straddle views)."""
    B, T, V, H, W, C = 2, 2, views, height, width, 32
    m = pass_through_transformer(use_3d_attention, C)
    torch.manual_seed(0)
    codes = torch.randn(B, T, V, H, W, C)
    x = codes.permute(0, 1, 2, 5, 3, 4).reshape(B * T * V, C, H, W)  # (b t v) frames
    seen = {}
    for kind, blocks in (
        ("spatial", m.transformer_blocks),
        ("view", m.time_mix_blocks),
        ("frame", m.motion_blocks),
    ):
        blocks[0].attn1.register_forward_pre_hook(
            lambda mod, args, kind=kind: seen.__setitem__(kind, args[0])
        )
    with torch.no_grad():
        out = m(x, torch.zeros(B, T, 8), torch.zeros(B * T * V, 8), torch.zeros(B * V, 4, H, W))
    torch.testing.assert_close(out, x)  # proj_out is zero-initialised: only the outer residual
    normed = torch.nn.functional.layer_norm(
        codes, (C,)
    )  # what attn1 sees of each token (norm1 is the default)
    layout = AttentionLayout(B, T, V, H, W, use_3d_attention)
    for kind, tokens in seen.items():
        for b, t, v, y, xx in [
            (0, 0, 0, 0, 0),
            (1, 1, V - 1, H - 1, W - 1),
            (0, 1, 1, 1, 0),
            (1, 0, V - 1, 0, 2),
        ]:
            idx = attention_index(kind, layout, t, v, y, xx, batch=b)
            torch.testing.assert_close(tokens[idx.row, idx.query], normed[b, t, v, y, xx])
            for k, key in enumerate(idx.keys):
                torch.testing.assert_close(tokens[idx.row, k], normed[key])
            assert len(idx.keys) == tokens.shape[1]
        if kind == "view" and use_3d_attention:
            idx = attention_index("view", layout, 1, 0, 0, 0, batch=1)
            assert all(
                k[2] == 0 and k[1] == 1 for k in idx.keys
            )  # neighbouring pixels of one view, not views
            assert [k[3] * W + k[4] for k in idx.keys] == list(range(V))
        if kind == "view" and not use_3d_attention:
            idx = attention_index("view", layout, 1, 0, 1, 2, batch=1)
            assert [k[2] for k in idx.keys] == list(range(V)) and {k[3:] for k in idx.keys} == {(1, 2)}
    if use_3d_attention and (H * W) % V:  # a group that straddles two views
        views_of_groups = {tuple(k[2] for k in attention_index("view", layout, 0, v, y, xx, 0).keys)
                           for v in range(V) for y in range(H) for xx in range(W)}  # fmt: skip
        assert any(len(set(g)) > 1 for g in views_of_groups)


def one_hot_probs(rows: int, queries: int, keys: int, target, heads: int = 2) -> torch.Tensor:
    """Near-uniform probabilities whose row r, query q peaks at key target(r, q)."""
    probs = torch.full((rows, heads, queries, keys), 1.0)
    for r in range(rows):
        for q in range(queries):
            probs[r, :, q, target(r, q)] = 10.0
    return probs / probs.sum(-1, keepdim=True)


def test_maps_peak_where_the_constructed_probabilities_do():
    B, T, V, H, W = 2, 3, 4, 2, 5
    layout = AttentionLayout(B, T, V, H, W)
    HW = H * W
    # spatial rows (b t v): peak at pixel (row + query) % HW; frame rows (b v hw): at frame (row % T); view rows
    # (b t hw): at view (query + 1) % V
    spatial = one_hot_probs(B * T * V, HW, HW, lambda r, q: (r + q) % HW)
    frame = one_hot_probs(B * V * HW, T, T, lambda r, q: r % T)
    view = one_hot_probs(B * T * HW, V, V, lambda r, q: (q + 1) % V)
    b, t, v, y, x = 1, 2, 3, 1, 4
    p = y * W + x
    m = spatial_attention_map(spatial, layout, t, v, y, x, batch=b)
    assert m.shape == (H, W)
    row = (b * T + t) * V + v
    assert divmod(int(m.argmax()), W) == divmod((row + p) % HW, W)
    torch.testing.assert_close(m.sum(), torch.tensor(1.0))
    f = frame_attention(frame, layout, t, v, y, x, batch=b)
    assert f.shape == (T,) and int(f.argmax()) == ((b * V + v) * HW + p) % T
    w, keys = view_attention(view, layout, t, v, y, x, batch=b)
    assert w.shape == (V,) and int(w.argmax()) == (v + 1) % V and keys[int(w.argmax())][2] == (v + 1) % V
    # batch -1 is the last video; one head is that head
    torch.testing.assert_close(spatial_attention_map(spatial, layout, t, v, y, x), m)
    torch.testing.assert_close(spatial_attention_map(spatial, layout, t, v, y, x, head=1), m)

    maps = {"blk.transformer_blocks.0.attn1": spatial, "blk.time_mix_blocks.0.attn1": view,
            "blk.motion_blocks.0.attn1": frame}  # fmt: skip
    q = query_attention(maps, "blk", layout, t, v, y, x)
    torch.testing.assert_close(q.spatial, m)
    torch.testing.assert_close(q.frame_weights, f)
    torch.testing.assert_close(q.view_weights, w)
    assert q.view_keys == keys and not q.views_are_pixels


def test_layer_layout_reads_the_grid_off_the_maps():
    B, T, V, S = 2, 3, 4, 3
    maps = {"a.transformer_blocks.0.attn1": torch.rand(B * T * V, 1, S * S, S * S),
            "b.motion_blocks.0.attn1": torch.rand(B * V * S * S, 1, T, T)}  # fmt: skip
    assert layer_layout(maps, "a", T, V, True) == AttentionLayout(B, T, V, S, S, True)
    assert layer_layout(maps, "b", T, V, False) == AttentionLayout(B, T, V, S, S, False)
    with pytest.raises(KitInputError, match="no captured map"):
        layer_layout(maps, "c", T, V, False)
    with pytest.raises(KitInputError, match="does not fit"):
        layer_layout(maps, "a", 5, V, False)


def test_bad_queries_are_kit_input_errors():
    layout = AttentionLayout(1, 2, 3, 4, 4)
    probs = torch.rand(1 * 2 * 3, 2, 16, 16).softmax(-1)
    for kwargs, match in [(dict(frame=2), "frame"), (dict(view=-1), "view"), (dict(y=4), "y"), (dict(x=1.5), "x"),
                          (dict(batch=1), "batch"), (dict(head=2), "head")]:  # fmt: skip
        args = {"frame": 0, "view": 0, "y": 0, "x": 0, **kwargs}
        with pytest.raises(KitInputError, match=match):
            spatial_attention_map(probs, layout, **args)
    with pytest.raises(KitInputError, match="kind"):
        attention_index("camera", layout, 0, 0, 0, 0)
    with pytest.raises(KitInputError, match="shape"):
        frame_attention(probs, layout, 0, 0, 0, 0)  # a spatial map is not a frame map
    with pytest.raises(KitInputError, match="layout"):
        attention_index("frame", (1, 2, 3, 4, 4), 0, 0, 0, 0)
    assert "1×4" in VIEW_QUIRK and "use_3d_attention=True" in VIEW_QUIRK


def test_transformer_layers_and_query_attention_on_the_golden_unet(reference_dir):
    unet, inputs = golden_unet(reference_dir, use_3d_attention=True)
    layers = transformer_layers(unet)
    assert layers["input_blocks.1.1"] == 1 and layers["middle_block.1"] == 4
    b, t = inputs["context"].shape[:2]
    v = inputs["cond_view"].shape[0] // b
    with torch.no_grad(), capture_attention(unet, layers=["input_blocks.1.1"]) as maps:
        unet(**inputs)
    layout = layer_layout(maps, "input_blocks.1.1", t, v, True)
    assert layout == AttentionLayout(b, t, v, 8, 8, True)
    q = query_attention(maps, "input_blocks.1.1", layout, 1, 2, 5, 7)
    assert q.spatial.shape == (8, 8) and q.view_weights.shape == (v,) and q.frame_weights.shape == (t,)
    for w in (q.spatial.sum(), q.view_weights.sum(), q.frame_weights.sum()):
        torch.testing.assert_close(w, torch.tensor(1.0), rtol=0, atol=1e-5)
    assert q.views_are_pixels and {k[2] for k in q.view_keys} <= {1, 2}
