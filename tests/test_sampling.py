"""Behaviour of the EDM sampler pieces (`sv4d_kit.sampling`) and their golden checks."""

import importlib.util
import math

import pytest
import torch

import sv4d_kit.golden.sampling as golden_sampling
from sv4d_kit.checks import KitInputError
from sv4d_kit.golden import discover
from sv4d_kit.sampling import (
    SAMPLER_FUNCTIONS,
    SAMPLERS,
    SETTING_CHECKS,
    build_uncond_batch,
    cfg_scale,
    check_settings,
    denoise,
    edm_sigmas,
    guide,
    identity_scale,
    initial_latent,
    linear_scale,
    make_denoiser,
    preconditioning,
    sample_euler_edm,
    sample_heun_edm,
    spatiotemporal_scale,
    triangle_scale,
    vscaling_edm_cnoise,
    vscaling_edm_sigma_data,
)


@pytest.fixture(scope="module")
def sampling_sets(reference_dir):
    sets = [s for s in discover(reference_dir) if s.kind == "sampling"]
    assert sets, f"no golden_sampling* set in {reference_dir}"
    return sets


def _conds(g, run):
    cond = {k[len(run) + 3 :]: v for k, v in g.items() if k.startswith(f"{run}.c.")}
    uncond = {k[len(run) + 4 :]: v for k, v in g.items() if k.startswith(f"{run}.uc.")}
    return cond, uncond


class ReplayUNet:
    """A stand-in UNet that returns the stored output of the step whose noise level it is called at."""

    def __init__(self, g, run):
        steps = sorted(k for k in g if k.startswith(f"{run}.step") and k.endswith(".unet_out"))
        self.table = [(0.25 * g[k.replace("unet_out", "sigma")][0].log(), g[k]) for k in steps]
        self.calls = []

    def __call__(
        self, x, timesteps, context, y, cond_view, cond_motion, image_only_indicator, num_video_frames
    ):
        inputs = dict(
            x=x, timesteps=timesteps, context=context, y=y, cond_view=cond_view, cond_motion=cond_motion
        )
        self.calls.append(
            dict(inputs, image_only_indicator=image_only_indicator, num_video_frames=num_video_frames)
        )
        return min(self.table, key=lambda entry: abs(float(entry[0] - timesteps[0])))[1]


# ----------------------------------------------------------------------------- golden


def test_golden_network_free_cases_pass(sampling_sets):
    for gset in sampling_sets:
        results = list(golden_sampling.check_network_free(gset))
        failed = [r.line() for r in results if not r.passed]
        assert not failed, failed
        names = {r.name for r in results}
        assert {"sigmas.edm_5", "chunk1.step4.x_out", "chunk0.step0.denoised_uncond_cond"} <= names


def test_golden_checker_catches_a_wrong_step(sampling_sets):
    gset = sampling_sets[0]
    g = gset.tensors()
    g["chunk1.step2.x_out"] = g["chunk1.step2.x_out"] + 1e-2
    g["guider.linear_48f_min1.0_max2.0"] = g["guider.linear_48f_min1.0_max2.0"].flip(-1)
    failed = {r.name for r in golden_sampling.check_network_free(gset, g) if not r.passed}
    assert failed == {"chunk1.step2.x_out", "guider.linear_48f_min1.0_max2.0"}


def test_make_denoiser_feeds_the_recorded_unet_inputs(reference_dir, sampling_sets):
    from safetensors.torch import load_file

    unet_golden = load_file(str(reference_dir / "golden_unet_tiny.safetensors"))
    g, meta = sampling_sets[0].tensors(), sampling_sets[0].meta
    for run in ("chunk0", "chunk1"):
        setup = golden_sampling.load_run(g, meta, run)
        fake = ReplayUNet(g, run)
        denoised = make_denoiser(fake, setup.scale, setup.indicator)(
            g[f"{run}.step0.x_in"], g[f"{run}.step0.sigma"], setup.cond, setup.uncond
        )
        (seen,) = fake.calls
        for key in ("x", "timesteps", "context", "y", "cond_view", "cond_motion", "image_only_indicator"):
            torch.testing.assert_close(
                seen[key], unet_golden[f"{run}.in.{key}"], rtol=1e-6, atol=1e-6, msg=key
            )
        assert seen["num_video_frames"] == int(unet_golden[f"{run}.in.num_video_frames"])
        torch.testing.assert_close(denoised, g[f"{run}.step0.denoised_guided"], rtol=1e-4, atol=5e-4)


def test_free_chain_with_replayed_unet_reaches_final_latent(sampling_sets):
    gset = sampling_sets[0]
    g = gset.tensors()
    for run in golden_sampling.run_names(g):
        setup = golden_sampling.load_run(g, gset.meta, run)
        (result,) = golden_sampling._check_run_chain(g, setup, ReplayUNet(g, run))
        assert result.passed, result.line()
    # The guidance scales reversed (2 -> 1 instead of 1 -> 2) must not reach it.
    setup = golden_sampling.load_run(g, gset.meta, "chunk1")
    setup.scale = setup.scale.flip(-1)
    (result,) = golden_sampling._check_run_chain(g, setup, ReplayUNet(g, "chunk1"))
    assert not result.passed


@pytest.mark.skipif(
    importlib.util.find_spec("sv4d_kit.models.unet") is None, reason="sv4d_kit.models.unet is not written yet"
)
def test_golden_network_cases_pass(reference_dir, sampling_sets):
    for gset in sampling_sets:
        results = list(golden_sampling.check_network(gset, reference_dir))
        failed = [r.line() for r in results if not r.passed]
        assert not failed, failed
        assert any(r.name.endswith("final_latent") for r in results)


# ----------------------------------------------------------------------------- schedule and scalings


@pytest.mark.parametrize("n", [1, 2, 5, 50])
def test_edm_sigmas_shape_endpoints_and_order(n):
    sigmas = edm_sigmas(n, 0.002, 700.0, 7.0)
    assert sigmas.dtype == torch.float32 and sigmas.shape == (n + 1,)
    assert sigmas[-1] == 0
    assert math.isclose(sigmas[0], 700.0, rel_tol=1e-6)
    if n > 1:
        assert math.isclose(sigmas[n - 1], 0.002, rel_tol=1e-5)
    assert (sigmas[1:] < sigmas[:-1]).all()


@pytest.mark.parametrize(
    "kwargs", [dict(n=0), dict(n=5, sigma_min=0.0), dict(n=5, sigma_min=800.0), dict(n=5, rho=0)]
)
def test_edm_sigmas_rejects_bad_arguments(kwargs):
    with pytest.raises(KitInputError):
        edm_sigmas(**kwargs)


def test_vscaling_identities():
    sigma = torch.logspace(-3, 3, 25, dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = vscaling_edm_cnoise(sigma)
    one = torch.ones_like(sigma)
    torch.testing.assert_close(c_skip + c_out**2, one)  # unit-variance target mix for sigma_data = 1
    torch.testing.assert_close(c_in * (sigma**2 + 1).sqrt(), one)
    torch.testing.assert_close(c_skip, c_in**2)
    torch.testing.assert_close(c_noise, sigma.log() / 4)
    assert (c_out < 0).all()


def test_denoise_preconditions_input_and_output():
    x = torch.randn(4, 3, 2, 2)
    sigma = torch.tensor([0.5, 1.0, 10.0, 700.0])
    seen = {}

    def model_fn(x_in, c_noise, cond):
        seen.update(x_in=x_in, c_noise=c_noise, cond=cond)
        return torch.ones_like(x_in)

    out = denoise(model_fn, x, sigma, "cond")
    c_skip, c_out, c_in, c_noise = (c.view(4, 1, 1, 1) for c in vscaling_edm_cnoise(sigma))
    torch.testing.assert_close(seen["x_in"], x * c_in)
    torch.testing.assert_close(seen["c_noise"], c_noise.view(4))
    assert seen["cond"] == "cond"
    torch.testing.assert_close(out, x * c_skip + c_out)
    # A scalar sigma applies to every frame.
    torch.testing.assert_close(
        denoise(model_fn, x, torch.tensor(10.0), None), denoise(model_fn, x, sigma[2:3].expand(4), None)
    )


def test_initial_latent_has_the_v_scaled_variance():
    noise = torch.randn(1000, 4)
    sigmas = edm_sigmas(5)
    torch.testing.assert_close(
        initial_latent(noise, sigmas), noise * math.sqrt(1 + 700.0**2), rtol=1e-5, atol=0
    )


def test_sigma_data_one_is_sv4d_s_v_scaling():
    sigma = torch.logspace(-3, 3, 25).view(-1, 1, 1, 1)
    for ours, reference in zip(preconditioning(sigma, 1.0), vscaling_edm_cnoise(sigma)):
        torch.testing.assert_close(ours, reference)
    assert all(torch.equal(a, b) for a, b in zip(preconditioning(sigma), vscaling_edm_cnoise(sigma)))


def test_per_channel_sigma_data_makes_the_skip_each_channel_s_wiener_filter():
    """Gaussian data with std sd[c] per channel: the network target (x0 - c_skip x) / c_out has unit variance in
    every channel (EDM's c_in/c_out design), and with a network that outputs 0 the denoiser is the MMSE estimate
    sd²/(sd² + σ²) x, so a channel the data hardly uses keeps hardly any of its noise."""
    gen = torch.Generator().manual_seed(0)
    sd = torch.tensor([4.0, 1.0, 0.1])
    x0 = torch.randn(20000, 3, 1, 1, generator=gen) * sd.view(1, 3, 1, 1)
    for level in (0.3, 1.0, 10.0):
        sigma = torch.full((20000, 1, 1, 1), level)
        x = x0 + sigma * torch.randn(x0.shape, generator=gen)
        c_skip, c_out, c_in, c_noise = vscaling_edm_sigma_data(sigma, sd)
        assert c_skip.shape == (20000, 3, 1, 1) and c_noise.shape == sigma.shape
        target = (x0 - c_skip * x) / c_out
        torch.testing.assert_close(target.std(dim=(0, 2, 3)), torch.ones(3), rtol=0.03, atol=0)
        torch.testing.assert_close((x * c_in).std(dim=(0, 2, 3)), torch.ones(3), rtol=0.03, atol=0)
        zero = denoise(lambda x_in, c_noise, cond: torch.zeros_like(x_in), x, sigma.flatten(), None, sd)
        torch.testing.assert_close(zero, x * (sd**2 / (sd**2 + level**2)).view(1, 3, 1, 1))
        # the MMSE error of each channel: sd² σ² / (sd² + σ²), far below σ² where sd << σ
        error = (zero - x0).square().mean(dim=(0, 2, 3))
        torch.testing.assert_close(error, sd**2 * level**2 / (sd**2 + level**2), rtol=0.05, atol=0)
    assert float(error[2]) < 0.0105  # at σ = 10 the 0.1-std channel keeps its variance 0.01, not σ² = 100


def test_initial_latent_with_sigma_data_per_channel():
    noise = torch.ones(2, 3, 4, 4)
    sigmas = torch.tensor([2.0, 1.0, 0.0])
    out = initial_latent(noise, sigmas, [1.0, 2.0, 0.5])
    torch.testing.assert_close(out[0, :, 0, 0], torch.tensor([5.0, 8.0, 4.25]).sqrt())
    torch.testing.assert_close(initial_latent(noise, sigmas, 1.0), initial_latent(noise, sigmas))


# ----------------------------------------------------------------------------- guidance


def test_guider_vectors_shapes_and_endpoints():
    assert torch.equal(identity_scale(6), torch.ones(1, 6))
    assert torch.equal(cfg_scale(6, 3.5), torch.full((1, 6), 3.5))
    lin = linear_scale(48, 1.0, 2.0)
    assert lin.shape == (1, 48) and lin[0, 0] == 1.0 and lin[0, -1] == 2.0 and (lin.diff() > 0).all()
    tri = triangle_scale(9, 1.0, 3.0)
    assert tri.shape == (1, 9) and tri[0, 0] == 1.0 and tri[0, -1] == 1.0 and tri[0, 4] == 3.0
    torch.testing.assert_close(tri, tri.flip(-1))
    assert triangle_scale(9, 1.0, 3.0, period=[1.0, 0.5], period_fusing="max").max() == 3.0


def test_spatiotemporal_scale_is_time_ramp_plus_view_triangle():
    T, V = 5, 8
    w = spatiotemporal_scale(T * V, V, 1.5, 2.5)
    assert w.shape == (1, T * V)
    grid = w.view(T, V)  # (t v) order
    assert grid[0, 0] == 1.5 and grid.max() <= 2.5 and grid.min() == 1.5
    torch.testing.assert_close(grid[:, 1:] - grid[:, :1], (grid[:, 1:] - grid[:, :1])[:1].expand(T, V - 1))
    assert (grid[1:, 0] > grid[:-1, 0]).all()  # rises over time
    torch.testing.assert_close(grid, grid.flip(1))  # symmetric over views
    assert torch.equal(spatiotemporal_scale(48, 4, 2.0, 2.0), torch.full((1, 48), 2.0))
    with pytest.raises(KitInputError):
        spatiotemporal_scale(10, 4, 1.0, 2.0)
    with pytest.raises(KitInputError):
        linear_scale(0, 1.0, 2.0)
    with pytest.raises(KitInputError):
        triangle_scale(4, 1.0, 2.0, period_fusing="min")


def test_guide_mixes_per_frame_uncond_first():
    x_u, x_c = torch.randn(6, 4, 2, 2), torch.randn(6, 4, 2, 2)
    both = torch.cat([x_u, x_c])
    torch.testing.assert_close(guide(both, identity_scale(6)), x_c)
    torch.testing.assert_close(guide(both, 1.0), x_c)
    torch.testing.assert_close(guide(both, torch.zeros(6)), x_u)
    scale = linear_scale(6, 1.0, 2.0)
    out = guide(both, scale)
    for f in range(6):
        torch.testing.assert_close(out[f], x_u[f] + scale[0, f] * (x_c[f] - x_u[f]))
    # Two samples of 3 frames each: the scale repeats per sample.
    out2 = guide(both, torch.tensor([1.0, 2.0, 3.0]))
    torch.testing.assert_close(out2[4], x_u[4] + 2.0 * (x_c[4] - x_u[4]))
    with pytest.raises(KitInputError):
        guide(both[:5], 1.0)
    with pytest.raises(KitInputError):
        guide(both, torch.ones(4))


def test_build_uncond_batch_stacks_uncond_first(sampling_sets):
    g = sampling_sets[0].tensors()
    cond, uncond = _conds(g, "chunk1")
    T, V = sampling_sets[0].meta["T"], sampling_sets[0].meta["V"]
    x, sigma = torch.randn(T * V, 4, 8, 8), torch.full((T * V,), 3.0)
    x2, sigma2, batch = build_uncond_batch(x, sigma, cond, uncond, 1.0)
    assert x2.shape[0] == sigma2.shape[0] == 2 * T * V
    assert batch["crossattn"].shape == (2, T, cond["crossattn"].shape[-1])
    assert batch["cond_view"].shape[0] == 2 * V and batch["cond_motion"].shape[0] == 2 * T
    assert batch["image_only_indicator"].shape == (2, T * V) and (batch["image_only_indicator"] == 1).all()
    for key in ("vector", "crossattn", "concat", "cond_view", "cond_motion"):
        half = len(batch[key]) // 2
        assert torch.equal(batch[key][:half], uncond[key]) and torch.equal(batch[key][half:], cond[key])
    with pytest.raises(KitInputError):
        build_uncond_batch(x, sigma, cond, {k: v for k, v in uncond.items() if k != "cond_view"})


# ----------------------------------------------------------------------------- Euler sampler


@pytest.mark.parametrize("sample", [sample_euler_edm, sample_heun_edm], ids=["euler", "heun"])
def test_sampler_lands_on_the_single_data_point(sample):
    x_star = torch.randn(3, 4, 5, 5)
    sigmas = edm_sigmas(7, 0.002, 80.0)
    x = initial_latent(torch.randn(3, 4, 5, 5), sigmas)
    out = sample(lambda x, sigma: x_star.expand_as(x), x, sigmas, disable=True)
    torch.testing.assert_close(out, x_star)


def test_euler_converges_to_the_gaussian_probability_flow_at_first_order():
    # Data N(mu, s^2): the exact denoiser is mu + s^2/(s^2+sigma^2)(x - mu), and the ODE scales x - mu by
    # sqrt(s^2 + sigma^2) / sqrt(s^2 + sigma_max^2).
    mu, s, sigma_max = 0.7, 0.5, 80.0

    def denoiser(x, sigma):
        return mu + s**2 / (s**2 + sigma.view(-1, 1) ** 2) * (x - mu)

    x = mu + torch.randn(4, 16, dtype=torch.float64) * sigma_max
    exact = s / math.sqrt(s**2 + sigma_max**2)
    errors = []
    for n in (50, 100):
        out = sample_euler_edm(denoiser, x, edm_sigmas(n, 0.002, sigma_max).double(), disable=True)
        ratio = (out - mu) / (x - mu)
        torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0, 0].item()))  # one linear map
        errors.append(abs(ratio[0, 0].item() / exact - 1))
    assert errors[1] < 0.05
    assert 1.7 < errors[0] / errors[1] < 2.3  # Euler is first order


def _toy_denoiser(x, sigma):
    return torch.tanh(x / (1 + sigma.view(-1, 1, 1, 1)))


def test_churn_changes_the_path_only_when_s_churn_is_positive():
    sigmas = edm_sigmas(6, 0.002, 50.0)
    x = initial_latent(torch.randn(2, 3, 4, 4), sigmas)
    run = lambda **kw: sample_euler_edm(_toy_denoiser, x, sigmas, disable=True, **kw)  # noqa: E731
    base = run()
    assert torch.equal(
        run(s_noise=3.0, s_tmin=1.0, s_tmax=10.0, generator=torch.Generator().manual_seed(1)), base
    )
    churned = run(s_churn=2.0, generator=torch.Generator().manual_seed(1))
    assert not torch.allclose(churned, base)
    assert torch.equal(churned, run(s_churn=2.0, generator=torch.Generator().manual_seed(1)))
    # Outside [s_tmin, s_tmax] churn is off.
    assert torch.equal(run(s_churn=2.0, s_tmin=100.0, generator=torch.Generator().manual_seed(1)), base)


def test_churn_gamma_and_callback():
    sigmas = edm_sigmas(4, 0.002, 50.0)
    x = initial_latent(torch.randn(2, 3, 4, 4), sigmas)
    seen = []
    sample_euler_edm(_toy_denoiser, x, sigmas, callback=seen.append, disable=True, s_churn=0.8, s_tmin=1.0)
    assert [d["i"] for d in seen] == [0, 1, 2, 3]
    assert set(seen[0]) == {"x", "i", "sigma", "sigma_hat", "denoised"}
    gamma = min(0.8 / 4, 2**0.5 - 1)
    for d in seen:
        expected = d["sigma"] * (1 + gamma) if 1.0 <= d["sigma"] else d["sigma"]
        torch.testing.assert_close(d["sigma_hat"], expected.expand(2))
    big = []
    sample_euler_edm(_toy_denoiser, x, sigmas, callback=big.append, disable=True, s_churn=100.0)
    torch.testing.assert_close(big[0]["sigma_hat"], (sigmas[0] * 2**0.5).expand(2))


def test_sampler_rejects_bad_sigmas():
    with pytest.raises(KitInputError):
        sample_euler_edm(_toy_denoiser, torch.zeros(1, 1, 1, 1), torch.tensor([1.0]), disable=True)


# ----------------------------------------------------------------------------- Heun sampler


def _gaussian_flow(mu: float, s: float, sigma_max: float):
    """Data N(mu, s^2): its exact denoiser, and the exact probability-flow map from sigma_max to 0, which scales
    x - mu by s / sqrt(s^2 + sigma_max^2)."""

    def denoiser(x, sigma):
        return mu + s**2 / (s**2 + sigma.view(-1, 1) ** 2) * (x - mu)

    return denoiser, s / math.sqrt(s**2 + sigma_max**2)


def _flow_error(sampler, n: int, mu=0.3, s=1.0, sigma_max=10.0) -> float:
    """The relative error of `sampler` with n steps (sigma_max -> 0.002 -> 0) against the exact flow map."""
    denoiser, exact = _gaussian_flow(mu, s, sigma_max)
    x = mu + torch.randn(4, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * sigma_max
    out = sampler(denoiser, x, edm_sigmas(n, 0.002, sigma_max).double(), disable=True)
    ratio = (out - mu) / (x - mu)
    torch.testing.assert_close(ratio, torch.full_like(ratio, ratio[0, 0].item()))  # one linear map
    return abs(ratio[0, 0].item() / exact - 1)


def test_heun_is_much_closer_to_the_gaussian_flow_than_euler_with_the_same_steps():
    # Measured (float64): 16 steps: Euler 0.108, Heun 0.0249; 31 steps: Euler 0.0555; 200 steps: Euler 0.0086,
    # Heun 1.3e-4; Heun 32 -> 64 steps: 0.0056 -> 0.0013.
    euler, heun = _flow_error(sample_euler_edm, 16), _flow_error(sample_heun_edm, 16)
    assert heun < euler / 3
    # ... and at the same network calls too (Heun's n steps cost 2n - 1)
    assert heun < _flow_error(sample_euler_edm, 31) / 2
    # both converge to the exact flow; Heun is second order (the error quarters when the steps double)
    assert _flow_error(sample_euler_edm, 200) < 0.01 and _flow_error(sample_heun_edm, 200) < 3e-4
    assert 3.5 < _flow_error(sample_heun_edm, 32) / _flow_error(sample_heun_edm, 64) < 4.6


def test_heun_calls_callback_and_step_end_as_euler_and_the_network_2n_minus_1_times():
    sigmas = edm_sigmas(4, 0.002, 50.0)
    x = initial_latent(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)), sigmas)
    levels, seen, ended = [], [], []

    def denoiser(x, sigma):
        levels.append(float(sigma[0]))
        return _toy_denoiser(x, sigma)

    def step_end(i, x_next, denoised):
        ended.append((i, denoised))
        return torch.zeros_like(x_next) if i == 3 else None

    out = sample_heun_edm(denoiser, x, sigmas, callback=seen.append, step_end=step_end, disable=True)
    assert torch.equal(out, torch.zeros_like(out))  # step_end's replacement is the result
    assert [d["i"] for d in seen] == [i for i, _ in ended] == [0, 1, 2, 3]
    assert set(seen[0]) == {"x", "i", "sigma", "sigma_hat", "denoised"}
    assert all(torch.equal(d["denoised"], e) for d, (_, e) in zip(seen, ended))  # the step's first evaluation
    # each step evaluates at sigma_i and (but for the last, an Euler step to 0) at sigma_{i+1}
    expected = [float(sigmas[0]), *[float(v) for v in sigmas[1:-1] for _ in range(2)]]
    assert levels == pytest.approx(expected)
    # with a single step (sigma_max -> 0) Heun is Euler
    one = torch.tensor([50.0, 0.0])
    torch.testing.assert_close(
        sample_heun_edm(_toy_denoiser, x, one, disable=True),
        sample_euler_edm(_toy_denoiser, x, one, disable=True),
    )


def test_heun_churn_same_seed_same_result():
    sigmas = edm_sigmas(5, 0.002, 50.0)
    x = initial_latent(torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)), sigmas)
    run = lambda seed, **kw: sample_heun_edm(  # noqa: E731
        _toy_denoiser, x, sigmas, disable=True, generator=torch.Generator().manual_seed(seed), **kw
    )
    assert torch.equal(run(1, s_churn=2.0), run(1, s_churn=2.0))
    assert not torch.allclose(run(1, s_churn=2.0), run(2, s_churn=2.0))
    assert torch.equal(run(1), run(2))  # no churn: deterministic, the generator unused
    assert not torch.allclose(run(1), sample_euler_edm(_toy_denoiser, x, sigmas, disable=True))
    with pytest.raises(KitInputError):
        sample_heun_edm(_toy_denoiser, x, torch.tensor([1.0]), disable=True)


def test_sampler_names():
    assert SAMPLERS == ("euler", "heun")
    assert SAMPLER_FUNCTIONS == {"euler": sample_euler_edm, "heun": sample_heun_edm}


# ----------------------------------------------------------------------------- settings


def test_check_settings_normalises_and_knows_the_pipeline_keys():
    from sv4d_kit.pipeline import SAMPLING_KEYS

    assert set(SETTING_CHECKS) == set(SAMPLING_KEYS)
    checked = check_settings(
        {"num_inference_steps": torch.tensor(3).numpy(), "sigma_max": 80, "sampler": "heun"}
    )
    assert checked == {"num_inference_steps": 3, "sigma_max": 80.0, "sampler": "heun"}
    assert type(checked["num_inference_steps"]) is int and type(checked["sigma_max"]) is float
    assert check_settings({}) == {}


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"steps": 3}, r"^unknown sampling keys \['steps'\]"),
        ({"num_inference_steps": 0}, "^num_inference_steps must be an integer >= 1"),
        ({"num_inference_steps": 2.0}, "^num_inference_steps must be an integer"),
        ({"sigma_min": 0.0}, "^sigma_min must be a finite number > 0"),
        ({"sigma_max": -1.0}, "^sigma_max must be"),
        ({"sigma_min": 5.0, "sigma_max": 5.0}, "^need sigma_min < sigma_max"),
        ({"guider": "magic"}, "^guider must be one of linear"),
        ({"sampler": "dpm"}, "^sampler must be one of euler, heun"),
        ({"max_guidance": -1}, "^max_guidance must be"),
        ({"s_churn": -0.5}, "^s_churn must be"),
        ("steps=3", "^sampling must be a dict"),
    ],
)
def test_check_settings_rejects_bad_settings_in_one_line(settings, message):
    with pytest.raises(KitInputError, match=message) as info:
        check_settings(settings)
    assert "\n" not in str(info.value)


def test_check_settings_prefix_names_the_values():
    with pytest.raises(KitInputError, match=r"^sampling\.sampler must be one of euler, heun, got 'dpm'$"):
        check_settings({"sampler": "dpm"}, prefix="sampling.")
    with pytest.raises(KitInputError, match=r"^need sampling\.sigma_min < sampling\.sigma_max, got 9 and 5$"):
        check_settings({"sigma_min": 9, "sigma_max": 5}, prefix="sampling.")


def test_skip_unguided_runs_only_the_conditional_half_when_every_scale_is_one():
    from sv4d_kit.models.checkpoint import build_tiny_models

    unet, conditioner, _ = build_tiny_models("sv4d2_8views", seed=5)
    g = torch.Generator().manual_seed(0)
    T, V, size = 2, 2, 64
    cond = conditioner(
        torch.rand(T, 3, size, size, generator=g) * 2 - 1,
        torch.rand(V, 3, size, size, generator=g) * 2 - 1,
        torch.full((T * V,), 1.4),
        torch.tensor([1.0, 3.0] * T),
        generator=g,
    )
    uncond = conditioner.unconditional(cond)
    x = torch.randn(T * V, 4, size // 8, size // 8, generator=g)
    sigma = torch.full((T * V,), 3.0)
    calls = []
    hook = unet.register_forward_pre_hook(lambda module, args: calls.append(args[0].shape[0]))
    try:
        for indicator in (0.0, torch.ones(2, T * V)):
            ones = torch.ones(1, T * V)
            with torch.no_grad():
                paired = make_denoiser(unet, ones, indicator)(x, sigma, cond, uncond)
                single = make_denoiser(unet, ones, indicator, skip_unguided=True)(x, sigma, cond, uncond)
                guided = make_denoiser(unet, ones * 2, indicator, skip_unguided=True)(x, sigma, cond, uncond)
            torch.testing.assert_close(single, paired, rtol=1e-5, atol=1e-5)
            assert not torch.allclose(guided, paired, atol=1e-3)
    finally:
        hook.remove()
    assert calls == [2 * T * V, T * V, 2 * T * V] * 2
