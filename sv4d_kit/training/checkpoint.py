"""Resumable training checkpoints, and fine-tuning's start from (and record of) an exported model folder.

A checkpoint is a folder `RUN_DIR/checkpoint/`: the trainable modules' weights (`weights.safetensors`, keys
"<module>.<name>"), the AdamW state (`optimizer.pt`, read back with `weights_only`) and `state.json` (step, losses,
wall time, config), written to `checkpoint.tmp` first and then renamed into place.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from sv4d_kit.checks import KitInputError
from sv4d_kit.models.bundled import model_folder
from sv4d_kit.training.carry import carry_into_projection
from sv4d_kit.training.config import TrainConfig


def trainable_modules(pipe) -> dict[str, torch.nn.Module]:
    """The modules training updates, by checkpoint key prefix: the UNet and the image tower."""
    return {"unet": pipe.unet, "clip": pipe.conditioner.clip}


def save_checkpoint(pipe, optimizer, step: int, losses: list[float], wall_s: float, config: TrainConfig,
                    folder: Path):  # fmt: skip
    """Write `folder/checkpoint` (replacing the previous one only once the new one is complete)."""
    tmp = folder / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    # the vae too: the buffers of a fitted (or carried) projection
    modules = {**trainable_modules(pipe), "vae": pipe.vae}
    weights = {f"{k}.{n}": t.detach().cpu().contiguous() for k, m in modules.items()
               for n, t in m.state_dict().items()}  # fmt: skip
    save_file(weights, tmp / "weights.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    state = {"step": step, "losses": losses, "wall_s": wall_s, "config": config.to_dict(),
             "sigma_data": pipe.config.sigma_data}  # fmt: skip
    (tmp / "state.json").write_text(json.dumps(state))
    final, old = folder / "checkpoint", folder / "checkpoint.old"
    latest = latest_checkpoint(folder)
    if latest == old:  # a save was interrupted between its renames: the old one is the latest complete one
        old.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(folder: Path) -> Path | None:
    """The run's latest complete checkpoint: `checkpoint`, or `checkpoint.old` when a save was interrupted between
    moving the previous one aside and moving the new one in; None when the run has none."""
    for name in ("checkpoint", "checkpoint.old"):
        if (Path(folder) / name / "state.json").is_file():
            return Path(folder) / name
    return None


def load_weights(pipe, folder: Path) -> None:
    """Load a checkpoint folder's model into `pipe`: `weights.safetensors` (keys "<module>.<name>") into the
    trainable modules and, when the checkpoint holds them, into the latent space (a projection fitted about another
    centre, e.g. carried) and the measured `sigma_data` (state.json)."""
    weights = load_file(Path(folder) / "weights.safetensors")
    modules = trainable_modules(pipe)
    if any(n.startswith("vae.") for n in weights):
        modules["vae"] = pipe.vae
    for k, m in modules.items():
        m.load_state_dict(
            {n[len(k) + 1 :]: t for n, t in weights.items() if n.startswith(k + ".")}, strict=True
        )
    pipe.conditioner.share_projection(pipe.vae)
    sigma_data = json.loads((Path(folder) / "state.json").read_text()).get("sigma_data")
    if sigma_data is not None:
        pipe.register_to_config(sigma_data=sigma_data)


def load_checkpoint(pipe, optimizer, folder: Path) -> tuple[int, list[float], float]:
    """Load a checkpoint folder into `pipe` and `optimizer`; returns (step, losses, wall seconds so far)."""
    load_weights(pipe, folder)
    # map_location: a checkpoint written on CUDA resumes anywhere (load_state_dict moves the state to the params)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    state = json.loads((folder / "state.json").read_text())
    return int(state["step"]), list(state["losses"]), float(state.get("wall_s", 0.0))


def init_from_model(pipe, folder: str, projection_images=None) -> None:
    """Copy the trainable weights (UNet, image tower) of an exported pipeline folder ("tiny" = the bundled one)
    into `pipe`, and its latent space (a projected latent's fitted basis); the folder must hold the same
    architecture, or this raises `KitInputError` naming the mismatch. The one change of latent space allowed is
    from the lossless latent into a projected one (`carry.carry_into_projection`), fitted on the images
    `projection_images()` returns."""
    from sv4d_kit.pipeline import SV4DPipeline

    with model_folder(folder) as path:
        if not (path / "model_index.json").is_file():
            raise KitInputError(f"init_from {folder!r} is not an exported model folder (no model_index.json)")
        source = SV4DPipeline.from_pretrained(path, torch_dtype=torch.float32)
    mine, theirs = ({k: v for k, v in m.vae.config.items() if not k.startswith("_")} for m in (pipe, source))
    if mine != theirs and theirs["latent_channels"] is None and mine["latent_channels"] is not None:
        if projection_images is None:
            raise KitInputError(f"init_from {folder!r}: carrying its lossless latent needs projection images")
        carry_into_projection(pipe, source, projection_images())
        return
    if mine != theirs:
        raise KitInputError(
            f"init_from {folder!r}: its latent space {theirs} does not match this config's {mine}"
        )
    pairs = dict(
        vae=(pipe.vae, source.vae),
        **{k: (m, trainable_modules(source)[k]) for k, m in trainable_modules(pipe).items()},
    )
    for name, (module, other) in pairs.items():
        try:
            module.load_state_dict(other.state_dict(), strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise KitInputError(
                f"init_from {folder!r}: its {name} does not match this config ({first})"
            ) from None
    pipe.conditioner.share_projection(pipe.vae)


def training_record(folder: str) -> dict | None:
    """The `training.json` of an exported model folder ("tiny" = the bundled one), or None."""
    with model_folder(folder) as path:
        record = path / "training.json"
        return json.loads(record.read_text()) if record.is_file() else None
