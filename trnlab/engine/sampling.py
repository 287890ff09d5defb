"""Monte-Carlo sampling of ranged inputs, user overrides, and percentile bands.

Every ranged input can be sampled: :func:`draw` returns ``n`` values from a triangular
distribution on its ``[low, high]`` range with the mode at the catalog value (a fixed value is
repeated). A study evaluates the samples as one more array axis (``sample``) in the same
vectorized core and reports the bands of :func:`bands` (p5, p50, p95).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trnlab.catalog.fields import Field
from trnlab.checks import finite, is_number, positive_int
from trnlab.errors import ParameterError, bad_value

PERCENTILES = (5.0, 50.0, 95.0)


def override(field: Field, value: float | Sequence[float] | None) -> Field:
    """``field`` with a user's value in the field's own unit: a number fixes it, a
    ``[low, central, high]`` triple makes it a projected range; ``None`` keeps the data."""
    if value is None:
        return field
    where = "override"
    if is_number(value):
        return Field(field.name, finite(where, field.name, value), field.unit, "projected",
                     field.sources, "set by the user", None)
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 3:
        raise ParameterError(bad_value(where, field.name, value,
                                       "a number or [low, central, high]"))
    low, mid, high = (finite(where, field.name, v) for v in value)
    if not low <= mid <= high:
        raise ParameterError(bad_value("override", field.name, list(value),
                                       "give [low, central, high] in increasing order"))
    return Field(field.name, mid, field.unit, "projected", field.sources, "set by the user",
                 (low, high))


def draw(field: Field, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``field`` in SI: triangular on its range, mode at its value."""
    n = positive_int("draw", "n", n)
    if field.range is None or field.low == field.high:
        return np.full(n, field.si)
    return rng.triangular(field.low, field.si, field.high, size=n)


def central(field: Field, n: int = 1) -> np.ndarray:
    """The catalog value repeated ``n`` times (the deterministic path)."""
    return np.full(n, field.si)


def bands(samples: np.ndarray, axis: int = 0) -> np.ndarray:
    """p5, p50, p95 of ``samples`` along ``axis`` (the sample axis), stacked on a new first
    axis: the one band helper of trnlab."""
    return np.percentile(samples, PERCENTILES, axis=axis)
