"""Trainium4 with NVLink Fusion: what a mixed Trainium4 + Rubin rack buys over homogeneous racks.

Four workloads, each with heterogeneous and homogeneous alternatives side by side:

- ``serving``: disaggregated inference across vendors (prefill on one type, decode on the
  other, both directions; KV cache over NVLink Fusion or EFA; the pool ratio chosen in whole
  trays of 4 for the lowest cost per token) against co-located and disaggregated serving on
  homogeneous Trainium4 (NVLink Fusion and the UALink variant), Vera Rubin NVL72, GB300 NVL72
  and Trn3 Gen2 UltraServer racks, under TTFT and TPOT SLOs. A Trainium4 on UALink cannot reach
  a Rubin over the scale-up fabric: its mixed racks are the ``efa-only`` mode;
- ``afd``: attention/FFN (expert) disaggregation of a DeepSeek-V3-class MoE at decode
  (attention on one type, experts on the other, the per-layer token exchange over the fabric)
  against decode pools of one type;
- ``training``: a pipeline over both types (layers in proportion to speed) against each
  homogeneous rack and against the same chips as two homogeneous domains joined over EFA;
- ``rl``: RL post-training, rollouts on one type and the learner on the other with the weight
  sync over the fabric or EFA, against one time-shared homogeneous rack.

What crosses between vendors is a swept assumption (``fabric_mode``): ``efa-only`` (nothing:
cross-vendor data leaves over EFA), ``rdma`` (DMA put/get over NVLink Fusion, the catalog's
assumption), ``rdma+loadstore`` (fine-grained access without descriptor posting: the
homogeneous NVLink latency) and ``full`` (plus in-switch reductions). The unknown inputs
(:func:`trnlab.engine.hetero.unknowns`) are sampled (p5/p50/p95) and swung one at a time for
the tornado. :func:`claims` checks the Trainium4 claims of ``data/claims/trainium4.toml`` under
the verdict rule shared with the Trainium3 ledger (:mod:`trnlab.engine.verdicts`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from trnlab import catalog, checks
from trnlab._paths import data_dir
from trnlab.catalog.fields import parse_field
from trnlab.catalog.loader import read_toml
from trnlab.engine import hetero as eng
from trnlab.engine.hardware import format_bytes, half_dim, serve_calibration
from trnlab.engine.sampling import PERCENTILES, bands
from trnlab.engine.shape import serve_shape
from trnlab.engine.variables import attrs
from trnlab.engine.verdicts import (
    QUANTIFIERS,
    SENSES,
    TOLERANCE,
    Assessment,
    Basis,
    Claim,
    Input,
    Verdict,
    assess,
    corners,
    fmt,
    reason,
)
from trnlab.engine.verdicts import row as verdict_row
from trnlab.errors import CatalogError, ParameterError, bad_value
from trnlab.perf import hetero
from trnlab.perf.serve import ServeLayout, decode_terms, kv_bytes_per_request

FABRIC_MODES = ("efa-only", "rdma", "rdma+loadstore", "full")
WORKLOADS = ("serving", "afd", "training", "rl")
TRAY = 4  # chips per compute tray: pool sizes move in whole trays
RACK = 72  # chips per NVLink 6 domain
PAIRS = (("rubin", "trn4"), ("trn4", "rubin"))  # (first role, second role) of the mixed racks
METRICS = ("tokens_per_s_per_rack", "usd_per_m_tokens", "tokens_per_joule")


# ------------------------------------------------------------------------------ fabric
def _fabric(x: dict[str, np.ndarray], mode: str, a: str, b: str) -> tuple[Any, Any]:
    """Per-direction bandwidth [B/s] and latency [s] of data between a chip of type ``a`` and
    one of ``b`` in the mixed rack under ``mode`` (same type: its own NVLink)."""
    coll = eng.collective_efficiency()
    if a == b:
        own = catalog.system(eng.HOMOGENEOUS[a])
        return hetero.link_bandwidth(eng.link(a, x), eng.link(a, x), coll), \
            np.full(eng.link(a, x).shape, own.scaleup_latency)
    rdma = 0.0 if mode == "efa-only" else 1.0
    bw = hetero.link_bandwidth(eng.link(a, x), eng.link(b, x), x["fabric_efficiency"])
    out_bw = min(eng.scaleout(a)[0], eng.scaleout(b)[0])
    out_lat = max(eng.scaleout(a)[1], eng.scaleout(b)[1])
    lat = x["fabric_latency"]
    if mode in ("rdma+loadstore", "full"):
        lat = np.full(lat.shape, catalog.system(eng.HOMOGENEOUS["rubin"]).scaleup_latency)
    return hetero.cross_path(rdma, bw, lat, out_bw, out_lat)


def _pools(x: dict[str, np.ndarray], pools: list[tuple[str, Any, Any]]) -> tuple[Any, Any]:
    """Price [USD/s] and facility power [W] of a rack of ``(chip type, chips, compute share)``
    pools; a pool draws the power of its compute share (:func:`eng.facility_power_per_chip`:
    a decode pool less than a busy one)."""
    def per(v: np.ndarray, n: Any) -> np.ndarray:  # (scenario,) against n's extra axes
        return np.reshape(v, v.shape + (1,) * max(np.ndim(n) - 1, 0))

    price = sum(n * per(eng.price_per_chip_s(c, x), n) for c, n, _ in pools)
    power = sum(n * per(eng.facility_power_per_chip(c, x, share), n) for c, n, share in pools)
    return price, power


def _rack(x: dict[str, np.ndarray], counts: dict[str, Any]) -> tuple[Any, Any]:
    """Price [USD/s] and facility power [W] of a rack holding ``counts`` busy chips per type
    (training, the attention/FFN split, RL: every chip at TDP)."""
    return _pools(x, [(c, n, 1.0) for c, n in counts.items()])


def _row(rate: Any, price: Any, power: Any, **meta: Any) -> dict[str, Any]:
    """An option: tokens/s per rack, USD per million tokens, tokens per joule, and labels."""
    rate = np.asarray(rate, dtype=float) * np.ones_like(price)
    return {"tokens_per_s_per_rack": rate, "usd_per_m_tokens": price / rate * 1e6,
            "tokens_per_joule": rate / power, **meta}


def _best_split(rates: np.ndarray, price: np.ndarray, power: np.ndarray, shares: np.ndarray
                ) -> dict[str, np.ndarray]:
    """Per scenario, the split (last axis) with the lowest cost per token; NaN rates never
    win."""
    cost = np.where(rates > 0, price / np.where(rates > 0, rates, 1.0), np.inf)
    i = np.argmin(cost, axis=-1)
    take = lambda v: np.take_along_axis(v, i[..., None], axis=-1)[..., 0]
    r = take(rates)
    ok = np.isfinite(take(cost))
    return {"rate": np.where(ok, r, np.nan), "price": take(price), "power": take(power),
            "share": np.where(ok, shares[i], np.nan)}


# ------------------------------------------------------------------------------ serving
def _serving(x: dict[str, np.ndarray], p: dict[str, Any]) -> list[dict[str, Any]]:
    kw = {"input_len": p["input_len"], "output_len": p["output_len"],
          "tpot_s": p["tpot_ms"] / 1e3, "ttft_s": p["ttft_ms"] / 1e3,
          "precision": p["precision"]}
    rates = {c: eng.serving_rates(p["model"], c, eng.HOMOGENEOUS[c], x, **kw)
             for c in eng.HOMOGENEOUS}
    out_len = p["output_len"]
    rows = []
    rates["trn4-ualink"] = eng.serving_rates(p["model"], "trn4", eng.UALINK, x, **kw)
    for chip, system in (*eng.HOMOGENEOUS.items(), ("trn4", eng.UALINK)):
        n = catalog.system(system).n_chips
        own = rates["trn4-ualink" if system == eng.UALINK else chip]
        price, power = _pools(x, [(chip, n, own["colocated_compute_share"])])
        rate = own["colocated"]
        rows.append(_row(n * rate, price, power, workload="serving",
                         kind="homogeneous", fabric_mode="-", label=f"{system} co-located",
                         share=np.full(price.shape, np.nan), chips=n))
    shares = np.arange(TRAY, RACK, TRAY) / RACK
    pairs = [("trn4", "trn4"), ("rubin", "rubin"), *PAIRS]
    for pre, dec in pairs:
        modes = ("-",) if pre == dec else ("efa-only", "rdma")
        for mode in modes:
            bw, lat = _fabric(x, mode, pre, dec)
            kv = rates[pre]["kv_bytes"]
            ttft = rates[pre]["prefill_s"] + hetero.transfer_time(kv, bw, lat) \
                + rates[dec]["decode_tpot"]
            n_pre = shares[None, :] * RACK
            req = hetero.disaggregated_rate(rates[pre]["prefill"][:, None],
                                            (rates[dec]["decode"] / out_len)[:, None],
                                            n_pre, RACK - n_pre, kv[:, None], bw[:, None])
            req = np.where((ttft <= kw["ttft_s"])[:, None], req, np.nan)
            price, power = _pools(x, [(pre, n_pre, rates[pre]["prefill_compute_share"]),
                                      (dec, RACK - n_pre, rates[dec]["decode_compute_share"])])
            best = _best_split(req * out_len, np.broadcast_to(price, req.shape),
                               np.broadcast_to(power, req.shape), shares)
            kind = "homogeneous" if pre == dec else "heterogeneous"
            rows.append(_row(best["rate"], best["price"], best["power"], workload="serving",
                             kind=kind, fabric_mode=mode,
                             label=f"prefill {pre} / decode {dec}" + (
                                 f" ({mode})" if pre != dec else " (NVLink)"),
                             share=best["share"], chips=RACK))
    return rows


# ------------------------------------------------------------------------------ AFD
def _afd_parts(model: str) -> tuple[Any, Any, Any]:
    """The serving shape split into its attention part and its FFN (experts, shared, dense
    MLP, embeddings) part, for :func:`trnlab.perf.serve.decode_terms`."""
    m = serve_shape(catalog.spec(model))
    if not m.moe_experts:
        raise ParameterError(bad_value("trainium4 study", "moe_model", model,
                                       "a mixture-of-experts model (e.g. deepseek-v3)"))
    attn = dataclasses.replace(m, moe_layers=0.0, moe_experts=0.0, moe_active=0.0,
                               dense_params=m.attn_params, expert_params=0.0,
                               flop_params=m.attn_params)
    ffn = dataclasses.replace(m, heads=0.0, attn_params=0.0,
                              dense_params=m.dense_params - m.attn_params,
                              flop_params=m.flop_params - m.attn_params)
    return m, attn, ffn


def _afd(x: dict[str, np.ndarray], p: dict[str, Any]) -> list[dict[str, Any]]:
    """AFD options and their baseline, all as two ping-pong micro-batches per decode step
    (weights read once per micro-batch), the same per-chip batches and the same overlap: the
    baseline is a wide-EP decode pool of one type (attention-DP on every chip, experts spread
    over the rack, DeepSeek-V3 / SGLang large-scale EP), so the two differ only in where
    attention and experts run, not in how much KV cache, weights and traffic they move."""
    m, attn, ffn = _afd_parts(p["moe_model"])
    cal, hd = serve_calibration(), half_dim()
    fmt = format_bytes(p["precision"])
    tpot = p["tpot_ms"] / 1e3
    context = p["input_len"] + 0.5 * p["output_len"]
    n_attn = np.arange(TRAY, RACK, TRAY, dtype=float)  # attention chips
    per_chip = 2.0 ** np.arange(0, 10)  # sequences per attention chip
    na, b = n_attn[None, :, None], per_chip[None, None, :]
    one = ServeLayout(tp=1.0, pp=1.0, ep=1.0, adp=1.0, wbytes=fmt, kvbytes=fmt)
    kv_need = attn.attn_params * fmt + b * kv_bytes_per_request(
        attn, p["input_len"] + p["output_len"], fmt)  # an attention chip's HBM [B]
    expert_bytes = (ffn.dense_params + ffn.expert_params * ffn.moe_experts) * fmt

    def attention(hw: Any, seqs: Any) -> Any:  # attention of `seqs` sequences on one chip
        t = decode_terms(attn, hw, one, seqs / 2.0, context, cal, hd)
        return hetero.pingpong_time(t["compute"], t["stream"], t["attention"] + t["overhead"])

    def experts(hw: Any, tokens: Any, chips: Any) -> Any:  # FFN of `tokens` over `chips`
        lay = ServeLayout(tp=chips, pp=1.0, ep=1.0, adp=1.0, wbytes=fmt, kvbytes=fmt)
        t = decode_terms(ffn, hw, lay, tokens / 2.0, 0.0, cal, hd)
        return hetero.pingpong_time(t["compute"], t["stream"], hw.step_overhead)

    def exchange(tokens: Any) -> Any:  # bytes of the busier direction: dispatch or combine
        return np.maximum(
            hetero.afd_exchange_bytes(tokens, m.hidden, m.moe_active, m.moe_layers, fmt, 0.0),
            hetero.afd_exchange_bytes(tokens, m.hidden, m.moe_active, m.moe_layers, 0.0,
                                      cal.activation_bytes))

    rows = []
    for chip in ("trn4", "rubin"):  # wide-EP decode pools of one type, the baseline
        hw = eng.member_hardware(chip, eng.HOMOGENEOUS[chip], p["precision"], x)
        bw, lat = _fabric(x, "-", chip, chip)
        bw, lat = bw[:, None, None], lat[:, None, None]
        # each chip sends its dispatches and the combines of the tokens its experts ran:
        # both formats in each direction, (RACK - 1) / RACK of them to other chips
        t_x = hetero.afd_exchange_bytes(b, m.hidden, m.moe_active, m.moe_layers, fmt,
                                        cal.activation_bytes) * (RACK - 1.0) / RACK / bw
        step = hetero.colocated_ep_step(attention(hw, b), experts(hw, RACK * b, float(RACK)),
                                        t_x, m.moe_layers, lat)
        ok = (step <= tpot) & (kv_need + expert_bytes / RACK
                               <= hw.hbm_capacity * (1 - cal.mem_reserve))
        rate = np.where(ok, RACK * b / step, -np.inf).max(axis=(1, 2))
        price, power = _rack(x, {chip: RACK})
        rows.append(_row(np.where(np.isfinite(rate), rate, np.nan), price, power,
                         workload="afd", kind="homogeneous", fabric_mode="-",
                         label=f"{chip} decode pool (EP)",
                         share=np.full(price.shape, np.nan), chips=RACK))
    cases = [("trn4", "trn4", "-"), ("rubin", "rubin", "-")] + [
        (a, e, mode) for a, e in (("trn4", "rubin"), ("rubin", "trn4"))
        for mode in FABRIC_MODES[:3]]
    for a_chip, e_chip, mode in cases:
        hw_a = eng.member_hardware(a_chip, eng.HOMOGENEOUS[a_chip], p["precision"], x)
        hw_e = eng.member_hardware(e_chip, eng.HOMOGENEOUS[e_chip], p["precision"], x)
        t_attn = attention(hw_a, b)
        tokens = b * na  # sequences in the step
        t_exp = experts(hw_e, tokens, RACK - na)
        bw, lat = _fabric(x, mode, a_chip, e_chip)
        bw, lat = bw[:, None, None], lat[:, None, None]
        t_x = exchange(tokens) / (np.minimum(na, RACK - na) * bw)
        step = hetero.afd_step(t_attn, t_exp, t_x, m.moe_layers, lat)
        e_need = expert_bytes / (RACK - na)
        ok = (step <= tpot) & (kv_need <= hw_a.hbm_capacity * (1 - cal.mem_reserve)) \
            & (e_need <= hw_e.hbm_capacity * (1 - cal.mem_reserve))
        rate = np.where(ok, tokens / step, np.nan).max(axis=2, initial=-np.inf)
        rate = np.where(np.isfinite(rate), rate, np.nan)
        price, power = _rack(x, {a_chip: n_attn[None, :], e_chip: RACK - n_attn[None, :]}) \
            if a_chip != e_chip else _rack(x, {a_chip: np.full((1, n_attn.size), RACK)})
        best = _best_split(rate, np.broadcast_to(price, rate.shape),
                           np.broadcast_to(power, rate.shape), n_attn / RACK)
        kind = "homogeneous" if a_chip == e_chip else "heterogeneous"
        rows.append(_row(best["rate"], best["price"], best["power"], workload="afd", kind=kind,
                         fabric_mode=mode, label=f"attention {a_chip} / experts {e_chip}"
                         + (f" ({mode})" if kind == "heterogeneous" else ""),
                         share=best["share"], chips=RACK))
    return rows


# ------------------------------------------------------------------------------ training
def _training(x: dict[str, np.ndarray], p: dict[str, Any]) -> list[dict[str, Any]]:
    spec = catalog.spec(p["train_model"])
    speed = {c: eng.training_speed(p["train_model"], c, x, p["precision"])
             for c in ("trn4", "rubin")}
    rows = []
    for chip in ("trn4", "rubin"):
        price, power = _rack(x, {chip: RACK})
        rows.append(_row(RACK * speed[chip], price, power, workload="training",
                         kind="homogeneous", fabric_mode="-", label=f"{eng.HOMOGENEOUS[chip]}",
                         share=np.full(price.shape, np.nan), chips=RACK))
    half = RACK // 2
    price, power = _rack(x, {"trn4": half, "rubin": half})
    # the same chips as two homogeneous domains, data parallel over EFA: gradients of each
    # chip's shard are all-reduced between the two replicas, un-hidden beyond dp_overlap
    grads = 2.0 * spec.total_params / half  # BF16 gradients per chip [B]
    efa = min(eng.scaleout("trn4")[0], eng.scaleout("rubin")[0])
    tokens = p["global_batch_tokens"]
    both = half * (speed["trn4"] + speed["rubin"])
    step = tokens / both
    sync = hetero.spanning_all_reduce(grads, 2.0, efa, efa, eng.scaleout("trn4")[1], 0.0)
    rows.append(_row(tokens / (step + sync), price, power, workload="training",
                     kind="homogeneous", fabric_mode="efa-only",
                     label="36 trn4 + 36 rubin as two domains (DP over EFA)",
                     share=np.full(price.shape, 0.5), chips=RACK))
    for mode in FABRIC_MODES:
        bw, lat = _fabric(x, mode, "trn4", "rubin")
        pipe = hetero.pipeline_split(speed["rubin"], speed["trn4"], half, half,
                                     float(spec.layers))
        boundary = hetero.pipeline_boundary_limit(bw, TRAY, spec.hidden, 2.0)
        pipe_rate = np.minimum(pipe, boundary)
        rows.append(_row(pipe_rate, price, power, workload="training", kind="heterogeneous",
                         fabric_mode=mode, label=f"mixed rack, pipeline rubin -> trn4 ({mode})",
                         share=np.full(price.shape, 0.5), chips=RACK))
        sync = hetero.spanning_all_reduce(grads, 2.0, bw, bw, lat,
                                          1.0 if mode == "full" else 0.0)
        rows.append(_row(tokens / (step + sync), price, power, workload="training",
                         kind="heterogeneous", fabric_mode=mode,
                         label=f"mixed rack, DP across types ({mode})",
                         share=np.full(price.shape, 0.5), chips=RACK))
    return rows


# ------------------------------------------------------------------------------ RL
def _rl(x: dict[str, np.ndarray], p: dict[str, Any]) -> list[dict[str, Any]]:
    spec = catalog.spec(p["train_model"])
    kw = {"input_len": p["input_len"], "output_len": p["output_len"],
          "tpot_s": p["rl_tpot_ms"] / 1e3, "ttft_s": 1e3, "precision": p["precision"]}
    roll = {c: eng.serving_rates(p["train_model"], c, eng.HOMOGENEOUS[c], x, **kw)["colocated"]
            for c in ("trn4", "rubin")}
    learn = {c: eng.training_speed(p["train_model"], c, x, p["precision"])
             for c in ("trn4", "rubin")}
    gen = float(p["rl_rollout_tokens"])
    train = gen * (p["input_len"] + p["output_len"]) / p["output_len"]
    wbytes = spec.total_params * format_bytes(p["precision"])
    rows = []
    n_roll = np.arange(TRAY, RACK, TRAY, dtype=float)[None, :]
    for r_chip, t_chip in (("trn4", "trn4"), ("rubin", "rubin"), ("trn4", "rubin"),
                           ("rubin", "trn4")):
        modes = ("-",) if r_chip == t_chip else ("efa-only", "rdma")
        for mode in modes:
            bw, lat = _fabric(x, mode, r_chip, t_chip)
            bw, lat = bw[:, None], lat[:, None]
            n_t = RACK - n_roll
            sync = np.maximum(n_roll * wbytes / (n_t * bw), wbytes / bw) + lat
            step = hetero.rl_step_time(gen, n_roll * roll[r_chip][:, None], train,
                                       n_t * learn[t_chip][:, None], sync, 1.0)
            counts = {r_chip: n_roll, t_chip: n_t} if r_chip != t_chip else \
                {r_chip: np.full_like(n_roll, RACK)}
            price, power = _rack(x, counts)
            best = _best_split(gen / step, np.broadcast_to(price, step.shape),
                               np.broadcast_to(power, step.shape), n_roll[0] / RACK)
            kind = "homogeneous" if r_chip == t_chip else "heterogeneous"
            rows.append(_row(best["rate"], best["price"], best["power"], workload="rl",
                             kind=kind, fabric_mode=mode,
                             label=f"rollouts {r_chip} / learner {t_chip}"
                             + (f" ({mode})" if kind == "heterogeneous" else " (split pools)"),
                             share=best["share"], chips=RACK))
    for chip in ("trn4", "rubin"):  # one pool time-shared between the phases
        bw, lat = _fabric(x, "-", chip, chip)
        step = hetero.rl_step_time(gen, RACK * roll[chip], train, RACK * learn[chip],
                                   wbytes / RACK / bw + lat, 0.0)
        price, power = _rack(x, {chip: RACK})
        rows.append(_row(gen / step, price, power, workload="rl", kind="homogeneous",
                         fabric_mode="-", label=f"{chip} rack time-shared",
                         share=np.full(price.shape, np.nan), chips=RACK))
    return rows


# ------------------------------------------------------------------------------ study
_BUILDERS = {"serving": _serving, "afd": _afd, "training": _training, "rl": _rl}


def evaluate(x: dict[str, np.ndarray], params: dict[str, Any],
             workloads: Sequence[str] = WORKLOADS) -> list[dict[str, Any]]:
    """Every option of ``workloads`` on the scenario axis of ``x`` (see
    :func:`trnlab.engine.hetero.design`): a list of rows with (scenario,) metric arrays."""
    return [row for w in workloads for row in _BUILDERS[w](x, params)]


def _gain(rows: list[dict[str, Any]], workload: str, metric: str, mode: str = "rdma"
          ) -> np.ndarray:
    """(scenario,) best heterogeneous option (fabric ``mode``) / best homogeneous one on
    ``metric`` (cost: the inverse ratio, so > 1 means the mixed rack is better)."""
    het = [r[metric] for r in rows if r["workload"] == workload and r["kind"] == "heterogeneous"
           and r["fabric_mode"] == mode]
    hom = [r[metric] for r in rows if r["workload"] == workload and r["kind"] == "homogeneous"]
    if not het or not hom:
        return np.full(len(rows[0][metric]), np.nan)
    pick = np.nanmin if metric == "usd_per_m_tokens" else np.nanmax
    with warnings.catch_warnings():  # an all-NaN column (no option meets the SLO) stays NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        h, o = pick(np.stack(het), axis=0), pick(np.stack(hom), axis=0)
    return o / h if metric == "usd_per_m_tokens" else h / o


def _check(model: str, moe_model: str, train_model: str, input_len: int, output_len: int,
           tpot_ms: float, ttft_ms: float, precision: str, n_samples: int, seed: int,
           global_batch_tokens: float, rl_rollout_tokens: float, rl_tpot_ms: float,
           workloads: Sequence[str]) -> dict[str, Any]:
    where = "trainium4 study"
    for _name, value in (("model", model), ("moe_model", moe_model),
                        ("train_model", train_model)):
        catalog.spec(value, where)
    return {"model": model, "moe_model": moe_model, "train_model": train_model,
            "input_len": checks.positive_int(where, "input_len", input_len, checks.MAX_TOKENS),
            "output_len": checks.positive_int(where, "output_len", output_len,
                                              checks.MAX_TOKENS),
            "tpot_ms": checks.positive(where, "tpot_ms", tpot_ms, 60_000, unit="ms"),
            "ttft_ms": checks.positive(where, "ttft_ms", ttft_ms, 3_600_000, unit="ms"),
            "precision": checks.choice(where, "precision", precision, ("bf16", "fp8", "fp4")),
            "n_samples": checks.positive_int(where, "n_samples", n_samples, checks.MAX_SAMPLES),
            "seed": checks.integer(where, "seed", seed, 0),
            "global_batch_tokens": checks.positive(where, "global_batch_tokens",
                                                   global_batch_tokens, 1e9, unit="token"),
            "rl_rollout_tokens": checks.positive(where, "rl_rollout_tokens", rl_rollout_tokens,
                                                 1e10, unit="token"),
            "rl_tpot_ms": checks.positive(where, "rl_tpot_ms", rl_tpot_ms, 60_000, unit="ms"),
            "workloads": [checks.choice(where, "workloads", w, WORKLOADS)
                          for w in checks.id_list(where, "workloads", workloads)]}


def study(model: str = "llama3-70b", moe_model: str = "deepseek-v3",
          train_model: str = "llama3-70b", input_len: int = 2048, output_len: int = 512,
          tpot_ms: float = 50.0, ttft_ms: float = 2000.0, precision: str = "fp8",
          n_samples: int = 200, seed: int = 0, global_batch_tokens: float = 4e6,
          rl_rollout_tokens: float = 4e6, rl_tpot_ms: float = 100.0,
          workloads: Sequence[str] = WORKLOADS,
          overrides: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Heterogeneous (Trainium4 + Rubin in one NVLink Fusion domain) and homogeneous racks on
    ``workloads``, with p5/p50/p95 over ``n_samples`` draws of the unknown inputs, the central
    values, the gain of the best mixed option over the best homogeneous one, and its tornado.

    Serving (``model``, ``input_len`` / ``output_len`` tokens, ``tpot_ms`` / ``ttft_ms`` SLOs),
    AFD (``moe_model``), training and RL (``train_model``; ``global_batch_tokens`` per step,
    ``rl_rollout_tokens`` generated per RL step at ``rl_tpot_ms``), all in ``precision``.
    Chips are counted per rack of 72 (the Trn3 UltraServer: 144). Costs use the projected
    prices of prices.toml; energy is facility energy with every chip at its TDP.
    ``overrides``: unknown input -> a number or ``[low, central, high]`` in the catalog field's
    unit (``trn4_price`` USD/h per chip, ``trn4_tdp`` W, ...; see
    :func:`trnlab.engine.hetero.unknowns`), e.g. from :func:`overrides_from`.
    """
    p = _check(model, moe_model, train_model, input_len, output_len, tpot_ms, ttft_ms,
               precision, n_samples, seed, global_batch_tokens, rl_rollout_tokens, rl_tpot_ms,
               workloads)
    xs, _ = eng.design(p["precision"], p["n_samples"], p["seed"], overrides)
    xc, labels = eng.design(p["precision"], 0, overrides=overrides)
    sampled = evaluate(xs, p, p["workloads"])
    tornado = evaluate(xc, p, p["workloads"])
    ds = xr.Dataset(coords={"option": np.arange(len(sampled)),
                            "percentile": ("percentile", np.array(PERCENTILES),
                                           {"units": "1", "long_name": "percentile"})})
    for key in ("workload", "kind", "fabric_mode", "label"):
        ds.coords[key] = ("option", np.array([r[key] for r in sampled]))
    ds.coords["vendor"] = ("option", np.array(
        ["mixed" if r["kind"] == "heterogeneous" else
         ("nvidia" if any(v in r["label"] for v in ("rubin", "gb300")) and "trn" not in
          r["label"] else "aws") for r in sampled]))
    for metric in (*METRICS, "share"):
        stack = np.stack([np.asarray(r[metric], dtype=float) for r in sampled])
        with warnings.catch_warnings():  # an option meeting no SLO in any draw stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            ds[metric] = (("option", "percentile"), np.moveaxis(
                np.nanpercentile(stack, PERCENTILES, axis=1), 0, -1), attrs(metric))
        central = np.stack([np.asarray(r[metric], dtype=float)[0] for r in tornado])
        ds[f"{metric}_central"] = ("option", central,
                                   attrs(metric, attrs(metric)["long_name"] + ", central inputs"))
    ds["chips"] = ("option", np.array([r["chips"] for r in sampled], dtype=float),
                   attrs("chips_per_rack"))
    ws = p["workloads"]
    ds.coords["conclusion"] = ("conclusion", list(ws))
    ds.coords["metric"] = ("metric", list(METRICS))
    ds.coords["fabric"] = ("fabric", list(FABRIC_MODES))
    gain = np.array([[[bands(_gain(sampled, w, k, f)[~np.isnan(_gain(sampled, w, k, f))])
                       if np.any(~np.isnan(_gain(sampled, w, k, f))) else [np.nan] * 3
                       for f in FABRIC_MODES] for k in METRICS] for w in ws])
    ds["gain"] = (("conclusion", "metric", "fabric", "percentile"), gain, attrs("gain"))
    ds["gain_prob"] = (("conclusion", "metric", "fabric"), np.array(
        [[[np.mean(_gain(sampled, w, k, f) > 1.0) for f in FABRIC_MODES] for k in METRICS]
         for w in ws]), attrs("gain_prob"))
    inputs = [name for name, end in labels[1::2]]
    ds.coords["input"] = ("input", inputs)
    ds.coords["end"] = ("end", ["low", "high"])
    tor = np.array([[_gain(tornado, w, k)[1:].reshape(len(inputs), 2) for k in METRICS]
                    for w in ws])
    ds["tornado_gain"] = (("conclusion", "metric", "input", "end"), tor, attrs("tornado_gain"))
    ds["gain_central"] = (("conclusion", "metric"),
                          np.array([[_gain(tornado, w, k)[0] for k in METRICS] for w in ws]),
                          attrs("gain_central"))
    ds.attrs.update({"headline": "", "model": model, "moe_model": moe_model,
                     "train_model": train_model, "precision": p["precision"],
                     "input_len": p["input_len"], "output_len": p["output_len"],
                     "tpot_ms": p["tpot_ms"], "ttft_ms": p["ttft_ms"],
                     "n_samples": p["n_samples"], "seed": p["seed"],
                     "fabric_assumption": json.dumps(FABRIC_MODES)})
    ds.attrs["headline"] = headline(ds)
    return ds


def overrides_from(**values: Sequence[float]) -> dict[str, Any]:
    """Overrides from notebook lists: ``[]`` keeps the catalog, ``[value]`` fixes the input,
    ``[low, central, high]`` sets its range; any other length is an error."""
    out: dict[str, Any] = {}
    for name, v in values.items():
        v = list(v)
        if len(v) not in (0, 1, 3):
            raise ParameterError(bad_value("trainium4 study", name, v,
                                           "[], [value] or [low, central, high]"))
        if v:
            out[name] = v[0] if len(v) == 1 else v
    return out


# ------------------------------------------------------------------------------ reading
def _fmt(v: float, digits: int = 3) -> str:
    return "n/a" if not np.isfinite(v) else f"{v:.{digits}g}"


def _band(ds: xr.Dataset, w: str, k: str, f: str = "rdma") -> tuple[float, float, float]:
    g = ds["gain"].sel(conclusion=w, metric=k, fabric=f).values
    return float(g[0]), float(g[1]), float(g[2])


def decisive_input(ds: xr.Dataset, w: str, k: str = "usd_per_m_tokens") -> tuple[str, float,
                                                                                  float]:
    """The unknown input whose range moves ``w``'s gain on ``k`` the most (the span of the gain
    at its low end, the central inputs and its high end: the best homogeneous rack may change
    along the way, so the gain need not be monotone): (name, gain at its low end, gain at its
    high end)."""
    t = ds["tornado_gain"].sel(conclusion=w, metric=k)
    central = float(ds["gain_central"].sel(conclusion=w, metric=k))
    ends = [t.sel(end="low").values, t.sel(end="high").values, np.full(t.sizes["input"], central)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        swing = np.nan_to_num(np.nanmax(ends, axis=0) - np.nanmin(ends, axis=0), nan=-1.0)
    name = str(ds["input"].values[int(np.argmax(swing))])
    return name, float(t.sel(input=name, end="low")), float(t.sel(input=name, end="high"))


def survives(ds: xr.Dataset, w: str, k: str = "usd_per_m_tokens") -> bool | None:
    """Whether the sign of ``w``'s gain on ``k`` (mixed better or worse) holds at both ends of
    every input and at p5 and p95 of the Monte-Carlo band (None: no gain computed)."""
    t = ds["tornado_gain"].sel(conclusion=w, metric=k).values
    g = ds["gain"].sel(conclusion=w, metric=k, fabric="rdma").values
    vals = np.concatenate([t.ravel(), g[[0, 2]], [float(ds["gain_central"].sel(
        conclusion=w, metric=k))]])
    if np.all(np.isnan(vals)):
        return None
    vals = vals[~np.isnan(vals)]
    return bool(np.all(vals > 1.0) or np.all(vals < 1.0))


def best_option(ds: xr.Dataset, w: str, kind: str, k: str = "usd_per_m_tokens") -> str:
    """Label of the best option of ``kind`` for ``w`` on ``k`` at the median."""
    sel = ds.sel(percentile=50.0)
    mask = (ds["workload"] == w) & (ds["kind"] == kind)
    vals = sel[k].where(mask)
    if kind == "heterogeneous":
        vals = vals.where(ds["fabric_mode"] == "rdma")
    if bool(vals.isnull().all()):
        return "none"
    i = int(np.nanargmin(vals.values) if k == "usd_per_m_tokens" else np.nanargmax(vals.values))
    return str(ds["label"].values[i])


def headline(ds: xr.Dataset) -> str:
    """One sentence: the workload where the mixed rack gains most on cost, with its band."""
    ws = [str(w) for w in ds["conclusion"].values]
    best = max(ws, key=lambda w: np.nan_to_num(_band(ds, w, "usd_per_m_tokens")[1], nan=-1))
    lo, mid, hi = _band(ds, best, "usd_per_m_tokens")
    name, a, b = decisive_input(ds, best)
    return (f"A Trainium4 + Rubin NVLink Fusion rack is {_fmt(mid)}x [{_fmt(lo)}-{_fmt(hi)}] "
            f"the best homogeneous rack on tokens per dollar for {best} "
            f"({best_option(ds, best, 'heterogeneous')}); {name} decides it "
            f"({_fmt(a)}x to {_fmt(b)}x across its range).")


def reading(ds: xr.Dataset) -> str:
    """The reading of a :func:`study` Dataset as Markdown bullets, every number from ``ds``."""
    lines = [f"- {ds.attrs['headline']}"]
    for w in (str(v) for v in ds["conclusion"].values):
        parts = []
        for k, what in (("usd_per_m_tokens", "tokens per dollar"),
                        ("tokens_per_joule", "tokens per joule"),
                        ("tokens_per_s_per_rack", "tokens/s per rack")):
            lo, mid, hi = _band(ds, w, k)
            prob = float(ds["gain_prob"].sel(conclusion=w, metric=k, fabric="rdma"))
            parts.append(f"{what} {_fmt(mid)}x [{_fmt(lo)}-{_fmt(hi)}], better in "
                         f"{prob:.0%} of draws")
        efa = _band(ds, w, "usd_per_m_tokens", "efa-only")[1]
        name, a, b = decisive_input(ds, w)
        keep = survives(ds, w)
        lines.append(
            f"- **{w}**: best mixed {best_option(ds, w, 'heterogeneous')} vs best homogeneous "
            f"{best_option(ds, w, 'homogeneous')}: " + "; ".join(parts)
            + (f". Without cross-vendor RDMA (EFA only) the cost gain is {_fmt(efa)}x. "
               if np.isfinite(efa) else ". Without cross-vendor RDMA (EFA only) no mixed "
               "configuration meets the SLOs. ")
            + f"Decided by {name} ({_fmt(a)}x to {_fmt(b)}x); the sign "
            + ("survives every input's range." if keep else
               "does not survive every input's range." if keep is not None else
               "could not be computed."))
    return "\n".join(lines)


# ------------------------------------------------------------------------------ claims
CLAIMS_FILE = "trainium4.toml"
#: check -> (Trainium4 field, Trainium3 field it is a multiple of, label, unit, unit in SI)
MULTIPLES = {"fp4": ("peak_fp4", "peak_mxfp4", "FP4 peak", "TFLOP/s", 1e12),
             "fp8": ("peak_fp8", "peak_mxfp8", "FP8 peak", "TFLOP/s", 1e12),
             "hbm_bandwidth": ("hbm_bandwidth", "hbm_bandwidth", "HBM bandwidth", "TB/s", 1e12),
             "hbm_capacity": ("hbm_capacity", "hbm_capacity", "HBM capacity", "GiB", 2.0**30)}
CLAIM_CHECKS = (*MULTIPLES, "interop")
CLAIM_SAMPLES = 64  # draws of the study behind the interoperability claim (about 0.2 s)
_SYSTEMS = ("trn4-nvl72", "trn3-ultraserver")  # the racks of the per-rack reading


def load_claims() -> list[Claim]:
    """Read and validate ``data/claims/trainium4.toml`` (keys as in the Trainium3 file)."""
    path = data_dir() / "claims" / CLAIMS_FILE
    sources = set(catalog.default().sources)
    out = []
    for cid, raw in read_toml(path).get("claim", {}).items():
        where = f"{CLAIMS_FILE}: [claim.{cid}]"
        for key in ("text", "check", "published"):
            if key not in raw:
                raise CatalogError(f"{where}: missing required field '{key}'")
        for key, allowed in (("check", CLAIM_CHECKS), ("sense", SENSES),
                             ("quantifier", QUANTIFIERS)):
            if key in raw and raw[key] not in allowed:
                raise CatalogError(bad_value(where, key, raw[key],
                                             f"allowed: {', '.join(allowed)}"))
        basis = raw.get("basis", [])
        if not isinstance(basis, list) or not all(isinstance(t, str) for t in basis):
            raise CatalogError(bad_value(where, "basis", basis, "a list of tags"))
        out.append(Claim(cid, raw["text"], raw["check"],
                         parse_field(raw["published"], where, "published", "count", sources),
                         tuple(basis), raw.get("sense", "equal"), raw.get("quantifier", "all")))
    return out


def claim_inputs(overrides: Mapping[str, Sequence[float]] | None = None) -> dict[str, Input]:
    """The projected inputs of the multiples, each ``[low, central, high]`` in its unit: every
    Trainium4 field (its catalog range) and the Trainium3 field it multiplies (its range over
    the readings the sources give, e.g. 4.7-4.9 TB/s, 144 GB or GiB). ``overrides``: input ->
    ``[low, central, high]`` in the input's unit."""
    out: dict[str, Input] = {}
    for k4, k3, label, unit, scale in MULTIPLES.values():
        f4, f3 = catalog.chip("trn4").fields[k4], catalog.chip("trn3").fields[k3]
        alt = [a.si for a in f3.alt]
        out[f"trn4_{k4}"] = Input(f"trn4_{k4}", f"Trainium4 {label}", unit, f4.low / scale,
                                  f4.si / scale, f4.high / scale)
        out[f"trn3_{k3}"] = Input(f"trn3_{k3}", f"Trainium3 {label}", unit,
                                  min([f3.low, *alt]) / scale, f3.si / scale,
                                  max([f3.high, *alt]) / scale)
    for name, v in (overrides or {}).items():
        if name not in out:
            raise ParameterError(bad_value("trainium4 claims", "overrides", name,
                                           f"one of {', '.join(out)}"))
        vals = [checks.finite("trainium4 claims", name, x, 0.0, low_open=True) for x in v]
        if len(vals) != 3 or not vals[0] <= vals[1] <= vals[2]:
            raise ParameterError(bad_value("trainium4 claims", name, list(v),
                                           "[low, central, high] in increasing order"))
        out[name] = dataclasses.replace(out[name], low=vals[0], central=vals[1], high=vals[2])
    return out


def _multiple_check(check: str) -> Callable[[Mapping[str, float]], list[Basis]]:
    """The bases of an 'N x Trainium3' claim: per chip (stated) and per rack (Trainium4 NVL72
    vs Trn3 Gen2 UltraServer), and the numbers it implies, shown but not judged."""
    k4, k3, label = MULTIPLES[check][:3]
    n4, n3 = (catalog.system(s).n_chips for s in _SYSTEMS)

    def bases(x: Mapping[str, float]) -> list[Basis]:
        ratio = x[f"trn4_{k4}"] / x[f"trn3_{k3}"]
        out = [Basis(f"per chip, Trainium4 / Trainium3 {label}", ratio,
                     tags=frozenset({"chip"})),
               Basis(f"per rack, {n4} Trainium4 / {n3} Trainium3 (Gen2 UltraServer), {label}",
                     ratio * n4 / n3, tags=frozenset({"server"}))]
        if check in ("fp4", "fp8"):
            out.append(Basis("Trainium4 FP4 / FP8 peak, as the catalog's two peaks imply",
                             x["trn4_peak_fp4"] / x["trn4_peak_fp8"], checkable=False,
                             tags=frozenset({"claims"})))
        else:
            rubin = catalog.chip("rubin")
            stacks = catalog.chip("trn4").fields["hbm_stacks"].si
            ref = getattr(rubin, check) / rubin.fields["hbm_stacks"].si
            scale = MULTIPLES[check][4]
            out.append(Basis(f"Trainium4 {label} per HBM stack ({stacks:.0f} stacks) / Rubin's "
                             "HBM4 stack", x[f"trn4_{k4}"] * scale / stacks / ref,
                             checkable=False, tags=frozenset({"claims"})))
        return out
    return bases


def _multiple_note(claim: Claim, a: Assessment, inputs: Mapping[str, Input]) -> str:
    k4, k3, label, unit, _ = MULTIPLES[claim.check]
    t4, t3 = inputs[f"trn4_{k4}"], inputs[f"trn3_{k3}"]
    pub = float(claim.published.value)
    f4 = catalog.chip("trn4").fields[k4]
    text = (f"{pub:g} x Trainium3's {fmt(t3.central, unit)} is {fmt(pub * t3.central, unit)}; "
            f"the catalog's Trainium4 {label} is {fmt(t4.central, unit)} ({f4.status}, "
            f"{fmt(t4.low, unit)} to {fmt(t4.high, unit)})")
    if math.isclose(t4.central / t3.central, pub, rel_tol=1e-9):
        text += (" - exactly the claimed multiple, i.e. the catalog takes it from this claim, "
                 "so the per-chip basis cannot disagree at the central inputs")
    return text + f"; {a.bases[-1].name}: {fmt(a.bases[-1].value, '1')}"


def _interop_bases(ds: xr.Dataset) -> tuple[list[Basis], dict[tuple[str, str], list[Basis]],
                                             list[float], list[float], dict[str, Input]]:
    """Per workload of ``ds``: the gain on tokens per dollar of the best mixed rack (cross-vendor
    RDMA) over the best homogeneous one at the central inputs, each input at each end (the
    tornado), and its lowest and highest value within the ranges (p5/p95 of the draws and the
    tornado ends)."""
    k = "usd_per_m_tokens"
    ws = [str(w) for w in ds["conclusion"].values]
    names = [str(n) for n in ds["input"].values]
    fields = eng.unknowns(str(ds.attrs["precision"]))
    inputs = {}
    for n in names:
        f = fields[n]
        scale = f.si / f.value if f.value else 1.0
        inputs[n] = Input(n, n, f.unit, f.low / scale, float(f.value), f.high / scale)

    def basis(w: str, v: float) -> Basis:
        return Basis(f"{w}: best mixed / best homogeneous rack, tokens per dollar", v,
                     tags=frozenset({"rack", w}))

    central = [basis(w, float(ds["gain_central"].sel(conclusion=w, metric=k))) for w in ws]
    tor = ds["tornado_gain"].sel(metric=k)
    ends = {(n, e): [basis(w, float(tor.sel(conclusion=w, input=n, end=e))) for w in ws]
            for n in names for e in ("low", "high")}
    lows, highs = [], []
    for w, b in zip(ws, central, strict=True):
        vals = np.array([b.value, *_band(ds, w, k)[::2],
                         *tor.sel(conclusion=w).values.ravel()], dtype=float)
        vals = vals[np.isfinite(vals)]
        lows.append(float(vals.min()) if vals.size else np.nan)
        highs.append(float(vals.max()) if vals.size else np.nan)
    return central, ends, lows, highs, inputs


def _interop_note(ds: xr.Dataset, a: Assessment) -> str:
    k = "usd_per_m_tokens"
    n = sum(v != "not-checkable" for v in a.verdicts)
    n_gain = sum(b.value > 1.0 for b in a.bases)
    n_tol = sum(v == "holds" for v in a.verdicts) - n_gain
    w = str(a.bases[a.decisive].name).split(":")[0]
    name, lo, hi = decisive_input(ds, w)
    efa = _band(ds, w, k, "efa-only")[1]
    return (f"checked as 'a mixed Trainium4 + Rubin rack gains over the best homogeneous rack'; "
            f"{n_gain} of {n} workloads gain (> 1) at the central inputs"
            + (f", {n_tol} more come within the {TOLERANCE:.0%} tolerance" if n_tol > 0 else "")
            + f"; for {w} the best mixed "
            f"option is {best_option(ds, w, 'heterogeneous')} against "
            f"{best_option(ds, w, 'homogeneous')}, {name} moves the gain from {_fmt(lo)}x to "
            f"{_fmt(hi)}x, and without cross-vendor RDMA (EFA only) the median gain is "
            f"{_fmt(efa)}x")


def claims(ds: xr.Dataset | None = None,
           overrides: Mapping[str, Sequence[float]] | None = None,
           n_samples: int = CLAIM_SAMPLES) -> list[Verdict]:
    """The Trainium4 claims of ``data/claims/trainium4.toml`` under the one verdict rule of
    :mod:`trnlab.engine.verdicts`: one :class:`~trnlab.engine.verdicts.Verdict` each (rows of
    the same shape as the Trainium3 ledger's). The multiples are checked per chip and per rack
    over the ranges of :func:`claim_inputs` (``overrides`` move them); the interoperability
    claim reads ``ds``, a :func:`study` result (default: a study of ``n_samples`` draws)."""
    inputs = claim_inputs(overrides)
    out = []
    for claim in load_claims():
        if claim.check in MULTIPLES:
            k4, k3 = MULTIPLES[claim.check][:2]
            names = (f"trn4_{k4}", f"trn3_{k3}")
            central, ends, lows, highs = corners(_multiple_check(claim.check), inputs, names)
            a = assess(claim, central, ends, lows, highs, inputs, names)
            text = f"{reason(claim, a)}; {_multiple_note(claim, a, inputs)}"
        else:
            ds = ds if ds is not None else study(n_samples=n_samples)
            central, ends, lows, highs, t_inputs = _interop_bases(ds)
            names = tuple(t_inputs)
            a = assess(claim, central, ends, lows, highs, t_inputs, names)
            text = f"{reason(claim, a)}; {_interop_note(ds, a)}"
        out.append(verdict_row(claim, a, text, "projected"))
    return out
