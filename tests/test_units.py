"""The unit grammar (trnlab.units): parsing, conversions worked by hand, dimensions."""

from __future__ import annotations

import numpy as np
import pytest

from trnlab import units
from trnlab.catalog.units import SI_UNIT, UNITS
from trnlab.errors import ParameterError

GRAMMAR = ["KiB", "GiB", "Gbit/s", "TB/s", "TFLOP/s", "PFLOP/s", "EFLOP/s", "us", "ms", "kW",
           "MW", "GW", "GWh", "kWh", "USD/h", "USD/kWh", "USD/W", "FLOP/B", "FLOP/s/W", "1",
           "percent", "token/s", "token/J", "chip*h", "chip_hour", "request/s", "sequence/s"]


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_catalog_units_parse(unit):
    units.parse(unit)


@pytest.mark.parametrize("unit", sorted(UNITS))
def test_catalog_factors_agree(unit):
    dimension, factor = UNITS[unit]
    assert units.convert(1.0, unit, SI_UNIT[dimension]) == pytest.approx(factor, rel=1e-12)


@pytest.mark.parametrize("unit", GRAMMAR)
def test_grammar_parses(unit):
    units.parse(unit)


@pytest.mark.parametrize(("value", "src", "dst", "expected"), [
    (1.0, "TFLOP/s", "FLOP/s", 1e12),
    (1.0, "GiB", "B", 2.0**30),
    (1.0, "KiB", "B", 1024.0),
    (8.0, "Gbit/s", "B/s", 1e9),
    (1.0, "USD/h", "USD/s", 1 / 3600),
    (1.0, "chip*h", "chip*s", 3600.0),
    (1.0, "chip_hour", "chip*s", 3600.0),
    (1.0, "us", "s", 1e-6),
    (2.5, "MW", "kW", 2500.0),
    (1.0, "GWh", "J", 3.6e12),
    (1.0, "USD/kWh", "USD/J", 1 / 3.6e6),
    (50.0, "percent", "1", 0.5),
    (1.0, "EFLOP/s", "PFLOP/s", 1000.0),
])
def test_conversions_by_hand(value, src, dst, expected):
    out = units.convert(value, src, dst)
    assert isinstance(out, float)
    assert out == pytest.approx(expected, rel=1e-12)


def test_convert_array():
    out = units.convert(np.array([1000.0, 2500.0]), "W", "kW")
    assert isinstance(out, np.ndarray)
    np.testing.assert_allclose(out, [1.0, 2.5])


def test_byte_is_a_byte_not_a_bel():
    assert units.convert(1.0, "B", "bit") == 8.0
    assert units.same_dimension("B", "bit")
    assert not units.same_dimension("B", "1")
    assert not units.same_dimension("B/s", "1/s")


@pytest.mark.parametrize(("a", "b"), [
    ("FLOP/s", "B/s"), ("FLOP/B", "FLOP"), ("token/s", "1/s"), ("USD", "1"), ("chip*h", "h"),
    ("request/s", "token/s"), ("sequence", "1"), ("W", "J"),
])
def test_different_dimensions(a, b):
    assert not units.same_dimension(a, b)
    with pytest.raises(ParameterError) as err:
        units.convert(1.0, a, b)
    assert f"{a!r}" in str(err.value) and f"{b!r}" in str(err.value)


def test_mismatch_names_both_units():
    with pytest.raises(ParameterError) as err:
        units.convert(1.0, "FLOP/s", "B/s")
    assert "'FLOP/s'" in str(err.value) and "'B/s'" in str(err.value)


@pytest.mark.parametrize(("a", "b"), [("W", "kW"), ("chip*h", "chip_hour"), ("1", "percent"),
                                      ("TB/s", "Gbit/s"), ("USD/h", "USD/s")])
def test_same_dimension(a, b):
    assert units.same_dimension(a, b)


@pytest.mark.parametrize("bad", ["", " ", "furlongs of joy", "2*B", "flops per second", None])
def test_bad_units_fail(bad):
    with pytest.raises(ParameterError, match="not a unit of trnlab's grammar"):
        units.parse(bad)


def test_bad_unit_fails_in_convert():
    with pytest.raises(ParameterError, match="furlongs"):
        units.convert(1.0, "furlongs of joy", "1")
