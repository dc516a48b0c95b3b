"""Checks of user-supplied values: one error type (`KitInputError`) and one wording for every caller.

Every function checks one value and returns it in its plain Python type, or raises `KitInputError` with one line
that names the value, says what was expected and shows what was given:

    >>> integer("steps", 2.0, minimum=1)
    Traceback (most recent call last):
    KitInputError: steps must be an integer >= 1, got 2.0

The policy, the same everywhere: an integer is an `int` (or a NumPy/torch integer scalar), never a bool and never
a float, even an integral one (`2.0` pixels is a sign of a mix-up, so it is refused, not rounded); a number is a
finite real (an int or a float, never a bool). The `sv4d-kit` command turns a `KitInputError` into its one
`error:` line and exit code 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterable


class KitInputError(ValueError):
    """Bad user input: a value, file or option the kit cannot work with. The message is one line."""


# What the command (exit 2), a batch (that input `failed`) and a notebook widget show as one line: the user's input
# or files. Anything else is a bug in the kit and keeps its traceback.
INPUT_ERRORS = (KitInputError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def one_line(error: BaseException) -> str:
    """An error's message as the one line the user sees (its first line, or its type's name if it has none)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _bounds(minimum, maximum, open_min: bool = False, open_max: bool = False) -> str:
    if minimum is not None and maximum is not None:
        return f"in {'(' if open_min else '['}{minimum}, {maximum}{')' if open_max else ']'}"
    if minimum is not None:
        return f"{'>' if open_min else '>='} {minimum}"
    if maximum is not None:
        return f"{'<' if open_max else '<='} {maximum}"
    return ""


def integer(name: str, value, minimum: int | None = None, maximum: int | None = None) -> int:
    """`value` as an int within [minimum, maximum] (either bound may be None)."""
    expected = " ".join(filter(None, ("an integer", _bounds(minimum, maximum))))
    if isinstance(value, bool):
        raise KitInputError(f"{name} must be {expected}, got {value!r}")
    try:
        result = operator.index(value)  # int, numpy / torch integer scalars; not float, not str
    except TypeError:
        raise KitInputError(f"{name} must be {expected}, got {value!r}") from None
    if (minimum is not None and result < minimum) or (maximum is not None and result > maximum):
        raise KitInputError(f"{name} must be {expected}, got {value!r}")
    return int(result)


def number(
    name: str,
    value,
    minimum: float | None = None,
    maximum: float | None = None,
    open_min: bool = False,
    open_max: bool = False,
) -> float:
    """`value` as a finite float within the bounds (`open_min` / `open_max` exclude the bound itself)."""
    expected = " ".join(filter(None, ("a finite number", _bounds(minimum, maximum, open_min, open_max))))
    if isinstance(value, bool) or isinstance(value, str):
        raise KitInputError(f"{name} must be {expected}, got {value!r}")
    try:
        result = float(value)
    except (TypeError, ValueError):
        raise KitInputError(f"{name} must be {expected}, got {value!r}") from None
    below = minimum is not None and (result <= minimum if open_min else result < minimum)
    above = maximum is not None and (result >= maximum if open_max else result > maximum)
    if not math.isfinite(result) or below or above:
        raise KitInputError(f"{name} must be {expected}, got {value!r}")
    return result


def fraction(name: str, value) -> float:
    """A number in [0, 1] (a probability, a share)."""
    return number(name, value, 0, 1)


def positive(name: str, value) -> float:
    """A finite number > 0."""
    return number(name, value, 0, open_min=True)


def one_of(name: str, value, choices: Iterable):
    """`value` if it is one of `choices`."""
    choices = tuple(choices)
    if value not in choices:
        raise KitInputError(f"{name} must be one of {', '.join(map(str, choices))}, got {value!r}")
    return value


def torch_device(name: str, value) -> str:
    """A device torch has here: "cpu", "cuda", "cuda:N" (N below the device count) or "mps"; returned as given."""
    import torch

    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise KitInputError(f"{name} must be cpu, cuda, cuda:N or mps, got {value!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise KitInputError(f"{name} {value} was asked for, but torch sees no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise KitInputError(f"{name} {value}: torch sees only {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise KitInputError(f"{name} {value} was asked for, but torch sees no MPS device")
    return str(value)
