"""Read an image, clip or frame folder and turn it into SV4D 2.0's square, centred, white-background frames.

Three layers, each usable on its own:

1. `read_frames(source)` reads anything a user is likely to pass (an image, an animated GIF/WebP/PNG, a
   video, a folder of frames, a glob pattern, PIL images or arrays) into uint8 (N, H, W, C), C = 3 or 4.
2. `preprocess(frames, ...)` mattes every frame, finds ONE square crop box for the whole clip so that the
   object fills `image_frame_ratio` of the square and sits in its centre, resizes (Lanczos), puts it on white.
3. `reference_preprocess(frames, W, image_frame_ratio)` reproduces the reference script's `preprocess_video`
   bit for bit, quirks included, and `to_model_range` / `reference_read_video` its `read_video`.

How `preprocess` differs from the reference, on purpose:
- The reference centres the crop on the image centre ("assume the object is already in the center"), so
  an off-centre object stays off-centre and is smaller than `image_frame_ratio`. `preprocess` centres the
  crop on the object's bounding box (the union over all frames, so the camera does not move between frames).
- The reference swaps rows and columns (`in_w, in_h = shape[:2]`), which only matters for non-square frames;
  `preprocess` has no such mix-up.
- The reference takes every pixel whose channel mean is <= 250 as object and keeps the background it was
  given; `preprocess` estimates the background colour and makes it white (see `plain_background_matte`).
- The reference needs exactly `n_frames` frames; `preprocess` samples, loops or pads to `num_frames`.
"""

from __future__ import annotations

import glob as globlib
import math
import os
import re
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, ImageSequence, UnidentifiedImageError

from sv4d_kit import checks
from sv4d_kit.checks import KitInputError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".tga", ".ppm", ".pgm")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg")
FRAME_POLICIES = ("sample", "loop", "pad")

# Alpha below this (about 3 %) is invisible on white; rembg leaves such haze around objects, and counting it
# would make the object smaller than `image_frame_ratio`.
VISIBLE_ALPHA = 8

# Where rembg keeps its default model, and where to get it (rembg's own conventions).
REMBG_MODEL_FILE = "u2net.onnx"
REMBG_MODEL_URL = "https://github.com/danielgatis/rembg/releases/download/v0.0.0/u2net.onnx"

_PIL_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    UnidentifiedImageError,
    Image.DecompressionBombError,
)


# ----------------------------------------------------------------------------------------------------------
# 1. Reading
# ----------------------------------------------------------------------------------------------------------


def read_frames(source, max_frames: int | None = None) -> tuple[np.ndarray, dict]:
    """Read `source` into uint8 frames (N, H, W, C) (C = 4 if any frame has transparency, else 3) and info.

    `source` may be:
    - a still image file (PNG, JPEG, WebP, BMP, TIFF, ...): one frame; EXIF orientation is applied;
    - an animated file (GIF, animated WebP/PNG, multi-page TIFF): every frame, composited as viewers show it;
    - a video file (mp4, mov, webm, ...): every frame, decoded by imageio's ffmpeg plugin;
    - a folder: every image file in it (hidden files and other extensions skipped), sorted naturally
      (`frame2.png` before `frame10.png`), one frame per file;
    - a glob pattern such as `"clip/*.png"`: the matching image files, sorted naturally;
    - a PIL image, a list of PIL images / arrays, or a uint8 array (H, W, C) or (N, H, W, C).

    Awkward modes are converted: grayscale and palette to RGB, 16-bit to 8-bit (value / 257), CMYK to RGB,
    LA / PA / palette transparency to RGBA. An alpha channel that is 255 everywhere is dropped.
    `max_frames` stops reading after that many frames (long videos).

    Raises `KitInputError` with one line naming the problem for a missing path, an empty (0-byte), truncated or
    non-image file, a corrupt GIF or video, an empty folder or one without images, a glob matching nothing.
    The info dict has `source`, `kind` (image / animation / video / folder / glob / array), `num_frames`,
    `height`, `width`, `has_alpha`, `modes` (the original PIL modes), `files` and `fps` where they apply.
    """
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise KitInputError(f"max_frames must be a positive int or None, got {max_frames!r}")
    info: dict = {"source": None, "kind": None, "files": None, "fps": None}
    if isinstance(source, (str, os.PathLike)):
        info["source"] = str(source)
        images, modes = _read_path(str(source), info, max_frames)
    else:
        info["source"], info["kind"] = type(source).__name__, "array"
        images, modes = _read_in_memory(source)
    if max_frames is not None:
        images, modes = images[:max_frames], modes[:max_frames]
    frames = _stack(images, info)
    info.update(
        num_frames=len(frames),
        height=frames.shape[1],
        width=frames.shape[2],
        has_alpha=frames.shape[3] == 4,
        modes=sorted(set(modes)),
    )
    return frames, info


def _read_path(source: str, info: dict, max_frames: int | None) -> tuple[list[np.ndarray], list[str]]:
    path = Path(source).expanduser()
    if path.is_dir():
        info["kind"] = "folder"
        files = sorted(
            (p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")), key=_natural_key
        )
        if not files:
            raise KitInputError(f"input folder {source!r} is empty")
        files = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise KitInputError(
                f"input folder {source!r} has no image files (extensions {', '.join(IMAGE_EXTENSIONS)})"
            )
        return _read_files(files[:max_frames], info)
    if path.is_file():
        if path.suffix.lower() in VIDEO_EXTENSIONS:
            info["kind"] = "video"
            return _read_video(path, info, max_frames)
        images, modes = _read_image_file(path, max_frames, info)
        info["kind"] = "animation" if len(images) > 1 else "image"
        return images, modes
    if any(ch in source for ch in "*?["):
        info["kind"] = "glob"
        matches = [Path(p) for p in globlib.glob(os.path.expanduser(source), recursive=True)]
        files = sorted(
            (p for p in matches if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS), key=_natural_key
        )
        if not files:
            raise KitInputError(
                f"glob pattern {source!r} matched no image files ({len(matches)} matches in all)"
            )
        return _read_files(files[:max_frames], info)
    raise KitInputError(
        f"input path {source!r} does not exist (expected an image, a video, a folder or a glob pattern)"
    )


def _read_files(files: list[Path], info: dict) -> tuple[list[np.ndarray], list[str]]:
    """One frame per file (the first frame of an animated file)."""
    info["files"] = [str(p) for p in files]
    images, modes = [], []
    for p in files:
        frame, mode = _read_image_file(p, max_frames=1)
        images += frame
        modes += mode
    return images, modes


def _read_image_file(path: Path, max_frames: int | None, info: dict | None = None) -> tuple[list, list[str]]:
    """Every frame of an image file (one if still), or KitInputError naming the file; sets info["fps"]."""
    if path.stat().st_size == 0:
        raise KitInputError(f"image file {str(path)!r} is empty (0 bytes)")
    images, modes = [], []
    try:
        with Image.open(path) as im:
            n = getattr(im, "n_frames", 1)
            if n == 1:
                im.load()
                modes.append(im.mode)
                images.append(_pil_to_array(ImageOps.exif_transpose(im)))
            else:
                duration = im.info.get("duration")  # ms per frame (GIF, WebP, APNG)
                if info is not None and isinstance(duration, (int, float)) and duration > 0:
                    info["fps"] = 1000.0 / duration
                for frame in ImageSequence.Iterator(im):
                    frame.load()
                    modes.append(frame.mode)
                    # frames of a GIF / APNG / WebP are deltas on a canvas: converting to RGBA composites them
                    images.append(np.asarray(frame.convert("RGBA")))
                    if max_frames is not None and len(images) >= max_frames:
                        break
    except _PIL_ERRORS as e:
        raise KitInputError(f"could not read image file {str(path)!r}: {_one_line(e)}") from e
    if not images:
        raise KitInputError(f"image file {str(path)!r} has no frames")
    return images, modes


def _read_video(path: Path, info: dict, max_frames: int | None) -> tuple[list[np.ndarray], list[str]]:
    import imageio.v2 as imageio

    if path.stat().st_size == 0:
        raise KitInputError(f"video file {str(path)!r} is empty (0 bytes)")
    images = []
    try:
        with imageio.get_reader(str(path), "ffmpeg") as reader:
            info["fps"] = reader.get_meta_data().get("fps")
            for frame in reader:
                images.append(np.asarray(frame, dtype=np.uint8)[..., :3])
                if max_frames is not None and len(images) >= max_frames:
                    break
    except Exception as e:  # imageio/ffmpeg raise OSError, RuntimeError, IndexError, StopIteration, ...
        raise KitInputError(f"could not read video file {str(path)!r}: {_ffmpeg_error(e)}") from e
    if not images:
        raise KitInputError(f"video file {str(path)!r} has no frames")
    return images, ["RGB"] * len(images)


def _read_in_memory(source) -> tuple[list[np.ndarray], list[str]]:
    if isinstance(source, Image.Image):
        source = [source]
    if isinstance(source, (np.ndarray, torch.Tensor)):
        arr = np.asarray(source)
        if arr.ndim == 2 or (arr.ndim == 3 and arr.shape[-1] in (1, 3, 4)):
            arr = arr[None]  # one frame (H, W[, C]) -> (1, H, W[, C])
        if arr.ndim not in (3, 4):
            raise KitInputError(f"frames array must be (H, W, C) or (N, H, W, C), got shape {arr.shape}")
        source = list(arr)
    if not isinstance(source, (list, tuple)) or not source:
        raise KitInputError(
            f"source must be a path, a glob, a PIL image, an array or a non-empty list, got {source!r:.80}"
        )
    images, modes = [], []
    for item in source:
        if isinstance(item, Image.Image):
            modes.append(item.mode)
            images.append(_pil_to_array(item))
        else:
            arr = np.asarray(item)
            if arr.dtype != np.uint8:
                raise KitInputError(f"frame arrays must be uint8, got {arr.dtype}")
            if arr.ndim == 2:
                arr = arr[..., None]
            if arr.ndim != 3 or arr.shape[-1] not in (1, 3, 4):
                raise KitInputError(
                    f"each frame must be (H, W) or (H, W, C) with C in 1, 3, 4, got {arr.shape}"
                )
            modes.append({1: "L", 3: "RGB", 4: "RGBA"}[arr.shape[-1]])
            images.append(np.repeat(arr, 3, axis=-1) if arr.shape[-1] == 1 else arr)
    return images, modes


def _pil_to_array(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> uint8 (H, W, 3) or (H, W, 4)."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        v = np.asarray(im).astype(np.float64)
        if im.mode == "F":
            v = v * 255.0 if v.max(initial=0.0) <= 1.0 else v
        elif im.mode.startswith("I;16") or v.max(initial=0.0) > 255:
            v = v / 257.0  # 16-bit -> 8-bit: 65535 -> 255
        gray = np.clip(np.rint(v), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=-1)
    has_alpha = "A" in im.getbands() or "a" in im.getbands() or "transparency" in im.info
    return np.asarray(im.convert("RGBA" if has_alpha else "RGB"))


def _stack(images: list[np.ndarray], info: dict) -> np.ndarray:
    """Same-size frames -> (N, H, W, C); keep alpha only if some pixel is not opaque."""
    sizes = {im.shape[:2] for im in images}
    if len(sizes) > 1:
        names = info["files"] or [f"frame {i}" for i in range(len(images))]
        first = images[0].shape[:2]
        bad = next(i for i, im in enumerate(images) if im.shape[:2] != first)
        raise KitInputError(
            f"all frames must have the same size: {names[0]} is {first[1]}x{first[0]} (WxH) but "
            f"{names[bad]} is "
            f"{images[bad].shape[1]}x{images[bad].shape[0]}"
        )
    transparent = any(im.shape[-1] == 4 and (im[..., 3] < 255).any() for im in images)
    if transparent:
        opaque = np.full(images[0].shape[:2] + (1,), 255, np.uint8)
        images = [im if im.shape[-1] == 4 else np.concatenate([im, opaque], -1) for im in images]
    else:
        images = [im[..., :3] for im in images]
    return np.ascontiguousarray(np.stack(images))


def _natural_key(p: Path) -> list:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", p.name)]


def _ffmpeg_error(e: BaseException) -> str:
    """imageio's ffmpeg errors append ffmpeg's whole banner after '=== stderr ==='; keep its last line."""
    head, _, stderr = str(e).partition("=== stderr ===")
    last = [line.strip() for line in stderr.splitlines() if line.strip()][-1:]
    return _one_line(RuntimeError(": ".join([head.strip() or type(e).__name__] + last)))


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


# ----------------------------------------------------------------------------------------------------------
# 2. Matting
# ----------------------------------------------------------------------------------------------------------


def plain_background_matte(
    rgb: np.ndarray, tolerance: int = 20, min_border_fraction: float = 0.5
) -> np.ndarray | None:
    """Alpha (H, W) uint8 in {0, 255} of an object on a plain background; None if the background is not plain.

    Method:
    1. The background colour is the per-channel median of the one-pixel image border.
    2. A pixel is background-coloured if every channel is within `tolerance` of it (Chebyshev distance).
       If fewer than `min_border_fraction` of the border pixels are, the background is not plain: return None.
    3. Background = the background-coloured pixels 4-connected to the border (a flood fill from the border).
       Everything else is object, so background-coloured holes inside the object (white eyes, a white shirt
       on a white backdrop) stay part of the object.
    Specks that differ from the background by more than `tolerance` count as object, and a soft shadow that is
    darker than the tolerance becomes part of the object.
    """
    rgb = np.asarray(rgb)[..., :3]
    border = np.concatenate([rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]).astype(np.int16)
    background = np.median(border, axis=0)
    if (np.abs(border - background).max(-1) <= tolerance).mean() < min_border_fraction:
        return None
    near = np.abs(rgb.astype(np.int16) - background.astype(np.int16)).max(-1) <= tolerance
    seeds = np.zeros_like(near)
    seeds[[0, -1], :] = near[[0, -1], :]
    seeds[:, [0, -1]] = near[:, [0, -1]]
    outside = _flood_fill(seeds, near)
    return np.where(outside, 0, 255).astype(np.uint8)


def _flood_fill(seeds: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """The `allowed` pixels 4-connected to `seeds`, by alternating whole-run sweeps along rows and columns.

    A sweep marks every run of allowed pixels in a row (column) that touches a marked pixel, so one sweep
    follows a path any distance along a row (column); the loop ends when a row and a column sweep add nothing,
    which for ordinary shapes takes a handful of sweeps.
    """
    reached = seeds & allowed
    while True:
        before = int(reached.sum())
        reached = _sweep_rows(reached, allowed)
        reached = _sweep_rows(reached.T, allowed.T).T
        if int(reached.sum()) == before:
            return reached


def _sweep_rows(reached: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    starts = allowed.copy()
    starts[:, 1:] &= ~allowed[:, :-1]  # a run starts where the left neighbour is not allowed (or at column 0)
    run_id = np.cumsum(starts.ravel(), dtype=np.int32).reshape(allowed.shape) * allowed  # 0 = not in a run
    hit = np.zeros(int(run_id.max()) + 1, bool)
    hit[run_id[reached]] = True
    hit[0] = False
    return hit[run_id]


def remove_background(frames: np.ndarray) -> np.ndarray:
    """RGBA frames (N, H, W, 4) from RGB frames with rembg's u2net model, as the reference script does.

    Needs `pip install rembg` and the model file `u2net.onnx` already on disk in rembg's model folder
    ($U2NET_HOME, default ~/.u2net). Nothing is downloaded: a missing package or model raises RuntimeError
    saying how to get it.
    """
    try:
        import rembg
    except ImportError as e:
        raise RuntimeError(
            "remove_bg=True needs the optional package rembg: run `pip install rembg onnxruntime`, then "
            f"put {REMBG_MODEL_FILE} from {REMBG_MODEL_URL} into ~/.u2net/ (or $U2NET_HOME)"
        ) from e
    model = rembg_model_path()
    if not model.is_file():
        raise RuntimeError(
            f"remove_bg=True needs rembg's model {str(model)!r}, not on disk; sv4d-kit never downloads it "
            f"implicitly: download {REMBG_MODEL_URL} to that path (or set $U2NET_HOME to its folder)"
        )
    # With the model present and its checksum check off, rembg's session loads the file, no network access.
    previous = os.environ.get("MODEL_CHECKSUM_DISABLED")
    os.environ["MODEL_CHECKSUM_DISABLED"] = "1"
    try:
        session = rembg.new_session("u2net")
    finally:
        if previous is None:
            os.environ.pop("MODEL_CHECKSUM_DISABLED", None)
        else:
            os.environ["MODEL_CHECKSUM_DISABLED"] = previous
    out = [
        np.asarray(rembg.remove(Image.fromarray(f[..., :3]), session=session, alpha_matting=True))
        for f in frames
    ]
    return np.stack(
        [o if o.shape[-1] == 4 else np.dstack([o, np.full(o.shape[:2], 255, np.uint8)]) for o in out]
    )


def rembg_model_path() -> Path:
    """Where rembg looks for `u2net.onnx`: $U2NET_HOME, else $XDG_DATA_HOME/.u2net, else ~/.u2net."""
    home = os.getenv("U2NET_HOME", os.path.join(os.getenv("XDG_DATA_HOME", "~"), ".u2net"))
    return Path(os.path.expanduser(home)) / REMBG_MODEL_FILE


# ----------------------------------------------------------------------------------------------------------
# 3. Frame count, crop box, resize
# ----------------------------------------------------------------------------------------------------------


def select_frames(num_input: int, num_frames: int | None, policy: str = "sample") -> tuple[list[int], str]:
    """Indices of the input frames to use and what was done (kept, sampled, looped, padded or truncated).

    - `sample`: `num_frames` indices spread evenly from the first to the last frame (rounded), whether that
      drops frames (90 -> 21) or repeats them (3 -> 7).
    - `loop`: 0, 1, ..., N-1, 0, 1, ... (the clip plays again from the start).
    - `pad`: all frames, then the last frame repeated.
    With more input frames than `num_frames`, `loop` and `pad` keep the first `num_frames` (`truncated`),
    as the reference does.
    """
    if policy not in FRAME_POLICIES:
        raise KitInputError(f"frame_policy must be one of {FRAME_POLICIES}, got {policy!r}")
    if num_frames is None or num_frames == num_input:
        return list(range(num_input)), "kept"
    if policy == "sample":
        return np.rint(np.linspace(0, num_input - 1, num_frames)).astype(int).tolist(), "sampled"
    if num_frames < num_input:
        return list(range(num_frames)), "truncated"
    if policy == "loop":
        return [i % num_input for i in range(num_frames)], "looped"
    return list(range(num_input)) + [num_input - 1] * (num_frames - num_input), "padded"


def object_box(alphas: np.ndarray) -> tuple[int, int, int, int] | None:
    """(top, left, bottom, right), bottom/right exclusive, of pixels with alpha >= VISIBLE_ALPHA anywhere."""
    visible = (np.asarray(alphas) >= VISIBLE_ALPHA).any(axis=0)  # (N, H, W) -> (H, W)
    rows, cols = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


def square_crop(box: tuple[int, int, int, int], image_frame_ratio: float) -> tuple[float, float, float]:
    """(top, left, side) of the square centred on `box`, side = the box's longer side / image_frame_ratio."""
    top, left, bottom, right = box
    side = max(bottom - top, right - left) / image_frame_ratio
    return (top + bottom - side) / 2, (left + right - side) / 2, side


def crop_resize_on_white(rgba: np.ndarray, crop: tuple[float, float, float], size: int) -> np.ndarray:
    """Cut the square `crop` (top, left, side; may leave the image) out of `rgba` (H, W, 4) and resize it to
    (size, size) with Lanczos on premultiplied alpha; return RGB (size, size, 3) in [0, 1] on white."""
    top, left, side = crop
    im = Image.fromarray(np.ascontiguousarray(rgba), "RGBA").convert(
        "RGBa"
    )  # premultiplied: no colour fringes
    factor = int(side / size / 2)  # shrink big inputs first by an integer box filter, keep >= 2x for Lanczos
    if factor > 1:
        im = im.reduce(factor)
        top, left, side = top / factor, left / factor, side / factor
    # canvas = the crop plus a margin for the Lanczos support (3 input pixels per output pixel when shrinking)
    margin = math.ceil(3 * max(side / size, 1.0)) + 1
    y0, x0 = math.floor(top) - margin, math.floor(left) - margin
    y1, x1 = math.ceil(top + side) + margin, math.ceil(left + side) + margin
    canvas = Image.new("RGBa", (x1 - x0, y1 - y0), (0, 0, 0, 0))  # outside the image = transparent = white
    canvas.paste(im, (-x0, -y0))
    box = (left - x0, top - y0, left - x0 + side, top - y0 + side)
    out = np.asarray(canvas.resize((size, size), Image.Resampling.LANCZOS, box=box), dtype=np.float32) / 255.0
    rgb = out[..., :3] + (1.0 - out[..., 3:])  # premultiplied colour over white
    return np.clip(rgb, 0.0, 1.0)


def preprocess(
    frames,
    size: int = 576,
    image_frame_ratio: float = 0.9,
    remove_bg: bool = False,
    num_frames: int | None = None,
    frame_policy: str = "sample",
    bg_tolerance: int = 20,
) -> tuple[torch.Tensor, dict]:
    """Frames -> (T, 3, size, size) float32 in [0, 1]: the object centred, filling `image_frame_ratio`.

    `frames` is anything `read_frames` accepts (it is called for you) or its output array. Steps:
    1. Pick `num_frames` frames with `frame_policy` (see `select_frames`); None keeps every frame.
    2. Matte each frame: its alpha channel if it has one; else rembg if `remove_bg` (see `remove_background`);
       else `plain_background_matte` (background colour from the border, within `bg_tolerance`). If a frame's
       background is not plain, the whole frame is kept as the object and a warning suggests `remove_bg=True`.
    3. ONE crop for the whole clip: the square centred on the union of the object boxes of all frames, side
       = longer box side / `image_frame_ratio`, so a moving object moves inside a fixed frame.
    4. Crop (transparent = white outside the image), Lanczos-resize to `size`, composite on white.

    Raises KitInputError for bad parameters and when no frame has a visible object ("no object found ..."): an
    all-white (or all one-colour) image without alpha, or a fully transparent one.
    The info dict records `num_input_frames`, `num_frames`, `frame_policy`, `frame_action`, `frame_indices`,
    `matte` (per frame: alpha / rembg / plain-background / none), `object_box` (top, left, bottom, right) and
    `crop` (top, left, side) in input pixels, and `read` (the `read_frames` info when it was called).
    """
    # 1. Check inputs
    size = checks.integer("size", size, minimum=1)
    image_frame_ratio = checks.number("image_frame_ratio", image_frame_ratio, 0, 1, open_min=True)
    if num_frames is not None:
        num_frames = checks.integer("num_frames", num_frames, minimum=1)
    checks.one_of("frame_policy", frame_policy, FRAME_POLICIES)
    bg_tolerance = checks.integer("bg_tolerance", bg_tolerance, 0, 255)
    read_info = None
    if (
        isinstance(frames, np.ndarray)
        and frames.ndim == 4
        and frames.dtype == np.uint8
        and frames.shape[-1] in (3, 4)
    ):
        arr = frames
    else:
        arr, read_info = read_frames(frames)

    # 2. Frame count
    num_input = len(arr)
    indices, action = select_frames(num_input, num_frames, frame_policy)
    arr = arr[indices]

    # 3. Matte: (T, H, W, 4) uint8
    rgba, methods = _matte(arr, remove_bg, bg_tolerance)

    # 4. One crop box for the clip
    box = object_box(rgba[..., 3])
    if box is None:
        raise KitInputError(
            "no object found in the input: every pixel is transparent or background-coloured (all white?); "
            "pass an image with a visible object"
        )
    crop = square_crop(box, image_frame_ratio)

    # 5. Crop, resize, composite on white: (T, size, size, 3) -> (T, 3, size, size)
    out = np.stack([crop_resize_on_white(f, crop, size) for f in rgba])
    x = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    info = {
        "num_input_frames": num_input,
        "num_frames": len(indices),
        "frame_policy": frame_policy,
        "frame_action": action,
        "frame_indices": indices,
        "matte": methods,
        "object_box": box,
        "crop": crop,
        "size": size,
        "image_frame_ratio": float(image_frame_ratio),
        "read": read_info,
    }
    return x, info


def _matte(frames: np.ndarray, remove_bg: bool, tolerance: int) -> tuple[np.ndarray, list[str]]:
    if frames.shape[-1] == 4 and (frames[..., 3] < 255).any():
        return frames, ["alpha"] * len(frames)
    frames = frames[..., :3]  # an opaque alpha channel says nothing about the object
    if remove_bg:
        return remove_background(frames), ["rembg"] * len(frames)
    alphas, methods = [], []
    for f in frames:
        alpha = plain_background_matte(f, tolerance)
        methods.append("none" if alpha is None else "plain-background")
        alphas.append(np.full(f.shape[:2], 255, np.uint8) if alpha is None else alpha)
    if "none" in methods:
        warnings.warn(
            "the background is not plain, so frames are used uncropped; pass remove_bg=True (rembg) to cut "
            "out the object",
            stacklevel=3,
        )
    return np.concatenate([frames, np.stack(alphas)[..., None]], -1), methods


# ----------------------------------------------------------------------------------------------------------
# 4. The reference, bit for bit
# ----------------------------------------------------------------------------------------------------------


def reference_preprocess(
    frames: np.ndarray, W: int = 576, image_frame_ratio: float | None = 0.9, H: int | None = None
) -> np.ndarray:
    """The frames SV4D 2.0's `preprocess_video` (remove_bg=False) writes to its mp4: uint8 (N, H, W, 3).

    `frames` is uint8 (N, h, w, 3) (treated as PIL "RGB": object = channel mean <= 250) or (N, h, w, 4) (PIL
    "RGBA": object = alpha > 0). Every step reproduces the reference exactly, including its quirks:
    - the crop is a square centred on the IMAGE centre, big enough for the union box of all frames;
    - rows and columns are mixed up (`in_w, in_h = shape[:2]`: column extents are compared to the row centre);
      this is harmless for square frames and wrong for others;
    - an empty mask has the box (0, 0, 0, 0) (`cv2.boundingRect`), so an empty clip keeps the whole frame.
    The OpenCV calls are replaced by exact numpy equivalents: `cv2.threshold(m, 0, 255, THRESH_BINARY)` is
    `255 * (m > 0)` and `cv2.boundingRect` of a uint8 mask is the bounding box of its non-zero pixels. The
    resize is PIL's Lanczos on RGBA (which PIL premultiplies), as in the reference.
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] not in (3, 4):
        raise KitInputError(f"frames must be uint8 (N, H, W, 3 or 4), got {frames.dtype} {frames.shape}")
    H = W if H is None else H
    rgba_mode = frames.shape[-1] == 4
    white_thresh = 250
    box_coord = [np.inf, np.inf, 0, 0]
    for image_arr in frames:
        in_w, in_h = image_arr.shape[:2]  # quirk: in_w is the number of ROWS
        original_center = (in_w // 2, in_h // 2)
        mask = image_arr[..., 3] > 0 if rgba_mode else image_arr.mean(-1) <= white_thresh
        x, y, w, h = _bounding_rect(mask)  # x, w along columns; y, h along rows
        box_coord[0] = min(box_coord[0], x)
        box_coord[1] = min(box_coord[1], y)
        box_coord[2] = max(box_coord[2], x + w)
        box_coord[3] = max(box_coord[3], y + h)
    box_square = max(original_center[0] - box_coord[0], original_center[1] - box_coord[1])
    box_square = max(box_square, box_coord[2] - original_center[0])
    box_square = max(box_square, box_coord[3] - original_center[1])
    x, y = max(0, original_center[0] - box_square), max(0, original_center[1] - box_square)
    w, h = min(image_arr.shape[0], 2 * box_square), min(image_arr.shape[1], 2 * box_square)
    box_size = box_square * 2

    out = []
    for image_arr in frames:
        if not rgba_mode:  # PIL's RGB -> RGBA: opaque
            image_arr = np.concatenate([image_arr, np.full(image_arr.shape[:2] + (1,), 255, np.uint8)], -1)
        side_len = int(box_size / image_frame_ratio) if image_frame_ratio is not None else in_w
        padded_image = np.zeros((side_len, side_len, 4), dtype=np.uint8)
        center = side_len // 2
        box_size_w = min(w, box_size)
        box_size_h = min(h, box_size)
        # quirk: x (a column) indexes rows and y (a row) indexes columns
        padded_image[
            center - box_size_w // 2 : center - box_size_w // 2 + box_size_w,
            center - box_size_h // 2 : center - box_size_h // 2 + box_size_h,
        ] = image_arr[x : x + w, y : y + h]
        rgba = Image.fromarray(padded_image, "RGBA").resize((W, H), Image.Resampling.LANCZOS)
        rgba_arr = np.array(rgba) / 255.0  # float64, as the reference
        rgb = rgba_arr[..., :3] * rgba_arr[..., -1:] + (1 - rgba_arr[..., -1:])
        out.append((rgb * 255).astype(np.uint8))  # truncation, as the reference
    return np.stack(out)


def _bounding_rect(mask: np.ndarray) -> tuple[int, int, int, int]:
    """`cv2.boundingRect` of a binary mask: (x, y, w, h) of its non-zero pixels, (0, 0, 0, 0) if none."""
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return 0, 0, 0, 0
    return int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)


def to_model_range(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1] (x * 2 - 1), the range the SV4D 2.0 networks take images in."""
    return x * 2.0 - 1.0


def reference_read_video(frames: np.ndarray) -> torch.Tensor:
    """The reference `read_video` on uint8 frames (N, H, W, 3): `ToTensor()(frame) * 2 - 1`, (N, 3, H, W)."""
    x = (
        torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255)
    )  # ToTensor on uint8
    return to_model_range(x)
