"""The declared bounds of trnlab's public parameters, checked once at each boundary.

Every public entry point (the CLI commands, ``engine.training.search``,
``engine.serving.frontier``, the studies, ...) checks its arguments with these helpers before
any work, so that the vectorized core never sees a value it cannot use. A bad value raises
:class:`~trnlab.errors.ParameterError` (or the error class given) with one line
``<where>: <name> = <value>: <what is allowed>`` (:func:`trnlab.errors.bad_value`).

Each helper returns the value in its checked type (``int``, ``float``, ``str``, ``dict``, ...).
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Collection, Iterable, Mapping
from typing import Any

from trnlab.errors import ParameterError, TrnlabError, bad_value

#: most chips of one job or cluster [chip]: beyond any announced cluster (1e6), small enough
#: that a layout enumeration stays in seconds
MAX_CHIPS = 10_000_000
#: longest sequence, prompt or generation [token] (2^24, 16 Mi: beyond any published context)
MAX_TOKENS = 1 << 24
#: most sequences per step or requests in flight [sequence]
MAX_BATCH = 1 << 30
#: most Monte-Carlo samples of a study [1] (memory grows with systems x samples)
MAX_SAMPLES = 1_000_000
#: most chips of a cluster whose power is estimated (no layout enumeration) [chip]
MAX_CLUSTER_CHIPS = 10 * MAX_CHIPS


class _Long:
    """A value whose repr is cut to :data:`SHOWN` characters in a message."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


SHOWN = 60  # characters of a value shown in a message


def _show(value: Any) -> Any:
    """A NumPy scalar as the plain Python number it holds, a long value cut (for the
    message)."""
    item = getattr(value, "item", None)
    if item is not None and getattr(value, "ndim", None) == 0:
        with contextlib.suppress(TypeError, ValueError):  # an odd 0-d object stays as it is
            value = item()
    text = repr(value)
    return _Long(text[:SHOWN - 3] + "...") if len(text) > SHOWN else value


def fail(where: str, name: str, value: Any, allowed: str,
         error: type[TrnlabError] = ParameterError) -> TrnlabError:
    """The one-line error of a bad value (raise it: ``raise fail(...)``)."""
    return error(bad_value(where, name, _show(value), allowed))


def is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _as_float(value: Any) -> float | None:
    """``value`` as a finite float, or None (not a number, NaN, inf, too large)."""
    if not is_number(value):
        return None
    try:
        x = float(value)
    except (OverflowError, ValueError, TypeError):
        return None
    return x if math.isfinite(x) else None


def integer(where: str, name: str, value: Any, low: int | None = None,
            high: int | None = None) -> int:
    """``value`` as an ``int`` in ``[low, high]``. Accepts Python and NumPy integers and
    integral finite floats (``16384.0``); refuses bools, strings, fractions, NaN and inf."""
    if low is not None and high is not None:
        allowed = f"an integer in {low:,}..{high:,}"
    elif low is not None:
        allowed = f"an integer >= {low:,}"
    elif high is not None:
        allowed = f"an integer <= {high:,}"
    else:
        allowed = "an integer"
    value_int: int | None = None
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value_int = int(value)
    elif (x := _as_float(value)) is not None and x.is_integer():
        value_int = int(x)
    if value_int is not None and (low is None or value_int >= low) and \
            (high is None or value_int <= high):
        return value_int
    raise fail(where, name, value, allowed)


def positive_int(where: str, name: str, value: Any, upper: int | None = None) -> int:
    """``value`` as an ``int`` >= 1 (and <= ``upper``)."""
    return integer(where, name, value, 1, upper)


def finite(where: str, name: str, value: Any, low: float | None = None,
           high: float | None = None, *, low_open: bool = False, high_open: bool = False,
           unit: str = "") -> float:
    """``value`` as a finite ``float`` in the interval ``low..high`` (open ends on request);
    ``unit`` names the unit in the message."""
    parts = []
    if low is not None:
        parts.append(f"{'>' if low_open else '>='} {low:g}")
    if high is not None:
        parts.append(f"{'<' if high_open else '<='} {high:g}")
    allowed = "a finite number" + (" " + " and ".join(parts) if parts else "") + (
        f" [{unit}]" if unit else "")
    x = _as_float(value)
    if x is not None and (low is None or (x > low if low_open else x >= low)) and \
            (high is None or (x < high if high_open else x <= high)):
        return x
    raise fail(where, name, value, allowed)


def positive(where: str, name: str, value: Any, upper: float | None = None,
             unit: str = "") -> float:
    """``value`` as a finite ``float`` > 0 (and <= ``upper``)."""
    return finite(where, name, value, 0.0, upper, low_open=True, unit=unit)


def choice(where: str, name: str, value: Any, allowed: Iterable[str],
           error: type[TrnlabError] = ParameterError) -> str:
    """``value``, one of the strings ``allowed``."""
    options = list(allowed)
    if isinstance(value, str) and value in options:
        return value
    raise fail(where, name, value, f"allowed: {', '.join(options)}", error)


def ident(where: str, name: str, value: Any, error: type[TrnlabError] = ParameterError) -> str:
    """``value`` as an id string (its existence is the catalog's to check)."""
    if isinstance(value, str) and value:
        return value
    raise fail(where, name, value, "an id string (see 'trnlab catalog')", error)


def known_keys(where: str, mapping: Mapping[str, Any] | None, allowed: Collection[str],
               name: str = "overrides") -> dict[str, Any]:
    """``mapping`` as a dict whose keys are all in ``allowed`` (None gives ``{}``): a typo'd
    key is an error, never silently ignored."""
    if mapping is None:
        return {}
    if not isinstance(mapping, Mapping):
        raise fail(where, name, mapping, "a mapping of name -> value (or None)")
    unknown = [k for k in mapping if k not in allowed]
    if unknown:
        raise fail(where, f"{name} key", unknown[0], f"allowed: {', '.join(allowed)}")
    return dict(mapping)


def int_list(where: str, name: str, values: Any, low: int = 1,
             high: int | None = None) -> list[int]:
    """``values`` as a non-empty list of ints in ``[low, high]``."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise fail(where, name, values, "a non-empty list of integers")
    out = [integer(where, name, v, low, high) for v in values]
    if not out:
        raise fail(where, name, values, "a non-empty list of integers")
    return out


def float_list(where: str, name: str, values: Any, low: float | None = None,
               high: float | None = None, *, low_open: bool = False,
               unit: str = "") -> list[float]:
    """``values`` as a non-empty list of finite floats in ``low..high``."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise fail(where, name, values, "a non-empty list of numbers")
    out = [finite(where, name, v, low, high, low_open=low_open, unit=unit) for v in values]
    if not out:
        raise fail(where, name, values, "a non-empty list of numbers")
    return out


def id_list(where: str, name: str, values: Any) -> list[str]:
    """``values`` as a non-empty list of distinct id strings."""
    if isinstance(values, str | bytes | Mapping) or not isinstance(values, Iterable):
        raise fail(where, name, values, "a non-empty list of ids")
    out = [ident(where, name, v) for v in values]
    if not out:
        raise fail(where, name, values, "a non-empty list of ids")
    if len(set(out)) != len(out):
        raise fail(where, name, out, "no duplicates")
    return out
