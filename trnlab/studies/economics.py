"""Power, price and economics inputs (data/perf/power.toml, data/cost/capex.toml) and their
Monte-Carlo sampling.

Every ranged input can be sampled: :func:`draw` returns ``n`` values from a triangular
distribution on its ``[low, high]`` range with the mode at the catalog value (a fixed value is
repeated). A study evaluates the samples as one more array axis (``sample``) in the same
vectorized core and reports percentiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from trnlab import catalog
from trnlab._paths import data_dir
from trnlab.catalog.fields import Field, parse_table
from trnlab.catalog.loader import read_toml
from trnlab.errors import CatalogError, ParameterError, bad_value

PERCENTILES = (5.0, 50.0, 95.0)


@dataclass(frozen=True)
class Economics:
    """Power-model parameters, system capex and TCO economics, with provenance."""

    power: dict[str, Field]
    capex: dict[str, Field]  # system id -> price
    economics: dict[str, Field]

    def system_capex(self, system: str) -> Field:
        if system not in self.capex:
            raise CatalogError(bad_value("data/cost/capex.toml", "system", system,
                                         f"no capex; known: {', '.join(sorted(self.capex))}"))
        return self.capex[system]


@lru_cache(maxsize=2)
def load_economics(root: str | None = None) -> Economics:
    """Read and validate the power and cost data."""
    base = Path(root) if root else data_dir()
    sources = set(catalog.default().sources)
    power = parse_table(read_toml(base / "perf" / "power.toml").get("param", {}), "power.toml: [param]",
                    sources)
    doc = read_toml(base / "cost" / "capex.toml")
    capex = {}
    for system, raw in doc.get("capex", {}).items():
        catalog.default().system(system)  # an unknown system id is an error
        capex[system] = parse_table(raw, f"capex.toml: [capex.{system}]", sources)["price"]
    econ = parse_table(doc.get("economics", {}).get("default", {}),
                   "capex.toml: [economics.default]", sources)
    for key in ("life_years", "energy_price", "network_capex_fraction",
                "facility_capex_per_watt", "facility_life_years"):
        if key not in econ:
            raise CatalogError(f"capex.toml: [economics.default]: missing required field '{key}'")
    return Economics(power, capex, econ)


def override(field: Field, value: float | Sequence[float] | None) -> Field:
    """``field`` with a user's value in the field's own unit: a number fixes it, a
    ``[low, central, high]`` triple makes it a projected range; ``None`` keeps the data."""
    if value is None:
        return field
    if isinstance(value, int | float):
        return Field(field.name, float(value), field.unit, "projected", field.sources,
                     "set by the user", None)
    low, mid, high = (float(v) for v in value)
    if not low <= mid <= high:
        raise ParameterError(bad_value("override", field.name, list(value),
                                       "give [low, central, high] in increasing order"))
    return Field(field.name, mid, field.unit, "projected", field.sources, "set by the user",
                 (low, high))


def draw(field: Field, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` samples of ``field`` in SI: triangular on its range, mode at its value."""
    if n < 1:
        raise ParameterError(bad_value("draw", "n", n, "must be >= 1"))
    if field.range is None or field.low == field.high:
        return np.full(n, field.si)
    return rng.triangular(field.low, field.si, field.high, size=n)


def central(field: Field, n: int = 1) -> np.ndarray:
    """The catalog value repeated ``n`` times (the deterministic path)."""
    return np.full(n, field.si)


def percentiles(samples: np.ndarray, axis: int = 0) -> np.ndarray:
    """p5, p50, p95 along ``axis`` (the sample axis), stacked on a new first axis."""
    return np.percentile(samples, PERCENTILES, axis=axis)
