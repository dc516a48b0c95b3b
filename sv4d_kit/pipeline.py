"""`SV4DPipeline`: frames (or one frame) of an object in, an image matrix of novel-view videos out, as SV4D 2.0.

The generation follows the reference script (`simple_video_sample_4d2.py`): the clip is cut into chunks of T frames;
the first chunk is sampled without view conditioning, every later chunk is conditioned on the novel views already
generated at its first frame, and a chunk that would run past the end is realigned to end on the last frame.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from diffusers import DiffusionPipeline

from sv4d_kit import cameras, checks, sampling
from sv4d_kit.checks import KitInputError
from sv4d_kit.models.autoencoder import decode_latents

# What each released variant does at sampling time (sv4d2_hparams.json: variants.*.script).
VARIANTS = {
    "sv4d2": dict(
        frames_per_chunk=12,
        num_views=4,
        chunk_overlap=0,
        guider="linear",
        min_guidance=1.0,
        max_guidance=2.0,
        azimuths_deg=(0.0, *cameras.SV4D_VARIANTS["sv4d2"]["azimuths_deg"]),
    ),
    "sv4d2_8views": dict(
        frames_per_chunk=5,
        num_views=8,
        chunk_overlap=1,
        guider="spatiotemporal",
        min_guidance=1.5,
        max_guidance=2.5,
        azimuths_deg=(0.0, *cameras.SV4D_VARIANTS["sv4d2_8views"]["azimuths_deg"]),
    ),
    # the kit's bundled tiny SV4D (`sv4d_kit.training`): 4 frames x 4 novel views evenly around the orbit
    "tiny": dict(
        frames_per_chunk=4,
        num_views=4,
        chunk_overlap=1,
        guider="constant",
        min_guidance=1.0,
        max_guidance=2.0,
        azimuths_deg=(0, 72, 144, 216, 288),
    ),
}
# The reference script's sampler settings (sv4d2_hparams.json: variants.*.script.options; its EulerEDMSampler).
REFERENCE_SAMPLING = dict(
    num_inference_steps=50, sigma_min=0.002, sigma_max=700.0, rho=7.0, s_churn=0.0, s_tmin=0.0, s_tmax=999.0,
    s_noise=1.0, sampler="euler",
)  # fmt: skip
# The keys of `sampling` (config and arguments): the keys of `sampling.SETTING_CHECKS`, which checks them.
SAMPLING_KEYS = (*REFERENCE_SAMPLING, "guider", "min_guidance", "max_guidance")
GUIDERS = sampling.GUIDERS
SAMPLERS = sampling.SAMPLERS


@dataclass
class SV4DPipelineOutput:
    """The result of one generation.

    images: (T, V+1, 3, H, W) in [0, 1] (or uint8 numpy (T, V+1, H, W, 3) / nested PIL lists per `output_type`);
    view 0 is the (preprocessed) input. cameras: absolute elevations/azimuths of the V+1 views, the relative radians
    the model saw, and the chunk plan. timings: seconds per stage. sampling: the sampler settings it ran with
    (`SAMPLING_KEYS`: the arguments, else the model's `config.sampling`, else the reference's).
    """

    images: object
    cameras: dict
    timings: dict = field(default_factory=dict)
    sampling: dict = field(default_factory=dict)


def chunk_starts(num_frames: int, frames_per_chunk: int, overlap: int = 0) -> list[int]:
    """First frames of the chunks: every `T - overlap` frames, a chunk running past the end realigned to end on it.

    sv4d2 uses overlap 0 (`range(0, n, T)`), sv4d2_8views overlap 1 (`range(0, n - T + 1, T - 1)`). The reference's
    8-view plan can stop short of the last frames (n = 22, T = 5 ends at frame 20); here a realigned last chunk
    always covers them.
    """
    T = min(frames_per_chunk, num_frames)
    step = T - overlap if T > overlap else T
    starts = [min(s, num_frames - T) for s in range(0, num_frames - (overlap if T > overlap else 0), step)]
    return sorted(set(starts))


def guidance_scale(kind: str, T: int, V: int, min_scale: float, max_scale: float) -> torch.Tensor:
    """The per-frame guidance scale (1, T*V) of a guider kind, in (t v) order."""
    if kind == "linear":
        return sampling.linear_scale(T * V, min_scale, max_scale)
    if kind == "spatiotemporal":
        return sampling.spatiotemporal_scale(T * V, V, min_scale, max_scale)
    if kind == "triangle":
        return sampling.triangle_scale(T * V, min_scale, max_scale)
    if kind == "constant":
        return sampling.cfg_scale(T * V, max_scale)
    if kind == "none":
        return sampling.identity_scale(T * V)
    raise KitInputError(f"guider must be one of {GUIDERS}, got {kind!r}")


def check_sigma_data(sigma_data) -> float | list[float] | None:
    """A pipeline's `sigma_data`: None, a number > 0, or a non-empty list of them (one per latent channel)."""
    if sigma_data is None:
        return None
    if not isinstance(sigma_data, (list, tuple)):
        return checks.positive("sigma_data", sigma_data)
    if not sigma_data:
        raise KitInputError("sigma_data must be a number > 0 or a non-empty list of them, got []")
    return [checks.positive(f"sigma_data[{i}]", v) for i, v in enumerate(sigma_data)]


class SV4DPipeline(DiffusionPipeline):
    """SV4D 2.0 generation: conditioner -> EDM sampling (Euler or Heun) of the UNet -> VAE decode, chunk by chunk."""

    model_cpu_offload_seq = "conditioner->unet->vae"

    def __init__(
        self,
        unet,
        conditioner,
        vae,
        variant: str = "sv4d2",
        frames_per_chunk: int | None = None,
        num_views: int | None = None,
        image_size: int = 576,
        sampling: dict | None = None,
        sigma_data: float | list[float] | None = None,
    ):
        super().__init__()
        if variant not in VARIANTS:
            raise KitInputError(f"variant must be one of {sorted(VARIANTS)}, got {variant!r}")
        self.register_modules(unet=unet, conditioner=conditioner, vae=vae)
        defaults = VARIANTS[variant]
        self.register_to_config(
            variant=variant,
            frames_per_chunk=int(frames_per_chunk or defaults["frames_per_chunk"]),
            num_views=int(num_views or defaults["num_views"]),
            image_size=int(image_size),  # the resolution the model was trained at (preprocessing default)
            sampling=dict(
                sampling or {}
            ),  # defaults of __call__ for this model (`SAMPLING_KEYS`), e.g. its steps
            # the data std its denoiser's V-scaling assumes (`sampling.preconditioning`): None is SV4D 2.0's 1;
            # a kit-trained model may have one per latent channel
            sigma_data=check_sigma_data(sigma_data),
        )
        channels = getattr(unet.config, "out_channels", None) if unet is not None else None
        if isinstance(self.config.sigma_data, list) and len(self.config.sigma_data) != channels:
            raise KitInputError(f"sigma_data has {len(self.config.sigma_data)} values, the UNet's latents "
                                f"{channels} channels")  # fmt: skip
        self._offload_device = None

    @classmethod
    def from_pretrained(
        cls,
        pretrained: str | os.PathLike = "tiny",
        variant: str | None = None,
        download: bool = False,
        torch_dtype: torch.dtype | None = None,
        **kwargs,
    ) -> SV4DPipeline:
        """Load `"tiny"` (the bundled tiny SV4D, float32 unless `torch_dtype` says otherwise), a kit folder
        (`save_pretrained`), a released checkpoint file (`sv4d2.safetensors`, `sv4d2_8views.safetensors`) or a hub
        id. Nothing is downloaded unless `download=True` (never when `HF_HUB_OFFLINE` is set); a missing file
        gives one message saying what to download and where to put it. Weights are loaded in `torch_dtype` (not
        cast afterwards), and loading writes nothing to stderr.
        """
        from sv4d_kit.models import bundled, checkpoint  # the kit's model classes, registered for diffusers

        if bundled.is_bundled(pretrained):
            with bundled.model_folder(pretrained) as path:
                if not (path / "model_index.json").is_file():
                    raise FileNotFoundError(
                        f"the bundled tiny model is missing from {path} (run `make tiny-model`)"
                    )
                pipe = cls._from_folder(path, torch_dtype or torch.float32, **kwargs)
            pipe.register_to_config(
                _name_or_path=bundled.TINY
            )  # its name, not a temporary or site-packages path
            return pipe
        path = Path(pretrained)
        if path.is_dir():
            if not (path / "model_index.json").exists():
                raise KitInputError(f"{str(path)!r} is not a kit model folder (no model_index.json)")
            return cls._from_folder(path, torch_dtype, **kwargs)
        if (
            path.suffix == ".safetensors"
            or path.exists()
            or str(pretrained) == checkpoint.HUB_REPO
            or variant
        ):
            unet, cond, vae = checkpoint.load_checkpoint(
                pretrained, variant, dtype=torch_dtype, download=download
            )
            variant = "sv4d2" if unet.config.use_3d_attention else "sv4d2_8views"
            pipe = cls(unet, cond, vae, variant=variant)
            pipe.register_to_config(_name_or_path=str(pretrained))
            return pipe
        offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
        if not download or offline:
            kwargs["local_files_only"] = True
        try:
            return cls._from_folder(str(pretrained), torch_dtype, **kwargs)
        except OSError as e:
            raise KitInputError(
                f"model {str(pretrained)!r} is neither a local folder/file nor a cached hub model "
                f"(pass download=True to fetch it): {str(e).splitlines()[0]}"
            ) from None

    @classmethod
    def _from_folder(cls, folder, torch_dtype: torch.dtype | None, **kwargs) -> SV4DPipeline:
        """diffusers' loading of a pipeline folder (local or hub), in `torch_dtype`, without its progress bar."""
        from diffusers.pipelines import pipeline_utils
        from diffusers.utils import logging as diffusers_logging

        if (
            torch_dtype is not None
        ):  # diffusers renamed `torch_dtype` to `dtype` (and warns about the old name)
            kwargs["dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"] = torch_dtype
        bar = diffusers_logging.is_progress_bar_enabled()
        diffusers_logging.disable_progress_bar()
        try:
            return super().from_pretrained(folder, **kwargs)
        finally:
            if bar:
                diffusers_logging.enable_progress_bar()

    @classmethod
    def from_preset(cls, name: str, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
        """A full-size released architecture with random weights (benchmarks, memory planning)."""
        from sv4d_kit.models import checkpoint

        unet, cond, vae = checkpoint.build_models(name, device=device, dtype=dtype)
        return cls(unet.eval(), cond.eval(), vae.eval(), variant=name)

    # ------------------------------------------------------------------ memory and devices

    def enable_model_cpu_offload(
        self, gpu_id: int | None = None, device: str | torch.device = "cuda"
    ) -> None:
        """Keep every model on the CPU and move each to the accelerator only while its stage runs (as the reference).

        As diffusers: the accelerator is `device` ("cuda", "cuda:1", ...) with index `gpu_id` when given (default:
        the device's index, else 0); giving an index both ways is an error. `device="cpu"` runs the same staging
        without moving anything (tests)."""
        device = torch.device(device)
        if gpu_id is not None and (device.index is not None or device.type == "cpu"):
            raise KitInputError(
                f"gpu_id {gpu_id} does not apply to device {str(device)!r}: give the index once"
            )
        if device.type != "cpu":
            index = device.index if gpu_id is None else checks.integer("gpu_id", gpu_id, minimum=0)
            device = torch.device(device.type, index or 0)
        self._offload_device = device
        self.to("cpu")

    @contextlib.contextmanager
    def _stage(self, module: torch.nn.Module):
        """Run one stage with `module` on the execution device; with offload, it goes back to the CPU after."""
        if self._offload_device is None:
            yield module
            return
        module.to(self._offload_device)
        try:
            yield module
        finally:
            module.to("cpu")
            if self._offload_device.type == "cuda":
                torch.cuda.empty_cache()

    @property
    def vae_scale_factor(self) -> int:
        """Image pixels per latent pixel: 8 for the SD VAE of SV4D 2.0 (`downsample_factor` for other latents)."""
        factor = getattr(self.vae.config, "downsample_factor", None)
        return int(factor or 2 ** (len(self.vae.config.block_out_channels) - 1))

    @property
    def execution_device(self) -> torch.device:
        return self._offload_device or self.unet.device

    # ------------------------------------------------------------------ inputs

    def default_azimuths(self) -> list[float]:
        """Azimuths (degrees) of the input view and the V novel views when none are given."""
        V = self.config.num_views
        preset = VARIANTS[self.config.variant]["azimuths_deg"]
        if len(preset) == V + 1:
            return [float(a) for a in preset]
        return [float(a) for a in cameras.orbit_azimuths(V + 1)]

    def sampling_options(self, **given) -> dict:
        """Sampler settings: the reference's for the variant, then the model's own (`config.sampling`), then `given`
        (None means "not given")."""
        defaults = VARIANTS[self.config.variant]
        opts = {**REFERENCE_SAMPLING, **{k: defaults[k] for k in ("guider", "min_guidance", "max_guidance")}}
        opts.update(self.config.sampling or {})
        unknown = set(given) - set(SAMPLING_KEYS)
        if unknown:
            raise KitInputError(f"unknown sampling options {sorted(unknown)}; known: {SAMPLING_KEYS}")
        opts.update({k: v for k, v in given.items() if v is not None})
        return opts

    def check_inputs(
        self, frames, elevations_deg, azimuths_deg, num_inference_steps, min_guidance, max_guidance
    ):
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise KitInputError(
                f"frames must be (T, 3, H, W) or (3, H, W) in [0, 1], got {tuple(frames.shape)}"
            )
        if frames.shape[0] < 1:
            raise KitInputError("frames must hold at least 1 frame")
        if not torch.isfinite(frames).all() or frames.min() < 0 or frames.max() > 1:
            raise KitInputError("frames must be finite values in [0, 1]")
        V = self.config.num_views
        if len(azimuths_deg) != V + 1:
            raise KitInputError(
                f"azimuths_deg must hold {V + 1} values (input view + {V} novel views), "
                f"got {len(azimuths_deg)}"
            )
        if len(elevations_deg) != V + 1:
            raise KitInputError(
                f"elevations_deg must be one value or {V + 1} values, got {len(elevations_deg)}"
            )
        checks.integer("num_inference_steps", num_inference_steps, minimum=1)
        checks.number("min_guidance", min_guidance, minimum=0)
        checks.number("max_guidance", max_guidance, minimum=0)
        spatial = self.vae_scale_factor * 2 ** (len(self.unet.config.channel_mult) - 1)
        if frames.shape[-1] != frames.shape[-2] or frames.shape[-1] % spatial:
            raise KitInputError(
                f"frames must be square with a side divisible by {spatial}, "
                f"got {frames.shape[-2]}x{frames.shape[-1]}"
            )

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def __call__(
        self,
        frames: torch.Tensor,
        elevations_deg: float | Sequence[float] = 0.0,
        azimuths_deg: Sequence[float] | None = None,
        num_inference_steps: int | None = None,
        guider: str | None = None,
        min_guidance: float | None = None,
        max_guidance: float | None = None,
        sampler: str | None = None,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        rho: float | None = None,
        s_churn: float | None = None,
        s_tmin: float | None = None,
        s_tmax: float | None = None,
        s_noise: float | None = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        encode_chunk_size: int | None = 8,
        decode_chunk_size: int | None = 4,
        callback_on_step_end: Callable | None = None,
        output_type: str = "pt",
        progress: bool = True,
    ) -> SV4DPipelineOutput:
        """Generate V novel-view videos of the object in `frames`.

        frames: (T, 3, H, W) in [0, 1] (one frame (3, H, W) or (1, 3, H, W) gives a still clip: "one image ->
        360°"), preprocessed (object centred on white, see `sv4d_kit.preprocess`). elevations_deg: one value or
        V+1 values; azimuths_deg: V+1 values, view 0 = input view (default: the variant's). guider: "linear" (sv4d2),
        "spatiotemporal" (8 views), "triangle", "constant" or "none" with its min/max scale; a scale of 1 everywhere
        ("none", or "constant" at 1) runs the network once a step instead of twice (the unconditional half is
        skipped). sampler: "euler" (the reference's) or "heun" (Karras et al.'s 2nd order, `sampling.sample_heun_edm`:
        about twice the network calls for the same steps). generator or seed make it deterministic.
        callback_on_step_end(pipe, step, sigma, tensors) gets {"latents", "denoised", "chunk"} and may return
        {"latents": ...} to change them. s_churn, s_tmin, s_tmax, s_noise: the reference sampler's churn (off by
        default). Options left None take the model's `config.sampling`, then the reference's (the output's
        `sampling` says what ran). output_type: "pt", "np" or "pil".
        """
        timings = {"encode": 0.0, "sample": 0.0, "decode": 0.0}
        defaults = VARIANTS[self.config.variant]

        # 1. Check inputs
        opts = self.sampling_options(
            num_inference_steps=num_inference_steps, guider=guider, min_guidance=min_guidance,
            max_guidance=max_guidance, sampler=sampler, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho,
            s_churn=s_churn, s_tmin=s_tmin, s_tmax=s_tmax, s_noise=s_noise,
        )  # fmt: skip
        opts = sampling.check_settings(opts)  # each setting in its range, sigma_min < sigma_max
        num_inference_steps, guider = opts["num_inference_steps"], opts["guider"]
        sample = sampling.SAMPLER_FUNCTIONS[opts["sampler"]]  # sample_euler_edm or sample_heun_edm
        min_guidance, max_guidance = opts["min_guidance"], opts["max_guidance"]
        sigma_min, sigma_max, rho = opts["sigma_min"], opts["sigma_max"], opts["rho"]
        churn = {k: opts[k] for k in ("s_churn", "s_tmin", "s_tmax", "s_noise")}
        frames = torch.as_tensor(frames, dtype=torch.float32)
        if frames.ndim == 3:
            frames = frames[None]  # (3, H, W) -> (1, 3, H, W)
        if frames.ndim == 4 and frames.shape[0] == 1:
            # one image: a still clip of one chunk ("one frame -> 360°")
            frames = frames.expand(self.config.frames_per_chunk, -1, -1, -1)
        azimuths_deg = self.default_azimuths() if azimuths_deg is None else [float(a) for a in azimuths_deg]
        if np.ndim(elevations_deg) == 0:
            elevations_deg = [float(elevations_deg)] * (self.config.num_views + 1)
        elevations_deg = [float(e) for e in elevations_deg]
        self.check_inputs(
            frames, elevations_deg, azimuths_deg, num_inference_steps, min_guidance, max_guidance
        )
        min_guidance, max_guidance = float(min_guidance), float(max_guidance)
        if generator is None:
            generator = torch.Generator().manual_seed(23 if seed is None else int(seed))
        device, dtype = self.execution_device, self.unet.dtype
        n_frames, _, H, W = frames.shape
        V = self.config.num_views
        T = min(self.config.frames_per_chunk, n_frames)

        # 2. Cameras: SV4D's relative polar/azimuth radians of the V novel views, tiled over T in (t v) order
        polar, azimuth = cameras.sv4d_relative_angles(elevations_deg, azimuths_deg, T)  # (T*V,), (T*V,)
        polar, azimuth = polar.float().to(device), azimuth.float().to(device)

        # 3. Sampling schedule and guidance
        sigmas = sampling.edm_sigmas(num_inference_steps, sigma_min, sigma_max, rho).to(device)  # (steps+1,)
        scale = guidance_scale(guider, T, V, min_guidance, max_guidance).to(device)  # (1, T*V)
        starts = chunk_starts(n_frames, T, defaults["chunk_overlap"])

        # 4. The image matrix in [-1, 1]: view 0 is the input; novel views are filled chunk by chunk
        matrix = torch.zeros(n_frames, V + 1, 3, H, W)  # (T_all, V+1, 3, H, W)
        matrix[:, 0] = frames * 2 - 1
        bar = self.progress_bar(total=len(starts) * num_inference_steps) if progress else None

        for chunk, t0 in enumerate(starts):
            # 5. Encode the conditioning: input frames t0..t0+T (motion) and the views at t0 (zeros for chunk 0)
            tic = time.perf_counter()
            cond_motion = matrix[t0 : t0 + T, 0].to(device, dtype)  # (T, 3, H, W)
            cond_view = matrix[t0, 1:].to(device, dtype)  # (V, 3, H, W)
            with self._stage(self.conditioner):
                c = self.conditioner(
                    cond_motion,
                    cond_view,
                    polar.to(dtype),
                    azimuth.to(dtype),
                    generator=generator,
                    encode_chunk_size=encode_chunk_size,
                )
                uc = self.conditioner.unconditional(c)
            first = chunk == 0
            if first:  # the first chunk ignores the views at t0 (the reference multiplies them by 0)
                c["cond_view"], uc["cond_view"] = c["cond_view"] * 0, uc["cond_view"] * 0
            timings["encode"] += time.perf_counter() - tic

            # 6. Prepare latents: x = noise * sqrt(1 + sigma_0^2)
            tic = time.perf_counter()
            h, w = c["concat"].shape[-2:]
            shape = (T * V, self.unet.config.out_channels, h, w)  # (T*V, 4, h, w) for SV4D 2.0
            noise = torch.randn(shape, generator=generator, device=generator.device)
            noise = noise.to(device, dtype)
            latents = sampling.initial_latent(noise, sigmas, self.config.sigma_data)

            # 7. Denoising loop: Euler (or Heun) steps, with the reference's optional churn, of the guided denoiser
            denoiser = sampling.make_denoiser(
                self.unet,
                scale,
                image_only_indicator=0.0 if first else 1.0,
                skip_unguided=True,
                sigma_data=self.config.sigma_data,
            )  # guidance 1 everywhere: the unconditional half is skipped

            def step_end(i, latents, denoised, chunk=chunk):
                if bar is not None:
                    bar.update()
                if callback_on_step_end is None:
                    return None
                tensors = {"latents": latents, "denoised": denoised, "chunk": chunk}
                return (callback_on_step_end(self, i, float(sigmas[i]), tensors) or {}).get("latents")

            with self._stage(self.unet):
                latents = sample(
                    denoiser, latents, sigmas, extra_args={"cond": c, "uncond": uc}, disable=True,
                    generator=generator, step_end=step_end, **churn,
                )  # fmt: skip
            timings["sample"] += time.perf_counter() - tic

            # 8. Decode: (T*V, 4, h, w) -> (T, V, 3, H, W) in [0, 1], back into the matrix in [-1, 1]
            tic = time.perf_counter()
            with self._stage(self.vae):
                images = decode_latents(self.vae, latents, chunk_size=decode_chunk_size)
            matrix[t0 : t0 + T, 1:] = images.float().cpu().view(T, V, 3, H, W) * 2 - 1
            timings["decode"] += time.perf_counter() - tic
        if bar is not None:
            bar.close()

        # 9. Outputs
        images = ((matrix + 1) / 2).clamp(0, 1)  # (T_all, V+1, 3, H, W)
        camera_info = {
            "elevations_deg": elevations_deg,
            "azimuths_deg": azimuths_deg,
            "relative_polar_rad": polar[:V].tolist(),
            "relative_azimuth_rad": azimuth[:V].tolist(),
            "frames_per_chunk": T,
            "chunk_starts": starts,
        }
        return SV4DPipelineOutput(
            images=_convert(images, output_type), cameras=camera_info, timings=timings, sampling=opts
        )


def _convert(images: torch.Tensor, output_type: str):
    if output_type == "pt":
        return images
    if output_type in ("np", "pil"):
        arr = images.mul(255).round().to(torch.uint8).permute(0, 1, 3, 4, 2).numpy()  # (T, V, H, W, 3)
        if output_type == "np":
            return arr
        from PIL import Image

        return [[Image.fromarray(view) for view in frame] for frame in arr]
    raise KitInputError(f"output_type must be 'pt', 'np' or 'pil', got {output_type!r}")
