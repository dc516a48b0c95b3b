"""The training configuration: `TrainConfig`, every setting of a tiny-SV4D run, checked when it is made."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields

from sv4d_kit.checks import KitInputError, fraction, integer, number, one_of, positive
from sv4d_kit.models.latent import check_latent_channels
from sv4d_kit.sampling import check_settings
from sv4d_kit.synthetic import WORLDS

LOSSES = ("l2", "l1")  # the values of TrainConfig.loss (objective.regression_loss)
SIGMA_DATA_MODES = ("per_channel",)  # the named values of TrainConfig.sigma_data (model.measure_sigma_data)

# the integer fields that must be >= 1 (warmup_steps and seed may be 0)
_POSITIVE_INTEGERS = (
    "image_size", "downsample_factor", "frames", "clip_frames", "num_train_scenes", "supersample", "model_channels",
    "num_res_blocks", "num_head_channels", "context_dim", "clip_width", "clip_layers", "clip_patch_size", "steps",
    "batch_scenes", "checkpoint_every", "threads", "projection_scenes",
)  # fmt: skip


@dataclass
class TrainConfig:
    """Everything that defines a tiny-SV4D training run. Stage 1 of the bundled weights' recipe is
    `recipes/tiny_base.json` (these defaults, except `sampling`: the defaults hold the sampler settings tuned after
    stage 1); stage 2 is `recipes/tiny_finetune.json`."""

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
    # the scene distribution (synthetic.WORLDS): "patterned" (checkers, sectors, faces; 1–4 primitives), the
    # bundled model's, or "simple" (one colour or bands per primitive, 1–3 primitives; issue #20's experiment)
    world: str = "patterned"
    latent_shift: float = 0.80  # space-to-depth latents are (pixels - shift) * scale: ~zero mean, unit std
    latent_scale: float = 2.1
    # None: the lossless 3·f² channels; k: the top-k principal directions of the f×f blocks (a linear autoencoder
    # fitted by PCA on `projection_scenes` rendered training scenes when the model is built; then use shift 0)
    latent_channels: int | None = None
    projection_scenes: int = 48
    # The data std the denoiser's V-scaling assumes (`sampling.preconditioning`): None is SV4D 2.0's 1; a number;
    # or "per_channel": each latent channel's RMS, measured on the projection scenes when the model is made (the
    # skip then is each channel's Wiener filter: channels the data hardly uses pass hardly any noise)
    sigma_data: float | str | None = None
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
        self.validate()

    def validate(self) -> None:
        """Raise `KitInputError` (one line, naming the field) for values outside their range. The integer fields
        become plain ints, the angles tuples of floats and `channel_mult` a tuple of ints."""
        for name in _POSITIVE_INTEGERS:
            setattr(self, name, integer(name, getattr(self, name), minimum=1))
        for name in ("warmup_steps", "seed"):
            setattr(self, name, integer(name, getattr(self, name), minimum=0))
        self.latent_channels = check_latent_channels(self.latent_channels, 3 * self.downsample_factor**2)
        if self.frames > self.clip_frames:
            raise KitInputError(f"frames must be <= clip_frames ({self.clip_frames}), got {self.frames}")
        self.novel_azimuths_deg = _sequence("novel_azimuths_deg", self.novel_azimuths_deg, number)
        if len(self.novel_azimuths_deg) < 1:
            raise KitInputError("novel_azimuths_deg must hold at least one azimuth")
        elevation = _sequence("elevation_range_deg", self.elevation_range_deg, number)
        if len(elevation) != 2 or not -90 <= elevation[0] <= elevation[1] <= 90:
            raise KitInputError(f"elevation_range_deg must be (lo, hi) with -90 <= lo <= hi <= 90, "
                                f"got {self.elevation_range_deg}")  # fmt: skip
        self.elevation_range_deg = elevation
        self.channel_mult = _sequence(
            "channel_mult", self.channel_mult, lambda n, v: integer(n, v, minimum=1)
        )
        if len(self.channel_mult) < 1:
            raise KitInputError("channel_mult must hold at least one multiplier")
        spatial = self.downsample_factor * 2 ** (len(self.channel_mult) - 1)
        if self.image_size % spatial or self.image_size % self.clip_patch_size:
            raise KitInputError(f"image_size must be a multiple of {spatial} and of clip_patch_size, "
                                f"got {self.image_size}")  # fmt: skip
        for name in ("lr", "latent_scale", "P_std", "grad_clip"):
            positive(name, getattr(self, name))
        for name in ("latent_shift", "P_mean"):
            number(name, getattr(self, name))
        number("weight_decay", self.weight_decay, minimum=0)
        one_of("loss", self.loss, LOSSES)
        one_of("world", self.world, WORLDS)
        if isinstance(self.sigma_data, str):
            one_of("sigma_data", self.sigma_data, SIGMA_DATA_MODES)
        elif self.sigma_data is not None:
            self.sigma_data = positive("sigma_data", self.sigma_data)
        for name in ("static_fraction", "static_mix", "p_uncond", "p_mask_view", "min_lr_ratio"):
            fraction(name, getattr(self, name))
        if self.init_from is not None and not isinstance(self.init_from, str):
            raise KitInputError(
                f"init_from must be a model folder (a string) or null, got {self.init_from!r}"
            )
        self.sampling = _check_sampling(self.sampling)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        """A config from (a subset of) its fields; unknown keys raise `KitInputError`."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise KitInputError(f"unknown training config keys {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def _check_sampling(sampling) -> dict:
    """The exported pipeline's sampling defaults, checked as `SV4DPipeline` reads them: known keys only (steps,
    sigmas, rho, churn, sampler, guider and its scales), each in its range, and sigma_min < sigma_max, where the
    pipeline fills a missing one in with the reference's."""
    from sv4d_kit.pipeline import REFERENCE_SAMPLING  # on first use, as in export.py

    checked = check_settings(sampling, prefix="sampling.")
    low, high = (checked.get(k, REFERENCE_SAMPLING[k]) for k in ("sigma_min", "sigma_max"))
    if not low < high:  # only one of them given (check_settings compares two given ones)
        given, other = ("sigma_min", "sigma_max") if "sigma_min" in checked else ("sigma_max", "sigma_min")
        raise KitInputError(f"sampling.{given} must be {'<' if given == 'sigma_min' else '>'} the reference's "
                            f"{other} {REFERENCE_SAMPLING[other]:g} (sampling has no {other}), "
                            f"got {checked[given]:g}")  # fmt: skip
    return checked


def _sequence(name: str, values, check) -> tuple:
    """`values` (a list) as a tuple of `check(f"{name}[i]", value)`; anything else raises `KitInputError`."""
    if isinstance(values, (str, bytes, dict)) or not isinstance(values, Iterable):
        raise KitInputError(f"{name} must be a list, got {values!r}")
    return tuple(check(f"{name}[{i}]", v) for i, v in enumerate(values))
