"""Cost: cloud prices and TCO per chip-hour, cost per training run and per million tokens,
USD per PFLOP-hour delivered, and the Trainium3 break-even price.

Ranged inputs (capex, life, electricity price, network and facility capex, chip power, PUE) are
sampled as in :mod:`trnlab.studies.energy`; outputs carry p5 / p50 / p95 and central values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from trnlab.engine.economics import (
    HOUR,
    break_even_prices,
    cloud_price,
    power_inputs,
    tco_per_chip_hour,
    workload_rates,
)
from trnlab.engine.sampling import PERCENTILES
from trnlab.perf import cost, power

GPU_SYSTEMS = ("dgx-h100", "dgx-h200", "dgx-b200", "gb200-nvl72")
TRN3 = "trn3-ultraserver"


def study(model: str = "llama3-405b", systems: Sequence[str] = (*GPU_SYSTEMS, "trn2-ultraserver",
                                                                   TRN3),
          n_chips: int = 16384, precision: str = "bf16", token_budget: float = 15e12,
          serve_model: str = "llama3-70b", input_len: int = 2048, output_len: int = 512,
          tpot_ms: float = 50.0, ttft_ms: float = 2000.0, serve_precision: str = "bf16",
          target_ratio: float = 0.5,
          trn3_prices: Sequence[float] = tuple(np.round(np.arange(1.0, 12.01, 0.5), 2)),
          mfu_values: Sequence[float] = (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6),
          trn3_price: float | None = None, n_samples: int = 2000, seed: int = 0,
          overrides: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Cost per trained model and per million tokens, and what a 50% lower cost requires.

    ``break_even_price`` [USD/chip-hour] is the Trn3 price at which its cost per trained (or
    served) token is ``target_ratio`` times that of each GPU system at the GPU's on-demand price
    (and, second basis, at the GPU's TCO), with both sides at the throughput the models predict.
    Serving runs weights, activations and KV cache in ``serve_precision``.
    ``trn3_price`` [USD/chip-hour] is a price scenario for Trn3 (none is published; default:
    no cloud cost for Trn3). ``cost_ratio`` and ``cost_ratio_tco`` [1] are Trn3's cost per
    trained token over (assumed Trn3 price, Trn3 MFU) divided by each system's, the system at its
    on-demand price or at its TCO (central inputs). ``overrides`` set economics or power inputs
    (``energy_price`` in USD/kWh, ``life_years``, ``pue``, ...; a number or
    ``[low, central, high]``).
    """
    systems = list(systems)
    if TRN3 not in systems:
        systems.append(TRN3)
    rates = workload_rates(systems, model, n_chips, precision, serve_model, input_len,
                           output_len, tpot_ms, ttft_ms, serve_precision)
    tps, act, comm, mfu = (rates[k] for k in ("tokens_per_s_per_chip", "compute_share",
                                              "memory_share", "mfu"))
    flops, out_tps = rates["model_flops_per_chip"], rates["output_tokens_per_s_per_chip"]
    cloud = np.array([[trn3_price if s == TRN3 and trn3_price else cloud_price(s)]
                      for s in systems], dtype=float)
    res = {}
    for label, n in (("samples", n_samples), ("central", 0)):
        x = power_inputs(systems, n, seed, overrides)
        p_chip = power.chip_power(x["tdp"], x["idle"], act, comm, x["memory_weight"])
        tco = tco_per_chip_hour(systems, p_chip, n, seed, overrides)
        res[label] = {"tco_per_chip_hour": tco,
                      "training_cost_tco": cost.cost_per_token(tco / HOUR, tps) * token_budget,
                      "serving_cost_per_m_tco": cost.cost_per_token(tco / HOUR, out_tps) * 1e6,
                      "usd_per_pflop_hour_tco": cost.cost_per_pflop_hour(tco / HOUR, flops)}
    ds = xr.Dataset(coords={"system": systems, "percentile": list(PERCENTILES)})
    ds["percentile"].attrs.update({"units": "percent", "long_name": "percentile of the samples"})
    meta = {"tco_per_chip_hour": ("USD", "TCO per chip-hour"),
            "training_cost_tco": ("USD", "cost of the training run at TCO"),
            "serving_cost_per_m_tco": ("USD", "cost per million output tokens at TCO"),
            "usd_per_pflop_hour_tco": ("USD", "USD per delivered PFLOP-hour at TCO")}
    for key, (units, long_name) in meta.items():
        ds[key] = (("percentile", "system"), np.percentile(res["samples"][key], PERCENTILES,
                                                           axis=-1),
                   {"units": units, "long_name": long_name})
        ds[f"{key}_central"] = ("system", res["central"][key][:, 0],
                                {"units": units, "long_name": f"{long_name} (central inputs)"})
    ds["cloud_price_per_chip_hour"] = ("system", cloud[:, 0], {
        "units": "USD", "long_name": "newest on-demand list price per chip-hour (NaN: none)"})
    ds["training_cost_cloud"] = ("system", (cloud / HOUR / tps * token_budget)[:, 0], {
        "units": "USD", "long_name": "cost of the training run at the on-demand price"})
    ds["serving_cost_per_m_cloud"] = ("system", (cloud / HOUR / out_tps * 1e6)[:, 0], {
        "units": "USD", "long_name": "cost per million output tokens at the on-demand price"})
    ds["usd_per_pflop_hour_cloud"] = ("system", cost.cost_per_pflop_hour(cloud / HOUR,
                                                                         flops)[:, 0],
                                      {"units": "USD", "long_name": "USD per delivered "
                                       "PFLOP-hour at the on-demand price"})
    ds["tokens_per_s_per_chip"] = ("system", tps[:, 0], {"units": "1/s", "long_name":
                                                         "training tokens/s per chip"})
    ds["mfu"] = ("system", mfu[:, 0], {"units": "1", "long_name": "training MFU (best layout)"})
    ds["output_tokens_per_s_per_chip"] = ("system", out_tps[:, 0], {
        "units": "1/s", "long_name": "served output tokens/s per chip at the SLO"})

    # break-even Trn3 price per chip-hour for target_ratio x the GPU's cost per token
    t3 = systems.index(TRN3)
    be = break_even_prices(rates, cloud[:, 0], res["central"]["tco_per_chip_hour"][:, 0], t3,
                           target_ratio)
    for key, values in be.items():
        kind, basis = key.split("_")
        ds[f"break_even_{key}"] = ("system", values, {
            "units": "USD", "long_name": f"Trn3 price per chip-hour for {target_ratio:g}x the "
            f"{kind} cost per token of the system at its {basis} price"})
    # heat map: Trn3 / GPU cost per trained token over (assumed Trn3 price, Trn3 MFU)
    price = np.asarray(trn3_prices, dtype=float)[:, None, None]
    mfu_grid = np.asarray(mfu_values, dtype=float)[None, :, None]
    trn3_rate = tps[t3, 0] * mfu_grid / mfu[t3, 0]
    gpu_cost = (cloud[:, 0] / tps[:, 0])[None, None, :]
    ds = ds.assign_coords(trn3_price=np.asarray(trn3_prices, dtype=float),
                          trn3_mfu=np.asarray(mfu_values, dtype=float))
    ds["trn3_price"].attrs.update({"units": "USD", "long_name": "assumed Trn3 price per "
                                   "chip-hour"})
    ds["trn3_mfu"].attrs.update({"units": "1", "long_name": "assumed Trn3 training MFU"})
    ds["cost_ratio"] = (("trn3_price", "trn3_mfu", "system"), price / trn3_rate / gpu_cost, {
        "units": "1", "long_name": "Trn3 / system cost per trained token (on-demand GPU price)"})
    gpu_tco = (res["central"]["tco_per_chip_hour"][:, 0] / tps[:, 0])[None, None, :]
    ds["cost_ratio_tco"] = (("trn3_price", "trn3_mfu", "system"), price / trn3_rate / gpu_tco, {
        "units": "1", "long_name": "Trn3 / system cost per trained token (system at its TCO, "
        "central inputs)"})
    ds.attrs.update({"model": model, "serve_model": serve_model, "n_chips": n_chips,
                     "precision": precision, "target_ratio": target_ratio,
                     "n_samples": n_samples, "seed": seed,
                     "trn3_price_scenario": json.dumps(trn3_price),
                     "overrides": json.dumps(dict(overrides or {}))})
    return ds
