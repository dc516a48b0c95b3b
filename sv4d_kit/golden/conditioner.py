"""Check the conditioner (CLIP, VAE encoders, timestep embeddings, `c` and `uc`) against a golden set."""

from collections.abc import Iterator
from pathlib import Path

import torch

from sv4d_kit.golden import CaseResult, GoldenSet, compare
from sv4d_kit.models.autoencoder import encode_mode
from sv4d_kit.models.clip import clip_preprocess
from sv4d_kit.models.conditioner import SV4DConditioner
from sv4d_kit.models.embeddings import timestep_embedding

# golden embedder prefix -> (VAE input key, kit encoder attribute)
_VAE_EMBEDDERS = {
    "emb1_cond_frames": ("cond_frames", "cond_frames_encoder"),
    "emb4_cond_view": ("cond_view", "cond_view_encoder"),
    "emb5_cond_motion": ("cond_motion", "cond_motion_encoder"),
}


def build_conditioner(meta: dict, tensors: dict[str, torch.Tensor]) -> SV4DConditioner:
    """The tiny conditioner described by a golden set's json, with the set's weights loaded."""
    model = SV4DConditioner.from_reference_configs(
        meta.get("clip_config"), meta.get("vae_ddconfig"), meta["conditioner_config"]
    )
    model.load_reference_state_dict(tensors)
    return model.eval()


@torch.no_grad()
def check(gset: GoldenSet, folder: Path) -> Iterator[CaseResult]:
    g = gset.tensors()

    # 1. Parameter-free timestep embedder at the real widths
    for key in sorted(k for k in g if k.startswith("timestep_embedder.out_")):
        width = int(key.rsplit("_", 1)[1])
        yield compare(key, timestep_embedding(g["timestep_embedder.in"], width), g[key], "exact_math")

    model = build_conditioner(gset.meta, g)

    # 2. CLIP preprocessing and embedding of a frame larger than 224 px
    if "clip_big.in" in g:
        pixels = clip_preprocess(g["clip_big.in"], image_size=model.clip.config.image_size)
        yield compare("clip_big.preprocessed_224", pixels, g["clip_big.preprocessed_224"], "conditioner")
        yield compare("clip_big.embedding", model.clip(pixels), g["clip_big.embedding"], "conditioner")

    # 3. Every embedder on its own
    cond_motion, cond_view = g["batch.cond_motion"], g["batch.cond_view"]
    polar, azimuth = g["batch.polar_rad"], g["batch.azimuth_rad"]
    pixels = clip_preprocess(cond_motion, image_size=model.clip.config.image_size)
    yield compare("emb0_clip.out0", model.clip(pixels)[None], g["emb0_clip.out0"], "conditioner")
    # the stored encoder inputs are the batch images plus 1e-5 noise: this checks cond_frames' (t v) order
    images = {
        "cond_frames": cond_motion.repeat_interleave(cond_view.shape[0], dim=0),
        "cond_view": cond_view,
        "cond_motion": cond_motion,
    }
    encoder_inputs = {}
    for prefix, (key, attr) in _VAE_EMBEDDERS.items():
        x = g[f"{prefix}.encoder_input"]
        encoder_inputs[key] = x
        yield compare(f"{prefix}.encoder_input", images[key], x, "conditioner")
        yield compare(
            f"{prefix}.out0", encode_mode(getattr(model, attr), x), g[f"{prefix}.out0"], "conditioner"
        )
    sigma = torch.full((polar.shape[0],), model.config.encoder_noise_sigma)
    sigma_emb = timestep_embedding(sigma, model.config.sigma_embed_dim)
    yield compare("emb1_cond_frames.out1", sigma_emb, g["emb1_cond_frames.out1"], "conditioner")
    angle_dim = model.config.angle_embed_dim
    yield compare(
        "emb2_polar.out0", timestep_embedding(polar, angle_dim), g["emb2_polar.out0"], "conditioner"
    )
    yield compare(
        "emb3_azimuth.out0", timestep_embedding(azimuth, angle_dim), g["emb3_azimuth.out0"], "conditioner"
    )

    # 4. The whole conditioner: c from the exact encoder inputs, and uc
    c = model(cond_motion, cond_view, polar, azimuth, encoder_inputs=encoder_inputs)
    uc = model.unconditional(c)
    for name, out in (("c", c), ("uc", uc)):
        for key in sorted(k for k in g if k.startswith(f"{name}.")):
            yield compare(key, out[key[len(name) + 1 :]], g[key], "conditioner")
