"""The OpenCLIP ViT image tower that turns the input-view frames into SV4D 2.0's cross-attention context.

Parameter names are open_clip's `visual.*` names without the `visual.` prefix, so a released checkpoint key
`conditioner.embedders.0.open_clip.model.visual.<name>` loads into `CLIPImageEncoder.<name>` unchanged.
"""

from collections import OrderedDict

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from sv4d_kit.checks import KitInputError

# The normalisation OpenAI CLIP was trained with (RGB in [0, 1]).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# open_clip's `ViT-H-14` model config, the image tower SV4D 2.0 uses (its conditioner does not name an arch).
VIT_H_14 = {
    "embed_dim": 1024,
    "vision_cfg": {"image_size": 224, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14},
}


def _gaussian_kernel1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normalised Gaussian taps exp(-n^2 / 2 sigma^2) at integer offsets n from the centre (odd `size`)."""
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    sigma_t = torch.tensor(sigma, dtype=dtype, device=device)
    gauss = torch.exp(-x.pow(2) / (2 * sigma_t.pow(2)))
    return gauss / gauss.sum()


def antialiased_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize (align_corners=True) after a Gaussian blur when shrinking, as `kornia.geometry.resize`.

    kornia's anti-aliasing (`antialias=True`): for scale factors f = in / out, if max(f) > 1 blur with
    sigma = max((f - 1) / 2, 0.001) per axis, kernel size int(max(4 sigma, 3)) rounded up to odd,
    reflect padding, width pass first; then `F.interpolate(mode="bicubic", align_corners=True)`.
    (B, C, H, W) -> (B, C, *size)
    """
    h, w = x.shape[-2:]
    factors = (h / size[0], w / size[1])
    if max(factors) > 1:
        sigmas = [max((f - 1.0) / 2.0, 0.001) for f in factors]
        sizes = [int(max(2.0 * 2 * s, 3)) for s in sigmas]
        sizes = [k if k % 2 else k + 1 for k in sizes]
        sizes = [1 if n == 1 else k for n, k in zip((h, w), sizes)]
        c = x.shape[1]
        # separable blur: along W, then along H; depthwise convolution, one kernel shared by all channels
        for axis, (k, s) in ((1, (sizes[1], sigmas[1])), (0, (sizes[0], sigmas[0]))):
            if k == 1:
                continue
            taps = _gaussian_kernel1d(k, s, x.dtype, x.device)
            r = k // 2
            if axis == 1:
                x = F.conv2d(
                    F.pad(x, (r, r, 0, 0), mode="reflect"), taps.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c
                )
            else:
                x = F.conv2d(
                    F.pad(x, (0, 0, r, r), mode="reflect"), taps.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c
                )
    return F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=True)


def clip_preprocess(x: torch.Tensor, image_size: int = 224) -> torch.Tensor:
    """Images in [-1, 1] -> the CLIP tower's input: anti-aliased bicubic resize, to [0, 1], OpenAI mean/std.

    (B, 3, H, W) -> (B, 3, image_size, image_size)
    """
    if x.ndim != 4 or x.shape[1] != 3:
        raise KitInputError(f"x must have shape (B, 3, H, W), got {tuple(x.shape)}")
    x = antialiased_resize(x, (image_size, image_size))
    x = (x + 1.0) / 2.0
    mean = torch.tensor(OPENAI_CLIP_MEAN, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


class SelfAttention(nn.Module):
    """Multi-head self-attention with `nn.MultiheadAttention`'s parameters (packed `in_proj`, `out_proj`)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        # (B, N, 3C) -> 3 x (B, heads, N, C / heads)
        q, k, v = qkv.view(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        # (B, heads, N, C / heads) -> (B, N, C)
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.out_proj(out)


class ResidualAttentionBlock(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) with an exact-GELU MLP."""

    def __init__(self, width: int, heads: int, mlp_width: int, eps: float = 1e-5):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width, eps=eps)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width, eps=eps)
        self.mlp = nn.Sequential(
            OrderedDict(
                [
                    ("c_fc", nn.Linear(width, mlp_width)),
                    ("gelu", nn.GELU()),
                    ("c_proj", nn.Linear(mlp_width, width)),
                ]
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """A stack of residual attention blocks (open_clip's `transformer.resblocks`)."""

    def __init__(self, width: int, layers: int, heads: int, mlp_width: int):
        super().__init__()
        self.resblocks = nn.ModuleList(
            [ResidualAttentionBlock(width, heads, mlp_width) for _ in range(layers)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.resblocks:
            x = block(x)
        return x


class CLIPImageEncoder(ModelMixin, ConfigMixin):
    """OpenCLIP `VisionTransformer`: patches + class token, ln_pre, transformer, ln_post on the class token,
    then the projection `proj`.

    `forward` takes images already prepared by `clip_preprocess` and returns one embedding per image.
    """

    @register_to_config
    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 14,
        width: int = 1280,
        layers: int = 32,
        head_width: int = 80,
        embed_dim: int = 1024,
        mlp_ratio: float = 4.0,
    ):
        super().__init__()
        if image_size % patch_size:
            raise KitInputError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})")
        if width % head_width:
            raise KitInputError(f"width ({width}) must be a multiple of head_width ({head_width})")
        grid = image_size // patch_size
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, kernel_size=patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, layers, width // head_width, int(width * mlp_ratio))
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    @classmethod
    def config_from_open_clip(cls, model_config: dict) -> dict:
        """This class's config from an open_clip model config (`{"embed_dim": .., "vision_cfg": {..}}`)."""
        vision = model_config["vision_cfg"]
        for key in ("image_size", "layers", "width", "patch_size"):
            if key not in vision:
                raise KitInputError(f"model_config['vision_cfg'] must give {key!r}")
        return {
            "image_size": int(vision["image_size"]),
            "patch_size": int(vision["patch_size"]),
            "width": int(vision["width"]),
            "layers": int(vision["layers"]),
            "head_width": int(vision.get("head_width", 64)),
            "embed_dim": int(model_config["embed_dim"]),
            "mlp_ratio": float(vision.get("mlp_ratio", 4.0)),
        }

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(B, 3, image_size, image_size) preprocessed images -> (B, embed_dim) projected class tokens."""
        x = self.conv1(pixel_values)
        # (B, width, g, g) -> (B, g*g, width)
        x = x.flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(x.dtype).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding.to(x.dtype)  # (B, 1 + g*g, width)
        x = self.transformer(self.ln_pre(x))
        pooled = self.ln_post(x[:, 0])  # the class token
        return pooled @ self.proj
