"""Output writing: grid layout, orbit schedule, atomic folders, overwrite rules, determinism."""

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from sv4d_kit import media
from sv4d_kit.checks import KitInputError


def _matrix(T=3, V=4, H=16, W=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(T, V, 3, H, W, generator=g)


def test_grid_puts_time_across_and_views_down():
    x = torch.zeros(3, 2, 3, 8, 8)
    x[2, 1] = 1.0  # last frame of the second view is white
    grid = media.grid_image(x)
    assert grid.shape == (2 * 8, 3 * 8, 3)
    assert (grid[8:, 16:] == 255).all() and (grid[:8] == 0).all() and (grid[8:, :16] == 0).all()


def test_orbit_schedule_visits_views_in_azimuth_order_and_advances_time():
    plan = media.orbit_schedule([0, 240, 120], num_frames=5, length=30, blend=0.0)
    views = [a for _, a, _, _ in plan]
    assert views[0] == 0 and views[10] == 2 and views[20] == 1  # 0°, 120°, 240°
    assert [t for t, *_ in plan[:7]] == [0, 1, 2, 3, 4, 0, 1]


def test_orbit_blend_weights_are_in_range_and_end_at_next_view():
    plan = media.orbit_schedule([0, 90, 180, 270], num_frames=4, length=40, blend=0.5)
    weights = [w for *_, w in plan]
    assert min(weights) == 0 and 0.75 < max(weights) <= 1
    frames = media.orbit_frames(_matrix(T=4, V=4), [0, 90, 180, 270], length=40)
    assert frames.shape == (40, 3, 16, 16) and frames.min() >= 0 and frames.max() <= 1


def test_write_outputs_writes_every_file(tmp_path):
    x = _matrix()
    out = media.write_outputs(tmp_path / "out", x, {"seed": 3}, azimuths_deg=[0, 90, 180, 270])
    names = sorted(p.name for p in out.iterdir())
    assert "grid.png" in names and "orbit.mp4" in names and "metadata.json" in names
    assert {f"view_{v:02d}.mp4" for v in range(4)} <= set(names)
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["seed"] == 3 and set(meta["outputs"]["files"]) == set(names)
    video = iio.imread(out / "view_01.mp4")
    assert video.shape[0] == 3  # one frame per time step
    grid = iio.imread(out / "grid.png")
    assert grid.shape[0] % 4 == 0 and grid.shape[1] % 3 == 0
    # no temporary folders left beside the output
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_existing_output_is_kept_unless_overwrite(tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("mine")
    with pytest.raises(KitInputError, match="--overwrite"):
        media.write_outputs(folder, _matrix(), {})
    assert (folder / "keep.txt").read_text() == "mine"
    media.write_outputs(folder, _matrix(), {}, overwrite=True)
    assert not (folder / "keep.txt").exists() and (folder / "grid.png").exists()


def test_output_path_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("x")
    with pytest.raises(KitInputError, match="is a file"):
        media.write_outputs(path, _matrix(), {})


def test_failure_leaves_nothing_behind(tmp_path):
    with pytest.raises(TypeError):
        media.write_outputs(tmp_path / "out", _matrix(), {"bad": object()})
    assert list(tmp_path.iterdir()) == []


def test_bad_matrix_shape(tmp_path):
    with pytest.raises(KitInputError, match=r"\(T, V, 3, H, W\)"):
        media.write_outputs(tmp_path / "out", torch.rand(3, 3, 16, 16), {})


def test_same_input_gives_byte_identical_files(tmp_path):
    x = _matrix(seed=5)
    a = media.write_outputs(tmp_path / "a", x, {"k": 1})
    b = media.write_outputs(tmp_path / "b", x, {"k": 1})
    for f in a.iterdir():
        assert f.read_bytes() == (b / f.name).read_bytes(), f.name


def test_to_uint8_rounds_and_clamps():
    x = torch.tensor([-0.5, 0.0, 0.5, 1.0, 2.0]).reshape(1, 1, 5).expand(3, 1, 5)
    u = media.to_uint8(x)
    assert u.dtype == np.uint8 and u[0, :, 0].tolist() == [0, 0, 128, 255, 255]


def test_extra_files_join_the_atomic_folder(tmp_path):
    """`extra` writes into the temporary folder: its files are listed in metadata.json and move in with the rest;
    when it fails, nothing is left behind."""

    def extra(folder):
        (folder / "points").mkdir()
        (folder / "points" / "frame_000.ply").write_text("ply")

    out = media.write_outputs(tmp_path / "a", torch.rand(2, 3, 3, 8, 8), {"x": 1}, extra=extra)
    assert (out / "points" / "frame_000.ply").read_text() == "ply"
    assert "points/frame_000.ply" in json.loads((out / "metadata.json").read_text())["outputs"]["files"]

    def broken(folder):
        raise RuntimeError("a bug in the extra writer")

    with pytest.raises(RuntimeError):
        media.write_outputs(tmp_path / "b", torch.rand(2, 3, 3, 8, 8), {"x": 1}, extra=broken)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
