"""Training at scale: the best parallel layout per system and chip count, time and chip-hours to
train on a token budget, where the step time goes, a (tp, pp) heat map, and a roofline of the
model's operators.

Every number comes from :func:`trnlab.engine.training.search` (the step model of
:mod:`trnlab.perf.train` over every valid layout) and from the catalog; this module only picks,
reshapes and labels. Time to train on ``D`` tokens with ``N`` chips at ``r`` tokens/s per chip is
``D / (r N)`` and costs ``D / (3600 r)`` chip-hours (Kaplan et al. 2020 count tokens the same way).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from trnlab import catalog, checks
from trnlab.catalog.params import TrainingParams, load_training
from trnlab.engine.hardware import PRECISION_BYTES, hardware, system_of, train_calibration
from trnlab.engine.layouts import REASONS
from trnlab.engine.shape import model_shape
from trnlab.engine.training import search
from trnlab.engine.variables import BREAKDOWN, VARIABLES, attrs
from trnlab.errors import ParameterError, bad_value
from trnlab.perf.compute import memory_time
from trnlab.perf.train import RECOMPUTE, TP_COLUMN, TP_ROW, Layout, operator_terms
from trnlab.workloads import Gemm, TransformerSpec, layer_gemms, memory_bound_ops

SYSTEMS = ("trn2-ultraserver", "trn3-ultraserver", "dgx-h100", "dgx-b200", "gb200-nvl72")
#: powers of two: the default global batch (2048 x 8192 tokens) then splits over any dp degree;
#: a chip count with an odd factor gets a batch rounded to it (``default_global_batch``), which
#: limits dp. 126 layers leave pp in {1, 2} at these counts.
SCALES = (1024, 4096, 16384)
ROOFLINE_CHIPS = ("trn2", "trn3", "h100-sxm", "b200")
LAYOUT = ("tp", "pp", "dp", "cp", "ep", "vpp", "zero", "recompute", "micro_batch")
BEST_OUTPUTS = ("tokens_per_s_per_chip", "mfu", "hfu", "step_time", "mem_per_chip")
_ALL = 1 << 62  # ``top`` that keeps every valid layout of a search
TIES = 64  # layouts a search keeps to break ties among (near-)equally fast layouts
TIE_RTOL = 1e-9  # tokens/s within this relative distance of the fastest are a tie
#: tie-break: the simplest layout (least cp, then pp, vpp, tp, ep, ZeRO stage, recompute, and
#: the smallest micro-batch) among equally fast ones
SIMPLEST = ("cp", "pp", "vpp", "tp", "ep", "zero", "recompute", "micro_batch")


def _check(spec_or_id: TransformerSpec | str, systems: Sequence[str], scales: Sequence[int],
           precision: str, token_budget: float, heatmap_system: str, heatmap_chips: int,
           roofline_chips: Sequence[str]) -> TransformerSpec:
    """Validate every input before any work (one-line TrnlabErrors)."""
    spec = catalog.spec(spec_or_id, "training study")
    for name, values in (("systems", systems), ("scales", scales),
                         ("roofline_chips", roofline_chips)):
        if isinstance(values, str) or not len(values):
            raise ParameterError(bad_value("training study", name, values,
                                           "a non-empty list"))
        if len(set(values)) != len(values):
            raise ParameterError(bad_value("training study", name, list(values),
                                           "no duplicates"))
    for n in (*scales, heatmap_chips):
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or not \
                1 <= n <= checks.MAX_CHIPS:
            raise ParameterError(bad_value("training study", "n_chips", n,
                                           f"an integer in 1..{checks.MAX_CHIPS:,}"))
    if precision not in PRECISION_BYTES:
        raise ParameterError(bad_value("training study", "precision", precision,
                                       f"allowed: {', '.join(PRECISION_BYTES)}"))
    checks.positive("training study", "token_budget", token_budget, unit="token")
    for s in (*systems, heatmap_system):
        catalog.system(s)
    for c in roofline_chips:
        catalog.chip(c)
    return spec


def _no_layout_reason(ds: xr.Dataset) -> str:
    """Why a search found nothing: the rule that the furthest-getting layouts broke."""
    counts = json.loads(ds.attrs["invalid_by_reason"])
    if not counts:
        return "no layout enumerated"
    last = max(counts, key=lambda r: next(k for k, v in REASONS.items() if v == r))
    return (f"no valid layout of {ds.attrs['n_evaluated']}: {last} "
            f"({counts[last]} layouts)")


def _pick(ds: xr.Dataset) -> int:
    """Row of the best layout of a search (ranked fastest first).

    Exact ties are common: cp 2 x micro-batch 1 runs as fast as cp 4 x micro-batch 2 when the
    ring-attention traffic hides, and recompute is free when the step waits on data-parallel
    traffic. Among layouts within :data:`TIE_RTOL` of the fastest, the simplest
    (:data:`SIMPLEST`) wins, so the answer does not hang on the enumeration order or on the
    last bits of a float.
    """
    speed = ds["tokens_per_s_per_chip"].values
    tied = np.flatnonzero(speed >= speed[0] * (1.0 - TIE_RTOL))
    order = np.lexsort([ds[k].values[tied] for k in reversed(SIMPLEST)])
    return int(tied[order[0]])


def _heatmap(ds: xr.Dataset) -> xr.Dataset:
    """Best tokens/s per chip and its MFU per (tp, pp) over every valid layout of a search.

    ``ds`` is ranked best first, so the first row of each (tp, pp) is that cell's best.
    """
    tp, pp = ds["tp"].values, ds["pp"].values
    tps, pps = np.unique(tp), np.unique(pp)
    first = pd.DataFrame({"tp": tp, "pp": pp}).drop_duplicates(keep="first").index.to_numpy()
    speed, mfu = np.full((tps.size, pps.size), np.nan), np.full((tps.size, pps.size), np.nan)
    cell = (np.searchsorted(tps, tp[first]), np.searchsorted(pps, pp[first]))
    speed[cell] = ds["tokens_per_s_per_chip"].values[first]
    mfu[cell] = ds["mfu"].values[first]
    return xr.Dataset({
        "heatmap_tokens_per_s_per_chip": (("tp", "pp"), speed, {
            "units": "token/s", "long_name": "best training tokens per second per chip over the "
            "other layout choices (NaN: no valid layout)"}),
        "heatmap_mfu": (("tp", "pp"), mfu, {"units": "1",
                                            "long_name": "MFU of the heat map cell's best layout"}),
    }, coords={"tp": ("tp", tps, {"units": "1", "long_name": "tensor-parallel degree"}),
               "pp": ("pp", pps, {"units": "1", "long_name": "pipeline-parallel degree"})})


def scaling(spec: TransformerSpec, systems: Sequence[str], scales: Sequence[int], *,
            precision: str, token_budget: float, seq_len: int, global_batch: int | None,
            heatmap: tuple[str, int], params: TrainingParams) -> xr.Dataset:
    """Best layout, outputs and breakdown per (system, n_chips), and the (tp, pp) heat map."""
    shape = (len(systems), len(scales))
    layout = {k: np.full(shape, np.nan) for k in LAYOUT}
    outs = {k: np.full(shape, np.nan) for k in BEST_OUTPUTS}
    parts = np.full((*shape, len(BREAKDOWN)), np.nan)
    n_valid, batch = np.zeros(shape, dtype=np.int64), np.zeros(shape, dtype=np.int64)
    reason = np.full(shape, "ok", dtype=object)
    heat = None
    for i, system in enumerate(systems):
        for j, n in enumerate(scales):
            full = (system, int(n)) == heatmap
            ds = search(spec, system, int(n), precision=precision, seq_len=seq_len,
                        global_batch=global_batch, top=_ALL if full else TIES, params=params)
            heat = _heatmap(ds) if full else heat
            n_valid[i, j], batch[i, j] = ds.attrs["n_valid"], ds.attrs["global_batch"]
            if not ds.attrs["n_valid"]:
                reason[i, j] = _no_layout_reason(ds)
                continue
            row = ds.isel(config=_pick(ds))
            for k in LAYOUT:
                layout[k][i, j] = float(row[k])
            for k in BEST_OUTPUTS:
                outs[k][i, j] = float(row[k])
            parts[i, j] = [float(row[t]) for t in BREAKDOWN]
    if heat is None:
        heat = _heatmap(search(spec, heatmap[0], heatmap[1], precision=precision,
                               seq_len=seq_len, global_batch=global_batch, top=_ALL,
                               params=params))
    dims = ("system", "n_chips")
    out = xr.Dataset(coords={
        "system": ("system", list(systems), {"units": "1", "long_name": "scale-up system"}),
        "n_chips": ("n_chips", np.asarray(scales, dtype=np.int64),
                    {"units": "1", "long_name": "chips in the training job"}),
        "component": ("component", [t.removeprefix("t_") for t in BREAKDOWN],
                      {"units": "1", "long_name": "part of the step time"}),
    })
    out["system_chip"] = ("system", [catalog.system(s).chip for s in systems],
                          {"units": "1", "long_name": "chip of the system"})
    out["scaleup_size"] = ("system", [catalog.system(s).n_chips for s in systems],
                           {"units": "1", "long_name": "chips in one scale-up domain"})
    for k in LAYOUT:
        out[f"best_{k}"] = (dims, layout[k],
                            attrs(k, f"{VARIABLES[k][1]} of the best layout"))
    out["best_recompute"].attrs["flag_meanings"] = " ".join(RECOMPUTE)
    for k in BEST_OUTPUTS:
        out[k] = (dims, outs[k], attrs(k, f"{VARIABLES[k][1]} (best layout)"))
    rate = out["tokens_per_s_per_chip"] * out["n_chips"]
    out["time_to_train"] = (token_budget / rate).assign_attrs(
        units="s", long_name="wall-clock time to train on the token budget")
    out["chip_hours"] = (out["n_chips"] * out["time_to_train"] / 3600.0).assign_attrs(
        units="chip*h", long_name="chip-hours to train on the token budget")
    out["breakdown"] = ((*dims, "component"), parts, {
        "units": "s", "long_name": "exposed time per step by component (best layout; sums to "
        "step_time)"})
    out["global_batch"] = (dims, batch, {"units": "1", "long_name": "sequences per step"})
    out["n_valid"] = (dims, n_valid, {"units": "1", "long_name": "valid layouts found"})
    out["reason"] = (dims, reason.astype(str), {
        "units": "1", "long_name": "ok, or why no valid layout exists"})
    return xr.merge([out, heat], combine_attrs="override")


def offload(spec: TransformerSpec, systems: Sequence[str], n_chips: int, *, precision: str,
            seq_len: int, global_batch: int | None, params: TrainingParams) -> xr.Dataset:
    """Every saved activation in host memory (``activation_offload`` = 1) against none, the
    best layout of each, per system at ``n_chips`` chips: tokens/s per chip, HBM per chip and
    the exposed copies (over the chip's host link, catalog ``host_bandwidth``)."""
    rows = {k: np.full(len(systems), np.nan) for k in
            ("offload_tokens_per_s_per_chip", "offload_mem_per_chip", "offload_exposed")}
    for i, system in enumerate(systems):
        ds = search(spec, system, n_chips, precision=precision, seq_len=seq_len,
                    global_batch=global_batch, top=TIES, params=params, activation_offload=1.0)
        if ds.attrs["n_valid"]:
            row = ds.isel(config=_pick(ds))
            rows["offload_tokens_per_s_per_chip"][i] = float(row["tokens_per_s_per_chip"])
            rows["offload_mem_per_chip"][i] = float(row["mem_per_chip"])
            rows["offload_exposed"][i] = float(row["t_offload"] / row["step_time"])
    out = xr.Dataset(coords={"system": ("system", list(systems), {
        "units": "1", "long_name": "scale-up system"})})
    out["host_bandwidth"] = ("system", [catalog.chip(catalog.system(s).chip).host_bandwidth
                                        for s in systems],
                             {"units": "B/s", "long_name": "host link per chip and direction"})
    out["offload_tokens_per_s_per_chip"] = ("system", rows["offload_tokens_per_s_per_chip"],
                                            attrs("tokens_per_s_per_chip", "tokens/s per chip, "
                                                  "every saved activation in host memory"))
    out["offload_mem_per_chip"] = ("system", rows["offload_mem_per_chip"], attrs(
        "mem_per_chip", "HBM per chip, every saved activation in host memory"))
    out["offload_exposed"] = ("system", rows["offload_exposed"], {
        "units": "1", "long_name": "share of the step the host copies are exposed"})
    out["offload_chips"] = ((), int(n_chips), {"units": "1",
                                               "long_name": "chips of the offload comparison"})
    return out


def roofline(spec: TransformerSpec, chips: Sequence[str], *, precision: str, seq_len: int,
             tp: int = 8, micro_batch: int = 1, params: TrainingParams) -> xr.Dataset:
    """Arithmetic intensity of the model's operators and each chip's roofline (Williams 2009).

    Operators of one layer's forward pass on one chip, at ``T = micro_batch * seq_len`` tokens
    per micro-batch and tensor parallelism ``tp`` with sequence parallelism (as the step model
    shards them): the weight GEMMs ``[T, k] @ [k, n]`` with ``n`` (column-parallel) or ``k``
    (row-parallel) split by ``tp``, operands at the GEMM precision; the logits GEMM; the causal
    attention core (FlashAttention: compulsory traffic Q, K, V, O) and the memory-bound ops on
    ``T / tp`` tokens (FLOPs per :attr:`trnlab.workloads.ElementwiseOp.flops`), activations at the calibration's
    ``activation_bytes``.

    Attainable = ``min(peak, intensity * hbm_bw)``. Modelled = the step model's own FLOP/s on
    the operator: FLOPs and time of :func:`trnlab.perf.train.operator_terms` for the GEMMs, the
    logits and the attention core, :func:`trnlab.perf.compute.memory_time` for the memory-bound
    ops (the step model times their sum the same way).
    """
    sh, cal = model_shape(spec), train_calibration(params)
    b, t, act = PRECISION_BYTES[precision], float(micro_batch * seq_len), cal.activation_bytes
    kinds = [k for k, n in (("dense", spec.dense_layers), ("moe", spec.moe_layers)) if n]
    kind_of, nbytes_of, elem_flops = {}, {}, {}
    for g in (*(g for kind in kinds for g in layer_gemms(spec, kind)),
              Gemm("logits", 1.0, spec.hidden, spec.vocab)):
        m = t * g.m_per_token
        n = g.n / tp if g.name in TP_COLUMN else g.n
        k = g.k / tp if g.name in TP_ROW else g.k
        kind_of.setdefault(g.name, "gemm")
        nbytes_of.setdefault(g.name, b * (m * k + k * n + m * n) * g.count)
    heads, kv = sh.heads / tp, max(sh.kv_heads / tp, 1.0)
    kind_of["attention_core"] = "attention"
    nbytes_of["attention_core"] = act * t * (heads + kv) * (sh.qk_dim + sh.v_dim)
    for kind in kinds:
        for op in memory_bound_ops(spec, kind):
            flops = op.flops * t / tp
            if op.name not in kind_of and flops > 0:
                kind_of[op.name], elem_flops[op.name] = "memory", flops
                nbytes_of[op.name] = act * (op.read + op.write) * t / tp
    names = list(kind_of)
    nbytes = np.array([nbytes_of[o] for o in names])
    hws = [hardware(c, system_of(c), precision, params, training=True) for c in chips]
    peak = np.array([h.peak_gemm for h in hws])
    bw = np.array([h.hbm_bw for h in hws])
    lay = Layout(tp=float(tp), pp=1.0, dp=1.0, cp=1.0, ep=1.0, vpp=1.0, zero=0.0,
                 recompute=0.0, micro_batch=float(micro_batch), global_batch=float(micro_batch),
                 seq_len=float(seq_len))
    modelled = np.zeros((len(chips), len(names)))
    flops = np.zeros(len(names))
    for i, h in enumerate(hws):
        terms = operator_terms(sh, h, lay, cal)
        for j, name in enumerate(names):
            f, sec = terms[name] if name in terms else (
                elem_flops[name], memory_time(nbytes[j], h.hbm_bw, cal.mem_eff))
            flops[j], modelled[i, j] = float(f), float(f) / float(sec)
    intensity = flops / nbytes
    ds = xr.Dataset(coords={
        "chip": ("chip", list(chips), {"units": "1", "long_name": "chip"}),
        "op": ("op", names, {"units": "1", "long_name": "operator of one layer (and logits)"}),
    })
    ds["peak"] = ("chip", peak, {"units": "FLOP/s",
                                 "long_name": f"dense peak at {precision}"})
    ds["hbm_bandwidth"] = ("chip", bw, {"units": "B/s", "long_name": "HBM bandwidth"})
    ds["ridge_point"] = ("chip", peak / bw, {
        "units": "FLOP/B", "long_name": "arithmetic intensity where the roofline turns flat"})
    ds["op_kind"] = ("op", [kind_of[o] for o in names], {
        "units": "1", "long_name": "gemm | attention | memory (memory-bound op)"})
    ds["op_flops"] = ("op", flops, {"units": "FLOP", "long_name":
                                    "forward FLOPs per layer per chip per micro-batch"})
    ds["op_bytes"] = ("op", nbytes, {"units": "B", "long_name":
                                     "compulsory HBM traffic per layer per chip per micro-batch"})
    ds["intensity"] = ("op", intensity, {"units": "FLOP/B", "long_name": "arithmetic intensity"})
    ds["attainable"] = (("chip", "op"), np.minimum(peak[:, None], intensity * bw[:, None]), {
        "units": "FLOP/s", "long_name": "roofline: min(peak, intensity x HBM bandwidth)"})
    ds["modelled"] = (("chip", "op"), modelled, {
        "units": "FLOP/s", "long_name": "FLOP/s the step model achieves on the operator"})
    return ds


def study(model_id: TransformerSpec | str = "llama3-405b", systems: Sequence[str] = SYSTEMS,
          scales: Sequence[int] = SCALES, precision: str = "bf16", token_budget: float = 15e12,
          seq_len: int = 8192, global_batch: int | None = None,
          heatmap_system: str = "trn3-ultraserver", heatmap_chips: int = 4096,
          roofline_chips: Sequence[str] = ROOFLINE_CHIPS, roofline_tp: int = 8,
          roofline_micro_batch: int = 1, params: TrainingParams | None = None) -> xr.Dataset:
    """Train ``model_id`` on ``token_budget`` tokens on each system at each scale.

    Parameters
    ----------
    model_id : str or TransformerSpec
        A preset id (``trnlab.catalog.model_ids()``) or a spec.
    systems : sequence of str
        Scale-up system ids (``trnlab catalog``); each builds the cluster of its own chip.
    scales : sequence of int
        Chips in the job [1]; any count (not only multiples of the scale-up size).
    precision : str
        GEMM precision (bf16, fp8, mxfp8, ...).
    token_budget : float
        Training tokens [1] (Llama 3 405B: about 15e12).
    seq_len, global_batch : int
        Sequence length [tokens] and sequences per step (None: about 16M tokens per step).
    heatmap_system, heatmap_chips : str, int
        Where the (tp, pp) heat map is taken [1].
    roofline_chips : sequence of str
        Chips of the roofline; ``roofline_tp`` and ``roofline_micro_batch`` set the operator
        shapes (:func:`roofline`).

    Returns
    -------
    xarray.Dataset
        Dims ``system``, ``n_chips``, ``component`` (best layout ``best_*``, outputs,
        ``time_to_train`` [s], ``chip_hours`` [h], ``breakdown`` [s], ``reason``); ``tp``, ``pp``
        (``heatmap_*``); ``chip``, ``op`` (roofline: ``peak``, ``ridge_point``, ``intensity``,
        ``attainable``, ``modelled``); per system at the smallest scale, every saved activation
        in host memory (``offload_*``, ``host_bandwidth``, :func:`offload`). NaN where no valid
        layout exists (``reason`` says why).
    """
    spec = _check(model_id, systems, scales, precision, token_budget, heatmap_system,
                  heatmap_chips, roofline_chips)
    checks.positive_int("training study", "seq_len", seq_len, checks.MAX_TOKENS)
    if global_batch is not None:
        checks.positive_int("training study", "global_batch", global_batch, checks.MAX_BATCH)
    checks.positive_int("training study", "roofline_tp", roofline_tp, checks.MAX_CHIPS)
    checks.positive_int("training study", "roofline_micro_batch", roofline_micro_batch,
                        checks.MAX_BATCH)
    params = params or load_training()
    ds = xr.merge([
        scaling(spec, systems, scales, precision=precision, token_budget=token_budget,
                seq_len=seq_len, global_batch=global_batch,
                heatmap=(heatmap_system, int(heatmap_chips)), params=params),
        roofline(spec, roofline_chips, precision=precision, seq_len=seq_len, tp=roofline_tp,
                 micro_batch=roofline_micro_batch, params=params),
        offload(spec, systems, int(scales[0]), precision=precision, seq_len=seq_len,
                global_batch=global_batch, params=params),
    ], combine_attrs="override")
    ds.attrs.update({
        "title": f"Training {spec.name} at scale", "model": spec.name, "precision": precision,
        "seq_len": seq_len, "token_budget": float(token_budget),
        "heatmap_system": heatmap_system, "heatmap_chips": int(heatmap_chips),
        "roofline_tp": roofline_tp, "roofline_micro_batch": roofline_micro_batch,
    })
    ds = ds.assign_coords(vendor=("system", [catalog.chip(catalog.system(s).chip).vendor
                                             for s in systems],
                                  {"units": "1", "long_name": "chip vendor (catalog)"}))
    ds.attrs["headline"] = headline(ds)
    return ds


# ------------------------------------------------------------------------------ the reading
def _range(values: np.ndarray, fmt: str) -> str:
    """``a`` or ``a-b`` of the finite values (``n/a`` if none)."""
    v = values[np.isfinite(values)]
    if not v.size:
        return "n/a"
    lo, hi = f"{v.min():{fmt}}", f"{v.max():{fmt}}"
    return lo if lo == hi else f"{lo}-{hi}"


def _families(ds: xr.Dataset) -> tuple[list[str], list[str]]:
    """(Trainium systems, the other systems) of a study Dataset."""
    systems = [str(s) for s in ds["system"].values]
    trn = [s for s, v in zip(systems, ds["vendor"].values, strict=True) if v == "aws"]
    return trn, [s for s in systems if s not in trn]


def headline(ds: xr.Dataset) -> str:
    """One sentence: chip-hours to train on the token budget per system at the largest scale."""
    n = int(ds["n_chips"].values[-1])
    mch = ds["chip_hours"].sel(n_chips=n) / 1e6
    parts = [f"{s} {float(mch.sel(system=s)):.3g} M" for s in ds["system"].values
             if np.isfinite(mch.sel(system=s))]
    return (f"{ds.attrs['model']}, {ds.attrs['token_budget'] / 1e12:g}T tokens at "
            f"{ds.attrs['precision']} on {n:,} chips: " + ", ".join(parts) + " chip-hours")


def reading(ds: xr.Dataset) -> str:
    """The reading of a :func:`study` Dataset as Markdown bullets, every number from ``ds``."""
    trn, other = _families(ds)
    tps, mfu = ds["tokens_per_s_per_chip"], ds["mfu"]
    lines = []
    if len(trn) >= 2:
        a, b = trn[-2], trn[-1]
        ratio = (tps.sel(system=b) / tps.sel(system=a)).values
        lines.append(f"- **{b} vs {a}.** {b} trains {_range(ratio, '.2f')}x the tokens/s per "
                     f"chip of {a} at {ds.attrs['precision']} over the scales, "
                     f"{_range(ds['chip_hours'].sel(system=b).values / 1e6, '.3g')} against "
                     f"{_range(ds['chip_hours'].sel(system=a).values / 1e6, '.3g')} million "
                     "chip-hours.")
    if "op" in ds.dims:
        t_op = ds["op_flops"] / ds["modelled"]
        share = (t_op.where(ds["op_kind"] == "memory").sum("op") / t_op.sum("op")).values
        is_gemm = ds["op_kind"] == "gemm"
        gemm = (ds["modelled"] / ds["peak"]).where(is_gemm)
        above = bool((ds["intensity"] > ds["ridge_point"]).where(is_gemm, True).all())
        lines.append(f"- **Roofline.** The memory-bound ops take {_range(100 * share, '.1f')}% of "
                     "a layer's forward time on the roofline chips; the weight GEMMs run at "
                     f"{_range(100 * gemm.values, '.0f')}% of the dense peak and sit "
                     + ("above every chip's ridge point, so dense training is a question of "
                        "compute." if above else "below some chips' ridge points."))
    if "offload_tokens_per_s_per_chip" in ds:
        n = int(ds["offload_chips"])
        gain = ds["offload_tokens_per_s_per_chip"] / ds["tokens_per_s_per_chip"].sel(n_chips=n)
        parts = [f"{s} {float(gain.sel(system=s)):.2f}x ("
                 f"{float(ds['host_bandwidth'].sel(system=s)) / 1e9:.0f} GB/s, copies exposed "
                 f"{float(ds['offload_exposed'].sel(system=s)):.0%} of the step)"
                 for s in ds["system"].values if np.isfinite(gain.sel(system=s))]
        lines.append(f"- **Activations in host memory.** At {n:,} chips, keeping every saved "
                     "activation in host memory (the best layout then) trains "
                     + ", ".join(parts) + " the tokens/s per chip of the best layout without; "
                     "HBM freed for larger micro-batches against copies over the host link.")
    ref = trn[-1] if trn else str(ds["system"].values[0])
    for s in other:
        ratio = (tps.sel(system=s) / tps.sel(system=ref)).values
        lines.append(f"- **{s}** does {_range(ratio, '.2f')}x the tokens/s per chip of {ref}: "
                     f"{_range(ds['chip_hours'].sel(system=s).values / 1e6, '.3g')} million "
                     "chip-hours.")
    first, last = ds["n_chips"].values[0], ds["n_chips"].values[-1]
    for s in ds["system"].values:
        change = float(mfu.sel(system=s, n_chips=last) / mfu.sel(system=s, n_chips=first) - 1.0)
        parts = (ds["breakdown"] / ds["step_time"]).sel(system=s, n_chips=last)
        top = parts.drop_sel(component="compute").idxmax("component").item() \
            if np.isfinite(parts).all() else "n/a"
        lines.append(f"- **{s} from {int(first):,} to {int(last):,} chips:** MFU "
                     f"{float(mfu.sel(system=s, n_chips=first)):.1%} to "
                     f"{float(mfu.sel(system=s, n_chips=last)):.1%} ({change:+.0%} relative); at "
                     f"{int(last):,} chips the largest part besides compute is `{top}` "
                     f"({float(parts.sel(component=top)) if top != 'n/a' else float('nan'):.1%} "
                     "of the step).")
    lines.append("- **How far to trust it.** Trainium's large-GEMM efficiency "
                 "(`gemm_eff.aws`, data/perf/training.toml) is fitted on Trainium1 measurements "
                 "only and applied unchanged to later Trainium chips; no public Trn2 or Trn3 "
                 "training throughput exists to check it.")
    return "\n".join(lines)
