"""sv4d-kit: learn, run and take apart SV4D 2.0 (multi-view video diffusion for 4D generation)."""

__version__ = "0.1.0"
