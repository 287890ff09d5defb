"""Big sweeps of training at scale: models x systems x chip counts x precisions, one
:func:`trnlab.engine.scale.evaluate_run` per point, on a dask.distributed cluster or locally,
streamed into a zarr store as the points finish (nothing is held whole).

The store is laid out first from a lazy template (``xarray.Dataset.to_zarr(compute=False)``:
coordinates, attrs and NaN-filled arrays); each finished point is written into its cell of
every array. Each point has its own seed (``seed`` + its flat index), so a cluster and a local
run give the same numbers.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr

from trnlab import checks
from trnlab.engine import scale
from trnlab.engine.sampling import PERCENTILES
from trnlab.engine.variables import attrs
from trnlab.errors import TrnlabError

#: scalar outputs per point (variable -> key of evaluate_run) and banded ones (p5, p50, p95)
SCALARS = {"tokens_per_s_per_chip": "tokens_per_s_per_chip", "mfu": "mfu",
           "job_mtbf": "job_mtbf_h", "checkpoint_interval": "checkpoint_interval_min"}
BANDED = {"goodput": "goodput_band", "days_to_train": "days_to_train_band",
          "facility_power": "facility_power_mw_band"}
_SCALE = {"job_mtbf": 3600.0, "checkpoint_interval": 60.0, "facility_power": 1e6}
DIMS = ("model", "system", "n_chips", "precision")


def point(model: str, system: str, n_chips: int, precision: str, n_trials: int, seed: int,
          recovery: str, train_tokens: float) -> dict[str, Any]:
    """One point of the sweep as plain floats (SI; NaN where the model does not fit or the
    chip lacks the precision)."""
    try:
        r = scale.evaluate_run(model, system, n_chips, precision=precision, n_trials=n_trials,
                               seed=seed, recovery=recovery, train_tokens=train_tokens)
    except TrnlabError:
        return {**{k: np.nan for k in SCALARS}, **{k: [np.nan] * 3 for k in BANDED}}
    out: dict[str, Any] = {k: float(r[key]) * _SCALE.get(k, 1.0) for k, key in SCALARS.items()}
    for k, key in BANDED.items():
        out[k] = [r[key][p] * _SCALE.get(k, 1.0) for p in ("p5", "p50", "p95")]
    return out


def _template(models: list[str], systems: list[str], chips: list[int],
              precisions: list[str]) -> xr.Dataset:
    shape = (len(models), len(systems), len(chips), len(precisions))
    data = {k: (DIMS, da.full(shape, np.nan, chunks=1), attrs(k)) for k in SCALARS}
    data.update({k: ((*DIMS, "percentile"), da.full((*shape, 3), np.nan, chunks=1), attrs(k))
                 for k in BANDED})
    return xr.Dataset(data, coords={"model": models, "system": systems,
                                    "n_chips": ("n_chips", chips, attrs("n_chips")),
                                    "precision": precisions,
                                    "percentile": ("percentile", list(PERCENTILES),
                                                   {"units": "percent",
                                                    "long_name": "percentile"})})


def sweep(store: str | Path, models: Sequence[str], systems: Sequence[str],
          chips: Sequence[int], precisions: Sequence[str], *, client: Any = None,
          n_trials: int = 200, seed: int = 0, recovery: str = "checkpoint",
          train_tokens: float = 15e12) -> xr.Dataset:
    """Evaluate every (model, system, chip count, precision) and stream it into the zarr
    ``store`` (a directory, overwritten). ``client``: a dask.distributed Client (one task per
    point, written as they complete); without it the points run here in turn. Returns the
    store opened lazily (``xarray.open_zarr``)."""
    where = "sweep"
    lists = {"models": list(models), "systems": list(systems), "precisions": list(precisions)}
    for name, values in lists.items():
        if not values or not all(isinstance(v, str) for v in values):
            raise checks.fail(where, name, values, "a non-empty list of ids")
    chips = [checks.positive_int(where, "chips", n, checks.MAX_CHIPS) for n in chips]
    if not chips:
        raise checks.fail(where, "chips", chips, "a non-empty list of chip counts")
    n_trials = checks.positive_int(where, "n_trials", n_trials, 1_000_000)
    recovery = checks.choice(where, "recovery", recovery, scale.RECOVERY)
    store = Path(store)
    template = _template(lists["models"], lists["systems"], chips, lists["precisions"])
    template.attrs.update({"n_trials": n_trials, "seed": seed, "recovery": recovery,
                           "train_tokens": float(train_tokens)})
    template.to_zarr(store, mode="w", compute=False, zarr_format=2)
    grid = list(itertools.product(*(range(len(v)) for v in (
        lists["models"], lists["systems"], chips, lists["precisions"]))))
    args = [(lists["models"][a], lists["systems"][b], chips[c], lists["precisions"][d],
             n_trials, seed + i, recovery, float(train_tokens))
            for i, (a, b, c, d) in enumerate(grid)]
    for i, result in _results(args, client):
        _write(store, grid[i], result)
    return xr.open_zarr(store)


def _results(args: list[tuple], client: Any):
    """(index, result) pairs as the points finish: dask tasks or in turn here."""
    if client is None:
        for i, a in enumerate(args):
            yield i, point(*a)
        return
    from distributed import as_completed

    futures = {client.submit(point, *a, pure=False): i for i, a in enumerate(args)}
    for future in as_completed(futures):
        yield futures[future], future.result()
        future.release()


def _write(store: Path, index: tuple[int, ...], result: dict[str, Any]) -> None:
    """One point into its cell of every array of the store (a region write)."""
    region = {d: slice(i, i + 1) for d, i in zip(DIMS, index, strict=True)}
    values = {k: (DIMS, np.full((1, 1, 1, 1), result[k])) for k in SCALARS}
    values.update({k: ((*DIMS, "percentile"), np.asarray(result[k]).reshape(1, 1, 1, 1, 3))
                   for k in BANDED})
    xr.Dataset(values).to_zarr(store, region=region, zarr_format=2)
