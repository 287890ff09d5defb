"""One sourced numeric field of the catalog: value, unit, status, source, range, note, alternatives."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from trnlab.catalog.units import SI_UNIT, UNITS, dimension, to_si
from trnlab.errors import CatalogError, bad_value

STATUSES = ("announced", "measured", "projected", "derived")
_FIELD_KEYS = {"value", "unit", "status", "source", "range", "note", "alt"}


@dataclass(frozen=True)
class Alternative:
    """A conflicting published value that the catalog keeps but does not use."""

    value: float
    unit: str
    source: str
    note: str = ""

    @property
    def si(self) -> float:
        return to_si(self.value, self.unit)


@dataclass(frozen=True)
class Field:
    """A sourced number. ``value`` is in ``unit``; ``si``, ``low``, ``high`` are SI."""

    name: str
    value: float
    unit: str
    status: str
    sources: tuple[str, ...]
    note: str = ""
    range: tuple[float, float] | None = None
    alt: tuple[Alternative, ...] = field(default=())

    @property
    def si(self) -> float:
        """The value in SI units [see :data:`trnlab.catalog.units.SI_UNIT`]."""
        return to_si(self.value, self.unit)

    @property
    def si_unit(self) -> str:
        return SI_UNIT[dimension(self.unit)]

    @property
    def low(self) -> float:
        """Lower end of the range in SI (= ``si`` when the value is not ranged)."""
        return to_si(self.range[0], self.unit) if self.range else self.si

    @property
    def high(self) -> float:
        """Upper end of the range in SI (= ``si`` when the value is not ranged)."""
        return to_si(self.range[1], self.unit) if self.range else self.si

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, in the units of the data file."""
        out: dict[str, Any] = {"value": self.value, "unit": self.unit, "status": self.status,
                               "source": "; ".join(self.sources)}
        if self.range:
            out["range"] = list(self.range)
        if self.note:
            out["note"] = self.note
        if self.alt:
            out["alt"] = [{"value": a.value, "unit": a.unit, "source": a.source, "note": a.note}
                          for a in self.alt]
        return out


def _number(raw: object, where: str, name: str) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float) or not math.isfinite(raw):
        raise CatalogError(bad_value(where, name, raw, "must be a finite number"))
    return float(raw)


def _sources(raw: object, where: str, name: str, known: set[str]) -> tuple[str, ...]:
    if not isinstance(raw, str) or not raw.strip():
        raise CatalogError(bad_value(where, f"{name}.source", raw, "must name a source key"))
    keys = tuple(k.strip() for k in raw.split(";") if k.strip())
    for key in keys:
        if key not in known:
            raise CatalogError(bad_value(where, f"{name}.source", key,
                                         "unknown source key; add it to sources.toml"))
    return keys


def parse_field(raw: object, where: str, name: str, want_dimension: str,
                known_sources: set[str]) -> Field:
    """Validate one inline table of a data file and return a :class:`Field`.

    ``where`` is ``"<file>: [<table>.<id>]"``; every error names it, the field and the value.
    """
    if not isinstance(raw, dict):
        raise CatalogError(bad_value(where, name, raw,
                                     "must be an inline table {value, unit, status, source}"))
    extra = set(raw) - _FIELD_KEYS
    if extra:
        raise CatalogError(bad_value(where, name, min(extra),
                                     f"unknown key; allowed: {', '.join(sorted(_FIELD_KEYS))}"))
    for key in ("value", "unit", "status", "source"):
        if key not in raw:
            raise CatalogError(f"{where}: {name}: missing '{key}' (every number needs "
                               "value, unit, status and source)")
    value = _number(raw["value"], where, f"{name}.value")
    unit = raw["unit"]
    if unit not in UNITS:
        raise CatalogError(bad_value(where, f"{name}.unit", unit,
                                     f"unknown unit; allowed: {' '.join(UNITS)}"))
    if dimension(unit) != want_dimension:
        allowed = " ".join(u for u, (d, _) in UNITS.items() if d == want_dimension)
        raise CatalogError(bad_value(where, f"{name}.unit", unit, f"must be one of: {allowed}"))
    status = raw["status"]
    if status not in STATUSES:
        raise CatalogError(bad_value(where, f"{name}.status", status,
                                     f"allowed: {', '.join(STATUSES)}"))
    sources = _sources(raw["source"], where, name, known_sources)
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise CatalogError(bad_value(where, f"{name}.note", note, "must be text"))
    rng = raw.get("range")
    if rng is not None:
        if not (isinstance(rng, list) and len(rng) == 2):
            raise CatalogError(bad_value(where, f"{name}.range", rng, "must be [low, high]"))
        low, high = (_number(r, where, f"{name}.range") for r in rng)
        if not low <= value <= high:
            raise CatalogError(bad_value(where, f"{name}.range", rng,
                                         f"must satisfy low <= value ({value:g}) <= high"))
        rng = (low, high)
    if status == "projected" and (rng is None or not note):
        raise CatalogError(bad_value(where, f"{name}.status", status,
                                     "a projected value needs range = [low, high] and a note"))
    if status == "derived" and not note:
        raise CatalogError(bad_value(where, f"{name}.status", status,
                                     "a derived value needs a note with its formula"))
    alts = []
    for i, alt in enumerate(raw.get("alt", [])):
        alt_where = f"{name}.alt[{i}]"
        if not isinstance(alt, dict) or not {"value", "unit", "source"} <= set(alt):
            raise CatalogError(bad_value(where, alt_where, alt,
                                         "must be {value, unit, source, note}"))
        alt_unit = alt["unit"]
        if alt_unit not in UNITS or dimension(alt_unit) != want_dimension:
            raise CatalogError(bad_value(where, f"{alt_where}.unit", alt_unit,
                                         f"must be a {want_dimension} unit"))
        alts.append(Alternative(_number(alt["value"], where, f"{alt_where}.value"), alt_unit,
                                "; ".join(_sources(alt["source"], where, alt_where,
                                                   known_sources)),
                                str(alt.get("note", ""))))
    return Field(name, value, unit, status, sources, note, rng, tuple(alts))


def parse_table(raw: dict[str, Any], where: str, known_sources: set[str]) -> dict[str, Field]:
    """Parse every field of a TOML table; each field's dimension follows its own unit."""
    out = {}
    for key, value in raw.items():
        unit = value.get("unit", "") if isinstance(value, dict) else ""
        out[key] = parse_field(value, where, key, dimension(unit) if unit in UNITS else "count",
                               known_sources)
    return out


def with_si_value(field: Field, value_si: float) -> Field:
    """``field`` with a new value given in SI (its range widened to contain it if needed)."""
    value = value_si / UNITS[field.unit][1]
    rng = None if field.range is None else (min(field.range[0], value),
                                            max(field.range[1], value))
    return Field(field.name, value, field.unit, field.status, field.sources, field.note, rng,
                 field.alt)


def update_tables(tables: dict[str, dict[str, Field]], values: dict[str, float]
                  ) -> dict[str, dict[str, Field]]:
    """Copies of ``tables`` with ``values`` [SI] set. A key ``<table>_<name>`` addresses table
    ``<table>`` (e.g. ``gemm_eff_aws``); any other key the table ``fields``."""
    out = {name: dict(table) for name, table in tables.items()}
    for key, value in values.items():
        table = next((t for t in out if t != "fields" and key.startswith(f"{t}_")), "fields")
        name = key.removeprefix(f"{table}_") if table != "fields" else key
        out[table][name] = with_si_value(out[table][name], value)
    return out
