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
