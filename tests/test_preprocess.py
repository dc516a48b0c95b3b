"""Tests for reading and preprocessing inputs: golden frames, bad and awkward inputs, ground truth."""

import struct
import sys
import types
import zlib

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from sv4d_kit.checks import KitInputError
from sv4d_kit.golden import discover, run_set
from sv4d_kit.preprocess import (
    plain_background_matte,
    preprocess,
    read_frames,
    reference_preprocess,
    reference_read_video,
    rembg_model_path,
    select_frames,
    to_model_range,
)

RED = (200, 30, 30)
BLUE = (40, 90, 160)


def object_bbox(x: torch.Tensor, thresh: float = 0.5) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of the pixels of a (3, S, S) frame darker than `thresh` in some channel."""
    dark = (1 - x.numpy()).max(0) > thresh
    rows, cols = np.flatnonzero(dark.any(1)), np.flatnonzero(dark.any(0))
    return rows[0], cols[0], rows[-1] + 1, cols[-1] + 1


def write_png16(path, arr: np.ndarray) -> None:
    """A 16-bit PNG (gray, gray+alpha, RGB or RGBA), which PIL cannot write for colour images."""
    h, w, c = arr.shape
    color_type = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    raw = b"".join(b"\x00" + arr[i].astype(">u2").tobytes() for i in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def square_on_white(h=64, w=64, top=10, left=20, side=16, color=RED) -> np.ndarray:
    img = np.full((h, w, 3), 255, np.uint8)
    img[top : top + side, left : left + side] = color
    return img


# ----------------------------------------------------------------------------------------------------------
# Golden: the reference preprocess_video / read_video, bit for bit
# ----------------------------------------------------------------------------------------------------------


def test_golden_preprocess_sets_pass(reference_dir):
    sets = [s for s in discover(reference_dir) if s.kind == "preprocess"]
    assert sets, f"no golden_preprocess set in {reference_dir}"
    results = [r for s in sets for r in run_set(s, reference_dir)]
    assert len(results) >= 4
    assert all(r.passed for r in results), [r.line() for r in results if not r.passed]


def test_golden_outputs_exact(reference_dir):
    meta_cases = next(s for s in discover(reference_dir) if s.kind == "preprocess").meta["cases"]
    t = load_file(str(reference_dir / "golden_preprocess.safetensors"))
    for case, cfg in meta_cases.items():
        frames = t[f"{case}.input_uint8_hwc"].numpy().astype(np.uint8)
        out = reference_preprocess(frames, W=cfg["W=H"], image_frame_ratio=cfg["image_frame_ratio"])
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, t[f"{case}.output_uint8_hwc"].numpy().astype(np.uint8))
        torch.testing.assert_close(reference_read_video(out), t[f"{case}.read_video"], rtol=0, atol=0)


def test_reference_keeps_row_column_quirk():
    # Tall frame (100 rows, 40 columns), small object near the top, centred horizontally. The reference
    # compares column extents with the row centre, so its square is too small and the object falls outside.
    img = square_on_white(h=100, w=40, top=10, left=18, side=4)
    ref = reference_preprocess(img[None], W=32, image_frame_ratio=0.9)
    assert (ref == 255).all()  # object cropped away, exactly as the reference does
    ours, _ = preprocess(img, size=32)
    assert ours.min() < 0.5  # the kit keeps the object


def test_to_model_range():
    x = torch.tensor([0.0, 0.5, 1.0])
    torch.testing.assert_close(to_model_range(x), torch.tensor([-1.0, 0.0, 1.0]))
    frames = np.array([[[[0, 128, 255]]]], np.uint8)
    torch.testing.assert_close(
        reference_read_video(frames).flatten(), torch.tensor([-1.0, 128 / 255 * 2 - 1, 1.0])
    )


# ----------------------------------------------------------------------------------------------------------
# Bad inputs: one clear ValueError line
# ----------------------------------------------------------------------------------------------------------


def _make_bad(tmp_path, kind):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(good)
    if kind == "zero_png":
        p = tmp_path / "zero.png"
        p.write_bytes(b"")
    elif kind == "truncated_png":
        p = tmp_path / "truncated.png"
        p.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    elif kind == "text_jpg":
        p = tmp_path / "notes.jpg"
        p.write_text("this is not a picture\n")
    elif kind == "corrupt_gif":
        p = tmp_path / "broken.gif"
        p.write_bytes(b"GIF89a" + bytes(40))
    elif kind == "corrupt_mp4":
        p = tmp_path / "broken.mp4"
        p.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    elif kind == "empty_folder":
        p = tmp_path / "empty"
        p.mkdir()
    elif kind == "folder_without_images":
        p = tmp_path / "docs"
        p.mkdir()
        (p / "readme.txt").write_text("no frames here")
    elif kind == "glob_nothing":
        p = tmp_path / "nothing_*.png"
    elif kind == "missing":
        p = tmp_path / "missing.png"
    return p


@pytest.mark.parametrize(
    "kind, words",
    [
        ("zero_png", "empty (0 bytes)"),
        ("truncated_png", "truncated"),
        ("text_jpg", "could not read image file"),
        ("corrupt_gif", "could not read image file"),
        ("corrupt_mp4", "could not read video file"),
        ("empty_folder", "is empty"),
        ("folder_without_images", "no image files"),
        ("glob_nothing", "matched no image files"),
        ("missing", "does not exist"),
    ],
)
def test_bad_inputs_raise_one_line_valueerror(tmp_path, kind, words):
    path = _make_bad(tmp_path, kind)
    with pytest.raises(KitInputError) as err:
        read_frames(str(path))
    message = str(err.value)
    assert words in message and path.name in message
    assert "\n" not in message and len(message) < 400
    with pytest.raises(KitInputError):
        preprocess(str(path), size=16)


def test_truncated_gif_raises(tmp_path):
    frames = [Image.fromarray(square_on_white(32, 32, top=i, left=i, side=8)) for i in range(10)]
    gif = tmp_path / "clip.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=50)
    cut = tmp_path / "cut.gif"
    cut.write_bytes(gif.read_bytes()[: gif.stat().st_size // 2])
    with pytest.raises(KitInputError, match="cut.gif"):
        read_frames(cut)


def test_bad_parameters_raise():
    img = square_on_white()
    for kwargs, name in [
        ({"size": 0}, "size"),
        ({"image_frame_ratio": 0.0}, "image_frame_ratio"),
        ({"image_frame_ratio": 1.5}, "image_frame_ratio"),
        ({"num_frames": 0}, "num_frames"),
        ({"frame_policy": "bounce"}, "frame_policy"),
    ]:
        with pytest.raises(KitInputError, match=name):
            preprocess(img, **kwargs)


def test_frames_of_different_sizes_raise(tmp_path):
    Image.new("RGB", (32, 32)).save(tmp_path / "a.png")
    Image.new("RGB", (40, 32)).save(tmp_path / "b.png")
    with pytest.raises(KitInputError, match="same size"):
        read_frames(tmp_path)


@pytest.mark.parametrize("kind", ["white_rgb", "transparent_png", "uniform_gray"])
def test_no_object_raises(tmp_path, kind):
    if kind == "white_rgb":
        Image.new("RGB", (40, 30), (255, 255, 255)).save(tmp_path / "x.png")
    elif kind == "transparent_png":
        Image.new("RGBA", (40, 30), (255, 0, 0, 0)).save(tmp_path / "x.png")
    else:
        Image.new("L", (40, 30), 128).save(tmp_path / "x.png")
    with pytest.raises(KitInputError, match="no object found"):
        preprocess(tmp_path / "x.png", size=16)


# ----------------------------------------------------------------------------------------------------------
# Awkward but valid inputs
# ----------------------------------------------------------------------------------------------------------


def test_awkward_still_images(tmp_path):
    base = square_on_white(48, 64, top=10, left=20, side=16, color=BLUE)
    paths = {}
    paths["gray.png"] = Image.fromarray(base[..., 0])
    paths["rgb.webp"] = Image.fromarray(base)
    paths["cmyk.jpg"] = Image.fromarray(base).convert("CMYK")
    rgba = np.zeros((48, 64, 4), np.uint8)
    rgba[10:26, 20:36] = (*BLUE, 255)
    paths["rgba.png"] = Image.fromarray(rgba)
    paths["la.png"] = Image.fromarray(rgba[..., [0, 3]], "LA")
    paths["palette.png"] = Image.fromarray(base).quantize(4)
    paths["palette_transparent.gif"] = Image.fromarray(rgba).convert("P", palette=Image.Palette.ADAPTIVE)
    for name, im in paths.items():
        kwargs = {"transparency": 0} if name == "palette_transparent.gif" else {}
        im.save(tmp_path / name, **kwargs)
    write_png16(tmp_path / "gray16.png", (base[..., :1].astype(np.uint16) * 257))
    write_png16(tmp_path / "rgb16.png", base.astype(np.uint16) * 257)
    write_png16(tmp_path / "rgba16.png", rgba.astype(np.uint16) * 257)
    Image.fromarray(base[..., 0].astype(np.uint16) * 257).save(tmp_path / "gray16_pil.png")  # PIL mode I;16

    for name in [*paths, "gray16.png", "rgb16.png", "rgba16.png", "gray16_pil.png"]:
        frames, info = read_frames(tmp_path / name)
        assert frames.dtype == np.uint8 and frames.shape[:3] == (1, 48, 64), name
        assert frames.shape[3] in (3, 4) and info["kind"] == "image", name
        x, pinfo = preprocess(frames, size=32)
        assert x.shape == (1, 3, 32, 32) and torch.isfinite(x).all(), name
        assert 0 <= x.min() and x.max() <= 1 and x.min() < 0.5, name  # the object is there
        top, left, bottom, right = pinfo["object_box"]
        assert (
            abs(top - 10) <= 1 and abs(left - 20) <= 1 and abs(bottom - 26) <= 1 and abs(right - 36) <= 1
        ), name

    g16, _ = read_frames(tmp_path / "gray16.png")
    assert g16[0, 12, 22, 0] == BLUE[0] and g16[0, 0, 0, 0] == 255  # 16-bit scaled to 8-bit, not clipped
    assert read_frames(tmp_path / "gray16_pil.png")[0][0, 12, 22, 0] == BLUE[0]
    assert read_frames(tmp_path / "rgba.png")[1]["has_alpha"]
    assert read_frames(tmp_path / "palette_transparent.gif")[1]["has_alpha"]
    assert not read_frames(tmp_path / "rgb.webp")[1]["has_alpha"]


def test_huge_non_square_image(tmp_path):
    img = np.full((1600, 2400, 3), 255, np.uint8)
    img[300:1300, 1500:2100] = (20, 90, 160)  # 1000 x 600, off-centre
    Image.fromarray(img).save(tmp_path / "huge.jpg", quality=90)
    x, info = preprocess(tmp_path / "huge.jpg", size=100, image_frame_ratio=0.8)
    top, left, bottom, right = object_bbox(x[0])
    assert abs((bottom - top) - 80) <= 1.5 and abs((right - left) - 48) <= 1.5
    assert abs((top + bottom) / 2 - 50) <= 1 and abs((left + right) / 2 - 50) <= 1


def test_gifs_mp4_folder_glob(tmp_path):
    clip = [square_on_white(32, 32, top=4 + i % 10, left=2 + i % 20, side=8) for i in range(90)]
    frames = [Image.fromarray(f) for f in clip]
    frames[0].save(tmp_path / "long.gif", save_all=True, append_images=frames[1:], duration=40, loop=0)
    frames[0].save(tmp_path / "one.gif")
    imageio.mimwrite(tmp_path / "clip.mp4", [np.asarray(f.resize((64, 64))) for f in frames[:12]], fps=10)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (0, 1, 2, 10, 11):  # natural order: 2 before 10
        frames[i].save(folder / f"frame{i}.png")
    (folder / "notes.txt").write_text("ignored")

    long, info = read_frames(tmp_path / "long.gif")
    assert (
        long.shape == (90, 32, 32, 3) and info["kind"] == "animation" and info["fps"] == pytest.approx(25.0)
    )
    np.testing.assert_array_equal(long[37], clip[37])  # every frame, composited
    one, info = read_frames(tmp_path / "one.gif")
    assert one.shape == (1, 32, 32, 3) and info["kind"] == "image"
    video, info = read_frames(tmp_path / "clip.mp4")
    assert video.shape == (12, 64, 64, 3) and info["kind"] == "video" and info["fps"] == pytest.approx(10.0)
    assert (
        np.abs(video[5].astype(int) - np.asarray(frames[5].resize((64, 64)), int)).mean() < 8
    )  # lossy codec
    assert read_frames(tmp_path / "clip.mp4", max_frames=3)[0].shape[0] == 3

    got, info = read_frames(folder)
    assert info["kind"] == "folder" and [p.rsplit("/", 1)[-1] for p in info["files"]] == [
        "frame0.png",
        "frame1.png",
        "frame2.png",
        "frame10.png",
        "frame11.png",
    ]
    np.testing.assert_array_equal(got, np.stack([clip[i] for i in (0, 1, 2, 10, 11)]))
    got_glob, info = read_frames(str(folder / "frame1*.png"))
    assert info["kind"] == "glob" and got_glob.shape[0] == 3  # frame1, frame10, frame11

    x, pinfo = preprocess(tmp_path / "long.gif", size=24, num_frames=21)
    assert (
        x.shape == (21, 3, 24, 24)
        and pinfo["frame_action"] == "sampled"
        and pinfo["read"]["num_frames"] == 90
    )


def test_in_memory_sources():
    img = square_on_white()
    for source in (img, img[None], Image.fromarray(img), [Image.fromarray(img)] * 2, [img, img]):
        frames, info = read_frames(source)
        assert frames.shape[1:] == (64, 64, 3) and info["kind"] == "array"


# ----------------------------------------------------------------------------------------------------------
# Ground truth: where the object ends up
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("background", ["white", "transparent", "green"])
@pytest.mark.parametrize("ratio", [0.9, 0.6])
def test_object_fills_ratio_and_is_centred(background, ratio):
    h, w, size = 100, 160, 64
    top, left, side = 20, 90, 40  # off-centre in a non-square image
    if background == "transparent":
        img = np.zeros((h, w, 4), np.uint8)
        img[top : top + side, left : left + side] = (*RED, 255)
    else:
        img = square_on_white(h, w, top, left, side)
        if background == "green":
            img[(img == 255).all(-1)] = (0, 180, 0)
    x, info = preprocess(img, size=size, image_frame_ratio=ratio)
    assert x.shape == (1, 3, size, size) and x.dtype == torch.float32
    assert info["matte"] == ["alpha" if background == "transparent" else "plain-background"]
    t, l, b, r = object_bbox(x[0])
    assert abs((b - t) - ratio * size) <= 1.5 and abs((r - l) - ratio * size) <= 1.5
    assert abs((t + b) / 2 - size / 2) <= 1 and abs((l + r) / 2 - size / 2) <= 1
    # white away from the object (Lanczos rings up to 3 output pixels), whatever the input background was
    assert (x[0, :, :, : l - 3] > 0.999).all() and (x[0, :, : t - 3, :] > 0.999).all()
    assert not ((x[0, 1] - x[0, 0]) > 0.1).any()  # no green left anywhere


def test_one_crop_box_for_a_moving_object():
    size, ratio = 48, 0.9
    clip = np.zeros((4, 60, 80, 4), np.uint8)
    for i in range(4):
        clip[i, 10 + 4 * i : 22 + 4 * i, 5 + 10 * i : 17 + 10 * i] = (20, 20, 220, 255)
    x, info = preprocess(clip, size=size, image_frame_ratio=ratio)
    assert info["object_box"] == (10, 5, 34, 47)  # union of the four boxes
    scale = size / (42 / ratio)
    boxes = [object_bbox(f) for f in x]
    for i, (t, l, b, r) in enumerate(boxes):
        assert (
            abs((b - t) - 12 * scale) <= 1.5 and abs((r - l) - 12 * scale) <= 1.5
        )  # same size in every frame
        # moved by exactly the input motion times the one scale
        assert abs((l - boxes[0][1]) - 10 * i * scale) <= 1 and abs((t - boxes[0][0]) - 4 * i * scale) <= 1
    first, last = boxes[0], boxes[-1]
    assert abs((first[1] + last[3]) / 2 - size / 2) <= 1  # the union is centred


def test_plain_background_matte_fills_holes_and_keeps_concavities():
    img = np.full((40, 40, 3), 255, np.uint8)
    img[5:35, 5:35] = (30, 30, 30)
    img[12:28, 12:28] = 255  # an enclosed white hole: part of the object
    img[30:35, 15:25] = 255  # a notch open to the outside: background
    alpha = plain_background_matte(img)
    assert alpha[20, 20] == 255 and alpha[32, 20] == 0 and alpha[2, 2] == 0 and alpha[6, 6] == 255
    noise = np.random.default_rng(0).integers(0, 255, (40, 40, 3), dtype=np.uint8)
    assert plain_background_matte(noise) is None


def test_busy_background_warns_and_keeps_whole_frame():
    noise = np.random.default_rng(1).integers(0, 255, (30, 60, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match="remove_bg"):
        x, info = preprocess(noise, size=40, image_frame_ratio=0.5)
    assert info["matte"] == ["none"] and info["object_box"] == (0, 0, 30, 60)
    # the frame is 20 output pixels wide (columns 10..30) and 10 high (rows 15..25), centred, on white
    assert (x[0, :, :, : 10 - 3] > 0.999).all() and (x[0, :, :, 30 + 3 :] > 0.999).all()
    assert (x[0, :, : 15 - 3] > 0.999).all() and (x[0, :, 25 + 3 :] > 0.999).all()
    assert x[0, :, 16:24, 11:29].std() > 0.05 and x[0, :, 16:24, 11:29].mean() < 0.8  # the noise is inside


# ----------------------------------------------------------------------------------------------------------
# Frame counts
# ----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_in, num, policy, expected, action",
    [
        (5, None, "sample", [0, 1, 2, 3, 4], "kept"),
        (5, 5, "loop", [0, 1, 2, 3, 4], "kept"),
        (90, 21, "sample", None, "sampled"),
        (3, 7, "sample", [0, 0, 1, 1, 1, 2, 2], "sampled"),
        (3, 7, "loop", [0, 1, 2, 0, 1, 2, 0], "looped"),
        (3, 7, "pad", [0, 1, 2, 2, 2, 2, 2], "padded"),
        (5, 3, "loop", [0, 1, 2], "truncated"),
        (5, 3, "pad", [0, 1, 2], "truncated"),
    ],
)
def test_frame_policies(n_in, num, policy, expected, action):
    indices, done = select_frames(n_in, num, policy)
    assert done == action and len(indices) == (num or n_in)
    if expected is not None:
        assert indices == expected
    else:  # evenly spread over the whole clip
        assert indices[0] == 0 and indices[-1] == n_in - 1 and np.ptp(np.diff(indices)) <= 1


@pytest.mark.parametrize("policy", ["sample", "loop", "pad"])
def test_preprocess_records_frame_policy(policy):
    clip = np.stack([square_on_white(32, 32, top=4 + i, left=4, side=8) for i in range(3)])
    x, info = preprocess(clip, size=16, num_frames=5, frame_policy=policy)
    assert x.shape == (5, 3, 16, 16)
    assert info["num_input_frames"] == 3 and info["num_frames"] == 5 and info["frame_policy"] == policy
    assert len(info["frame_indices"]) == 5 and info["frame_action"] in ("sampled", "looped", "padded")
    for out, idx in zip(x, info["frame_indices"]):  # each output frame is the recorded input frame
        single, _ = preprocess(clip, size=16)
        torch.testing.assert_close(out, single[idx])


# ----------------------------------------------------------------------------------------------------------
# remove_bg (rembg): never downloads, clear errors
# ----------------------------------------------------------------------------------------------------------


def test_remove_bg_without_rembg_says_how_to_get_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "rembg", None)  # import rembg -> ImportError
    with pytest.raises(RuntimeError, match="pip install rembg"):
        preprocess(square_on_white(), size=16, remove_bg=True)


def test_remove_bg_with_rembg_but_no_model(monkeypatch, tmp_path):
    fake = types.ModuleType("rembg")
    fake.new_session = lambda *a, **k: pytest.fail("must not create a session (it may download)")
    monkeypatch.setitem(sys.modules, "rembg", fake)
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    assert rembg_model_path() == tmp_path / "u2net.onnx"
    with pytest.raises(RuntimeError, match="u2net.onnx"):
        preprocess(square_on_white(), size=16, remove_bg=True)


def test_remove_bg_uses_rembg_when_model_is_on_disk(monkeypatch, tmp_path):
    (tmp_path / "u2net.onnx").write_bytes(b"model")
    calls = []

    def remove(image, session=None, alpha_matting=False):
        calls.append((session, alpha_matting))
        rgb = np.asarray(image)
        alpha = np.where((rgb < 250).any(-1), 255, 0).astype(np.uint8)
        return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")

    fake = types.ModuleType("rembg")
    fake.new_session = lambda name: f"session:{name}"
    fake.remove = remove
    monkeypatch.setitem(sys.modules, "rembg", fake)
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    x, info = preprocess(square_on_white(), size=32, remove_bg=True)
    assert calls == [("session:u2net", True)] and info["matte"] == ["rembg"]
    t, l, b, r = object_bbox(x[0])
    assert abs((b - t) - 0.9 * 32) <= 1.5
    # frames that already have alpha are not sent to rembg (as in the reference)
    rgba = np.zeros((1, 40, 40, 4), np.uint8)
    rgba[0, 5:15, 5:15] = (*RED, 255)
    _, info = preprocess(rgba, size=16, remove_bg=True)
    assert info["matte"] == ["alpha"] and len(calls) == 1
