"""Power and price inputs of the energy and cost studies, sampled, and the break-even price.

Every ranged input (chip TDP, idle share, memory weight, system overhead, PUE, capex, life,
electricity price) is drawn by :func:`trnlab.engine.sampling.draw` as a ``sample`` axis of the
vectorized power and cost models (:mod:`trnlab.perf.power`, :mod:`trnlab.perf.cost`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from trnlab import catalog
from trnlab.catalog.params import load_economics
from trnlab.engine.points import serving_point, training_point
from trnlab.engine.sampling import PERCENTILES, bands, central, draw, override
from trnlab.perf import cost, power

HOUR = 3600.0  # [s]
#: power-input names a user may override -> the key of :func:`power_inputs`
POWER_OVERRIDES = {"idle_fraction": "idle", "memory_weight": "memory_weight",
                   "system_overhead": "overhead", "pue": "pue"}
#: the random stream of the price inputs is the power stream's seed + this, so the two differ
PRICE_STREAM = 1


def power_inputs(systems: Sequence[str], n_samples: int, seed: int = 0,
                 overrides: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Power inputs as (system, sample) arrays; ``n_samples = 0`` gives the central values.

    Keys: ``tdp`` [W], ``idle`` [1], ``memory_weight`` [1], ``overhead`` [1] (host, NIC and
    switch power per chip power), ``pue`` [1]. ``overrides`` may set ``idle_fraction``,
    ``memory_weight``, ``system_overhead`` or ``pue`` (a number, or ``[low, central, high]``;
    see :func:`trnlab.engine.sampling.override`).
    """
    econ, over = load_economics(), dict(overrides or {})
    rng = np.random.default_rng(seed)
    fac = catalog.facility()
    pick = (lambda f: draw(f, n_samples, rng)) if n_samples else (lambda f: central(f))
    shape = (len(systems), max(n_samples, 1))
    fields = {"idle_fraction": econ.power["idle_fraction"],
              "memory_weight": econ.power["memory_weight"],
              "system_overhead": fac.fields["system_overhead"], "pue": fac.fields["pue"]}
    chips = [catalog.chip(catalog.system(s).chip) for s in systems]
    out = {"tdp": np.stack([pick(c.fields["tdp"]) for c in chips])}
    for name, f in fields.items():
        out[POWER_OVERRIDES[name]] = np.broadcast_to(pick(override(f, over.get(name))), shape)
    return out


def workload_rates(systems: Sequence[str], model: str, n_chips: int, precision: str,
                   serve_model: str, input_len: int, output_len: int, tpot_ms: float,
                   ttft_ms: float, serve_precision: str) -> dict[str, np.ndarray]:
    """(system, 1) arrays of the best training layout and of serving at the SLO:
    ``tokens_per_s_per_chip`` [token/s], ``mfu`` [1], ``model_flops_per_chip`` [FLOP/s],
    ``compute_share`` and ``memory_share`` [1] of training; ``output_tokens_per_s_per_chip``
    [token/s], ``serve_compute_share``, ``serve_memory_share`` [1] of serving."""
    train = [training_point(model, s, n_chips, precision) for s in systems]
    serve = [serving_point(serve_model, s, input_len, output_len, tpot_ms, ttft_ms,
                           *(serve_precision,) * 3) for s in systems]
    col = lambda rows, key: np.array([[r[key]] for r in rows], dtype=float)
    out = {k: col(train, k) for k in ("tokens_per_s_per_chip", "mfu", "model_flops_per_chip",
                                      "compute_share", "memory_share")}
    out["output_tokens_per_s_per_chip"] = col(serve, "output_tokens_per_s_per_chip")
    out["serve_compute_share"] = col(serve, "compute_share")
    out["serve_memory_share"] = col(serve, "memory_share")
    return out


def cloud_price(system: str, kind: str = "on_demand") -> float:
    """Newest listed price per chip-hour of an instance of ``system`` [USD/(chip*h)] (NaN if
    none)."""
    price = catalog.default().latest_price(system, kind)
    return price.usd_per_chip_hour if price else float("nan")


def tco_per_chip_hour(systems: Sequence[str], chip_power_w: np.ndarray, n_samples: int,
                      seed: int = 0, overrides: Mapping[str, Any] | None = None) -> np.ndarray:
    """TCO per chip-hour [USD/(chip*h)] as (system, sample) (``n_samples=0``: central inputs).

    ``chip_power_w`` is (system, sample) average chip power [W]; the facility share of each chip
    is that x (1 + system overhead) x PUE.
    """
    econ, over = load_economics(), dict(overrides or {})
    rng = np.random.default_rng(seed + PRICE_STREAM)
    pick = (lambda f: draw(f, n_samples, rng)) if n_samples else central
    x = power_inputs(systems, n_samples, seed, over)
    fac_w = power.facility_power(chip_power_w * (1.0 + x["overhead"]), x["pue"])
    capex = np.stack([pick(econ.system_capex(s)) / catalog.system(s).n_chips for s in systems])
    e = {k: pick(override(f, over.get(k))) for k, f in econ.economics.items()}
    return cost.tco_per_chip_second(capex, e["network_capex_fraction"], e["life_years"], fac_w,
                                    e["facility_capex_per_watt"], e["facility_life_years"],
                                    e["energy_price"]) * HOUR


def break_even_prices(rates: Mapping[str, np.ndarray], cloud: np.ndarray, tco: np.ndarray,
                      ref: int, target_ratio: float) -> dict[str, np.ndarray]:
    """Price per chip-hour of system ``ref`` [USD/(chip*h)] at which its cost per token is
    ``target_ratio`` x that of each system, for ``training`` and ``serving`` and each system at
    its ``cloud`` or ``tco`` price per chip-hour ((system,) arrays). Keys ``<kind>_<basis>``."""
    out = {}
    for basis, price in (("cloud", cloud), ("tco", tco)):
        for kind, key in (("training", "tokens_per_s_per_chip"),
                          ("serving", "output_tokens_per_s_per_chip")):
            rate = rates[key][:, 0]
            out[f"{kind}_{basis}"] = target_ratio * cost.break_even_price(price / rate,
                                                                           rate[ref])
    return out


def energy_per_token_bands(chip: str, tokens_per_s_per_chip: np.ndarray,
                           compute_share: np.ndarray, n_samples: int = 100_000, seed: int = 0,
                           chunk: int = 2_000_000) -> np.ndarray:
    """p5/p50/p95 of facility energy per token [J/token] for each of many configurations.

    The ``sample`` axis (sampled TDP, idle share, overhead, PUE, memory weight) and the
    configuration axis are evaluated together, in chunks of about ``chunk`` cells. Returns an
    array (3, n_configs).
    """
    econ = load_economics()
    rng = np.random.default_rng(seed)
    rec, fac = catalog.chip(chip), catalog.facility()
    x = {"tdp": draw(rec.fields["tdp"], n_samples, rng),
         "idle": draw(econ.power["idle_fraction"], n_samples, rng),
         "memory_weight": draw(econ.power["memory_weight"], n_samples, rng),
         "overhead": draw(fac.fields["system_overhead"], n_samples, rng),
         "pue": draw(fac.fields["pue"], n_samples, rng)}
    tps = np.asarray(tokens_per_s_per_chip, dtype=float)
    act = np.asarray(compute_share, dtype=float)
    step = max(1, chunk // max(n_samples, 1))
    out = np.empty((len(PERCENTILES), tps.size))
    for lo in range(0, tps.size, step):  # chunks of configurations, samples vectorized
        sl = slice(lo, lo + step)
        p = power.chip_power(x["tdp"][:, None], x["idle"][:, None], act[None, sl], 0.0,
                             x["memory_weight"][:, None])
        per_token = power.facility_power(p * (1.0 + x["overhead"][:, None]),
                                         x["pue"][:, None]) / tps[None, sl]
        out[:, sl] = bands(per_token, axis=0)
    return out


def break_even_table(model: str, systems: Sequence[str], ref_system: str, *, n_chips: int,
                     precision: str, target_ratio: float, serve_model: str = "llama3-70b",
                     input_len: int = 2048, output_len: int = 512, tpot_ms: float = 50.0,
                     ttft_ms: float = 2000.0, serve_precision: str = "bf16", seed: int = 0,
                     overrides: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """:func:`break_even_prices` of ``ref_system`` against ``systems`` (which include it) on the
    reference workloads (:func:`workload_rates`), each system at its newest on-demand price or
    at its TCO at the central inputs [USD/(chip*h)]."""
    systems = list(systems)
    rates = workload_rates(systems, model, n_chips, precision, serve_model, input_len,
                           output_len, tpot_ms, ttft_ms, serve_precision)
    x = power_inputs(systems, 0, seed, overrides)
    chip_w = power.chip_power(x["tdp"], x["idle"], rates["compute_share"],
                              rates["memory_share"], x["memory_weight"])
    tco = tco_per_chip_hour(systems, chip_w, 0, seed, overrides)[:, 0]
    cloud = np.array([cloud_price(s) for s in systems])
    return break_even_prices(rates, cloud, tco, systems.index(ref_system), target_ratio)
