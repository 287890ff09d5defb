"""Power and energy: per chip, server and cluster; per training run and per million tokens.

Each ranged input (chip power, idle share, system overhead, PUE, memory weight) is sampled
(:mod:`trnlab.engine.sampling`) and evaluated as the ``sample`` axis of the vectorized power
model; results carry p5 / p50 / p95 over a ``percentile`` dim and the deterministic value at the
catalog's central inputs (``central``). :func:`headline` and :func:`reading` put the result
into words, every number formatted from the Dataset.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from trnlab import catalog, checks
from trnlab.catalog.params import load_economics, load_power_cap_measurements
from trnlab.engine import training
from trnlab.engine.economics import (
    POWER_OVERRIDES,
    check_overrides,
    check_workload,
    power_inputs,
    workload_rates,
)
from trnlab.engine.hardware import clock_fraction
from trnlab.engine.sampling import PERCENTILES, bands
from trnlab.engine.variables import attrs
from trnlab.errors import ParameterError, bad_value
from trnlab.perf import power
from trnlab.units import convert

DEFAULT_SYSTEMS = ("trn1-32xl", "trn2-ultraserver", "trn3-ultraserver", "dgx-h100", "dgx-h200",
                   "dgx-b200", "gb200-nvl72")
#: sampled outputs per system: name -> (units, long_name)
_SAMPLED = {
    "chip_power_training": ("W", "chip power while training"),
    "chip_power_serving": ("W", "chip power while serving at the SLO"),
    "server_power_training": ("W", "scale-up system IT power while training"),
    "energy_per_token_training": ("J/token", "facility energy per trained token"),
    "training_run_energy": ("J", "facility energy of the training run"),
    "energy_per_m_tokens_served": ("J/Mtoken", "facility energy per million output tokens"),
    "tokens_per_joule_training": ("token/J", "trained tokens per joule of IT energy"),
    "flops_per_watt_delivered": ("FLOP/s/W", "model FLOP/s delivered per watt of IT power"),
}


def _band(name: str, samples: np.ndarray, centre: np.ndarray, units: str, long_name: str,
          dims: tuple[str, ...]) -> dict[str, xr.DataArray]:
    """``name`` (percentile, dims...) and ``name_central`` (dims...) DataArrays."""
    return {name: xr.DataArray(bands(samples, axis=-1), dims=("percentile", *dims),
                               attrs={"units": units, "long_name": long_name}),
            f"{name}_central": xr.DataArray(centre[..., 0], dims=dims,
                                            attrs={"units": units,
                                                   "long_name": f"{long_name} (central inputs)"})}


def overrides_from(**values: Sequence[float]) -> dict[str, float | list[float]]:
    """Power overrides from notebook lists: ``[]`` takes the catalog's range (left out),
    ``[x]`` fixes the input at ``x``, ``[low, central, high]`` makes it a range."""
    out: dict[str, float | list[float]] = {}
    for name, v in values.items():
        if not isinstance(v, list | tuple):
            raise checks.fail("energy", name, v, "[] (catalog), [value] or [low, central, high]")
        for x in v:
            checks.finite("energy", name, x)
        if len(v) not in (0, 1, 3):
            raise ParameterError(bad_value("energy", name, list(v),
                                           "[] (catalog), [value] or [low, central, high]"))
        if v:
            out[name] = float(v[0]) if len(v) == 1 else [float(x) for x in v]
    return out


def study(model: str = "llama3-405b", systems: Sequence[str] = DEFAULT_SYSTEMS,
          n_chips: int = 16384, precision: str = "bf16", token_budget: float = 15e12,
          serve_model: str = "llama3-70b", input_len: int = 2048, output_len: int = 512,
          tpot_ms: float = 50.0, ttft_ms: float = 2000.0, serve_precision: str = "bf16",
          cluster_chips: Sequence[int] = (144, 1152, 9216, 73728, 589824, 1000000),
          n_samples: int = 2000, seed: int = 0,
          overrides: Mapping[str, Any] | None = None) -> xr.Dataset:
    """Power per chip/server/cluster, energy per training run and per million tokens, perf/W.

    Training runs ``model`` on ``n_chips`` chips of each system at the best layout; serving runs
    ``serve_model`` at the SLO with weights, activations and KV cache in ``serve_precision``.
    Chip power follows the workload's tensor and memory activity.
    Cluster power is for ``cluster_chips`` chips of the *first Trainium3 system* in ``systems``
    (or the first system) at its training power.

    Coordinates along ``system``: ``vendor`` (catalog) and ``system_status``, the status of the
    chip power (TDP) figure every power and energy number of the system rests on (``announced``
    or ``projected``; :mod:`trnlab.plot` hatches projected bars).

    Bounds (checked first, one error line each): the workload as
    :func:`~trnlab.engine.economics.check_workload`; ``token_budget`` finite > 0;
    ``cluster_chips`` non-empty integers in 1..1e7; ``n_samples`` in 1..1e6; ``seed`` >= 0;
    ``overrides`` keys among ``idle_fraction``, ``memory_weight``, ``system_overhead``, ``pue``.
    """
    where = "energy"
    w = check_workload(where, systems, model, n_chips, precision, serve_model, input_len,
                       output_len, tpot_ms, ttft_ms, serve_precision)
    n_chips, input_len, output_len = w["n_chips"], w["input_len"], w["output_len"]
    token_budget = checks.positive(where, "token_budget", token_budget, unit="token")
    cluster_chips = checks.int_list(where, "cluster_chips", cluster_chips, 1, checks.MAX_CHIPS)
    n_samples = checks.positive_int(where, "n_samples", n_samples, checks.MAX_SAMPLES)
    seed = checks.integer(where, "seed", seed, 0)
    check_overrides(where, overrides, tuple(POWER_OVERRIDES))
    systems = list(systems)
    chips = [catalog.chip(catalog.system(s).chip) for s in systems]
    r = workload_rates(systems, model, n_chips, precision, serve_model, input_len, output_len,
                       tpot_ms, ttft_ms, serve_precision)
    tps, act, comm = r["tokens_per_s_per_chip"], r["compute_share"], r["memory_share"]
    flops, out_tps = r["model_flops_per_chip"], r["output_tokens_per_s_per_chip"]
    s_c, s_m = r["serve_compute_share"], r["serve_memory_share"]
    per_server = np.array([[catalog.system(s).n_chips] for s in systems], dtype=float)

    results = {}
    for label, n in (("samples", n_samples), ("central", 0)):
        x = power_inputs(systems, n, seed, overrides)
        p_train = power.chip_power(x["tdp"], x["idle"], act, comm, x["memory_weight"])
        p_serve = power.chip_power(x["tdp"], x["idle"], s_c, s_m, x["memory_weight"])
        it_train = p_train * (1.0 + x["overhead"])
        fac_train = power.facility_power(it_train, x["pue"])
        fac_serve = power.facility_power(p_serve * (1.0 + x["overhead"]), x["pue"])
        results[label] = {
            "chip_power_training": p_train, "chip_power_serving": p_serve,
            "server_power_training": it_train * per_server,
            "energy_per_token_training": fac_train / tps,
            "training_run_energy": fac_train / tps * token_budget,
            "energy_per_m_tokens_served": fac_serve / out_tps * 1e6,
            "tokens_per_joule_training": tps / it_train,
            "flops_per_watt_delivered": flops / it_train,
        }
    ds = xr.Dataset(coords={
        "system": ("system", systems, attrs("system")),
        "vendor": ("system", [c.vendor for c in chips], attrs("vendor")),
        "system_status": ("system", [c.fields["tdp"].status for c in chips], {
            "units": "1", "long_name": "status of the chip power (TDP) figure (catalog)"}),
        "server_chips": ("system", per_server[:, 0].astype(np.int64), {
            "units": "chip", "long_name": "chips per scale-up system"}),
        "percentile": ("percentile", list(PERCENTILES),
                       {"units": "percent", "long_name": "percentile of the samples"}),
    })
    for key, (units, long_name) in _SAMPLED.items():
        for name, arr in _band(key, results["samples"][key], results["central"][key], units,
                               long_name, ("system",)).items():
            ds[name] = arr
    ds["tdp"] = ("system", np.array([c.tdp for c in chips]),
                 {"units": "W", "long_name": "chip power (TDP, central value)"})
    ds["peak_flops"] = ("system", np.array([c.peak(precision) for c in chips]),
                        {"units": "FLOP/s", "long_name": f"dense {precision} peak per chip"})
    ds["peak_flops_per_watt"] = ds["peak_flops"] / ds["tdp"]
    ds["peak_flops_per_watt"].attrs.update(
        {"units": "FLOP/s/W", "long_name": f"dense {precision} peak per watt of TDP"})
    ds["tokens_per_s_per_chip"] = ("system", tps[:, 0], attrs(
        "tokens_per_s_per_chip", "training tokens per second per chip (best layout)"))
    ds["model_flops_per_chip"] = ("system", flops[:, 0], attrs(
        "model_flops_per_chip", "model FLOP/s delivered per chip while training (best layout)"))
    ds["mfu"] = ("system", r["mfu"][:, 0], attrs("mfu", "training MFU (best layout)"))
    ds["output_tokens_per_s_per_chip"] = ("system", out_tps[:, 0], attrs(
        "output_tokens_per_s_per_chip", "served output tokens per second per chip at the SLO"))

    # cluster scale: the Trainium3 system (or the first one) at its training power
    ref = next((i for i, s in enumerate(systems) if catalog.system(s).chip == "trn3"), 0)
    n = np.asarray(cluster_chips, dtype=float)[:, None]
    fac = {k: results[k]["chip_power_training"][ref] for k in ("samples", "central")}
    x = {k: power_inputs([systems[ref]], v, seed, overrides) for k, v in (("samples", n_samples),
                                                                    ("central", 0))}
    cluster = {k: power.facility_power(power.it_power(n, fac[k], x[k]["overhead"][0]),
                                       x[k]["pue"][0]) for k in fac}
    ds = ds.assign_coords(cluster_chips=("cluster_chips", np.asarray(cluster_chips,
                                                                     dtype=np.int64),
                                         {"units": "chip", "long_name": "chips in the cluster"}))
    for name, arr in _band("cluster_power", cluster["samples"], cluster["central"], "W",
                           "facility power of the cluster while training",
                           ("cluster_chips",)).items():
        ds[name] = arr
    ds["cluster_systems"] = ("cluster_chips", power.units_needed(
        n[:, 0], per_server[ref, 0]).astype(np.int64), {
        "units": "1", "long_name": f"{systems[ref]} scale-up systems in the cluster"})
    ds = ds.merge(power_caps(model, systems[ref], n_chips, precision))
    ds.attrs.update({"title": "Power and energy per chip, server, training run and cluster",
                     "model": model, "serve_model": serve_model, "n_chips": n_chips,
                     "precision": precision, "serve_precision": serve_precision,
                     "token_budget": float(token_budget), "tpot_ms": tpot_ms,
                     "ttft_ms": ttft_ms, "n_samples": n_samples, "seed": seed,
                     "cluster_system": systems[ref],
                     "overrides": json.dumps(dict(overrides or {}))})
    ds.attrs["headline"] = headline(ds)
    return ds


# ------------------------------------------------------------------------------ the reading
#: power caps of the cap study, fractions of the chip's TDP
CAP_FRACTIONS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def power_caps(model: str, system: str, n_chips: int, precision: str) -> xr.Dataset:
    """What a power cap costs and saves on ``system`` training ``model``: along ``cap_fraction``
    (of the chip's TDP, :data:`CAP_FRACTIONS`) the clock the chip holds
    (:func:`trnlab.engine.hardware.clock_fraction`, the law of data/perf/power.toml), the
    training throughput of the best layout under the cap and the chip's draw, both relative to
    no cap (the draw is the cap where it binds, the uncapped draw of a loaded chip where it does
    not), and their ratio, tokens per joule relative to no cap. Beside it, along ``h100_cap_w``,
    the measured H100 points the law rests on (power.toml ``[measured.h100-caps]``)."""
    chip = catalog.system(system).chip
    tdp, draw = catalog.chip(chip).tdp, load_economics().power["uncapped_draw"].si
    fracs = np.asarray(CAP_FRACTIONS)

    def speed(cap_w: float | None) -> float:
        ds = training.search(model, system, n_chips, precision=precision, top=1,
                             power_cap_w=cap_w)
        return float(ds["tokens_per_s_per_chip"][0]) if ds.sizes["config"] else math.nan

    free = speed(None)
    rel_speed = np.array([speed(f * tdp) / free for f in fracs])
    rel_power = np.minimum(fracs, draw) / draw
    h100 = load_power_cap_measurements()["h100-caps"]
    ds = xr.Dataset(coords={
        "cap_fraction": ("cap_fraction", fracs, {"units": "1",
                                                 "long_name": "power cap / chip TDP"}),
        "h100_cap_w": ("h100_cap_w", np.asarray(h100["cap_w"], dtype=float),
                       {"units": "W", "long_name": "H100 power cap (measured points)"})})
    ds["capped_clock"] = ("cap_fraction", [clock_fraction(chip, f * tdp) for f in fracs],
                          {"units": "1", "long_name": f"clock {chip} holds under the cap"})
    ds["capped_training_speed"] = ("cap_fraction", rel_speed, {
        "units": "1", "long_name": f"training tokens/s of {model} under the cap / uncapped"})
    ds["capped_chip_power"] = ("cap_fraction", rel_power, {
        "units": "1", "long_name": "chip draw under the cap / uncapped draw"})
    ds["capped_energy_efficiency"] = ("cap_fraction", rel_speed / rel_power, {
        "units": "1", "long_name": "trained tokens per joule of chip energy under the cap / uncapped"})
    ds["h100_measured_clock"] = ("h100_cap_w", np.asarray(h100["sm_clock"]), {
        "units": "1", "long_name": "measured H100 SM clock / at 700 W",
        "source": h100["sm_clock_source"]})
    ds["h100_measured_training_speed"] = ("h100_cap_w", np.asarray(h100["llm_training_speed"]), {
        "units": "1", "long_name": "measured Llama 3 8B training tokens/s on H100 / at 700 W",
        "source": h100["llm_training_speed_source"]})
    ds["h100_cap_fraction"] = ("h100_cap_w", ds["h100_cap_w"].values
                               / catalog.chip("h100-sxm").tdp, {
        "units": "1", "long_name": "H100 power cap / its TDP (measured points)"})
    ds.attrs["cap_system"] = system
    return ds


def _si(value: float, unit: str) -> str:
    """``value`` [unit] with an SI prefix and 3 significant digits: ``1.03 kW``, ``28.6 GWh``."""
    if not math.isfinite(value):
        return "n/a"
    value = float(f"{value:.3g}")
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def _p(ds: xr.Dataset, var: str, **sel: Any) -> tuple[float, float, float]:
    """(p50, p5, p95) of ``var`` at ``sel`` [the variable's units]."""
    da = ds[var].sel(**sel)
    return tuple(float(da.sel(percentile=p)) for p in (50.0, 5.0, 95.0))  # type: ignore[return-value]


def _power(ds: xr.Dataset, var: str, note: str = "", **sel: Any) -> str:
    """``1.03 kW (p5–p95 802 W–1.27 kW<note>)``."""
    mid, lo, hi = _p(ds, var, **sel)
    return f"{_si(mid, 'W')} (p5–p95 {_si(lo, 'W')}–{_si(hi, 'W')}{note})"


def _gwh(ds: xr.Dataset, var: str, **sel: Any) -> tuple[str, str]:
    """(p50, "p5–p95") of an energy variable in GWh, one decimal."""
    mid, lo, hi = (convert(v, ds[var].attrs["units"], "GWh") for v in _p(ds, var, **sel))
    return f"{mid:.1f} GWh", f"{lo:.1f}–{hi:.1f}"


def _kwh_per_m(ds: xr.Dataset, **sel: Any) -> tuple[float, float, float]:
    var = "energy_per_m_tokens_served"
    return tuple(convert(v, ds[var].attrs["units"], "kWh/Mtoken")  # type: ignore[return-value]
                 for v in _p(ds, var, **sel))


def _ratio_word(ratio: float, more: str = "more", less: str = "less",
                same: str = "about the same") -> str:
    """``more`` / ``less`` than 1, or ``same`` within 3%."""
    return same if abs(ratio - 1) <= 0.03 else more if ratio > 1 else less


def _systems(ds: xr.Dataset) -> tuple[str, list[str], list[str]]:
    """(cluster system, other systems of its vendor, all other systems)."""
    ref = str(ds.attrs["cluster_system"])
    names = [str(s) for s in ds["system"].values]
    vendor = str(ds["vendor"].sel(system=ref).values)
    same = [s for s in names if s != ref and str(ds["vendor"].sel(system=s).values) == vendor]
    return ref, same, [s for s in names if s != ref]


def _in_order(ds: xr.Dataset, subset: list[str]) -> str:
    return ", ".join(str(s) for s in ds["system"].values if str(s) in subset)


def headline(ds: xr.Dataset) -> str:
    """One sentence: the cluster system's chip power, tokens per joule against the most
    efficient system, the training run's energy and the largest cluster's power."""
    ref, _, others = _systems(ds)
    a = ds.attrs
    tpj = ds["tokens_per_joule_training"].sel(percentile=50.0)
    best = max(others, key=lambda s: float(tpj.sel(system=s))) if others else ref
    run, _ = _gwh(ds, "training_run_energy", system=ref)
    big = int(ds["cluster_chips"].max())
    gw = _p(ds, "cluster_power", cluster_chips=big)[0]
    tdp = f", {ds['system_status'].sel(system=ref).item()} TDP"
    return (f"Training {a['model']} at {a['precision']} on {int(a['n_chips']):,} chips, a {ref} "
            f"chip draws {_power(ds, 'chip_power_training', system=ref, note=tdp)} and trains "
            f"{float(tpj.sel(system=ref)):.3f} tokens/J (IT) against "
            f"{float(tpj.sel(system=best)):.3f} on {best}; the "
            f"{float(a['token_budget']) / 1e12:g}T-token run takes {run} of facility energy and "
            f"{big:,} chips need {_si(gw, 'W')}")


def reading(ds: xr.Dataset) -> str:
    """The reading of a :func:`study` Dataset as Markdown bullets, every number from ``ds``."""
    a = ds.attrs
    ref, same, others = _systems(ds)
    names = [ref, *others]
    status = {s: str(ds["system_status"].sel(system=s).values) for s in names}
    med = ds.sel(percentile=50.0)
    w = {s: float(med["chip_power_training"].sel(system=s)) for s in names}
    lines = []

    # power per chip and per server
    rel = {s: (_p(ds, "chip_power_training", system=s)[2]
               - _p(ds, "chip_power_training", system=s)[1]) / w[s] for s in names}
    proj = [s for s in names if status[s] == "projected"]
    firm = [s for s in names if status[s] != "projected"]
    text = (f"- **Power per chip.** Training {a['model']} at {a['precision']} on "
            f"{int(a['n_chips']):,} chips, a {ref} chip draws "
            f"{_power(ds, 'chip_power_training', system=ref)}")
    text += "".join(f", {w[ref] / w[s]:.1f}x a {s} chip ({_si(w[s], 'W')})"
                    for s in reversed(same)) + ". "
    if proj and firm:
        text += (f"The chip power of {_in_order(ds, proj)} is projected (no published figure): "
                 f"their p5–p95 bands span {np.mean([rel[s] for s in proj]):.0%} of the median "
                 f"on average, the announced TDPs of {_in_order(ds, firm)} "
                 f"{np.mean([rel[s] for s in firm]):.0%} (idle share and memory weight only). ")
    elif proj:
        text += "Every chip power here is projected (no published figure). "
    srv = {s: float(med["server_power_training"].sel(system=s)) for s in names}
    chips = {s: int(ds["server_chips"].sel(system=s)) for s in names}
    text += (f"One {chips[ref]}-chip {ref} needs {_power(ds, 'server_power_training', system=ref)}"
             " of IT power while training, against "
             + ", ".join(f"{_si(srv[s], 'W')} for {s} ({chips[s]} chips)" for s in others) + ".")
    lines.append(text)

    # performance per watt
    peak = {s: float(ds["peak_flops_per_watt"].sel(system=s)) for s in names}
    tpj = {s: float(med["tokens_per_joule_training"].sel(system=s)) for s in names}
    _, tpj_lo, tpj_hi = _p(ds, "tokens_per_joule_training", system=ref)
    text = "- **Performance per watt.** "
    for s in same[-1:]:  # the latest other system of the same vendor
        pk = float(ds["peak_flops"].sel(system=ref)) / float(ds["peak_flops"].sel(system=s))
        tdp = float(ds["tdp"].sel(system=ref)) / float(ds["tdp"].sel(system=s))
        text += (f"At the central TDPs {ref}'s {a['precision']} peak per watt "
                 f"({peak[ref] / 1e12:.2f} TFLOP/s per W) is "
                 f"{_ratio_word(peak[ref] / peak[s], 'higher than', 'lower than', 'about the same as')}"
                 f" {s}'s ({peak[s] / 1e12:.2f}): {pk:.2f}x the peak per chip for {tdp:.2f}x "
                 "the power. ")
    best = max(names, key=lambda s: tpj[s])
    text += (f"Delivered, {ref} trains {tpj[ref]:.3f} tokens per joule of IT energy "
             f"(p5–p95 {tpj_lo:.3f}–{tpj_hi:.3f}) against "
             + ", ".join(f"{tpj[s]:.3f} on {s}" for s in others)
             + (f"; {best} is the most efficient" if best != ref else
                f"; {ref} is the most efficient"))
    text += "".join(f"; against {s} that is {tpj[ref] / tpj[s]:.2f}x "
                    f"({_ratio_word(tpj[ref] / tpj[s], 'more', 'fewer')} tokens per joule)"
                    for s in same[-1:])
    lines.append(text + ".")

    # energy per training run and per million tokens served
    run = {s: _gwh(ds, "training_run_energy", system=s) for s in names}
    serve = {s: _kwh_per_m(ds, system=s) for s in names}
    frugal = min(names, key=lambda s: serve[s][0])
    text = (f"- **Energy.** One {float(a['token_budget']) / 1e12:g}T-token {a['model']} run "
            f"takes {run[ref][0]} of facility energy on {ref} (p5–p95 {run[ref][1]}), "
            + ", ".join(f"{run[s][0]} on {s}" for s in others) + ". "
            f"Serving {a['serve_model']} at the latency target takes {serve[ref][0]:.2f} kWh "
            f"per million output tokens on {ref} (p5–p95 {serve[ref][1]:.2f}–"
            f"{serve[ref][2]:.2f})")
    text += (f", {serve[frugal][0]:.2f} on {frugal}, the least" if frugal != ref else
             ", the least of all systems")
    for s in same[-1:]:
        tok = float(ds["output_tokens_per_s_per_chip"].sel(system=s))
        ratio = float(ds["output_tokens_per_s_per_chip"].sel(system=ref)) / tok
        pw = float(med["chip_power_serving"].sel(system=ref) / med["chip_power_serving"].sel(
            system=s))
        text += (f"; serving runs {a['serve_precision']}, where a {ref} chip gives "
                 f"{ratio:.2f}x a {s} chip's output tokens per second while drawing {pw:.2f}x "
                 "its power")
    lines.append(text + ".")

    # cluster
    small, big = int(ds["cluster_chips"].min()), int(ds["cluster_chips"].max())
    lo_mid = _p(ds, "cluster_power", cluster_chips=small)[0]
    gw = _p(ds, "cluster_power", cluster_chips=big)
    lines.append(
        f"- **Cluster.** {small:,} {ref} chips draw about {_si(lo_mid, 'W')} of facility power "
        f"with host, network and cooling; {big:,} chips "
        f"({int(ds['cluster_systems'].sel(cluster_chips=big)):,} scale-up systems) need "
        f"{_si(gw[0], 'W')} (p5–p95 {_si(gw[1], 'W')}–{_si(gw[2], 'W')}).")

    # power caps
    fr, best = ds["cap_fraction"].values, int(np.nanargmax(ds["capped_energy_efficiency"].values))
    at = lambda v, f: float(ds[v].sel(cap_fraction=f))
    lines.append(
        f"- **Power caps.** Capped at {fr[best]:.0%} of its TDP a {ds.attrs['cluster_system']} "
        f"chip trains at {at('capped_training_speed', fr[best]):.2f}x its uncapped speed for "
        f"{at('capped_energy_efficiency', fr[best]):.2f}x the tokens per joule of chip energy "
        f"(host and cooling aside), the most of the caps tried; at {fr[0]:.0%} it keeps "
        f"{at('capped_training_speed', fr[0]):.2f}x. The clock law is the one measured on an "
        "H100 (its SM clock and Llama 3 8B training throughput under caps of 200-700 W, "
        "plotted beside the model).")

    # how far to trust it
    trust = "- **How far to trust it.** "
    trust += (f"Every power figure of {_in_order(ds, proj)} is a projection. " if proj else
              "Every chip power here is an announced TDP. ")
    lines.append(trust + (
        "The power model counts compute time as busy, exposed communication and the "
        "optimizer at the memory weight, and pipeline bubbles and fixed overheads as idle: a "
        "chip that waits is charged less, whatever it is made of."))
    return "\n".join(lines)
