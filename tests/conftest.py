"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest
import torch

# The tests run many tiny tensor operations, for which one thread is fastest and immune to oversubscription when
# the machine is busy (two threads made the suite ~10x slower next to another torch process on 2 cores).
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")  # the same for subprocesses (the CLI, notebook kernels)

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """The golden folder: `../shared/reference` beside the repo if present, else `tests/data/reference`."""
    shared = REPO_ROOT.parent / "shared" / "reference"
    return shared if shared.is_dir() else REPO_ROOT / "tests" / "data" / "reference"
