"""Memory and inference: where the memory wall is for LLM serving, chip by chip.

One Dataset answers five questions for a set of chips (each in its scale-up domain,
:func:`trnlab.engine.hardware.system_of`: ``trn3`` in ``trn3-ultraserver``, ``h200`` in ``dgx-h200``, ...):

1. **Memory per chip**: HBM capacity and bandwidth, bytes per BF16 FLOP and the ridge point.
2. **KV cache**: bytes per token of each model (MHA/GQA: ``2 L g d b``; MLA: ``L (r + d_rope) b``)
   and the requests of each context length one replica holds beside its weights, for the
   smallest power-of-two TP replica inside the domain that holds at least one request of that
   context (MLA models: with the attention-DP degree that holds the most).
3. **Roofline of the serving operators**: decode GEMMs at batch 1..1024 (``~ 2 B / b_w``
   FLOP/B), whole decode steps (weights + KV cache) and prefill GEMMs of ``input_len`` tokens,
   against each chip's ridge point (:mod:`trnlab.perf.roofline`).
4. **Tokens/s at the SLO**: the best layout of :func:`trnlab.engine.serving.frontier` under
   the TPOT/TTFT targets, per chip and per scale-up domain (per chip x ``n_chips``); NaN and a
   reason where no layout meets the SLO.
5. **What fits in one domain**: a replica holding ``concurrency`` requests of ``fit_context``
   tokens needs ``weights + KV`` bytes; the chips it needs at the usable HBM per chip, the
   replicas one domain holds, and whether one replica fits in a domain at all.

Usable HBM is capacity x (1 - ``mem_reserve``) of ``data/perf/serving.toml``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from trnlab import catalog, checks
from trnlab.catalog import model
from trnlab.catalog.params import ServingParams, load_serving
from trnlab.engine import serving
from trnlab.engine.hardware import format_bytes, half_dim, hardware, serve_calibration, system_of
from trnlab.engine.layouts import MISSES_TPOT, MISSES_TTFT, NO_FIT, REASONS
from trnlab.engine.shape import serve_shape
from trnlab.errors import ParameterError, bad_value
from trnlab.perf import roofline
from trnlab.perf.serve import (
    ServeLayout,
    ServeShape,
    decode_terms,
    kv_bytes_per_request,
    kv_bytes_per_token,
    max_concurrency,
    mean_context,
    weight_bytes_per_chip,
)

MODELS = ("llama3-70b", "llama3-405b", "deepseek-v3", "gpt-oss-120b")
CHIPS = ("trn2", "trn3", "h200", "b200", "gb200", "tpu-v7")
CONTEXTS = (2048, 8192, 32768, 131072)
ROOFLINE_BATCHES = tuple(2**i for i in range(11))  # decode batches on the roofline, 1..1024
SLO_BATCHES = tuple(2**i for i in range(13))  # batches the SLO search tries, 1..4096


def _var(ds: xr.Dataset, name: str, dims: tuple[str, ...], values: Any, units: str,
         long_name: str) -> None:
    ds[name] = (dims, np.asarray(values), {"units": units, "long_name": long_name})


def attention_kind(model_id: str) -> str:
    """``MLA``, ``MHA`` (as many KV heads as query heads) or ``GQA``, with ``+ SWA`` when
    some layers attend over a sliding window."""
    spec = model(model_id)
    kind = "MLA" if spec.is_mla else "MHA" if spec.kv_heads == spec.heads else "GQA"
    return kind + (" + SWA" if spec.sliding_window else "")


# ------------------------------------------------------------------------------ 1. per chip
def chips_dataset(chips: Sequence[str], params: ServingParams | None = None) -> xr.Dataset:
    """HBM capacity, bandwidth, BF16 peak, their ratios and the scale-up domain of each chip."""
    cal = serve_calibration(params)
    recs = [catalog.chip(c) for c in chips]
    systems = [catalog.system(system_of(c)) for c in chips]
    cap = np.array([r.hbm_capacity for r in recs])
    bw = np.array([r.hbm_bandwidth for r in recs])
    peak = np.array([r.peak("bf16") for r in recs])
    n = np.array([s.n_chips for s in systems], dtype=float)
    ds = xr.Dataset(coords={"chip": list(chips)})
    d = ("chip",)
    _var(ds, "system", d, [s.id for s in systems], "1", "largest scale-up domain of the chip")
    _var(ds, "n_chips", d, n, "1", "chips in the scale-up domain")
    _var(ds, "hbm_capacity", d, cap, "B", "HBM capacity per chip")
    _var(ds, "hbm_bandwidth", d, bw, "B/s", "HBM bandwidth per chip")
    _var(ds, "peak_bf16", d, peak, "FLOP/s", "dense BF16 peak per chip")
    _var(ds, "bytes_per_flop", d, bw / peak, "B/FLOP", "HBM bytes per BF16 FLOP")
    _var(ds, "ridge_intensity", d, roofline.ridge(peak, bw), "FLOP/B",
         "roofline ridge point at BF16 (peak / HBM bandwidth)")
    _var(ds, "hbm_sweep_time", d, cap / bw, "s", "time to read all of HBM once")
    _var(ds, "hbm_usable", d, cap * (1.0 - cal.mem_reserve), "B",
         "HBM usable by weights and KV cache per chip")
    _var(ds, "domain_hbm_usable", d, n * cap * (1.0 - cal.mem_reserve), "B",
         "usable HBM pooled over the scale-up domain")
    return ds


# ---------------------------------------------------------------------------- 2. KV cache
def _replicas(m: ServeShape, mla: bool, chips: xr.Dataset, contexts: np.ndarray, wb: float,
              kb: float, params: ServingParams) -> dict[str, np.ndarray]:
    """Smallest power-of-two TP (inside the domain) holding >= 1 request, per (chip, context)."""
    cal = serve_calibration(params)
    top = int(math.log2(float(chips["n_chips"].max())))
    tps = 2.0 ** np.arange(top + 1)
    adps = tps if mla else np.ones(1)
    cap = chips["hbm_capacity"].values[:, None, None, None]
    n = chips["n_chips"].values[:, None, None, None]
    tp, adp = tps[None, :, None, None], adps[None, None, :, None]
    ctx = contexts[None, None, None, :].astype(float)
    ranks = np.array([float(catalog.chip(str(c)).ranks_per_chip)
                      for c in chips["chip"].values])
    conc = max_concurrency(m, cap, tp, 1.0, adp, wb, kb, ctx, cal,
                           ranks[:, None, None, None])  # (chip, tp, adp, context)
    conc = np.where((tp <= n) & (adp <= tp), conc, -1.0)
    a = np.argmax(conc, axis=2)  # best attention-DP degree (first on ties: the smallest)
    best = np.take_along_axis(conc, a[:, :, None, :], axis=2)[:, :, 0, :]  # (chip, tp, context)
    ok = best >= 1.0
    t = np.argmax(ok, axis=1)  # the smallest tp that holds one request
    found = ok.any(axis=1)
    pick = lambda x: np.take_along_axis(x, t[:, None, :], axis=1)[:, 0, :]
    rep_tp = np.where(found, tps[t], np.nan)
    rep_adp = np.where(found, adps[pick(a)], np.nan)
    conc = np.where(found, pick(best), np.nan)
    safe_tp, safe_adp = np.nan_to_num(rep_tp, nan=1.0), np.nan_to_num(rep_adp, nan=1.0)
    weights = np.where(found, weight_bytes_per_chip(m, safe_tp, 1.0, safe_adp, wb), np.nan)
    kv_chip = np.where(found, kv_bytes_per_token(m, safe_tp, 1.0, safe_adp, kb, ranks[:, None]),
                       np.nan)
    return {"replica_tp": rep_tp, "replica_adp": rep_adp, "replica_weights_per_chip": weights,
            "replica_kv_per_token_per_chip": kv_chip, "max_concurrency": conc,
            "max_concurrency_per_chip": conc / rep_tp}


_KV_VARS = {
    "replica_tp": ("1", "tensor-parallel degree of the replica (smallest power of two holding "
                   "one request)"),
    "replica_adp": ("1", "attention data-parallel degree of the replica"),
    "replica_weights_per_chip": ("B", "weight bytes per chip of the replica"),
    "replica_kv_per_token_per_chip": ("B", "KV-cache bytes per token per chip of the replica"),
    "max_concurrency": ("1", "requests of this context one replica holds"),
    "max_concurrency_per_chip": ("1", "requests of this context held per chip"),
}


def kv_dataset(models: Sequence[str], chips: xr.Dataset, contexts: Sequence[int],
               weights: str = "bf16", kv: str = "bf16",
               params: ServingParams | None = None) -> xr.Dataset:
    """KV bytes per token per model and the max concurrency per (model, chip, context)."""
    params = params or load_serving()
    wb, kb = format_bytes(weights), format_bytes(kv)
    ctx = np.asarray(contexts, dtype=np.int64)
    shapes = [serve_shape(model(m)) for m in models]
    ds = xr.Dataset(coords={"model": list(models), "chip": chips["chip"].values,
                            "context": ("context", ctx, {"units": "token",
                                                         "long_name": "context length"})})
    _var(ds, "attention", ("model",), [attention_kind(m) for m in models], "1",
         "attention kind (MHA, GQA, MLA; + SWA: sliding-window layers)")
    _var(ds, "kv_bytes_per_token", ("model",),
         [float(kv_bytes_per_token(s, 1.0, 1.0, 1.0, kb)) for s in shapes], "B",
         "KV-cache bytes per token of the whole model, every layer holding it")
    _var(ds, "kv_bytes_per_request", ("model", "context"),
         np.array([kv_bytes_per_request(s, ctx.astype(float), kb) for s in shapes]), "B",
         "KV-cache bytes of one request of this context (a sliding-window layer holds its "
         "window)")
    _var(ds, "weight_bytes", ("model",),
         [float(weight_bytes_per_chip(s, 1.0, 1.0, 1.0, wb)) for s in shapes], "B",
         "weight bytes of the whole model")
    rows = [_replicas(s, model(m).is_mla, chips, ctx, wb, kb, params)
            for m, s in zip(models, shapes, strict=True)]
    for key, (units, long_name) in _KV_VARS.items():
        _var(ds, key, ("model", "chip", "context"), np.stack([r[key] for r in rows]), units,
             long_name)
    return ds


# ----------------------------------------------------------------------------- 3. roofline
def roofline_dataset(models: Sequence[str], chips: xr.Dataset, input_len: int, output_len: int,
                     weights: str = "bf16", kv: str = "bf16") -> xr.Dataset:
    """Intensity of decode GEMMs, decode steps and prefill GEMMs; attainable FLOP/s per chip."""
    wb, kb = format_bytes(weights), format_bytes(kv)
    ab = serve_calibration().activation_bytes  # GEMM inputs and outputs [B]
    batch = np.asarray(ROOFLINE_BATCHES, dtype=float)
    context = mean_context(input_len, output_len)
    shapes = [serve_shape(model(m)) for m in models]
    gemm = np.stack([roofline.gemm_intensity(s, batch, wb, ab) for s in shapes])
    step = np.stack([roofline.decode_step_intensity(s, batch, context, wb, kb, ab)
                     for s in shapes])
    pre = np.array([float(roofline.gemm_intensity(s, float(input_len), wb, ab))
                    for s in shapes])
    peak = chips["peak_bf16"].values
    bw = chips["hbm_bandwidth"].values
    ridge = chips["ridge_intensity"].values
    ds = xr.Dataset(coords={"model": list(models), "chip": chips["chip"].values,
                            "batch": batch.astype(np.int64)})
    mb, cmb, cm = ("model", "batch"), ("chip", "model", "batch"), ("chip", "model")
    _var(ds, "decode_gemm_intensity", mb, gemm, "FLOP/B",
         "arithmetic intensity of the decode weight GEMMs")
    _var(ds, "decode_step_intensity", mb, step, "FLOP/B",
         f"arithmetic intensity of a decode step (weights + KV cache at {context:g} tokens)")
    _var(ds, "prefill_intensity", ("model",), pre, "FLOP/B",
         f"arithmetic intensity of the prefill weight GEMMs of {input_len} tokens")
    p3, b3, r3 = peak[:, None, None], bw[:, None, None], ridge[:, None, None]
    _var(ds, "decode_gemm_attainable", cmb, roofline.attainable(gemm[None], p3, b3), "FLOP/s",
         "roofline attainable rate of the decode weight GEMMs")
    _var(ds, "decode_step_attainable", cmb, roofline.attainable(step[None], p3, b3), "FLOP/s",
         "roofline attainable rate of a decode step")
    _var(ds, "decode_step_memory_bound", cmb, step[None] < r3, "1",
         "decode step below the ridge point (HBM-bandwidth bound)")
    _var(ds, "prefill_attainable", cm, roofline.attainable(pre[None], peak[:, None],
                                                           bw[:, None]), "FLOP/s",
         "roofline attainable rate of the prefill weight GEMMs")
    _var(ds, "prefill_compute_bound", cm, pre[None] >= ridge[:, None], "1",
         "prefill GEMMs at or above the ridge point (compute bound)")
    _var(ds, "decode_gemm_ridge_batch", cm,
         _crossing(gemm, batch, ridge), "1",
         "decode batch where the weight GEMMs reach the ridge point (NaN: not below 1024)")
    return ds


def _crossing(intensity: np.ndarray, batch: np.ndarray, ridge: np.ndarray) -> np.ndarray:
    """Smallest batch of the grid at or above each chip's ridge, per (chip, model)."""
    above = intensity[None, :, :] >= ridge[:, None, None]  # (chip, model, batch)
    return np.where(above.any(axis=2), batch[np.argmax(above, axis=2)], np.nan)


# --------------------------------------------------------------------------- 4. SLO rates
_SLO_VARS = {
    "tokens_per_s_per_chip": ("token/s", "output tokens per second per chip at the SLO"),
    "tokens_per_s_per_system": ("token/s", "output tokens per second per scale-up domain at the "
                                "SLO (per chip x n_chips)"),
    "slo_tp": ("1", "tensor-parallel degree of the best layout at the SLO"),
    "slo_pp": ("1", "pipeline-parallel degree of the best layout at the SLO"),
    "slo_adp": ("1", "attention data-parallel degree of the best layout at the SLO"),
    "slo_batch": ("1", "requests in flight per replica of the best layout at the SLO"),
    "slo_tpot": ("s", "time per output token of the best layout"),
    "slo_ttft": ("s", "time to first token of the best layout"),
    "slo_decode_intensity": ("FLOP/B", "arithmetic intensity of the decode step of the best "
                             "layout (batch per pipeline stage)"),
    "slo_decode_compute_time": ("s", "GEMM + attention compute term of the best layout's "
                                "decode step in the serving model (achieved FLOP/s)"),
    "slo_decode_stream_time": ("s", "weight + KV streaming term of the best layout's decode "
                               "step in the serving model (achieved HBM bandwidth)"),
}


def _decode_terms(m: ServeShape, chip: str, system: str, row: dict[str, Any], context: float,
                  wb: float, kb: float, params: ServingParams) -> tuple[float, float]:
    """Compute and streaming terms of :func:`trnlab.perf.serve.decode_step` for ``row`` [s]:
    the weight GEMMs and the attention FLOPs, and the weight and KV-cache reads.

    The step is ``max(compute, stream) + attention + traffic + overhead``; the core returns
    its terms.
    """
    hw = hardware(chip, system, serving=params)
    lay = ServeLayout(tp=float(row["tp"]), pp=1.0, ep=float(row["ep"]), adp=float(row["adp"]),
                      wbytes=wb, kvbytes=kb)
    terms = decode_terms(m, hw, lay, row["batch"] / row["pp"], context,
                         serve_calibration(params), half_dim())
    return (float(terms["compute"] + terms["attention_compute"]),
            float(terms["stream"] + terms["kv"]))


def _reason(front: xr.Dataset, tpot_ms: float, ttft_ms: float) -> str:
    """Why no layout of a frontier meets the SLO (deterministic, rounded)."""
    fits = front.where(front["reason"] != NO_FIT, drop=True)
    if not fits.sizes["config"]:
        return f"{REASONS[NO_FIT]} in any layout"
    tpot = float(fits["tpot"].min()) * 1e3
    if tpot > tpot_ms:
        return f"{REASONS[MISSES_TPOT]}: best {tpot:.0f} ms > {tpot_ms:g} ms"
    return (f"{REASONS[MISSES_TTFT]}: no layout within {tpot_ms:g} ms TPOT has TTFT <= "
            f"{ttft_ms:g} ms")


def slo_dataset(models: Sequence[str], chips: xr.Dataset, input_len: int, output_len: int,
                tpot_ms: float, ttft_ms: float, weights: str = "bf16", kv: str = "bf16",
                params: ServingParams | None = None) -> xr.Dataset:
    """Best output tokens/s per chip and per domain under the TPOT/TTFT targets."""
    params = params or load_serving()
    wb, kb = format_bytes(weights), format_bytes(kv)
    ab = serve_calibration(params).activation_bytes
    context = mean_context(input_len, output_len)
    shape = (len(models), chips.sizes["chip"])
    out = {k: np.full(shape, np.nan) for k in _SLO_VARS}
    reason = np.full(shape, "", dtype=object)
    for i, m in enumerate(models):
        sm = serve_shape(model(m))
        for j, system in enumerate(chips["system"].values):
            front = serving.frontier(m, str(system), input_len=input_len,
                                       output_len=output_len, tpot_ms=tpot_ms, ttft_ms=ttft_ms,
                                       weights=weights, kv=kv, batches=SLO_BATCHES,
                                       params=params)
            row = serving.best(front)
            if not row:
                reason[i, j] = _reason(front, tpot_ms, ttft_ms)
                continue
            per_chip = row["output_tokens_per_s_per_chip"]
            out["tokens_per_s_per_chip"][i, j] = per_chip
            out["tokens_per_s_per_system"][i, j] = per_chip * float(chips["n_chips"][j])
            for key in ("tp", "pp", "adp", "batch", "tpot", "ttft"):
                out[f"slo_{key}"][i, j] = row[key]
            out["slo_decode_intensity"][i, j] = float(roofline.decode_step_intensity(
                sm, row["batch"] / row["pp"], context, wb, kb, ab))
            out["slo_decode_compute_time"][i, j], out["slo_decode_stream_time"][i, j] = \
                _decode_terms(sm, str(chips["chip"].values[j]), str(system), row, context, wb,
                              kb, params)
    ds = xr.Dataset(coords={"model": list(models), "chip": chips["chip"].values})
    for key, (units, long_name) in _SLO_VARS.items():
        _var(ds, key, ("model", "chip"), out[key], units, long_name)
    _var(ds, "slo_replica_spans_domains", ("model", "chip"),
         out["slo_tp"] * out["slo_pp"] > chips["n_chips"].values[None, :], "1",
         "the best layout's replica is larger than one scale-up domain")
    _var(ds, "slo_decode_compute_bound", ("model", "chip"),
         out["slo_decode_compute_time"] > out["slo_decode_stream_time"], "1",
         "the serving model's decode step of the best layout is limited by achieved compute")
    _var(ds, "slo_reason", ("model", "chip"), reason.astype(str), "1",
         "why no layout meets the SLO (empty: met)")
    return ds


# ------------------------------------------------------------------------- 5. pooled memory
def pooled_dataset(models: Sequence[str], chips: xr.Dataset, concurrency: int, fit_context: int,
                   weights: str = "bf16", kv: str = "bf16") -> xr.Dataset:
    """Chips per replica (weights + KV of ``concurrency`` requests) and replicas per domain."""
    wb, kb = format_bytes(weights), format_bytes(kv)
    shapes = [serve_shape(model(m)) for m in models]
    need = np.array([float(weight_bytes_per_chip(s, 1.0, 1.0, 1.0, wb)
                           + concurrency * kv_bytes_per_request(s, float(fit_context), kb))
                     for s in shapes])
    usable = chips["hbm_usable"].values
    n = chips["n_chips"].values
    per_replica = np.ceil(need[:, None] / usable[None, :])  # (model, chip)
    ds = xr.Dataset(coords={"model": list(models), "chip": chips["chip"].values})
    _var(ds, "replica_bytes", ("model",), need, "B",
         f"weights + KV cache of {concurrency} requests of {fit_context} tokens")
    _var(ds, "chips_per_replica", ("model", "chip"), per_replica, "1",
         "fewest chips whose usable HBM holds one replica (perfect sharding)")
    _var(ds, "replicas_per_domain", ("model", "chip"), np.floor(n[None, :] / per_replica), "1",
         "replicas one scale-up domain holds")
    _var(ds, "fits_one_domain", ("model", "chip"), per_replica <= n[None, :], "1",
         "one replica fits in one scale-up domain")
    _var(ds, "replica_domain_fraction", ("model", "chip"),
         need[:, None] / chips["domain_hbm_usable"].values[None, :], "1",
         "replica bytes / usable HBM of the domain")
    return ds


# ---------------------------------------------------------------------------------- study
def _check(name: str, values: Sequence[Any], positive: bool = False) -> None:
    if isinstance(values, str | bytes | dict) or not hasattr(values, "__len__") or \
            not len(values):
        raise ParameterError(bad_value("memory", name, values, "a non-empty list"))
    if positive:
        checks.int_list("memory", name, values, 1, checks.MAX_TOKENS)
    else:
        for v in values:
            checks.ident("memory", name, v)
    if len(set(values)) != len(values):
        raise ParameterError(bad_value("memory", name, values, "no duplicates"))


def study(models: Sequence[str] = MODELS, chips: Sequence[str] = CHIPS,
          contexts: Sequence[int] = CONTEXTS, input_len: int = 2048, output_len: int = 512,
          tpot_ms: float = 50.0, ttft_ms: float = 2000.0, weights: str = "bf16",
          kv: str = "bf16", concurrency: int = 64, fit_context: int = 8192,
          params: ServingParams | None = None) -> xr.Dataset:
    """The memory-and-inference study (see the module docstring).

    Parameters
    ----------
    models, chips : sequence of str
        Model presets and chip ids; each chip is taken in its largest scale-up domain.
    contexts : sequence of int
        Context lengths of the concurrency table [tokens].
    input_len, output_len : int
        Prompt and generated tokens per request for the roofline and the SLO search [tokens].
    tpot_ms, ttft_ms : float
        Time-per-output-token and time-to-first-token targets [ms].
    weights, kv : str
        Storage formats of the weights and the KV cache (``bf16``, ``fp8``, ...).
    concurrency, fit_context : int
        Requests [1] and their context [tokens] a replica holds in the what-fits table.
    """
    _check("models", models)
    _check("chips", chips)
    _check("contexts", contexts, positive=True)
    for name, value in (("input_len", input_len), ("output_len", output_len),
                        ("fit_context", fit_context)):
        checks.positive_int("memory", name, value, checks.MAX_TOKENS)
    checks.positive_int("memory", "concurrency", concurrency, checks.MAX_BATCH)
    for name, value in (("tpot_ms", tpot_ms), ("ttft_ms", ttft_ms)):
        checks.positive("memory", name, value, unit="ms")
    params = params or load_serving()
    models, chips = list(models), list(chips)
    per_chip = chips_dataset(chips, params)
    ds = xr.merge([
        per_chip,
        kv_dataset(models, per_chip, contexts, weights, kv, params),
        roofline_dataset(models, per_chip, input_len, output_len, weights, kv),
        slo_dataset(models, per_chip, input_len, output_len, tpot_ms, ttft_ms, weights, kv,
                    params),
        pooled_dataset(models, per_chip, concurrency, fit_context, weights, kv),
    ], combine_attrs="override")
    ds = ds.assign_coords(vendor=("chip", [catalog.chip(c).vendor for c in chips],
                                      {"units": "1", "long_name": "chip vendor (catalog)"}))
    ds.attrs = {
        "title": "Memory and inference: capacity, KV cache, roofline, tokens/s at the SLO",
        "decode_context": mean_context(input_len, output_len),
        "formats": json.dumps({"weights": weights, "kv": kv, "activations": "bf16"}),
        "input_len": input_len, "output_len": output_len, "tpot_ms": tpot_ms,
        "ttft_ms": ttft_ms, "concurrency": concurrency, "fit_context": fit_context,
    }
    ds.attrs["headline"] = headline(ds)
    return ds


# ------------------------------------------------------------------------------ the reading
def _chip_list(ds: xr.Dataset, var: str, scale: float, fmt: str, chips: Sequence[str]) -> str:
    return ", ".join(f"{c} {float(ds[var].sel(chip=c)) / scale:{fmt}}" for c in chips)


def headline(ds: xr.Dataset) -> str:
    """One sentence with the run's key numbers: requests per chip of the first model at the
    what-fits context on the first Trainium chips, and which models one domain holds."""
    m, ctx = str(ds["model"].values[0]), int(ds.attrs["fit_context"])
    trn = [str(c) for c in ds["chip"].values if str(c).startswith("trn")] or \
        [str(c) for c in ds["chip"].values]
    kv = ds["max_concurrency_per_chip"].sel(model=m)
    at = kv.sel(context=ctx) if ctx in ds["context"].values else kv.isel(context=0)
    per_chip = ", ".join(f"{float(at.sel(chip=c)):.1f} per {c} chip" for c in trn)
    best = trn[-1]
    fits = [str(x) for x in ds["model"].values if bool(ds["fits_one_domain"].sel(model=x,
                                                                               chip=best))]
    return (f"{m} at {int(at['context'])} tokens of context: {per_chip}; one "
            f"{ds['system'].sel(chip=best).item()} holds a replica of "
            f"{', '.join(fits) or 'none of the models'} with {int(ds.attrs['concurrency'])} "
            "requests")


def reading(ds: xr.Dataset) -> str:
    """The reading of a :func:`study` Dataset as Markdown bullets, every number from ``ds``."""
    chips = [str(c) for c in ds["chip"].values]
    bpf = ds["bytes_per_flop"]
    most = chips[int(np.argmax(bpf.values))]
    lines = [
        f"- **Memory per chip.** HBM {_chip_list(ds, 'hbm_capacity', 1e9, '.0f', chips)} GB; "
        f"bandwidth {_chip_list(ds, 'hbm_bandwidth', 1e12, '.1f', chips)} TB/s. {most} has "
        f"the most HBM bytes per BF16 FLOP ({float(bpf.sel(chip=most)) * 1e3:.1f} per 1000) "
        f"and so the lowest ridge point ({float(ds['ridge_intensity'].sel(chip=most)):.0f} "
        "FLOP/B): the least arithmetic intensity an operator needs to be compute-bound.",
    ]
    ctx = int(ds.attrs["fit_context"])
    if ctx in ds["context"].values:
        kv = ds["max_concurrency_per_chip"].sel(context=ctx)
        for m in ds["model"].values:
            row = kv.sel(model=m)
            fit = [c for c in chips if np.isfinite(ds["replica_tp"].sel(model=m, context=ctx,
                                                                       chip=c))]
            lines.append(
                f"- **KV cache, {m}** ({ds['attention'].sel(model=m).item()}, "
                f"{float(ds['kv_bytes_per_token'].sel(model=m)) / 1e3:.0f} kB per token, "
                f"{float(ds['kv_bytes_per_request'].sel(model=m, context=ctx)) / 1e9:.2f} GB "
                f"per request of {ctx} tokens): requests per chip at {ctx} tokens: "
                + ", ".join(f"{c} {float(row.sel(chip=c)):.1f}" for c in fit)
                + (f"; no replica fits on {', '.join(c for c in chips if c not in fit)}"
                   if len(fit) < len(chips) else "") + ".")
        trn = [c for c in fit if c.startswith("trn")]
        if len(trn) >= 2:
            a, b = trn[-2], trn[-1]
            hbm = ds["hbm_capacity"]
            lines.append(
                f"  {b} holds {float(row.sel(chip=b) / row.sel(chip=a)):.1f}x the requests "
                f"of {a} for {float(hbm.sel(chip=b) / hbm.sel(chip=a)):.1f}x the HBM: the "
                "weights per chip stay the same, so the extra HBM all goes to the KV cache.")
    ratio = (ds["slo_decode_intensity"] / ds["ridge_intensity"]).values
    bound = ds["slo_decode_compute_bound"].values[np.isfinite(ratio)]
    below = "below every ridge: by the roofline decode is memory-bound" if np.nanmax(ratio) < 1 \
        else "above some ridges: decode is compute-bound there"
    lines.append(
        f"- **Roofline.** At the batch chosen for the SLO a decode step sits at "
        f"{np.nanmin(ratio):.0%}-{np.nanmax(ratio):.0%} of each chip's ridge point, {below}; "
        f"prefill of {int(ds.attrs['input_len'])} tokens "
        f"runs at {float(ds['prefill_intensity'].min()):.0f}-"
        f"{float(ds['prefill_intensity'].max()):.0f} FLOP/B. In the serving model, "
        f"{int(bound.sum())} of {bound.size} SLO decode steps are limited by achieved compute "
        "(the GEMM efficiency at small batch), not by the bandwidth.")
    for m in ds["model"].values:
        r = ds.sel(model=m)
        ok = [c for c in chips if np.isfinite(r["tokens_per_s_per_chip"].sel(chip=c))]
        miss = [c for c in chips if c not in ok]
        lines.append(
            f"- **{m} at TPOT <= {float(ds.attrs['tpot_ms']):g} ms**: output tokens/s per chip "
            + ", ".join(f"{c} {float(r['tokens_per_s_per_chip'].sel(chip=c)):.0f}" for c in ok)
            + (f"; {', '.join(miss)} miss the SLO" if miss else "") + ".")
    fits = ds["fits_one_domain"]
    lines.append(
        f"- **Pooled memory.** A replica of {int(ds.attrs['concurrency'])} requests of "
        f"{ctx} tokens fits in one domain for: "
        + "; ".join(f"{m} ({float(ds['replica_bytes'].sel(model=m)) / 1e12:.2f} TB) on "
                    + (", ".join(c for c in chips if bool(fits.sel(model=m, chip=c)))
                       or "none")
                    for m in ds["model"].values) + ".")
    return "\n".join(lines)
