"""The sampling explorer of notebook 03: the sampler's settings as controls, a "run" button, the last and the new grid.

The parts are plain and tested without a browser: `parse_settings(values, num_views)` turns what a learner typed
into the pipeline's keyword arguments (or raises `KitInputError` with the kit's one line), and
`SamplingExplorer.run()` (what the button calls) re-runs the pipeline with a progress bar fed by
`callback_on_step_end`, moves the previous grid to "last" and shows the new one. Bad input shows its one `error:`
line next to the controls and keeps both pictures as they were:

    from sv4d_kit.explorers.sampling import sampling_explorer
    sampling_explorer(pipe, clip)            # in a notebook cell: the widget
"""

from __future__ import annotations

import time

import ipywidgets as widgets
import torch

from sv4d_kit import checks
from sv4d_kit.checks import KitInputError
from sv4d_kit.notebook import try_input
from sv4d_kit.pipeline import GUIDERS, VARIANTS, chunk_starts

MAX_STEPS = 1000  # more than the reference's 50 by far; a typo like 5000 would keep a CPU busy for minutes

# The controls' names (the keys of `values`) and the pipeline keyword each becomes.
KEYS = {
    "steps": "num_inference_steps",
    "sigma_max": "sigma_max",
    "sigma_min": "sigma_min",
    "guider": "guider",
    "min_scale": "min_guidance",
    "max_scale": "max_guidance",
    "churn": "s_churn",
    "seed": "seed",
    "elevation": "elevations_deg",
    "azimuths": "azimuths_deg",
}


def _text(value):
    return value.strip() if isinstance(value, str) else value


def _integer(name: str, value, minimum: int, maximum: int | None = None) -> int:
    value = _text(value)
    if isinstance(value, str):  # typed into a text box: "12" is 12, "12.5" or "abc" is refused
        try:
            value = int(value)
        except ValueError:
            pass
    return checks.integer(name, value, minimum=minimum, maximum=maximum)


def _number(name: str, value, **bounds) -> float:
    value = _text(value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            pass
    return checks.number(name, value, **bounds)


def parse_azimuths(text, num_views: int | None = None) -> list[float] | None:
    """Comma-separated degrees ("0, 72, 144, 216, 288") as floats: the input view first, then the V novel views.
    An empty box means the model's defaults (None). With `num_views`, exactly V+1 values are needed."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else list(text)
    values = [_number(f"azimuths[{i}]", p) for i, p in enumerate(parts)]
    if num_views is not None and len(values) != num_views + 1:
        raise KitInputError(
            f"azimuths must hold {num_views + 1} comma-separated degrees (input view + {num_views} novel "
            f"views), got {len(values)}"
        )
    return values


def parse_settings(values: dict, num_views: int | None = None) -> dict:
    """The explorer's control values (keys of `KEYS`; numbers or the text a learner typed) as `SV4DPipeline`
    keyword arguments. Raises `KitInputError` (one line naming the control) for a bad value: steps outside
    [1, MAX_STEPS], sigma_min >= sigma_max, an unknown guider, negative scales or churn, an elevation outside
    [-90, 90], an azimuth list of the wrong length (with `num_views`) or anything that is not a number."""
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise KitInputError(f"unknown explorer settings {unknown}; known: {sorted(KEYS)}")
    missing = sorted(set(KEYS) - set(values))
    if missing:
        raise KitInputError(f"explorer settings are missing {missing}")
    sigma_max = _number("sigma_max", values["sigma_max"], minimum=0, open_min=True)
    sigma_min = _number("sigma_min", values["sigma_min"], minimum=0, open_min=True)
    if not sigma_min < sigma_max:
        raise KitInputError(
            f"need sigma_min < sigma_max, got sigma_min {sigma_min:g} and sigma_max {sigma_max:g}"
        )
    return {
        "num_inference_steps": _integer("steps", values["steps"], minimum=1, maximum=MAX_STEPS),
        "sigma_max": sigma_max,
        "sigma_min": sigma_min,
        "guider": checks.one_of("guider", _text(values["guider"]), GUIDERS),
        "min_guidance": _number("min_scale", values["min_scale"], minimum=0),
        "max_guidance": _number("max_scale", values["max_scale"], minimum=0),
        "s_churn": _number("churn", values["churn"], minimum=0),
        "seed": _integer("seed", values["seed"], minimum=0),
        "elevations_deg": _number("elevation", values["elevation"], minimum=-90, maximum=90),
        "azimuths_deg": parse_azimuths(values["azimuths"], num_views),
    }


def describe(settings: dict) -> str:
    """One line naming a run's settings (the caption of its grid)."""
    s = settings
    if s["guider"] == "none":
        guidance = "no guidance"
    elif s["guider"] == "constant":
        guidance = f"constant guidance {s['max_guidance']:g}"
    else:
        guidance = f"{s['guider']} guidance {s['min_guidance']:g} → {s['max_guidance']:g}"
    churn = f", churn {s['s_churn']:g}" if s["s_churn"] else ""
    return (f"{s['num_inference_steps']} steps, σ {s['sigma_max']:g} → {s['sigma_min']:g}, {guidance}{churn}, "
            f"seed {s['seed']}")  # fmt: skip


def grid_png(images: torch.Tensor, azimuths, title: str | None = None, cell_inches: float = 0.8) -> bytes:
    """An image matrix (T, V+1, 3, H, W) in [0, 1] as PNG bytes (`viz.image_grid`: time across, views down)."""
    from sv4d_kit import viz

    fig = viz.image_grid(
        images, row_labels=[f"{a:g}°" for a in azimuths], title=title, cell_inches=cell_inches
    )
    return viz.figure_png(fig, dpi=100)


class SamplingExplorer(widgets.VBox):
    """The widget: controls, a run button, a progress bar, an error label, and the "last" and "new" grids.

    `values()` reads the controls, `run()` is what the button does (it returns None on success, else the `error:`
    line it shows). After a good run `result` is its `SV4DPipelineOutput` and `settings` its pipeline kwargs; the
    previous ones move to `last_result` / `last_settings`."""

    def __init__(
        self, pipe, frames, seed: int = 23, elevation: float = 10.0, run_first: bool = True, **sampling
    ):
        self.pipe, self.frames = pipe, frames
        opts = pipe.sampling_options(**sampling)
        c = pipe.config
        n_frames = frames.shape[0] if frames.ndim == 4 and frames.shape[0] > 1 else c.frames_per_chunk
        T = min(c.frames_per_chunk, n_frames)
        self.num_chunks = len(chunk_starts(n_frames, T, VARIANTS[c.variant]["chunk_overlap"]))
        style = {"description_width": "90px"}
        layout = widgets.Layout(width="220px")

        def text(cls, description, value, **kw):
            return cls(value=value, description=description, style=style, layout=layout, **kw)

        self.controls = {
            "steps": text(widgets.IntText, "steps", int(opts["num_inference_steps"])),
            "sigma_max": text(widgets.FloatText, "σ_max", float(opts["sigma_max"])),
            "sigma_min": text(widgets.FloatText, "σ_min", float(opts["sigma_min"])),
            "guider": text(widgets.Dropdown, "guider", opts["guider"], options=list(GUIDERS)),
            "min_scale": text(widgets.FloatText, "min scale", float(opts["min_guidance"])),
            "max_scale": text(widgets.FloatText, "max scale", float(opts["max_guidance"])),
            "churn": text(widgets.FloatText, "churn", float(opts["s_churn"])),
            "seed": text(widgets.IntText, "seed", int(seed)),
            "elevation": text(widgets.FloatText, "elevation °", float(elevation)),
            "azimuths": widgets.Text(
                value=", ".join(f"{a:g}" for a in pipe.default_azimuths()),
                description="azimuths °",
                placeholder="comma-separated degrees, input view first",
                style=style,
                layout=widgets.Layout(width="448px"),
            ),
        }
        self.button = widgets.Button(description="run", button_style="primary", icon="play")
        self.button.on_click(self._on_click)
        self.progress = widgets.IntProgress(value=0, min=0, max=1, description="steps", style=style)
        self.message = widgets.Label(value="")
        self.last_image = widgets.Image(value=b"", format="png")
        self.new_image = widgets.Image(value=b"", format="png")
        self.last_caption = widgets.Label(value="last: (none yet)")
        self.new_caption = widgets.Label(value="new: (none yet)")
        self.result = self.settings = self.last_result = self.last_settings = None
        c1 = [self.controls[k] for k in ("steps", "sigma_max", "sigma_min", "churn")]
        c2 = [self.controls[k] for k in ("guider", "min_scale", "max_scale")]
        c3 = [self.controls[k] for k in ("seed", "elevation")]
        form = widgets.HBox([widgets.VBox(c1), widgets.VBox(c2), widgets.VBox(c3)])
        status = widgets.HBox([self.button, self.progress, self.message])
        pictures = widgets.HBox([
            widgets.VBox([self.last_caption, self.last_image]),
            widgets.VBox([self.new_caption, self.new_image]),
        ])  # fmt: skip
        super().__init__([form, self.controls["azimuths"], status, pictures])
        if run_first:
            self.run()

    def values(self) -> dict:
        """The controls' current values, by `KEYS` name."""
        return {k: w.value for k, w in self.controls.items()}

    def set_values(self, **values) -> None:
        """Set controls by name (as a learner would type them), e.g. `set_values(steps=20, azimuths="0, 90")`."""
        unknown = sorted(set(values) - set(self.controls))
        if unknown:
            raise KitInputError(f"unknown explorer controls {unknown}; known: {sorted(self.controls)}")
        for k, v in values.items():
            self.controls[k].value = v

    def _on_click(self, _button) -> None:
        self.run()

    def run(self, settings: dict | None = None) -> str | None:
        """Re-run the pipeline with `settings` (pipeline kwargs; default: parsed from the controls). On success the
        "new" grid moves to "last" and the new result takes its place; on bad input the label shows the one
        `error:` line and both grids stay. Returns None or that line."""
        if settings is None:
            settings, error = try_input(parse_settings, self.values(), self.pipe.config.num_views)
            if error:
                return self._fail(error)
        steps = settings["num_inference_steps"]
        self.progress.max, self.progress.value = max(1, steps * self.num_chunks), 0

        def step_end(_pipe, _step, _sigma, _tensors):
            self.progress.value += 1

        self.message.value = "running…"
        self.button.disabled = True
        tic = time.perf_counter()
        try:
            out, error = try_input(
                self.pipe, self.frames, callback_on_step_end=step_end, progress=False, **settings
            )
        finally:
            self.button.disabled = False
        if error:
            return self._fail(error)
        seconds = time.perf_counter() - tic
        png = grid_png(out.images, out.cameras["azimuths_deg"])
        if self.result is not None:
            self.last_image.value, self.last_caption.value = (
                self.new_image.value,
                "last: " + describe(self.settings),
            )
        self.last_result, self.last_settings = self.result, self.settings
        self.result, self.settings = out, dict(settings)
        self.new_image.value, self.new_caption.value = png, "new: " + describe(settings)
        self.message.value = f"ok ({seconds:.1f} s)"
        return None

    def _fail(self, error: str) -> str:
        self.message.value = error
        return error


def sampling_explorer(
    pipe, frames, seed: int = 23, elevation: float = 10.0, run_first: bool = True, **sampling
):
    """The sampling explorer for `pipe` on `frames` ((T, 3, H, W) or one (3, H, W) frame in [0, 1], preprocessed):
    its controls start at the model's sampling defaults (`pipe.sampling_options(**sampling)`), `seed` and
    `elevation`; with `run_first` it runs once so "new" shows the defaults' grid. Returns the `SamplingExplorer`
    widget (display it, or call its `run()`)."""
    return SamplingExplorer(pipe, frames, seed=seed, elevation=elevation, run_first=run_first, **sampling)
