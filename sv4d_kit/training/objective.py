"""The training objective: SV4D 2.0's v-objective loss with its conditioning tricks, and the learning-rate schedule.

`diffusion_loss` regresses the UNet onto the v-objective of the `VScalingWithEDMcNoise` preconditioning at EDM
log-normal noise levels (log σ ~ N(P_mean, P_std)):

    x = x0 + σ ε,   F = unet([c_in x, concat], c_noise, ...),   loss = |F - (x0 - c_skip x) / c_out|²

(c_skip, c_out, c_in for σ_data 1, or for the pipeline's `sigma_data`: `sampling.preconditioning`)

with SV4D 2.0's tricks: condition dropout (a scene's whole conditioning replaced by `conditioner.unconditional`,
so classifier-free guidance works) and random masking of the view conditioning (as the first chunk at inference).
With `loss="l1"` the error is absolute instead of squared: the network's x0 estimate becomes the per-pixel
conditional median, whose silhouettes have sharp edges where the mean's are a tinted halo (stage 2 of the bundled
model's recipe).

A batch that is one process's share of the step's (`Batch.scenes` of `Batch.total`) draws the generator exactly as
the whole batch does, so each scene gets the same dropout, masking, encoder noise, noise level and noise.
"""

from __future__ import annotations

import math

import torch

from sv4d_kit.checks import one_of
from sv4d_kit.sampling import preconditioning
from sv4d_kit.training.config import LOSSES, TrainConfig
from sv4d_kit.training.data import Batch


def diffusion_loss(pipe, batch: Batch, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """The v-objective loss of one batch (the mean over its scenes), with condition dropout and view masking (see
    the module docstring)."""
    unet, conditioner, vae = pipe.unet, pipe.conditioner, pipe.vae
    T, V = batch.images.shape[1], batch.images.shape[2] - 1
    own = slice(batch.scenes.start, batch.scenes.stop)  # this batch's B scenes among the step's `total`
    uncond = torch.rand(batch.total, generator=generator)[own]  # (total,) -> (B,)
    mask = torch.rand(batch.total, generator=generator)[own]
    cs = []
    for b in range(batch.total):
        if b not in batch.scenes:
            # another process's scene: draw the encoder noise its conditioner call would, nothing more
            conditioner.vae_encoder_inputs(batch.images[0, :, 0], batch.images[0, 0, 1:], generator=generator)
            continue
        i = b - batch.scenes.start
        c = conditioner(batch.images[i, :, 0], batch.images[i, 0, 1:], batch.polar[i], batch.azimuth[i],
                        generator=generator)  # fmt: skip
        if mask[i] < config.p_mask_view:  # as the first chunk at inference: no view conditioning
            c["cond_view"] = c["cond_view"] * 0
        if uncond[i] < config.p_uncond:
            c = conditioner.unconditional(c)
        cs.append(c)
    crossattn = torch.cat([c["crossattn"] for c in cs])  # B x (1, T, D) -> (B, T, D)
    concat = torch.cat([c["concat"] for c in cs])  # B x (T*V, C, h, w) -> (B*T*V, C, h, w), (b t v) order
    vector = torch.cat([c["vector"] for c in cs])  # (B*T*V, adm)
    cond_view = torch.cat([c["cond_view"] for c in cs])  # B x (V, C, h, w) -> (B*V, C, h, w)

    targets = batch.images[:, :, 1:].flatten(0, 2)  # (B, T, V, 3, H, W) -> (B*T*V, 3, H, W)
    x0 = vae.encode_latents(targets)  # (B*T*V, C, h, w), ~unit std
    # noise is drawn on the CPU generator and moved, so a CUDA run sees the same noise as a CPU run
    log_sigma = config.P_mean + config.P_std * torch.randn(batch.total, generator=generator)[own]
    sigma = log_sigma.exp().repeat_interleave(T * V).to(x0.device)  # one level per scene: (B,) -> (B*T*V,)
    # the whole batch's noise (total*T*V, C, h, w), of which our scenes' (B*T*V, C, h, w)
    rows = slice(own.start * T * V, own.stop * T * V)
    noise = torch.randn((batch.total * T * V, *x0.shape[1:]), generator=generator)[rows].to(x0.device)
    s = sigma.view(-1, 1, 1, 1)
    x = x0 + s * noise
    c_skip, c_out, c_in, c_noise = preconditioning(s, pipe.config.sigma_data)  # SV4D 2.0's unless set
    out = unet(torch.cat([x * c_in, concat], dim=1), c_noise.flatten(), crossattn, vector, cond_view)
    target = (x0 - c_skip * x) / c_out  # the v-objective
    return regression_loss(out, target, config.loss)


def regression_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Mean squared ("l2": minimised by the conditional mean) or absolute ("l1": by the conditional median) error."""
    error = prediction - target
    if one_of("loss", kind, LOSSES) == "l2":
        return error.square().mean()
    return error.abs().mean()


def lr_at(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio * lr` at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)
