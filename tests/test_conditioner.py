"""The conditioner: golden vectors, the full-size checkpoint layout, `uc`, noise handling, save/load."""

import json

import pytest
import torch

from sv4d_kit.checks import KitInputError
from sv4d_kit.golden import discover, run_set
from sv4d_kit.models.clip import CLIPImageEncoder, clip_preprocess
from sv4d_kit.models.conditioner import SV4DConditioner, checkpoint_name_to_kit, convert_checkpoint_tensor

# Tensors of the released checkpoint under conditioner.embedders. that the kit does not hold:
# 6 open_clip text leftovers (token_embedding, positional_embedding, ln_final.{weight,bias}, text_projection,
# logit_scale) + 3 VAE embedders x (138 decoder tensors + post_quant_conv.{weight,bias}).
IGNORED_CONDITIONER_TENSORS = 6 + 3 * (138 + 2)


def _golden_sets(reference_dir, kind):
    sets = [s for s in discover(reference_dir) if s.kind == kind]
    assert sets, f"no golden_{kind}* set in {reference_dir}"
    return sets


@pytest.fixture(scope="module")
def tiny_meta(reference_dir):
    return json.loads((reference_dir / "golden_conditioner_tiny.json").read_text())


@pytest.fixture(scope="module")
def hparams(reference_dir):
    return json.loads((reference_dir / "sv4d2_hparams.json").read_text())


def _tiny(meta, seed=0):
    torch.manual_seed(seed)
    model = SV4DConditioner.from_reference_configs(
        meta["clip_config"], meta["vae_ddconfig"], meta["conditioner_config"]
    )
    return model.eval()


def _batch(t=2, v=3, size=64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(t, 3, size, size, generator=g) * 2 - 1,
        torch.rand(v, 3, size, size, generator=g) * 2 - 1,
        torch.rand(t * v, generator=g) * 6.28,
        torch.rand(t * v, generator=g) * 6.28,
    )


def test_golden_conditioner_sets_pass(reference_dir):
    for gset in _golden_sets(reference_dir, "conditioner"):
        results = list(run_set(gset, reference_dir))
        failed = [r.line() for r in results if not r.passed]
        assert not failed, failed
        names = {r.name for r in results}
        assert {"c.crossattn", "c.concat", "c.vector", "uc.crossattn", "clip_big.embedding"} <= names


@pytest.mark.parametrize("variant", ["sv4d2", "sv4d2_8views"])
def test_full_size_checkpoint_layout_maps_exactly(reference_dir, hparams, variant):
    params = hparams["variants"][variant]["yaml_config_resolved"]["model"]["params"]
    with torch.device("meta"):
        model = SV4DConditioner.from_reference_configs(None, None, params["conditioner_config"])
    own = {k: v.shape for k, v in model.state_dict().items()}
    layout = json.loads((reference_dir / f"{variant}_checkpoint_layout.json").read_text())["tensors"]
    covered, ignored = {}, []
    for name, info in layout.items():
        if not name.startswith("conditioner.embedders."):
            continue
        kit = checkpoint_name_to_kit(name)
        if kit is None:
            ignored.append(name)
            continue
        assert kit in own, f"{name} -> {kit} is not a kit key"
        assert kit not in covered, f"{name} and {covered.get(kit)} both map to {kit}"
        covered[kit] = name
        shape = convert_checkpoint_tensor(kit, torch.empty(info["shape"], device="meta")).shape
        assert shape == own[kit], f"{name} {tuple(info['shape'])} -> {kit} {tuple(own[kit])}"
    assert set(covered) == set(own)
    assert len(ignored) == IGNORED_CONDITIONER_TENSORS
    assert all(".visual." not in k and ".encoder.encoder." not in k for k in ignored)
    # the mapped tensors hold exactly the elements of the CLIP tower and the three encoders + quant_conv
    assert sum(own[k].numel() for k in own) == sum(p.numel() for p in model.parameters())


def test_full_size_config(hparams):
    params = hparams["variants"]["sv4d2"]["yaml_config_resolved"]["model"]["params"]
    with torch.device("meta"):
        model = SV4DConditioner.from_reference_configs(None, None, params["conditioner_config"])
    assert model.config.sigma_embed_dim == 256 and model.config.angle_embed_dim == 512
    block = model.clip.transformer.resblocks[0]
    assert len(model.clip.transformer.resblocks) == 32
    assert block.attn.heads == 16  # width 1280 / head_width 80
    assert block.mlp.c_fc.weight.shape == (5120, 1280)
    assert model.clip.proj.shape == (1280, 1024)
    assert model.clip.positional_embedding.shape == (257, 1280)  # 16 x 16 patches of 14 px + class token


def test_unconditional_zeroes_image_embedders_and_keeps_angles(tiny_meta):
    model = _tiny(tiny_meta)
    with torch.no_grad():
        c = model(*_batch(), generator=torch.Generator().manual_seed(0))
    uc = model.unconditional(c)
    s = model.config.sigma_embed_dim
    assert c["crossattn"].shape == (1, 2, 32) and c["concat"].shape == (6, 4, 8, 8)
    assert c["vector"].shape == (6, s + 2 * model.config.angle_embed_dim)
    assert c["cond_view"].shape == (3, 4, 8, 8) and c["cond_motion"].shape == (2, 4, 8, 8)
    for key in ("crossattn", "concat", "cond_view", "cond_motion"):
        assert c[key].abs().max() > 0 and torch.equal(uc[key], torch.zeros_like(c[key]))
    assert torch.equal(uc["vector"][:, :s], torch.zeros(6, s))
    assert torch.equal(uc["vector"][:, s:], c["vector"][:, s:])
    assert c["vector"][:, :s].abs().max() > 0


def test_concat_is_cond_motion_repeated_per_view_in_t_v_order(tiny_meta):
    model = _tiny(tiny_meta)
    cond_motion, cond_view, polar, azimuth = _batch()
    with torch.no_grad():
        inputs = model.vae_encoder_inputs(
            cond_motion, cond_view, noise={"cond_frames": torch.zeros(6, 3, 64, 64)}
        )
        c = model(cond_motion, cond_view, polar, azimuth, encoder_inputs=inputs)
    assert torch.equal(inputs["cond_frames"][4], cond_motion[1])  # index t * V + v with t = 1, v = 1
    assert torch.equal(inputs["cond_frames"][2], cond_motion[0])
    # frames of one time step have (nearly) the same latent; different time steps do not
    assert torch.allclose(c["concat"][3], c["concat"][5], atol=1e-5)
    assert not torch.allclose(c["concat"][2], c["concat"][3], atol=1e-2)


def test_noise_is_added_at_sigma_1e5_and_reproducible(tiny_meta):
    model = _tiny(tiny_meta)
    cond_motion, cond_view, _, _ = _batch()
    a = model.vae_encoder_inputs(cond_motion, cond_view, generator=torch.Generator().manual_seed(3))
    b = model.vae_encoder_inputs(cond_motion, cond_view, generator=torch.Generator().manual_seed(3))
    for key in a:
        assert torch.equal(a[key], b[key])
    diff = (a["cond_view"] - cond_view) / 1e-5
    assert 0.9 < float(diff.std()) < 1.1  # the noise is 1e-5 * N(0, 1)
    ones = {"cond_motion": torch.ones_like(cond_motion)}
    c = model.vae_encoder_inputs(cond_motion, cond_view, noise=ones)
    assert torch.equal(c["cond_motion"], cond_motion + 1e-5)


def test_bad_inputs_raise(tiny_meta):
    model = _tiny(tiny_meta)
    cond_motion, cond_view, polar, azimuth = _batch()
    with pytest.raises(KitInputError, match="polar_rad"):
        model(cond_motion, cond_view, polar[:5], azimuth)
    with pytest.raises(KitInputError, match="cond_view"):
        model(cond_motion, cond_view[:, :, :32], polar, azimuth)
    with pytest.raises(KitInputError, match="noise"):
        model.vae_encoder_inputs(cond_motion, cond_view, noise={"cond_frames": torch.zeros(2, 3, 64, 64)})
    with pytest.raises(KitInputError):
        checkpoint_name_to_kit("model.diffusion_model.out.0.weight")
    with pytest.raises(KitInputError):
        checkpoint_name_to_kit("conditioner.embedders.2.something")
    with pytest.raises(KitInputError, match="clip_config"):
        SV4DConditioner.from_reference_configs(
            None, None, tiny_meta["conditioner_config"]
        )  # unknown tiny arch


def test_save_pretrained_round_trip(tiny_meta, tmp_path):
    model = _tiny(tiny_meta, seed=5)
    model.save_pretrained(tmp_path)
    loaded = SV4DConditioner.from_pretrained(tmp_path).eval()
    public = lambda cfg: {k: v for k, v in cfg.items() if not k.startswith("_")}  # noqa: E731
    assert public(loaded.config) == public(model.config)
    batch = _batch()
    noise = model.vae_encoder_inputs(*batch[:2], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a = model(*batch, encoder_inputs=noise)
        b = loaded(*batch, encoder_inputs=noise)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    with torch.no_grad():
        chunked = loaded(*batch, encoder_inputs=noise, encode_chunk_size=2)
    for key in a:
        torch.testing.assert_close(chunked[key], a[key], rtol=0, atol=2e-5)


def test_clip_preprocess_at_native_size_only_normalises():
    x = torch.rand(2, 3, 224, 224) * 2 - 1
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    torch.testing.assert_close(clip_preprocess(x), ((x + 1) / 2 - mean) / std, rtol=1e-6, atol=1e-6)
    with pytest.raises(KitInputError):
        clip_preprocess(torch.zeros(3, 224, 224))


def test_clip_config_from_open_clip():
    cfg = CLIPImageEncoder.config_from_open_clip(
        {
            "embed_dim": 32,
            "vision_cfg": {"image_size": 224, "layers": 2, "width": 64, "head_width": 16, "patch_size": 16},
        }
    )
    enc = CLIPImageEncoder(**cfg)
    assert enc.transformer.resblocks[0].attn.heads == 4
    assert enc(torch.zeros(1, 3, 224, 224)).shape == (1, 32)
