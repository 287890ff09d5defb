"""The catalog as xarray Datasets (``chip`` and ``system`` dims), with units and statuses."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from trnlab.catalog.loader import Catalog
from trnlab.catalog.records import PRECISIONS

_CHIP_VARS = {
    "hbm_capacity": ("B", "HBM capacity"),
    "hbm_bandwidth": ("B/s", "HBM bandwidth"),
    "scaleup_bandwidth": ("B/s", "scale-up bandwidth per chip (bidirectional)"),
    "scaleout_bandwidth": ("B/s", "scale-out bandwidth per chip"),
    "sram": ("B", "on-chip SRAM"),
    "tdp": ("W", "chip power (TDP/TGP/TBP, projected where unpublished)"),
}


def _status(fields: dict, key: str) -> str:
    return fields[key].status if key in fields else "absent"


def chips_dataset(cat: Catalog) -> xr.Dataset:
    """One row per chip: peaks per precision, memory, bandwidths, power, with ranges and statuses."""
    chips = list(cat.chips.values())
    ds = xr.Dataset(coords={"chip": [c.id for c in chips], "precision": list(PRECISIONS)})
    ds["peak_flops"] = (("chip", "precision"),
                        np.array([[c.peak_flops.get(p, math.nan) for p in PRECISIONS]
                                  for c in chips]),
                        {"units": "FLOP/s", "long_name": "dense peak (NaN: not native)"})
    ds["peak_flops_status"] = (("chip", "precision"),
                               np.array([[_status(c.fields, f"peak_{p}") for p in PRECISIONS]
                                         for c in chips]),
                               {"units": "1", "long_name": "status of peak_flops"})
    for key, (units, long_name) in _CHIP_VARS.items():
        ds[key] = ("chip", np.array([getattr(c, key) for c in chips]),
                   {"units": units, "long_name": long_name})
        ds[f"{key}_status"] = ("chip", np.array([_status(c.fields, key) for c in chips]),
                               {"units": "1", "long_name": f"status of {key}"})
    ds["tdp_low"] = ("chip", np.array([c.tdp_range[0] for c in chips]),
                     {"units": "W", "long_name": "chip power, low end of range"})
    ds["tdp_high"] = ("chip", np.array([c.tdp_range[1] for c in chips]),
                      {"units": "W", "long_name": "chip power, high end of range"})
    ds["year"] = ("chip", np.array([c.year for c in chips]),
                  {"units": "1", "long_name": "year of availability"})
    ds["vendor"] = ("chip", np.array([c.vendor for c in chips]),
                    {"units": "1", "long_name": "vendor"})
    ds["name"] = ("chip", np.array([c.name for c in chips]),
                  {"units": "1", "long_name": "product name"})
    ds.attrs["catalog_digest"] = cat.digest
    return ds


def systems_dataset(cat: Catalog) -> xr.Dataset:
    """One row per system: chip, size, per-chip and aggregate peaks, memory and bandwidth."""
    systems = list(cat.systems.values())
    n = np.array([s.n_chips for s in systems], dtype=float)
    ds = xr.Dataset(coords={"system": [s.id for s in systems], "precision": list(PRECISIONS)})
    ds["chip"] = ("system", np.array([s.chip for s in systems]),
                  {"units": "1", "long_name": "chip id"})
    ds["n_chips"] = ("system", n, {"units": "1", "long_name": "chips in the scale-up domain"})
    total = lambda s, get: sum(k * get(cat.chips[c]) for c, k in s.chip_counts.items())
    ds["peak_flops"] = (("system", "precision"),
                        np.array([[total(s, lambda c, p=p: c.peak_flops.get(p, math.nan))
                                   for p in PRECISIONS] for s in systems]),
                        {"units": "FLOP/s", "long_name": "dense peak of the system"})
    ds["hbm_capacity"] = ("system", np.array([total(s, lambda c: c.hbm_capacity)
                                              for s in systems]),
                          {"units": "B", "long_name": "HBM capacity of the system"})
    ds["hbm_bandwidth"] = ("system", np.array([total(s, lambda c: c.hbm_bandwidth)
                                               for s in systems]),
                           {"units": "B/s", "long_name": "HBM bandwidth of the system"})
    ds["scaleup_bandwidth"] = ("system", np.array([s.scaleup_bandwidth for s in systems]),
                               {"units": "B/s", "long_name": "scale-up bandwidth per chip"})
    ds["scaleup_latency"] = ("system", np.array([s.scaleup_latency for s in systems]),
                             {"units": "s", "long_name": "scale-up latency per hop"})
    ds["scaleout_bandwidth"] = ("system",
                                np.array([cat.networks[s.scaleout].bandwidth for s in systems]),
                                {"units": "B/s", "long_name": "scale-out bandwidth per chip"})
    ds.attrs["catalog_digest"] = cat.digest
    return ds
