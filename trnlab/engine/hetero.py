"""The engine side of mixed scale-up domains: each member chip type's speed, evaluated over a
``scenario`` axis of the unknown inputs, from the serving and training cores.

The unknown inputs (:data:`UNKNOWNS`) are catalog fields with ranges: Trainium4 compute, HBM
bandwidth, how much of NVLink 6 its chiplet exposes, power and price; Rubin's; the fabric's
latency and cross-vendor efficiency; the prices of the racks compared. :func:`design` gives
either Monte-Carlo draws (``n_samples`` > 0, triangular on each range, as
:func:`trnlab.engine.sampling.draw`) or a tornado design (the central values, then each input
at its low and at its high end with the others central). Every function below takes such a
design (``x``: name -> (scenario,) array [SI]) and returns (scenario,) arrays, evaluating the
scenarios x layouts x batch sizes as one broadcast of :mod:`trnlab.perf.serve`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from trnlab import catalog, checks
from trnlab.catalog.fields import Field
from trnlab.catalog.params import load_economics, load_serving, load_training
from trnlab.catalog.records import PRECISION_FALLBACK
from trnlab.engine.hardware import format_bytes, half_dim, hardware, serve_calibration
from trnlab.engine.points import training_point
from trnlab.engine.sampling import draw, override
from trnlab.engine.shape import serve_shape
from trnlab.perf import power
from trnlab.perf.hardware import Hardware
from trnlab.perf.serve import (
    ServeLayout,
    decode_step,
    kv_bytes_per_request,
    max_concurrency,
    mean_context,
    prefill_time,
    serve,
    weight_gemm_share,
)

#: chip type -> its homogeneous system in the catalog
HOMOGENEOUS = {"trn4": "trn4-nvl72", "rubin": "vera-rubin-nvl72", "gb300": "gb300-nvl72",
               "trn3": "trn3-ultraserver"}
#: the mixed domain and the fabric of the study; the UALink variant of Trainium4
MIXED = "trn4-rubin-nvl72"
UALINK = "trn4-ualink"
FABRIC = "nvlink6-fusion"
#: price entries (prices.toml) per chip type
PRICES = {"trn4": "trn4-nvl72-projected", "rubin": "vera-rubin-nvl72-projected",
          "gb300": "gb300-nvl72-projected", "trn3": "trn3-ultraserver-projected"}
TP = (1, 2, 4, 8, 16)
BATCHES = tuple(2.0**i for i in range(12))


def _peak_field(chip_id: str, precision: str) -> Field:
    """The catalog field that sets ``chip.peak(precision)`` (following the fallback chain)."""
    chip = catalog.chip(chip_id)
    p: str | None = precision
    while p is not None:
        if f"peak_{p}" in chip.fields:
            return chip.fields[f"peak_{p}"]
        p = PRECISION_FALLBACK[p]
    return chip.fields["peak_bf16"]


def _per_chip_price(price_id: str) -> Field:
    """A price entry's ``usd_per_hour`` as USD per chip-hour (range kept)."""
    p = catalog.price(price_id)
    f, n = p.fields["usd_per_hour"], p.instance_chips
    rng = (f.range[0] / n, f.range[1] / n) if f.range else None
    return Field("usd_per_chip_hour", f.value / n, f.unit, f.status, f.sources, f.note, rng)


def unknowns(precision: str = "fp8") -> dict[str, Field]:
    """The unknown inputs of the study, name -> catalog field (values in SI after ``.si``;
    prices in USD/s per chip)."""
    trn4, rubin, trn3 = catalog.chip("trn4"), catalog.chip("rubin"), catalog.chip("trn3")
    fab = catalog.default().fabric(FABRIC)
    return {
        "trn4_peak": _peak_field("trn4", precision),
        "trn4_bf16": trn4.fields["peak_bf16"],
        "trn4_hbm_bandwidth": trn4.fields["hbm_bandwidth"],
        "trn4_link": trn4.fields["scaleup_bandwidth"],
        "trn4_tdp": trn4.fields["tdp"],
        "trn4_price": _per_chip_price(PRICES["trn4"]),
        "rubin_peak": _peak_field("rubin", precision),
        "rubin_hbm_bandwidth": rubin.fields["hbm_bandwidth"],
        "rubin_tdp": rubin.fields["tdp"],
        "rubin_price": _per_chip_price(PRICES["rubin"]),
        "fabric_latency": fab.fields["latency"],
        "fabric_efficiency": fab.fields["cross_vendor_efficiency"],
        "trn3_tdp": trn3.fields["tdp"],
        "trn3_price": _per_chip_price(PRICES["trn3"]),
        "gb300_price": _per_chip_price(PRICES["gb300"]),
    }


def design(precision: str = "fp8", n_samples: int = 0, seed: int = 0,
           overrides: Mapping[str, Any] | None = None
           ) -> tuple[dict[str, np.ndarray], list[tuple[str, str]]]:
    """The scenario axis: ``n_samples`` Monte-Carlo draws of every unknown at once, or (for
    ``n_samples = 0``) a tornado design: central, then each unknown at ``low`` and ``high``.
    ``overrides``: unknown name -> a number or ``[low, central, high]`` in the field's unit
    (prices USD/h per chip, TDP W; :func:`trnlab.engine.sampling.override`).
    Returns name -> (scenario,) SI array, and a (input, end) label per scenario."""
    fields = unknowns(precision)
    over = checks.known_keys("hetero design", overrides, tuple(fields))
    fields = {k: override(f, over.get(k)) for k, f in fields.items()}
    if n_samples:
        rng = np.random.default_rng(seed)
        return ({k: draw(f, n_samples, rng) for k, f in fields.items()},
                [("sample", str(i)) for i in range(n_samples)])
    labels = [("central", "")] + [(k, end) for k in fields for end in ("low", "high")]
    x = {k: np.full(len(labels), f.si) for k, f in fields.items()}
    for i, (name, end) in enumerate(labels[1:], start=1):
        x[name][i] = fields[name].low if end == "low" else fields[name].high
    return x, labels


def member_hardware(chip_id: str, system_id: str, precision: str, x: dict[str, np.ndarray],
                    domain: float | None = None) -> Hardware:
    """:func:`~trnlab.engine.hardware.hardware` of ``chip_id`` in ``system_id`` with the
    scenario values of its unknowns as (scenario, 1, 1) arrays: compute peak, HBM bandwidth and
    scale-up link (scaled from the catalog value). In a mixed system, collectives among chips
    of this type take the latency of its homogeneous rack. ``domain`` [chips]: the chips of
    this type its collectives may span (default: the system's)."""
    base = hardware(chip_id, system_id, precision, serving=load_serving())
    col = lambda v: np.asarray(v, dtype=float)[:, None, None]
    chip = catalog.chip(chip_id)
    changes: dict[str, Any] = {}
    if f"{chip_id}_peak" in x:
        changes["peak_gemm"] = col(x[f"{chip_id}_peak"]) * base.clock
    if f"{chip_id}_bf16" in x:
        changes["peak_attn"] = col(x[f"{chip_id}_bf16"]) * base.clock
    if f"{chip_id}_hbm_bandwidth" in x:
        changes["hbm_bw"] = col(x[f"{chip_id}_hbm_bandwidth"])
    system = catalog.system(system_id)
    if f"{chip_id}_link" in x and system.scaleup_bandwidth == chip.scaleup_bandwidth:
        # the NVLink exposure of the chip; a system with its own fabric (UALink) keeps its own
        changes["up_bw"] = base.up_bw * col(x[f"{chip_id}_link"]) / chip.scaleup_bandwidth
    if system.mixed and chip_id in HOMOGENEOUS:
        # traffic among chips of one type stays in that vendor's runtime: the latency of its
        # homogeneous rack (the mixed system's latency is that of cross-vendor transfers)
        changes["up_latency"] = catalog.system(HOMOGENEOUS[chip_id]).scaleup_latency
    if domain is not None:
        changes["domain"] = float(domain)
    return dataclasses.replace(base, **changes)


def _layouts(spec: Any, tps: tuple[int, ...]) -> np.ndarray:
    """The tensor-parallel degrees whose attention split divides the heads."""
    kv = spec.kv_heads or spec.heads
    return np.array([t for t in tps if spec.heads % t == 0 and (kv % t == 0 or t % kv == 0)],
                    dtype=float)


def _best(values: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Max over the layout and batch axes of the valid cells (NaN where none is valid)."""
    v = np.where(ok, values, -np.inf).reshape(values.shape[0], -1).max(axis=1)
    return np.where(np.isfinite(v), v, np.nan)


def serving_rates(model: str, chip_id: str, system_id: str, x: dict[str, np.ndarray], *,
                  input_len: int, output_len: int, tpot_s: float, ttft_s: float,
                  precision: str = "fp8", domain: float | None = None) -> dict[str, np.ndarray]:
    """(scenario,) rates of ``chip_id`` serving ``model`` under the SLOs:

    ``colocated`` output tokens/s per chip (prefill and decode on the same chips, best layout
    and batch with TPOT and TTFT met, :func:`trnlab.perf.serve.serve`); ``decode`` output
    tokens/s per chip of a decode-only pool (TPOT met, KV cache fits); ``decode_tpot`` [s] of
    that best layout; ``prefill`` requests/s per chip of a prefill-only pool (one prompt at a
    time, prefill within ``ttft_s - tpot_s``); ``prefill_s`` [s] its prefill time;
    ``kv_bytes`` [B] the KV cache of one prompt (all layers, unsplit); and for each pool its
    ``*_compute_share`` [1], the delivered weight-GEMM FLOP/s over the achievable
    ``peak_gemm x gemm_eff`` (as :func:`trnlab.engine.economics.slo_rate`), from which
    :func:`facility_power_per_chip` draws the chip's power.
    """
    spec = catalog.spec(model)
    m = serve_shape(spec)
    hw = member_hardware(chip_id, system_id, precision, x, domain)
    cal, hd = serve_calibration(), half_dim()
    fmt = format_bytes(precision)
    tp = _layouts(spec, TP)[None, :, None]
    batch = np.asarray(BATCHES)[None, None, :]
    ep = tp if spec.moe_experts else np.ones_like(tp)
    lay = ServeLayout(tp=tp, pp=1.0, ep=ep, adp=1.0, wbytes=fmt, kvbytes=fmt)
    co = serve(m, hw, lay, batch, float(input_len), float(output_len), cal, hd)
    ok = co["fits"] & (co["tpot"] <= tpot_s) & (co["ttft"] <= ttft_s)
    colocated = _best(co["output_tokens_per_s_per_chip"] * np.ones_like(co["tpot"]), ok)
    context = mean_context(float(input_len), float(output_len))
    step = decode_step(m, hw, lay, batch, context, cal, hd)
    limit = max_concurrency(m, hw.hbm_capacity, tp, 1.0, 1.0, fmt, fmt,
                            float(input_len + output_len), cal, hw.ranks_per_chip)
    dec_ok = (step <= tpot_s) & (limit >= batch)
    dec_rate = batch / (step * tp)
    decode = _best(dec_rate, dec_ok)
    idx = np.argmax(np.where(dec_ok, dec_rate, -np.inf).reshape(step.shape[0], -1), axis=1)
    decode_tpot = np.where(np.isfinite(decode), step.reshape(step.shape[0], -1)[
        np.arange(step.shape[0]), idx], np.nan)
    pre = prefill_time(m, hw, lay, 1.0, float(input_len), cal, hd)[:, :, :1]
    fits = max_concurrency(m, hw.hbm_capacity, tp, 1.0, 1.0, fmt, fmt, float(input_len),
                           cal, hw.ranks_per_chip) >= 1.0
    pre_ok = (pre <= ttft_s - tpot_s) & fits
    pre_rate = 1.0 / (pre * tp)
    prefill = _best(pre_rate, pre_ok)
    p_idx = np.argmax(np.where(pre_ok, pre_rate, -np.inf).reshape(pre.shape[0], -1), axis=1)
    prefill_s = np.where(np.isfinite(prefill), pre.reshape(pre.shape[0], -1)[
        np.arange(pre.shape[0]), p_idx], np.nan)
    kv = float(kv_bytes_per_request(m, float(input_len), fmt))
    n = len(next(iter(x.values())))
    achievable = np.broadcast_to(np.reshape(hw.peak_gemm * hw.gemm_eff, (-1,)), (n,))
    tokens = {"colocated": colocated * (1.0 + input_len / output_len), "decode": decode,
              "prefill": prefill * input_len}  # tokens processed per second per chip
    return {"colocated": colocated, "decode": decode, "decode_tpot": decode_tpot,
            "prefill": prefill, "prefill_s": prefill_s, "kv_bytes": np.full(n, kv),
            **{f"{pool}_compute_share": weight_gemm_share(m.flop_params, t, achievable)
               for pool, t in tokens.items()}}


def training_speed(model: str, chip_id: str, x: dict[str, np.ndarray], precision: str = "fp8",
                   seq_len: int = 8192) -> np.ndarray:
    """(scenario,) training tokens/s per chip of ``chip_id`` in its homogeneous rack: the best
    layout of :func:`trnlab.engine.points.training_point` at the catalog values, scaled by the
    scenario's compute peak over the catalog's (the step is compute-bound to first order)."""
    system = HOMOGENEOUS[chip_id]
    point = training_point(model, system, catalog.system(system).n_chips, precision, seq_len)
    scale = x[f"{chip_id}_peak"] / _peak_field(chip_id, precision).si \
        if f"{chip_id}_peak" in x else 1.0
    n = len(next(iter(x.values())))
    return np.full(n, point["tokens_per_s_per_chip"]) * scale


def price_per_chip_s(chip_id: str, x: dict[str, np.ndarray]) -> np.ndarray:
    """(scenario,) price of a chip [USD/s]: the scenario's, else the catalog's."""
    if f"{chip_id}_price" in x:
        return np.asarray(x[f"{chip_id}_price"])
    n = len(next(iter(x.values())))
    return np.full(n, _per_chip_price(PRICES[chip_id]).si)


def facility_power_per_chip(chip_id: str, x: dict[str, np.ndarray],
                            compute_share: Any = 1.0) -> np.ndarray:
    """(scenario,) facility power of a chip [W]: its chip power x (1 + system overhead) x PUE
    (catalog facility factors; the chip's scenario TDP where it is an unknown). The chip power
    is :func:`trnlab.perf.power.chip_power` with ``compute_share`` [1] of the time
    tensor-bound and the rest HBM-bound: TDP for a busy chip (1, the default: training,
    prefill), about 0.44 of TDP for a decode pool (power.toml: idle 0.2, memory weight 0.3);
    an undefined share (NaN: no layout meets the SLO) counts as busy."""
    fac, p = catalog.facility(), load_economics().power
    n = len(next(iter(x.values())))
    tdp = np.asarray(x[f"{chip_id}_tdp"]) if f"{chip_id}_tdp" in x \
        else np.full(n, catalog.chip(chip_id).tdp)
    c = np.nan_to_num(np.asarray(compute_share, dtype=float), nan=1.0)
    chip = power.chip_power(tdp, p["idle_fraction"].si, c, 1.0 - c, p["memory_weight"].si)
    return chip * (1.0 + fac.system_overhead) * fac.pue


def scaleout(chip_id: str) -> tuple[float, float]:
    """Scale-out bandwidth per chip and direction [B/s] (achieved) and latency [s] of the
    chip's homogeneous system."""
    hw = hardware(chip_id, HOMOGENEOUS[chip_id], serving=load_serving())
    return float(hw.out_bw), float(hw.out_latency)


def link(chip_id: str, x: dict[str, np.ndarray]) -> np.ndarray:
    """(scenario,) aggregate bidirectional scale-up bandwidth of a chip [B/s]."""
    n = len(next(iter(x.values())))
    key = f"{chip_id}_link"
    return np.asarray(x[key]) if key in x else np.full(n, catalog.chip(chip_id).scaleup_bandwidth)


def collective_efficiency() -> float:
    """Achieved fraction of a link in collectives (training.toml ``collective_eff``)."""
    return load_training().fields["collective_eff"].si

