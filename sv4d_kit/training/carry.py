"""Carry a trained tiny SV4D from the lossless latent into a projected one (k of the 3·f² block channels).

The lossless space-to-depth latent gives the tiny UNet 48 noise channels per 8×8 position next to 48 channels of
the input view, through a first convolution only 64 wide: it cannot pass the noise through precisely enough to
remove it at σ < 1, so samples taken to σ ≈ 0 keep it as coloured speckle (BENCHMARKS.md, "the full schedule").
A projected latent with k channels halves that load. Training one from scratch costs hours on a laptop CPU; carrying
the trained weights over costs nothing, because the two latents are linearly related.

With the projection centred on the lossless latent's shift s (`fit_projection(images, center=s)`) and the same
scale a, a projected latent is the lossless latent projected onto the orthonormal basis B (3·f² × k):

    z_k = a ((u - s) B) = Bᵀ z_48,   x_k = z_k + σ ε_k with ε_k = Bᵀ ε_48 (still unit Gaussian noise)

so every layer that reads latent channels gets its weights times B (the UNet's first convolution, for the noisy
latent and for the input-view latent alike; the frame attention's keys and values of the view-conditioning
latents) and the last convolution, which writes the v-objective's 48 channels, gets Bᵀ times its weights and bias:
that target is linear in (z, x), so its projection is the projected model's target. The carried model computes the
source model's prediction, projected, on inputs inside the span; fine-tuning then adapts it to the missing noise
directions.
"""

from __future__ import annotations

import torch

from sv4d_kit.checks import KitInputError


def carry_weights(
    weights: dict[str, torch.Tensor], shapes: dict[str, torch.Size], basis: torch.Tensor
) -> dict:
    """Source UNet tensors -> tensors of the projected model's `shapes`, through `basis` (n × k, orthonormal
    columns). A tensor whose shape already matches is copied; one that reads n latent channels (dim 1, possibly
    several groups of n) gets them times the basis; one that writes n (dim 0) gets the basis' transpose times it."""
    n, k = basis.shape
    out = {}
    for name, shape in shapes.items():
        w = weights[name].to(basis.dtype)
        if w.ndim >= 2 and w.shape[1] != shape[1] and w.shape[1] % n == 0:
            # reads latent channels: (O, g*n, ...) -> (O, g*k, ...), each group of n through the basis
            w = torch.cat([torch.einsum("oi...,ik->ok...", part, basis) for part in w.split(n, dim=1)], dim=1)
        if w.shape[0] != shape[0] and w.shape[0] == n:
            w = torch.einsum("i...,ik->k...", w, basis)  # writes latent channels: (n, ...) -> (k, ...)
        if w.shape != shape:
            raise KitInputError(
                f"cannot carry {name} of shape {tuple(weights[name].shape)} into {tuple(shape)}"
            )
        out[name] = w
    return out


@torch.no_grad()
def carry_into_projection(pipe, source, images: torch.Tensor) -> None:
    """Fill `pipe` (a tiny SV4D with a projected latent) from `source` (the same architecture with the lossless
    latent): its latent space is refitted on `images` (N, 3, H, W) in [-1, 1] about the source's shift, the UNet
    carried through the basis, the image tower copied."""
    mine, theirs = pipe.vae.config, source.vae.config
    if theirs.latent_channels is not None or mine.latent_channels is None:
        raise KitInputError("carrying needs a lossless source latent and a projected target latent")
    if (mine.downsample_factor, mine.scaling_factor, mine.shift_factor) != (
        theirs.downsample_factor, theirs.scaling_factor, 0.0,
    ):  # fmt: skip
        raise KitInputError(
            f"carrying from a lossless latent needs downsample_factor {theirs.downsample_factor}, latent_scale "
            f"{theirs.scaling_factor} and latent_shift 0 (the projection is centred on the source's shift "
            f"{theirs.shift_factor}), got {mine.downsample_factor}, {mine.scaling_factor}, {mine.shift_factor}"
        )
    pipe.vae.fit_projection(images, center=theirs.shift_factor)
    pipe.conditioner.share_projection(pipe.vae)
    basis = pipe.vae.encoder.basis.double()  # (n, k)
    shapes = {name: t.shape for name, t in pipe.unet.state_dict().items()}
    weights = source.unet.state_dict()
    carried = carry_weights(weights, shapes, basis)
    # The conditioner's latents are unscaled and centred on the projection's centre c, which the lossless ones
    # are not: u = c + B z_k. What the source layers read of c becomes a bias: of the first convolution for the
    # input-view latent (its second n input channels), and of each frame attention's output for its one-token
    # context, the view-conditioning latent pixel (one token: the attention returns its value, W_o W_v u).
    n = basis.shape[0]
    center = pipe.vae.encoder.center.double()  # (n,)
    conv = weights["input_blocks.0.0.weight"].double()  # (O, 2n, 3, 3)
    carried["input_blocks.0.0.bias"] = carried["input_blocks.0.0.bias"] + torch.einsum(
        "oikl,i->o", conv[:, n:], center
    )
    for name in shapes:
        if name.endswith("attn2.to_v.weight") and weights[name].shape[1] == n:
            out = name.replace("to_v.weight", "to_out.0")
            value = weights[name].double() @ center  # (inner,)
            carried[f"{out}.bias"] = carried[f"{out}.bias"] + weights[f"{out}.weight"].double() @ value
    pipe.unet.load_state_dict({name: t.float() for name, t in carried.items()}, strict=True)
    pipe.conditioner.clip.load_state_dict(source.conditioner.clip.state_dict(), strict=True)
