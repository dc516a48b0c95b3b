"""The autoencoder: golden decoder, sgm -> diffusers name mapping, first-stage layout, chunked decoding."""

import json

import pytest
import torch

from sv4d_kit.checks import KitInputError
from sv4d_kit.golden import discover, run_set
from sv4d_kit.models.autoencoder import (
    SCALE_FACTOR,
    SV4D2_DDCONFIG,
    VAEEncoder,
    build_autoencoder,
    build_first_stage,
    decode_latents,
    encode_mode,
    first_stage_name_to_kit,
    sgm_vae_name_to_diffusers,
    sgm_vae_tensor_to_diffusers,
)

TINY_DDCONFIG = {**SV4D2_DDCONFIG, "ch": 32, "ch_mult": [1, 2, 1, 1], "num_res_blocks": 1, "resolution": 64}


def test_golden_vae_decoder_sets_pass(reference_dir):
    sets = [s for s in discover(reference_dir) if s.kind == "vae_decoder"]
    assert sets
    for gset in sets:
        results = list(run_set(gset, reference_dir))
        assert {r.name for r in results} >= {"decoded", "samples_0_1"}
        failed = [r.line() for r in results if not r.passed]
        assert not failed, failed


def test_sgm_names_map_to_diffusers():
    assert sgm_vae_name_to_diffusers("encoder.down.0.block.1.norm1.weight") == (
        "encoder.down_blocks.0.resnets.1.norm1.weight"
    )
    assert sgm_vae_name_to_diffusers("encoder.down.2.downsample.conv.bias") == (
        "encoder.down_blocks.2.downsamplers.0.conv.bias"
    )
    # the decoder's level index is reversed: sgm up.0 is full resolution, diffusers up_blocks.0 the deepest
    assert sgm_vae_name_to_diffusers("decoder.up.0.block.2.nin_shortcut.weight", 4) == (
        "decoder.up_blocks.3.resnets.2.conv_shortcut.weight"
    )
    assert sgm_vae_name_to_diffusers("decoder.up.3.upsample.conv.weight", 4) == (
        "decoder.up_blocks.0.upsamplers.0.conv.weight"
    )
    assert (
        sgm_vae_name_to_diffusers("decoder.mid.block_2.conv1.bias")
        == "decoder.mid_block.resnets.1.conv1.bias"
    )
    assert sgm_vae_name_to_diffusers("decoder.mid.attn_1.proj_out.weight") == (
        "decoder.mid_block.attentions.0.to_out.0.weight"
    )
    assert (
        sgm_vae_name_to_diffusers("encoder.mid.attn_1.norm.bias")
        == "encoder.mid_block.attentions.0.group_norm.bias"
    )
    assert sgm_vae_name_to_diffusers("encoder.norm_out.weight") == "encoder.conv_norm_out.weight"
    assert sgm_vae_name_to_diffusers("quant_conv.weight") == "quant_conv.weight"
    w = torch.randn(8, 8, 1, 1)
    assert sgm_vae_tensor_to_diffusers("decoder.mid_block.attentions.0.to_q.weight", w).shape == (8, 8)
    assert sgm_vae_tensor_to_diffusers("decoder.conv_in.weight", w).shape == (8, 8, 1, 1)
    with pytest.raises(KitInputError, match="num_levels"):
        sgm_vae_name_to_diffusers("decoder.up.0.block.0.conv1.weight")
    with pytest.raises(KitInputError):
        sgm_vae_name_to_diffusers("encoder.down.0.attn.0.q.weight", 4)
    with pytest.raises(KitInputError):
        sgm_vae_name_to_diffusers("model.diffusion_model.out.weight")


@pytest.mark.parametrize("variant", ["sv4d2", "sv4d2_8views"])
def test_full_size_first_stage_layout_maps_exactly(reference_dir, variant):
    layout = json.loads((reference_dir / f"{variant}_checkpoint_layout.json").read_text())["tensors"]
    with torch.device("meta"):
        vae = build_first_stage(SV4D2_DDCONFIG)
    own = {k: v.shape for k, v in vae.state_dict().items()}
    covered = {}
    for name, info in layout.items():
        if not name.startswith("first_stage_model."):
            continue
        kit = first_stage_name_to_kit(name, num_levels=len(SV4D2_DDCONFIG["ch_mult"]))
        assert kit in own and kit not in covered, (name, kit)
        covered[kit] = name
        shape = sgm_vae_tensor_to_diffusers(kit, torch.empty(info["shape"], device="meta")).shape
        assert shape == own[kit], (name, kit)
    # every first_stage_model tensor maps (none ignored); the kit's decoder is covered exactly once and the
    # only kit keys without a checkpoint tensor are the encoder's (the reference first stage has no encoder)
    assert len(covered) == 138
    uncovered = set(own) - set(covered)
    assert all(k.startswith("encoder.") for k in uncovered)
    assert len(uncovered) == 106
    assert {k for k in own if k.startswith("decoder.")} == set(covered)
    assert vae.quant_conv is None and vae.post_quant_conv is None
    assert sum(own[k].numel() for k in covered) == 49_490_179  # the layout's first_stage_model element count


def test_chunked_decode_equals_unchunked():
    torch.manual_seed(0)
    vae = build_first_stage(TINY_DDCONFIG).eval()
    z = torch.randn(5, 4, 8, 8) * SCALE_FACTOR * 3
    with torch.no_grad():
        whole = decode_latents(vae, z)
        assert whole.shape == (5, 3, 64, 64) and whole.min() >= 0 and whole.max() <= 1
        # identical up to the batch-size-dependent rounding of the convolution kernels (measured ~3e-6 on CPU)
        for chunk in (1, 2, 4, 5, 7):
            torch.testing.assert_close(decode_latents(vae, z, chunk_size=chunk), whole, rtol=0, atol=2e-5)
        torch.testing.assert_close(decode_latents(vae, z, chunk_size=5), whole, rtol=0, atol=0)  # one chunk
        expected = ((vae.decode(z / SCALE_FACTOR).sample + 1) / 2).clamp(0, 1)
        torch.testing.assert_close(whole, expected, rtol=0, atol=2e-5)
        assert (decode_latents(vae, z[:1]) - whole[:1]).abs().max() < 2e-5
        assert (
            decode_latents(vae, z.flip(0))[0] - whole[0]
        ).abs().max() > 1e-3  # frames are not interchangeable
    with pytest.raises(KitInputError, match="chunk_size"):
        decode_latents(vae, z, chunk_size=0)


def test_vae_encoder_matches_autoencoder_kl_encode():
    torch.manual_seed(0)
    full = build_autoencoder(TINY_DDCONFIG).eval()
    enc = VAEEncoder(TINY_DDCONFIG).eval()
    missing = enc.load_state_dict(
        {k: v for k, v in full.state_dict().items() if k.startswith(("encoder.", "quant"))}
    )
    assert not missing.missing_keys
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        mode = encode_mode(enc, x)
        assert mode.shape == (2, 4, 8, 8)
        torch.testing.assert_close(mode, full.encode(x).latent_dist.mode(), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(encode_mode(full, x), mode, rtol=1e-6, atol=1e-6)


def test_bad_ddconfig_raises():
    with pytest.raises(KitInputError, match="attn_resolutions"):
        build_autoencoder({**TINY_DDCONFIG, "attn_resolutions": [16]})
    with pytest.raises(KitInputError, match="double_z"):
        VAEEncoder({**TINY_DDCONFIG, "double_z": False})
    with pytest.raises(KitInputError, match="embed_dim"):
        VAEEncoder(TINY_DDCONFIG, embed_dim=8)
    with pytest.raises(KitInputError, match="ddconfig"):
        build_autoencoder({"ch": 32})
