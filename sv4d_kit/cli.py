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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sv4d-kit", description="Learn, run and take apart SV4D 2.0 (4D generation).")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("scene", help="render a synthetic 4D scene (ground truth) from orbit cameras")
    p.add_argument("--output", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=7, help="scene seed (default 7)")
    p.add_argument("--frames", type=_positive_int, default=21, help="time frames (default 21)")
    p.add_argument("--views", type=_positive_int, default=8, help="orbit views, evenly spaced (default 8)")
    p.add_argument("--size", type=_positive_int, default=128, help="image size in pixels (default 128)")
    p.add_argument("--elevation", type=float, default=10.0, help="camera elevation in degrees (default 10)")
    p.add_argument("--static", action="store_true", help="render the scene without motion")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_scene)
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
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
