"""A whole generation job, stage by stage (read, preprocess, encode, sample, decode, write): time and peak memory.

    python benchmarks/bench_pipeline.py                                  # tiny random-weight model on CPU
    python benchmarks/bench_pipeline.py --full --device cuda --steps 10  # released sv4d2 size, random weights, bf16

GPU peak memory is measured per stage (torch.cuda.max_memory_allocated, reset when a stage starts); on the CPU the
figure is the process's peak resident memory so far (it can only grow).
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine, peak_gib, reset_peak, sync  # noqa: E402

from sv4d_kit import preprocess  # noqa: E402
from sv4d_kit.media import write_outputs  # noqa: E402
from sv4d_kit.models.checkpoint import build_tiny_models  # noqa: E402
from sv4d_kit.pipeline import SV4DPipeline  # noqa: E402

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "moving_object.gif"


class StageMeter:
    """Wraps the pipeline's stage entry points to record the peak memory of each stage."""

    def __init__(self, device: torch.device):
        self.device, self.peaks = device, {}

    def wrap(self, obj, attr: str, stage: str) -> None:
        fn = getattr(obj, attr)

        def wrapped(*args, **kwargs):
            sync(self.device)
            reset_peak(self.device)
            out = fn(*args, **kwargs)
            sync(self.device)
            self.peaks[stage] = max(self.peaks.get(stage, 0.0), peak_gib(self.device))
            return out

        setattr(obj, attr, wrapped)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--full", action="store_true", help="released size (576 px), random weights")
    p.add_argument("--variant", default="sv4d2", choices=["sv4d2", "sv4d2_8views"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"])
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--frames", type=int, default=21)
    p.add_argument("--input", default=str(SAMPLE))
    args = p.parse_args()
    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype or ("bfloat16" if args.full else "float32"))
    steps = args.steps or (50 if args.full else 10)
    meter, seconds = StageMeter(device), {}

    tic = time.perf_counter()
    if args.full:
        pipe = SV4DPipeline.from_preset(args.variant, device=device, dtype=dtype)
    else:
        unet, cond, vae = build_tiny_models(args.variant, seed=0)
        pipe = SV4DPipeline(
            unet, cond, vae, variant=args.variant, frames_per_chunk=4, num_views=4, image_size=64
        )
        pipe.to(device, dtype)
    seconds["build"] = time.perf_counter() - tic
    meter.wrap(pipe.conditioner, "forward", "encode")
    meter.wrap(pipe.unet, "forward", "sample")
    meter.wrap(pipe.vae, "decode", "decode")

    tic = time.perf_counter()
    frames, _ = preprocess.read_frames(args.input)
    seconds["read"] = time.perf_counter() - tic
    tic = time.perf_counter()
    images, _ = preprocess.preprocess(frames, size=pipe.config.image_size, num_frames=args.frames)
    seconds["preprocess"] = time.perf_counter() - tic
    tic = time.perf_counter()
    out = pipe(images, num_inference_steps=steps, seed=0, progress=False)
    seconds["generate"] = time.perf_counter() - tic
    seconds.update(out.timings)
    with tempfile.TemporaryDirectory() as tmp:
        tic = time.perf_counter()
        try:
            write_outputs(
                Path(tmp) / "out", out.images, {"benchmark": True}, azimuths_deg=out.cameras["azimuths_deg"]
            )
            seconds["write"] = time.perf_counter() - tic
        except Exception as e:  # a GPU box without ffmpeg: report it instead of losing the figures
            seconds["write"] = f"failed: {type(e).__name__}: {str(e)[:80]}"
    result = {
        "benchmark": "generation job",
        "size": f"{args.variant} {'full' if args.full else 'tiny'}",
        "job": f"{args.frames} frames x {pipe.config.num_views} views at {pipe.config.image_size} px, {steps} steps, "
        f"chunks of {out.cameras['frames_per_chunk']} frames at {out.cameras['chunk_starts']}",
        "dtype": str(dtype).removeprefix("torch."),
        "machine": machine(device),
        "seconds": {k: round(v, 3) if isinstance(v, float) else v for k, v in seconds.items()},
        "sample_seconds_per_step": round(out.timings["sample"] / steps / len(out.cameras["chunk_starts"]), 4),
        "peak_memory_GiB": {k: round(v, 2) for k, v in meter.peaks.items()},
        "peak_memory_GiB_overall": round(
            peak_gib(device) if device.type == "cpu" else max(meter.peaks.values()), 2
        ),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
