"""The `sv4d-kit` command: outputs, exit codes, one-line errors, nothing left behind on failure."""

import json
import subprocess
import sys
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from PIL import Image

from sv4d_kit import checks
from sv4d_kit.checks import KitInputError
from sv4d_kit.cli import main
from sv4d_kit.models.checkpoint import build_tiny_models
from sv4d_kit.pipeline import SV4DPipeline

DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """A tiny random-weight model saved in the kit's folder format."""
    unet, cond, vae = build_tiny_models("sv4d2", seed=0)
    pipe = SV4DPipeline(unet, cond, vae, variant="sv4d2", frames_per_chunk=3, num_views=2, image_size=64)
    folder = tmp_path_factory.mktemp("model") / "tiny"
    pipe.save_pretrained(folder)
    return folder


def generate(tiny_model, inp, out, *extra):
    return main(
        [
            "generate",
            str(inp),
            "--output",
            str(out),
            "--model",
            str(tiny_model),
            "--steps",
            "1",
            "--no-progress",
            *map(str, extra),
        ]
    )


def assert_one_error_line(capsys, pattern: str):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, err
    assert pattern.lower() in errors[0].lower(), errors[0]
    assert "Traceback" not in err


def test_generate_writes_every_output(tiny_model, tmp_path):
    out = tmp_path / "out"
    assert generate(tiny_model, DATA / "moving_object.gif", out, "--frames", "4", "--seed", "3") == 0
    names = {p.name for p in out.iterdir()}
    assert {"orbit.mp4", "grid.png", "metadata.json", "view_00.mp4", "view_01.mp4", "view_02.mp4"} <= names
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["seed"] == 3 and meta["parameters"]["steps"] == 1
    # no --sampler: the model's default, Euler (its folder names none)
    assert meta["parameters"]["sampler"] is None and meta["sampling"]["sampler"] == "euler"
    assert meta["sampling"]["num_inference_steps"] == 1
    assert meta["input"]["preprocess"]["num_frames"] == 4
    assert len(meta["cameras"]["azimuths_deg"]) == 3
    assert {"read", "load", "preprocess", "encode", "sample", "decode"} <= set(
        meta["timings_s"]
    )  # write: printed
    assert meta["kit_version"]


def test_same_seed_byte_identical_outputs(tiny_model, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert generate(tiny_model, DATA / "object.png", a, "--seed", "5") == 0
    assert generate(tiny_model, DATA / "object.png", b, "--seed", "5") == 0
    for f in a.iterdir():
        if f.name != "metadata.json":  # metadata holds timings
            assert f.read_bytes() == (b / f.name).read_bytes(), f.name
    strip = [json.loads((d / "metadata.json").read_text()) for d in (a, b)]
    for m in strip:
        m.pop("timings_s")
        m["parameters"].pop("output_dir")
    assert strip[0] == strip[1]


def test_existing_output_needs_overwrite(tiny_model, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "precious.txt").write_text("keep")
    assert generate(tiny_model, DATA / "object.png", out) == 2
    assert_one_error_line(capsys, "--overwrite")
    assert (out / "precious.txt").read_text() == "keep"
    assert generate(tiny_model, DATA / "object.png", out, "--overwrite") == 0
    assert not (out / "precious.txt").exists()


def _write_awkward(kind: str, folder: Path) -> Path:
    rng = np.random.default_rng(0)
    rgb = np.full((96, 160, 3), 255, np.uint8)
    rgb[20:70, 40:100] = rng.integers(0, 200, (50, 60, 3), dtype=np.uint8)
    path = folder / f"{kind}.png"
    if kind == "gray":
        Image.fromarray(rgb).convert("L").save(path)
    elif kind == "gray16":
        Image.fromarray((rgb[..., 0].astype(np.uint16) * 257).astype(np.uint16)).save(path)
    elif kind == "palette":
        Image.fromarray(rgb).convert("P").save(path)
    elif kind == "cmyk":
        path = folder / "cmyk.jpg"
        Image.fromarray(rgb).convert("CMYK").save(path)
    elif kind == "rgba":
        rgba = np.concatenate([rgb, np.zeros((96, 160, 1), np.uint8)], -1)
        rgba[20:70, 40:100, 3] = 255
        Image.fromarray(rgba).save(path)
    elif kind == "huge":
        Image.fromarray(np.asarray(Image.fromarray(rgb).resize((2400, 1440)))).save(path)
    elif kind == "gif1":
        path = folder / "one.gif"
        imageio.mimwrite(path, [rgb], duration=100)
    elif kind == "gif90":
        path = folder / "long.gif"
        imageio.mimwrite(path, [np.roll(rgb, i, axis=1) for i in range(90)], duration=40)
    return path


@pytest.mark.parametrize("kind", ["gray", "gray16", "palette", "cmyk", "rgba", "huge", "gif1", "gif90"])
def test_awkward_valid_inputs_work(tiny_model, tmp_path, kind):
    inp = _write_awkward(kind, tmp_path)
    assert generate(tiny_model, inp, tmp_path / "out") == 0
    assert (tmp_path / "out" / "orbit.mp4").exists()


def test_folder_and_glob_inputs(tiny_model, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        _write_awkward("rgba", tmp_path).rename(frames / f"frame_{i}.png")
    assert generate(tiny_model, frames, tmp_path / "a") == 0
    assert generate(tiny_model, str(frames / "*.png"), tmp_path / "b") == 0
    assert generate(tiny_model, DATA / "moving_object.mp4", tmp_path / "c", "--frames", "2") == 0


def _bad_input(kind: str, folder: Path) -> Path:
    if kind == "missing":
        return folder / "nope.png"
    if kind == "zero_byte":
        (folder / "zero.png").write_bytes(b"")
        return folder / "zero.png"
    if kind == "truncated":
        Image.new("RGB", (64, 64), (200, 10, 10)).save(folder / "full.png")
        data = (folder / "full.png").read_bytes()
        (folder / "cut.png").write_bytes(data[: len(data) // 3])
        return folder / "cut.png"
    if kind == "text_as_jpg":
        (folder / "notes.jpg").write_text("not an image")
        return folder / "notes.jpg"
    if kind == "corrupt_gif":
        (folder / "bad.gif").write_bytes(b"GIF89a" + b"\x00\x01garbage" * 10)
        return folder / "bad.gif"
    if kind == "corrupt_mp4":
        (folder / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
        return folder / "bad.mp4"
    if kind == "empty_folder":
        (folder / "empty").mkdir()
        return folder / "empty"
    if kind == "no_images_folder":
        (folder / "docs").mkdir()
        (folder / "docs" / "readme.txt").write_text("hi")
        return folder / "docs"
    if kind == "all_white":
        Image.new("RGB", (64, 64), (255, 255, 255)).save(folder / "white.png")
        return folder / "white.png"
    if kind == "transparent":
        Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(folder / "clear.png")
        return folder / "clear.png"
    raise AssertionError(kind)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "does not exist"),
        ("zero_byte", "zero.png"),
        ("truncated", "cut.png"),
        ("text_as_jpg", "notes.jpg"),
        ("corrupt_gif", "bad.gif"),
        ("corrupt_mp4", "bad.mp4"),
        ("empty_folder", "empty"),
        ("no_images_folder", "docs"),
        ("all_white", "no object"),
        ("transparent", "no object"),
    ],
)
def test_bad_inputs(tiny_model, tmp_path, capsys, kind, message):
    inp = _bad_input(kind, tmp_path)
    before = set(tmp_path.iterdir())
    assert generate(tiny_model, inp, tmp_path / "out") == 2
    assert_one_error_line(capsys, message)
    assert not (tmp_path / "out").exists() and set(tmp_path.iterdir()) == before


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps"),
        (["--steps", "many"], "--steps"),
        (["--cfg", "-1"], "--cfg"),
        (["--elevation", "91"], "--elevation"),
        (["--elevation", "-100"], "--elevation"),
        (["--azimuths", "0,90"], "azimuths needs 3 values"),
        (["--azimuths", "0,a,b"], "--azimuths"),
        (["--frames", "0"], "--frames"),
        (["--frames", "-3"], "--frames"),
        (["--sampler", "bogus"], "--sampler: invalid choice: 'bogus'"),
    ],
)
def test_bad_arguments(tiny_model, tmp_path, capsys, args, message):
    assert generate(tiny_model, DATA / "object.png", tmp_path / "out", *args) == 2
    assert_one_error_line(capsys, message)
    assert not (tmp_path / "out").exists()


def test_output_is_a_file_or_unwritable(tiny_model, tmp_path, capsys):
    afile = tmp_path / "file.txt"
    afile.write_text("x")
    assert generate(tiny_model, DATA / "object.png", afile) == 2
    assert_one_error_line(capsys, "is a file")
    assert generate(tiny_model, DATA / "object.png", afile / "sub") == 2
    assert_one_error_line(capsys, "not writable")
    assert afile.read_text() == "x"


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x10\x00\x00\x00\x00\x00\x00\x00{"])
def test_invalid_checkpoint(tmp_path, capsys, content):
    bad = tmp_path / "sv4d2.safetensors"
    bad.write_bytes(content)
    assert (
        main(["generate", str(DATA / "object.png"), "--output", str(tmp_path / "o"), "--model", str(bad)])
        == 2
    )
    assert_one_error_line(capsys, "safetensors")
    assert not (tmp_path / "o").exists()


def test_model_folder_without_index(tmp_path, capsys):
    assert (
        main(
            ["generate", str(DATA / "object.png"), "--output", str(tmp_path / "o"), "--model", str(tmp_path)]
        )
        == 2
    )
    assert_one_error_line(capsys, "model_index.json")


def test_scene_command(tmp_path):
    assert (
        main(["scene", "--output", str(tmp_path / "s"), "--frames", "3", "--views", "2", "--size", "32"]) == 0
    )
    meta = json.loads((tmp_path / "s" / "metadata.json").read_text())
    assert meta["command"] == "scene" and len(meta["cameras"]["azimuths_deg"]) == 2
    assert meta["parameters"]["world"] == "patterned"


def test_scene_command_world(tmp_path, capsys):
    args = ["scene", "--frames", "1", "--views", "2", "--size", "24", "--seed", "4"]
    for world in ("simple", "patterned"):
        assert main(args + ["--output", str(tmp_path / world), "--world", world]) == 0
    simple, patterned = (imageio.imread(tmp_path / w / "grid.png") for w in ("simple", "patterned"))
    assert simple.shape == patterned.shape and (simple != patterned).any()
    assert main(args + ["--output", str(tmp_path / "bad"), "--world", "toys"]) == 2
    assert_one_error_line(capsys, "world")
    assert not (tmp_path / "bad").exists()


def test_usage_errors_are_one_line(capsys):
    assert main([]) == 2
    assert_one_error_line(capsys, "required")
    assert main(["frobnicate"]) == 2
    assert_one_error_line(capsys, "invalid choice")


def test_console_script_entry_point(tmp_path):
    """The real process: exit code 2 and one `error:` line on stderr, nothing else."""
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "sv4d_kit.cli",
            "generate",
            str(tmp_path / "missing.png"),
            "--output",
            str(tmp_path / "o"),
            "--model",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error:")


def test_demo_with_the_bundled_model(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--output", str(out), "--frames", "5", "--steps", "2", "--no-progress"]) == 0
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["command"] == "demo" and meta["model"]["variant"] == "tiny"
    assert {"orbit.mp4", "grid.png", "view_00.mp4", "view_04.mp4"} <= {p.name for p in out.iterdir()}


def test_device_values_are_checked_before_any_work(tmp_path, capsys):
    import torch

    assert checks.torch_device("device", "cpu") == "cpu"
    for bad, words in (
        ("tpu", "must be cpu, cuda"),
        ("gpu", "must be cpu, cuda"),
        ("cuda:99", "CUDA device"),
    ):
        with pytest.raises(KitInputError, match=words):
            checks.torch_device("device", bad)
        assert (
            main(["generate", str(DATA / "object.png"), "--output", str(tmp_path / "o"), "--device", bad])
            == 2
        )
        assert_one_error_line(capsys, "--device")
    if not torch.backends.mps.is_available():
        with pytest.raises(KitInputError, match="no MPS device"):
            checks.torch_device("device", "mps")
    assert not (tmp_path / "o").exists()


def test_an_internal_error_is_a_bug_with_its_traceback(tmp_path, monkeypatch):
    """Only bad input is exit 2: any other exception (here a ZeroDivisionError inside the renderer) propagates, so
    the process shows its traceback and exits 1, and nothing is left in the output folder."""
    from sv4d_kit import synthetic

    def broken(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(synthetic, "make_scene", broken)
    with pytest.raises(ZeroDivisionError):
        main(["scene", "--output", str(tmp_path / "s"), "--frames", "2", "--views", "2", "--size", "32"])
    code = (
        "import sys; from sv4d_kit import cli, synthetic\n"
        "synthetic.make_scene = lambda *a, **k: 1 / 0\n"
        f"sys.exit(cli.main(['scene', '--output', {str(tmp_path / 'p')!r}, '--size', '32']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ZeroDivisionError" in proc.stderr
    assert not any(line.startswith("error:") for line in proc.stderr.splitlines())
    assert not (tmp_path / "s").exists() and not (tmp_path / "p").exists()


def test_library_generate_writes_what_the_command_writes(tiny_model, tmp_path):
    """`sv4d_kit.generate` is what `sv4d-kit generate` runs: the same files, byte for byte, and the same metadata
    apart from timings and the folder's name."""
    import sv4d_kit

    a, b = tmp_path / "a", tmp_path / "b"
    result = sv4d_kit.generate(DATA / "moving_object.gif", a, model=tiny_model, steps=1, frames=4, seed=3,
                               progress=False)  # fmt: skip
    assert generate(tiny_model, DATA / "moving_object.gif", b, "--frames", "4", "--seed", "3") == 0
    assert isinstance(result, sv4d_kit.GenerateResult) and result.folder == a
    assert result.output.images.shape == (4, 3, 3, 64, 64)
    assert sorted(p.name for p in a.iterdir()) == sorted(p.name for p in b.iterdir())
    for f in a.iterdir():
        if f.name != "metadata.json":
            assert f.read_bytes() == (b / f.name).read_bytes(), f.name
    meta = [json.loads((d / "metadata.json").read_text()) for d in (a, b)]
    for m in meta:
        m.pop("timings_s")
        m["parameters"].pop("output_dir")
        m["input"]["path"] = m["input"]["path"].replace("\\", "/")
    assert meta[0] == meta[1]
    assert meta[0]["parameters"]["steps"] == 1 and meta[0]["model"]["source"] == str(tiny_model)


def test_library_generate_rejects_bad_options_before_any_work(tiny_model, tmp_path):
    import sv4d_kit

    for options, words in (
        (dict(steps=2.0), "steps must be an integer >= 1"),
        (dict(cfg=-1), "cfg must be a finite number >= 0"),
        (dict(elevation=float("nan")), "elevation"),
        (dict(azimuths=[]), "azimuths"),
        (dict(dtype="float8"), "dtype must be one of"),
        (dict(frames=True), "frames"),
        (dict(device="tpu"), "device must be"),
        (dict(sampler="bogus"), "sampler must be one of euler, heun"),
    ):
        with pytest.raises(sv4d_kit.KitInputError, match=words):
            sv4d_kit.generate(DATA / "object.png", tmp_path / "o", model=tiny_model, **options)
        assert not (tmp_path / "o").exists()


def test_loading_the_bundled_model_is_silent():
    """The front door from Python writes nothing to stderr (no loading bar, no dtype-cast warnings)."""
    code = "from sv4d_kit import SV4DPipeline, generate; SV4DPipeline.from_pretrained('tiny')"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr


def test_reconstruct_writes_a_smooth_orbit_and_point_clouds(tmp_path):
    """--reconstruct fits 4D points to the views: orbit_smooth.mp4 has 72 angles at 4x the model's size, and one
    PLY per frame reads back with plyfile (coloured points); both are listed in metadata.json."""
    from plyfile import PlyData

    out = tmp_path / "out"
    assert main(["generate", str(DATA / "object.png"), "--output", str(out), "--frames", "2", "--steps", "1",
                 "--reconstruct", "--no-progress"]) == 0  # fmt: skip
    video = imageio.mimread(out / "orbit_smooth.mp4", memtest=False)
    assert len(video) == 72 and video[0].shape == (128, 128, 3)
    meta = json.loads((out / "metadata.json").read_text())
    plys = sorted((out / "points").glob("frame_*.ply"))
    assert [p.name for p in plys] == [f"frame_{t:03d}.ply" for t in range(len(plys))] and plys
    assert {"orbit_smooth.mp4", "points/frame_000.ply"} <= set(meta["outputs"]["files"])
    vertex = PlyData.read(str(plys[0]))["vertex"]
    assert vertex.count == meta["reconstruction"]["points"] > 0
    assert {"x", "y", "z", "red", "green", "blue"} <= {p.name for p in vertex.properties}


def test_sampler_option_reaches_the_pipeline_and_the_metadata(tiny_model, tmp_path):
    """`--sampler heun` (and `sampler="heun"`) samples with Heun; metadata.json records the option and the settings
    the sampler ran with. Batch takes generate's options, this one too."""
    from sv4d_kit import generation, sampling

    assert generation.SAMPLERS == sampling.SAMPLERS  # generation's copy (`--help` imports no torch)
    a, b = tmp_path / "a", tmp_path / "b"
    assert generate(tiny_model, DATA / "object.png", a, "--steps", "2", "--sampler", "heun") == 0
    assert generate(tiny_model, DATA / "object.png", b, "--steps", "2", "--sampler", "euler") == 0
    meta = json.loads((a / "metadata.json").read_text())
    assert meta["parameters"]["sampler"] == "heun" and meta["sampling"]["sampler"] == "heun"
    assert meta["sampling"]["num_inference_steps"] == 2
    assert json.loads((b / "metadata.json").read_text())["sampling"]["sampler"] == "euler"
    assert (a / "grid.png").read_bytes() != (b / "grid.png").read_bytes()
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "object.png").write_bytes((DATA / "object.png").read_bytes())
    args = ["batch", str(inputs), "--output", str(tmp_path / "batch"), "--model", str(tiny_model), "--steps", "1",
            "--threads", "1", "--no-progress"]  # fmt: skip
    assert main(args + ["--sampler", "heun"]) == 0
    meta = json.loads((tmp_path / "batch" / "object" / "metadata.json").read_text())
    assert meta["parameters"]["sampler"] == "heun" and meta["sampling"]["sampler"] == "heun"


def test_batch_rejects_a_bad_sampler_before_any_work(tiny_model, tmp_path, capsys):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "object.png").write_bytes((DATA / "object.png").read_bytes())
    out = tmp_path / "batch"
    args = ["batch", str(inputs), "--output", str(out), "--model", str(tiny_model), "--sampler", "rk4"]
    assert main(args) == 2
    assert_one_error_line(capsys, "--sampler: invalid choice: 'rk4'")
    assert not out.exists()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"stepz": 3}, "unknown training config keys ['stepz']"),
        ({"steps": "100"}, "steps must be an integer >= 1, got '100'"),
        ({"lr": -1.0}, "lr must be a finite number > 0"),
        ({"loss": "huber"}, "loss must be one of l2, l1"),
        ({"sampling": {"stepz": 6}}, "unknown sampling keys ['stepz']"),
        ({"sampling": {"num_inference_steps": 0}}, "sampling.num_inference_steps must be an integer >= 1"),
        ({"sampling": {"num_inference_steps": 2.5}}, "sampling.num_inference_steps must be an integer"),
        ({"sampling": {"sigma_min": -1}}, "sampling.sigma_min must be a finite number > 0"),
        ({"sampling": {"sigma_min": 80, "sigma_max": 20}}, "need sampling.sigma_min < sampling.sigma_max"),
        ({"sampling": {"guider": "magic"}}, "sampling.guider must be one of"),
        ({"sampling": {"sampler": "rk4"}}, "sampling.sampler must be one of euler, heun"),
        ({"sampling": {"max_guidance": -2}}, "sampling.max_guidance must be a finite number >= 0"),
        ({"sampling": [6]}, "sampling must be a dict"),
        ([1, 2], "--config must hold a JSON object"),
        ("not json", "is not a readable JSON file"),
    ],
)
def test_train_rejects_a_bad_config_in_one_line_and_writes_nothing(tmp_path, capsys, config, message):
    """Issue #20: a config with a bad key or value exits 2 with one `error:` line and no output folder."""
    bad = tmp_path / "bad.json"
    bad.write_text(config if isinstance(config, str) else json.dumps(config))
    out = tmp_path / "run"
    assert main(["train", "--config", str(bad), "--output", str(out), "--no-progress"]) == 2
    assert_one_error_line(capsys, message)
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]
