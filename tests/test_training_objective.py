"""Tests of the training objective: the v-objective loss, the L1/L2 regression losses and the lr schedule."""

import math

import pytest
import torch

from sv4d_kit import training
from sv4d_kit.checks import KitInputError


def test_l2_is_minimised_by_the_mean_and_l1_by_the_median():
    # one pixel channel whose posterior is 70 % white background (1.0) and 30 % a red object's green channel (0.16):
    # the squared error's best constant is the blend (a tinted halo), the absolute error's is the background
    samples = torch.tensor([1.0] * 7 + [0.16] * 3)
    grid = torch.linspace(0, 1, 101)
    best = {kind: float(grid[torch.stack([training.regression_loss(c.expand(10), samples, kind) for c in grid])
                             .argmin()]) for kind in training.LOSSES}  # fmt: skip
    assert best["l2"] == pytest.approx(0.748, abs=0.006) and best["l1"] == 1.0
    with pytest.raises(KitInputError, match="^loss must be one of"):
        training.regression_loss(samples, samples, "huber")


@pytest.mark.parametrize(
    "latent",
    [{}, {"latent_channels": 24, "latent_shift": 0.0, "latent_scale": 1.44}, {"loss": "l1"}],
    ids=["lossless", "projected", "l1"],
)
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(small, latent):
    config = training.TrainConfig(**small, **latent, steps=10)
    pipe = training.build_tiny_sv4d(config)
    assert not pipe.unet.config.use_3d_attention  # view attention across the V views (8-view layout)
    batch = training.make_batch(config, step=7)
    assert batch.images.shape == (2, 2, 3, 3, 16, 16) and batch.polar.shape == (2, 4)
    params = [p for m in (pipe.unet, pipe.conditioner.clip) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=1e-3)
    losses = []
    for _ in range(8):
        loss = training.diffusion_loss(pipe, batch, config, torch.Generator().manual_seed(0))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.8 * losses[0]


def test_the_loss_is_a_function_of_the_generator(small):
    config = training.TrainConfig(**small, steps=2)
    pipe = training.build_tiny_sv4d(config)
    batch = training.make_batch(config, 0)
    a, b, c = (float(training.diffusion_loss(pipe, batch, config, torch.Generator().manual_seed(s)).detach())
               for s in (0, 0, 1))  # fmt: skip
    assert a == b and a != c and math.isfinite(a)


def test_lr_warms_up_linearly_then_decays_to_its_floor():
    config = training.TrainConfig(steps=1100, warmup_steps=100, lr=1e-3, min_lr_ratio=0.1)
    assert training.lr_at(config, 0) == pytest.approx(1e-5)
    assert training.lr_at(config, 49) == pytest.approx(5e-4)
    assert training.lr_at(config, 100) == pytest.approx(1e-3)  # the peak, then the cosine
    assert training.lr_at(config, 600) == pytest.approx(0.55e-3)  # halfway: halfway between peak and floor
    assert training.lr_at(config, 1100) == pytest.approx(1e-4) == training.lr_at(config, 5000)
    schedule = [training.lr_at(config, s) for s in range(100, 1101)]
    assert all(a >= b for a, b in zip(schedule, schedule[1:]))
    assert training.lr_at(training.TrainConfig(warmup_steps=0, lr=2e-4), 0) == pytest.approx(2e-4)
