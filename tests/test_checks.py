"""The one set of user-input checks: the integer/number policy, bounds, messages, and the error type."""

import math

import numpy as np
import pytest
import torch

from sv4d_kit import checks
from sv4d_kit.checks import KitInputError


def test_kit_input_error_is_a_value_error():
    assert issubclass(KitInputError, ValueError)  # callers that catch ValueError keep working
    import sv4d_kit

    assert sv4d_kit.KitInputError is KitInputError


@pytest.mark.parametrize("value", [3, np.int64(3), np.uint8(3), torch.tensor(3)])
def test_integers_of_any_integer_type_pass_as_int(value):
    result = checks.integer("n", value, minimum=1)
    assert result == 3 and type(result) is int


@pytest.mark.parametrize("value", [2.0, 2.5, True, False, "2", None, float("nan"), np.float32(2.0), [2]])
def test_everything_else_is_not_an_integer(value):
    with pytest.raises(KitInputError, match=r"^n must be an integer >= 1, got "):
        checks.integer("n", value, minimum=1)


def test_integer_bounds_and_their_wording():
    assert checks.integer("k", 0, minimum=0) == 0 and checks.integer("k", 255, 0, 255) == 255
    for value, bounds, words in (
        (0, dict(minimum=1), "k must be an integer >= 1, got 0"),
        (256, dict(minimum=0, maximum=255), "k must be an integer in [0, 255], got 256"),
        (9, dict(maximum=8), "k must be an integer <= 8, got 9"),
    ):
        with pytest.raises(KitInputError) as err:
            checks.integer("k", value, **bounds)
        assert str(err.value) == words


@pytest.mark.parametrize("value", [0.5, 1, np.float32(0.5), torch.tensor(0.5)])
def test_numbers_pass_as_float(value):
    result = checks.number("x", value, 0, 1)
    assert type(result) is float and math.isclose(result, float(value))


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf"), True, "0.5", None, [0.5]])
def test_non_finite_and_non_numbers_are_refused(value):
    with pytest.raises(KitInputError, match=r"^x must be a finite number, got "):
        checks.number("x", value)


def test_number_bounds_open_and_closed():
    assert checks.number("x", 0, minimum=0) == 0.0
    with pytest.raises(KitInputError, match=r"x must be a finite number > 0, got 0"):
        checks.positive("x", 0)
    with pytest.raises(KitInputError, match=r"x must be a finite number in \(0, 1\], got 0"):
        checks.number("x", 0, 0, 1, open_min=True)
    with pytest.raises(KitInputError, match=r"in \[0, 1\], got 1.5"):
        checks.fraction("x", 1.5)
    assert checks.fraction("x", 1) == 1.0


def test_one_of_names_the_choices():
    assert checks.one_of("loss", "l1", ("l2", "l1")) == "l1"
    with pytest.raises(KitInputError, match=r"loss must be one of l2, l1, got 'huber'"):
        checks.one_of("loss", "huber", ("l2", "l1"))


def test_the_callers_share_the_policy():
    """Pixels, steps, frames and seeds: 2.0 is refused everywhere (it used to pass as pixels and fail as steps)."""
    from sv4d_kit import cameras, sampling, synthetic

    for call in (
        lambda: cameras.intrinsics(40.0, 32.0),
        lambda: cameras.orbit_azimuths(4.0),
        lambda: sampling.edm_sigmas(4.0),
        lambda: synthetic.make_scene(2.0),
    ):
        with pytest.raises(KitInputError, match="must be an integer"):
            call()
    assert cameras.orbit_azimuths(np.int64(4)).shape == (4,)
