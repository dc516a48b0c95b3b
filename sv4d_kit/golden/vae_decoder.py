"""Check the first-stage decoder (`decode_latents`) against a golden set."""

from collections.abc import Iterator
from pathlib import Path

import torch

from sv4d_kit.golden import CaseResult, GoldenSet, compare
from sv4d_kit.models.autoencoder import build_first_stage, decode_latents, load_first_stage_weights


@torch.no_grad()
def check(gset: GoldenSet, folder: Path) -> Iterator[CaseResult]:
    g = gset.tensors()
    ddconfig = gset.meta["vae_ddconfig"]
    vae = build_first_stage(ddconfig).eval()
    load_first_stage_weights(vae, g, num_levels=len(ddconfig["ch_mult"]))

    # the decoder alone, fed exactly what the reference decoder received
    yield compare("decoded", vae.decode(g["z_decoder_input"]).sample, g["decoded"], "conditioner")
    # the whole decode from the sampler's latent, at once and in chunks of 4 frames (the script's decoding_t)
    yield compare("samples_0_1", decode_latents(vae, g["z_sampler"]), g["samples_0_1"], "conditioner")
    chunked = decode_latents(vae, g["z_sampler"], chunk_size=4)
    yield compare("samples_0_1.chunk_size_4", chunked, g["samples_0_1"], "conditioner")
