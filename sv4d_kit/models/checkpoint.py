"""The released SV4D 2.0 checkpoint layout ⇄ the kit's modules: presets, name mapping and memory-lean loading.

A released file (`sv4d2.safetensors`, `sv4d2_8views.safetensors`) is one flat state dict of the reference
`DiffusionEngine`. Its tensors go to three kit modules:

    model.diffusion_model.*    -> unet          (same names, prefix stripped)
    conditioner.embedders.*    -> conditioner   (see `conditioner.checkpoint_name_to_kit`)
    first_stage_model.*        -> vae           (sgm -> diffusers names, see `autoencoder.first_stage_name_to_kit`)

Some tensors exist in the file but are never used by the reference; the kit does not hold them (`IGNORED`).
Loading builds every module on the meta device and assigns tensors read one by one, so it needs about one copy of
the weights in memory, not two.
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path

import torch

from sv4d_kit.checks import KitInputError
from sv4d_kit.models import autoencoder, conditioner
from sv4d_kit.models.clip import CLIPImageEncoder
from sv4d_kit.models.conditioner import SV4DConditioner
from sv4d_kit.models.unet import SV4DUNet

PRESETS = ("sv4d2", "sv4d2_8views")
HUB_REPO = "stabilityai/sv4d2.0"  # where the released files live on the Hugging Face hub (a gated repository)
UNET_PREFIX = "model.diffusion_model."
IGNORED = (
    "conditioner.embedders.0.open_clip.model.{token_embedding,positional_embedding,ln_final,text_projection,"
    "logit_scale}: text-side leftovers of open_clip (the text transformer itself is deleted)",
    "conditioner.embedders.{1,4,5}.encoder.{decoder,post_quant_conv}.*: decoders of the VAE embedders (encode only)",
)


@functools.cache
def hparams() -> dict:
    """Both released configurations, fully resolved (`sv4d_kit/assets/sv4d2_hparams.json`, from the reference)."""
    return json.loads(resources.files("sv4d_kit").joinpath("assets/sv4d2_hparams.json").read_text())


def preset_configs(name: str) -> dict:
    """The reference configs of a preset: `unet` (UNet params), `conditioner` (GeneralConditioner), `vae` (ddconfig)."""
    if name not in PRESETS:
        raise KitInputError(f"preset must be one of {PRESETS}, got {name!r}")
    params = hparams()["variants"][name]["yaml_config_resolved"]["model"]["params"]
    return {
        "unet": params["network_config"]["params"],
        "conditioner": params["conditioner_config"],
        "vae": params["first_stage_config"]["params"]["decoder_config"]["params"]
        if "decoder_config" in params["first_stage_config"]["params"]
        else params["first_stage_config"]["params"]["ddconfig"],
    }


def build_models(name: str | dict, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
    """Build (unet, conditioner, vae) with random weights from a preset name or a configs dict; on "meta" nothing
    is allocated. A configs dict holds reference configs: `unet` (UNet params), `conditioner` (GeneralConditioner
    config), `vae` (ddconfig) and optionally `clip` (open_clip model config; default: the ViT-H-14 the conditioner
    names), as recorded in golden sets."""
    configs = preset_configs(name) if isinstance(name, str) else name
    with torch.device(device):
        unet = SV4DUNet.from_reference_config(configs["unet"])
        cond = SV4DConditioner.from_reference_configs(
            configs.get("clip"), configs["vae"], configs["conditioner"]
        )
        vae = autoencoder.build_first_stage(configs["vae"])
    if dtype is not None and str(device) != "meta":
        unet, cond, vae = unet.to(dtype), cond.to(dtype), vae.to(dtype)
    return unet, cond, vae


def kit_name(name: str, vae_levels: int = 4) -> tuple[str, str] | None:
    """A released-checkpoint key -> (component, kit key), or None if the kit deliberately does not hold it."""
    if name.startswith(UNET_PREFIX):
        return "unet", name[len(UNET_PREFIX) :]
    if name.startswith("conditioner.embedders."):
        key = conditioner.checkpoint_name_to_kit(name)
        return None if key is None else ("conditioner", key)
    if name.startswith("first_stage_model."):
        return "vae", autoencoder.first_stage_name_to_kit(name, vae_levels)
    raise KitInputError(f"{name!r} is not a key of an SV4D 2.0 checkpoint")


def convert_tensor(component: str, key: str, tensor: torch.Tensor) -> torch.Tensor:
    """A checkpoint tensor in the layout of its kit key (VAE attention 1x1 convs become linear weights)."""
    if component in ("vae", "conditioner"):
        return autoencoder.sgm_vae_tensor_to_diffusers(key, tensor)
    return tensor


def expected_kit_keys(modules: dict[str, torch.nn.Module]) -> dict[str, dict[str, torch.Size]]:
    """The tensors a checkpoint must provide per component: every state-dict entry (the first stage: its decoder)."""
    out = {}
    for comp, module in modules.items():
        shapes = {k: v.shape for k, v in module.state_dict().items()}
        if comp == "vae":  # the released first stage is decoder-only; the kit's encoder stays as built
            shapes = {k: s for k, s in shapes.items() if k.startswith("decoder.")}
        out[comp] = shapes
    return out


def compare_layout(
    layout: dict[str, list[int]], modules: dict[str, torch.nn.Module], vae_levels: int = 4
) -> dict:
    """Match a checkpoint layout (key -> shape) against kit modules. Returns counts and the first few problems."""
    expected = expected_kit_keys(modules)
    seen: dict[tuple[str, str], str] = {}
    unexpected, misshaped, ignored = [], [], []
    mapped_elements = ignored_elements = 0
    for name, shape in layout.items():
        numel = int(torch.Size(shape).numel())
        try:
            target = kit_name(name, vae_levels)
        except ValueError:
            unexpected.append(name)
            continue
        if target is None:
            ignored.append(name)
            ignored_elements += numel
            continue
        comp, key = target
        if key not in expected.get(comp, {}) or target in seen:
            unexpected.append(name)
            continue
        seen[target] = name
        want = expected[comp][key]
        converted = convert_tensor(comp, key, torch.empty(shape, device="meta")).shape
        if converted != want:
            misshaped.append(f"{name} {list(shape)} (kit {key} needs {list(want)})")
        mapped_elements += numel
    missing = [f"{c}:{k}" for c, keys in expected.items() for k in keys if (c, k) not in seen]
    return {
        "mapped": len(seen),
        "mapped_elements": mapped_elements,
        "ignored": len(ignored),
        "ignored_elements": ignored_elements,
        "missing": missing,
        "unexpected": unexpected,
        "misshaped": misshaped,
    }


def _problems(report: dict) -> str:
    parts = []
    for what in ("missing", "unexpected", "misshaped"):
        items = report[what]
        if items:
            parts.append(f"{len(items)} {what} (e.g. {', '.join(items[:3])})")
    return "; ".join(parts)


def resolve_checkpoint(
    path_or_id: str | os.PathLike, variant: str | None = None, download: bool = False
) -> Path:
    """A local safetensors path for a file path or a hub id; downloads only when `download=True` and online."""
    path = Path(path_or_id)
    if path.exists():
        if path.is_dir():
            raise KitInputError(
                f"{str(path)!r} is a folder; pass the .safetensors file (or load a kit folder)"
            )
        return path
    text = str(path_or_id)
    looks_like_hub = text.count("/") == 1 and not text.endswith((".safetensors", ".ckpt", ".pt", ".pth"))
    if not looks_like_hub:
        raise KitInputError(f"checkpoint {text!r} does not exist")
    filename = f"{variant or 'sv4d2'}.safetensors"
    offline = os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")
    if not download or offline:
        why = "HF_HUB_OFFLINE is set" if offline else "downloads happen only when asked (download=True)"
        raise KitInputError(
            f"{filename} from {text} is not on disk and {why}: download it with "
            f"`huggingface-cli download {text} {filename} --local-dir checkpoints` (accept the license on the hub "
            f"first) and pass checkpoints/{filename}"
        )
    from huggingface_hub import hf_hub_download

    return Path(hf_hub_download(text, filename))


def _check_safetensors(path: Path) -> None:
    if path.suffix in (".ckpt", ".pt", ".pth", ".bin", ".pkl"):
        raise KitInputError(
            f"{path.name} is a pickle checkpoint; only .safetensors files are loaded (pickles can run code)"
        )
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
    if len(head) < 8:
        raise KitInputError(f"{path.name} is not a safetensors file (too short)")
    header_len = int.from_bytes(head, "little")
    if header_len <= 0 or 8 + header_len > size:
        raise KitInputError(f"{path.name} is not a valid safetensors file (bad or truncated header)")


def load_checkpoint(
    path_or_id: str | os.PathLike,
    variant: str | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    download: bool = False,
    configs: dict | None = None,
):
    """Load a released SV4D 2.0 checkpoint into (unet, conditioner, vae), tensor by tensor.

    `variant` ("sv4d2" or "sv4d2_8views") picks the network (the files share one layout; the variants differ in
    `use_3d_attention`); by default it is read from the file name. Refuses pickles, files that are not safetensors,
    truncated files and checkpoints of other models with one clear message naming the missing / unexpected /
    mis-shaped keys. `configs` (see `build_models`) loads a file of the released layout at another size.
    """
    from safetensors import SafetensorError, safe_open

    path = resolve_checkpoint(path_or_id, variant, download)
    _check_safetensors(path)
    if configs is not None:
        variant = variant or ("sv4d2" if configs["unet"].get("use_3d_attention", True) else "sv4d2_8views")
    if variant is None:
        variant = next((p for p in sorted(PRESETS, key=len, reverse=True) if path.stem.endswith(p)), None)
        if variant is None:
            raise KitInputError(
                f"cannot tell the variant from {path.name!r}; pass variant='sv4d2' or 'sv4d2_8views'"
            )
    if variant not in PRESETS:
        raise KitInputError(f"variant must be one of {PRESETS}, got {variant!r}")
    named = next((p for p in sorted(PRESETS, key=len, reverse=True) if path.stem.endswith(p)), None)
    if named is not None and named != variant:
        raise KitInputError(
            f"variant {variant!r} does not match the file {path.name!r} (a {named} checkpoint); "
            f"pass variant={named!r}"
        )
    unet, cond, vae = build_models(configs or variant, device="meta")
    modules = {"unet": unet, "conditioner": cond, "vae": vae}
    vae_levels = len(vae.config.block_out_channels)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            keys = list(f.keys())
            layout = {k: list(f.get_slice(k).get_shape()) for k in keys}
            report = compare_layout(layout, modules, vae_levels)
            if report["missing"] or report["unexpected"] or report["misshaped"]:
                raise KitInputError(f"{path.name} does not match the SV4D 2.0 layout: {_problems(report)}")
            states: dict[str, dict[str, torch.Tensor]] = {c: {} for c in modules}
            for name in keys:
                target = kit_name(name, vae_levels)
                if target is None:
                    continue
                comp, key = target
                tensor = convert_tensor(comp, key, f.get_tensor(name))
                states[comp][key] = tensor.to(device=device, dtype=dtype or torch.float32)
    except SafetensorError as e:
        raise KitInputError(f"{path.name} is not a readable safetensors file ({e})") from None
    # The first stage is decoder-only in the file. Its encoder shares the tensors of the cond_frames embedder's VAE
    # encoder (the same SD VAE), so `vae.encode` works too, at no extra memory.
    for key in vae.state_dict():
        if key not in states["vae"]:
            states["vae"][key] = states["conditioner"][f"cond_frames_encoder.{key}"]
    for comp, module in modules.items():
        module.load_state_dict(states[comp], strict=True, assign=True)
        _materialize_buffers(module, device)
        module.eval()
    return unet, cond, vae


def _materialize_buffers(module: torch.nn.Module, device) -> None:
    """Non-persistent buffers are not in any checkpoint; rebuild those still on the meta device."""
    leftovers = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if leftovers:
        raise KitInputError(f"internal: {len(leftovers)} tensors were not loaded, e.g. {leftovers[0]!r}")


def tiny_configs(variant: str = "sv4d2", model_channels: int = 32, context_dim: int = 32) -> dict:
    """Reference-style configs of a tiny SV4D 2.0 (every flag as released, small widths), for tests and notebooks.

    The UNet has three levels (the deepest attention-free, as in the golden tiny set), so latents must be a
    multiple of 4 pixels (images a multiple of 32). `variant` picks the view-attention layout.
    """
    if variant not in PRESETS:
        raise KitInputError(f"variant must be one of {PRESETS}, got {variant!r}")
    unet = dict(preset_configs(variant)["unet"])
    unet.update(
        model_channels=model_channels,
        channel_mult=[1, 1, 2],
        attention_resolutions=[2, 1],
        num_res_blocks=1,
        num_head_channels=16,
        context_dim=context_dim,
        adm_in_channels=4 * model_channels,
    )
    ddconfig = dict(autoencoder.SV4D2_DDCONFIG, ch=32, ch_mult=[1, 2, 1, 1], num_res_blocks=1, resolution=64)
    clip = {
        "embed_dim": context_dim,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "head_width": 16, "patch_size": 8},
    }
    # sigma + polar + azimuth embeddings must add up to the UNet's vector width (4 * model_channels)
    sigma_dim = model_channels
    angle_dim = (4 * model_channels - sigma_dim) // 2
    return {
        "unet": unet,
        "vae": ddconfig,
        "clip": clip,
        "sigma_embed_dim": sigma_dim,
        "angle_embed_dim": angle_dim,
    }


def build_tiny_models(variant: str = "sv4d2", seed: int = 0, **kwargs):
    """(unet, conditioner, vae) of `tiny_configs` with seeded random weights (no zero-initialised layers)."""
    cfg = tiny_configs(variant, **kwargs)
    torch.manual_seed(seed)
    unet = SV4DUNet.from_reference_config(cfg["unet"])
    # The reference zero-initialises output layers (an untrained stage starts as the identity). For random-weight
    # tests every path must matter, so those weights get small random values.
    for param in unet.parameters():
        if param.ndim > 1 and not param.any():
            torch.nn.init.normal_(param, std=0.02)
    cond = SV4DConditioner(
        clip_config=CLIPImageEncoder.config_from_open_clip(cfg["clip"]),
        vae_config=cfg["vae"],
        sigma_embed_dim=cfg["sigma_embed_dim"],
        angle_embed_dim=cfg["angle_embed_dim"],
    )
    vae = autoencoder.build_first_stage(cfg["vae"])
    return unet.eval(), cond.eval(), vae.eval()
