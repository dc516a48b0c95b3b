"""`generate(input, output_dir)`: a file or clip in, a folder of novel-view videos, a grid, an orbit and metadata out.

This is what `sv4d-kit generate` and `sv4d-kit demo` run; the command only parses its arguments into these options.

    import sv4d_kit
    result = sv4d_kit.generate("data/object.png", "outputs/object", model="tiny", seed=23)
    result.folder            # outputs/object: view_XX.mp4/.gif, grid.png, orbit.mp4, metadata.json
    result.output.images     # (T, V+1, 3, H, W) in [0, 1], view 0 = the preprocessed input
    result.metadata          # what metadata.json holds

The options are named as the command's flags (`steps` is `--steps`, `min_cfg` is `--min-cfg`), and `metadata.json`
records them under "parameters", so a folder says how to make it again.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from sv4d_kit import __version__, checks
from sv4d_kit.checks import KitInputError

if (
    TYPE_CHECKING
):  # torch, diffusers and imageio are imported on first use: `sv4d-kit --help` reads this module
    from sv4d_kit.pipeline import SV4DPipeline, SV4DPipelineOutput

MAX_FRAMES = (
    21  # a clip longer than SV4D 2.0's 21 frames is sampled down to 21 unless `frames` says otherwise
)
DTYPES = ("float32", "bfloat16", "float16")
MODEL_KEYS = (
    "variant",
    "frames_per_chunk",
    "num_views",
    "image_size",
)  # the model facts metadata.json records
# The demo: the bundled sample clip (made by sv4d_kit.synthetic) seen from 10° above, 13 frames (the tiny model
# samples chunks of 4 frames overlapping by one, so 3k + 1 frames waste none; its timings are in BENCHMARKS.md).
SAMPLE = "sample_moving_object.gif"
DEMO_FRAMES = 13
DEMO_ELEVATION = 10.0


# What metadata.json records under "parameters": every option of `generate` that can change the result or the folder
PARAMETERS = ("output_dir", "variant", "download", "steps", "cfg", "min_cfg", "sampler", "elevation", "azimuths",
              "frames", "seed", "device", "dtype", "offload", "encode_chunk", "decode_chunk", "size", "remove_bg",
              "overwrite", "reconstruct")  # fmt: skip
# = sampling.SAMPLERS, not imported from there: `sv4d-kit --help` reads this module without importing torch
SAMPLERS = ("euler", "heun")


def _azimuths(values) -> list[float]:
    if len(values) == 0:
        raise KitInputError("azimuths needs at least one number")
    return [checks.number("azimuths", a) for a in values]


# The checks of the options that do not depend on the model (None means "the model's default" where allowed).
OPTION_CHECKS = {
    "steps": lambda v: checks.integer("steps", v, minimum=1),
    "cfg": lambda v: checks.number("cfg", v, minimum=0),
    "min_cfg": lambda v: checks.number("min_cfg", v, minimum=0),
    "sampler": lambda v: checks.one_of("sampler", v, SAMPLERS),
    "elevation": lambda v: checks.number("elevation", v, -90, 90),
    "azimuths": _azimuths,
    "frames": lambda v: checks.integer("frames", v, minimum=1),
    "seed": lambda v: checks.integer("seed", v),
    "device": lambda v: checks.torch_device("device", v),
    "dtype": lambda v: checks.one_of("dtype", v, DTYPES),
    "encode_chunk": lambda v: checks.integer("encode_chunk", v, minimum=1),
    "decode_chunk": lambda v: checks.integer("decode_chunk", v, minimum=1),
    "size": lambda v: checks.integer("size", v, minimum=1),
}
OPTIONAL = ("steps", "cfg", "min_cfg", "sampler", "azimuths", "frames", "size")


def check_options(options: dict) -> dict:
    """`generate`'s options, checked and normalised (ints as int, numbers as float); `KitInputError` otherwise.
    Batch runs call it once before any work, so a bad option fails the command, not every input."""
    unknown = sorted(set(options) - set(PARAMETERS) - {"model"})
    if unknown:
        raise KitInputError(f"unknown generate options {unknown}; known: {', '.join(PARAMETERS)}")
    return {
        k: v if (k not in OPTION_CHECKS or (v is None and k in OPTIONAL)) else OPTION_CHECKS[k](v)
        for k, v in options.items()
    }


@dataclass
class GenerateResult:
    """What `generate` made: the pipeline's output, the folder it wrote and the metadata written there."""

    output: SV4DPipelineOutput
    folder: Path
    metadata: dict


def generate(
    input: str | os.PathLike,
    output_dir: str | os.PathLike,
    model: str | os.PathLike | SV4DPipeline = "tiny",
    *,
    variant: str | None = None,
    download: bool = False,
    steps: int | None = None,
    cfg: float | None = None,
    min_cfg: float | None = None,
    sampler: str | None = None,
    elevation: float = 0.0,
    azimuths: list[float] | None = None,
    frames: int | None = None,
    seed: int = 23,
    device: str = "cpu",
    dtype: str = "float32",
    offload: bool = False,
    encode_chunk: int = 8,
    decode_chunk: int = 4,
    size: int | None = None,
    remove_bg: bool = False,
    overwrite: bool = False,
    reconstruct: bool = False,
    progress: bool = True,
    command: str = "generate",
) -> GenerateResult:
    """Generate the novel-view videos of the object in `input` (an image, GIF, MP4, folder of frames or glob) into
    `output_dir` (written atomically: all or nothing; an existing non-empty folder only with `overwrite`).

    model: "tiny" (the bundled tiny SV4D), a kit model folder, a released `.safetensors` checkpoint, a hub id
    (fetched only with `download`), or an `SV4DPipeline` already loaded (then `variant`, `download` and `dtype`
    do not apply). steps, cfg, min_cfg: sampling steps and the maximum / minimum guidance scale (None: the
    model's). sampler: "euler" (the reference's) or "heun" (2nd order, about twice the network calls a step; None:
    the model's, Euler unless its folder says otherwise). elevation: degrees of the novel views; azimuths: the V+1
    azimuths of the input view and the novel views (None: the model's). frames: output frames (None: the clip's,
    at most 21; one image gives a still clip). size: image side (None: the model's). remove_bg: matte with rembg.
    reconstruct: also fit a 4D point representation to the views (`sv4d_kit.recon4d`) and write `orbit_smooth.mp4`
    (72 camera angles a revolution while time advances, at 4x the model's size) and `points/frame_XXX.ply`. Raises
    `KitInputError` for bad input, before any output is written.
    """
    import torch

    from sv4d_kit import preprocess
    from sv4d_kit.media import prepare_output_dir, write_outputs
    from sv4d_kit.pipeline import SV4DPipeline

    options = {k: v for k, v in locals().items() if k in PARAMETERS}
    timings = {}

    # 1. Check the options and the output folder before any work
    checked = check_options(options)
    steps, cfg, min_cfg, elevation, azimuths, frames, seed, device, encode_chunk, decode_chunk, size = (
        checked[k] for k in ("steps", "cfg", "min_cfg", "elevation", "azimuths", "frames", "seed", "device",
                             "encode_chunk", "decode_chunk", "size")
    )  # fmt: skip
    torch_dtype = getattr(torch, checked["dtype"])
    prepare_output_dir(output_dir, overwrite)

    # 2. Read the input (fails fast on bad files)
    tic = time.perf_counter()
    clip, read_info = preprocess.read_frames(input)
    timings["read"] = time.perf_counter() - tic

    # 3. Load the model
    tic = time.perf_counter()
    if isinstance(model, SV4DPipeline):
        pipe, source = model, model.config.get("_name_or_path") or "SV4DPipeline (in memory)"
    else:
        pipe = SV4DPipeline.from_pretrained(
            model, variant=variant, download=download, torch_dtype=torch_dtype
        )
        source = str(model)
    V = pipe.config.num_views
    if azimuths is not None and len(azimuths) != V + 1:
        raise KitInputError(
            f"azimuths needs {V + 1} values for this model (input view + {V} novel views), got {len(azimuths)}"
        )
    if offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    timings["load"] = time.perf_counter() - tic

    # 4. Preprocess: one crop for the clip, resize, white background; the frame count and how it is reached
    tic = time.perf_counter()
    num_frames = frames or min(len(clip), MAX_FRAMES)
    policy = "sample" if len(clip) >= num_frames else "loop"
    try:
        images, prep_info = preprocess.preprocess(
            clip, size=size or pipe.config.image_size, remove_bg=remove_bg, num_frames=num_frames,
            frame_policy=policy,
        )  # fmt: skip
    except RuntimeError as e:  # rembg missing or its model not on disk: the user's setup, one line
        raise KitInputError(checks.one_line(e)) from None
    timings["preprocess"] = time.perf_counter() - tic  # images: (T, 3, H, W) in [0, 1]

    # 5. Generate: (T, 3, H, W) -> (T, V+1, 3, H, W)
    out = pipe(
        images,
        elevations_deg=elevation,
        azimuths_deg=azimuths,
        num_inference_steps=steps,
        min_guidance=min_cfg,
        max_guidance=cfg,
        sampler=checked["sampler"],
        seed=seed,
        encode_chunk_size=encode_chunk,
        decode_chunk_size=decode_chunk,
        progress=progress,
    )
    timings.update(out.timings)

    # 6. Reconstruct (optional): 4D points fitted to the views -> a smooth orbit and point clouds in the folder
    extra, recon_info = None, None
    if reconstruct:
        from sv4d_kit.recon4d.outputs import ORBIT_SCALE, fit_matrix, write_reconstruction

        tic = time.perf_counter()
        fitted = fit_matrix(out.images, out.cameras, progress=progress)
        timings["reconstruct"] = time.perf_counter() - tic
        recon_info = {"points": int(fitted.points.positions.shape[1]), "fit_steps": len(fitted.losses),
                      "final_loss": fitted.losses[-1], "orbit_smooth_size": ORBIT_SCALE * images.shape[-1]}  # fmt: skip

        def extra(folder):
            write_reconstruction(folder, fitted.points, out.cameras["elevations_deg"][0],
                                 out.cameras["azimuths_deg"][0], ORBIT_SCALE * images.shape[-1])  # fmt: skip

    # 7. Write the folder: videos, grid, orbit, metadata.json (and the reconstruction's files)
    tic = time.perf_counter()
    metadata = {
        "kit_version": __version__,
        "command": command,
        "input": {
            "path": str(input),
            "read": read_info,
            "preprocess": {k: v for k, v in prep_info.items() if k != "read"},
        },
        "model": {"source": source, **{k: pipe.config[k] for k in MODEL_KEYS}},
        "parameters": {k: str(v) if isinstance(v, os.PathLike) else v for k, v in options.items()},
        "seed": seed,
        "sampling": out.sampling,  # the settings the sampler ran with: the options, else the model's defaults
        "cameras": out.cameras,
        "timings_s": timings,
        **({"reconstruction": recon_info} if recon_info else {}),
    }
    folder = write_outputs(
        output_dir,
        out.images,
        metadata,
        azimuths_deg=out.cameras["azimuths_deg"],
        overwrite=overwrite,
        extra=extra,
    )
    timings["write"] = time.perf_counter() - tic
    return GenerateResult(output=out, folder=folder, metadata=metadata)


def demo(
    output_dir: str | os.PathLike,
    frames: int = DEMO_FRAMES,
    steps: int | None = None,
    seed: int = 23,
    overwrite: bool = False,
    progress: bool = True,
) -> GenerateResult:
    """The bundled sample clip through the bundled tiny SV4D on the CPU (what `sv4d-kit demo` runs)."""
    with resources.as_file(resources.files("sv4d_kit") / "assets" / SAMPLE) as sample:
        return generate(
            sample, output_dir, "tiny", steps=steps, elevation=DEMO_ELEVATION, frames=frames, seed=seed,
            overwrite=overwrite, progress=progress, command="demo",
        )  # fmt: skip
