"""Loading the released checkpoint layout: a tiny file in that layout (assembled from the golden sets' real key
names) loads tensor by tensor and reproduces the golden UNet output; bad files are refused with one clear message."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from sv4d_kit.checks import KitInputError
from sv4d_kit.golden import compare
from sv4d_kit.models import checkpoint


def _json(folder, name):
    return json.loads((folder / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def tiny_release(reference_dir, tmp_path_factory):
    """A tiny `sv4d2.safetensors` in the released layout and its configs."""
    unet_meta = _json(reference_dir, "golden_unet_tiny")
    cond_meta = _json(reference_dir, "golden_conditioner_tiny")
    configs = {
        "unet": unet_meta["network_config"]["params"],
        "conditioner": cond_meta["conditioner_config"],
        "vae": cond_meta["vae_ddconfig"],
        "clip": cond_meta["clip_config"],
    }
    state = {}
    for name, prefix in (
        ("golden_unet_tiny", "model.diffusion_model."),
        ("golden_conditioner_tiny", "conditioner.embedders."),
        ("golden_vae_decoder_tiny", "first_stage_model."),
    ):
        tensors = load_file(str(reference_dir / f"{name}.safetensors"))
        state.update({k: v for k, v in tensors.items() if k.startswith(prefix)})
    path = tmp_path_factory.mktemp("ckpt") / "sv4d2.safetensors"
    save_file(state, str(path))
    return path, configs, state


def test_tiny_release_loads_and_reproduces_golden_unet(tiny_release, reference_dir):
    path, configs, _ = tiny_release
    unet, cond, vae = checkpoint.load_checkpoint(path, configs=configs)
    assert not any(p.is_meta for m in (unet, cond, vae) for p in m.parameters())
    golden = load_file(str(reference_dir / "golden_unet_tiny.safetensors"))
    inputs = {k.removeprefix("chunk1.in."): v for k, v in golden.items() if k.startswith("chunk1.in.")}
    with torch.no_grad():
        out = unet(
            inputs["x"],
            inputs["timesteps"],
            inputs["context"],
            inputs["y"],
            inputs["cond_view"],
            inputs["cond_motion"],
            inputs["image_only_indicator"],
            int(inputs["num_video_frames"]),
        )
    result = compare("chunk1.out", out, golden["chunk1.out"], "unet")
    assert result.passed, result.line()
    # the first stage's encoder shares the cond_frames embedder's tensors (no extra memory)
    assert vae.encoder.conv_in.weight.data_ptr() == cond.cond_frames_encoder.encoder.conv_in.weight.data_ptr()


def test_dtype_and_ignored_tensors(tiny_release):
    path, configs, _ = tiny_release
    unet, cond, vae = checkpoint.load_checkpoint(path, configs=configs, dtype=torch.bfloat16)
    assert {p.dtype for m in (unet, cond, vae) for p in m.parameters()} == {torch.bfloat16}


def test_missing_and_unexpected_keys_are_named(tiny_release, tmp_path):
    path, configs, state = tiny_release
    broken = {k: v for k, v in state.items() if "input_blocks.1.1" not in k}
    broken["model.diffusion_model.extra.weight"] = torch.zeros(2)
    bad = tmp_path / "sv4d2.safetensors"
    save_file(broken, str(bad))
    with pytest.raises(
        KitInputError, match=r"missing .*input_blocks\.1\.1.*unexpected .*extra\.weight"
    ) as err:
        checkpoint.load_checkpoint(bad, configs=configs)
    assert "\n" not in str(err.value)


def test_misshaped_key_is_named(tiny_release, tmp_path):
    path, configs, state = tiny_release
    broken = dict(state)
    broken["model.diffusion_model.time_embed.0.weight"] = torch.zeros(3, 3)
    bad = tmp_path / "sv4d2.safetensors"
    save_file(broken, str(bad))
    with pytest.raises(KitInputError, match=r"1 misshaped .*time_embed\.0\.weight"):
        checkpoint.load_checkpoint(bad, configs=configs)


def test_other_model_is_refused(tmp_path):
    bad = tmp_path / "sv4d2.safetensors"
    save_file({"encoder.layer.0.weight": torch.zeros(4, 4)}, str(bad))
    with pytest.raises(KitInputError, match="does not match the SV4D 2.0 layout"):
        checkpoint.load_checkpoint(bad)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("model.ckpt", b"PK\x03\x04 pickle", "pickle checkpoint"),
        ("sv4d2.safetensors", b"", "not a safetensors file"),
        ("sv4d2.safetensors", b"\xff" * 8 + b"{}", "not a valid safetensors file"),
        ("sv4d2.safetensors", b"hello, this is text, not a checkpoint", "not a valid safetensors file"),
    ],
)
def test_not_safetensors_is_refused(tmp_path, name, content, message):
    bad = tmp_path / name
    bad.write_bytes(content)
    with pytest.raises(KitInputError, match=message):
        checkpoint.load_checkpoint(bad)


def test_truncated_file_is_refused(tiny_release, tmp_path):
    path, configs, _ = tiny_release
    data = path.read_bytes()
    bad = tmp_path / "sv4d2.safetensors"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(KitInputError, match="safetensors"):
        checkpoint.load_checkpoint(bad, configs=configs)


def test_variant_must_match_the_file(tiny_release):
    path, configs, _ = tiny_release
    with pytest.raises(KitInputError, match="does not match the file"):
        checkpoint.load_checkpoint(path, variant="sv4d2_8views")


def test_hub_id_offline_says_what_to_download(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(
        KitInputError, match=r"huggingface-cli download stabilityai/sv4d2\.0 sv4d2_8views\.safetensors"
    ):
        checkpoint.load_checkpoint("stabilityai/sv4d2.0", variant="sv4d2_8views", download=True)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(KitInputError, match="only when asked"):
        checkpoint.load_checkpoint("stabilityai/sv4d2.0")


def test_missing_file():
    with pytest.raises(KitInputError, match="does not exist"):
        checkpoint.load_checkpoint("/no/such/sv4d2.safetensors")
