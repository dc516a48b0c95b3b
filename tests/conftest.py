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


@pytest.fixture
def small() -> dict:
    """A very small training recipe (TrainConfig fields): 16-pixel images, 2 frames x 2 views, 2 scenes per step
    (a projected latent space is fitted on 4 scenes)."""
    return dict(image_size=16, frames=2, novel_azimuths_deg=(120.0, 240.0), model_channels=32, channel_mult=(1,),
                num_head_channels=32, context_dim=32, clip_width=32, clip_layers=1, batch_scenes=2, supersample=1,
                warmup_steps=0, lr=1e-3, static_fraction=0.5, threads=1, projection_scenes=4)  # fmt: skip


@pytest.fixture(scope="module")
def one_thread():
    """Small tensors: one thread avoids thread hand-off overhead on a busy machine (`pytestmark` of a module)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
