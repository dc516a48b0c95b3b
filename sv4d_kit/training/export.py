"""Exported model folders: a trained pipeline written as an `SV4DPipeline.save_pretrained` folder.

The folder is what `SV4DPipeline.from_pretrained` loads (the bundled one is `sv4d_kit/assets/tiny_sv4d/`), with
the run's record in `training.json`; the sampler settings tuned after training are written into it afterwards.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path

from sv4d_kit.checks import KitInputError
from sv4d_kit.training.checkpoint import load_weights
from sv4d_kit.training.config import TrainConfig
from sv4d_kit.training.model import build_tiny_sv4d


def export(pipe, folder: str | os.PathLike, fp16: bool = True) -> Path:
    """Write the pipeline folder (`save_pretrained`, safetensors), by default in float16 (about 14 MB); `pipe`
    itself is left as it was (a float16 copy is written)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    if fp16:  # nn.Module.half on each model: the same cast as .to(float16), without diffusers' cast warning
        pipe = copy.deepcopy(pipe)
        for module in (pipe.unet, pipe.conditioner, pipe.vae):
            module.half()
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def set_sampling_defaults(folder: str | os.PathLike, sampling: dict) -> dict:
    """Replace the sampling defaults (`SV4DPipeline.config.sampling`) of an exported model folder; returns them.

    The weights are untouched: this is how sampler settings tuned after training reach the bundled model. The
    folder's `training.json` (the run's record, whose config holds the sampling of its time) notes them too, as
    `sampling_defaults_set_after_training`."""
    from sv4d_kit.pipeline import SAMPLING_KEYS

    unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
    if unknown:
        raise KitInputError(f"sampling keys must be among {SAMPLING_KEYS}, got {unknown}")
    path = Path(folder) / "model_index.json"
    index = json.loads(path.read_text())
    index["sampling"] = dict(sampling)
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    record = Path(folder) / "training.json"
    if record.is_file():
        info = json.loads(record.read_text())
        info["sampling_defaults_set_after_training"] = dict(sampling)
        record.write_text(json.dumps(info, indent=2) + "\n")
    return index["sampling"]


def export_checkpoint(output_dir: str | os.PathLike, export_dir: str | os.PathLike | None = None) -> Path:
    """Export the latest checkpoint of a run folder as a pipeline folder (default `output_dir/model`)."""
    out = Path(output_dir)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    config = TrainConfig.from_dict(state["config"])
    pipe = build_tiny_sv4d(config)
    load_weights(pipe, out / "checkpoint")
    pipe.unet.eval()
    pipe.conditioner.eval()
    return export(pipe, export_dir or out / "model")
