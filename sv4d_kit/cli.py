"""The `sv4d-kit` command: `scene` (render a synthetic 4D scene), `generate`, and the golden check.

Every subcommand exits 0 on success and 2 on bad input or usage, printing exactly one `error:` line on stderr and no
traceback; a failed run leaves nothing in the output folder.
"""

from __future__ import annotations

import argparse
import sys
import time


class UsageError(ValueError):
    """Bad command-line usage (argparse's complaints, made one-line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message and exits; we want one line and exit code 2
        raise UsageError(message)


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _int_at_least(minimum: int):
    """An argparse type: a whole number >= `minimum`, or one clear error line."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


_positive_int = _int_at_least(1)
_nonnegative_int = _int_at_least(0)


def _torch_device(text: str) -> str:
    """Check a --device value ("cpu", "cuda", "cuda:1", "mps") before any work; ValueError names the problem."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device must be cpu, cuda, cuda:N or mps, got {text!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {text} was asked for, but torch sees no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {text}: torch sees only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {text} was asked for, but torch sees no MPS device")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sv4d-kit", description="Learn, run and take apart SV4D 2.0 (4D generation).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("scene", help="render a synthetic 4D scene (ground truth) from orbit cameras")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument(
        "--seed", type=int, default=18, help="scene seed (default 18, the scene of the sample data)"
    )
    p.add_argument("--frames", type=_positive_int, default=21, help="time frames (default 21)")
    p.add_argument("--views", type=_positive_int, default=8, help="orbit views, evenly spaced (default 8)")
    p.add_argument("--size", type=_positive_int, default=128, help="image size in pixels (default 128)")
    p.add_argument("--elevation", type=float, default=10.0, help="camera elevation in degrees (default 10)")
    p.add_argument("--static", action="store_true", help="render the scene without motion")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_scene)

    p = sub.add_parser("generate", help="generate novel-view videos and a 360° orbit from an image or a clip")
    p.add_argument("input", help="an image, GIF, MP4, a folder of frames or a glob pattern")
    p.add_argument("--output", required=True, help="output folder (must be empty unless --overwrite)")
    p.add_argument(
        "--model",
        default="tiny",
        help="tiny (the bundled tiny SV4D, default), a kit model folder, a released .safetensors file or "
        "a hub id",
    )
    p.add_argument(
        "--variant",
        choices=["sv4d2", "sv4d2_8views"],
        default=None,
        help="network variant of a released checkpoint (default: from the file name)",
    )
    p.add_argument("--download", action="store_true", help="allow downloading a hub model")
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        help="sampling steps (default: the model's, 50 for SV4D 2.0)",
    )
    p.add_argument("--cfg", type=float, default=None, help="maximum guidance scale (default: the variant's)")
    p.add_argument(
        "--min-cfg", type=float, default=None, help="minimum guidance scale (default: the variant's)"
    )
    p.add_argument(
        "--elevation", type=float, default=0.0, help="camera elevation of the novel views in degrees"
    )
    p.add_argument(
        "--azimuths",
        type=_float_list,
        default=None,
        help="comma-separated azimuths in degrees of the input view and every novel view (V+1 values)",
    )
    p.add_argument(
        "--frames",
        type=_positive_int,
        default=None,
        help="output frames (default: the clip's, at most 21; one image gives a still clip)",
    )
    p.add_argument("--seed", type=int, default=23, help="random seed (default 23)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--offload", action="store_true", help="keep models on the CPU between stages (CUDA)")
    p.add_argument(
        "--encode-chunk", type=_positive_int, default=8, help="frames encoded at a time (default 8)"
    )
    p.add_argument(
        "--decode-chunk", type=_positive_int, default=4, help="frames decoded at a time (default 4)"
    )
    p.add_argument("--size", type=_positive_int, default=None, help="image size (default: the model's)")
    p.add_argument(
        "--remove-bg", action="store_true", help="matte with rembg (must be installed, model on disk)"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("demo", help="the bundled sample through the bundled tiny SV4D, on the CPU")
    p.add_argument("--output", required=True, help="output folder (must be empty unless --overwrite)")
    p.add_argument(
        "--frames", type=_positive_int, default=DEMO_FRAMES, help=f"frames (default {DEMO_FRAMES})"
    )
    p.add_argument("--steps", type=_positive_int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--seed", type=int, default=23, help="random seed (default 23)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "evaluate", help="metrics on held-out synthetic scenes: the model, a baseline, ablations"
    )
    p.add_argument("--scenes", type=_positive_int, default=50, help="held-out scenes (default 50)")
    p.add_argument(
        "--seed", type=int, default=0, help="evaluation seed: picks the held-out scenes (default 0)"
    )
    p.add_argument("--json", required=True, help="where to write {method: {metric: value}}")
    p.add_argument("--model", default="tiny", help="tiny (default) or a kit model folder")
    p.add_argument(
        "--device", default="cpu", help="where the model samples: cpu (default), cuda, cuda:N (metrics: CPU)"
    )
    p.add_argument("--frames", type=_positive_int, default=8, help="frames per clip (default 8)")
    p.add_argument("--steps", type=_positive_int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--figure", default=None, help="also write a PNG: input | ground truth | generated")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser(
        "train", help="train the tiny SV4D on synthetic 4D scenes (the bundled weights' recipe)"
    )
    p.add_argument(
        "--output", required=True, help="run folder: checkpoint/, config.json, model/ (the export)"
    )
    p.add_argument("--steps", type=_positive_int, default=None, help="training steps (default: the recipe's)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the recipe's, 0)")
    p.add_argument("--config", default=None, help="a JSON file of TrainConfig fields overriding the recipe")
    p.add_argument(
        "--export", default=None, help="where to write the trained pipeline (default OUTPUT/model)"
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="fine-tune: start from an exported model folder's weights ('tiny' = the bundled model)",
    )
    p.add_argument("--device", default="cpu", help="where the network trains: cpu (default), cuda, cuda:N")
    p.add_argument(
        "--workers", type=_nonnegative_int, default=0,
        help="processes rendering scenes ahead of the steps (default 0: in the training process)",
    )  # fmt: skip
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a non-empty OUTPUT")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.set_defaults(func=cmd_train)
    return parser


def cmd_scene(args) -> None:
    from sv4d_kit import __version__, cameras, synthetic
    from sv4d_kit.media import prepare_output_dir, write_outputs

    prepare_output_dir(args.output, args.overwrite)  # fail before any work
    start = time.perf_counter()
    scene = synthetic.make_scene(args.seed, dynamic=not args.static)
    azimuths = cameras.orbit_azimuths(args.views)
    out = synthetic.render_orbit(
        scene, azimuths, args.elevation, size=args.size, num_frames=args.frames
    )  # rgb (T, V, 3, H, W)
    seconds = time.perf_counter() - start
    meta = {
        "kit_version": __version__,
        "command": "scene",
        "what": "ground-truth renders of a procedural 4D scene (sv4d_kit.synthetic), not a generated result",
        "parameters": {k: v for k, v in vars(args).items() if k != "func"},
        "cameras": {"azimuths_deg": [float(a) for a in azimuths], "elevation_deg": args.elevation},
        "timings_s": {"render": round(seconds, 3)},
    }
    folder = write_outputs(args.output, out.rgb, meta, azimuths_deg=azimuths, overwrite=args.overwrite)
    print(f"wrote {folder} ({args.frames} frames x {args.views} views, {args.size} px) in {seconds:.2f} s")


MODEL_KEYS = ("variant", "frames_per_chunk", "num_views", "image_size")
# The demo's default clip length: the tiny model samples chunks of 4 frames overlapping by one, so 13 frames are
# exactly four chunks (3k + 1 frames waste none); with 12 unguided steps a chunk this took 18.7 s on the slower 2-core
# machine of BENCHMARKS.md (the whole 21-frame sample: 25.3 s), with the bundled model's 6 steps 9.1-9.3 s, within
# the ~30 s target.
DEMO_FRAMES = 13
SAMPLE = "sample_moving_object.gif"  # the bundled demo input (sv4d_kit/assets/), made by sv4d_kit.synthetic


def load_model(name: str, variant=None, download: bool = False, dtype=None):
    """`tiny` (the bundled tiny SV4D) or anything `SV4DPipeline.from_pretrained` takes."""
    from sv4d_kit.pipeline import SV4DPipeline

    if name == "tiny":
        from sv4d_kit.training import load_tiny_pipeline

        return load_tiny_pipeline(torch_dtype=dtype)
    return SV4DPipeline.from_pretrained(name, variant=variant, download=download, torch_dtype=dtype)


def cmd_demo(args) -> None:
    from importlib import resources

    with resources.as_file(resources.files("sv4d_kit") / "assets" / SAMPLE) as sample:
        ns = argparse.Namespace(
            input=str(sample),
            output=args.output,
            model="tiny",
            variant=None,
            download=False,
            steps=args.steps,
            cfg=None,
            min_cfg=None,
            elevation=10.0,
            azimuths=None,
            frames=args.frames,
            seed=args.seed,
            device="cpu",
            dtype="float32",
            offload=False,
            encode_chunk=8,
            decode_chunk=4,
            size=None,
            remove_bg=False,
            no_progress=args.no_progress,
            overwrite=args.overwrite,
        )
        cmd_generate(ns, command="demo")


def cmd_evaluate(args) -> None:
    import json
    import os
    from pathlib import Path

    from sv4d_kit import evaluation

    out = Path(args.json)
    targets = [out] + ([Path(args.figure)] if args.figure else [])
    for path in targets:
        if path.is_dir():
            raise ValueError(f"{str(path)!r} is a folder; give a file path")
        if path.exists() and not args.overwrite:
            raise ValueError(f"{str(path)!r} already exists; pass --overwrite to replace it")
        parent = path.absolute().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise ValueError(f"cannot write {str(path)!r}: its folder does not exist or is not writable")
    _torch_device(args.device)
    pipe = load_model(args.model).to(args.device)  # noise comes from CPU generators: the same on any device
    tic = time.perf_counter()
    summary, examples = evaluation.evaluate(
        pipe,
        num_scenes=args.scenes,
        seed=args.seed,
        frames=args.frames,
        steps=args.steps,
        progress=not args.no_progress,
        keep_examples=3 if args.figure else 0,
    )
    seconds = time.perf_counter() - tic
    tmp = out.with_name(f".{out.name}.partial")
    tmp.write_text(json.dumps(summary, indent=2) + "\n")
    if args.figure:
        import imageio.v2 as imageio

        fig = Path(args.figure)
        fig_tmp = fig.with_name(f".{fig.stem}.partial{fig.suffix}")
        imageio.imwrite(fig_tmp, evaluation.comparison_image(examples))
        fig_tmp.replace(fig)
    tmp.replace(out)
    print(evaluation.markdown_table(summary))
    for name, passed in evaluation.quality_bar(summary).items():
        print(f"{name}: {'yes' if passed else 'no'}")
    print(f"wrote {out} ({args.scenes} held-out scenes, seed {args.seed}, {seconds:.1f} s)")


def cmd_train(args) -> None:
    import json
    import shutil
    from pathlib import Path

    from sv4d_kit import training

    values = {}
    if args.config:
        try:
            values = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"--config {args.config!r} is not a readable JSON file: {e}") from None
        if not isinstance(values, dict):
            raise ValueError("--config must hold a JSON object of TrainConfig fields")
    if args.steps is not None:
        values["steps"] = args.steps
    if args.seed is not None:
        values["seed"] = args.seed
    if args.init_from is not None:
        values["init_from"] = args.init_from
    config = training.TrainConfig.from_dict(values)
    device = _torch_device(args.device)
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--output {str(out)!r} is a file; give a folder")
    if out.is_dir() and any(out.iterdir()) and not (args.resume or args.overwrite):
        raise ValueError(
            f"{str(out)!r} is not empty; pass --resume to continue or --overwrite to start afresh"
        )
    if args.overwrite and not args.resume and out.is_dir():
        shutil.rmtree(out)
    tic = time.perf_counter()
    _, losses = training.train(config, out, resume=args.resume, export_dir=args.export,
                               progress=not args.no_progress, device=device, workers=args.workers)  # fmt: skip
    final = sum(losses[-50:]) / max(len(losses[-50:]), 1)
    print(f"trained {config.steps} steps in {time.perf_counter() - tic:.0f} s, final loss (mean of last 50) "
          f"{final:.4f}; model in {args.export or out / 'model'}")  # fmt: skip


def cmd_generate(args, command: str = "generate") -> None:
    import torch

    from sv4d_kit import __version__, preprocess
    from sv4d_kit.media import prepare_output_dir, write_outputs

    # 1. Check arguments and the output folder before any work
    for name in ("cfg", "min_cfg"):
        value = getattr(args, name)
        if value is not None and not (value >= 0 and value != float("inf")):
            raise ValueError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if not -90.0 <= args.elevation <= 90.0:
        raise ValueError(f"--elevation must be in [-90, 90] degrees, got {args.elevation}")
    if args.azimuths is not None and not args.azimuths:
        raise ValueError("--azimuths needs at least one number")
    _torch_device(args.device)
    prepare_output_dir(args.output, args.overwrite)
    timings = {}

    # 2. Read the input (fails fast on bad files)
    tic = time.perf_counter()
    frames, read_info = preprocess.read_frames(args.input)
    timings["read"] = time.perf_counter() - tic

    # 3. Load the model
    tic = time.perf_counter()
    dtype = getattr(torch, args.dtype)
    pipe = load_model(args.model, variant=args.variant, download=args.download, dtype=dtype)
    V = pipe.config.num_views
    if args.azimuths is not None and len(args.azimuths) != V + 1:
        raise ValueError(
            f"--azimuths needs {V + 1} values for this model (input view + {V} novel views), "
            f"got {len(args.azimuths)}"
        )
    if args.offload:
        pipe.enable_model_cpu_offload(device=args.device)
    else:
        pipe.to(args.device)
    timings["load"] = time.perf_counter() - tic

    # 4. Preprocess: one crop for the clip, resize, white background; frame count
    tic = time.perf_counter()
    n_frames = args.frames or min(len(frames), 21)
    policy = "sample" if len(frames) >= n_frames else "loop"
    try:
        images, prep_info = preprocess.preprocess(
            frames,
            size=args.size or pipe.config.image_size,
            remove_bg=args.remove_bg,
            num_frames=n_frames,
            frame_policy=policy,
        )
    except RuntimeError as e:  # rembg missing or its model not on disk
        raise ValueError(str(e)) from None
    timings["preprocess"] = time.perf_counter() - tic

    # 5. Generate
    out = pipe(
        images,
        elevations_deg=args.elevation,
        azimuths_deg=args.azimuths,
        num_inference_steps=args.steps,
        min_guidance=args.min_cfg,
        max_guidance=args.cfg,
        seed=args.seed,
        encode_chunk_size=args.encode_chunk,
        decode_chunk_size=args.decode_chunk,
        progress=not args.no_progress,
    )
    timings.update(out.timings)

    # 6. Write
    tic = time.perf_counter()
    meta = {
        "kit_version": __version__,
        "command": command,
        "input": {
            "path": str(args.input),
            "read": read_info,
            "preprocess": {k: v for k, v in prep_info.items() if k != "read"},
        },
        "model": {"source": str(args.model), **{k: pipe.config[k] for k in MODEL_KEYS}},
        "parameters": {k: v for k, v in vars(args).items() if k not in ("func", "input", "model")},
        "seed": args.seed,
        "cameras": out.cameras,
        "timings_s": timings,
    }
    folder = write_outputs(
        args.output, out.images, meta, azimuths_deg=out.cameras["azimuths_deg"], overwrite=args.overwrite
    )
    timings["write"] = time.perf_counter() - tic
    print(
        f"wrote {folder}: {out.images.shape[0]} frames x {out.images.shape[1]} views "
        f"({', '.join(f'{k} {v:.2f}s' for k, v in timings.items())})"
    )


def _quiet_libraries() -> None:
    """Library chatter (diffusers' loading bars and hints) off; our own warnings as one `warning:` line each."""
    import warnings

    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    warnings.filterwarnings("ignore", category=FutureWarning)
    try:
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.set_verbosity_error()
        diffusers_logging.disable_progress_bar()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _quiet_libraries()  # after parsing: `--help` and usage errors need no diffusers import (seconds here)
        args.func(args)
    except (UsageError, ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
