"""Tests of the SV4D 2.0 UNet: golden vectors, checkpoint layout, view-attention layouts, switches."""

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from sv4d_kit.checks import KitInputError
from sv4d_kit.golden import discover, run_set
from sv4d_kit.golden.unet import build_unet
from sv4d_kit.models.transformer import CrossAttention
from sv4d_kit.models.unet import SV4DUNet

TINY = dict(
    in_channels=8,
    model_channels=32,
    out_channels=4,
    num_res_blocks=1,
    attention_resolutions=[1, 2],
    channel_mult=[1, 2],
    num_head_channels=16,
    context_dim=16,
    motion_context_dim=4,
    adm_in_channels=128,
)


def randomize_(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Overwrite every parameter with seeded random values (the default init zeroes the output convs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if p.ndim >= 2:
                p.copy_(noise / math.sqrt(p[0].numel()))
            elif name.endswith("mix_factor"):
                p.copy_(noise)
            elif name.endswith("weight"):  # norm scales
                p.copy_(1 + 0.2 * noise)
            else:
                p.copy_(0.1 * noise)
    return module


def random_inputs(b=1, t=2, v=2, hw=8, model: SV4DUNet | None = None, seed=1) -> dict:
    cfg = model.config
    g = torch.Generator().manual_seed(seed)
    n = b * t * v
    return dict(
        x=torch.randn(n, cfg.in_channels, hw, hw, generator=g),
        timesteps=torch.full((n,), 0.25 * math.log(700.0)),
        context=torch.randn(b, t, cfg.context_dim, generator=g),
        y=torch.randn(n, cfg.adm_in_channels, generator=g),
        cond_view=torch.randn(b * v, cfg.motion_context_dim, hw, hw, generator=g),
        cond_motion=torch.randn(b * t, 4, hw, hw, generator=g),
        image_only_indicator=torch.zeros(b, t * v),
        num_video_frames=t * v,
    )


def golden_unet(reference_dir: Path, **overrides) -> tuple[SV4DUNet, dict]:
    """The golden tiny UNet (its weights) with config overrides, and the chunk1 inputs of the golden set."""
    meta = json.loads((reference_dir / "golden_unet_tiny.json").read_text())
    meta["network_config"]["params"].update(overrides)
    tensors = load_file(str(reference_dir / "golden_unet_tiny.safetensors"))
    inputs = {k[len("chunk1.in.") :]: v for k, v in tensors.items() if k.startswith("chunk1.in.")}
    inputs["num_video_frames"] = int(inputs["num_video_frames"])
    return build_unet(meta, tensors), inputs


def capture_call(module: torch.nn.Module, run) -> tuple[tuple, dict]:
    """The (args, kwargs) of the first call of `module` while `run()` runs."""
    calls = []
    handle = module.register_forward_pre_hook(lambda m, a, kw: calls.append((a, kw)), with_kwargs=True)
    with torch.no_grad():
        run()
    handle.remove()
    return calls[0]


def test_golden_unet_sets_pass(reference_dir):
    sets = [s for s in discover(reference_dir) if s.kind == "unet"]
    assert sets, "no golden_unet* set found"
    for gset in sets:
        results = list(run_set(gset, reference_dir))
        failed = [r.line() for r in results if not r.passed]
        assert len(results) > 20 and not failed, failed


@pytest.mark.parametrize("variant", ["sv4d2", "sv4d2_8views"])
def test_full_size_layout_matches_checkpoint(reference_dir, variant):
    hparams = json.loads((reference_dir / "sv4d2_hparams.json").read_text())
    params = hparams["variants"][variant]["yaml_config_resolved"]["model"]["params"]["network_config"][
        "params"
    ]
    with torch.device("meta"):
        unet = SV4DUNet.from_reference_config(params)
    layout = json.loads((reference_dir / f"{variant}_checkpoint_layout.json").read_text())["tensors"]
    prefix = "model.diffusion_model."
    expected = {k[len(prefix) :]: tuple(v["shape"]) for k, v in layout.items() if k.startswith(prefix)}
    got = {k: tuple(v.shape) for k, v in unet.state_dict().items()}
    assert got == expected
    assert len(got) == 1924
    assert sum(math.prod(s) for s in got.values()) == 2_010_961_338
    assert unet.config.use_3d_attention == (variant == "sv4d2")


def test_from_reference_config_validates():
    params = dict(
        TINY,
        num_classes="sequential",
        use_spatial_transformer=True,
        use_motion_attention=True,
        use_spatial_context=True,
        time_mix_legacy=False,
        use_camera_emb=True,
        legacy=False,
        use_checkpoint=True,
        spatial_transformer_attn_type="softmax-xformers",
        replicate_time_mix_bug=True,
    )
    unet = SV4DUNet.from_reference_config(params)
    assert (
        unet.config.use_camera_emb and not unet.config.use_3d_attention
    )  # reference default for a missing key
    with pytest.raises(KitInputError, match="use_motion_attention"):
        SV4DUNet.from_reference_config(dict(params, use_motion_attention=False))
    with pytest.raises(KitInputError, match="time_mix_legacy"):
        SV4DUNet.from_reference_config({k: v for k, v in params.items() if k != "time_mix_legacy"})
    with pytest.raises(KitInputError, match="unknown"):
        SV4DUNet.from_reference_config(dict(params, some_new_flag=1))
    with pytest.raises(KitInputError, match="adm_in_channels"):
        SV4DUNet.from_reference_config(dict(params, adm_in_channels=100))


def test_save_load_roundtrip(tmp_path):
    unet = randomize_(SV4DUNet(**TINY)).eval()
    inputs = random_inputs(model=unet)
    with torch.no_grad():
        out = unet(**inputs)
    unet.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    loaded = SV4DUNet.from_pretrained(tmp_path).eval()
    assert loaded.state_dict().keys() == unet.state_dict().keys()
    with torch.no_grad():
        assert torch.equal(loaded(**inputs), out)
    assert out.shape == (4, 4, 8, 8) and out.abs().max() > 1e-3


def test_forward_rejects_bad_shapes():
    unet = SV4DUNet(**TINY).eval()
    inputs = random_inputs(model=unet)
    with pytest.raises(KitInputError, match="num_video_frames"):
        unet(**dict(inputs, num_video_frames=3))
    with pytest.raises(KitInputError, match="frames"):
        unet(**dict(inputs, x=inputs["x"][:3]))
    with pytest.raises(KitInputError, match="cond_view"):
        unet(**dict(inputs, cond_view=inputs["cond_view"][0]))


def test_block_switches_ablate_and_restore(reference_dir):
    unet, inputs = golden_unet(reference_dir)
    with torch.no_grad():
        base = unet(**inputs)
        outs = {}
        for view, motion in [(False, True), (True, False), (False, False)]:
            unet.set_block_switches(view=view, motion=motion)
            outs[view, motion] = unet(**inputs)
        unet.set_block_switches()
        restored = unet(**inputs)
    assert torch.equal(restored, base)
    for key, out in outs.items():
        assert (out - base).abs().max() > 1e-2, key
    assert (outs[False, True] - outs[True, False]).abs().max() > 1e-2


def test_switched_off_stage_passes_input_through(reference_dir):
    """With both stages off a transformer is proj_out(spatial block output) + its input, and the view and
    frame blocks never run."""
    unet, inputs = golden_unet(reference_dir)
    transformer = unet.input_blocks[1][1]
    args, _ = capture_call(transformer, lambda: unet(**inputs))
    unet.set_block_switches(view=False, motion=False)
    spatial_out, calls = [], []
    hooks = [transformer.transformer_blocks[0].register_forward_hook(lambda m, a, o: spatial_out.append(o))]
    for block in (transformer.time_mix_blocks[0], transformer.motion_blocks[0]):
        hooks.append(block.register_forward_hook(lambda m, a, o: calls.append(o)))
    with torch.no_grad():
        out = transformer(*args)
        x_in = args[0]
        n, c, h, w = x_in.shape
        expected = transformer.proj_out(spatial_out[0]).reshape(n, h, w, c).permute(0, 3, 1, 2) + x_in
    for hook in hooks:
        hook.remove()
    assert not calls
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-6)


def test_chunking_does_not_change_output(reference_dir, monkeypatch):
    unet, inputs = golden_unet(reference_dir)
    with torch.no_grad():
        base = unet(**inputs)
        unet.set_chunking(ff=7, attention=5)
        chunked = unet(**inputs)
        unet.set_chunking()
        monkeypatch.setattr(CrossAttention, "MAX_BATCH", 3)  # the always-on split for CUDA grid limits
        split = unet(**inputs)
    torch.testing.assert_close(chunked, base, rtol=0, atol=1e-5)
    torch.testing.assert_close(split, base, rtol=0, atol=1e-5)
    with pytest.raises(KitInputError, match="ff"):
        unet.set_chunking(ff=0)


def test_gradient_checkpointing_same_gradients():
    unet = randomize_(SV4DUNet(**TINY))
    inputs = random_inputs(model=unet)
    grads = []
    for enable in (False, True):
        unet.zero_grad()
        if enable:
            unet.enable_gradient_checkpointing()
        unet(**inputs).square().mean().backward()
        grads.append(unet.time_embed[0].weight.grad.clone())
    assert unet.gradient_checkpointing
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("use_3d_attention", [True, False])
def test_view_block_mixing_pattern(reference_dir, use_3d_attention):
    """3-D layout: row 0 only reaches rows 0..V-1 (neighbouring pixels); 8-view layout: one frame's views."""
    unet, inputs = golden_unet(reference_dir, use_3d_attention=use_3d_attention)
    block = unet.input_blocks[1][1].time_mix_blocks[0]
    args, kwargs = capture_call(block, lambda: unet(**inputs))
    x = args[0] if args else kwargs["x"]
    v = kwargs["timesteps"]
    b = inputs["context"].shape[0]
    assert v == inputs["cond_view"].shape[0] // b == 3
    perturbed = x.clone()
    perturbed[0] += torch.randn(
        x[0].shape, generator=torch.Generator().manual_seed(0)
    )  # not a constant: LayerNorm
    with torch.no_grad():
        diff = (block(perturbed, **{k: a for k, a in kwargs.items() if k != "x"}) - block(x, **kwargs)).abs()
    changed = diff.flatten(1).amax(1) > 1e-4
    if use_3d_attention:
        # rows are (b v hw) with T as the sequence: groups of V neighbouring rows attend to each other.
        assert x.shape[1] == inputs["context"].shape[1]
        assert changed[:v].all() and not changed[v:].any()
    else:
        # rows are (b v) with T*HW as the sequence: view 0 of batch 0 reaches every view of batch 0 only.
        assert x.shape[0] == b * v
        assert changed[:v].all() and not changed[v:].any()


def test_view_attention_mixes_views_only_in_8view_layout(reference_dir):
    """With frame attention off, a perturbed frame reaches the other views of its time frame only in the
    8-view layout; in the 3-D layout (V dividing H*W) it stays in its own frame."""
    for use_3d in (True, False):
        unet, inputs = golden_unet(reference_dir, use_3d_attention=use_3d)
        unet.set_block_switches(view=True, motion=False)
        transformer = unet.input_blocks[1][1]
        b, t, v, hw = 2, 2, 4, 8  # V = 4 divides H*W = 64
        g = torch.Generator().manual_seed(3)
        x = torch.randn(b * t * v, 32, hw, hw, generator=g)
        context = torch.randn(b, t, 32, generator=g)
        cam = torch.randn(b * t * v, 128, generator=g)
        cond_view = torch.randn(b * v, 4, hw, hw, generator=g)
        x2 = x.clone()
        x2[0, :, 0, 0] += torch.randn(32, generator=g)  # frame (b0, t0, v0), pixel 0
        with torch.no_grad():
            diff = (transformer(x2, context, cam, cond_view) - transformer(x, context, cam, cond_view)).abs()
        changed = (diff.flatten(1).amax(1) > 1e-4).view(b, t, v)
        assert changed[0, 0, 0] and not changed[1].any() and not changed[0, 1].any()
        assert changed[0, 0, 1:].all() == (not use_3d) and changed[0, 0, 1:].any() == (not use_3d)


def test_embedding_and_frame_embeddings_run_in_bfloat16():
    unet = randomize_(SV4DUNet(**TINY)).eval()
    inputs = random_inputs(model=unet)
    with torch.no_grad():
        ref = unet(**inputs)
        out = unet.to(torch.bfloat16)(**inputs)
    assert out.dtype == torch.float32
    assert (out - ref).abs().max() < 0.1 * ref.abs().max()
