"""EDM sampling for SV4D 2.0: noise schedule, V-scaled denoiser, per-frame guidance, the Euler and Heun samplers.

Plain k-diffusion-style functions. A *denoiser* is `denoiser(x, sigma, **extra_args) -> denoised` with
x (N, C, h, w) and sigma (N,), one noise level per frame. One SV4D 2.0 chunk has N = T*V frames in (t v) order
(index = t*V + v). Under guidance the network sees the doubled batch [uncond; cond] (uncond first), and the
guider mixes the two halves with one scale per frame. `make_denoiser` wires an SV4D UNet into this shape:

    sigmas = edm_sigmas(50)                                   # 700 ... 0.002, 0
    denoiser = make_denoiser(unet, linear_scale(48, 1.0, 2.0))
    x = initial_latent(torch.randn(48, 4, 72, 72), sigmas)
    z = sample_euler_edm(denoiser, x, sigmas, extra_args=dict(cond=c, uncond=uc))
    z = sample_heun_edm(denoiser, x, sigmas, extra_args=dict(cond=c, uncond=uc))   # 2nd order: 99 network calls
"""

from __future__ import annotations

import torch
from tqdm.auto import trange

from sv4d_kit import checks
from sv4d_kit.checks import KitInputError

# Conditioning keys that differ between cond and uncond and are stacked [uc; c] under guidance.
GUIDED_KEYS = ("vector", "crossattn", "concat", "cond_view", "cond_motion")


def _append_dims(t: torch.Tensor, ndim: int) -> torch.Tensor:
    return t.reshape(*t.shape, *([1] * (ndim - t.ndim)))  # (N,) -> (N, 1, 1, 1)


# ----------------------------------------------------------------------------- schedule and preconditioning


def edm_sigmas(
    n: int, sigma_min: float = 0.002, sigma_max: float = 700.0, rho: float = 7.0, device=None
) -> torch.Tensor:
    """Noise levels of Karras et al. (2022), eq. 5, in float32: n from sigma_max to sigma_min, then 0."""
    checks.integer("n", n, minimum=1)
    sigma_min, sigma_max, rho = (checks.positive(k, v) for k, v in (("sigma_min", sigma_min),
                                 ("sigma_max", sigma_max), ("rho", rho)))  # fmt: skip
    if not sigma_min < sigma_max:
        raise KitInputError(f"need 0 < sigma_min < sigma_max, got {sigma_min!r} and {sigma_max!r}")
    ramp = torch.linspace(0, 1, n, device=device)
    min_inv_rho, max_inv_rho = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
    return torch.cat([sigmas, sigmas.new_zeros(1)])  # (n,) -> (n+1,): the last step lands on sigma = 0


def initial_latent(noise: torch.Tensor, sigmas: torch.Tensor, sigma_data=None) -> torch.Tensor:
    """Scale unit noise to the first level of a V-scaled EDM chain: x_0 = noise * sqrt(sigma_data^2 + sigma_0^2)
    (sigma_data 1, SV4D 2.0's, unless given: a number, or one per latent channel)."""
    if sigma_data is None:
        return noise * torch.sqrt(1.0 + sigmas[0] ** 2.0)
    sd = _channel_dims(torch.as_tensor(sigma_data, dtype=noise.dtype, device=noise.device), noise.ndim)
    return noise * torch.sqrt(sd**2 + sigmas[0] ** 2.0)


def vscaling_edm_cnoise(sigma: torch.Tensor):
    """Preconditioning of a v-prediction network with EDM's c_noise (sgm's VScalingWithEDMcNoise).

    Returns (c_skip, c_out, c_in, c_noise) = (1/(s^2+1), -s/sqrt(s^2+1), 1/sqrt(s^2+1), ln(s)/4), like sigma.
    """
    c_skip = 1.0 / (sigma**2 + 1.0)
    c_out = -sigma / (sigma**2 + 1.0) ** 0.5
    c_in = 1.0 / (sigma**2 + 1.0) ** 0.5
    c_noise = 0.25 * sigma.log()
    return c_skip, c_out, c_in, c_noise


def _channel_dims(sigma_data: torch.Tensor, ndim: int) -> torch.Tensor:
    """sigma_data () or (C,) -> broadcastable over (N, C, h, w): () or (1, C, 1, 1)."""
    return sigma_data if sigma_data.ndim == 0 else sigma_data.reshape(1, -1, *([1] * (ndim - 2)))


def vscaling_edm_sigma_data(sigma: torch.Tensor, sigma_data: torch.Tensor):
    """The V-scaling preconditioning for data of standard deviation sigma_data (Karras et al. 2022, table 1, with
    the v-objective's sign), EDM's c_noise:

        c_skip = sd^2/(s^2+sd^2),  c_out = -s sd/sqrt(s^2+sd^2),  c_in = 1/sqrt(s^2+sd^2),  c_noise = ln(s)/4

    sigma_data 1 is `vscaling_edm_cnoise`. One sigma_data per latent channel (C,) with sigma (N, 1, 1, 1) gives
    (N, C, 1, 1) factors (c_noise stays like sigma): the skip is then each channel's Wiener filter, so a channel
    the data hardly uses passes hardly any noise, and the network need not cancel it."""
    sd = _channel_dims(sigma_data.to(sigma), sigma.ndim)
    total = sigma**2 + sd**2
    return sd**2 / total, -sigma * sd / total**0.5, 1.0 / total**0.5, 0.25 * sigma.log()


def preconditioning(sigma: torch.Tensor, sigma_data=None):
    """(c_skip, c_out, c_in, c_noise) of a V-scaled denoiser: SV4D 2.0's (`vscaling_edm_cnoise`) when sigma_data
    is None, else `vscaling_edm_sigma_data` (a number, or one per latent channel)."""
    if sigma_data is None:
        return vscaling_edm_cnoise(sigma)
    return vscaling_edm_sigma_data(sigma, torch.as_tensor(sigma_data))


def denoise(model_fn, x: torch.Tensor, sigma: torch.Tensor, cond, sigma_data=None) -> torch.Tensor:
    """The preconditioned denoiser of Karras et al. (2022), eq. 7: c_skip x + c_out F(c_in x, c_noise), with
    SV4D 2.0's V-scaling (sigma_data 1) unless `sigma_data` is given (see `preconditioning`)."""
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device)
    sigma = sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma
    c_skip, c_out, c_in, c_noise = preconditioning(_append_dims(sigma, x.ndim), sigma_data)
    return model_fn(x * c_in, c_noise.reshape(sigma.shape), cond) * c_out + x * c_skip


# ----------------------------------------------------------------------------- guidance (one scale per frame)


def _triangle_wave(values: torch.Tensor, period: float = 1.0) -> torch.Tensor:
    return 2 * (values / period - torch.floor(values / period + 0.5)).abs()  # 0 at 0 and 1, 1 at period/2


def identity_scale(num_frames: int) -> torch.Tensor:
    """No guidance (sgm's IdentityGuider): scale 1, so `guide` returns the cond branch. (1, num_frames)"""
    checks.integer("num_frames", num_frames, minimum=1)
    return torch.ones(1, num_frames)


def cfg_scale(num_frames: int, scale: float) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans, 2022), one scale (sgm's VanillaCFG). (1, num_frames)"""
    checks.integer("num_frames", num_frames, minimum=1)
    return torch.full((1, num_frames), float(scale))


def linear_scale(num_frames: int, min_scale: float, max_scale: float) -> torch.Tensor:
    """Scale ramping from min to max over the frames (sgm's LinearPredictionGuider). (1, num_frames)"""
    checks.integer("num_frames", num_frames, minimum=1)
    return torch.linspace(min_scale, max_scale, num_frames).unsqueeze(0)


def triangle_scale(
    num_frames: int, min_scale: float, max_scale: float, period=1.0, period_fusing: str = "max"
) -> torch.Tensor:
    """Triangle wave between min and max over the frames (sgm's TrianglePredictionGuider). (1, num_frames)

    `period` is one period (in units of the clip) or a list of them, fused by "mean", "multiply" or "max".
    """
    checks.integer("num_frames", num_frames, minimum=1)
    periods = [period] if isinstance(period, (int, float)) else list(period)
    if not periods or any(p <= 0 for p in periods):
        raise KitInputError(f"period must be > 0 (one value or a non-empty list), got {period!r}")
    values = torch.linspace(0, 1, num_frames)
    waves = torch.stack([_triangle_wave(values, float(p)) for p in periods])
    if period_fusing == "mean":
        wave = sum(waves) / len(periods)
    elif period_fusing == "multiply":
        wave = torch.prod(waves, dim=0)
    elif period_fusing == "max":
        wave = waves.max(dim=0).values
    else:
        raise KitInputError(f"period_fusing must be 'mean', 'multiply' or 'max', got {period_fusing!r}")
    return (wave * (max_scale - min_scale) + min_scale).unsqueeze(0)


def spatiotemporal_scale(num_frames: int, num_views: int, min_scale: float, max_scale: float) -> torch.Tensor:
    """Per-frame x per-view scale of sgm's SpatiotemporalPredictionGuider, in (t v) order. (1, num_frames)

    w[t, v] = min + (max - min) (t/(T-1) + triangle(v/(V-1))) / 2: rises over time, peaks at the middle view.
    """
    checks.integer("num_frames", num_frames, minimum=1)
    checks.integer("num_views", num_views)
    if num_frames % num_views:
        raise KitInputError(f"num_frames ({num_frames}) must be a multiple of num_views ({num_views})")
    T, V = num_frames // num_views, num_views
    scale = torch.zeros(num_frames).view(T, V)  # (T*V,) -> (T, V)
    scale += torch.linspace(0, 1, T)[:, None] * 0.5
    scale += _triangle_wave(torch.linspace(0, 1, V))[None, :] * 0.5
    return (scale.flatten() * (max_scale - min_scale) + min_scale).unsqueeze(0)  # (T, V) -> (1, T*V)


def guide(x_uncond_cond: torch.Tensor, scale) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans, 2022) per frame: x_u + s[frame] (x_c - x_u), uncond first."""
    if x_uncond_cond.shape[0] % 2:
        raise KitInputError(
            f"x_uncond_cond must be [uncond; cond] (even batch), got {x_uncond_cond.shape[0]}"
        )
    x_u, x_c = x_uncond_cond.chunk(2)
    scale = torch.as_tensor(scale, dtype=x_u.dtype, device=x_u.device).reshape(-1)
    num_frames = scale.numel()
    if x_u.shape[0] % num_frames:
        raise KitInputError(
            f"scale has {num_frames} frames, which do not divide the half batch {x_u.shape[0]}"
        )
    x_u = x_u.reshape(-1, num_frames, *x_u.shape[1:])  # (b*F, ...) -> (b, F, ...)
    x_c = x_c.reshape(-1, num_frames, *x_c.shape[1:])
    scale = scale.reshape(1, num_frames, *([1] * (x_u.ndim - 2)))  # (F,) -> (1, F, 1, 1, 1)
    return (x_u + scale * (x_c - x_u)).flatten(0, 1)  # (b, F, ...) -> (b*F, ...)


def build_uncond_batch(
    x: torch.Tensor, sigma: torch.Tensor, cond: dict, uncond: dict, image_only_indicator=0.0
):
    """Double a chunk for guidance as sgm's guiders' `prepare_inputs` do: inputs become [uncond; cond].

    `vector`, `crossattn`, `concat`, `cond_view` and `cond_motion` are stacked: crossattn (1, T, D) ->
    (2, T, D), cond_view (V, ...) -> (2V, ...), cond_motion (T, ...) -> (2T, ...); other keys come from
    `cond`. The batch also gets `image_only_indicator` (2, N) filled with the given value (or tensor).
    Returns (x (2N, ...), sigma (2N,), batch).
    """
    missing = [k for k in GUIDED_KEYS if k in cond and k not in uncond]
    if missing:
        raise KitInputError(f"uncond lacks the guided keys {missing} that cond has")
    batch = {k: torch.cat([uncond[k], cond[k]]) if k in GUIDED_KEYS else cond[k] for k in cond}
    if torch.is_tensor(image_only_indicator):
        batch["image_only_indicator"] = image_only_indicator
    else:
        batch["image_only_indicator"] = x.new_full((2, x.shape[0]), float(image_only_indicator))
    return torch.cat([x, x]), torch.cat([sigma, sigma]), batch


def make_denoiser(unet, scale, image_only_indicator=0.0, skip_unguided: bool = False, sigma_data=None):
    """Wrap an SV4D UNet into the guided denoiser `denoiser(x, sigma, cond, uncond)` that the samplers call.

    `unet(x, timesteps, context, y, cond_view, cond_motion, image_only_indicator, num_video_frames)` is the
    reference forward; x gets `concat` appended on channels and timesteps are c_noise, one per frame. `scale`
    is the per-frame guidance scale (see `linear_scale`, `spatiotemporal_scale`). The reference always runs the
    [uncond; cond] pair; with `skip_unguided` and every scale 1 (where guidance returns the conditional half) only
    the conditional half runs: half the network cost, equal up to float rounding. `sigma_data` as in `denoise`.
    """
    unguided = skip_unguided and bool(torch.all(torch.as_tensor(scale) == 1))

    def network(x_in, c_noise, batch):
        if "concat" in batch:
            x_in = torch.cat([x_in, batch["concat"]], dim=1)  # (2N, 4, h, w) -> (2N, 8, h, w)
        return unet(
            x_in,
            c_noise,
            batch.get("crossattn"),
            batch.get("vector"),
            batch.get("cond_view"),
            batch.get("cond_motion"),
            batch["image_only_indicator"],
            batch["image_only_indicator"].shape[-1],  # num_video_frames = T*V: the indicator is (videos, T*V)
        )

    def denoiser(x, sigma, cond, uncond):
        if unguided:  # (N, ...) only: the conditional video
            indicator = image_only_indicator
            if torch.is_tensor(indicator):
                indicator = indicator.reshape(-1, x.shape[0])[-1:]  # the cond row of a (2, N) indicator
            else:
                indicator = x.new_full((1, x.shape[0]), float(indicator))
            return denoise(network, x, sigma, {**cond, "image_only_indicator": indicator}, sigma_data)
        x2, sigma2, batch = build_uncond_batch(x, sigma, cond, uncond, image_only_indicator)
        return guide(denoise(network, x2, sigma2, batch, sigma_data), scale)

    return denoiser


# ----------------------------------------------------------------------------- samplers


def _check_sigmas(sigmas, x: torch.Tensor) -> torch.Tensor:
    sigmas = torch.as_tensor(sigmas, device=x.device)
    if sigmas.ndim != 1 or len(sigmas) < 2:
        raise KitInputError(f"sigmas must be 1-D with at least 2 values, got shape {tuple(sigmas.shape)}")
    return sigmas


def _churn(x, level, num_steps, s_churn, s_tmin, s_tmax, s_noise, generator):
    """Churn: raise the noise level by gamma inside [s_tmin, s_tmax], then add the matching fresh noise.
    Returns (x_hat, sigma_hat (N,))."""
    gamma = min(s_churn / num_steps, 2**0.5 - 1) if s_tmin <= level <= s_tmax else 0.0
    sigma = x.new_ones([x.shape[0]]) * level
    sigma_hat = sigma * (gamma + 1.0)
    if gamma > 0:
        eps = torch.randn(x.shape, generator=generator, dtype=x.dtype, device=x.device) * s_noise
        x = x + eps * _append_dims(sigma_hat**2 - sigma**2, x.ndim) ** 0.5
    return x, sigma_hat


def _sample_edm(denoiser, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax, s_noise, generator,
                step_end, heun: bool) -> torch.Tensor:  # fmt: skip
    """The loop of `sample_euler_edm` and `sample_heun_edm` (Karras et al. 2022, Algorithm 2); `heun` adds the
    2nd-order correction to every step but the last (to sigma = 0, where the slope is undefined)."""
    extra_args = {} if extra_args is None else extra_args
    sigmas = _check_sigmas(sigmas, x)
    s_in = x.new_ones([x.shape[0]])
    num_steps = len(sigmas) - 1
    for i in trange(num_steps, disable=disable):
        x, sigma_hat = _churn(x, sigmas[i], num_steps, s_churn, s_tmin, s_tmax, s_noise, generator)
        denoised = denoiser(x, sigma_hat, **extra_args)
        d = (x - denoised) / _append_dims(sigma_hat, x.ndim)  # dx/dsigma of the probability-flow ODE
        if callback is not None:
            callback({"x": x, "i": i, "sigma": sigmas[i], "sigma_hat": sigma_hat, "denoised": denoised})
        dt = _append_dims(s_in * sigmas[i + 1] - sigma_hat, x.ndim)
        if heun and sigmas[i + 1] != 0:
            x_euler = x + dt * d
            sigma_next = s_in * sigmas[i + 1]
            denoised_next = denoiser(x_euler, sigma_next, **extra_args)
            d_next = (x_euler - denoised_next) / _append_dims(sigma_next, x.ndim)
            x = x + dt * (d + d_next) / 2  # Heun step: the mean of the slopes at both ends
        else:
            x = x + dt * d  # Euler step
        if step_end is not None:
            replaced = step_end(i, x, denoised)
            x = x if replaced is None else replaced
    return x


@torch.no_grad()
def sample_euler_edm(
    denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback=None,
    disable: bool | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    step_end=None,
) -> torch.Tensor:
    """Implements Algorithm 2 (Euler steps with churn) from Karras et al. (2022), like sgm's EulerEDMSampler.

    `x` is already at the first noise level (see `initial_latent`); `sigmas` ends with 0 (see `edm_sigmas`).
    `callback(dict)` sees each step before its update (k-diffusion style); `step_end(i, x_next, denoised)` runs
    after it and may return a replacement for x_next (diffusers' `callback_on_step_end`).
    """
    return _sample_edm(denoiser, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax, s_noise,
                       generator, step_end, heun=False)  # fmt: skip


@torch.no_grad()
def sample_heun_edm(
    denoiser,
    x: torch.Tensor,
    sigmas: torch.Tensor,
    extra_args: dict | None = None,
    callback=None,
    disable: bool | None = None,
    s_churn: float = 0.0,
    s_tmin: float = 0.0,
    s_tmax: float = float("inf"),
    s_noise: float = 1.0,
    generator: torch.Generator | None = None,
    step_end=None,
) -> torch.Tensor:
    """Implements Algorithm 2 (Heun steps with churn) from Karras et al. (2022), like k-diffusion's sample_heun.

    As `sample_euler_edm`, with the 2nd-order correction: each step's Euler proposal is re-evaluated at the next
    level and the two slopes are averaged (trapezoidal rule), so a step costs two network calls; the last step, to
    sigma = 0, stays an Euler step (one call: N steps cost 2N - 1). `callback` and `step_end` see the denoised
    estimate of the step's first evaluation (at sigma_hat), as Euler's.
    """
    return _sample_edm(denoiser, x, sigmas, extra_args, callback, disable, s_churn, s_tmin, s_tmax, s_noise,
                       generator, step_end, heun=True)  # fmt: skip


# The samplers a model's `sampling` settings (and the pipeline's `sampler` argument) may name.
SAMPLER_FUNCTIONS = {"euler": sample_euler_edm, "heun": sample_heun_edm}
SAMPLERS = tuple(SAMPLER_FUNCTIONS)


# ----------------------------------------------------------------------------- settings

# The guider kinds (`pipeline.guidance_scale`): sgm's LinearPrediction, SpatiotemporalPrediction, TrianglePrediction
# guiders, VanillaCFG and IdentityGuider.
GUIDERS = ("linear", "spatiotemporal", "triangle", "constant", "none")

# The sampler settings a model's `sampling` dict (`SV4DPipeline.config.sampling`, `TrainConfig.sampling`) and the
# pipeline's arguments of the same names may hold, each with its check `check(name, value) -> value`.
SETTING_CHECKS = {
    "num_inference_steps": lambda k, v: checks.integer(k, v, minimum=1),
    "sigma_min": checks.positive,
    "sigma_max": checks.positive,
    "rho": checks.positive,
    "s_churn": lambda k, v: checks.number(k, v, minimum=0),
    "s_tmin": checks.number,
    "s_tmax": checks.number,
    "s_noise": lambda k, v: checks.number(k, v, minimum=0),
    "sampler": lambda k, v: checks.one_of(k, v, SAMPLERS),
    "guider": lambda k, v: checks.one_of(k, v, GUIDERS),
    "min_guidance": lambda k, v: checks.number(k, v, minimum=0),
    "max_guidance": lambda k, v: checks.number(k, v, minimum=0),
}


def check_settings(settings: dict, prefix: str = "") -> dict:
    """`settings` (any subset of `SETTING_CHECKS`' keys), each value checked and normalised (ints as int, numbers as
    float), with sigma_min < sigma_max when both are given; `KitInputError` (one line) otherwise. Messages name a
    value `prefix + key` ("sampling." gives "sampling.sigma_min must be ...")."""
    where = prefix.rstrip(".") or "sampling"
    if not isinstance(settings, dict):
        raise KitInputError(f"{where} must be a dict of sampler settings, got {settings!r}")
    unknown = sorted(set(settings) - set(SETTING_CHECKS))
    if unknown:
        raise KitInputError(f"unknown {where} keys {unknown}; known: {', '.join(SETTING_CHECKS)}")
    checked = {k: SETTING_CHECKS[k](prefix + k, v) for k, v in settings.items()}
    low, high = checked.get("sigma_min"), checked.get("sigma_max")
    if low is not None and high is not None and not low < high:
        raise KitInputError(f"need {prefix}sigma_min < {prefix}sigma_max, got {low:g} and {high:g}")
    return checked
