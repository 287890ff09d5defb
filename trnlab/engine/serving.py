"""Inference study: serving throughput and latency, the SLO frontier, disaggregated pools.

Built on :func:`trnlab.perf.serve.serve`, evaluated over grids of layouts and batch sizes.
Cost is reported as chip-seconds per million output tokens; :mod:`trnlab.studies.cost` prices
them in USD.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any

import numpy as np
import xarray as xr

from trnlab import backend, catalog, checks
from trnlab.catalog.params import ServingParams, TrainingParams, load_defaults, load_serving
from trnlab.engine.hardware import (
    format_bytes,
    half_dim,
    hardware,
    precision_bytes,
    serve_calibration,
)
from trnlab.engine.layouts import MISSES_TPOT, MISSES_TTFT, NO_FIT, OK, REASONS, divisors
from trnlab.engine.shape import serve_shape
from trnlab.engine.training import check_power_cap, pareto_front
from trnlab.engine.variables import SERVING, attrs
from trnlab.errors import CatalogError
from trnlab.perf import comm
from trnlab.perf.serve import (
    ServeLayout,
    kv_bytes_per_request,
    prefill_time,
    serve,
    server_scenario,
)
from trnlab.workloads import TransformerSpec

#: most requests per second per replica :func:`steady_state` takes [1/s]
MAX_REQUEST_RATE = 1e9
#: the outputs of :func:`trnlab.perf.serve.serve` a frontier keeps
OUTPUT_KEYS = tuple(k for k in SERVING if k not in ("chip_s_per_m_tokens", "usd_per_m_tokens"))


def _storage_formats() -> list[str]:
    """Storage formats of weights and KV cache: the precisions, plus int8 weights."""
    return [*precision_bytes(), "int8-weights"]


def _check_formats(where: str, weights: Any, activations: Any, kv: Any) -> None:
    """Weights and KV cache in a storage format, activations in a compute precision."""
    checks.choice(where, "weights", weights, _storage_formats())
    checks.choice(where, "activations", activations, precision_bytes())
    checks.choice(where, "kv", kv, _storage_formats())


def _check_lengths(where: str, input_len: Any, output_len: Any) -> tuple[int, int]:
    """Prompt and generated tokens per request: integers in 1..2^24."""
    return (checks.positive_int(where, "input_len", input_len, checks.MAX_TOKENS),
            checks.positive_int(where, "output_len", output_len, checks.MAX_TOKENS))


def _check_system(where: str, system: Any, chip: Any = None) -> tuple[str, str]:
    """A known system id and chip id (default: the system's chip)."""
    sysrec = catalog.system(checks.ident(where, "system", system, CatalogError))
    if chip is None:
        return sysrec.id, sysrec.chip
    return sysrec.id, catalog.chip(checks.ident(where, "chip", chip, CatalogError)).id


def attention_tp_ok(spec: TransformerSpec, tp: Any, adp: Any) -> Any:
    """Whether the attention of each of the ``adp`` groups can run ``tp/adp``-way tensor
    parallel: ``tp/adp`` divides the attention heads (each rank holds whole heads) and the KV
    heads divide it or it divides them (KV heads replicated across ranks, as in training's
    rule 1). A ``tp`` beyond the heads would give a rank a fraction of a head while the serving
    model still divides the attention weights and FLOPs by ``tp``, so it is not enumerated."""
    attn = np.maximum(tp // adp, 1)  # adp > tp is refused by the first term
    kv = spec.kv_heads or spec.heads  # MLA: the latent is shared, the heads split
    return (adp <= tp) & (tp % adp == 0) & (spec.heads % attn == 0) & ((kv % attn == 0) | (attn % kv == 0))


def evaluate(spec: TransformerSpec | str, chip: str, system: str, *, tp: Any, pp: Any = 1,
             ep: Any = 1, adp: Any = 1, batch: Any, input_len: Any, output_len: Any,
             weights: str = "bf16", activations: str = "bf16", kv: str = "bf16",
             params: ServingParams | None = None, power_cap_w: float | None = None,
             training: TrainingParams | None = None,
             kv_context: Any = None) -> dict[str, np.ndarray]:
    """Serve ``spec`` on ``chip`` in ``system``; arguments broadcast (NumPy arrays or scalars).
    ``power_cap_w`` [W] lowers the compute peak to the clock the chip holds under the cap.
    ``training``: the training parameters whose GEMM efficiencies serving shares (default
    data/perf/training.toml; a calibration passes the ones it is fitting). ``kv_context``
    [tokens]: what each decode step attends to, for a runtime compiled for a fixed sequence
    length (None: the live context, prompt plus half the output)."""
    params = params or load_serving()
    m = serve_shape(catalog.spec(spec))
    hw = hardware(chip, system, activations, training, power_cap_w=power_cap_w, serving=params)
    tp, pp, ep, adp, batch, input_len, output_len = (
        backend.asarray(np.asarray(v, dtype=np.float64))
        for v in (tp, pp, ep, adp, batch, input_len, output_len))
    lay = ServeLayout(tp=tp, pp=pp, ep=ep, adp=adp, wbytes=format_bytes(weights),
                      kvbytes=format_bytes(kv))
    context = None if kv_context is None else backend.asarray(
        np.asarray(kv_context, dtype=np.float64))
    res = serve(m, hw, lay, batch, input_len, output_len, serve_calibration(params),
                half_dim(training), context=context)
    return {k: np.asarray(backend.to_numpy(v)) for k, v in res.items()}


def offline_throughput(spec: TransformerSpec | str, chip: str, system: str, *, tp: int,
                       pp: int = 1, input_len: int, output_len: int, max_batch: int = 8192,
                       weights: str = "bf16", activations: str = "bf16", kv: str = "bf16",
                       params: ServingParams | None = None,
                       training: TrainingParams | None = None) -> dict[str, float]:
    """Max-throughput mode: as many requests in flight as fit (up to ``max_batch``)."""
    where = "offline_throughput"
    catalog.spec(spec, where)
    _check_system(where, system, chip)
    checks.positive_int(where, "tp", tp, checks.MAX_CHIPS)
    checks.positive_int(where, "pp", pp, 1024)
    _check_lengths(where, input_len, output_len)
    checks.positive_int(where, "max_batch", max_batch, checks.MAX_BATCH)
    _check_formats(where, weights, activations, kv)
    probe = evaluate(spec, chip, system, tp=tp, pp=pp, batch=1, input_len=input_len,
                     output_len=output_len, weights=weights, activations=activations, kv=kv,
                     params=params, training=training)
    batch = float(min(max_batch, probe["max_concurrency"]))
    if batch < 1:
        return {"batch": 0.0, **{k: float("nan") for k in probe}}
    res = evaluate(spec, chip, system, tp=tp, pp=pp, batch=batch, input_len=input_len,
                   output_len=output_len, weights=weights, activations=activations, kv=kv,
                   params=params, training=training)
    return {"batch": batch, **{k: float(v) for k, v in res.items()}}


def server_throughput(spec: TransformerSpec | str, chip: str, system: str, *, tp: int,
                      pp: int = 1, input_len: int, output_len: int, ttft_limit_s: float,
                      tpot_limit_s: float, percentile: float = 99.0, max_batch: int = 8192,
                      weights: str = "bf16", activations: str = "bf16", kv: str = "bf16",
                      params: ServingParams | None = None,
                      training: TrainingParams | None = None,
                      points: int = 256) -> dict[str, float]:
    """Server scenario: the highest Poisson request rate per replica whose ``percentile`` TTFT
    and TPOT stay within ``ttft_limit_s`` and ``tpot_limit_s`` [s] (MLPerf Inference Server:
    p99 limits of data/perf/benchmarks.toml) and whose peak batch fits in memory.

    :func:`trnlab.perf.serve.server_scenario` is evaluated on a geometric grid of ``points``
    mean batches from 1 to the most that fit (at most ``max_batch``), all at once; the rate is
    increasing in the mean batch and so are the latencies, so the answer is the largest rate
    among the grid points that meet every limit. Returns ``rate`` [1/s], ``batch`` (mean) [1],
    ``output_tokens_per_s`` and ``input_tokens_per_s`` of the replica [1/s], ``tpot``,
    ``ttft``, ``tpot_q``, ``ttft_q`` [s]; ``batch = 0`` and NaNs when no rate meets the limits
    (``limited_by`` names the limit the smallest batch misses).
    """
    where = "server_throughput"
    catalog.spec(spec, where)
    _check_system(where, system, chip)
    checks.positive_int(where, "tp", tp, checks.MAX_CHIPS)
    checks.positive_int(where, "pp", pp, 1024)
    _check_lengths(where, input_len, output_len)
    checks.positive_int(where, "max_batch", max_batch, checks.MAX_BATCH)
    _check_formats(where, weights, activations, kv)
    ttft_limit_s = checks.positive(where, "ttft_limit_s", ttft_limit_s, unit="s")
    tpot_limit_s = checks.positive(where, "tpot_limit_s", tpot_limit_s, unit="s")
    if not 50.0 <= percentile < 100.0:
        raise checks.fail(where, "percentile", percentile, "a number in [50, 100) [%]")
    probe = evaluate(spec, chip, system, tp=tp, pp=pp, batch=1, input_len=input_len,
                     output_len=output_len, weights=weights, activations=activations, kv=kv,
                     params=params, training=training)
    top = float(min(max_batch, probe["max_concurrency"]))
    nan = {k: float("nan") for k in ("rate", "output_tokens_per_s", "input_tokens_per_s",
                                     "tpot", "ttft", "tpot_q", "ttft_q")}
    if top < 1:
        return {"batch": 0.0, "limited_by": "memory", **nan}
    params = params or load_serving()
    m = serve_shape(catalog.spec(spec))
    hw = hardware(chip, system, activations, training, serving=params)
    lay = ServeLayout(tp=float(tp), pp=float(pp), ep=1.0, adp=1.0,  # as offline_throughput
                      wbytes=format_bytes(weights), kvbytes=format_bytes(kv))
    q = percentile / 100.0
    z = NormalDist().inv_cdf(q)
    batch = np.geomspace(1.0, top, points)
    res = server_scenario(m, hw, lay, batch, float(input_len), float(output_len),
                          serve_calibration(params), half_dim(training), z, q)
    ok = (res["fits"] & (res["peak_batch"] <= top) & (res["ttft_q"] <= ttft_limit_s)
          & (res["tpot_q"] <= tpot_limit_s))
    if not ok.any():
        first = ("memory" if not (res["fits"][0] and res["peak_batch"][0] <= top) else
                 "ttft" if res["ttft_q"][0] > ttft_limit_s else "tpot")
        return {"batch": 0.0, "limited_by": first, **nan}
    i = int(np.argmax(np.where(ok, res["rate"], -np.inf)))
    rate = float(res["rate"][i])
    return {"batch": float(batch[i]), "limited_by": "", "rate": rate,
            "output_tokens_per_s": rate * output_len, "input_tokens_per_s": rate * input_len,
            **{k: float(res[k][i]) for k in ("tpot", "ttft", "tpot_q", "ttft_q")}}


def frontier(model_id: TransformerSpec | str, system: str, *, input_len: int = 2048,
             output_len: int = 512, ttft_ms: float | None = None, tpot_ms: float | None = None,
             chip: str | None = None, weights: str = "bf16", activations: str = "bf16",
             kv: str = "bf16", batches: Sequence[int] = tuple(2**i for i in range(13)),
             pps: Sequence[int] = (1, 2, 4), price_per_chip_hour: float | None = None,
             params: ServingParams | None = None,
             power_cap_w: float | None = None) -> xr.Dataset:
    """Throughput-vs-latency Pareto set of ``model`` on ``system`` under TTFT/TPOT targets.

    Evaluates every replica layout (tp a divisor of the scale-up domain whose attention share
    ``tp/adp`` divides the heads, :func:`attention_tp_ok`; pp; attention-DP for MLA models) x
    batch size; layouts that do not fit (weights + KV above HBM) or miss an SLO are masked with
    a reason. Bounds (checked first, one error line each): ``input_len``, ``output_len`` in
    1..2^24 tokens; ``ttft_ms``, ``tpot_ms`` None or finite > 0; ``price_per_chip_hour`` None
    or in (0, 1e6]; ``power_cap_w`` None or in (0, TDP]; ``batches``, ``pps`` non-empty
    positive integers. Returns a Dataset over ``config`` with the layout, the outputs,
    ``chip_s_per_m_tokens`` (chip-seconds per million output tokens), ``usd_per_m_tokens`` at
    ``price_per_chip_hour`` [USD] (default: the system's newest on-demand list price; NaN when
    there is none), ``reason`` and ``pareto`` (best output tokens/s per chip for its TPOT).
    """
    where = "frontier"
    spec = catalog.spec(model_id, where)
    system, chip = _check_system(where, system, chip)
    input_len, output_len = _check_lengths(where, input_len, output_len)
    if ttft_ms is not None:
        ttft_ms = checks.positive(where, "ttft_ms", ttft_ms, unit="ms")
    if tpot_ms is not None:
        tpot_ms = checks.positive(where, "tpot_ms", tpot_ms, unit="ms")
    _check_formats(where, weights, activations, kv)
    batches = checks.int_list(where, "batches", batches, 1, checks.MAX_BATCH)
    pps = checks.int_list(where, "pps", pps, 1, 1024)
    if price_per_chip_hour is not None:
        price_per_chip_hour = checks.positive(where, "price_per_chip_hour", price_per_chip_hour,
                                              1e6, unit="USD/(chip*h)")
    power_cap_w = check_power_cap(where, chip, power_cap_w)
    sysrec = catalog.system(system)
    tps = np.array(divisors(sysrec.n_chips))
    top = int(load_defaults()["max_attention_dp"].si) if spec.is_mla else 1
    adps = np.array([d for d in divisors(top) if d & (d - 1) == 0])  # powers of two
    tp, pp, adp, batch = (g.ravel() for g in np.meshgrid(
        tps, np.asarray(pps), adps, np.asarray(batches, dtype=float), indexing="ij"))
    keep = attention_tp_ok(spec, tp, adp) & ((tp * pp) <= sysrec.n_chips * 4)
    tp, pp, adp, batch = tp[keep], pp[keep], adp[keep], batch[keep]
    ep = np.where(spec.moe_experts > 0, tp, 1)
    res = evaluate(spec, chip, system, tp=tp, pp=pp, ep=ep, adp=adp, batch=batch,
                   input_len=input_len, output_len=output_len, weights=weights,
                   activations=activations, kv=kv, params=params, power_cap_w=power_cap_w)
    reason = np.full(tp.size, OK, dtype=np.int8)
    reason[~res["fits"]] = NO_FIT
    if tpot_ms is not None:
        reason[(reason == OK) & (res["tpot"] * 1e3 > tpot_ms)] = MISSES_TPOT
    if ttft_ms is not None:
        reason[(reason == OK) & (res["ttft"] * 1e3 > ttft_ms)] = MISSES_TTFT
    ok = reason == OK
    speed = np.where(ok, res["output_tokens_per_s_per_chip"], -np.inf)
    pareto = np.zeros(tp.size, dtype=bool)
    pareto[ok] = pareto_front(res["tpot"][ok], speed[ok])
    ds = xr.Dataset(coords={"config": np.arange(tp.size)})
    for key, values in (("tp", tp), ("pp", pp), ("ep", ep), ("adp", adp), ("batch", batch)):
        ds[key] = ("config", values.astype(np.int64), attrs(key))
    for key in OUTPUT_KEYS:
        ds[key] = ("config", res[key], attrs(key))
    ds["chip_s_per_m_tokens"] = ("config", 1e6 / res["output_tokens_per_s_per_chip"],
                                 attrs("chip_s_per_m_tokens"))
    if price_per_chip_hour is None:
        listed = catalog.default().latest_price(system)
        price_per_chip_hour = listed.usd_per_chip_hour if listed else float("nan")
    ds["usd_per_m_tokens"] = ("config", ds["chip_s_per_m_tokens"].values * price_per_chip_hour
                              / 3600.0, attrs("usd_per_m_tokens", "USD per million output tokens "
                                              f"at {price_per_chip_hour:.4g} USD per chip-hour"))
    ds["fits"] = ("config", res["fits"], attrs("fits", "weights + KV fit in HBM"))
    ds["reason"] = ("config", reason, attrs("reason", reason_names=json.dumps(REASONS)))
    ds["pareto"] = ("config", pareto, attrs("pareto", "on the throughput-vs-TPOT Pareto front"))
    ds.attrs.update({"model": spec.name, "system": system, "chip": chip,
                     "price_per_chip_hour": float(price_per_chip_hour),
                     "power_cap_w": json.dumps(power_cap_w),
                     "input_len": input_len, "output_len": output_len,
                     "ttft_ms": json.dumps(ttft_ms), "tpot_ms": json.dumps(tpot_ms),
                     "formats": json.dumps({"weights": weights, "activations": activations,
                                            "kv": kv})})
    return ds


def best(ds: xr.Dataset) -> dict[str, Any]:
    """The highest-throughput valid row of a :func:`frontier` Dataset, as plain Python."""
    valid = ds.where(ds["reason"] == 0, drop=True)
    if not valid.sizes["config"]:
        return {}
    i = int(np.argmax(valid["output_tokens_per_s_per_chip"].values))
    row = valid.isel(config=i)
    return {k: (int(row[k]) if k in ("tp", "pp", "ep", "adp", "batch") else float(row[k]))
            for k in ("tp", "pp", "ep", "adp", "batch", "ttft", "tpot",
                      "output_tokens_per_s_per_chip", "chip_s_per_m_tokens", "usd_per_m_tokens")}


def disaggregated(model_id: TransformerSpec | str, prefill_system: str, decode_system: str, *,
                  input_len: int = 2048, output_len: int = 512, prefill_tp: int = 8,
                  decode_tp: int = 8, decode_batch: int = 256, weights: str = "bf16",
                  activations: str = "bf16", kv: str = "bf16",
                  params: ServingParams | None = None) -> dict[str, float]:
    """Separate prefill and decode pools (Zhong et al., DistServe, OSDI'24).

    Prefill replicas process one prompt at a time (requests/s = 1 / prefill time); decode
    replicas hold ``decode_batch`` requests. The KV cache of each prompt moves from prefill to
    decode over the scale-up network when both pools share a system, else over scale-out, and
    adds to TTFT. The best pool ratio balances request rates: prefill chips per decode chip =
    (decode requests/s per chip) / (prefill requests/s per chip).
    """
    where = "disaggregated"
    spec = catalog.spec(model_id, where)
    _check_system(where, prefill_system)
    _check_system(where, decode_system)
    _check_lengths(where, input_len, output_len)
    for name, value in (("prefill_tp", prefill_tp), ("decode_tp", decode_tp)):
        checks.positive_int(where, name, value, checks.MAX_CHIPS)
    checks.positive_int(where, "decode_batch", decode_batch, checks.MAX_BATCH)
    _check_formats(where, weights, activations, kv)
    params = params or load_serving()
    m = serve_shape(spec)
    pre_sys, dec_sys = catalog.system(prefill_system), catalog.system(decode_system)
    hw_p = hardware(pre_sys.chip, prefill_system, activations, serving=params)
    lay = ServeLayout(tp=float(prefill_tp), pp=1.0, ep=1.0, adp=1.0,
                      wbytes=format_bytes(weights), kvbytes=format_bytes(kv))
    pre = prefill_time(m, hw_p, lay, 1.0, float(input_len), serve_calibration(params),
                       half_dim())
    dec = offline_throughput(spec, dec_sys.chip, decode_system, tp=decode_tp,
                             input_len=input_len, output_len=output_len,
                             max_batch=decode_batch, weights=weights, activations=activations,
                             kv=kv, params=params)
    kv_total = float(kv_bytes_per_request(m, float(input_len), format_bytes(kv)))
    if prefill_system == decode_system:
        link, alpha = hw_p.up_bw * prefill_tp, hw_p.up_latency
    else:
        link, alpha = hw_p.out_bw * prefill_tp, hw_p.out_latency
    transfer = float(comm.send_recv(kv_total, link, alpha))
    pre_rate = 1.0 / (float(pre) * prefill_tp)  # requests/s per prefill chip
    dec_rate = dec["output_tokens_per_s_per_chip"] / output_len  # requests/s per decode chip
    ratio = dec_rate / pre_rate
    return {"prefill_chips_per_decode_chip": ratio, "kv_transfer_s": transfer,
            "ttft": float(pre) + transfer + dec["tpot"], "tpot": dec["tpot"],
            "output_tokens_per_s_per_chip": dec["output_tokens_per_s_per_chip"] / (1 + ratio),
            "prefill_requests_per_s_per_chip": pre_rate,
            "decode_requests_per_s_per_chip": dec_rate}


def steady_state(model_id: TransformerSpec | str, chip: str, system: str, *, tp: int,
                 request_rate: Any, input_len: int, output_len: int, weights: str = "bf16",
                 activations: str = "bf16", kv: str = "bf16", iterations: int = 30,
                 params: ServingParams | None = None) -> dict[str, np.ndarray]:
    """Continuous batching at ``request_rate`` [1/s] per replica (array): the batch in flight
    follows Little's law, ``B = rate x (TTFT + output x TPOT(B))``, solved by fixed-point
    iteration (vectorized over rates). Returns the batch, TTFT, TPOT, the prefill share of the
    replica's time and whether the rate is sustainable (fits in memory, B finite)."""
    where = "steady_state"
    catalog.spec(model_id, where)
    _check_system(where, system, chip)
    checks.positive_int(where, "tp", tp, checks.MAX_CHIPS)
    _check_lengths(where, input_len, output_len)
    _check_formats(where, weights, activations, kv)
    iterations = checks.positive_int(where, "iterations", iterations, 10_000)
    try:
        rate = np.asarray(request_rate, dtype=np.float64)
    except (TypeError, ValueError):
        raise checks.fail(where, "request_rate", request_rate,
                          "numbers >= 0 [1/s] (a number or an array)") from None
    if rate.size == 0 or not np.all(np.isfinite(rate)) or np.any(rate < 0) or \
            np.any(rate > MAX_REQUEST_RATE):
        raise checks.fail(where, "request_rate", request_rate,
                          f"numbers in 0..{MAX_REQUEST_RATE:g} [1/s] (a number or a non-empty "
                          "array)")
    batch = np.ones_like(rate)
    for _ in range(iterations):  # fixed-point iterations, each vectorized over all rates
        res = evaluate(model_id, chip, system, tp=tp, batch=batch, input_len=input_len,
                       output_len=output_len, weights=weights, activations=activations,
                       kv=kv, params=params)
        batch = np.maximum(1.0, rate * (res["ttft"] + output_len * res["tpot"]))
    prefill_share = rate * (res["ttft"] - res["tpot"])
    return {"batch": batch, "ttft": res["ttft"], "tpot": res["tpot"],
            "prefill_share": prefill_share,
            "sustainable": res["fits"] & (prefill_share < 1.0) & (batch < 1e6)}
