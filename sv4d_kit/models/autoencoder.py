"""SV4D 2.0's KL autoencoder (the SD VAE) as a diffusers `AutoencoderKL`, and the mapping from the sgm layout.

The reference builds its VAEs from an sgm `ddconfig`. The same network in diffusers names:

    sgm                                     diffusers
    encoder.down.{i}.block.{j}.*            encoder.down_blocks.{i}.resnets.{j}.*
    encoder.down.{i}.downsample.conv        encoder.down_blocks.{i}.downsamplers.0.conv
    decoder.up.{i}.block.{j}.*              decoder.up_blocks.{L-1-i}.resnets.{j}.*
    decoder.up.{i}.upsample.conv            decoder.up_blocks.{L-1-i}.upsamplers.0.conv
    *.nin_shortcut                          *.conv_shortcut
    {en,de}coder.mid.block_{1,2}            {en,de}coder.mid_block.resnets.{0,1}
    {en,de}coder.mid.attn_1.{norm,q,k,v,proj_out}
                                    {en,de}coder.mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}
    {en,de}coder.norm_out                   {en,de}coder.conv_norm_out

With L levels, sgm's decoder counts `up` from full resolution, diffusers' `up_blocks` from the deepest level.

The attention projections are 1x1 convolutions in sgm, (C, C, 1, 1), and linear layers in diffusers, (C, C).
The latents are unscaled; `SCALE_FACTOR` is applied only when the sampler's latents are decoded.
"""

import re

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import Encoder
from torch import nn

from sv4d_kit.checks import KitInputError

# Latent scale of the SD VAE: the diffusion model works on SCALE_FACTOR * (posterior mode).
SCALE_FACTOR = 0.18215

# The `ddconfig` of every VAE in sv4d2.yaml (the three conditioner encoders and the first-stage decoder).
SV4D2_DDCONFIG = {
    "attn_resolutions": [],
    "attn_type": "vanilla-xformers",
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "double_z": True,
    "dropout": 0.0,
    "in_channels": 3,
    "num_res_blocks": 2,
    "out_ch": 3,
    "resolution": 256,
    "z_channels": 4,
}


def autoencoder_kwargs(ddconfig: dict) -> dict:
    """diffusers `AutoencoderKL` constructor arguments for an sgm `ddconfig` (Encoder/Decoder params)."""
    required = ("ch", "ch_mult", "num_res_blocks", "z_channels", "in_channels", "out_ch")
    missing = [k for k in required if k not in ddconfig]
    if missing:
        raise KitInputError(f"ddconfig is missing {missing}")
    if list(ddconfig.get("attn_resolutions", [])):
        raise KitInputError(
            "ddconfig['attn_resolutions'] must be empty: diffusers' VAE blocks have no attention"
        )
    attn_type = ddconfig.get("attn_type", "vanilla")
    if attn_type not in ("vanilla", "vanilla-xformers", "none"):
        raise KitInputError(
            f"ddconfig['attn_type'] must be 'vanilla', 'vanilla-xformers' or 'none', got {attn_type!r}"
        )
    if not ddconfig.get("double_z", True):
        raise KitInputError(
            "ddconfig['double_z'] must be True (a KL autoencoder predicts mean and log-variance)"
        )
    levels = len(ddconfig["ch_mult"])
    return {
        "in_channels": int(ddconfig["in_channels"]),
        "out_channels": int(ddconfig["out_ch"]),
        "down_block_types": ("DownEncoderBlock2D",) * levels,
        "up_block_types": ("UpDecoderBlock2D",) * levels,
        "block_out_channels": tuple(int(ddconfig["ch"]) * int(m) for m in ddconfig["ch_mult"]),
        "layers_per_block": int(ddconfig["num_res_blocks"]),
        "latent_channels": int(ddconfig["z_channels"]),
        "norm_num_groups": 32,
        "sample_size": int(ddconfig.get("resolution", 256)),
        "scaling_factor": SCALE_FACTOR,
        # sgm builds the middle attention whatever attn_resolutions says (only attn_type "none" drops it)
        "mid_block_add_attention": attn_type != "none",
    }


def build_autoencoder(
    ddconfig: dict, *, use_quant_conv: bool = True, use_post_quant_conv: bool = True
) -> AutoencoderKL:
    """A diffusers `AutoencoderKL` with the architecture of an sgm `ddconfig`."""
    return AutoencoderKL(
        **autoencoder_kwargs(ddconfig), use_quant_conv=use_quant_conv, use_post_quant_conv=use_post_quant_conv
    )


def build_first_stage(ddconfig: dict) -> AutoencoderKL:
    """SV4D 2.0's first-stage model: only its decoder is in the checkpoint; no quant_conv, no post_quant_conv.

    diffusers always builds an encoder too; the first stage's is not in the checkpoint (the reference's is
    `nn.Identity`), so it keeps its random initialisation: encode with the conditioner's VAE encoders instead.
    """
    return build_autoencoder(ddconfig, use_quant_conv=False, use_post_quant_conv=False)


class VAEEncoder(nn.Module):
    """The encoder half of the KL autoencoder: `encoder` + `quant_conv`, giving the moments (mean, logvar)."""

    def __init__(self, ddconfig: dict, embed_dim: int | None = None):
        super().__init__()
        kw = autoencoder_kwargs(ddconfig)
        z = kw["latent_channels"]
        if embed_dim is not None and embed_dim != z:
            raise KitInputError(f"embed_dim ({embed_dim}) must equal ddconfig['z_channels'] ({z})")
        self.encoder = Encoder(
            in_channels=kw["in_channels"],
            out_channels=z,
            down_block_types=kw["down_block_types"],
            block_out_channels=kw["block_out_channels"],
            layers_per_block=kw["layers_per_block"],
            norm_num_groups=kw["norm_num_groups"],
            double_z=True,
            mid_block_add_attention=kw["mid_block_add_attention"],
        )
        self.quant_conv = nn.Conv2d(2 * z, 2 * z, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 2 * z_channels, H / 2^(L-1), W / 2^(L-1)) posterior moments."""
        return self.quant_conv(self.encoder(x))


def encode_mode(vae: nn.Module, x: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """The posterior mode (mean) of images in [-1, 1], unscaled; `vae` has `.encoder` and `.quant_conv`.

    Works for a `VAEEncoder` and for an `AutoencoderKL` (whose `quant_conv` may be None). `chunk_size` images
    are encoded at a time (the reference encodes all at once; each image is encoded independently).
    (B, 3, H, W) -> (B, z_channels, h, w)
    """
    if chunk_size is not None and chunk_size < 1:
        raise KitInputError(f"chunk_size must be None or >= 1, got {chunk_size}")
    step = chunk_size or max(len(x), 1)
    means = []
    for i in range(0, len(x), step):
        moments = vae.encoder(x[i : i + step])
        if getattr(vae, "quant_conv", None) is not None:
            moments = vae.quant_conv(moments)
        means.append(moments.chunk(2, dim=1)[0])  # (mean, logvar) -> mean
    return torch.cat(means)


def decode_latents(vae: nn.Module, z: torch.Tensor, chunk_size: int | None = None) -> torch.Tensor:
    """Sampler latents -> images in [0, 1]: clamp((decoder(z / scaling_factor + shift_factor) + 1) / 2, 0, 1).

    `scaling_factor` (0.18215 for SV4D 2.0, `SCALE_FACTOR`) and the optional `shift_factor` come from the VAE's
    config, so the tiny model's latent space goes through the same code. The division is a multiplication by
    1 / scaling_factor, as in the reference. `chunk_size` frames are decoded at a time (every frame is decoded
    independently, so the result does not depend on it). (N, C, h, w) -> (N, 3, H, W)
    """
    if chunk_size is not None and chunk_size < 1:
        raise KitInputError(f"chunk_size must be None or >= 1, got {chunk_size}")
    z = z * (1.0 / vae.config.scaling_factor)
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        z = z + shift
    step = chunk_size or max(len(z), 1)
    frames = [vae.decode(z[i : i + step]).sample for i in range(0, len(z), step)]
    return ((torch.cat(frames) + 1.0) / 2.0).clamp(0.0, 1.0)


_RESNET_RENAMES = {"nin_shortcut": "conv_shortcut"}
_ATTN_RENAMES = {"norm": "group_norm", "q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}
_ATTN_LINEAR = re.compile(r"mid_block\.attentions\.0\.(to_q|to_k|to_v|to_out\.0)\.weight$")


def sgm_vae_name_to_diffusers(name: str, num_levels: int | None = None) -> str:
    """An sgm autoencoder key (`encoder.*`, `decoder.*`, `quant_conv.*`, `post_quant_conv.*`) to diffusers.

    `num_levels` is `len(ddconfig["ch_mult"])`; only `decoder.up.*` keys need it (to reverse the level index).
    """
    parts = name.split(".")
    head = parts[0]
    if head in ("quant_conv", "post_quant_conv"):
        return name
    if head not in ("encoder", "decoder") or len(parts) < 3:
        raise KitInputError(
            f"name must be an sgm VAE key under encoder./decoder./quant_conv./post_quant_conv., got {name!r}"
        )
    rest = parts[1:]
    if rest[0] in ("conv_in", "conv_out"):
        out = rest
    elif rest[0] == "norm_out":
        out = ["conv_norm_out", *rest[1:]]
    elif rest[0] == "mid" and rest[1] in ("block_1", "block_2"):
        out = [
            "mid_block",
            "resnets",
            str(int(rest[1][-1]) - 1),
            _RESNET_RENAMES.get(rest[2], rest[2]),
            *rest[3:],
        ]
    elif rest[0] == "mid" and rest[1] == "attn_1":
        out = ["mid_block", "attentions", "0", _ATTN_RENAMES[rest[2]], *rest[3:]]
    elif rest[0] in ("down", "up"):
        level = int(rest[1])
        if rest[0] == "up" and num_levels is None:
            raise KitInputError(f"num_levels is needed to map the decoder key {name!r}")
        if num_levels is not None and not 0 <= level < num_levels:
            raise KitInputError(f"level {level} of {name!r} is outside num_levels={num_levels}")
        blocks = "down_blocks" if rest[0] == "down" else "up_blocks"
        index = level if rest[0] == "down" else num_levels - 1 - level
        if rest[2] == "block":
            out = [blocks, str(index), "resnets", rest[3], _RESNET_RENAMES.get(rest[4], rest[4]), *rest[5:]]
        elif rest[2] in ("downsample", "upsample"):
            out = [blocks, str(index), rest[2] + "rs", "0", *rest[3:]]
        else:
            raise KitInputError(
                f"no diffusers counterpart for {name!r} (per-level attention is not supported)"
            )
    else:
        raise KitInputError(f"no diffusers counterpart for {name!r}")
    return ".".join([head, *out])


def sgm_vae_tensor_to_diffusers(diffusers_name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Reshape a tensor for its diffusers key: the mid-block attention's 1x1 conv (C, C, 1, 1) -> (C, C)."""
    if _ATTN_LINEAR.search(diffusers_name) and tensor.ndim == 4:
        return tensor.reshape(tensor.shape[0], tensor.shape[1])
    return tensor


def first_stage_name_to_kit(name: str, num_levels: int = 4) -> str | None:
    """A released-checkpoint key `first_stage_model.*` -> the kit first-stage `AutoencoderKL` key.

    `num_levels` is `len(ddconfig["ch_mult"])` (4 for SV4D 2.0). Returns None for keys outside
    `first_stage_model.`. The checkpoint holds only `first_stage_model.decoder.*`.
    """
    prefix = "first_stage_model."
    if not name.startswith(prefix):
        return None
    return sgm_vae_name_to_diffusers(name[len(prefix) :], num_levels)


def load_first_stage_weights(
    vae: AutoencoderKL, state_dict: dict[str, torch.Tensor], num_levels: int
) -> list[str]:
    """Copy the `first_stage_model.*` tensors of a reference state dict into `vae`; return the keys filled.

    Raises KitInputError if a decoder key of `vae` gets no tensor or a tensor does not fit its kit key.
    """
    own = vae.state_dict()
    filled = {}
    for name, tensor in state_dict.items():
        kit = first_stage_name_to_kit(name, num_levels)
        if kit is None:
            continue
        if kit not in own:
            raise KitInputError(f"checkpoint key {name!r} maps to {kit!r}, which the kit VAE does not have")
        tensor = sgm_vae_tensor_to_diffusers(kit, tensor)
        if tensor.shape != own[kit].shape:
            raise KitInputError(
                f"checkpoint key {name!r} has shape {tuple(tensor.shape)}, {kit!r} needs "
                f"{tuple(own[kit].shape)}"
            )
        filled[kit] = tensor
    missing = [k for k in own if k.startswith("decoder.") and k not in filled]
    if missing:
        raise KitInputError(
            f"state_dict lacks first_stage_model tensors for {len(missing)} decoder keys, e.g. {missing[0]!r}"
        )
    vae.load_state_dict(filled, strict=False)
    return sorted(filled)
