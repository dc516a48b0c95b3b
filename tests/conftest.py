"""Shared pytest fixtures."""

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The golden folder: `../shared/reference` beside the repo if present, else `tests/data/reference`."""
    shared = REPO_ROOT.parent / "shared" / "reference"
    return shared if shared.is_dir() else REPO_ROOT / "tests" / "data" / "reference"
