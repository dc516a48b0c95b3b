"""Tests of the training batches: deterministic in (seed, step), progressive, the same when rendered ahead."""

import torch

from sv4d_kit import training


def test_batches_are_deterministic_and_progressive(small):
    config = training.TrainConfig(**small, steps=10)
    a, b = training.make_batch(config, 3), training.make_batch(config, 3)
    assert a.images.shape == (2, 2, 3, 3, 16, 16) and a.polar.shape == a.azimuth.shape == (2, 4)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, training.make_batch(config, 4).images)
    assert a.static.all()  # the first half of the steps: static orbits only
    assert torch.equal(a.images[:, 0], a.images[:, 1])  # a static scene looks the same at every frame
    late = training.make_batch(config, 9, batch_scenes=4)
    assert late.images.shape[0] == 4 and not late.static.all()  # the 4D phase: mostly moving scenes


def test_render_workers_give_the_same_batches(small):
    config = training.TrainConfig(**small, steps=3)
    ahead = list(training.batches(config, 1, 3, workers=2))
    assert len(ahead) == 2
    for batch, step in zip(ahead, (1, 2)):
        inline = training.make_batch(config, step)
        assert all(torch.equal(getattr(batch, k), getattr(inline, k)) for k in ("images", "polar", "azimuth"))


def test_projection_images_cover_every_frame_and_view(small):
    config = training.TrainConfig(**{**small, "projection_scenes": 5})
    images = training.projection_images(config)
    assert images.shape == (5 * 2 * 3, 3, 16, 16)  # scenes x frames x (input + 2 novel views)
    assert torch.equal(images, training.projection_images(config))


def test_batches_come_from_the_configured_world(small, monkeypatch):
    from sv4d_kit import synthetic

    worlds = []
    make_scene = synthetic.make_scene

    def recording(seed, dynamic=True, world=synthetic.DEFAULT_WORLD):
        worlds.append(world)
        return make_scene(seed, dynamic=dynamic, world=world)

    monkeypatch.setattr(synthetic, "make_scene", recording)
    patterned = training.make_batch(training.TrainConfig(**small, steps=10), 3)
    simple = training.make_batch(training.TrainConfig(**small, steps=10, world="simple"), 3)
    assert worlds == ["patterned"] * 2 + ["simple"] * 2  # two scenes a batch
    assert not torch.equal(simple.images, patterned.images)
