"""Cost: cloud prices and TCO per chip-hour, cost per training run and per million tokens,
USD per PFLOP-hour delivered, and the Trainium3 break-even price.

Ranged inputs (capex, life, electricity price, network and facility capex, chip power, PUE) are
sampled as in :mod:`trnlab.studies.energy`; outputs carry p5 / p50 / p95 and central values.
:func:`headline` and :func:`reading` put the result into words, every number formatted from
the Dataset.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from trnlab import catalog, checks
from trnlab.catalog.params import load_economics
from trnlab.engine.economics import (
    HOUR,
    break_even_prices,
    check_overrides,
    check_workload,
    cloud_price,
    power_inputs,
    tco_per_chip_hour,
    workload_rates,
)
from trnlab.engine.sampling import PERCENTILES, bands
from trnlab.engine.variables import attrs
from trnlab.perf import cost, power

GPU_SYSTEMS = ("dgx-h100", "dgx-h200", "dgx-b200", "gb200-nvl72")
TRN3 = "trn3-ultraserver"
TRN2_CAPACITY_BLOCK = "trn2-48xl"  # the instance whose Capacity Block price is the reference
PER_CHIP_HOUR = "USD/(chip*h)"
#: sampled outputs: name -> (units, long_name)
_SAMPLED = {
    "tco_per_chip_hour": (PER_CHIP_HOUR, "TCO per chip-hour"),
    "training_cost_tco": ("USD", "training run cost at TCO"),
    "serving_cost_per_m_tco": ("USD/Mtoken", "serving cost at TCO"),
    "usd_per_pflop_hour_tco": ("USD/(PFLOP/s*h)", "delivered-compute cost at TCO"),
}


def _price_status(system: str, scenario: float | None) -> str:
    """``projected`` for the Trn3 price scenario, the listed price's status, or ``none``."""
    if system == TRN3 and scenario:
        return "projected"
    price = catalog.default().latest_price(system, "on_demand")
    return price.fields["usd_per_hour"].status if price else "none"


def overrides_from(**values: float) -> dict[str, float]:
    """Economics overrides from notebook numbers: 0 takes the catalog (left out)."""
    for name, v in values.items():
        checks.finite("cost", name, v)
    return {k: float(v) for k, v in values.items() if v}


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

    ``break_even_price`` [USD/(chip*h)] is the Trn3 price at which its cost per trained (or
    served) token is ``target_ratio`` times that of each other system at that system's on-demand
    price (and, second basis, at its TCO), with both sides at the throughput the models predict
    (NaN for Trn3 itself). Serving runs weights, activations and KV cache in ``serve_precision``.
    ``trn3_price`` [USD/(chip*h)] is a price scenario for Trn3 (none is published; default:
    no cloud cost for Trn3). ``cost_ratio`` and ``cost_ratio_tco`` [1] are Trn3's cost per
    trained token over (assumed Trn3 price, Trn3 MFU) divided by each system's, the system at its
    on-demand price or at its TCO (central inputs); ``scenario_cost_ratio`` and
    ``scenario_cost_ratio_tco`` the same at the scenario price and the modelled Trn3 MFU.
    ``overrides`` set economics or power inputs (``energy_price`` in USD/kWh, ``life_years``,
    ``pue``, ...; a number or ``[low, central, high]``).

    Coordinates along ``system``: ``vendor`` (catalog); ``price_status`` of the on-demand price
    (``announced`` or ``measured`` when listed, ``projected`` for the Trn3 scenario, ``none``);
    ``capex_status`` of the system's capex; ``system_status``, the status of the chip power
    (TDP) the TCO rests on (:mod:`trnlab.plot` hatches projected bars).

    Bounds (checked first, one error line each): the workload as
    :func:`~trnlab.engine.economics.check_workload`; ``token_budget`` finite > 0;
    ``target_ratio`` in (0, 1e6]; ``trn3_prices`` non-empty finite > 0; ``mfu_values``
    non-empty in (0, 1]; ``trn3_price`` None or finite > 0; ``n_samples`` in 1..1e6; ``seed`` >= 0; ``overrides``
    keys among :data:`~trnlab.engine.economics.OVERRIDES` (a typo is an error).
    """
    where = "cost"
    w = check_workload(where, systems, model, n_chips, precision, serve_model, input_len,
                       output_len, tpot_ms, ttft_ms, serve_precision)
    n_chips, input_len, output_len = w["n_chips"], w["input_len"], w["output_len"]
    token_budget = checks.positive(where, "token_budget", token_budget, unit="token")
    target_ratio = checks.positive(where, "target_ratio", target_ratio, 1e6)
    checks.float_list(where, "trn3_prices", trn3_prices, 0.0, low_open=True, unit="USD/(chip*h)")
    checks.float_list(where, "mfu_values", mfu_values, 0.0, 1.0, low_open=True)
    if trn3_price is not None:
        trn3_price = checks.positive(where, "trn3_price", trn3_price, unit="USD/(chip*h)")
    n_samples = checks.positive_int(where, "n_samples", n_samples, checks.MAX_SAMPLES)
    seed = checks.integer(where, "seed", seed, 0)
    check_overrides(where, overrides)
    systems = list(systems)
    if TRN3 not in systems:
        systems.append(TRN3)
    chips = [catalog.chip(catalog.system(s).chip) for s in systems]
    econ = load_economics()
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
    status = {"units": "1"}
    ds = xr.Dataset(coords={
        "system": ("system", systems, attrs("system")),
        "vendor": ("system", [c.vendor for c in chips], attrs("vendor")),
        "price_status": ("system", [_price_status(s, trn3_price) for s in systems], {
            **status, "long_name": "status of the on-demand list price"}),
        "capex_status": ("system", [econ.system_capex(s).status for s in systems], {
            **status, "long_name": "status of the system capex (data/cost/capex.toml)"}),
        "system_status": ("system", [c.fields["tdp"].status for c in chips], {
            **status, "long_name": "status of the chip power (TDP) figure (catalog)"}),
        "percentile": ("percentile", list(PERCENTILES),
                       {"units": "percent", "long_name": "percentile of the samples"}),
    })
    for key, (units, long_name) in _SAMPLED.items():
        ds[key] = (("percentile", "system"), bands(res["samples"][key], axis=-1),
                   {"units": units, "long_name": long_name})
        ds[f"{key}_central"] = ("system", res["central"][key][:, 0],
                                {"units": units, "long_name": f"{long_name} (central inputs)"})
    ds["cloud_price_per_chip_hour"] = ("system", cloud[:, 0], {
        "units": PER_CHIP_HOUR, "long_name": "on-demand price per chip-hour (Trn3: scenario)"})
    ds["training_cost_cloud"] = ("system", (cloud / HOUR / tps * token_budget)[:, 0], {
        "units": "USD", "long_name": "training run cost, on demand"})
    ds["serving_cost_per_m_cloud"] = ("system", (cloud / HOUR / out_tps * 1e6)[:, 0], {
        "units": "USD/Mtoken", "long_name": "serving cost, on demand"})
    ds["usd_per_pflop_hour_cloud"] = ("system", cost.cost_per_pflop_hour(cloud / HOUR,
                                                                         flops)[:, 0],
                                      {"units": "USD/(PFLOP/s*h)", "long_name": "delivered-"
                                       "compute cost, on demand"})
    ds["tokens_per_s_per_chip"] = ("system", tps[:, 0], attrs(
        "tokens_per_s_per_chip", "training tokens per second per chip (best layout)"))
    ds["mfu"] = ("system", mfu[:, 0], attrs("mfu", "training MFU (best layout)"))
    ds["output_tokens_per_s_per_chip"] = ("system", out_tps[:, 0], attrs(
        "output_tokens_per_s_per_chip", "served output tokens per second per chip at the SLO"))
    ds["trn2_capacity_block_price"] = ((), cloud_price(TRN2_CAPACITY_BLOCK, "capacity_block"), {
        "units": PER_CHIP_HOUR, "long_name": "Trn2 Capacity Block price per chip-hour "
        "(newest listed)"})

    # break-even Trn3 price per chip-hour for target_ratio x the system's cost per token
    t3 = systems.index(TRN3)
    be = break_even_prices(rates, cloud[:, 0], res["central"]["tco_per_chip_hour"][:, 0], t3,
                           target_ratio)
    for key, values in be.items():
        kind, basis = key.split("_")
        where = "on-demand" if basis == "cloud" else "TCO"
        ds[f"break_even_{key}"] = ("system", np.where(np.arange(len(systems)) == t3, np.nan,
                                                      values), {
            "units": PER_CHIP_HOUR, "long_name": f"Trn3 price per chip-hour for {target_ratio:g}x"
            f" the {kind} cost per token of the system at its {where} price"})
    # Trn3 / system cost per trained token: at the scenario, and over (Trn3 price, Trn3 MFU)
    trn3_cost = cloud[t3, 0] / tps[t3, 0]
    gpu_cloud = cloud[:, 0] / tps[:, 0]
    gpu_tco = res["central"]["tco_per_chip_hour"][:, 0] / tps[:, 0]
    for suffix, gpu, basis in (("", gpu_cloud, "on-demand price"), ("_tco", gpu_tco, "TCO")):
        ds[f"scenario_cost_ratio{suffix}"] = ("system", trn3_cost / gpu, {
            "units": "1", "long_name": f"Trn3 (scenario price) / system cost per trained token, "
            f"the system at its {basis}"})
    price = np.asarray(trn3_prices, dtype=float)[:, None, None]
    mfu_grid = np.asarray(mfu_values, dtype=float)[None, :, None]
    trn3_rate = tps[t3, 0] * mfu_grid / mfu[t3, 0]
    ds = ds.assign_coords(
        trn3_price=("trn3_price", np.asarray(trn3_prices, dtype=float),
                    {"units": PER_CHIP_HOUR, "long_name": "assumed Trn3 price per chip-hour"}),
        trn3_mfu=("trn3_mfu", np.asarray(mfu_values, dtype=float),
                  {"units": "1", "long_name": "assumed Trn3 training MFU"}))
    ds["cost_ratio"] = (("trn3_price", "trn3_mfu", "system"),
                        price / trn3_rate / gpu_cloud[None, None, :], {
        "units": "1", "long_name": "Trn3 / system cost per trained token (system on demand)"})
    ds["cost_ratio_tco"] = (("trn3_price", "trn3_mfu", "system"),
                            price / trn3_rate / gpu_tco[None, None, :], {
        "units": "1", "long_name": "Trn3 / system cost per trained token (system at TCO)"})
    ds.attrs.update({"title": "Cost per trained model and per million tokens; the Trn3 "
                     "break-even price", "model": model, "serve_model": serve_model,
                     "n_chips": n_chips, "precision": precision,
                     "serve_precision": serve_precision, "token_budget": float(token_budget),
                     "target_ratio": target_ratio, "n_samples": n_samples, "seed": seed,
                     "trn3_system": TRN3, "trn3_price_scenario": json.dumps(trn3_price),
                     "overrides": json.dumps(dict(overrides or {}))})
    ds.attrs["headline"] = headline(ds)
    return ds


# ------------------------------------------------------------------------------ the reading
def _usd(value: float, digits: int = 2) -> str:
    return f"${value:,.{digits}f}"


def _span(values: Sequence[float], fmt: str = ".2f", prefix: str = "$") -> str:
    """``$1.64–3.86``, or one number when all are equal at that precision."""
    lo, hi = (format(v, fmt) for v in (min(values), max(values)))
    return f"{prefix}{lo}" if lo == hi else f"{prefix}{lo}–{hi}"


def _millions(ds: xr.Dataset, var: str, system: str) -> tuple[float, float, float]:
    """(p50, p5, p95) of a training-cost variable in million USD (p5 = p95 = p50 if none)."""
    da = ds[var].sel(system=system)
    if "percentile" not in da.dims:
        return (float(da) / 1e6,) * 3  # type: ignore[return-value]
    return tuple(float(da.sel(percentile=p)) / 1e6 for p in (50.0, 5.0, 95.0))  # type: ignore[return-value]


def _groups(ds: xr.Dataset) -> tuple[str, list[str], list[str]]:
    """(Trn3, the other vendors' systems with an on-demand price, those without one)."""
    t3 = str(ds.attrs["trn3_system"])
    vendor = str(ds["vendor"].sel(system=t3).values)
    others = [str(s) for s in ds["system"].values if str(ds["vendor"].sel(system=s).values)
              != vendor]
    priced = [s for s in others if np.isfinite(float(ds["cloud_price_per_chip_hour"].sel(
        system=s)))]
    return t3, priced, [s for s in others if s not in priced]


def _scenario(ds: xr.Dataset) -> float | None:
    value = json.loads(ds.attrs["trn3_price_scenario"])
    return float(value) if value else None


def headline(ds: xr.Dataset) -> str:
    """One sentence: Trn3's cost per trained token against the priced systems at the scenario
    price, and the break-even Trn3 price for training and serving."""
    _, priced, _ = _groups(ds)
    a = ds.attrs
    pct = f"{1 - float(a['target_ratio']):.0%}"
    train = [float(ds["break_even_training_cloud"].sel(system=s)) for s in priced]
    serve = [float(ds["break_even_serving_cloud"].sel(system=s)) for s in priced]
    price = _scenario(ds)
    out = (f"Training {a['model']} at {a['precision']} on {int(a['n_chips']):,} chips, ")
    if price and priced:
        out += (f"Trn3 at the {_usd(price)} per chip-hour scenario costs "
                + ", ".join(f"{float(ds['scenario_cost_ratio'].sel(system=s)):.2f}x {s}'s"
                            for s in priced)
                + " cost per trained token at their on-demand prices; ")
    if not priced:
        return out + "no other system has an on-demand price to compare with"
    return (out + f"{pct} lower cost needs Trn3 at or below {_span(train)} per chip-hour for "
            f"training and {_span(serve)} for serving {a['serve_model']}")


def reading(ds: xr.Dataset) -> str:
    """The reading of a :func:`study` Dataset as Markdown bullets, every number from ``ds``."""
    a = ds.attrs
    t3, priced, unpriced = _groups(ds)
    target = float(a["target_ratio"])
    pct = f"{1 - target:.0%}"
    price = _scenario(ds)
    mfu = float(ds["mfu"].sel(system=t3))
    lines = []

    # renting vs owning
    if priced:
        rent = [_millions(ds, "training_cost_cloud", s)[0] for s in priced]
        own = [_millions(ds, "training_cost_tco", s)[0] for s in priced]
        fold = [r / o for r, o in zip(rent, own, strict=True)]
        text = (f"- **Renting vs owning.** At on-demand list prices a {a['model']} run on "
                f"{int(a['n_chips']):,} chips at {a['precision']} costs "
                f"{_span(rent, '.0f')} million on {', '.join(priced)}. Owning the same systems "
                f"costs {_span(fold, '.1f', '')}x less: {_span(own, '.0f')} million at TCO "
                "(medians).")
    else:
        text = "- **Renting vs owning.** No other system has an on-demand price."
    own_t3 = _millions(ds, "training_cost_tco", t3)
    if price:
        text += (f" Trn3 at the {_usd(price, 2)} per chip-hour scenario would cost "
                 f"{_usd(_millions(ds, 'training_cost_cloud', t3)[0], 0)} million to rent and "
                 f"about {_usd(own_t3[0], 0)} million (p5–p95 {own_t3[1]:.0f}–{own_t3[2]:.0f}) "
                 "to own.")
    cheapest = min((str(s) for s in ds["system"].values),
                   key=lambda s: _millions(ds, "training_cost_tco", s)[0])
    low = _millions(ds, "training_cost_tco", cheapest)
    text += (f" The cheapest to own is {cheapest}: about {_usd(low[0], 0)} million "
             f"(p5–p95 {low[1]:.0f}–{low[2]:.0f}).")
    lines.append(text)

    # what the claim requires
    be_t = {s: float(ds["break_even_training_cloud"].sel(system=s)) for s in priced}
    be_s = {s: float(ds["break_even_serving_cloud"].sel(system=s)) for s in priced}
    text = (f"- **What \"{pct} lower cost\" requires.** No Trn3 price is published. ")
    if priced:
        text += ("For training, Trn3 must rent at or below "
                 + ", ".join(f"{_usd(be_t[s])} against {s}" for s in priced)
                 + f" per chip-hour (on demand), at the MFU the models predict ({mfu:.0%} for "
                 "Trn3)")
        if price:
            ratio = [float(ds["scenario_cost_ratio"].sel(system=s)) for s in priced]
            hits = sum(r <= target for r in ratio)
            verdict = (f"holds against all {len(priced)}" if hits == len(priced) else
                       f"misses against all {len(priced)}, by {min(ratio) / target - 1:.0%} "
                       "at best" if hits == 0 else f"holds against {hits} of {len(priced)}")
            text += (f"; at {_usd(price)} it {verdict} ({_span(ratio, '.2f', '')}x their cost "
                     "per trained token)")
        top = float(ds["trn3_mfu"].max())
        text += (f". Each break-even price is proportional to Trn3's MFU: at {top:.0%} MFU they "
                 f"would be {top / mfu:.2f}x as high (the heat map). ")
        s_lo, s_hi, t_lo, t_hi = min(be_s.values()), max(be_s.values()), min(be_t.values()), \
            max(be_t.values())
        word = ("less than" if s_hi < t_lo else "more than" if s_lo > t_hi else
                "about as much as")
        text += (f"Serving {a['serve_model']} at {a['serve_precision']} needs "
                 f"{_span(list(be_s.values()))}, {word} training. ")
        cb = float(ds["trn2_capacity_block_price"])
        if np.isfinite(cb):
            k_t, k_s = sum(v >= cb for v in be_t.values()), sum(v >= cb for v in be_s.values())
            text += (f"Trn2 Capacity Blocks sell at {_usd(cb)} per chip-hour; a Trn3 priced like "
                     f"that makes the training claim hold against {k_t} of {len(priced)} "
                     f"on-demand systems and the serving claim against {k_s}.")
    lines.append(text.rstrip())

    # against owned systems
    tco_t3 = float(ds["tco_per_chip_hour_central"].sel(system=t3))
    text = "- **Against owned systems.** "
    if priced:
        tco_be = [float(ds["break_even_training_tco"].sel(system=s)) for s in priced]
        below = max(tco_be) < tco_t3
        text += (f"Against {', '.join(priced)} at TCO, Trn3 would have to rent for "
                 f"{_span(tco_be)} per chip-hour for training, "
                 f"{'below' if below else 'not below'} Trn3's own TCO ({_usd(tco_t3)} at "
                 "central inputs)" + (": AWS would have to sell below cost. " if below else ". "))
    text += "".join(f"Against {s} at TCO it would need "
                    f"{_usd(float(ds['break_even_training_tco'].sel(system=s)))}. "
                    for s in unpriced)
    lines.append(text.rstrip())

    # how far to trust it
    names = [str(s) for s in ds["system"].values]
    capex = [s for s in names if str(ds["capex_status"].sel(system=s).values) == "projected"]
    lines.append(
        "- **How far to trust it.** List prices are on-demand, without the reserved or "
        "negotiated discounts large buyers get; "
        + ("every capex is a projection (estimated sale prices; AWS sells no Trainium system); "
           if capex == names else f"the capex of {', '.join(capex)} is a projection; "
           if capex else "")
        + "the chip power of " + (", ".join(str(s) for s in ds["system"].values
                                            if str(ds["system_status"].sel(system=s).values)
                                            == "projected") or "no system")
        + " is projected. AWS's claim is what customers reported, not a like-for-like "
        "comparison.")
    return "\n".join(lines)
