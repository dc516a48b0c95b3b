"""Train the kit's tiny SV4D on its own procedural 4D scenes, the way SV4D 2.0 was trained, in miniature.

One training step renders `batch_scenes` random scenes from `synthetic.py`, each as a chunk of T frames seen from
the input view and V novel views on an orbit, and regresses the UNet onto the v-objective of the
`VScalingWithEDMcNoise` preconditioning at EDM log-normal noise levels (log σ ~ N(P_mean, P_std)):

    x = x0 + σ ε,   F = unet([c_in x, concat], c_noise, ...),   loss = |F - (x0 - c_skip x) / c_out|²

with SV4D 2.0's tricks: condition dropout (a scene's whole conditioning replaced by `conditioner.unconditional`,
so classifier-free guidance works), random masking of the view conditioning (as the first chunk at inference) and
the progressive schedule (static orbits first, then moving scenes). Latents live in the parameter-free
space-to-depth space (`SpaceToDepthAutoencoder`; with `latent_channels` k, projected onto the k leading principal
directions of the blocks, fitted on rendered scenes when the model is built); a small CLIP-shaped image tower is
trained jointly from scratch.

`train(config, output_dir)` writes resumable checkpoints (safetensors weights, `weights_only` optimizer state) and
ends with the exported pipeline folder (`SV4DPipeline.save_pretrained`), the one bundled in
`sv4d_kit/assets/tiny_sv4d/` (see `load_tiny_pipeline`). Everything is deterministic in `config.seed`.

The bundled weights were made in two stages (`make tiny-model` runs both; BENCHMARKS.md):

    sv4d-kit train --output runs/tiny-base --no-progress                     # 1: the defaults of TrainConfig
    sv4d-kit train --output runs/tiny-finetune --config recipes/tiny_finetune.json \
        --export sv4d_kit/assets/tiny_sv4d --no-progress                      # 2: fine-tune at high noise levels, L1

Stage 1 is 5500 steps of 8 scenes x 4 frames x 5 views at 32 px, seed 0, log sigma ~ N(0.7, 1.6) (6175 s at about
1.1 s a step on the 2-core CPU of 2026-11-28; about 3.5 s a step on the slower one of 2026-11-30). Stage 2 starts
from stage 1's export and trains 1000 steps at log sigma ~ N(3.3, 0.7), the noise levels the sampler visits, at
lr 1e-4 with the L1 loss (`loss="l1"`: the network's x0 estimate becomes the per-pixel conditional median, whose
silhouettes have sharp edges where the mean's are a tinted halo; 3075 s on the machine of 2026-12-01). Its sampling
defaults (6 steps, sigma 80 -> 55, no guidance) were chosen on validation scenes. Add --resume to continue an
interrupted stage. On a GPU, `--device cuda --workers N` trains there while N processes render the scenes
(`make tiny-model-gpu`: a stage 3 of 1750 steps x 32 scenes from the bundled model; see BENCHMARKS.md).

`RUN_DIR/summary.json` and the exported folder's `training.json` record the steps, the wall time and the final loss.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from sv4d_kit import cameras, synthetic
from sv4d_kit.models.checkpoint import tiny_configs
from sv4d_kit.models.conditioner import SV4DConditioner
from sv4d_kit.models.latent import SpaceToDepthAutoencoder, check_latent_channels
from sv4d_kit.models.unet import SV4DUNet
from sv4d_kit.sampling import vscaling_edm_cnoise

TINY_ASSET = "tiny_sv4d"  # the bundled model folder under sv4d_kit/assets/
LOSSES = ("l2", "l1")


@dataclass
class TrainConfig:
    """Everything that defines a tiny-SV4D training run (the defaults are stage 1 of the bundled weights' recipe;
    stage 2 is `recipes/tiny_finetune.json`)."""

    # data
    image_size: int = 32  # rendered image side (pixels)
    downsample_factor: int = 4  # space-to-depth factor: latents are (3 f², size/f, size/f)
    frames: int = 4  # T, frames per chunk
    clip_frames: int = (
        21  # a chunk is T consecutive frames of a clip of this many (times k / (clip_frames-1))
    )
    novel_azimuths_deg: tuple[float, ...] = (
        72.0,
        144.0,
        216.0,
        288.0,
    )  # V novel views, relative to the input
    elevation_range_deg: tuple[float, float] = (0.0, 20.0)  # camera elevation, uniform
    num_train_scenes: int = 200_000  # scene seeds are drawn from synthetic.training_seeds(num_train_scenes)
    supersample: int = 2  # anti-aliasing of the renderer
    latent_shift: float = 0.80  # space-to-depth latents are (pixels - shift) * scale: ~zero mean, unit std
    latent_scale: float = 2.1
    # None: the lossless 3·f² channels; k: the top-k principal directions of the f×f blocks (a linear autoencoder
    # fitted by PCA on `projection_scenes` rendered training scenes when the model is built; then use shift 0)
    latent_channels: int | None = None
    projection_scenes: int = 48
    # model
    model_channels: int = 64
    channel_mult: tuple[int, ...] = (1, 1, 1)
    num_res_blocks: int = 1
    num_head_channels: int = 32
    context_dim: int = 64
    clip_width: int = 64
    clip_layers: int = 2
    clip_patch_size: int = 8
    # optimisation
    steps: int = 5500
    batch_scenes: int = 8
    lr: float = 3e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1  # cosine decay to lr * min_lr_ratio at the last step
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    P_mean: float = 0.7  # log-normal training noise levels (SVD's and SV4D's: log sigma ~ N(0.7, 1.6))
    P_std: float = 1.6
    # "l2": the squared v-objective error (SV4D 2.0's); "l1": its absolute value, whose minimiser is the
    # per-pixel conditional median of x0 instead of the mean (generative-models' StandardDiffusionLoss loss_type)
    loss: str = "l2"
    static_fraction: float = 0.25  # the first steps train on static orbits (3D) only
    static_mix: float = 0.2  # afterwards (4D), this share of scenes is still static
    p_uncond: float = 0.1  # condition dropout per scene
    p_mask_view: float = 0.5  # view-conditioning masking per scene
    seed: int = 0
    # Fine-tuning: start from the UNet and image-tower weights of an exported pipeline folder (same architecture;
    # "tiny" = the bundled model) with a fresh optimizer, instead of a fresh initialisation.
    init_from: str | None = None
    checkpoint_every: int = 100
    threads: int = 2  # torch CPU threads (the recipe's run had the 2-core CPU to itself)
    # The exported pipeline's sampling defaults (`SV4DPipeline.config.sampling`), tuned after stage 1 on
    # validation scenes (held-out evaluation seeds 50 and 51); stage 2's recipe sets its own (sigma 80 -> 55, 6
    # steps, tuned the same way for the L1 model). sigma_min is high on purpose: the tiny net's samples carry
    # coloured speckle where it cannot tell content at sigma ~ 1-5, so sampling stops early and returns its denoised
    # estimate (the last Euler step lands on D(x)). Guidance 1 (none) scored better than 1.5 there and runs the
    # network once a step instead of twice (BENCHMARKS.md).
    sampling: dict = field(
        default_factory=lambda: dict(
            num_inference_steps=12,
            sigma_max=80.0,
            sigma_min=20.0,
            guider="constant",
            min_guidance=1.0,
            max_guidance=1.0,
        )  # fmt: skip
    )

    def __post_init__(self):
        self.novel_azimuths_deg = tuple(float(a) for a in self.novel_azimuths_deg)
        self.elevation_range_deg = tuple(float(e) for e in self.elevation_range_deg)
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError (one line, naming the field) for values outside their range."""

        def positive_int(name, minimum=1):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")

        for name in (
            "image_size",
            "downsample_factor",
            "frames",
            "clip_frames",
            "num_train_scenes",
            "supersample",
            "model_channels",
            "num_res_blocks",
            "num_head_channels",
            "context_dim",
            "clip_width",
            "clip_layers",
            "clip_patch_size",
            "steps",
            "batch_scenes",
            "checkpoint_every",
            "threads",
            "projection_scenes",
        ):
            positive_int(name)
        positive_int("warmup_steps", 0)
        positive_int("seed", 0)
        check_latent_channels(self.latent_channels, 3 * self.downsample_factor**2)
        if self.frames > self.clip_frames:
            raise ValueError(f"frames must be <= clip_frames ({self.clip_frames}), got {self.frames}")
        if len(self.novel_azimuths_deg) < 1:
            raise ValueError("novel_azimuths_deg must hold at least one azimuth")
        lo, hi = self.elevation_range_deg if len(self.elevation_range_deg) == 2 else (1, 0)
        if not -90 <= lo <= hi <= 90:
            raise ValueError(f"elevation_range_deg must be (lo, hi) with -90 <= lo <= hi <= 90, "
                             f"got {self.elevation_range_deg}")  # fmt: skip
        spatial = self.downsample_factor * 2 ** (len(self.channel_mult) - 1)
        if self.image_size % spatial or self.image_size % self.clip_patch_size:
            raise ValueError(f"image_size must be a multiple of {spatial} and of clip_patch_size, "
                             f"got {self.image_size}")  # fmt: skip
        for name in ("lr", "latent_scale"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.P_std > 0:
            raise ValueError(f"P_std must be > 0, got {self.P_std!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        for name in ("static_fraction", "static_mix", "p_uncond", "p_mask_view", "min_lr_ratio"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], got {value!r}")
        if self.init_from is not None and not isinstance(self.init_from, str):
            raise ValueError(f"init_from must be a model folder (a string) or null, got {self.init_from!r}")
        if not 0 <= self.weight_decay or not self.grad_clip > 0:
            raise ValueError(f"weight_decay must be >= 0 and grad_clip > 0, got {self.weight_decay}, "
                             f"{self.grad_clip}")  # fmt: skip

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from (a subset of) its fields; unknown keys raise ValueError."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


# ---------------------------------------------------------------------------------------------------------------
# The model


def build_tiny_sv4d(config: TrainConfig, seed: int | None = None):
    """The tiny SV4D as an `SV4DPipeline` (variant "tiny"): 8-view-layout UNet (view attention across the V views),
    a small CLIP-shaped image tower and the space-to-depth latent space, freshly initialised from `seed`."""
    from sv4d_kit.pipeline import SV4DPipeline

    torch.manual_seed(config.seed if seed is None else seed)
    f = config.downsample_factor
    vae = SpaceToDepthAutoencoder(f, scaling_factor=config.latent_scale, shift_factor=config.latent_shift,
                                  latent_channels=config.latent_channels)  # fmt: skip
    if config.latent_channels is not None:
        vae.fit_projection(projection_images(config))
    latent = vae.num_latent_channels
    mc = config.model_channels
    unet_params = dict(tiny_configs("sv4d2_8views", mc, config.context_dim)["unet"])
    unet_params.update(
        in_channels=2 * latent, out_channels=latent, motion_context_dim=latent, channel_mult=list(config.channel_mult),
        attention_resolutions=[2**i for i in range(len(config.channel_mult))], num_res_blocks=config.num_res_blocks,
        num_head_channels=config.num_head_channels, adm_in_channels=4 * mc, use_3d_attention=False,
    )  # fmt: skip
    unet = SV4DUNet.from_reference_config(unet_params)
    clip = dict(
        image_size=config.image_size,
        patch_size=config.clip_patch_size,
        width=config.clip_width,
        layers=config.clip_layers,
        head_width=min(32, config.clip_width),
        embed_dim=config.context_dim,
    )
    angle = (4 * mc - mc) // 2
    conditioner = SV4DConditioner(clip_config=clip, sigma_embed_dim=4 * mc - 2 * angle, angle_embed_dim=angle,
                                  latent_type="space_to_depth", downsample_factor=f,
                                  latent_channels=config.latent_channels)  # fmt: skip
    conditioner.share_projection(vae)
    return SV4DPipeline(unet, conditioner, vae, variant="tiny", frames_per_chunk=config.frames,
                        num_views=len(config.novel_azimuths_deg), image_size=config.image_size,
                        sampling=config.sampling)  # fmt: skip


def projection_images(config: TrainConfig) -> torch.Tensor:
    """The images the projected latent space is fitted on: all frames and views of `projection_scenes` training
    scenes as the 4D phase renders them, from a seed of their own. -> (N, 3, S, S) in [-1, 1]"""
    cfg = replace(config, seed=config.seed + 7919, static_fraction=0.0, batch_scenes=16, steps=1)
    batches = [make_batch(cfg, i, min(16, config.projection_scenes - 16 * i))
               for i in range(math.ceil(config.projection_scenes / 16))]  # fmt: skip
    return torch.cat([b.images.flatten(0, 2) for b in batches])


def model_folder(name: str):
    """A context giving the path of a model folder `name`, or of the bundled tiny model for "tiny"."""
    if name == "tiny":
        return resources.as_file(resources.files("sv4d_kit") / "assets" / TINY_ASSET)
    return contextlib.nullcontext(Path(name))


def load_tiny_pipeline(torch_dtype: torch.dtype | None = None):
    """The bundled tiny SV4D (`sv4d_kit/assets/tiny_sv4d/`, trained by `sv4d-kit train`) as an `SV4DPipeline`.

    The weights are stored in float16; they are loaded as float32 unless `torch_dtype` says otherwise."""
    from sv4d_kit.pipeline import SV4DPipeline

    with model_folder("tiny") as path:
        if not (path / "model_index.json").exists():
            raise FileNotFoundError(f"the bundled tiny model is missing from {path} (run `sv4d-kit train`)")
        return SV4DPipeline.from_pretrained(path, torch_dtype=torch_dtype or torch.float32)


# ---------------------------------------------------------------------------------------------------------------
# Data


@dataclass
class Batch:
    """One training batch of B scenes (pixels in [-1, 1]).

    images: (B, T, V+1, 3, H, W), view 0 = input view; polar, azimuth: (B, T*V) relative radians (t v);
    static: (B,) bool.
    """

    images: torch.Tensor
    polar: torch.Tensor
    azimuth: torch.Tensor
    static: torch.Tensor


def make_batch(config: TrainConfig, step: int, batch_scenes: int | None = None) -> Batch:
    """Render the batch of training step `step`: a pure function of (config.seed, step).

    Each scene: a random training seed, input azimuth uniform in [0, 360), one elevation for all views, T
    consecutive clip frames; static (the t = 0 object at rest) for the first `static_fraction` of the steps and
    for a `static_mix` share of the scenes after that.
    """
    rng = np.random.default_rng([config.seed, step, 1])
    B = batch_scenes or config.batch_scenes
    T, S = config.frames, config.image_size
    images, polars, azimuths, static = [], [], [], []
    for _ in range(B):
        seed = int(rng.integers(0, config.num_train_scenes))
        is_static = step < config.static_fraction * config.steps or rng.uniform() < config.static_mix
        scene = synthetic.make_scene(seed, dynamic=not is_static)
        a0 = float(rng.uniform(0, 360))
        elev = float(rng.uniform(*config.elevation_range_deg))
        t0 = int(rng.integers(0, config.clip_frames - T + 1))
        times = torch.arange(t0, t0 + T, dtype=torch.float32) / max(config.clip_frames - 1, 1)
        azims = [a0] + [(a0 + a) % 360 for a in config.novel_azimuths_deg]
        E = cameras.orbit_extrinsics(
            torch.tensor(azims), torch.full((len(azims),), elev), synthetic.DEFAULT_RADIUS
        )
        K = cameras.intrinsics(synthetic.DEFAULT_FOV, S, S)
        out = synthetic.render(scene, E, K, S, S, times, config.supersample)
        images.append(out.rgb * 2 - 1)  # (T, V+1, 3, S, S) in [-1, 1]
        polar, azimuth = cameras.sv4d_relative_angles([elev] * len(azims), azims, T)  # (T*V,), (T*V,)
        polars.append(polar.float())
        azimuths.append(azimuth.float())
        static.append(is_static)
    return Batch(torch.stack(images), torch.stack(polars), torch.stack(azimuths), torch.tensor(static))


# ---------------------------------------------------------------------------------------------------------------
# The loss


def diffusion_loss(pipe, batch: Batch, config: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """The v-objective loss of one batch, with condition dropout and view masking (see the module docstring)."""
    unet, conditioner, vae = pipe.unet, pipe.conditioner, pipe.vae
    B, T, V1 = batch.images.shape[:3]
    V = V1 - 1
    cs, uncond, mask = [], torch.rand(B, generator=generator), torch.rand(B, generator=generator)
    for b in range(B):
        c = conditioner(batch.images[b, :, 0], batch.images[b, 0, 1:], batch.polar[b], batch.azimuth[b],
                        generator=generator)  # fmt: skip
        if mask[b] < config.p_mask_view:  # as the first chunk at inference: no view conditioning
            c["cond_view"] = c["cond_view"] * 0
        if uncond[b] < config.p_uncond:
            c = conditioner.unconditional(c)
        cs.append(c)
    crossattn = torch.cat([c["crossattn"] for c in cs])  # B x (1, T, D) -> (B, T, D)
    concat = torch.cat([c["concat"] for c in cs])  # B x (T*V, C, h, w) -> (B*T*V, C, h, w), (b t v) order
    vector = torch.cat([c["vector"] for c in cs])  # (B*T*V, adm)
    cond_view = torch.cat([c["cond_view"] for c in cs])  # B x (V, C, h, w) -> (B*V, C, h, w)

    targets = batch.images[:, :, 1:].flatten(0, 2)  # (B, T, V, 3, H, W) -> (B*T*V, 3, H, W)
    x0 = vae.encode_latents(targets)  # (B*T*V, C, h, w), ~unit std
    # noise is drawn on the CPU generator and moved, so a CUDA run sees the same noise as a CPU run
    log_sigma = config.P_mean + config.P_std * torch.randn(B, generator=generator)
    sigma = log_sigma.exp().repeat_interleave(T * V).to(x0.device)  # one level per scene: (B,) -> (B*T*V,)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device)
    s = sigma.view(-1, 1, 1, 1)
    x = x0 + s * noise
    c_skip, c_out, c_in, c_noise = vscaling_edm_cnoise(s)
    out = unet(torch.cat([x * c_in, concat], dim=1), c_noise.flatten(), crossattn, vector, cond_view)
    target = (x0 - c_skip * x) / c_out  # the v-objective
    return regression_loss(out, target, config.loss)


def regression_loss(prediction: torch.Tensor, target: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """Mean squared ("l2": minimised by the conditional mean) or absolute ("l1": by the conditional median) error."""
    error = prediction - target
    if kind == "l2":
        return error.square().mean()
    if kind == "l1":
        return error.abs().mean()
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, got {kind!r}")


def lr_at(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio * lr` at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(config.steps - config.warmup_steps, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cosine)


# ---------------------------------------------------------------------------------------------------------------
# Training loop, checkpoints, export


def _trainable(pipe) -> dict[str, torch.nn.Module]:
    return {"unet": pipe.unet, "clip": pipe.conditioner.clip}


def _save_checkpoint(pipe, optimizer, step: int, losses: list[float], wall_s: float, config: TrainConfig,
                     folder: Path):  # fmt: skip
    tmp = folder / "checkpoint.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    weights = {f"{k}.{n}": t.detach().cpu().contiguous() for k, m in _trainable(pipe).items()
               for n, t in m.state_dict().items()}  # fmt: skip
    save_file(weights, tmp / "weights.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    state = {"step": step, "losses": losses, "wall_s": wall_s, "config": config.to_dict()}
    (tmp / "state.json").write_text(json.dumps(state))
    final = folder / "checkpoint"
    old = folder / "checkpoint.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _load_weights(pipe, path: Path) -> None:
    """Load a checkpoint's `weights.safetensors` (keys "<module>.<name>") into the trainable modules."""
    weights = load_file(path)
    for k, m in _trainable(pipe).items():
        m.load_state_dict(
            {n[len(k) + 1 :]: t for n, t in weights.items() if n.startswith(k + ".")}, strict=True
        )


def init_from_model(pipe, folder: str) -> None:
    """Copy the trainable weights (UNet, image tower) of an exported pipeline folder ("tiny" = the bundled one)
    into `pipe`, and its latent space (a projected latent's fitted basis); the folder must hold the same
    architecture, or this raises ValueError naming the mismatch."""
    from sv4d_kit.pipeline import SV4DPipeline

    with model_folder(folder) as path:
        if not (path / "model_index.json").is_file():
            raise ValueError(f"init_from {folder!r} is not an exported model folder (no model_index.json)")
        source = SV4DPipeline.from_pretrained(path, torch_dtype=torch.float32)
    mine, theirs = ({k: v for k, v in m.vae.config.items() if not k.startswith("_")} for m in (pipe, source))
    if mine != theirs:
        raise ValueError(
            f"init_from {folder!r}: its latent space {theirs} does not match this config's {mine}"
        )
    pairs = dict(
        vae=(pipe.vae, source.vae), **{k: (m, _trainable(source)[k]) for k, m in _trainable(pipe).items()}
    )
    for name, (module, other) in pairs.items():
        try:
            module.load_state_dict(other.state_dict(), strict=True)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0]
            raise ValueError(
                f"init_from {folder!r}: its {name} does not match this config ({first})"
            ) from None
    pipe.conditioner.share_projection(pipe.vae)


def _training_record(folder: str) -> dict | None:
    """The `training.json` of an exported model folder ("tiny" = the bundled one), or None."""
    with model_folder(folder) as path:
        record = path / "training.json"
        return json.loads(record.read_text()) if record.is_file() else None


def _load_checkpoint(pipe, optimizer, folder: Path) -> tuple[int, list[float], float]:
    _load_weights(pipe, folder / "weights.safetensors")
    # map_location: a checkpoint written on CUDA resumes anywhere (load_state_dict moves the state to the params)
    optimizer.load_state_dict(torch.load(folder / "optimizer.pt", map_location="cpu", weights_only=True))
    state = json.loads((folder / "state.json").read_text())
    return int(state["step"]), list(state["losses"]), float(state.get("wall_s", 0.0))


def export(pipe, folder: str | os.PathLike, fp16: bool = True) -> Path:
    """Write the pipeline folder (`save_pretrained`, safetensors), by default in float16 (about 14 MB); `pipe`
    itself is left as it was (a float16 copy is written)."""
    folder = Path(folder)
    if folder.exists():
        shutil.rmtree(folder)
    if fp16:
        pipe = copy.deepcopy(pipe).to(dtype=torch.float16)
    pipe.save_pretrained(folder, safe_serialization=True)
    return folder


def set_sampling_defaults(folder: str | os.PathLike, sampling: dict) -> dict:
    """Replace the sampling defaults (`SV4DPipeline.config.sampling`) of an exported model folder; returns them.

    The weights are untouched: this is how sampler settings tuned after training reach the bundled model. The
    folder's `training.json` (the run's record, whose config holds the sampling of its time) notes them too, as
    `sampling_defaults_set_after_training`."""
    from sv4d_kit.pipeline import SAMPLING_KEYS

    unknown = sorted(set(sampling) - set(SAMPLING_KEYS))
    if unknown:
        raise ValueError(f"sampling keys must be among {SAMPLING_KEYS}, got {unknown}")
    path = Path(folder) / "model_index.json"
    index = json.loads(path.read_text())
    index["sampling"] = dict(sampling)
    path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    record = Path(folder) / "training.json"
    if record.is_file():
        info = json.loads(record.read_text())
        info["sampling_defaults_set_after_training"] = dict(sampling)
        record.write_text(json.dumps(info, indent=2) + "\n")
    return index["sampling"]


def export_checkpoint(output_dir: str | os.PathLike, export_dir: str | os.PathLike | None = None) -> Path:
    """Export the latest checkpoint of a run folder as a pipeline folder (default `output_dir/model`)."""
    out = Path(output_dir)
    state = json.loads((out / "checkpoint" / "state.json").read_text())
    config = TrainConfig.from_dict(state["config"])
    pipe = build_tiny_sv4d(config)
    _load_weights(pipe, out / "checkpoint" / "weights.safetensors")
    pipe.unet.eval()
    pipe.conditioner.eval()
    return export(pipe, export_dir or out / "model")


class _Batches(torch.utils.data.Dataset):
    """The batches of steps `start`, `start + 1`, ... for a DataLoader's worker processes (rendering is CPU work)."""

    def __init__(self, config: TrainConfig, start: int, end: int):
        self.config, self.start, self.end = config, start, end

    def __len__(self) -> int:
        return self.end - self.start

    def __getitem__(self, i: int) -> Batch:
        return make_batch(self.config, self.start + i)


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


def batches(config: TrainConfig, start: int, end: int, workers: int = 0):
    """Yield `make_batch(config, step)` for step in [start, end), rendered ahead by `workers` processes (0: in
    this process). The batches are the same either way: each is a pure function of (config.seed, step)."""
    if workers <= 0:
        yield from (make_batch(config, step) for step in range(start, end))
        return
    # batch_size=None: each item is one step's Batch, passed through as it is
    loader = torch.utils.data.DataLoader(
        _Batches(config, start, end),
        batch_size=None,
        num_workers=workers,
        worker_init_fn=_one_thread,
        prefetch_factor=4,
    )
    yield from loader


def train(config: TrainConfig, output_dir: str | os.PathLike, resume: bool = True, export_dir=None,
          progress: bool = True, log_every: int = 10, stop_at: int | None = None, device: str = "cpu",
          workers: int = 0):  # fmt: skip
    """Train the tiny SV4D; checkpoints go to `output_dir/checkpoint`, the final pipeline to `export_dir`
    (default `output_dir/model`). With `resume`, an existing checkpoint is continued from its step (the result is
    the same as an uninterrupted run). `stop_at` ends this session early at that step (with a checkpoint, no
    export), e.g. to time-box a session. `device` runs the network there ("cuda"; scenes are rendered on the CPU,
    by `workers` processes ahead of the steps when > 0); noise comes from CPU generators, so the batches and the
    noise do not depend on the device (the arithmetic does, slightly). Returns (pipeline, list of per-step losses)."""
    from tqdm.auto import tqdm

    torch.set_num_threads(config.threads)
    device = torch.device(device)
    out = Path(output_dir)
    pipe = build_tiny_sv4d(config).to(device)  # weights loaded below are copied into its parameters in place
    params = [p for m in _trainable(pipe).values() for p in m.parameters()]
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr,
        betas=(0.9, 0.99),
    )
    step, losses, wall_before = 0, [], 0.0
    ckpt = out / "checkpoint"
    if resume and ckpt.exists():
        step, losses, wall_before = _load_checkpoint(pipe, optimizer, ckpt)
    elif config.init_from is not None:
        init_from_model(pipe, config.init_from)
    out.mkdir(parents=True, exist_ok=True)  # after the checks above, so bad input leaves no folder behind
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    for m in _trainable(pipe).values():
        m.train()
    bar = tqdm(total=config.steps, initial=step, disable=not progress, desc="train", dynamic_ncols=True)
    tic = time.perf_counter()
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    for batch in batches(config, step, end, workers):
        batch = Batch(*(t.to(device) for t in (batch.images, batch.polar, batch.azimuth)), batch.static)
        generator = torch.Generator().manual_seed(config.seed * 1_000_003 + step)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(config, step)
        loss = diffusion_loss(pipe, batch, config, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        step += 1
        recent = float(np.mean(losses[-50:]))
        bar.set_postfix(loss=f"{losses[-1]:.4f}", avg50=f"{recent:.4f}")
        bar.update()
        if not progress and step % log_every == 0:
            print(f"step {step}/{config.steps} loss {losses[-1]:.4f} avg50 {recent:.4f} "
                  f"lr {lr_at(config, step - 1):.2e} {time.perf_counter() - tic:.0f}s", flush=True)  # fmt: skip
        if step % config.checkpoint_every == 0 or step == end:
            _save_checkpoint(
                pipe, optimizer, step, losses, wall_before + time.perf_counter() - tic, config, out
            )
    bar.close()
    pipe.to("cpu")
    if step < config.steps:
        return pipe, losses
    pipe.unet.eval()
    pipe.conditioner.eval()
    folder = export(pipe, export_dir or out / "model")
    summary = {
        "command": "sv4d-kit train --output DIR (with this config)",
        "steps": step,
        "final_loss_avg50": float(np.mean(losses[-50:])) if losses else None,
        "wall_s": wall_before + time.perf_counter() - tic,  # all sessions of the run together
        "torch_threads": config.threads,
        "device": f"{device}: {torch.cuda.get_device_name(device)}" if device.type == "cuda" else str(device),
        "data_workers": workers,
        "config": config.to_dict(),
    }
    if config.init_from is not None:  # the record of the weights this run started from, if they have one
        summary["init_from_record"] = _training_record(config.init_from)
    for path in (out / "summary.json", folder / "training.json"):
        path.write_text(json.dumps(summary, indent=2) + "\n")
    return pipe, losses
