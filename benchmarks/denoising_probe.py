"""Denoising error of a tiny-SV4D model folder per noise level, next to simple bounds and baselines.

For one rendered batch of 4 training-distribution scenes (`TrainConfig(seed=12345)`, step 3, view conditioning
masked) it prints, per σ, the mean squared error of the model's D(x₀ + σε) against x₀ in latent units, and of the
noisy input, also split into latent pixels whose block is pure white background (x₀ known exactly) and the rest,
and the decoded D's pixel MSE (in [0, 1], comparable across latent spaces) on those blocks;
then the bound of the best per-patch linear (Wiener) denoiser, computed from the covariance of the latent
patches of 3 batches of 16 scenes; then copy-the-input-view and the batch's per-pixel mean.
    python benchmarks/denoising_probe.py [MODEL_DIR]   (default: the bundled tiny SV4D)
"""

import argparse

import torch

from sv4d_kit.models.autoencoder import decode_latents
from sv4d_kit.pipeline import SV4DPipeline
from sv4d_kit.sampling import denoise
from sv4d_kit.training import TrainConfig, make_batch

SIGMAS = (0.02, 0.1, 0.3, 0.6, 1.0, 2.0, 5.0, 20.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "model", nargs="?", default=None, help="a kit model folder (default: the bundled one)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = SV4DPipeline.from_pretrained(args.model or "tiny")
    vae = pipe.vae

    # 1. One batch and its conditioning
    batch = make_batch(TrainConfig(steps=10, static_fraction=0.0, batch_scenes=4, seed=12345), 3)
    B = batch.images.shape[0]
    conds = [pipe.conditioner(batch.images[b, :, 0], batch.images[b, 0, 1:], batch.polar[b], batch.azimuth[b])
             for b in range(B)]  # fmt: skip
    for c in conds:
        c["cond_view"] = c["cond_view"] * 0  # as the first chunk at inference
    cat = {k: torch.cat([c[k] for c in conds]) for k in ("concat", "crossattn", "vector", "cond_view")}

    def network(x_in, c_noise, c):  # the UNet with the input-view latent appended, as in training
        return pipe.unet(
            torch.cat([x_in, c["concat"]], 1), c_noise, c["crossattn"], c["vector"], c["cond_view"]
        )

    targets = batch.images[:, :, 1:].flatten(0, 2)  # (B*T*V, 3, 32, 32) in [-1, 1]
    x0 = vae.encode_latents(targets)  # (B*T*V, C, 8, 8)
    f = vae.config.downsample_factor
    blocks = torch.nn.functional.pixel_unshuffle(targets, f)  # (B*T*V, 3·f², 8, 8)
    background = (blocks == 1).all(1)  # (B*T*V, 8, 8): latent pixels whose block is all white
    copy = vae.encode_latents(batch.images[:, :, :1].expand_as(batch.images[:, :, 1:]).flatten(0, 2))

    # 2. The model's denoising error per sigma
    g = torch.Generator().manual_seed(0)
    print(f"x0 variance {x0.var().item():.3f}")
    with torch.no_grad():
        for s in SIGMAS:
            x = x0 + s * torch.randn(x0.shape, generator=g)
            D = denoise(network, x, torch.tensor(s), cat, pipe.config.sigma_data)
            error = ((D - x0) ** 2).mean(1)  # (B*T*V, 8, 8) per latent pixel
            # the same in pixels: decoded D against the rendered images, both in [0, 1]
            pixels = torch.nn.functional.pixel_unshuffle(decode_latents(vae, D) - (targets + 1) / 2, f)
            pixel_error = (pixels**2).mean(1)  # (B*T*V, 8, 8) per block
            print(f"sigma {s:5.2f}  model {error.mean():.4f}  noisy input {((x - x0) ** 2).mean():.4f}  "
                  f"pure-background tokens {error[background].mean():.4f}  object tokens "
                  f"{error[~background].mean():.4f}  | pixel MSE: background {pixel_error[background].mean():.5f}"
                  f"  object {pixel_error[~background].mean():.5f}")  # fmt: skip
    print(f"pure-background tokens: {background.float().mean():.2f} of all")

    # 3. The per-patch linear (Wiener) bound: E[mse] = mean over eigenvalues l of l s² / (l + s²)
    cfg = TrainConfig(steps=10, static_fraction=0.0, batch_scenes=16, seed=777)
    z = torch.cat([vae.encode_latents(make_batch(cfg, s).images[:, :, 1:].flatten(0, 2)) for s in range(3)])
    eig = torch.linalg.eigvalsh(torch.cov(z.permute(0, 2, 3, 1).reshape(-1, z.shape[1]).double().T))
    print(f"patch covariance eigenvalues: largest {eig[-1]:.3f}, smallest {eig[0]:.4f}")
    for s in SIGMAS:
        print(f"sigma {s:5.2f}  per-patch linear bound {(eig * s**2 / (eig + s**2)).mean():.4f}")

    # 4. Baselines without noise
    print(f"copy the input view {((copy - x0) ** 2).mean():.4f}  per-pixel batch mean "
          f"{((x0 - x0.mean(0, keepdim=True)) ** 2).mean():.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
