"""One denoising step at a time: what a tiny-SV4D model's D(x₀ + σε) looks like, and how much noise it leaves.

For one rendered training-distribution scene (`TrainConfig(seed=12345)`, step 3, view conditioning masked as for
the first chunk) it writes a picture of 4 novel views: the rendered truth, its latent's reconstruction, then the
decoded D at σ = 0.1, 0.3, 1, 3, 10, 30 (rows); and prints, per σ, the latent MSE and, per latent channel at
σ = 0.3 and 1, var(x₀) : the model's error / σ² : the per-channel Wiener estimate's error / σ² (1 = the noise is left
as it was, 0 = removed).
    python benchmarks/denoise_picture.py MODEL_DIR OUT.png [--world patterned]
"""

import argparse

import imageio.v2 as imageio
import torch

from sv4d_kit import media, synthetic
from sv4d_kit.models.autoencoder import decode_latents
from sv4d_kit.pipeline import SV4DPipeline
from sv4d_kit.sampling import denoise
from sv4d_kit.training import TrainConfig, make_batch

SIGMAS = (0.1, 0.3, 1.0, 3.0, 10.0, 30.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model")
    parser.add_argument("out")
    parser.add_argument("--world", choices=synthetic.WORLDS, default=synthetic.DEFAULT_WORLD)
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = SV4DPipeline.from_pretrained(args.model)
    vae = pipe.vae
    config = TrainConfig(steps=10, static_fraction=0.0, batch_scenes=2, seed=12345, world=args.world)
    batch = make_batch(config, 3)
    c = pipe.conditioner(batch.images[0, :, 0], batch.images[0, 0, 1:], batch.polar[0], batch.azimuth[0])
    c["cond_view"] = c["cond_view"] * 0

    def network(x_in, c_noise, c):
        return pipe.unet(
            torch.cat([x_in, c["concat"]], 1), c_noise, c["crossattn"], c["vector"], c["cond_view"]
        )

    targets = batch.images[0, :, 1:].flatten(0, 1)  # (T*V, 3, H, W) in [-1, 1]
    x0 = vae.encode_latents(targets)
    g = torch.Generator().manual_seed(0)
    rows = [((targets + 1) / 2)[:4], decode_latents(vae, x0)[:4]]
    variance = x0.var(dim=(0, 2, 3))
    with torch.no_grad():
        for s in SIGMAS:
            x = x0 + s * torch.randn(x0.shape, generator=g)
            D = denoise(network, x, torch.tensor(s), c, pipe.config.sigma_data)
            rows.append(decode_latents(vae, D)[:4])
            print(f"sigma {s:5.2f}: latent MSE {((D - x0) ** 2).mean():.4f} (noisy input {s * s:.4f})")
            if s in (0.3, 1.0):
                error = ((D - x0) ** 2).mean(dim=(0, 2, 3)) / s**2
                wiener = variance / (variance + s**2)
                print("  per channel var : model / Wiener: " + ", ".join(
                    f"{v:.2f} : {e:.2f} / {w:.2f}" for v, e, w in zip(variance.tolist(), error.tolist(),
                                                                      wiener.tolist())))  # fmt: skip
    imageio.imwrite(args.out, media.grid_image(torch.stack(rows, dim=1), factor=3))  # rows down, views across


if __name__ == "__main__":
    main()
