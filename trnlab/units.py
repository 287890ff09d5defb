"""trnlab's unit grammar: pint's units plus FLOP, USD, token, chip, request and sequence.

Spellings: ``FLOP`` (a count with its own dimension, so ``FLOP/s`` is not ``B/s`` nor ``1/s``),
``B`` = byte = 8 ``bit`` (information has its own dimension, so ``B/s`` is not ``1/s`` and
``FLOP/B`` is not ``FLOP``), ``USD`` (currency), ``token``, ``request``, ``sequence`` (each its
own count dimension, so ``token/s`` is not ``1/s``), ``chip`` (``chip*h`` or ``chip_hour`` for
chip-hours), ``1`` for dimensionless (the empty string is not a unit), ``percent``, ``us`` for
microseconds. SI prefixes (``TFLOP/s``, ``GW``) and binary prefixes (``GiB``) apply everywhere.

>>> convert(1.0, "TFLOP/s", "FLOP/s")
1000000000000.0
>>> same_dimension("FLOP/s", "B/s")
False
"""

from __future__ import annotations

import importlib.resources
from functools import cache

import numpy as np
import pint

from trnlab.errors import ParameterError, bad_value

#: definitions added to pint's defaults (``bit`` is redefined from ``[]`` to ``[information]``)
_EXTRA = (
    "FLOP = [flop]",
    "USD = [currency]",
    "token = [token]",
    "request = [request]",
    "sequence = [sequence]",
    "chip = [chip]",
    "chip_hour = chip * hour",
    "KB = 1e3 * byte",  # the catalog's spelling of kilobyte (pint spells it kB)
)
_GRAMMAR = "not a unit of trnlab's grammar (pint with FLOP, USD, token, chip)"


@cache
def registry() -> pint.UnitRegistry:
    """The project's pint registry, built once (pint's English defaults plus :data:`_EXTRA`)."""
    root = importlib.resources.files("pint")
    text = (root / "default_en.txt").read_text(encoding="utf-8")
    constants = (root / "constants_en.txt").read_text(encoding="utf-8")
    text = text.replace("\nbit = []\n", "\nbit = [information]\n")
    text = text.replace("\n@import constants_en.txt\n", f"\n{constants}\n")
    ureg = pint.UnitRegistry(None)
    ureg.load_definitions([*text.splitlines(), *_EXTRA])
    return ureg


def parse(unit: str) -> pint.Unit:
    """The pint unit spelled ``unit`` (e.g. ``"TFLOP/s"``, ``"USD/kWh"``, ``"1"``).

    Raises ParameterError for a string outside the grammar, and for ``""`` (use ``"1"``).

    >>> parse("GiB/s")
    <Unit('gibibyte / second')>
    """
    if not isinstance(unit, str) or not unit.strip():
        raise ParameterError(bad_value("units", "unit", unit, _GRAMMAR))
    try:
        parsed = registry().parse_units(unit)
    except Exception as err:
        raise ParameterError(bad_value("units", "unit", unit, _GRAMMAR)) from err
    return parsed


def convert(values, src: str, dst: str):
    """``values`` [src] expressed in [dst]: a float for a scalar, else a NumPy array.

    Raises ParameterError naming both units when they differ in dimension.

    >>> convert(8.0, "Gbit/s", "B/s")
    1000000000.0
    """
    a, b = parse(src), parse(dst)
    try:
        out = registry().Quantity(np.asarray(values, dtype=float), a).to(b).magnitude
    except pint.DimensionalityError as err:
        raise ParameterError(bad_value("units", "unit", dst, f"not convertible from {src!r} "
                                       f"({a.dimensionality} vs {b.dimensionality})")) from err
    return float(out) if np.ndim(out) == 0 else out


def same_dimension(a: str, b: str) -> bool:
    """Whether units ``a`` and ``b`` have the same dimension (``"W"``, ``"kW"``: True).

    >>> same_dimension("chip*h", "chip_hour")
    True
    """
    return parse(a).dimensionality == parse(b).dimensionality
