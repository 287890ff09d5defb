"""Training at scale: the tiered scale-out network in the layout search, goodput under
failures (analytical and Monte-Carlo), facility power, from one domain to a million chips.

The step model (:func:`trnlab.perf.train.train_step`) knows two tiers: the scale-up domain and a
flat per-chip NIC (``Hardware.out_bw``, ``out_latency``). Here every layout gets the NIC
bandwidth and latency of one flat ring that costs what the hierarchical all-reduce of its
data-parallel group costs on the fabric's tiers (:func:`trnlab.perf.network.effective_link`),
passed through :func:`dataclasses.replace` on the Hardware record: the search sees the
oversubscription and the latency of every tier its data-parallel group crosses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from trnlab import backend, catalog, checks
from trnlab.catalog.params import load_economics, load_training
from trnlab.catalog.scale import ScaleData, ScaleOut, load_scale
from trnlab.engine.hardware import hardware, precision_bytes
from trnlab.engine.layouts import REASONS, default_global_batch, enumerate_layouts, reason_codes
from trnlab.engine.sampling import bands, draw
from trnlab.engine.training import divisors_or_one, evaluate
from trnlab.engine.variables import BREAKDOWN, TRANSFER
from trnlab.errors import CatalogError
from trnlab.perf import comm, network, reliability
from trnlab.perf.power import chip_power
from trnlab.perf.train import OUTPUTS, RECOMPUTE, Hardware
from trnlab.workloads import TransformerSpec

#: the layout options the scale search tries (a subset of the training study's, so that a
#: curve of a dozen chip counts stays within seconds)
SCALE_OPTIONS = {"micro_batches": (1, 2), "zeros": (1, 3), "recomputes": (0, 1), "vpps": (1, 4)}
RECOVERY = ("checkpoint", "in-memory")
#: native training precision per chip vendor (the widest-supported narrow GEMM format)
NATIVE = {"aws": "mxfp8", "nvidia": "fp8", "google": "fp8", "amd": "fp8"}


def native_precision(system_id: str) -> str:
    """The chip's native training precision: MXFP8 on Trainium3, FP8 elsewhere, BF16 when the
    chip has no 8-bit peak."""
    chip = catalog.chip(catalog.system(system_id).chip)
    want = NATIVE.get(chip.vendor, "bf16")
    return want if not math.isnan(chip.peak(want)) else "bf16"


@dataclass(frozen=True)
class Tiers:
    """A fabric's tiers as the core's inputs (floats or sample arrays): spans in domains and in
    chips, per-chip achieved bandwidth [B/s], latency per step [s], oversubscription [1]."""

    spans: tuple[Any, ...]
    spans_chips: tuple[Any, ...]
    bws: tuple[Any, ...]
    lats: tuple[Any, ...]
    oversub: tuple[Any, ...]


def _value(field: catalog.Field, n: int | None, rng: np.random.Generator | None) -> Any:
    return field.si if n is None else draw(field, n, rng)


def tiers(system_id: str, n: int | None = None, rng: np.random.Generator | None = None,
          data: ScaleData | None = None) -> Tiers:
    """The tiers of ``system_id``'s fabric: central values, or ``n`` draws of every ranged one.

    Bandwidth at tier k = NIC bandwidth x collective efficiency / prod_{j<=k} oversubscription;
    latency at tier k = the NIC's latency + the tier's added latency."""
    data = data or load_scale()
    fab = data.fabric_of(system_id)
    sysrec = catalog.system(system_id)
    net = catalog.network(fab.network)
    coll = load_training().fields["collective_eff"].si
    nic_lat = _value(net.fields["latency"], n, rng) if hasattr(net, "fields") else net.latency
    spans, chips, bws, lats, overs, taper = [], [], [], [], [], 1.0
    for t in fab.tiers:
        o = _value(t.fields["oversubscription"], n, rng)
        taper = taper * o
        span = t.fields["span"].si
        chips.append(span)
        spans.append(max(span / sysrec.n_chips, 1.0))
        bws.append(net.bandwidth * coll / taper)
        lats.append(nic_lat + _value(t.fields["latency"], n, rng))
        overs.append(o)
    return Tiers(tuple(spans), tuple(chips), tuple(bws), tuple(lats), tuple(overs))


def dp_link(cfg: dict[str, Any], domain: float, t: Tiers) -> tuple[Any, Any]:
    """Effective NIC bandwidth [B/s] and latency [s] of each layout's data-parallel group
    (``dp x cp`` chips, ``tp`` apart): its ``n_out`` domains on the tiers."""
    group = cfg["dp"] * cfg["cp"]
    n_in = comm.members_in_domain(group, cfg["tp"], domain)
    return network.effective_link(group / n_in, t.spans, t.bws, t.lats)


def _check(where: str, model: Any, system: str, n_chips: Any, precision: str | None
           ) -> tuple[TransformerSpec, str, int, str]:
    spec = catalog.spec(model, where)
    system = checks.ident(where, "system", system, CatalogError)
    catalog.system(system)
    load_scale().fabric_of(system)
    n_chips = checks.positive_int(where, "n_chips", n_chips, checks.MAX_CHIPS)
    precision = native_precision(system) if precision is None else precision
    precision = checks.choice(where, "precision", precision, precision_bytes())
    return spec, system, n_chips, precision


def search(model: Any, system: str, n_chips: int, *, precision: str | None = None,
           seq_len: int = 8192, batch_tokens: float | None = None,
           data: ScaleData | None = None) -> dict[str, Any]:
    """The best layout of ``model`` on ``n_chips`` chips of ``system`` on its tiered fabric.

    ``batch_tokens``: tokens per step (default: the critical batch of
    ``data/scale/reliability.toml``), rounded by
    :func:`~trnlab.engine.layouts.default_global_batch`. Returns the best layout, its outputs
    and breakdown (plain floats), the Hardware it ran on and counts of layouts. ``data``: the
    scale data (default :func:`~trnlab.catalog.scale.load_scale`).
    """
    where = "scale"
    spec, system, n_chips, precision = _check(where, model, system, n_chips, precision)
    seq_len = checks.positive_int(where, "seq_len", seq_len, checks.MAX_TOKENS)
    cap = load_scale().field("batch", "critical_batch_tokens").si
    tokens = cap if batch_tokens is None else min(
        checks.finite(where, "batch_tokens", batch_tokens), cap)
    if not tokens >= seq_len:
        raise checks.fail(where, "batch_tokens", batch_tokens, f">= seq_len ({seq_len})")
    global_batch = default_global_batch(n_chips, seq_len, tokens)
    sysrec = catalog.system(system)
    params = load_training()
    hw = hardware(sysrec.chip, system, precision, params, training=True)
    opts = SCALE_OPTIONS
    cfg = enumerate_layouts(spec, n_chips, micro_batches=opts["micro_batches"],
                            zeros=opts["zeros"], recomputes=opts["recomputes"],
                            vpps=opts["vpps"], ep_values=divisors_or_one(spec))
    reason = reason_codes(spec, cfg, global_batch, seq_len, sysrec.n_chips)
    ok = np.flatnonzero(reason == 0)
    t = tiers(system, data=data)
    sub = {k: v[ok] for k, v in cfg.items()}
    bw, lat = dp_link({k: v.astype(np.float64) for k, v in sub.items()}, float(sysrec.n_chips),
                      t)
    res = _evaluate(spec, hw, sub, bw, lat, global_batch, seq_len, params)
    fits = res["fits"].astype(bool)
    if not fits.any():
        raise checks.fail(where, "n_chips", n_chips, f"a chip count on which {spec.name} fits "
                          f"({REASONS[7]} for every layout)")
    speed = np.where(fits, res["tokens_per_s_per_chip"], -np.inf)
    i = int(np.argmax(speed))
    best = {k: int(sub[k][i]) for k in sub}
    best["recompute"] = RECOMPUTE[best["recompute"]]
    out = {k: float(res[k][i]) for k in OUTPUTS if k != "fits"}
    return {"layout": best, **out, "global_batch": global_batch, "seq_len": seq_len,
            "batch_tokens": global_batch * seq_len, "precision": precision,
            "hardware": replace(hw, out_bw=float(bw[i]), out_latency=float(lat[i])),
            "cfg": {k: int(sub[k][i]) for k in sub}, "n_evaluated": int(reason.size),
            "n_valid": int(fits.sum()), "spec": spec,
            "dominant": max(BREAKDOWN[1:], key=lambda k: out[k])}


def _evaluate(spec: TransformerSpec, hw: Hardware, cfg: dict[str, np.ndarray], bw: Any,
              lat: Any, global_batch: float, seq_len: float, params: Any,
              chunk: int = 1 << 16) -> dict[str, np.ndarray]:
    """:func:`trnlab.engine.training.evaluate` with a NIC bandwidth and latency per
    configuration (chunked together with the configurations)."""
    n = next(iter(cfg.values())).size
    parts: dict[str, list[np.ndarray]] = {}
    bw, lat = np.broadcast_to(bw, (n,)), np.broadcast_to(lat, (n,))
    for lo in range(0, n, chunk):
        hw_c = replace(hw, out_bw=backend.asarray(np.ascontiguousarray(bw[lo:lo + chunk])),
                       out_latency=backend.asarray(np.ascontiguousarray(lat[lo:lo + chunk])))
        part = evaluate(spec, hw_c, {k: v[lo:lo + chunk] for k, v in cfg.items()},
                        global_batch, seq_len, params, chunk=chunk)
        for k, v in part.items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def network_counts(system_id: str, n_chips: Any, data: ScaleData | None = None
                   ) -> dict[str, Any]:
    """Switches, links and transceivers of ``n_chips`` chips on the system's fabric [1]
    (central values) and the per-tier bandwidth per domain (bisection) [B/s]."""
    data = data or load_scale()
    fab = data.fabric_of(system_id)
    f = fab.fields
    net = catalog.network(fab.network)
    t = tiers(system_id, data=data)
    ports = net.bandwidth / f["port_speed"].si
    c = network.switch_counts(np.asarray(n_chips, dtype=np.float64), ports,
                              f["switch_radix"].si, t.spans_chips, t.oversub)
    optics = c["nic_links"] * f["optics_per_nic_link"].si \
        + c["switch_links"] * f["optics_per_switch_link"].si
    return {**c, "optics": optics, "fabric": fab.id,
            "bisection_per_domain": [catalog.system(system_id).n_chips * b for b in t.bws]}


def _fabric_draws(fab: ScaleOut, n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {k: draw(fab.fields[k], n, rng) for k in ("switch_power", "optic_power",
                                                        "optics_per_nic_link")}


def simulate_runs(work: Any, tau: Any, delta: Any, restart: Any, mtbf: Any, planned_rate: Any,
                  rng: Any) -> Any:
    """Wall time [s] of whole training runs of ``work`` useful seconds (arrays broadcast:
    trials x configurations), failures a Poisson process of mean ``mtbf`` [s].

    Segments of ``tau + delta``; compute failures ``K ~ NegBin(segments, e^-(tau+delta)/M)``
    and restart failures ``J ~ NegBin(K, e^-R/M)`` drawn as Gamma-Poisson mixtures, their lost
    time from :func:`trnlab.perf.reliability.run_wall_time`. ``rng``: a NumPy or CuPy
    Generator matching the arrays' namespace (:func:`generator`)."""
    xp = backend.namespace()
    work, tau, delta, restart, mtbf = (backend.asarray(np.asarray(v, dtype=np.float64))
                                       if isinstance(v, float | int | np.ndarray) else v
                                       for v in (work, tau, delta, restart, mtbf))
    shape = np.broadcast_shapes(*(tuple(v.shape) for v in (work, tau, delta, restart, mtbf)))
    segments = xp.broadcast_to(work / tau, shape)
    odds_t = xp.broadcast_to(xp.expm1((tau + delta) / mtbf), shape)  # (1 - p)/p
    odds_r = xp.broadcast_to(xp.expm1(restart / mtbf), shape)
    k = _negbin(rng, segments, odds_t)
    j = _negbin(rng, k, odds_r)
    z1, z2 = rng.standard_normal(shape), rng.standard_normal(shape)
    return reliability.run_wall_time(segments, tau, delta, restart, mtbf, k, j, z1, z2,
                                     planned_rate)


def _negbin(rng: Any, count: Any, odds: Any) -> Any:
    """Failures before ``count`` successes with success probability ``1/(1+odds)``: Poisson of
    a Gamma(count, odds) (0 where count is 0)."""
    xp = backend.namespace()
    lam = rng.gamma(xp.maximum(count, 1e-300), odds)
    return xp.where(count > 0, rng.poisson(lam).astype(lam.dtype), 0.0)


def generator(seed: int) -> Any:
    """A random Generator of the active backend (NumPy, or CuPy on a GPU)."""
    if backend.get_backend() == "cupy":
        import cupy

        return cupy.random.default_rng(seed)
    return np.random.default_rng(seed)


def _draws(table: str, names: tuple[str, ...], n: int | None, rng: Any,
           data: ScaleData) -> dict[str, Any]:
    return {k: _value(data.field(table, k), n, rng) for k in names}


def job_failure_rate(system_id: str, n_chips: Any, rates: dict[str, Any]) -> Any:
    """Unexpected job interruptions per second [1/s] of ``n_chips`` chips of ``system_id``:
    accelerator, network and software per chip, host per node (``chips_per_node``), times
    ``unmeasured_factor`` for a chip whose rates were not measured."""
    sysrec = catalog.system(system_id)
    factor = 1.0 if sysrec.chip in load_scale().measured_chips else rates["unmeasured_factor"]
    per_chip = rates["accelerator"] + rates["network"] + rates["software"]
    return reliability.failure_rate(n_chips, sysrec.chips_per_node, factor * per_chip,
                                    factor * rates["host"])


def interruptions(system_id: str, n_chips: int, days: float, n_trials: int = 10_000,
                  seed: int = 0) -> dict[str, float]:
    """Unexpected interruptions of a job of ``n_chips`` chips over ``days``: the expectation at
    the data's rates and p5/p50/p95 of Poisson counts at rates drawn from their ranges [1]."""
    data = load_scale()
    names = RELIABILITY_RATES
    central = job_failure_rate(system_id, n_chips, _draws("failure", names, None, None, data))
    rng = np.random.default_rng(seed)
    rate = job_failure_rate(system_id, n_chips, _draws("failure", names, n_trials, rng, data))
    counts = rng.poisson(rate * days * reliability.DAY)
    p5, p50, p95 = bands(counts.astype(np.float64))
    return {"expected": float(central * days * reliability.DAY), "p5": float(p5),
            "p50": float(p50), "p95": float(p95),
            "job_mtbf_h": float(1.0 / central / 3600.0)}


RELIABILITY_RATES = ("accelerator", "host", "network", "software", "unmeasured_factor")


def evaluate_run(model: Any, system: str, n_chips: int, *, precision: str | None = None,
                 train_tokens: float = 15e12, seq_len: int = 8192, n_trials: int = 1000,
                 seed: int = 0, recovery: str = "checkpoint", spares: bool = True,
                 batch_tokens: float | None = None, best: dict[str, Any] | None = None
                 ) -> dict[str, Any]:
    """Throughput, goodput, days to train and facility power of one training job, central
    values and p5/p50/p95 bands over ``n_trials`` Monte-Carlo runs.

    Each trial draws every ranged input (network tiers, failure rates, restart and checkpoint
    times, chip power, overheads, PUE) and simulates the whole run
    (:func:`simulate_runs`). ``recovery``: ``checkpoint`` (checkpoint/restart at the Daly
    interval) or ``in-memory`` (checkpointless: at most one step lost, the fast restart).
    Without ``spares`` each restart waits ``requeue_time`` for hardware. Times in the result
    are in the units their keys name (``_h``, ``_min``, ``_s``, days, MW, GWh)."""
    where = "scale"
    spec, system, n_chips, precision = _check(where, model, system, n_chips, precision)
    train_tokens = checks.finite(where, "train_tokens", train_tokens)
    if not train_tokens > 0:
        raise checks.fail(where, "train_tokens", train_tokens, "> 0 tokens")
    n_trials = checks.positive_int(where, "n_trials", n_trials, 1_000_000)
    recovery = checks.choice(where, "recovery", recovery, RECOVERY)
    best = best or search(spec, system, n_chips, precision=precision, seq_len=seq_len,
                          batch_tokens=batch_tokens)
    data, sysrec = load_scale(), catalog.system(system)
    chip = catalog.chip(sysrec.chip)
    rng = np.random.default_rng(seed)
    n = n_trials

    # ---- throughput band: the best layout on the tiers drawn n times
    t = tiers(system, n, rng, data)
    cfg = {k: np.full(n, float(v)) for k, v in best["cfg"].items()}
    bw, lat = dp_link(cfg, float(sysrec.n_chips), t)
    res = _evaluate(spec, best["hardware"], {k: v.astype(np.int64) for k, v in cfg.items()},
                    bw, lat, best["global_batch"], best["seq_len"], load_training())
    tps = res["tokens_per_s_per_chip"]

    # ---- reliability inputs, central (None) and drawn (n)
    def inputs(m: int | None) -> dict[str, Any]:
        r = _draws("failure", (*RELIABILITY_RATES, "planned_per_day"), m, rng, data)
        r.update(_draws("checkpoint", ("storage_bandwidth_per_chip", "blocking_floor",
                                       "bytes_per_param"), m, rng, data))
        r.update(_draws("restart", ("restart_time", "fast_restart_time", "requeue_time",
                                    "spare_fraction"), m, rng, data))
        return r

    def plan(r: dict[str, Any], step: Any) -> dict[str, Any]:
        mtbf = 1.0 / job_failure_rate(system, n_chips, r)
        nbytes = spec.total_params * r["bytes_per_param"]
        write = reliability.checkpoint_time(nbytes, n_chips, r["storage_bandwidth_per_chip"],
                                            r["blocking_floor"])
        wait = 0.0 if spares else r["requeue_time"]
        if recovery == "checkpoint":
            delta, restart = write, r["restart_time"] + write + wait
            tau = reliability.daly_interval(delta, mtbf)
        else:
            delta, restart, tau = 0.0 * write, r["fast_restart_time"] + wait, step
        return {"mtbf": mtbf, "delta": delta, "restart": restart, "tau": tau,
                "planned": r["planned_per_day"] / reliability.DAY, "write": write}

    central_in, drawn_in = inputs(None), inputs(n)
    c = plan(central_in, best["step_time"])
    d = plan(drawn_in, best["step_time"] * best["tokens_per_s_per_chip"] / tps)
    work_c = train_tokens / (best["tokens_per_s_per_chip"] * n_chips)
    good_c = float(reliability.goodput(c["tau"], c["delta"], c["restart"], c["mtbf"],
                                       c["planned"]))
    work = train_tokens / (tps * n_chips)
    wall = backend.to_numpy(simulate_runs(work, d["tau"], d["delta"], d["restart"], d["mtbf"],
                                          d["planned"], generator(seed + 1)))
    wall = np.asarray(wall)

    # ---- power: chips at their activity, hosts (system overhead), idle spares, fabric, PUE
    econ = load_economics().power
    fac = catalog.facility("aws" if chip.vendor == "aws" else "default")
    tdp = draw(chip.fields["tdp"], n, rng)
    idle = draw(econ["idle_fraction"], n, rng)
    weight = draw(econ["memory_weight"], n, rng)
    overhead = draw(fac.fields["system_overhead"], n, rng)
    pue = draw(fac.fields["pue"], n, rng)
    step = res["step_time"]
    comm_t = sum(res[k] for k in TRANSFER)
    p_chip = chip_power(tdp, idle, res["t_compute"] / step, comm_t / step, weight)
    counts = network_counts(system, n_chips, data)
    fab = data.fabric_of(system)
    fd = _fabric_draws(fab, n, rng)
    optics = counts["nic_links"] * fd["optics_per_nic_link"] \
        + counts["switch_links"] * fab.fields["optics_per_switch_link"].si
    p_net = network.fabric_power(counts["switches"], optics, fd["switch_power"],
                                 fd["optic_power"])
    spare_chips = np.ceil(n_chips * drawn_in["spare_fraction"]) if spares else 0.0
    it = n_chips * p_chip * (1.0 + overhead) + spare_chips * idle * tdp * (1.0 + overhead)
    facility = pue * (it + p_net)
    swing = pue * n_chips * (p_chip - idle * tdp)
    energy = facility * wall

    def band(x: np.ndarray, scale: float = 1.0) -> dict[str, float]:
        p5, p50, p95 = bands(np.asarray(x, dtype=np.float64) / scale)
        return {"p5": float(p5), "p50": float(p50), "p95": float(p95)}

    out: dict[str, Any] = {
        "model": spec.name, "system": system, "chip": chip.id, "n_chips": n_chips,
        "precision": precision, "recovery": recovery, "spares": spares,
        "train_tokens": train_tokens, "n_trials": n, "seed": seed,
        "layout": best["layout"], "global_batch": best["global_batch"],
        "batch_tokens": best["batch_tokens"], "dominant_term": best["dominant"],
        "breakdown_s": {k: best[k] for k in BREAKDOWN}, "step_time_s": best["step_time"],
        "tokens_per_s_per_chip": best["tokens_per_s_per_chip"], "mfu": best["mfu"],
        "tokens_per_s_per_chip_band": band(tps), "mfu_band": band(res["mfu"]),
        "job_mtbf_h": float(c["mtbf"]) / 3600.0, "job_mtbf_h_band": band(d["mtbf"], 3600.0),
        "checkpoint_write_s": float(c["write"]),
        "checkpoint_interval_min": float(c["tau"]) / 60.0,
        "checkpoint_interval_min_band": band(d["tau"], 60.0),
        "restart_min": float(c["restart"]) / 60.0,
        "goodput_analytic": good_c, "goodput_band": band(work / wall),
        "days_to_train_analytic": work_c / good_c / reliability.DAY,
        "days_to_train_band": band(wall, reliability.DAY),
        "failures_per_run": float(work_c / good_c / c["mtbf"]),
        "facility_power_mw": float(np.median(facility)) / 1e6,
        "facility_power_mw_band": band(facility, 1e6),
        "network_power_mw_band": band(p_net, 1e6),
        "power_swing_mw_band": band(swing, 1e6),
        "energy_gwh_band": band(energy, 3.6e12),
        "switches": float(counts["switches"]), "optics": float(np.median(optics)),
        "network_capex_musd": float(counts["switches"] * fab.fields["switch_cost"].si
                                    + counts["optics"] * fab.fields["optic_cost"].si) / 1e6,
        "fabric": counts["fabric"],
    }
    out["goodput"] = out["goodput_band"]["p50"]
    out["days_to_train"] = out["days_to_train_band"]["p50"]
    return out
