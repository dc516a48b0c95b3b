"""The golden runner as other tools call it: `python -m sv4d_kit.golden DIR`."""

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from sv4d_kit.golden import discover
from sv4d_kit.golden.__main__ import main

ALT = Path(__file__).parent / "data" / "golden_alt"


def test_runner_passes_a_set_it_was_not_written_against(capsys):
    """A second set recorded from the reference: 8-view layout, T=3, V=4, other widths, 4 steps, another guider."""
    assert main([str(ALT)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].endswith("0 failed")
    body = lines[:-1]
    assert len(body) > 50 and all(line.startswith("PASS ") for line in body)
    assert any("final_latent" in line for line in body)


def test_layout_checks_pass(reference_dir, capsys):
    assert main([str(reference_dir), "-k", "checkpoint_layout"]) == 0
    out = capsys.readouterr().out
    assert out.count("PASS") == 14 and "2,995,213,171" in out


def test_discover_finds_every_kind(reference_dir):
    kinds = {s.kind for s in discover(reference_dir)}
    assert kinds == {"unet", "conditioner", "vae_decoder", "sampling", "preprocess", "layout"}


def test_a_wrong_number_fails(tmp_path, capsys):
    for f in ALT.glob("golden_*"):  # the sampling set needs the UNet set it names
        shutil.copy(f, tmp_path / f.name)
    path = tmp_path / "golden_sampling_tiny8v_alt.safetensors"
    tensors = load_file(str(path))
    tensors["chunk1.step2.x_out"] = tensors["chunk1.step2.x_out"] + 0.01
    save_file(tensors, str(path))
    assert main([str(tmp_path), "-k", "sampling"]) == 1
    out = capsys.readouterr().out
    fails = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert fails and all("chunk1.step2" in line for line in fails)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_bad_folder_is_usage_error(tmp_path, capsys, make):
    folder = tmp_path / "nothing" if make == "missing" else tmp_path
    assert main([str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:")


def test_compare_flags_nan_and_shape():
    from sv4d_kit.golden import compare

    assert not compare("x", torch.tensor([float("nan")]), torch.tensor([0.0]), "unet").passed
    assert not compare("x", torch.zeros(2), torch.zeros(3), "unet").passed
    assert compare("x", torch.tensor([1.0 + 5e-5]), torch.tensor([1.0]), "unet").passed
