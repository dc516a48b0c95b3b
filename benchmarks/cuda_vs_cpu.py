"""Where GPU kernels differ: the same tiny seeded pipeline job on CPU (fp32) and CUDA (fp32, bf16, fp16).

    python benchmarks/cuda_vs_cpu.py      # needs a CUDA device

Prints the largest absolute difference of the [0, 1] image matrix against the CPU fp32 result.
"""

import json

import torch

from sv4d_kit.models.checkpoint import build_tiny_models
from sv4d_kit.pipeline import SV4DPipeline


def job(device: str, dtype: torch.dtype) -> torch.Tensor:
    unet, cond, vae = build_tiny_models("sv4d2", seed=0)
    pipe = SV4DPipeline(unet, cond, vae, variant="sv4d2", frames_per_chunk=4, num_views=4, image_size=64)
    pipe.to(device, dtype)
    frames = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    return pipe(frames, num_inference_steps=10, seed=0, progress=False).images.float().cpu()


def main() -> None:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    ref = job("cpu", torch.float32)
    result = {
        "job": "tiny sv4d2, 6 frames x 4 views at 64 px, 10 steps, seed 0",
        "max_abs_diff_vs_cpu_fp32": {},
    }
    for name in ("float32", "bfloat16", "float16"):
        out = job("cuda", getattr(torch, name))
        result["max_abs_diff_vs_cpu_fp32"][f"cuda_{name}"] = float((out - ref).abs().max())
        result.setdefault("mean_abs_diff_vs_cpu_fp32", {})[f"cuda_{name}"] = float((out - ref).abs().mean())
    again = job("cuda", torch.float32)
    result["cuda_fp32_repeat_identical"] = bool(torch.equal(again, job("cuda", torch.float32)))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
