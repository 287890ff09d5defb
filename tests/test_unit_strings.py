"""Every unit string trnlab writes or reads is in the grammar of :mod:`trnlab.units`.

(a) each ``unit`` of each TOML file under data/; (b) the catalog's Datasets; (c) each study's
and engine entry point's Dataset, including units that parse but contradict the variable's own
name (a price per chip-hour in ``USD``, chip-hours in ``h``); (d) :func:`trnlab.io.save` refuses
units outside the grammar.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from trnlab import catalog, io, units
from trnlab._paths import data_dir
from trnlab.errors import ParameterError, TrnlabError

TOML_FILES = sorted(data_dir().rglob("*.toml"))

#: naming conventions whose dimension is known: (pattern on the name, pattern on long_name,
#: allowed units, the first preferred). A variable matching either pattern must have the
#: dimension of one of the allowed units.
CONVENTIONS: tuple[tuple[str | None, str | None, tuple[str, ...]], ...] = (
    (r"per_chip_hour", r"\bprice per chip-hour\b", ("USD/(chip*h)",)),
    (r"(^|_)chip_hours($|_)", r"\bchip-hours\b", ("chip*h",)),
    (r"(^|_)chip_s($|_)", r"\bchip-seconds\b", ("chip*s", "chip*s/Mtoken")),
    (r"tokens_per_s", None, ("token/s", "1/s")),
    (r"tokens_per_joule", None, ("token/J", "1/J")),
    (r"^(step_time|time_to_train|t_[a-z]+|(slo_)?ttft|(slo_)?tpot)$", None, ("s",)),
    (r"^(mfu|hfu|heatmap_mfu)$", None, ("1",)),
)


# ------------------------------------------------------------------------------ (a) data/
def _units_in(doc: object, path: str = "") -> Iterator[tuple[str, object]]:
    """(dotted path, unit) for every table of ``doc`` with a ``unit`` key, recursively."""
    if isinstance(doc, dict):
        if "unit" in doc:
            yield path or "<top>", doc["unit"]
        for key, value in doc.items():
            yield from _units_in(value, f"{path}.{key}" if path else key)
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from _units_in(value, f"{path}[{i}]")


def test_data_has_toml_files():
    names = {p.relative_to(data_dir()).as_posix() for p in TOML_FILES}
    assert {"hardware/chips.toml", "cost/capex.toml", "claims/trainium3.toml",
            "perf/training.toml"} <= names


@pytest.mark.parametrize("path", TOML_FILES,
                         ids=[p.relative_to(data_dir()).as_posix() for p in TOML_FILES])
def test_toml_units_parse(path: Path):
    bad = []
    for where, unit in _units_in(tomllib.loads(path.read_text(encoding="utf-8"))):
        try:
            units.parse(unit)
        except ParameterError:
            bad.append(f"{path.name}: {where}.unit = {unit!r}")
    assert not bad, "\n".join(bad)


# ----------------------------------------------------------------- (b), (c) Datasets
def unit_problems(ds: xr.Dataset) -> list[str]:
    """One line per variable or coordinate whose ``units`` do not parse or contradict its name."""
    out = []
    for name, var in ds.variables.items():
        kind = "coordinate" if name in ds.coords else "variable"
        if "units" not in var.attrs:
            if kind == "variable":
                out.append(f"{kind} {name!r}: no units attr")
            continue
        unit = var.attrs["units"]
        try:
            units.parse(unit)
        except ParameterError:
            out.append(f"{kind} {name!r}: units {unit!r} do not parse")
            continue
        long_name = str(var.attrs.get("long_name", ""))
        for name_re, long_re, allowed in CONVENTIONS:
            hit = (name_re and re.search(name_re, str(name))) or \
                (long_re and re.search(long_re, long_name))
            if hit and not any(units.same_dimension(unit, a) for a in allowed):
                out.append(f"{kind} {name!r}: units {unit!r}, should be {allowed[0]!r} "
                           f"({long_name})")
    return out


def test_unit_problems_sees_wrong_units():
    ds = xr.Dataset(coords={"trn3_price": ("trn3_price", [1.0], {
        "units": "USD", "long_name": "assumed Trn3 price per chip-hour"})})
    ds["chip_hours"] = ((), 1.0, {"units": "h", "long_name": "chip-hours to train"})
    ds["value"] = ((), 1.0, {"units": "see value_unit", "long_name": "value"})
    ds["tokens_per_s"] = ((), 1.0, {"units": "1/s", "long_name": "tokens per second"})
    ds["label"] = ((), "x", {"units": "1", "long_name": "a label"})
    problems = "\n".join(unit_problems(ds))
    assert "'trn3_price': units 'USD', should be 'USD/(chip*h)'" in problems
    assert "'chip_hours': units 'h', should be 'chip*h'" in problems
    assert "'value': units 'see value_unit' do not parse" in problems
    assert "tokens_per_s" not in problems and "label" not in problems


@pytest.mark.parametrize("build", [catalog.to_dataset, catalog.systems_to_dataset],
                         ids=["to_dataset", "systems_to_dataset"])
def test_catalog_dataset_units(build: Callable[[], xr.Dataset]):
    ds = build()
    assert not unit_problems(ds), "\n".join(unit_problems(ds))
    for name, var in ds.data_vars.items():
        if var.dtype.kind in "USOb":  # labels and flags are dimensionless
            assert var.attrs["units"] == "1", name


def _claims() -> xr.Dataset:
    from trnlab.studies import claims
    return claims.study()


def _training() -> xr.Dataset:
    from trnlab.studies import training
    return training.study(scales=(1024,), systems=("trn3-ultraserver", "dgx-h100"),
                          heatmap_chips=1024)


def _memory() -> xr.Dataset:
    from trnlab.studies import memory
    return memory.study(models=("llama3-70b",), chips=("trn3", "h200"), contexts=(8192,))


def _energy() -> xr.Dataset:
    from trnlab.studies import energy
    return energy.study(n_samples=50)


def _cost() -> xr.Dataset:
    from trnlab.studies import cost
    return cost.study(n_samples=50)


def _search() -> xr.Dataset:
    from trnlab.engine import training
    return training.search("llama3-8b", "trn3-ultraserver", 64)


def _frontier() -> xr.Dataset:
    from trnlab.engine import serving
    return serving.frontier("llama3-8b", "dgx-h100")


def _grid() -> xr.Dataset:
    from trnlab.engine import train_grid
    return train_grid.evaluate_grid("llama3-8b", {"tp": [1, 2], "dp": [1, 2]},
                                    system="trn3-ultraserver")


def _grid_labels() -> xr.Dataset:
    from trnlab.engine import train_grid
    return train_grid.evaluate_grid("llama3-8b", {"precision": ["bf16", "fp8"], "tp": [1, 2]},
                                    system="trn3-ultraserver")


STUDIES: dict[str, Callable[[], xr.Dataset]] = {
    "studies.claims": _claims,
    "studies.training": _training,
    "studies.memory": _memory,
    "studies.energy": _energy,
    "studies.cost": _cost,
    "engine.training.search": _search,
    "engine.serving.frontier": _frontier,
    "engine.train_grid.evaluate_grid": _grid,
    "engine.train_grid.evaluate_grid-label-axis": _grid_labels,
}


@pytest.mark.parametrize("build", STUDIES.values(), ids=list(STUDIES))
def test_study_dataset_units(build: Callable[[], xr.Dataset]):
    problems = unit_problems(build())
    assert not problems, "\n".join(problems)


def test_claims_value_units_parse():
    """The per-claim ``value_unit`` labels are units too."""
    ds = _claims()
    bad = [f"{c}: value_unit = {u!r}" for c, u in
           zip(ds["claim"].values, ds["value_unit"].values, strict=True)
           if not _parses(str(u))]
    assert not bad, "\n".join(bad)


def _parses(unit: str) -> bool:
    try:
        units.parse(unit)
    except ParameterError:
        return False
    return True


# ------------------------------------------------------------------------- (d) io.save
def _dataset(unit: object) -> xr.Dataset:
    ds = xr.Dataset(coords={"chip": ["trn2", "trn3"]})
    ds["hbm_bandwidth"] = ("chip", np.array([2.9e12, 4.9e12]),
                           {"units": "B/s", "long_name": "HBM bandwidth"})
    ds["track_length"] = ("chip", np.array([1.0, 2.0]), {"units": unit, "long_name": "length"})
    return ds


# "furlongs" alone is pint's plural of furlong, a unit of the grammar; "furlongs of joy" is not
@pytest.mark.parametrize("unit", ["furlongs of joy", "", " ", "see value_unit", "USD/chip-h", None])
def test_save_refuses_unit_outside_grammar(tmp_path, unit):
    with pytest.raises(TrnlabError) as err:
        io.save(_dataset(unit), tmp_path / "r.nc")
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"dataset variable 'track_length': units = {unit!r}: "), msg
    assert "trnlab's grammar" in msg and "'1'" in msg
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("unit", ["W", "1", "percent", "USD/(chip*h)", "chip*h", "token/s"])
def test_save_accepts_grammar_units(tmp_path, unit):
    back = io.load(io.save(_dataset(unit), tmp_path / "r.nc"))
    assert back["track_length"].attrs["units"] == unit
