"""The `sv4d-kit` command: a thin layer of argument parsers over the library, one `_add_<command>` per `cmd_<command>`.

Every subcommand exits 0 on success and 2 on bad input or usage (a `KitInputError`, an argparse complaint or a file
error), printing exactly one `error:` line on stderr and no traceback; a failed run leaves nothing in the output
folder. Any other exception is a bug in the kit: it keeps its traceback and exits 1.
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
import time

from sv4d_kit import checks
from sv4d_kit.checks import INPUT_ERRORS, KitInputError


class UsageError(KitInputError):
    """Bad command-line usage (argparse's complaints, made one-line)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse prints usage + message and exits; we want one line and exit code 2
        # a value refused by a check reads as the checks word it, named by the flag: "--steps must be ..."
        raise UsageError(re.sub(r"^argument (-[-\w]+)(?:/[-\w]+)?: (must be |needs )", r"\1 \2", message))


def _checked(check, parse=float, **bounds):
    """An argparse type: the text parsed by `parse`, then checked by a `sv4d_kit.checks` function (argparse names
    the flag, so the message starts at "must be")."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = text  # the check says what was expected
        try:
            return check("", value, **bounds)
        except KitInputError as e:
            raise argparse.ArgumentTypeError(str(e).strip()) from None

    return convert


def _generate_option(name: str, parse=float):
    """An argparse type running `generate`'s own check of option `name` (`generation.OPTION_CHECKS`), so its bounds
    live in one place; argparse names the flag, so the message starts at "must be"."""
    from sv4d_kit.generation import OPTION_CHECKS

    def check(_, value):
        try:
            return OPTION_CHECKS[name](value)
        except KitInputError as e:
            raise KitInputError(str(e).removeprefix(f"{name} ")) from None

    return _checked(check, parse)


def _float_list(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip() != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("needs at least one number")
    return [_checked(checks.number)(str(v)) for v in values]


_positive_int = _checked(checks.integer, int, minimum=1)
_nonnegative_int = _checked(checks.integer, int, minimum=0)
_device = _checked(checks.torch_device, str)


def _defaults(function) -> dict:
    """The keyword defaults of a library function: the command shows them in its help and never repeats them."""
    return {
        k: p.default for k, p in inspect.signature(function).parameters.items() if p.default is not p.empty
    }


# ---------------------------------------------------------------------------------------------------------------- scene


def _add_scene(sub) -> None:
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
    _add_world(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_scene)


def _add_world(p) -> None:
    from sv4d_kit.synthetic import DEFAULT_WORLD, WORLDS

    p.add_argument("--world", choices=WORLDS, default=DEFAULT_WORLD,
                   help=f"scene distribution (default {DEFAULT_WORLD}: the bundled model's)")  # fmt: skip


def cmd_scene(args) -> None:
    from sv4d_kit import __version__, cameras, synthetic
    from sv4d_kit.media import prepare_output_dir, write_outputs

    prepare_output_dir(args.output, args.overwrite)  # fail before any work
    start = time.perf_counter()
    scene = synthetic.make_scene(args.seed, dynamic=not args.static, world=args.world)
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


# ------------------------------------------------------------------------------------------------------------- generate


def _add_generate(sub) -> None:
    p = sub.add_parser("generate", help="generate novel-view videos and a 360° orbit from an image or a clip")
    p.add_argument("input", help="an image, GIF, MP4, a folder of frames or a glob pattern")
    p.add_argument("--output", required=True, help="output folder (must be empty unless --overwrite)")
    _add_generate_options(p)
    p.set_defaults(func=cmd_generate)


def _add_generate_options(p) -> None:
    """The options of `sv4d_kit.generate` as flags (shared by `generate` and `batch`), its defaults shown."""
    from sv4d_kit.generation import DTYPES, SAMPLERS, generate

    d = _defaults(generate)
    p.add_argument(
        "--model",
        default=d["model"],
        help="tiny (the bundled tiny SV4D, default), a kit model "
        "folder, a released .safetensors file or a hub id",
    )
    p.add_argument(
        "--variant",
        choices=["sv4d2", "sv4d2_8views"],
        default=d["variant"],
        help="network variant of a released checkpoint (default: from the file name)",
    )
    p.add_argument("--download", action="store_true", help="allow downloading a hub model")
    p.add_argument(
        "--steps",
        type=_generate_option("steps", int),
        default=d["steps"],
        help="sampling steps (default: the model's, 50 for SV4D 2.0)",
    )
    p.add_argument(
        "--cfg",
        type=_generate_option("cfg"),
        default=d["cfg"],
        help="maximum guidance scale (default: the variant's)",
    )
    p.add_argument(
        "--min-cfg",
        type=_generate_option("min_cfg"),
        default=d["min_cfg"],
        help="minimum guidance scale (default: the variant's)",
    )
    p.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=d["sampler"],
        help="euler (the reference's) or heun (2nd order, ~2x the network calls a step; default: the model's)",
    )
    p.add_argument(
        "--elevation",
        type=_generate_option("elevation"),
        default=d["elevation"],
        help="camera elevation of the novel views in degrees (default %(default)s)",
    )
    p.add_argument(
        "--azimuths",
        type=_float_list,
        default=d["azimuths"],
        help="comma-separated azimuths in degrees of the input view and every novel view (V+1 values)",
    )
    p.add_argument(
        "--frames",
        type=_generate_option("frames", int),
        default=d["frames"],
        help="output frames (default: the clip's, at most 21; one image gives a still clip)",
    )
    p.add_argument("--seed", type=int, default=d["seed"], help="random seed (default %(default)s)")
    p.add_argument(
        "--device",
        type=_generate_option("device", str),
        default=d["device"],
        help="cpu, cuda, cuda:N or mps (default cpu)",
    )
    p.add_argument("--dtype", choices=DTYPES, default=d["dtype"])
    p.add_argument("--offload", action="store_true", help="keep models on the CPU between stages (CUDA)")
    p.add_argument(
        "--encode-chunk",
        type=_generate_option("encode_chunk", int),
        default=d["encode_chunk"],
        help="frames encoded at a time (default %(default)s)",
    )
    p.add_argument(
        "--decode-chunk",
        type=_generate_option("decode_chunk", int),
        default=d["decode_chunk"],
        help="frames decoded at a time (default %(default)s)",
    )
    p.add_argument(
        "--size",
        type=_generate_option("size", int),
        default=d["size"],
        help="image size (default: the model's)",
    )
    p.add_argument(
        "--remove-bg", action="store_true", help="matte with rembg (must be installed, model on disk)"
    )
    p.add_argument("--reconstruct", action="store_true",
                   help="also fit 4D points to the views: orbit_smooth.mp4 (any angle) and points/*.ply")  # fmt: skip
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")


def cmd_generate(args) -> None:
    from sv4d_kit.generation import generate

    options = {
        k: v for k, v in vars(args).items() if k not in ("func", "command", "input", "output", "no_progress")
    }
    _report(generate(args.input, args.output, progress=not args.no_progress, **options))


def _report(result) -> None:
    images, timings = result.output.images, result.metadata["timings_s"]
    print(
        f"wrote {result.folder}: {images.shape[0]} frames x {images.shape[1]} views "
        f"({', '.join(f'{k} {v:.2f}s' for k, v in timings.items())})"
    )


# ---------------------------------------------------------------------------------------------------------------- batch


def _add_batch(sub) -> None:
    p = sub.add_parser(
        "batch", help="every image/GIF/MP4/frame folder of a folder through generate (torchrun-able)"
    )
    p.add_argument("input_dir", help="a folder of inputs: images, GIFs, videos, folders of frames")
    p.add_argument("--output", required=True, help="output folder: one folder per input and manifest.jsonl")
    p.add_argument("--threads", type=_positive_int, default=None,
                   help="torch CPU threads per process (default: its share of the cores)")  # fmt: skip
    _add_generate_options(p)
    p.set_defaults(func=cmd_batch)


def cmd_batch(args) -> int:
    from sv4d_kit.batch import run_batch

    skip = ("func", "command", "input_dir", "output", "no_progress", "overwrite", "threads", "model", "seed")
    options = {k: v for k, v in vars(args).items() if k not in skip}
    result = run_batch(args.input_dir, args.output, model=args.model, seed=args.seed, threads=args.threads,
                       overwrite=args.overwrite, progress=not args.no_progress, **options)  # fmt: skip
    if not _is_main_process():
        return 2 if result.failed else 0  # rank 0 speaks for the run
    wall, processes = result.timings["wall_s"], result.timings["processes"]
    summary = (f"{result.ok} ok, {result.failed} failed, {result.skipped} already complete in {wall:.1f} s "
               f"on {processes} process(es); see {result.manifest}")  # fmt: skip
    if result.failed:
        failed = [r for r in result.records if r["status"] == "failed"]
        first = f"{failed[0]['name']}: {failed[0]['reason']}"
        if result.ok + result.skipped == 0:
            raise KitInputError(f"every input failed ({first}); {summary}")
        raise KitInputError(f"{result.failed} input(s) failed (first: {first}); {summary}")
    print(f"batch: {summary}")
    return 0


# ----------------------------------------------------------------------------------------------------------------- demo


def _add_demo(sub) -> None:
    from sv4d_kit.generation import demo

    d = _defaults(demo)
    p = sub.add_parser("demo", help="the bundled sample through the bundled tiny SV4D, on the CPU")
    p.add_argument("--output", required=True, help="output folder (must be empty unless --overwrite)")
    p.add_argument("--frames", type=_positive_int, default=d["frames"], help="frames (default %(default)s)")
    p.add_argument(
        "--steps", type=_positive_int, default=d["steps"], help="sampling steps (default: the model's)"
    )
    p.add_argument("--seed", type=int, default=d["seed"], help="random seed (default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args) -> None:
    from sv4d_kit.generation import demo

    _report(
        demo(
            args.output,
            frames=args.frames,
            steps=args.steps,
            seed=args.seed,
            overwrite=args.overwrite,
            progress=not args.no_progress,
        )
    )


# ------------------------------------------------------------------------------------------------------------- evaluate


def _add_evaluate(sub) -> None:
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
        "--device",
        type=_device,
        default="cpu",
        help="where the model samples: cpu (default), cuda, cuda:N (metrics: CPU)",
    )
    p.add_argument("--frames", type=_positive_int, default=8, help="frames per clip (default 8)")
    _add_world(p)
    p.add_argument("--steps", type=_positive_int, default=None, help="sampling steps (default: the model's)")
    p.add_argument("--figure", default=None, help="also write a PNG: input | ground truth | generated")
    p.add_argument(
        "--between-views",
        action="store_true",
        help="also score views half-way between the generated ones (nearest view, warp, recon4d): "
        "the JSON gets a between_views section",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> None:
    import json
    import os
    from pathlib import Path

    from sv4d_kit import evaluation

    out = Path(args.json)
    targets = [out] + ([Path(args.figure)] if args.figure else [])
    for path in targets:
        if path.is_dir():
            raise KitInputError(f"{str(path)!r} is a folder; give a file path")
        if path.exists() and not args.overwrite:
            raise KitInputError(f"{str(path)!r} already exists; pass --overwrite to replace it")
        parent = path.absolute().parent
        if not parent.is_dir() or not os.access(parent, os.W_OK):
            raise KitInputError(f"cannot write {str(path)!r}: its folder does not exist or is not writable")
    from sv4d_kit.pipeline import SV4DPipeline

    pipe = SV4DPipeline.from_pretrained(args.model).to(
        args.device
    )  # noise comes from CPU generators: the same on any device
    tic = time.perf_counter()
    scenes = dict(num_scenes=args.scenes, seed=args.seed, frames=args.frames, steps=args.steps,
                  progress=not args.no_progress, world=args.world)  # fmt: skip
    summary, examples = evaluation.evaluate(pipe, **scenes, keep_examples=3 if args.figure else 0)
    between = evaluation.evaluate_between_views(pipe, **scenes) if args.between_views else None
    seconds = time.perf_counter() - tic
    tmp = out.with_name(f".{out.name}.partial")
    data = summary if between is None else {**summary, "between_views": between}
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    if args.figure:
        import imageio.v2 as imageio

        fig = Path(args.figure)
        fig_tmp = fig.with_name(f".{fig.stem}.partial{fig.suffix}")
        imageio.imwrite(fig_tmp, evaluation.comparison_image(examples))
        fig_tmp.replace(fig)
    tmp.replace(out)
    print(evaluation.markdown_table(summary))
    if between is not None:
        print()
        print(evaluation.between_views_table(between))
    for name, passed in evaluation.quality_bar(summary).items():
        print(f"{name}: {'yes' if passed else 'no'}")
    print(f"wrote {out} ({args.scenes} held-out scenes, seed {args.seed}, {seconds:.1f} s)")


# ---------------------------------------------------------------------------------------------------------------- train


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the tiny SV4D on synthetic 4D scenes (the bundled weights' recipe; under torchrun or "
        "accelerate launch the processes share each batch)",
    )
    p.add_argument(
        "--output", required=True, help="run folder: checkpoint/, config.json, model/ (the export)"
    )
    p.add_argument("--steps", type=_positive_int, default=None, help="training steps (default: the recipe's)")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: the recipe's, 0)")
    p.add_argument("--config", default=None, help="a JSON file of TrainConfig fields (recipes/*.json)")
    p.add_argument(
        "--export", default=None, help="where to write the trained pipeline (default OUTPUT/model)"
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="MODEL",
        help="fine-tune: start from an exported model folder's weights ('tiny' = the bundled model)",
    )
    p.add_argument(
        "--device",
        type=_device,
        default="cpu",
        help="where the network trains: cpu (default), cuda, cuda:N (torchrun: each process its own GPU)",
    )
    p.add_argument(
        "--workers",
        type=_nonnegative_int,
        default=0,
        help="processes rendering scenes ahead of the steps, per training process (default 0: in it)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/checkpoint")
    p.add_argument("--overwrite", action="store_true", help="start afresh in a non-empty OUTPUT")
    p.add_argument("--no-progress", action="store_true", help="log lines instead of a progress bar")
    p.set_defaults(func=cmd_train)


def cmd_train(args) -> None:
    import json
    import shutil
    from pathlib import Path

    from accelerate.utils import broadcast_object_list

    from sv4d_kit import training
    from sv4d_kit.training.distributed import process_state, scene_share

    values = {}
    if args.config:
        try:
            values = json.loads(Path(args.config).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise KitInputError(f"--config {args.config!r} is not a readable JSON file: {e}") from None
        if not isinstance(values, dict):
            raise KitInputError("--config must hold a JSON object of TrainConfig fields")
    if args.steps is not None:
        values["steps"] = args.steps
    if args.seed is not None:
        values["seed"] = args.seed
    if args.init_from is not None:
        values["init_from"] = args.init_from
    config = training.TrainConfig.from_dict(values)
    device = args.device
    state = process_state(device)  # one process, or this one's place under torchrun / accelerate launch
    scene_share(config.batch_scenes, state)  # a batch the processes cannot share: fail before any work
    out = Path(args.output)
    error = None
    if state.is_main_process:  # rank 0 checks and clears the folder; every process raises what it found
        try:
            if out.exists() and not out.is_dir():
                raise KitInputError(f"--output {str(out)!r} is a file; give a folder")
            if out.is_dir() and any(out.iterdir()) and not (args.resume or args.overwrite):
                raise KitInputError(
                    f"{str(out)!r} is not empty; pass --resume to continue or --overwrite to start afresh"
                )
            if args.overwrite and not args.resume and out.is_dir():
                shutil.rmtree(out)
        except INPUT_ERRORS as e:
            error = e
    error = broadcast_object_list([error])[0]  # also a barrier: no process writes before rank 0 is done here
    if error is not None:
        raise error
    tic = time.perf_counter()
    _, losses = training.train(
        config,
        out,
        resume=args.resume,
        export_dir=args.export,
        progress=not args.no_progress,
        device=device,
        workers=args.workers,
    )
    final = sum(losses[-50:]) / max(len(losses[-50:]), 1)
    if state.is_main_process:
        print(
            f"trained {config.steps} steps in {time.perf_counter() - tic:.0f} s, final loss (mean of last 50) "
            f"{final:.4f}; model in {args.export or out / 'model'}"
        )


# ----------------------------------------------------------------------------------------------------------------- main


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sv4d-kit", description="Learn, run and take apart SV4D 2.0 (4D generation).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_scene, _add_generate, _add_batch, _add_demo, _add_evaluate, _add_train):
        add(sub)
    return parser


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
    """Run the command; 0 on success, 2 (one `error:` line) on bad input. A bug raises, with its traceback."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        _quiet_libraries()
        code = args.func(args) or 0
    except INPUT_ERRORS as e:
        message = checks.one_line(e)
        if _is_main_process():  # under torchrun every process runs this: one error line for the run
            print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    return code


def _is_main_process() -> bool:
    """Rank 0 of a torchrun / accelerate launch run (or the only process)."""
    import os

    return os.environ.get("RANK", "0") == "0"


if __name__ == "__main__":
    sys.exit(main())
