"""The models that ship inside the kit: the name "tiny" and the folder it stands for.

`SV4DPipeline.from_pretrained("tiny")` loads `sv4d_kit/assets/tiny_sv4d/` (trained by `sv4d-kit train`, see
BENCHMARKS.md); everything else that takes a model name (the CLI, fine-tuning's `init_from`, the evaluation)
resolves it here, so "tiny" means the same thing everywhere.
"""

from __future__ import annotations

import contextlib
import os
from importlib import resources
from pathlib import Path

TINY = "tiny"  # the bundled tiny SV4D's name
TINY_ASSET = "tiny_sv4d"  # its folder under sv4d_kit/assets/


def is_bundled(name: str | os.PathLike) -> bool:
    """Whether `name` is the name of a bundled model (not a path)."""
    return isinstance(name, str) and name == TINY


def model_folder(name: str | os.PathLike):
    """A context giving the path of model folder `name`, or of the bundled tiny model for "tiny"."""
    if is_bundled(name):
        return resources.as_file(resources.files("sv4d_kit") / "assets" / TINY_ASSET)
    return contextlib.nullcontext(Path(name))
