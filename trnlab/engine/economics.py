"""Power and price inputs of the energy and cost studies, sampled, and the break-even price.

Every ranged input (chip TDP, idle share, memory weight, system overhead, PUE, capex, life,
electricity price) is drawn by :func:`trnlab.engine.sampling.draw` as a ``sample`` axis of the
vectorized power and cost models (:mod:`trnlab.perf.power`, :mod:`trnlab.perf.cost`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np

from trnlab import catalog, checks
from trnlab.catalog.params import TrainingParams, load_defaults, load_economics, load_training
from trnlab.engine import serving, training
from trnlab.engine.hardware import hardware, precision_bytes
from trnlab.engine.layouts import divisors
from trnlab.engine.points import serving_point, training_point
from trnlab.engine.sampling import PERCENTILES, bands, central, draw, override
from trnlab.engine.variables import TRANSFER
from trnlab.errors import CatalogError
from trnlab.perf import cost, power
from trnlab.perf.serve import weight_gemm_share

HOUR = 3600.0  # [s]
#: power-input names a user may override -> the key of :func:`power_inputs`
POWER_OVERRIDES = {"idle_fraction": "idle", "memory_weight": "memory_weight",
                   "system_overhead": "overhead", "pue": "pue"}
#: the random stream of the price inputs is the power stream's seed + this, so the two differ
PRICE_STREAM = 1
#: bounds of an override's value(s), in the input's own unit: (low, high, low is open)
OVERRIDE_BOUNDS: dict[str, tuple[float, float | None, bool]] = {
    "idle_fraction": (0.0, 1.0, False), "memory_weight": (0.0, 1.0, False),
    "system_overhead": (0.0, None, False), "pue": (1.0, None, False),
    "life_years": (0.0, None, True), "energy_price": (0.0, None, False),
    "network_capex_fraction": (0.0, None, False), "facility_capex_per_watt": (0.0, None, False),
    "facility_life_years": (0.0, None, True),
}
#: the economics inputs a user may override (besides :data:`POWER_OVERRIDES`)
ECONOMICS_OVERRIDES = ("life_years", "energy_price", "network_capex_fraction",
                       "facility_capex_per_watt", "facility_life_years")
#: every input a user may override in a cost study
OVERRIDES = (*POWER_OVERRIDES, *ECONOMICS_OVERRIDES)


def check_overrides(where: str, overrides: Mapping[str, Any] | None,
                    allowed: Sequence[str] = OVERRIDES) -> dict[str, Any]:
    """``overrides`` checked: known keys only (a typo is an error listing ``allowed``, never a
    silent default), each value None, a finite number or ``[low, central, high]`` in
    increasing order, within :data:`OVERRIDE_BOUNDS`. Returns a dict without the None values."""
    out = {}
    for key, value in checks.known_keys(where, overrides, allowed).items():
        if value is None:
            continue
        low, high, low_open = OVERRIDE_BOUNDS[key]
        if isinstance(value, str | bytes | Mapping) or not (
                checks.is_number(value) or isinstance(value, Sequence)):
            raise checks.fail(where, key, value, "a number or [low, central, high]")
        if isinstance(value, Sequence):
            if len(value) != 3:
                raise checks.fail(where, key, value, "a number or [low, central, high]")
            vals = [checks.finite(where, key, v, low, high, low_open=low_open) for v in value]
            if not vals[0] <= vals[1] <= vals[2]:
                raise checks.fail(where, key, list(value),
                                  "give [low, central, high] in increasing order")
            out[key] = vals
        else:
            out[key] = checks.finite(where, key, value, low, high, low_open=low_open)
    return out


def _check_systems(where: str, systems: Any) -> list[str]:
    """A non-empty list of distinct, known system ids."""
    ids = checks.id_list(where, "systems", systems)
    for s in ids:
        catalog.system(s)
    return ids


def power_inputs(systems: Sequence[str], n_samples: int, seed: int = 0,
                 overrides: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """Power inputs as (system, sample) arrays; ``n_samples = 0`` gives the central values.

    Keys: ``tdp`` [W], ``idle`` [1], ``memory_weight`` [1], ``overhead`` [1] (host, NIC and
    switch power per chip power), ``pue`` [1]. ``overrides`` may set ``idle_fraction``,
    ``memory_weight``, ``system_overhead`` or ``pue`` (a number, or ``[low, central, high]``;
    see :func:`trnlab.engine.sampling.override`); the economics keys of :data:`OVERRIDES` are
    accepted and left to :func:`tco_per_chip_hour`, any other key is an error.
    """
    where = "power_inputs"
    systems = _check_systems(where, systems)
    n_samples = checks.integer(where, "n_samples", n_samples, 0, checks.MAX_SAMPLES)
    seed = checks.integer(where, "seed", seed, 0)
    over = check_overrides(where, overrides)  # the economics keys are tco_per_chip_hour's
    econ = load_economics()
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


def check_workload(where: str, systems: Any, model: Any, n_chips: Any, precision: Any,
                   serve_model: Any, input_len: Any, output_len: Any, tpot_ms: Any,
                   ttft_ms: Any, serve_precision: Any) -> dict[str, Any]:
    """The reference workloads of the energy and cost studies, checked: known system and model
    ids, ``n_chips`` in 1..:data:`~trnlab.checks.MAX_CHIPS`, known precisions, ``input_len`` and
    ``output_len`` in 1..2^24 tokens, ``tpot_ms`` and ``ttft_ms`` finite > 0 [ms]. Returns
    the values normalized (ids as lists, counts as ints, targets as floats)."""
    out = {"systems": _check_systems(where, systems)}
    for name, value in (("model", model), ("serve_model", serve_model)):
        catalog.model(checks.ident(where, name, value, CatalogError))
        out[name] = value
    out["n_chips"] = checks.positive_int(where, "n_chips", n_chips, checks.MAX_CHIPS)
    for name, value in (("precision", precision), ("serve_precision", serve_precision)):
        out[name] = checks.choice(where, name, value, precision_bytes())
    for name, value in (("input_len", input_len), ("output_len", output_len)):
        out[name] = checks.positive_int(where, name, value, checks.MAX_TOKENS)
    for name, value in (("tpot_ms", tpot_ms), ("ttft_ms", ttft_ms)):
        out[name] = checks.positive(where, name, value, unit="ms")
    return out


def workload_rates(systems: Sequence[str], model: str, n_chips: int, precision: str,
                   serve_model: str, input_len: int, output_len: int, tpot_ms: float,
                   ttft_ms: float, serve_precision: str) -> dict[str, np.ndarray]:
    """(system, 1) arrays of the best training layout and of serving at the SLO:
    ``tokens_per_s_per_chip`` [token/s], ``mfu`` [1], ``model_flops_per_chip`` [FLOP/s],
    ``compute_share`` and ``memory_share`` [1] of training; ``output_tokens_per_s_per_chip``
    [token/s], ``serve_compute_share``, ``serve_memory_share`` [1] of serving. The arguments
    are checked first (:func:`check_workload`)."""
    w = check_workload("workload_rates", systems, model, n_chips, precision, serve_model,
                       input_len, output_len, tpot_ms, ttft_ms, serve_precision)
    systems, n_chips, input_len, output_len = (w[k] for k in ("systems", "n_chips", "input_len",
                                                              "output_len"))
    tpot_ms, ttft_ms = w["tpot_ms"], w["ttft_ms"]
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
    catalog.system(system)
    price = catalog.default().latest_price(system, kind)
    return price.usd_per_chip_hour if price else float("nan")


def tco_per_chip_hour(systems: Sequence[str], chip_power_w: np.ndarray, n_samples: int,
                      seed: int = 0, overrides: Mapping[str, Any] | None = None) -> np.ndarray:
    """TCO per chip-hour [USD/(chip*h)] as (system, sample) (``n_samples=0``: central inputs).

    ``chip_power_w`` is (system, sample) average chip power [W]; the facility share of each chip
    is that x (1 + system overhead) x PUE.
    """
    where = "tco_per_chip_hour"
    systems = _check_systems(where, systems)
    n_samples = checks.integer(where, "n_samples", n_samples, 0, checks.MAX_SAMPLES)
    seed = checks.integer(where, "seed", seed, 0)
    over = check_overrides(where, overrides)
    econ = load_economics()
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
    where = "energy_per_token_bands"
    n_samples = checks.positive_int(where, "n_samples", n_samples, 10 * checks.MAX_SAMPLES)
    chunk = checks.positive_int(where, "chunk", chunk)
    seed = checks.integer(where, "seed", seed, 0)
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
    where = "break_even_table"
    systems = check_workload(where, systems, model, n_chips, precision, serve_model, input_len,
                             output_len, tpot_ms, ttft_ms, serve_precision)["systems"]
    checks.choice(where, "ref_system", ref_system, systems)
    checks.positive(where, "target_ratio", target_ratio, 1e6)
    seed = checks.integer(where, "seed", seed, 0)
    overrides = check_overrides(where, overrides)
    rates = workload_rates(systems, model, n_chips, precision, serve_model, input_len,
                           output_len, tpot_ms, ttft_ms, serve_precision)
    x = power_inputs(systems, 0, seed, overrides)
    chip_w = power.chip_power(x["tdp"], x["idle"], rates["compute_share"],
                              rates["memory_share"], x["memory_weight"])
    tco = tco_per_chip_hour(systems, chip_w, 0, seed, overrides)[:, 0]
    cloud = np.array([cloud_price(s) for s in systems])
    return break_even_prices(rates, cloud, tco, systems.index(ref_system), target_ratio)


# ------------------------------------------------------ rates at a swept scale-up bandwidth
def scaleup_params(system: str, bandwidth: float | None,
                   params: TrainingParams | None = None) -> TrainingParams:
    """Training parameters under which ``system``'s scale-up bandwidth is ``bandwidth`` [B/s]
    (aggregate bidirectional per chip; None: the catalog's). :func:`trnlab.engine.hardware.
    hardware` multiplies the catalog bandwidth by the topology factor of ``system``'s scale-up
    topology, so the factor is scaled by ``bandwidth / catalog bandwidth``; use the result for
    ``system`` only (other systems of the same topology would be scaled too)."""
    params = params or load_training()
    if bandwidth is None:
        return params
    rec = catalog.system(system)
    bandwidth = checks.positive("scaleup_params", "bandwidth", bandwidth, unit="B/s")
    topo = params.topology[rec.scaleup_topology]
    scaled = dataclasses.replace(topo, value=topo.value * bandwidth / rec.scaleup_bandwidth,
                                 status="projected", note="scale-up bandwidth swept")
    return dataclasses.replace(params, topology={**params.topology,
                                                 rec.scaleup_topology: scaled})


@lru_cache(maxsize=512)
def training_rate(model: str, system: str, n_chips: int, precision: str,
                  scaleup_bw: float | None = None) -> dict[str, float]:
    """:func:`~trnlab.engine.points.training_point` (tokens/s per chip, MFU, compute and
    memory shares) with ``system``'s scale-up bandwidth at ``scaleup_bw`` [B/s] (None: the
    catalog's)."""
    if scaleup_bw is None:
        p = training_point(model, system, n_chips, precision)
        return {k: p[k] for k in ("tokens_per_s_per_chip", "mfu", "compute_share",
                                  "memory_share")}
    ds = training.search(model, system, n_chips, precision=precision, top=1,
                         params=scaleup_params(system, scaleup_bw))
    if not ds.sizes["config"]:
        return dict.fromkeys(("tokens_per_s_per_chip", "mfu", "compute_share",
                              "memory_share"), float("nan"))
    step = float(ds["step_time"][0])
    comm = sum(float(ds[k][0]) for k in TRANSFER)
    return {"tokens_per_s_per_chip": float(ds["tokens_per_s_per_chip"][0]),
            "mfu": float(ds["mfu"][0]), "compute_share": float(ds["t_compute"][0]) / step,
            "memory_share": comm / step}


#: decode batches the SLO search tries: 1..4096 in steps of sqrt(2), rounded [requests]
SLO_BATCHES = np.unique(np.round(2.0 ** (np.arange(25) / 2.0)))


@lru_cache(maxsize=512)
def slo_rate(model: str, system: str, precision: str, input_len: int = 2048,
             output_len: int = 512, tpot_ms: float = 50.0, ttft_ms: float = 2000.0,
             scaleup_bw: float | None = None,
             max_replica_chips: int | None = None) -> dict[str, float]:
    """Serving ``model`` on ``system`` with weights, activations and KV cache in ``precision``
    under the SLO, over the layout grid of :func:`trnlab.engine.serving.frontier` (tp a divisor
    of the scale-up domain, pp 1/2/4, attention-DP for MLA models, batch 1..4096 in steps of
    sqrt(2), so that a small change of a rate does not jump a power of two), with the
    scale-up bandwidth at ``scaleup_bw`` [B/s] (None: the catalog's) and, when
    ``max_replica_chips`` is given, replicas of at most that many chips (tp x pp; e.g. a rack
    that is a slice of a larger domain).

    Returns ``output_tokens_per_s_per_chip`` [token/s] of the best layout meeting both TPOT and
    TTFT, its ``compute_share`` [1] (delivered / achievable FLOP/s, as
    :func:`~trnlab.engine.points.serving_point`) and ``fastest_tpot`` [s], the lowest time per
    output token of any layout that fits and meets the TTFT (the fastest response)."""
    spec, sysrec = catalog.spec(model, "slo_rate"), catalog.system(system)
    params = scaleup_params(system, scaleup_bw)
    top = int(load_defaults()["max_attention_dp"].si) if spec.is_mla else 1
    adps = np.array([d for d in divisors(top) if d & (d - 1) == 0])
    tp, pp, adp, batch = (g.ravel() for g in np.meshgrid(
        np.array(divisors(sysrec.n_chips)), np.array([1, 2, 4]), adps,
        SLO_BATCHES, indexing="ij"))
    keep = serving.attention_tp_ok(spec, tp, adp) & ((tp * pp) <= sysrec.n_chips * 4)
    if max_replica_chips is not None:
        keep &= (tp * pp) <= checks.positive_int("slo_rate", "max_replica_chips",
                                                 max_replica_chips)
    tp, pp, adp, batch = tp[keep], pp[keep], adp[keep], batch[keep]
    res = serving.evaluate(spec, sysrec.chip, system, tp=tp, pp=pp,
                           ep=np.where(spec.moe_experts > 0, tp, 1), adp=adp, batch=batch,
                           input_len=input_len, output_len=output_len, weights=precision,
                           activations=precision, kv=precision, training=params)
    ttft_ok = res["fits"] & (res["ttft"] * 1e3 <= ttft_ms)
    ok = ttft_ok & (res["tpot"] * 1e3 <= tpot_ms)
    nan = float("nan")
    if not ok.any():
        return {"output_tokens_per_s_per_chip": nan, "compute_share": nan,
                "fastest_tpot": float(res["tpot"][ttft_ok].min()) if ttft_ok.any() else nan}
    best = float(res["output_tokens_per_s_per_chip"][ok].max())
    hw = hardware(sysrec.chip, system, precision, params)
    tokens = best * (1.0 + input_len / output_len)
    return {"output_tokens_per_s_per_chip": best,
            "compute_share": float(weight_gemm_share(spec.flop_params, tokens,
                                                     hw.peak_gemm * hw.gemm_eff)),
            "fastest_tpot": float(res["tpot"][ttft_ok].min())}
