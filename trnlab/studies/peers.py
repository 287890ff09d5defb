"""The rack-level peer table: what a planner compares first, one rack of each system.

For each rack (``data/peers/racks.toml``: the catalog system whose chips and scale-up domain it
uses, and how many chips one rack holds): dense peaks at BF16, FP8 and FP4 [FLOP/s] (a chip
without a faster FP4 path counts at its FP8 rate), HBM capacity [B] and bandwidth [B/s], IT
power at full load [W] (chips x TDP x (1 + system overhead), sampled), the listed price per
rack-hour where one is public, and for one dense and one MoE model served at fixed SLOs:
output tokens/s per rack, output tokens per joule of facility energy, and USD per million
output tokens (TCO per chip-hour where the catalog has the system's capex, else the listed
on-demand price, else none), with p5/p50/p95 bands over the ranged power and price inputs.

Serving rates are the best layout meeting TPOT and TTFT inside the system's scale-up domain
(:func:`trnlab.engine.economics.slo_rate`); a rack of several domains (MI355X: 16 x 8 GPUs)
runs replicas inside each domain, and a rack that is a slice of a larger domain (a 64-chip
TPU7x rack of the pod) keeps each replica inside the rack. Energy: chip power follows the tensor activity of the served
layout (:func:`trnlab.perf.power.chip_power`), times (1 + overhead) and PUE.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from trnlab import catalog, checks
from trnlab._paths import data_dir
from trnlab.catalog.fields import Field, parse_field
from trnlab.catalog.loader import read_toml
from trnlab.catalog.params import load_economics
from trnlab.engine.economics import cloud_price, power_inputs, slo_rate, tco_per_chip_hour
from trnlab.engine.hardware import precision_bytes
from trnlab.engine.sampling import PERCENTILES, bands
from trnlab.engine.variables import attrs
from trnlab.errors import CatalogError, bad_value
from trnlab.perf import power

DEFAULT_SYSTEMS = ("trn3-ultraserver", "gb300-nvl72", "gb200-nvl72", "tpu-v7-pod", "mi355x-8")
PEAKS = {"rack_peak_bf16": "bf16", "rack_peak_fp8": "fp8", "rack_peak_fp4": "fp4"}
HOUR = 3600.0


def load_racks(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """``data/peers/racks.toml``: system id -> {name, chips (Field)}; the systems are checked
    against the catalog."""
    path = path or data_dir() / "peers" / "racks.toml"
    sources = set(catalog.default().sources)
    out = {}
    for rid, raw in read_toml(path).get("rack", {}).items():
        where = f"{path.name}: [rack.{rid}]"
        for key in ("name", "system", "chips"):
            if key not in raw:
                raise CatalogError(f"{where}: missing required field '{key}'")
        catalog.system(raw["system"])
        chips: Field = parse_field(raw["chips"], where, "chips", "count", sources)
        out[raw["system"]] = {"name": raw["name"], "chips": chips}
    return out


def rack_chips(system: str) -> tuple[int, str]:
    """Chips per rack of ``system`` and the rack's name (default: the system itself)."""
    racks = load_racks()
    if system in racks:
        return int(racks[system]["chips"].value), racks[system]["name"]
    rec = catalog.system(system)
    return int(rec.n_chips), rec.name


def _check(systems: Any, dense_model: Any, moe_model: Any, precision: Any, input_len: Any,
           output_len: Any, tpot_ms: Any, ttft_ms: Any, n_samples: Any, seed: Any
           ) -> dict[str, Any]:
    where = "peers"
    ids = checks.id_list(where, "systems", systems)
    for s in ids:
        catalog.system(s)
    for name, m in (("dense_model", dense_model), ("moe_model", moe_model)):
        catalog.model(checks.ident(where, name, m, CatalogError))
    return {"systems": ids, "precision": checks.choice(where, "precision", precision,
                                                       precision_bytes()),
            "input_len": checks.positive_int(where, "input_len", input_len, checks.MAX_TOKENS),
            "output_len": checks.positive_int(where, "output_len", output_len,
                                              checks.MAX_TOKENS),
            "tpot_ms": checks.positive(where, "tpot_ms", tpot_ms, unit="ms"),
            "ttft_ms": checks.positive(where, "ttft_ms", ttft_ms, unit="ms"),
            "n_samples": checks.positive_int(where, "n_samples", n_samples, checks.MAX_SAMPLES),
            "seed": checks.integer(where, "seed", seed, 0)}


def study(systems: Sequence[str] = DEFAULT_SYSTEMS, *, dense_model: str = "llama3-70b",
          moe_model: str = "qwen3-235b-a22b", precision: str = "fp8", input_len: int = 2048,
          output_len: int = 512, tpot_ms: float = 50.0, ttft_ms: float = 2000.0,
          n_samples: int = 2000, seed: int = 0) -> xr.Dataset:
    """The peer table as a Dataset over ``system`` (x ``workload`` x ``percentile``).

    Bounds (checked first, one error line each): known, distinct ``systems`` and models; a
    precision of the catalog (weights, activations and KV cache); ``input_len``,
    ``output_len`` in 1..2^24; ``tpot_ms``, ``ttft_ms`` > 0; ``n_samples`` in 1..1e6;
    ``seed`` >= 0.
    """
    w = _check(systems, dense_model, moe_model, precision, input_len, output_len, tpot_ms,
               ttft_ms, n_samples, seed)
    systems, n, seed = w["systems"], w["n_samples"], w["seed"]
    cat = catalog.default()
    racks = [rack_chips(s) for s in systems]
    chips_per_rack = np.array([r[0] for r in racks], dtype=float)
    chips = [cat.chip(cat.system(s).chip) for s in systems]
    workloads = {"dense": dense_model, "moe": moe_model}
    ds = xr.Dataset(coords={
        "system": ("system", systems, attrs("system")),
        "rack_name": ("system", [r[1] for r in racks], {"units": "1", "long_name": "rack"}),
        "vendor": ("system", [c.vendor for c in chips], attrs("vendor")),
        "workload": ("workload", list(workloads), {"units": "1", "long_name": "served model"}),
        "model": ("workload", list(workloads.values()), {"units": "1", "long_name": "model"}),
        "percentile": ("percentile", list(PERCENTILES), {"units": "percent",
                                                          "long_name": "percentile"}),
    })
    ds["rack_chips"] = ("system", chips_per_rack, attrs("rack_chips"))
    for var, p in PEAKS.items():
        ds[var] = ("system", chips_per_rack * [c.peak(p) for c in chips], attrs(var))
    ds["rack_hbm_capacity"] = ("system", chips_per_rack * [c.hbm_capacity for c in chips],
                               attrs("rack_hbm_capacity"))
    ds["rack_hbm_bandwidth"] = ("system", chips_per_rack * [c.hbm_bandwidth for c in chips],
                                attrs("rack_hbm_bandwidth"))
    x = power_inputs(systems, n, seed)
    ds["rack_power"] = (("system", "percentile"), bands(
        chips_per_rack[:, None] * x["tdp"] * (1.0 + x["overhead"]), axis=1).T,
        attrs("rack_power"))
    ds["rack_price"] = ("system", chips_per_rack * [cloud_price(s) for s in systems],
                        attrs("rack_price"))
    capex = load_economics().capex
    cost_basis = ["TCO" if s in capex else "on-demand" if np.isfinite(cloud_price(s))
                  else "none" for s in systems]
    ds["cost_basis"] = ("system", cost_basis, {"units": "1", "long_name":
                                               "basis of the USD per million tokens"})
    shape = (len(systems), len(workloads), len(PERCENTILES))
    tps, per_j, usd = np.full(shape[:2], np.nan), np.full(shape, np.nan), np.full(shape, np.nan)
    for j, model in enumerate(workloads.values()):
        rates = [slo_rate(model, s, w["precision"], w["input_len"], w["output_len"],
                          w["tpot_ms"], w["ttft_ms"], None,
                          int(n) if n < cat.system(s).n_chips else None)
                 for s, n in zip(systems, chips_per_rack, strict=True)]
        rate = np.array([r["output_tokens_per_s_per_chip"] for r in rates])
        act = np.array([[r["compute_share"]] for r in rates])
        chip_w = power.chip_power(x["tdp"], x["idle"], act, 1.0 - act, x["memory_weight"])
        facility_w = power.facility_power(chip_w * (1.0 + x["overhead"]), x["pue"])
        tps[:, j] = rate * chips_per_rack
        per_j[:, j] = bands(rate[:, None] / facility_w, axis=1).T
        price = np.full((len(systems), n), np.nan)
        with_capex = [i for i, s in enumerate(systems) if s in capex]
        if with_capex:
            price[with_capex] = tco_per_chip_hour([systems[i] for i in with_capex],
                                                  chip_w[with_capex], n, seed)
        for i, s in enumerate(systems):
            if s not in capex:
                price[i] = cloud_price(s)
        per_m = price / HOUR / rate[:, None] * 1e6
        per_m[~np.isfinite(per_m)] = np.nan
        usd[:, j] = bands(per_m, axis=1).T
    ds["rack_tokens_per_s"] = (("system", "workload"), tps, attrs("rack_tokens_per_s"))
    ds["rack_tokens_per_joule"] = (("system", "workload", "percentile"), per_j,
                                   attrs("rack_tokens_per_joule"))
    ds["rack_usd_per_m_tokens"] = (("system", "workload", "percentile"), usd,
                                   attrs("rack_usd_per_m_tokens"))
    ds.attrs = {"title": "Rack-level peer table", "precision": w["precision"],
                "input_len": w["input_len"], "output_len": w["output_len"],
                "tpot_ms": w["tpot_ms"], "ttft_ms": w["ttft_ms"], "n_samples": n, "seed": seed,
                "workloads": json.dumps(workloads)}
    ds.attrs["headline"] = headline(ds)
    return ds


def _p50(da: xr.DataArray) -> xr.DataArray:
    return da.sel(percentile=50.0) if "percentile" in da.dims else da


def table(ds: xr.Dataset) -> list[dict[str, Any]]:
    """One row per rack, in display units (PFLOP/s, TB, TB/s, kW, USD/h; tokens/s, tokens/J,
    USD per million tokens with their p5 and p95), NaN where none."""
    rows = []
    for s in ds["system"].values:
        r = ds.sel(system=s)
        row: dict[str, Any] = {"system": str(s), "rack": str(r["rack_name"].values),
                               "chips": int(r["rack_chips"])}
        for var, p in PEAKS.items():
            row[f"PF {p.upper()}"] = float(r[var]) / 1e15
        row["HBM TB"] = float(r["rack_hbm_capacity"]) / 1e12
        row["HBM TB/s"] = float(r["rack_hbm_bandwidth"]) / 1e12
        row["kW"] = float(_p50(r["rack_power"])) / 1e3
        row["USD/h"] = float(r["rack_price"])
        for wl in ds["workload"].values:
            q = r.sel(workload=wl)
            row[f"{wl} tokens/s"] = float(q["rack_tokens_per_s"])
            for key, var in (("tokens/J", "rack_tokens_per_joule"),
                             ("USD/M tokens", "rack_usd_per_m_tokens")):
                for pct, tag in zip(PERCENTILES, ("p5", "p50", "p95"), strict=True):
                    row[f"{wl} {key} {tag}"] = float(q[var].sel(percentile=pct))
        row["cost basis"] = str(r["cost_basis"].values)
        rows.append(row)
    return rows


def headline(ds: xr.Dataset) -> str:
    """One sentence: the rack with the most MoE tokens per joule and its band, and the
    largest FP8 rack, every number from ``ds``."""
    eff = _p50(ds["rack_tokens_per_joule"]).sel(workload="moe")
    best = str(eff.idxmax("system").values)
    band = ds["rack_tokens_per_joule"].sel(workload="moe", system=best)
    fp8 = ds["rack_peak_fp8"]
    big = str(fp8.idxmax("system").values)
    return (f"Serving {ds['model'].sel(workload='moe').item()} at {ds.attrs['precision']}, "
            f"{best} gives the most output tokens per joule ({float(band[1]):.2f}, p5–p95 "
            f"{float(band[0]):.2f}–{float(band[2]):.2f}); {big} has the largest FP8 rack "
            f"({float(fp8.sel(system=big)) / 1e15:.0f} PFLOP/s)")


def reading(ds: xr.Dataset) -> str:
    """The reading as Markdown bullets, every number from ``ds``."""
    lines = [f"- **Headline.** {ds.attrs['headline']}."]
    for wl in ds["workload"].values:
        model = ds["model"].sel(workload=wl).item()
        tps = ds["rack_tokens_per_s"].sel(workload=wl)
        order = [str(s) for s in tps.sortby(tps, ascending=False)["system"].values
                 if np.isfinite(float(tps.sel(system=s)))]
        parts = [f"{s} {float(tps.sel(system=s)):,.0f}" for s in order]
        missing = [str(s) for s in ds["system"].values if str(s) not in order]
        lines.append(f"- **{model} ({wl}), output tokens/s per rack** at TPOT <= "
                     f"{ds.attrs['tpot_ms']:g} ms and TTFT <= {ds.attrs['ttft_ms']:g} ms: "
                     + ", ".join(parts)
                     + (f"; no layout meets the SLO on {', '.join(missing)}" if missing else "")
                     + ".")
        usd = ds["rack_usd_per_m_tokens"].sel(workload=wl)
        priced = [str(s) for s in ds["system"].values
                  if np.isfinite(float(usd.sel(system=s, percentile=50.0)))]
        if priced:
            lines.append("  USD per million output tokens (p50, p5–p95): " + "; ".join(
                f"{s} {float(usd.sel(system=s, percentile=50.0)):.3g} "
                f"({float(usd.sel(system=s, percentile=5.0)):.3g}–"
                f"{float(usd.sel(system=s, percentile=95.0)):.3g}, "
                f"{ds['cost_basis'].sel(system=s).item()})" for s in priced) + ".")
    unpriced = [str(s) for s in ds["system"].values if ds["cost_basis"].sel(system=s) == "none"]
    if unpriced:
        lines.append(f"- **No public price or capex** in the catalog for {', '.join(unpriced)}: "
                     "their cost per token is left out rather than guessed.")
    return "\n".join(lines)


def check_systems(systems: Any) -> list[str]:
    """Known, distinct system ids (for the CLI)."""
    ids = checks.id_list("compare", "systems", systems)
    for s in ids:
        if not isinstance(s, str):
            raise CatalogError(bad_value("compare", "systems", s, "system ids"))
        catalog.system(s)
    return ids
