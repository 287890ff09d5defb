"""Power and energy: per chip, server and cluster; per training run and per million tokens.

Each ranged input (chip power, idle share, system overhead, PUE, memory weight) is sampled
(:mod:`trnlab.engine.sampling`) and evaluated as the ``sample`` axis of the vectorized power
model; results carry p5 / p50 / p95 over a ``percentile`` dim and the deterministic value at the
catalog's central inputs (``central``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from trnlab import catalog
from trnlab.engine.economics import power_inputs, workload_rates
from trnlab.engine.sampling import PERCENTILES
from trnlab.perf import power

DEFAULT_SYSTEMS = ("trn1-32xl", "trn2-ultraserver", "trn3-ultraserver", "dgx-h100", "dgx-h200",
                   "dgx-b200", "gb200-nvl72")


def _band(name: str, samples: np.ndarray, centre: np.ndarray, units: str, long_name: str,
          dims: tuple[str, ...]) -> dict[str, xr.DataArray]:
    """``name`` (percentile, dims...) and ``name_central`` (dims...) DataArrays."""
    return {name: xr.DataArray(np.percentile(samples, PERCENTILES, axis=-1),
                               dims=("percentile", *dims),
                               attrs={"units": units, "long_name": long_name}),
            f"{name}_central": xr.DataArray(centre[..., 0], dims=dims,
                                            attrs={"units": units,
                                                   "long_name": f"{long_name} (central inputs)"})}


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
    """
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
    meta = {
        "chip_power_training": ("W", "chip power while training"),
        "chip_power_serving": ("W", "chip power while serving at the SLO"),
        "server_power_training": ("W", "scale-up system IT power while training"),
        "energy_per_token_training": ("J", "facility energy per trained token"),
        "training_run_energy": ("J", "facility energy of the training run"),
        "energy_per_m_tokens_served": ("J", "facility energy per million output tokens"),
        "tokens_per_joule_training": ("1/J", "trained tokens per joule of IT energy"),
        "flops_per_watt_delivered": ("FLOP/s/W", "model FLOP/s delivered per watt of IT power"),
    }
    ds = xr.Dataset(coords={"system": systems, "percentile": list(PERCENTILES)})
    for key, (units, long_name) in meta.items():
        for name, arr in _band(key, results["samples"][key], results["central"][key], units,
                               long_name, ("system",)).items():
            ds[name] = arr
    ds["peak_flops_per_watt"] = ("system", np.array([c.peak(precision) / c.tdp for c in chips]),
                                 {"units": "FLOP/s/W", "long_name": f"dense {precision} peak / "
                                  "chip power (TDP)"})
    ds["tdp_status"] = ("system", np.array([c.fields["tdp"].status for c in chips]),
                        {"units": "1", "long_name": "status of the chip power figure"})
    ds["tokens_per_s_per_chip"] = ("system", tps[:, 0], {
        "units": "1/s", "long_name": "training tokens per second per chip (best layout)"})
    ds["mfu"] = ("system", r["mfu"][:, 0], {"units": "1", "long_name": "training MFU"})
    ds["output_tokens_per_s_per_chip"] = ("system", out_tps[:, 0], {
        "units": "1/s", "long_name": "served output tokens per second per chip at the SLO"})

    # cluster scale: the Trainium3 system (or the first one) at its training power
    ref = next((i for i, s in enumerate(systems) if catalog.system(s).chip == "trn3"), 0)
    n = np.asarray(cluster_chips, dtype=float)[:, None]
    fac = {k: results[k]["chip_power_training"][ref] for k in ("samples", "central")}
    x = {k: power_inputs([systems[ref]], v, seed, overrides) for k, v in (("samples", n_samples),
                                                                    ("central", 0))}
    cluster = {k: power.facility_power(power.it_power(n, fac[k], x[k]["overhead"][0]),
                                       x[k]["pue"][0]) for k in fac}
    ds = ds.assign_coords(cluster_chips=np.asarray(cluster_chips, dtype=np.int64))
    for name, arr in _band("cluster_power", cluster["samples"], cluster["central"], "W",
                           f"facility power of n {systems[ref]} chips while training",
                           ("cluster_chips",)).items():
        ds[name] = arr
    ds["cluster_chips"].attrs.update({"units": "1", "long_name": "chips in the cluster"})
    ds["percentile"].attrs.update({"units": "percent", "long_name": "percentile of the samples"})
    ds.attrs.update({"model": model, "serve_model": serve_model, "n_chips": n_chips,
                     "precision": precision, "n_samples": n_samples, "seed": seed,
                     "cluster_system": systems[ref],
                     "overrides": json.dumps(dict(overrides or {}))})
    return ds
