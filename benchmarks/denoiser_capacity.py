"""Is the tiny UNet wide enough to remove the noise at σ ≈ 1? Fit one fixed batch; measure the noise it leaves.

For each width (`model_channels`), a fresh tiny SV4D is trained on one fixed batch of 2 simple-world scenes
(24-channel projected latent, `--sigma-data`, default "per_channel"), with the kit's objective
(`training.diffusion_loss`; log σ ~ N(0, 0.6), so σ ≈ 0.3–3; no condition dropout; view conditioning masked as in a
first chunk). Nothing then limits how well it denoises that batch but the network and the optimisation. Every
`--every` steps it prints the share of the noise energy that one denoising step leaves on that batch at σ = 0.3 and
at σ = 1, with fixed noise (0 = removed, 1 = left). The per-channel Wiener filter's share is printed once, for
comparison: it is what a denoiser that knows only each channel's variance leaves.
    python benchmarks/denoiser_capacity.py --widths 64 128 --steps 400 --every 100 [--threads 2]
"""

import argparse
import time

import torch

from sv4d_kit.sampling import denoise
from sv4d_kit.training import TrainConfig, build_tiny_sv4d, diffusion_loss, make_batch
from sv4d_kit.training.data import projection_images
from sv4d_kit.training.model import measure_sigma_data

LEVELS = (0.3, 1.0)


def noise_left(pipe, batch, noise) -> dict[float, float]:
    """The share of the noise energy D(x0 + σε) leaves, per σ in LEVELS, over the batch's novel views."""
    shares = {}
    with torch.no_grad():
        for level in LEVELS:
            errors = []
            for b in range(len(batch.images)):
                c = pipe.conditioner(batch.images[b, :, 0], batch.images[b, 0, 1:], batch.polar[b],
                                     batch.azimuth[b])  # fmt: skip
                c["cond_view"] = c["cond_view"] * 0

                def network(x_in, c_noise, c):
                    return pipe.unet(torch.cat([x_in, c["concat"]], 1), c_noise, c["crossattn"], c["vector"],
                                     c["cond_view"])  # fmt: skip

                x0 = pipe.vae.encode_latents(batch.images[b, :, 1:].flatten(0, 1))
                D = denoise(network, x0 + level * noise[b], torch.tensor(level), c, pipe.config.sigma_data)
                errors.append(((D - x0) ** 2).mean() / level**2)
            shares[level] = float(torch.stack(errors).mean())
    return shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=5e-4)
    parser.add_argument(
        "--sigma-data", default="per_channel", help='"per_channel", or a number (1: SV4D 2.0)'
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sigma_data = args.sigma_data if args.sigma_data == "per_channel" else float(args.sigma_data)
    for width in args.widths:
        config = TrainConfig(world="simple", latent_channels=24, latent_shift=0.0, model_channels=width,
                             num_head_channels=32, batch_scenes=2, static_fraction=0.0, static_mix=0.0,
                             p_uncond=0.0, p_mask_view=1.0, P_mean=0.0, P_std=0.6, seed=7, sigma_data=sigma_data,
                             projection_scenes=16)  # fmt: skip
        pipe = build_tiny_sv4d(config)
        if sigma_data == "per_channel":
            pipe.register_to_config(sigma_data=measure_sigma_data(pipe.vae, projection_images(config)))
        batch = make_batch(config, 0)
        x0 = pipe.vae.encode_latents(batch.images[0, :, 1:].flatten(0, 1))
        noise = torch.randn((len(batch.images), *x0.shape), generator=torch.Generator().manual_seed(1))
        if width == args.widths[0]:
            variance = torch.stack([pipe.vae.encode_latents(batch.images[b, :, 1:].flatten(0, 1))
                                    for b in range(len(batch.images))]).var(dim=(0, 1, 3, 4))  # fmt: skip
            wiener = {s: float((variance / (variance + s**2)).mean()) for s in LEVELS}
            print("Wiener filter leaves " + ", ".join(f"σ {s}: {v:.3f}" for s, v in wiener.items()))
        params = [p for m in (pipe.unet, pipe.conditioner.clip) for p in m.parameters()]
        optimizer = torch.optim.Adam(params, lr=args.lr)
        count = sum(p.numel() for p in pipe.unet.parameters())
        tic = time.perf_counter()
        for step in range(1, args.steps + 1):
            loss = diffusion_loss(pipe, batch, config, torch.Generator().manual_seed(step))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            if step % args.every == 0:
                shares = noise_left(pipe, batch, noise)
                print(f"width {width} ({count / 1e6:.2f} M UNet parameters) step {step}: loss {loss.item():.4f}, "
                      + ", ".join(f"σ {s}: {v:.3f} left" for s, v in shares.items())
                      + f" ({time.perf_counter() - tic:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
