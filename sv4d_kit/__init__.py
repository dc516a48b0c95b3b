"""sv4d-kit: learn, run and take apart SV4D 2.0 (multi-view video diffusion for 4D generation)."""

from importlib import import_module

__version__ = "0.1.0"

# Public classes, imported on first use so that `import sv4d_kit` stays light (and diffusers can find them by name).
_LAZY = {
    "SV4DPipeline": "sv4d_kit.pipeline",
    "SV4DPipelineOutput": "sv4d_kit.pipeline",
    "generate": "sv4d_kit.generation",
    "GenerateResult": "sv4d_kit.generation",
    "KitInputError": "sv4d_kit.checks",
    "SV4DUNet": "sv4d_kit.models.unet",
    "SV4DConditioner": "sv4d_kit.models.conditioner",
    "CLIPImageEncoder": "sv4d_kit.models.clip",
}
__all__ = ["__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sv4d_kit' has no attribute {name!r}")
