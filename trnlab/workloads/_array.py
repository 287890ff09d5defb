"""Array-namespace helpers for the workload formulas (array-api-compat; no NumPy calls)."""

from __future__ import annotations

from typing import Any

from array_api_compat import array_namespace

from trnlab.errors import ParameterError, bad_value


def as_float(x: Any, name: str) -> Any:
    """Return ``x`` as a real floating array of its own namespace, or a Python float.

    Python ints and floats stay scalars (the result of a formula is then a float). Integer
    arrays are cast to float64 so that products of large counts do not overflow; floating
    arrays keep their dtype.
    """
    if isinstance(x, bool):
        raise ParameterError(bad_value("workloads", name, x, "a number or an array of numbers"))
    if isinstance(x, int | float):
        return float(x)
    try:
        xp = array_namespace(x)
    except TypeError:
        raise ParameterError(bad_value("workloads", name, type(x).__name__,
                                       "a number or an array of numbers")) from None
    if xp.isdtype(x.dtype, "real floating"):
        return x
    if not xp.isdtype(x.dtype, "integral"):
        raise ParameterError(bad_value("workloads", f"{name}.dtype", str(x.dtype),
                                       "an integer or real floating dtype"))
    return xp.astype(x, xp.float64)


def minimum(x: Any, bound: float) -> Any:
    """``min(x, bound)`` elementwise for a float or an array of any namespace."""
    if isinstance(x, float):
        return min(x, bound)
    return array_namespace(x).minimum(x, bound)
