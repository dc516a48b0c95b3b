"""Regenerate the sample inputs in data/ from the synthetic renderer (see data/README.md)."""

import sys
from pathlib import Path

from sv4d_kit.synthetic import write_sample_data

if __name__ == "__main__":
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "data"
    for path in write_sample_data(folder):
        print(f"wrote {path} ({path.stat().st_size / 1024:.0f} kB)")
