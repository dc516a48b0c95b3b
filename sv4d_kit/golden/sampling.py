"""Golden checks of the sampler: sigmas, scalings, guider scales, Euler steps, UNet steps and full chains.

Network-free cases (`check_network_free`) need only `sv4d_kit.sampling`. The network cases (`check_network`)
build the tiny UNet named by the set's `unet_weights` through `sv4d_kit.golden.unet.load_golden_unet`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch

from sv4d_kit.checks import KitInputError
from sv4d_kit.golden import CaseResult, GoldenSet, compare
from sv4d_kit.sampling import (
    build_uncond_batch,
    cfg_scale,
    denoise,
    edm_sigmas,
    identity_scale,
    initial_latent,
    linear_scale,
    make_denoiser,
    sample_euler_edm,
    spatiotemporal_scale,
    triangle_scale,
    vscaling_edm_cnoise,
)

# Guider tensor names such as `spatiotemporal_40f_8v_min1.5_max2.5` or `linear_48f_min1.0_max2.0`.
_GUIDER_NAME = re.compile(
    r"^(?P<kind>[a-z]+)_(?P<frames>\d+)f(?:_(?P<views>\d+)v)?_min(?P<lo>[-+\d.e]+)_max(?P<hi>[-+\d.e]+)$"
)
_EDM_MEANING = re.compile(r"EDMDiscretization\(\s*([-+\d.e]+)\s*,\s*([-+\d.e]+)\s*,\s*([-+\d.e]+)\s*\)")


def _failed(name: str, err: Exception) -> CaseResult:
    return CaseResult(name, False, float("nan"), f"{type(err).__name__}: {err}".replace("\n", " "))


# ----------------------------------------------------------------------------- standalone tensors


def _check_sigmas(g: dict, meta: dict) -> Iterator[CaseResult]:
    for name in sorted(k for k in g if k.startswith("sigmas.")):
        try:
            match = re.fullmatch(r"sigmas\.edm_(\d+)", name)
            n = int(match.group(1)) if match else g[name].numel() - 1
            params = _EDM_MEANING.search(meta.get("tensors", {}).get(name, {}).get("meaning", ""))
            lo, hi, rho = (float(v) for v in params.groups()) if params else (0.002, 700.0, 7.0)
            yield compare(name, edm_sigmas(n, lo, hi, rho), g[name], "exact_math")
        except Exception as e:
            yield _failed(name, e)


def _check_scalings(g: dict) -> Iterator[CaseResult]:
    if "scaling.sigma" not in g:
        return
    for part, value in zip(("c_skip", "c_out", "c_in", "c_noise"), vscaling_edm_cnoise(g["scaling.sigma"])):
        if f"scaling.{part}" in g:
            yield compare(f"scaling.{part}", value, g[f"scaling.{part}"], "exact_math")


def _guider_from_name(name: str) -> torch.Tensor:
    m = _GUIDER_NAME.match(name)
    if m is None:
        raise KitInputError(f"cannot parse guider parameters from {name!r}")
    frames, lo, hi = int(m["frames"]), float(m["lo"]), float(m["hi"])
    if m["kind"] == "spatiotemporal":
        return spatiotemporal_scale(frames, int(m["views"]), lo, hi)
    if m["kind"] == "linear":
        return linear_scale(frames, lo, hi)
    if m["kind"] == "triangle":
        return triangle_scale(frames, lo, hi)
    raise KitInputError(f"unknown guider kind {m['kind']!r} in {name!r}")


def _check_guiders(g: dict) -> Iterator[CaseResult]:
    for name in sorted(k for k in g if k.startswith("guider.")):
        try:
            yield compare(name, _guider_from_name(name[len("guider.") :]), g[name], "exact_math")
        except Exception as e:
            yield _failed(name, e)


# ----------------------------------------------------------------------------- one sampling run


class _Replay:
    """A stand-in network that returns a stored output (teacher forcing)."""

    def __init__(self, output: torch.Tensor):
        self.output = output

    def __call__(self, *args) -> torch.Tensor:
        return self.output


class _Spy:
    """Calls a network and keeps its outputs."""

    def __init__(self, net):
        self.net, self.outputs = net, []

    def __call__(self, *args) -> torch.Tensor:
        self.outputs.append(self.net(*args))
        return self.outputs[-1]


@dataclass
class Run:
    """Everything a sampling run needs, rebuilt from the set's json (lacking it, from its stored tensors)."""

    name: str
    sigmas: torch.Tensor
    scale: torch.Tensor
    indicator: float
    cond: dict
    uncond: dict
    num_steps: int


def _guider_scale(options: dict) -> torch.Tensor:
    """The per-frame scale the sv4d2 script's `get_guider_no_st` builds from its options (guider index)."""
    n, index = options["num_frames"], options.get("guider", 2)
    if index == 0:
        return cfg_scale(n, options.get("cfg", 5.0))
    if index == 1:
        return identity_scale(n)
    if index == 2:  # the script does not pass min_cfg here: min is the class default 1.0
        return linear_scale(n, 1.0, options.get("cfg", 1.5))
    if index == 3:
        period = options.get("period", 1.0)
        return triangle_scale(n, 1.0, options.get("cfg", 1.5), period, options.get("period_fusing", "max"))
    if index == 5:
        lo, hi = options.get("min_cfg", 1.0), options.get("cfg", 1.5)
        return spatiotemporal_scale(n, options["num_views"], lo, hi)
    raise KitInputError(f"guider index {index} is not supported (0, 1, 2, 3, 5 are)")


def run_names(g: dict) -> list[str]:
    """Every run prefix in a set: names `P` with a stored `P.noise`."""
    return sorted(k[: -len(".noise")] for k in g if k.endswith(".noise"))


def load_run(g: dict, meta: dict, name: str) -> Run:
    """Rebuild run `name`'s schedule, guider scale, indicator and conditioning."""
    cond = {k[len(name) + 3 :]: v for k, v in g.items() if k.startswith(f"{name}.c.")}
    uncond = {k[len(name) + 4 :]: v for k, v in g.items() if k.startswith(f"{name}.uc.")}
    info = meta.get("runs", {}).get(name)
    if info is None:  # no recorded configuration: fall back to the stored tensors
        sigmas, indicator = g[f"{name}.sigmas"], float(g[f"{name}.image_only_indicator"].flatten()[0])
        return Run(name, sigmas, g[f"{name}.guider_scale"], indicator, cond, uncond, len(sigmas) - 1)
    options = dict(info["version_dict"]["options"])
    if options.get("discretization", 1) != 1:
        raise KitInputError("only the EDM discretization (index 1) is supported")
    options.setdefault("num_frames", info["version_dict"]["T"])
    num_steps = int(info.get("num_steps", options.get("num_steps", 50)))
    # get_discretization_no_st's defaults apply where the options are silent.
    lo, hi, rho = options.get("sigma_min", 0.03), options.get("sigma_max", 14.61), options.get("rho", 3.0)
    indicator = float(info["image_only_indicator"])
    return Run(
        name, edm_sigmas(num_steps, lo, hi, rho), _guider_scale(options), indicator, cond, uncond, num_steps
    )


def _check_run_math(g: dict, run: Run) -> Iterator[CaseResult]:
    """Schedule, scale, indicator, x_init and every step teacher-forced from the stored x_in and unet_out."""
    p = run.name
    yield compare(f"{p}.sigmas", run.sigmas, g[f"{p}.sigmas"], "exact_math")
    yield compare(f"{p}.guider_scale", run.scale, g[f"{p}.guider_scale"], "exact_math")
    noise = g[f"{p}.noise"]
    *_, batch = build_uncond_batch(
        noise, run.sigmas[:1].expand(len(noise)), run.cond, run.uncond, run.indicator
    )
    indicator = batch["image_only_indicator"]
    yield compare(f"{p}.image_only_indicator", indicator, g[f"{p}.image_only_indicator"], "exact_math")
    yield compare(f"{p}.x_init", initial_latent(noise, run.sigmas), g[f"{p}.x_init"], "exact_math")
    for k in range(run.num_steps):
        s = f"{p}.step{k}"
        if f"{s}.x_in" not in g:
            continue
        x_in, stored_net = g[f"{s}.x_in"], _Replay(g[f"{s}.unet_out"])
        seen, cond = {}, dict(cond=run.cond, uncond=run.uncond)
        denoiser = make_denoiser(stored_net, run.scale, run.indicator)
        x_out = sample_euler_edm(
            denoiser, x_in, run.sigmas[k : k + 2], cond, callback=seen.update, disable=True
        )
        x2, sigma2, batch = build_uncond_batch(x_in, seen["sigma_hat"], run.cond, run.uncond, run.indicator)
        denoised = denoise(stored_net, x2, sigma2, batch)
        yield compare(f"{s}.sigma", seen["sigma_hat"], g[f"{s}.sigma"], "exact_math")
        yield compare(f"{s}.denoised_uncond_cond", denoised, g[f"{s}.denoised_uncond_cond"], "sampler_step")
        yield compare(f"{s}.denoised_guided", seen["denoised"], g[f"{s}.denoised_guided"], "sampler_step")
        yield compare(f"{s}.x_out", x_out, g[f"{s}.x_out"], "sampler_step")


@torch.no_grad()
def _check_run_unet(g: dict, run: Run, unet) -> Iterator[CaseResult]:
    """The UNet output of each step, from the stored x_in, c and uc (through `make_denoiser`'s plumbing)."""
    for k in range(run.num_steps):
        s = f"{run.name}.step{k}"
        if f"{s}.unet_out" not in g:
            continue
        spy = _Spy(unet)
        make_denoiser(spy, run.scale, run.indicator)(g[f"{s}.x_in"], g[f"{s}.sigma"], run.cond, run.uncond)
        yield compare(f"{s}.unet_out", spy.outputs[0], g[f"{s}.unet_out"], "unet")


@torch.no_grad()
def _check_run_chain(g: dict, run: Run, unet) -> Iterator[CaseResult]:
    """The free-running chain from the stored noise to the final latent."""
    x = initial_latent(g[f"{run.name}.noise"], run.sigmas)
    denoiser = make_denoiser(unet, run.scale, run.indicator)
    z = sample_euler_edm(denoiser, x, run.sigmas, dict(cond=run.cond, uncond=run.uncond), disable=True)
    yield compare(f"{run.name}.final_latent", z, g[f"{run.name}.final_latent"], "sampler_chain")


# ----------------------------------------------------------------------------- entry points


def check_network_free(gset: GoldenSet, tensors: dict | None = None) -> Iterator[CaseResult]:
    """Every case that needs no network: sigmas, scalings, guider scales and teacher-forced steps."""
    g = gset.tensors() if tensors is None else tensors
    yield from _check_sigmas(g, gset.meta)
    yield from _check_scalings(g)
    yield from _check_guiders(g)
    for name in run_names(g):
        try:
            run = load_run(g, gset.meta, name)
        except Exception as e:
            yield _failed(f"{name}.setup", e)
            continue
        yield from _check_run_math(g, run)


def load_unet(gset: GoldenSet, folder: Path):
    """The tiny UNet of the set, from the weights file its json names (first token of `unet_weights`)."""
    from sv4d_kit.golden.unet import load_golden_unet

    unet = load_golden_unet(Path(folder), gset.meta["unet_weights"].split()[0])
    return unet.eval() if hasattr(unet, "eval") else unet


def check_network(gset: GoldenSet, folder: Path, tensors: dict | None = None) -> Iterator[CaseResult]:
    """The cases that run the UNet: each step's output from stored inputs, and the chain from the noise."""
    g = gset.tensors() if tensors is None else tensors
    names = run_names(g)
    try:
        unet = load_unet(gset, folder)
    except Exception as e:
        for name in names:
            yield _failed(f"{name}.unet", e)
        return
    for name in names:
        try:
            run = load_run(g, gset.meta, name)
            yield from _check_run_unet(g, run, unet)
            yield from _check_run_chain(g, run, unet)
        except Exception as e:
            yield _failed(f"{name}.network", e)


def check(gset: GoldenSet, folder: Path) -> Iterator[CaseResult]:
    """All sampling cases of one golden set."""
    g = gset.tensors()
    yield from check_network_free(gset, g)
    yield from check_network(gset, folder, g)
