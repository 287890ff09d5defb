"""The hardware catalog: ``data/hardware/*.toml`` loaded, validated and typed.

>>> from trnlab import catalog
>>> catalog.chip("trn3").peak("mxfp8")      # [FLOP/s]
2517000000000000.0
>>> ds = catalog.to_dataset()                # xarray Dataset with a ``chip`` dim
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import xarray as xr

from trnlab._paths import data_dir
from trnlab.catalog.dataset import chips_dataset, systems_dataset
from trnlab.catalog.fields import Field
from trnlab.catalog.loader import Catalog, load
from trnlab.catalog.models import load_models, model, model_ids, spec
from trnlab.catalog.records import PRECISIONS, Chip, Fabric, Facility, Network, Price, System
from trnlab.checks import ident
from trnlab.errors import CatalogError

__all__ = ["PRECISIONS", "Catalog", "Chip", "Fabric", "Facility", "Field", "Network", "Price", "System",
           "chip", "default", "facility", "load", "load_models", "model", "model_ids", "network",
           "price", "spec", "system",
           "systems_to_dataset", "to_dataset"]


@lru_cache(maxsize=4)
def _load_cached(root: str) -> Catalog:
    return load(Path(root))


def default(root: Path | str | None = None) -> Catalog:
    """The catalog in ``root`` (default: ``data/hardware`` of this checkout), loaded once."""
    return _load_cached(str(Path(root) if root else data_dir() / "hardware"))


def chip(chip_id: str) -> Chip:
    """The chip ``chip_id`` (e.g. ``"trn3"``); unknown ids raise CatalogError."""
    return default().chip(ident("catalog", "chip id", chip_id, CatalogError))


def system(system_id: str) -> System:
    """The system ``system_id`` (e.g. ``"trn3-ultraserver"``)."""
    return default().system(ident("catalog", "system id", system_id, CatalogError))


def network(network_id: str) -> Network:
    """The scale-out network ``network_id`` (e.g. ``"efa-200"``)."""
    return default().network(ident("catalog", "network id", network_id, CatalogError))


def price(price_id: str) -> Price:
    """The price point ``price_id`` (e.g. ``"p5-48xl-on-demand"``)."""
    return default().price(ident("catalog", "price id", price_id, CatalogError))


def facility(facility_id: str = "default") -> Facility:
    """Data-centre factors (system overhead, PUE)."""
    return default().facility(ident("catalog", "facility id", facility_id, CatalogError))


def to_dataset() -> xr.Dataset:
    """The chips of the default catalog as a Dataset with a ``chip`` dim."""
    return chips_dataset(default())


def systems_to_dataset() -> xr.Dataset:
    """The systems of the default catalog as a Dataset with a ``system`` dim."""
    return systems_dataset(default())
