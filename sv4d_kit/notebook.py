"""What every notebook's first cells do: pick a device and say which, load the model its `model` parameter names,
and show the kit's one-line error where a learner's input was bad (never a traceback)."""

from __future__ import annotations

import os

from sv4d_kit import checks
from sv4d_kit.checks import INPUT_ERRORS


def in_colab() -> bool:
    """Whether this runs in Google Colab (whose `Play` widget breaks `jslink`, and which needs the kit installed)."""
    import sys

    return "google.colab" in sys.modules


def sample_path() -> str:
    """The bundled sample clip (a moving, patterned object made by `sv4d_kit.synthetic`): a GIF inside the package."""
    from importlib import resources

    from sv4d_kit.generation import SAMPLE

    return str(resources.files("sv4d_kit") / "assets" / SAMPLE)


def setup(device: str | None = None) -> str:
    """A notebook's first call: figures display as PNG (the kit draws on matplotlib `Figure`s, not pyplot), and the
    device is picked and named. Returns the device."""
    try:
        from IPython import get_ipython
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        if get_ipython() is not None:
            set_matplotlib_formats("png")
    except ImportError:  # plain Python: nothing to display
        pass
    return pick_device(device)


def pick_device(device: str | None = None) -> str:
    """`device` if given, else "cuda" when torch sees a GPU, else "cpu"; prints the choice and why."""
    import torch

    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        why = (
            torch.cuda.get_device_name(0)
            if device == "cuda"
            else "no GPU found; the tiny model runs fine here"
        )
    else:
        why = "asked for"
    print(f"device: {device} ({why})")
    return device


def load_pipeline(model: str | os.PathLike = "tiny", device: str | None = None):
    """The pipeline a notebook's `model` parameter names ("tiny", a kit folder, `sv4d2.safetensors`,
    `sv4d2_8views.safetensors`), on `device`: float32 for the tiny model and on the CPU, bfloat16 for a released
    checkpoint on a GPU (with model CPU offload, so a 24 GB card is enough)."""
    import torch

    from sv4d_kit.models.bundled import is_bundled
    from sv4d_kit.pipeline import SV4DPipeline

    device = device or pick_device()
    large = not is_bundled(model) and str(model).endswith(".safetensors")
    dtype = torch.bfloat16 if large and device.startswith("cuda") else torch.float32
    pipe = SV4DPipeline.from_pretrained(model, torch_dtype=dtype)
    if large and device.startswith("cuda"):
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    c = pipe.config
    print(f"model: {model} ({c.variant}: {c.num_views} novel views, {c.frames_per_chunk} frames a chunk, "
          f"{c.image_size} px)")  # fmt: skip
    return pipe


def try_input(fn, *args, **kwargs):
    """Call `fn`; on bad input return (None, "error: <the kit's one line>") instead of raising, else (result, None).
    Any other exception is a bug and propagates with its traceback."""
    try:
        return fn(*args, **kwargs), None
    except INPUT_ERRORS as e:
        message = checks.one_line(e)
        return None, f"error: {message}"


def show_input_error(fn, *args, **kwargs):
    """Call `fn` and print its one-line error if the input was bad (how notebook 01 shows bad inputs)."""
    result, error = try_input(fn, *args, **kwargs)
    print(error if error else "ok")
    return result
