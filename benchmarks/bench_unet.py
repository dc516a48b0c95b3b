"""One guided SV4D 2.0 UNet evaluation (the [uncond; cond] batch of one chunk): time, peak memory, TFLOP/s.

    python benchmarks/bench_unet.py                          # tiny config on CPU (fp32)
    python benchmarks/bench_unet.py --full --device cuda     # released sv4d2 size, random weights, bf16

The FLOP count is torch's FlopCounterMode over one forward (counted on the meta device, so it is the same for every
machine); about 103 TFLOP per 48-latent sv4d2 forward, so 206 TFLOP per guided evaluation.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, peak_gib, reset_peak, timed  # noqa: E402

from sv4d_kit.models.checkpoint import build_models, tiny_configs  # noqa: E402
from sv4d_kit.models.unet import SV4DUNet  # noqa: E402


def unet_inputs(unet: SV4DUNet, T: int, V: int, latent: int, device, dtype, batch: int = 2) -> tuple:
    """Random inputs of the reference UNet call for `batch` (2 = guided) chunks of T x V frames."""
    cfg = unet.config
    n = batch * T * V
    g = torch.Generator().manual_seed(0)

    def r(*shape):
        return (
            torch.randn(*shape, generator=g).to(device, dtype)
            if device != "meta"
            else torch.empty(*shape, device="meta")
        )

    return (
        r(n, cfg.in_channels, latent, latent),
        r(n).float() * 0 + 0.5,
        r(batch, T, cfg.context_dim),
        r(n, cfg.adm_in_channels),
        r(batch * V, cfg.motion_context_dim, latent, latent),
        None,
        None,
        T * V,
    )


def count_flops(build, T: int, V: int, latent: int) -> int:
    unet = build("meta")
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        unet(*unet_inputs(unet, T, V, latent, "meta", None))
    return fc.get_total_flops()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="released sv4d2 size (576 px, 12 frames x 4 views)")
    p.add_argument("--variant", default="sv4d2", choices=["sv4d2", "sv4d2_8views"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--chunk-attention", type=int, default=None, help="attention batch chunk (memory switch)")
    p.add_argument("--chunk-ff", type=int, default=None, help="feed-forward chunk (memory switch)")
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.full else "float32"))
    if args.full:
        T, V, latent = (12, 4, 72) if args.variant == "sv4d2" else (5, 8, 72)

        def build(dev):
            return build_models(args.variant, device=dev)[0]
    else:
        T, V, latent = 4, 4, 8

        def build(dev):
            with torch.device(dev):
                return SV4DUNet.from_reference_config(tiny_configs(args.variant)["unet"])

    flops = count_flops(build, T, V, latent)
    unet = build(device).to(dtype).eval()  # built on the target device: no slow CPU init of 2 B parameters
    unet.set_chunking(ff=args.chunk_ff, attention=args.chunk_attention)
    inputs = unet_inputs(unet, T, V, latent, device, dtype)
    reset_peak(device)
    with torch.no_grad():
        median, times = timed(lambda: unet(*inputs), device, repeats=args.repeats)
    result = {
        "benchmark": "guided UNet evaluation",
        "size": f"{args.variant} full" if args.full else f"{args.variant} tiny",
        "frames": f"2 x {T} x {V} at {latent}x{latent} latents",
        "dtype": str(dtype).removeprefix("torch."),
        "machine": machine(device),
        "params_M": round(sum(p.numel() for p in unet.parameters()) / 1e6, 2),
        "seconds_median": round(median, 4),
        "seconds_all": [round(t, 4) for t in times],
        "peak_memory_GiB": round(peak_gib(device), 2),
        "TFLOP": round(flops / 1e12, 3),
        "TFLOP_per_s": round(flops / 1e12 / median, 2),
        "chunking": {"attention": args.chunk_attention, "ff": args.chunk_ff},
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
