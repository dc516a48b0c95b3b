"""Check the kit against golden vectors recorded from the reference SV4D 2.0 implementation.

A golden folder (the format of `shared/reference/`) holds pairs `golden_<kind>*.json` + `.safetensors` and
optionally `<variant>_checkpoint_layout.json`. Every set is checked by the module for its kind (`unet`,
`conditioner`, `vae_decoder`, `sampling`, `preprocess`, `layout`), which builds tiny models from the configuration
recorded in the set itself and yields one `CaseResult` per recorded tensor it reproduces.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from sv4d_kit.checks import KitInputError

# Tolerances of the reference README ("How to compare"), float32 on CPU: name -> (rtol, atol).
TOLERANCES = {
    "exact_math": (1e-6, 1e-6),  # sigmas, scalings, guider scales, timestep embeddings
    "unet": (1e-4, 2e-4),  # UNet output, block outputs, sub.*, emb.*
    "conditioner": (1e-4, 1e-4),  # conditioner outputs, CLIP preprocessing/embedding, VAE encoder/decoder
    "sampler_step": (1e-4, 5e-4),  # one sampler step from the stored x_in, c and uc
    "sampler_chain": (1e-4, 1e-3),  # free-running chain from the stored noise
    "exact": (0.0, 0.0),  # preprocess (uint8 values)
}


@dataclass
class CaseResult:
    """The outcome of one golden comparison."""

    name: str
    passed: bool
    max_abs_err: float
    detail: str = ""

    def line(self) -> str:
        status = "PASS" if self.passed else "FAIL"
        return f"{status} {self.name} {self.max_abs_err:.3g}" + (f" {self.detail}" if self.detail else "")


def compare(name: str, actual: torch.Tensor, expected: torch.Tensor, tolerance: str) -> CaseResult:
    """Compare two tensors with one of the named `TOLERANCES` (`|a - e| <= atol + rtol |e|` everywhere)."""
    rtol, atol = TOLERANCES[tolerance]
    actual = torch.as_tensor(actual).detach().float().cpu()
    expected = torch.as_tensor(expected).float()
    if actual.shape != expected.shape:
        return CaseResult(
            name, False, float("inf"), f"shape {tuple(actual.shape)} != {tuple(expected.shape)}"
        )
    err = (actual - expected).abs()
    ok = bool((err <= atol + rtol * expected.abs()).all()) and bool(torch.isfinite(actual).all())
    return CaseResult(name, ok, float(err.max()) if err.numel() else 0.0, f"(rtol={rtol:g}, atol={atol:g})")


@dataclass
class GoldenSet:
    """One golden file pair: its json description and (lazily loaded) tensors."""

    kind: str
    json_path: Path
    meta: dict

    @property
    def name(self) -> str:
        return self.json_path.stem

    @property
    def tensor_path(self) -> Path:
        return self.json_path.with_suffix(".safetensors")

    def tensors(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.tensor_path))


KINDS = ("unet", "conditioner", "vae_decoder", "sampling", "preprocess")


def discover(folder: str | Path) -> list[GoldenSet]:
    """Every golden set and checkpoint layout in `folder`, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise KitInputError(f"golden folder {str(folder)!r} does not exist or is not a folder")
    sets = []
    for path in sorted(folder.glob("*.json")):
        stem = path.stem
        if stem.endswith("_checkpoint_layout"):
            kind = "layout"
        elif stem.startswith("golden_"):
            kind = next((k for k in KINDS if stem[len("golden_") :].startswith(k)), None)
            if kind is None or not path.with_suffix(".safetensors").exists():
                continue
        else:
            continue
        sets.append(GoldenSet(kind, path, json.loads(path.read_text())))
    return sets


def run_set(gset: GoldenSet, folder: Path) -> Iterator[CaseResult]:
    """Dispatch a golden set to the checker of its kind."""
    from importlib import import_module

    checker = import_module(f"sv4d_kit.golden.{gset.kind}")
    yield from checker.check(gset, folder)
