"""SV4DPipeline with tiny random-weight models: shapes, determinism, chunking, callbacks, options, bad input."""

import pytest
import torch

from sv4d_kit.checks import KitInputError
from sv4d_kit.models.checkpoint import build_tiny_models
from sv4d_kit.pipeline import SV4DPipeline, chunk_starts

SIZE = 64


@pytest.fixture(scope="module", params=["sv4d2", "sv4d2_8views"])
def pipe(request):
    unet, cond, vae = build_tiny_models(request.param, seed=3)
    return SV4DPipeline(
        unet, cond, vae, variant=request.param, frames_per_chunk=3, num_views=2, image_size=SIZE
    )


@pytest.fixture(scope="module")
def frames():
    g = torch.Generator().manual_seed(0)
    return torch.rand(4, 3, SIZE, SIZE, generator=g)


def run(pipe, frames, **kw):
    kw.setdefault("num_inference_steps", 2)
    kw.setdefault("seed", 1)
    return pipe(frames, progress=False, **kw)


def test_output_matrix(pipe, frames):
    out = run(pipe, frames)
    assert out.images.shape == (4, 3, 3, SIZE, SIZE)
    assert out.images.min() >= 0 and out.images.max() <= 1
    torch.testing.assert_close(out.images[:, 0], frames, atol=1e-6, rtol=0)  # view 0 is the input
    assert set(out.timings) == {"encode", "sample", "decode"}
    assert len(out.cameras["azimuths_deg"]) == 3
    # 4 frames in chunks of 3: the second chunk is realigned to end on the last frame (both variants' overlaps)
    assert out.cameras["chunk_starts"] == [0, 1]


def test_same_seed_same_result_and_generator(pipe, frames):
    a = run(pipe, frames, seed=5).images
    b = run(pipe, frames, seed=5).images
    c = run(pipe, frames, generator=torch.Generator().manual_seed(5)).images
    d = run(pipe, frames, seed=6).images
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(a, d)


def test_chunk_sizes_do_not_change_the_result(pipe, frames):
    """Encoding/decoding in chunks changes only float rounding (batched convolutions sum in another order), which
    the sampler carries along: at most 1e-3 on [0, 1] images (a quarter of a uint8 level; the largest seen was
    5.1e-4, on a 2-core AVX2 machine) and 2e-5 on average (seen: 5e-6)."""
    a = run(pipe, frames, encode_chunk_size=None, decode_chunk_size=None).images
    b = run(pipe, frames, encode_chunk_size=1, decode_chunk_size=1).images
    torch.testing.assert_close(a, b, atol=1e-3, rtol=0)
    assert (a - b).abs().mean() < 2e-5


def test_single_image_gives_a_still_clip(pipe, frames):
    out = run(pipe, frames[0])
    assert out.images.shape[0] == pipe.config.frames_per_chunk
    assert torch.equal(out.images[0, 0], out.images[-1, 0])


@pytest.mark.parametrize("n", [1, 2, 5])
def test_any_length(pipe, n):
    out = run(pipe, torch.rand(n, 3, SIZE, SIZE), num_inference_steps=1)
    assert out.images.shape[0] == max(n, 1 if n > 1 else pipe.config.frames_per_chunk)


def test_later_chunks_see_earlier_views(pipe, frames):
    """Chunk 1 is conditioned on the views chunk 0 made at its first frame: changing chunk 0 changes chunk 1."""

    def scramble_first_chunk(p, step, sigma, tensors):
        if tensors["chunk"] == 0 and step == 1:
            return {"latents": tensors["latents"] * 0 + 3.0}
        return None

    a = run(pipe, frames).images
    b = run(pipe, frames, callback_on_step_end=scramble_first_chunk).images
    starts = chunk_starts(4, 3, 0 if pipe.config.variant == "sv4d2" else 1)
    assert len(starts) == 2
    assert not torch.equal(a[: starts[1], 1:], b[: starts[1], 1:])  # chunk 0 changed
    assert not torch.equal(a[3, 1:], b[3, 1:])  # and so did the last frame, made by chunk 1


def test_callback_sees_every_step(pipe, frames):
    seen = []

    def watch(p, step, sigma, tensors):
        seen.append(
            (tensors["chunk"], step, sigma, tuple(tensors["latents"].shape), tuple(tensors["denoised"].shape))
        )

    run(pipe, frames, num_inference_steps=3, callback_on_step_end=watch)
    assert [s[:2] for s in seen] == [(c, i) for c in range(2) for i in range(3)]
    assert seen[0][2] > seen[1][2] > seen[2][2] > 0
    assert seen[0][3] == seen[0][4] == (3 * 2, 4, SIZE // 8, SIZE // 8)


@pytest.mark.parametrize("guider", ["linear", "spatiotemporal", "triangle", "constant", "none"])
def test_guiders_run(pipe, frames, guider):
    out = run(pipe, frames[:3], guider=guider, num_inference_steps=1)
    assert torch.isfinite(out.images).all()


def test_guidance_matters(pipe, frames):
    a = run(pipe, frames[:3], guider="constant", max_guidance=1.0).images
    b = run(pipe, frames[:3], guider="constant", max_guidance=3.0).images
    assert not torch.equal(a, b)


def test_guidance_one_skips_the_unconditional_half(pipe, frames, monkeypatch):
    from sv4d_kit import pipeline as pipeline_module
    from sv4d_kit import sampling

    batches = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: batches.append(args[0].shape[0]))
    try:
        fast = run(pipe, frames[:3], guider="constant", max_guidance=1.0).images
        fast_batches, batches[:] = list(batches), []
        original = sampling.make_denoiser
        full_pair = lambda *a, **kw: original(*a, **{**kw, "skip_unguided": False})  # noqa: E731
        monkeypatch.setattr(pipeline_module.sampling, "make_denoiser", full_pair)
        paired = run(pipe, frames[:3], guider="constant", max_guidance=1.0).images
    finally:
        hook.remove()
    n = 3 * 2  # T*V latents of one chunk
    assert set(fast_batches) == {n} and set(batches) == {2 * n}
    torch.testing.assert_close(fast, paired, rtol=0, atol=1e-3)  # float rounding of other batch sizes


def test_output_types(pipe, frames):
    arr = run(pipe, frames[:3], output_type="np").images
    assert arr.shape == (3, 3, SIZE, SIZE, 3) and arr.dtype.name == "uint8"
    pil = run(pipe, frames[:3], output_type="pil").images
    assert len(pil) == 3 and len(pil[0]) == 3 and pil[0][0].size == (SIZE, SIZE)


def test_save_load_round_trip(pipe, frames, tmp_path):
    pipe.save_pretrained(tmp_path / "model")
    loaded = SV4DPipeline.from_pretrained(tmp_path / "model")
    assert loaded.config.variant == pipe.config.variant and loaded.config.image_size == SIZE
    assert torch.equal(run(pipe, frames[:3]).images, run(loaded, frames[:3]).images)


def test_cpu_offload_gives_the_same_result(pipe, frames):
    a = run(pipe, frames[:3]).images
    pipe.enable_model_cpu_offload(device="cpu")
    try:
        b = run(pipe, frames[:3]).images
    finally:
        pipe._offload_device = None
    assert torch.equal(a, b)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"azimuths_deg": [0, 90]}, "azimuths_deg must hold 3 values"),
        ({"elevations_deg": [0, 1]}, "elevations_deg must be one value or 3"),
        ({"elevations_deg": 95.0}, "elevation"),
        ({"num_inference_steps": 0}, "num_inference_steps"),
        ({"max_guidance": -1.0}, "max_guidance"),
        ({"guider": "magic"}, "guider must be one of"),
        ({"sampler": "dpm"}, "sampler must be one of euler, heun, got 'dpm'"),
        ({"sigma_min": 800.0}, "need sigma_min < sigma_max"),
        ({"s_churn": -1.0}, "s_churn must be"),
        ({"output_type": "gif"}, "output_type"),
    ],
)
def test_bad_arguments(pipe, frames, kwargs, message):
    with pytest.raises(KitInputError, match=message):
        run(pipe, frames[:3], **kwargs)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.rand(2, 3, 64, 48), "square"),
        (torch.rand(2, 3, 40, 40), "divisible"),
        (torch.rand(2, 4, 64, 64), r"\(T, 3, H, W\)"),
        (torch.full((2, 3, 64, 64), 2.0), r"\[0, 1\]"),
        (torch.full((2, 3, 64, 64), float("nan")), "finite"),
    ],
)
def test_bad_frames(pipe, bad, message):
    with pytest.raises(KitInputError, match=message):
        run(pipe, bad)


def test_chunk_plans():
    assert chunk_starts(21, 12, 0) == [0, 9]  # sv4d2: the second chunk realigned to end on frame 20
    assert chunk_starts(21, 5, 1) == [0, 4, 8, 12, 16]  # 8 views: one frame of overlap
    assert chunk_starts(22, 5, 1)[-1] == 17  # the last frames are always covered
    assert chunk_starts(1, 12, 0) == [0] and chunk_starts(3, 1, 1) == [0, 1, 2]
    for n in range(1, 30):
        for T, overlap in ((12, 0), (5, 1), (3, 0), (2, 1)):
            starts = chunk_starts(n, T, overlap)
            covered = {s + i for s in starts for i in range(min(T, n))}
            assert covered == set(range(n)), (n, T, overlap)


def test_cpu_offload_honours_gpu_id_as_diffusers():
    """The accelerator index comes from `device` or `gpu_id` (default 0), never both; torch.device needs no GPU."""
    unet, cond, vae = build_tiny_models("sv4d2", seed=3)
    pipe = SV4DPipeline(unet, cond, vae, variant="sv4d2", frames_per_chunk=3, num_views=2, image_size=SIZE)
    for kwargs, expected in (
        ({}, "cuda:0"),
        ({"gpu_id": 1}, "cuda:1"),
        ({"device": "cuda:2"}, "cuda:2"),
        ({"gpu_id": 3, "device": "cuda"}, "cuda:3"),
        ({"device": "cpu"}, "cpu"),
    ):
        pipe.enable_model_cpu_offload(**kwargs)
        assert pipe.execution_device == torch.device(expected), kwargs
        assert pipe.unet.device.type == "cpu"  # the models wait on the CPU
    for kwargs in ({"gpu_id": 1, "device": "cuda:0"}, {"gpu_id": 0, "device": "cpu"}, {"gpu_id": -1}):
        with pytest.raises(KitInputError, match="gpu_id"):
            pipe.enable_model_cpu_offload(**kwargs)


# ----------------------------------------------------------------------------- samplers


@pytest.fixture(scope="module")
def bundled():
    return SV4DPipeline.from_pretrained("tiny")


def _count_unet_calls(pipe, **kw):
    calls = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        out = pipe(torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0)), progress=False, **kw)
    finally:
        hook.remove()
    return out, len(calls)


def test_heun_runs_on_the_bundled_model(bundled):
    """One image (a still clip of one chunk), 2 steps: Heun calls the network 3 times (the last step, to sigma 0, is
    an Euler step), Euler twice; the folder's sampling has no `sampler`, so Euler is the default."""
    assert "sampler" not in bundled.config.sampling
    euler, euler_calls = _count_unet_calls(bundled, num_inference_steps=2, seed=4)
    heun, heun_calls = _count_unet_calls(bundled, num_inference_steps=2, seed=4, sampler="heun")
    again, _ = _count_unet_calls(bundled, num_inference_steps=2, seed=4, sampler="heun")
    assert (euler_calls, heun_calls) == (2, 3)
    assert euler.sampling["sampler"] == "euler" and heun.sampling["sampler"] == "heun"
    assert heun.sampling["num_inference_steps"] == 2 and heun.sampling["sigma_min"] == 55.0  # the folder's
    assert heun.images.shape == (4, 5, 3, 32, 32) and torch.isfinite(heun.images).all()
    assert torch.equal(heun.images, again.images)  # same seed, same result
    assert not torch.equal(heun.images, euler.images)
    torch.testing.assert_close(heun.images[:, 0], euler.images[:, 0])  # view 0 is the input either way


def test_a_models_sampling_can_name_the_sampler(pipe, frames):
    c = pipe.config
    heun_model = SV4DPipeline(pipe.unet, pipe.conditioner, pipe.vae, variant=c.variant, frames_per_chunk=3,
                              num_views=2, image_size=SIZE, sampling={"sampler": "heun"})  # fmt: skip
    assert (
        heun_model.sampling_options()["sampler"] == "heun" and pipe.sampling_options()["sampler"] == "euler"
    )
    out = run(heun_model, frames[:3])
    assert out.sampling["sampler"] == "heun"
    assert torch.equal(out.images, run(pipe, frames[:3], sampler="heun").images)
    assert torch.equal(run(heun_model, frames[:3], sampler="euler").images, run(pipe, frames[:3]).images)


def test_unknown_sampler_is_one_line(bundled):
    with pytest.raises(KitInputError) as info:
        bundled(torch.rand(3, 32, 32), num_inference_steps=1, sampler="bogus", progress=False)
    assert str(info.value) == "sampler must be one of euler, heun, got 'bogus'"


def test_sigma_data_changes_the_denoiser_and_survives_save_load(pipe, frames, tmp_path):
    """A kit-trained model may carry its data's std per latent channel (`sigma_data`): the pipeline's denoiser
    and first latent use it, 1 everywhere is SV4D 2.0's V-scaling, and it survives save/load."""
    c, C = pipe.config, pipe.unet.config.out_channels

    def model(sigma_data):
        return SV4DPipeline(pipe.unet, pipe.conditioner, pipe.vae, variant=c.variant, frames_per_chunk=3,
                            num_views=2, image_size=SIZE, sigma_data=sigma_data)  # fmt: skip

    ones, spread = model([1.0] * C), model([0.5 + i for i in range(C)])
    base = run(pipe, frames[:3]).images
    torch.testing.assert_close(run(ones, frames[:3]).images, base)
    assert (run(spread, frames[:3]).images - base).abs().max() > 1e-3
    spread.save_pretrained(tmp_path / "model")
    loaded = SV4DPipeline.from_pretrained(tmp_path / "model")
    assert loaded.config.sigma_data == [0.5 + i for i in range(C)]
    assert torch.equal(run(loaded, frames[:3]).images, run(spread, frames[:3]).images)


@pytest.mark.parametrize(
    "sigma_data, message",
    [(0.0, r"^sigma_data must be a finite number > 0"), ([1.0, -1.0], r"^sigma_data\[1\] must be"),
     ([], "^sigma_data must be a number > 0 or a non-empty list"), ("x", "^sigma_data must be a finite"),
     ([1.0, 1.0], "^sigma_data has 2 values, the UNet's latents 4 channels")],
)  # fmt: skip
def test_bad_sigma_data_is_one_line(pipe, sigma_data, message):
    with pytest.raises(KitInputError, match=message):
        SV4DPipeline(
            pipe.unet, pipe.conditioner, pipe.vae, variant=pipe.config.variant, sigma_data=sigma_data
        )
