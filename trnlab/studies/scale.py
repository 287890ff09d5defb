"""From one domain to a million chips: scaling curves, goodput under failures, days to train and
facility power (one question: what does a training job of N chips buy, and at what power?).

For each system and chip count the engine (:mod:`trnlab.engine.scale`) searches the best
layout on the system's tiered scale-out fabric at the chip's native precision, twice: strong
scaling (the critical batch of ``data/scale/reliability.toml`` at every size) and weak scaling
(``weak_tokens_per_chip`` per chip, capped by the critical batch: past the cap weak scaling
becomes strong scaling). The strong-scaling job is then run ``n_trials`` times under failures
for each recovery mode (checkpoint/restart at the Daly interval; checkpointless in-memory
recovery) to give goodput, days to train, and facility power with p5/p50/p95 bands.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from trnlab import catalog, checks
from trnlab.engine import scale
from trnlab.engine.sampling import PERCENTILES
from trnlab.engine.variables import BREAKDOWN, attrs
from trnlab.errors import ParameterError
from trnlab.perf import reliability

DEFAULT_SYSTEMS = ("trn3-ultraserver", "gb200-nvl72", "gb300-nvl72", "tpu-v7-pod")
#: 144 chips (one Trn3 UltraServer) to 995,328 (6,912 UltraServers = 108 TPU7x pods, ~1M);
#: every count a multiple of 144, 72 and (from 9,216 on) of a TPU7x pod
DEFAULT_CHIPS = (144, 1152, 9216, 18432, 73728, 147456, 294912, 589824, 995328)
TRN3 = "trn3-ultraserver"


def study(model: str = "llama3-405b", *, systems: Sequence[str] = DEFAULT_SYSTEMS,
          chips: Sequence[int] = DEFAULT_CHIPS, train_tokens: float = 15e12,
          weak_tokens_per_chip: float = 1024.0, seq_len: int = 8192, n_trials: int = 1000,
          seed: int = 0, intervals_min: Sequence[float] = (0.25, 0.5, 1, 2, 5, 10, 20, 60)
          ) -> xr.Dataset:
    """The scale study (see the module docstring).

    ``weak_tokens_per_chip`` [token]: per-chip batch of the weak-scaling curve (Llama 3's 16M
    tokens on 16,384 GPUs is 1,024). ``intervals_min`` [min]: checkpoint intervals of the
    goodput heat map (Trn3, checkpoint/restart, central inputs).
    """
    where = "scale study"
    spec = catalog.spec(model, where)
    systems = [checks.ident(where, "systems", s) for s in systems]
    if not systems:
        raise checks.fail(where, "systems", systems, "at least one system id")
    chips = sorted({checks.positive_int(where, "chips", n, checks.MAX_CHIPS) for n in chips})
    train_tokens = checks.finite(where, "train_tokens", train_tokens)
    if not train_tokens > 0:
        raise checks.fail(where, "train_tokens", train_tokens, "> 0 tokens")
    weak = checks.finite(where, "weak_tokens_per_chip", weak_tokens_per_chip)
    if not weak >= 1:
        raise checks.fail(where, "weak_tokens_per_chip", weak_tokens_per_chip, ">= 1 token")
    intervals = [checks.finite(where, "intervals_min", v) for v in intervals_min]
    if not intervals or min(intervals) <= 0:
        raise checks.fail(where, "intervals_min", list(intervals_min), "positive minutes")
    n_s, n_c, n_r = len(systems), len(chips), len(scale.RECOVERY)
    nan = lambda *shape: np.full(shape, np.nan)
    mfu, tps, btok = nan(n_s, n_c, 2), nan(n_s, n_c, 2), nan(n_s, n_c, 2)
    frac = nan(n_s, n_c, len(BREAKDOWN))
    dominant = np.full((n_s, n_c), "", dtype=object)
    mtbf, interval = nan(n_s, n_c), nan(n_s, n_c, n_r)
    good, days = nan(n_s, n_c, n_r, 3), nan(n_s, n_c, n_r, 3)
    power, swing, netp, energy = nan(n_s, n_c, 3), nan(n_s, n_c, 3), nan(n_s, n_c, 3), \
        nan(n_s, n_c, n_r, 3)
    switches = nan(n_s, n_c)
    q = ("p5", "p50", "p95")
    for i, system in enumerate(systems):
        for j, n in enumerate(chips):
            try:
                strong = scale.search(spec, system, n, seq_len=seq_len)
                weak_run = scale.search(spec, system, n, seq_len=seq_len,
                                        batch_tokens=max(weak * n, seq_len))
            except ParameterError:
                continue  # the model does not fit on n chips: left NaN
            for k, r in enumerate((strong, weak_run)):
                mfu[i, j, k], tps[i, j, k] = r["mfu"], r["tokens_per_s_per_chip"]
                btok[i, j, k] = r["batch_tokens"]
            frac[i, j] = [strong[t] / strong["step_time"] for t in BREAKDOWN]
            dominant[i, j] = strong["dominant"]
            for m, recovery in enumerate(scale.RECOVERY):
                run = scale.evaluate_run(spec, system, n, train_tokens=train_tokens,
                                         n_trials=n_trials, seed=seed, recovery=recovery,
                                         best=strong)
                mtbf[i, j] = run["job_mtbf_h"] * 3600.0
                interval[i, j, m] = run["checkpoint_interval_min"] * 60.0
                good[i, j, m] = [run["goodput_band"][p] for p in q]
                days[i, j, m] = [run["days_to_train_band"][p] for p in q]
                energy[i, j, m] = [run["energy_gwh_band"][p] * 3.6e12 for p in q]
                power[i, j] = [run["facility_power_mw_band"][p] * 1e6 for p in q]
                swing[i, j] = [run["power_swing_mw_band"][p] * 1e6 for p in q]
                netp[i, j] = [run["network_power_mw_band"][p] * 1e6 for p in q]
                switches[i, j] = run["switches"]
    heat = _interval_heat(spec, chips, intervals)
    dims3 = ("system", "n_chips", "recovery", "percentile")
    ds = xr.Dataset(
        {"mfu": (("system", "n_chips", "scaling"), mfu, attrs("mfu")),
         "tokens_per_s_per_chip": (("system", "n_chips", "scaling"), tps,
                                   attrs("tokens_per_s_per_chip")),
         "batch_tokens": (("system", "n_chips", "scaling"), btok, attrs("batch_tokens")),
         "step_fraction": (("system", "n_chips", "term"), frac,
                           attrs("step_fraction", "share of the step time (strong scaling)")),
         "dominant_term": (("system", "n_chips"), dominant.astype(str),
                           {"units": "1", "long_name": "largest part of the step besides compute"}),
         "job_mtbf": (("system", "n_chips"), mtbf, attrs("job_mtbf")),
         "checkpoint_interval": (("system", "n_chips", "recovery"), interval,
                                 attrs("checkpoint_interval")),
         "goodput": (dims3, good, attrs("goodput")),
         "days_to_train": (dims3, days, attrs("days_to_train")),
         "training_energy": (dims3, energy, attrs("training_energy")),
         "facility_power": (("system", "n_chips", "percentile"), power, attrs("facility_power")),
         "power_swing": (("system", "n_chips", "percentile"), swing, attrs("power_swing")),
         "network_power": (("system", "n_chips", "percentile"), netp, attrs("network_power")),
         "switches": (("system", "n_chips"), switches, attrs("switches")),
         "goodput_by_interval": (("n_chips", "interval"), heat,
                                 attrs("goodput", f"goodput of {TRN3} (checkpoint/restart, "
                                       "central inputs)"))},
        coords={"system": list(systems), "n_chips": ("n_chips", chips, attrs("n_chips")),
                "scaling": ["strong", "weak"], "recovery": list(scale.RECOVERY),
                "percentile": ("percentile", list(PERCENTILES), {"units": "percent",
                                                                 "long_name": "percentile"}),
                "term": list(BREAKDOWN),
                "interval": ("interval", [v * 60.0 for v in intervals],
                             {"units": "s", "long_name": "checkpoint interval"}),
                "vendor": ("system", [catalog.chip(catalog.system(s).chip).vendor
                                      for s in systems])})
    ds.attrs.update({"model": spec.name, "train_tokens": train_tokens, "seq_len": seq_len,
                     "n_trials": n_trials, "seed": seed, "weak_tokens_per_chip": weak,
                     "critical_batch_tokens": float(scale.load_scale().field(
                         "batch", "critical_batch_tokens").si),
                     "precisions": json.dumps({s: scale.native_precision(s) for s in systems})})
    ds.attrs["headline"] = headline(ds)
    return ds


def _interval_heat(spec: Any, chips: Sequence[int], intervals: Sequence[float]) -> np.ndarray:
    """Goodput of Trn3 at each chip count and checkpoint interval [1] (central inputs)."""
    data = scale.load_scale()
    rates = {k: data.field("failure", k).si for k in scale.RELIABILITY_RATES}
    n = np.asarray(chips, dtype=float)[:, None]
    mtbf = 1.0 / scale.job_failure_rate(TRN3, n, rates)
    ck = {k: data.field("checkpoint", k).si for k in ("storage_bandwidth_per_chip",
                                                       "blocking_floor", "bytes_per_param")}
    delta = reliability.checkpoint_time(spec.total_params * ck["bytes_per_param"], n,
                                        ck["storage_bandwidth_per_chip"], ck["blocking_floor"])
    restart = data.field("restart", "restart_time").si + delta
    tau = np.asarray(intervals, dtype=float)[None, :] * 60.0
    planned = data.field("failure", "planned_per_day").si / reliability.DAY
    return np.asarray(reliability.goodput(tau, delta, restart, mtbf, planned))


def _at(ds: xr.Dataset, var: str, n: int, **sel: Any) -> float:
    return float(ds[var].sel(n_chips=n, **sel))


def headline(ds: xr.Dataset) -> str:
    """One sentence from the Dataset: Trn3 (or the first system) at the largest chip count."""
    s = TRN3 if TRN3 in ds["system"].values else str(ds["system"].values[0])
    n = int(ds["n_chips"].values[-1])
    sel = {"system": s, "recovery": "in-memory"}
    return (f"{ds.attrs['model']} on {n:,} x {s}: MFU {_at(ds, 'mfu', n, system=s, scaling='strong'):.1%}"
            f" (largest non-compute term {ds['dominant_term'].sel(system=s, n_chips=n).values!s}),"
            f" job MTBF {_at(ds, 'job_mtbf', n, system=s) / 60:.1f} min, goodput "
            f"{_at(ds, 'goodput', n, percentile=50, **sel):.0%} with in-memory recovery vs "
            f"{_at(ds, 'goodput', n, system=s, recovery='checkpoint', percentile=50):.1%} with "
            f"checkpoint/restart; {_at(ds, 'days_to_train', n, percentile=50, **sel):.1f} days "
            f"for {ds.attrs['train_tokens'] / 1e12:g}T tokens at "
            f"{_at(ds, 'facility_power', n, system=s, percentile=50) / 1e6:,.0f} MW (p50).")


def reading(ds: xr.Dataset) -> str:
    """The result in words, every number from the Dataset."""
    lines = [f"**{ds.attrs['headline']}**", ""]
    for s in ds["system"].values:
        m = ds["mfu"].sel(system=s, scaling="strong")
        ok = m.dropna("n_chips")
        if ok.size == 0:
            continue
        first = float(ok.isel(n_chips=0))
        bent = ok.where(ok < 0.8 * first, drop=True)
        bend = (f"falls below 80% of its {int(ok['n_chips'][0]):,}-chip value ({first:.1%}) at "
                f"{int(bent['n_chips'][0]):,} chips, where "
                f"{ds['dominant_term'].sel(system=s, n_chips=bent['n_chips'][0]).values!s} "
                "is the largest non-compute term" if bent.size else "does not bend by 20%")
        n = int(ok["n_chips"][-1])
        g = ds["goodput"].sel(system=s, n_chips=n)
        lines.append(
            f"- **{s}**: strong-scaling MFU {bend}; at {n:,} chips MFU {float(ok[-1]):.1%}, "
            f"job MTBF {float(ds['job_mtbf'].sel(system=s, n_chips=n)) / 60:.1f} min, goodput "
            f"p50 {float(g.sel(recovery='checkpoint', percentile=50)):.1%} (checkpoint/restart)"
            f" / {float(g.sel(recovery='in-memory', percentile=50)):.0%} (in-memory), "
            f"facility {float(ds['facility_power'].sel(system=s, n_chips=n, percentile=50)) / 1e6:,.0f}"
            f" MW [{float(ds['facility_power'].sel(system=s, n_chips=n, percentile=5)) / 1e6:,.0f}-"
            f"{float(ds['facility_power'].sel(system=s, n_chips=n, percentile=95)) / 1e6:,.0f}],"
            f" swing {float(ds['power_swing'].sel(system=s, n_chips=n, percentile=50)) / 1e6:,.0f}"
            " MW when the job stops.")
    lines.append("")
    lines.append(f"Batch capped at the critical batch ({ds.attrs['critical_batch_tokens'] / 1e6:.1f}M "
                 "tokens): beyond it more chips add model parallelism, not data parallelism, so "
                 "pipeline bubbles and exposed communication grow. Checkpoint/restart collapses "
                 "once the job MTBF approaches the restart time; in-memory recovery keeps the "
                 "largest jobs useful.")
    return "\n".join(lines)
