"""Factored grids of training configurations: each parameter on its own array axis.

``evaluate_grid(model, {"tp": [1, 2, 4], "dp": range(1, 65), ...}, system=...)`` evaluates the
step model (:func:`trnlab.perf.train.train_step`) on the cartesian product of the axes. Every
parameter gets its own array axis (shape ``(n, 1, 1, ...)``, ``(1, n, 1, ...)``, ...), so
broadcasting evaluates each term of the step only on the axes it depends on: the per-layer
compute on (tp, pp, cp, ep, micro_batch, seq_len, recompute, hardware), the data-parallel
all-reduce on (tp, pp, dp, cp, ep, hardware), ...; only the final sums span the whole grid.
That is what makes ~10^8 configurations per second possible on two cores (``trnlab bench``)
where a flat list of configurations (every term on every configuration, as
:func:`trnlab.engine.training.evaluate` does) is bound by memory bandwidth near 3 x 10^6.

The grid is evaluated in blocks of at most ``chunk`` configurations, cut along the largest axis
(then the next largest, when one index of the largest is still too many), so the temporaries
stay in cache and the peak memory stays bounded; blocks run on a thread pool (NumPy releases the
GIL) or, given ``client=``, as tasks on a dask.distributed cluster. Invalid configurations are
masked with the reason codes of :data:`trnlab.engine.layouts.REASONS`, never dropped.
"""

from __future__ import annotations

import json
import math
import os
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from itertools import product
from typing import Any

import numpy as np
import xarray as xr

from trnlab import backend, catalog, checks
from trnlab.catalog.params import TrainingParams, load_training
from trnlab.engine import variables
from trnlab.engine.hardware import hardware, train_calibration
from trnlab.engine.layouts import REASONS, broken_rules, default_global_batch
from trnlab.engine.shape import model_shape
from trnlab.errors import ParameterError, bad_value
from trnlab.perf.train import (
    OUTPUTS,
    RECOMPUTE,
    Calibration,
    Hardware,
    Layout,
    ModelShape,
    step_terms,
    train_step,
)
from trnlab.workloads import TransformerSpec

LAYOUT = ("tp", "pp", "dp", "cp", "ep", "vpp", "zero", "recompute", "micro_batch",
          "global_batch", "seq_len")
HARDWARE = ("system", "chip", "precision")
AXES = LAYOUT + HARDWARE
DEFAULTS = {"tp": 1, "pp": 1, "dp": 1, "cp": 1, "ep": 1, "vpp": 1, "zero": 0, "recompute": 0,
            "micro_batch": 1}
CHUNK = 1 << 18  # configurations per block: float32 temporaries of 1 MiB stay in L2
REDUCE = ("max_tokens_per_s",)
DTYPES = ("float32", "float64")
#: internal axis order, outermost first: the axes few terms depend on outside, the axes nearly
#: every term depends on (tp, cp, pp, micro_batch, dp) inside, so that NumPy's inner loops run
#: over long stretches of the grid (2-3x faster than the reverse order)
ORDER = ("zero", "vpp", "recompute", "system", "chip", "precision", "ep", "global_batch",
         "seq_len", "dp", "micro_batch", "pp", "cp", "tp")
@dataclass(frozen=True)
class _Problem:
    """Everything a block evaluation needs (picklable, for dask). Arrays have one axis per dim
    (length 1 on the dims they do not vary along)."""

    shape: ModelShape
    spec: TransformerSpec
    cal: Calibration
    dims: tuple[str, ...]
    sizes: tuple[int, ...]
    layout: dict[str, np.ndarray]  # int64
    hw: dict[str, np.ndarray]  # float64 fields of Hardware
    domain: np.ndarray  # int64 [chips]
    dtype: str
    tp_outside_domain: bool
    terms: dict[str, Any] | None = None  # step_terms on the whole grid (backend arrays)


def _on_axis(values: Sequence[Any], dim: int, ndim: int, dtype: Any) -> np.ndarray:
    shape = [1] * ndim
    shape[dim] = len(values)
    return np.asarray(values, dtype=dtype).reshape(shape)


#: bounds of the layout parameters (the others: 1..MAX_CHIPS)
LAYOUT_BOUNDS = {"zero": (0, 3), "recompute": (0, 2), "micro_batch": (1, checks.MAX_BATCH),
                 "global_batch": (1, checks.MAX_BATCH), "seq_len": (1, checks.MAX_TOKENS)}


def _layout_values(name: str, values: Sequence[Any]) -> list[int]:
    out = []
    for v in values:
        if name == "recompute" and isinstance(v, str):
            if v not in RECOMPUTE:
                raise ParameterError(bad_value("evaluate_grid", name, v,
                                               f"allowed: {', '.join(RECOMPUTE)} or 0, 1, 2"))
            v = RECOMPUTE.index(v)
        ok = isinstance(v, int | np.integer) and not isinstance(v, bool)
        lo, hi = LAYOUT_BOUNDS.get(name, (1, checks.MAX_CHIPS))
        if not ok or v < lo or v > hi:
            raise ParameterError(bad_value("evaluate_grid", name, v,
                                           f"must be an integer in {lo}..{hi:,}"))
        out.append(int(v))
    return out


def _problem(spec: TransformerSpec, axes: Mapping[str, Any], scalars: dict[str, Any],
             params: TrainingParams, dtype: str, tp_outside_domain: bool) -> _Problem:
    unknown = [k for k in axes if k not in AXES]
    if unknown:
        raise ParameterError(bad_value("evaluate_grid", "axes", unknown[0],
                                       f"allowed: {', '.join(AXES)}"))
    if dtype not in DTYPES:
        raise ParameterError(bad_value("evaluate_grid", "dtype", dtype,
                                       f"allowed: {', '.join(DTYPES)}"))
    dims = tuple(d for d in ORDER if d in axes)
    values = {k: list(v) if not isinstance(v, str) else [v] for k, v in axes.items()}
    for k, v in values.items():
        if not v:
            raise ParameterError(bad_value("evaluate_grid", k, v, "an axis needs >= 1 value"))
    ndim = len(dims)
    layout = {}
    for name in LAYOUT:
        if name in values:
            layout[name] = _on_axis(_layout_values(name, values[name]), dims.index(name), ndim,
                                    np.int64)
        else:
            layout[name] = np.full((1,) * ndim, _layout_values(name, [scalars[name]])[0],
                                   dtype=np.int64)
    # hardware: one record per combination of the hardware axes (a loop over a few ids)
    hw_dims = [d for d in HARDWARE if d in values]
    hw_vals = [values[d] if d in values else [scalars[d]] for d in HARDWARE]
    if hw_vals[0] == [None]:
        raise ParameterError(bad_value("evaluate_grid", "system", None,
                                       "give system= or a 'system' axis"))
    fields: dict[str, np.ndarray] = {}
    domain = np.ones([len(v) for v in hw_vals], dtype=np.int64)
    for idx in product(*(range(len(v)) for v in hw_vals)):
        system, chip, precision = (v[i] for v, i in zip(hw_vals, idx, strict=True))
        rec = hardware(chip or catalog.system(system).chip, system, precision, params,
                       training=True)
        domain[idx] = catalog.system(system).n_chips
        for k, v in vars(rec).items():
            fields.setdefault(k, np.empty(domain.shape))[idx] = v
    order = sorted(range(3), key=lambda i: dims.index(HARDWARE[i]) if HARDWARE[i] in dims else -1)

    def place(a: np.ndarray) -> np.ndarray:  # (system, chip, precision) -> grid axes
        shape = [1] * ndim
        for d in hw_dims:
            shape[dims.index(d)] = len(values[d])
        return a.transpose(order).reshape(shape)  # the hardware dims in the order of dims

    return _Problem(model_shape(spec), spec, train_calibration(params), dims,
                    tuple(len(values[d]) for d in dims), layout,
                    {k: place(v) for k, v in fields.items()}, place(domain), dtype,
                    tp_outside_domain)


def blocks(sizes: Sequence[int], chunk: int) -> list[tuple[slice, ...]]:
    """Cut a grid of ``sizes`` [points per axis] into blocks of at most ``chunk`` [points]
    (or of a single point), as tuples of slices, one per axis.

    The largest axis is cut first; if even one index of it spans more than ``chunk`` points,
    it is cut to single indices and the next largest axis is cut too, and so on. The small
    axes stay whole inside a block, so the terms that do not depend on them stay small.
    """
    step = list(sizes)
    rest = math.prod(sizes)
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i]):
        if rest <= chunk:
            break
        other = rest // sizes[i]
        step[i] = max(1, min(sizes[i], chunk // other))
        rest = other * step[i]
    starts = [range(0, n, s) for n, s in zip(sizes, step, strict=True)]
    return [tuple(slice(a, min(a + s, n)) for a, s, n in zip(start, step, sizes, strict=True))
            for start in product(*starts)]


@dataclass(frozen=True)
class _Device:
    """The arrays of a :class:`_Problem` converted once to the active backend."""

    xp: Any
    ints: dict[str, Any]  # layout, int64
    floats: dict[str, Any]  # layout, in the evaluation dtype
    hw: dict[str, Any]  # Hardware fields, in the evaluation dtype
    domain: Any  # int64 [chips]
    terms: dict[str, Any] | None


def _device(p: _Problem) -> _Device:
    xp = backend.namespace()
    ints = {k: backend.asarray(v) for k, v in p.layout.items()}
    ft = getattr(xp, p.dtype)
    return _Device(xp, ints, {k: xp.astype(v, ft) for k, v in ints.items()},
                   {k: backend.asarray(v, p.dtype) for k, v in p.hw.items()},
                   backend.asarray(p.domain),
                   None if p.terms is None else {k: backend.asarray(v)
                                                 for k, v in p.terms.items()})


def _cuts(block: tuple[slice, ...], sizes: tuple[int, ...]) -> list[tuple[int, slice]]:
    """The dims a block does not span whole, with its slice of them."""
    return [(d, sl) for d, (sl, n) in enumerate(zip(block, sizes, strict=True))
            if sl.stop - sl.start < n]


def _take(a: Any, cuts: list[tuple[int, slice]]) -> Any:
    """The block of ``a`` (an array with one axis per dim, length 1 on dims it does not vary
    along): a view."""
    index: list[slice] | None = None
    for d, sl in cuts:
        if a.shape[d] > 1:
            index = index or [slice(None)] * len(a.shape)
            index[d] = sl
    return a if index is None else a[tuple(index)]


def _inputs(dev: _Device, cuts: list[tuple[int, slice]]
            ) -> tuple[dict[str, Any], Layout, Hardware]:
    """Integer layout arrays, the Layout (float) and the Hardware of a block, on the backend."""
    ints = {k: _take(v, cuts) for k, v in dev.ints.items()}
    lay = Layout(**{k: _take(v, cuts) for k, v in dev.floats.items()})
    return ints, lay, Hardware(**{k: _take(v, cuts) for k, v in dev.hw.items()})


def _with_terms(p: _Problem, chunk: int, numpy: bool) -> _Problem:
    """``p`` with :func:`~trnlab.perf.train.step_terms` computed once on the whole grid, if
    they are small (at most 16 blocks' worth of numbers): the many small operations of the
    per-layer model then run once instead of once per block."""
    probe = tuple(slice(0, min(2, n)) for n in p.sizes)
    with backend.set_backend("numpy"):
        small = replace(p, dtype="float64", terms=None)
        _, lay, hw = _inputs(_device(small), _cuts(probe, p.sizes))
        terms = step_terms(p.shape, hw, lay, p.cal)
    size = sum(math.prod(n for n, s in zip(p.sizes, _pad(v.shape, len(p.sizes)), strict=True)
                         if s > 1) for v in terms.values())
    if size > 16 * chunk:
        return p
    _, lay, hw = _inputs(_device(p), [])
    terms = step_terms(p.shape, hw, lay, p.cal)
    if numpy:
        terms = {k: np.asarray(backend.to_numpy(v)) for k, v in terms.items()}
    return replace(p, terms={k: _reshape(v, len(p.sizes)) for k, v in terms.items()})


def _pad(shape: tuple[int, ...], ndim: int) -> tuple[int, ...]:
    return (1,) * (ndim - len(shape)) + tuple(shape)


def _reshape(v: Any, ndim: int) -> Any:
    xp = backend.namespace()
    return v if v.ndim == ndim else xp.reshape(v, _pad(v.shape, ndim))


def _evaluate_block(p: _Problem, block: tuple[slice, ...], outputs: tuple[str, ...],
                    reduce: str | None, dev: _Device | None = None) -> dict[str, Any]:
    """Evaluate one block on the active backend; NumPy results (or the block's best).

    ``dev``: the problem's arrays on the backend (converted here when not given, e.g. in a
    dask task)."""
    dev = dev or _device(p)
    xp = dev.xp
    cuts = _cuts(block, p.sizes)
    ints, lay, hw = _inputs(dev, cuts)
    ft = getattr(xp, p.dtype)
    want = ("step_time", "fits") if reduce else outputs
    terms = None if dev.terms is None else {k: _take(v, cuts) for k, v in dev.terms.items()}
    res = train_step(p.shape, hw, lay, p.cal, want, broadcast=False, terms=terms)
    rules = broken_rules(p.spec, ints["tp"], ints["pp"], ints["dp"], ints["cp"], ints["ep"],
                         ints["vpp"], ints["micro_batch"], ints["global_batch"],
                         ints["seq_len"], _take(dev.domain, cuts), p.tp_outside_domain)
    shape = tuple(sl.stop - sl.start for sl in block)
    if reduce:  # the best tokens/s per chip: invalid layouts score 0
        ok = ~rules[0]
        for broken in rules[1:]:
            ok = ok & ~broken
        valid = ok & res["fits"]
        # tokens per step per chip (0 where a rule is broken) on its sub-grid, then / step;
        # masks multiply (x * 1 = x, x * 0 = 0): xp.where on a grid-sized mask is 10x slower
        num = lay.global_batch * lay.seq_len / (lay.tp * lay.pp * lay.dp * lay.cp)
        score = num * _num(xp, ok, ft) / res["step_time"] * _num(xp, res["fits"], ft)
        if tuple(score.shape) != shape:
            score = xp.broadcast_to(score, shape)
        i = int(xp.argmax(score))
        local = np.unravel_index(i, shape)
        n_valid = int(xp.count_nonzero(valid)) * (math.prod(shape) // math.prod(valid.shape))
        return {"best": float(score[tuple(int(j) for j in local)]), "n_valid": n_valid,
                "index": int(np.ravel_multi_index([j + sl.start for j, sl in
                                                   zip(local, block, strict=True)], p.sizes))}
    # the first broken rule on the sub-grid of the rules' axes, then "does not fit" (7)
    i8 = xp.int8
    code = xp.zeros((1,) * len(shape), dtype=i8)
    for number, broken in reversed(list(enumerate(rules, start=1))):
        code = xp.where(broken, xp.asarray(number, dtype=i8), code)
    reason = code + _num(xp, (code == 0) & ~res["fits"], i8) * xp.asarray(7, dtype=i8)
    res["reason"] = xp.broadcast_to(reason, shape)
    out: dict[str, Any] = {}
    for k in (*outputs, "reason"):
        v = np.asarray(backend.to_numpy(res[k]))
        out[k] = v.reshape((1,) * (len(shape) - v.ndim) + v.shape)
    return out


def _num(xp: Any, mask: Any, dtype: Any) -> Any:
    """``mask`` as numbers to multiply with: NumPy and CuPy multiply by booleans directly."""
    return xp.astype(mask, dtype) if backend.get_backend() == "array_api_strict" else mask


def _run(p: _Problem, todo: list[tuple[slice, ...]], outputs: tuple[str, ...],
         reduce: str | None, client: Any, workers: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(block number, result) as the blocks finish: dask tasks, a thread pool or in turn."""
    if client is not None:
        from distributed import as_completed

        shared = client.scatter(p, broadcast=True)
        futures = client.map(_evaluate_block, [shared] * len(todo), todo,
                             [outputs] * len(todo), [reduce] * len(todo), pure=False)
        number = {f.key: i for i, f in enumerate(futures)}
        for future, result in as_completed(futures, with_results=True):
            yield number[future.key], result
        return
    dev = _device(p)
    if workers <= 1 or len(todo) == 1:
        for i, block in enumerate(todo):
            yield i, _evaluate_block(p, block, outputs, reduce, dev)
        return
    with ThreadPoolExecutor(workers) as pool:  # NumPy releases the GIL inside its loops
        running: deque[tuple[int, Future[dict[str, Any]]]] = deque()
        for i, block in enumerate(todo):  # at most 2 blocks per thread in flight
            running.append((i, pool.submit(_evaluate_block, p, block, outputs, reduce, dev)))
            if len(running) >= 2 * workers:
                j, future = running.popleft()
                yield j, future.result()
        while running:
            j, future = running.popleft()
            yield j, future.result()


def _coords(p: _Problem, axes: Mapping[str, Any]) -> dict[str, xr.Variable]:
    out = {}
    for d in axes:  # the user's order
        vals = p.layout[d].reshape(-1) if d in LAYOUT else np.asarray([str(v) for v in axes[d]])
        out[d] = xr.Variable(d, vals, variables.attrs(d))
    return out


def evaluate_grid(spec_or_id: TransformerSpec | str, axes: Mapping[str, Sequence[Any]], *,
                  system: str | None = None, chip: str | None = None, precision: str = "bf16",
                  global_batch: int | None = None, seq_len: int = 8192,
                  params: TrainingParams | None = None, dtype: str = "float32",
                  chunk: int = CHUNK, reduce: str | None = None,
                  outputs: Sequence[str] | None = None, tp_outside_domain: bool = False,
                  client: Any = None, workers: int | None = None) -> xr.Dataset:
    """Evaluate the step model on the cartesian product of ``axes``.

    Parameters
    ----------
    spec_or_id : str or TransformerSpec
        A preset id (``trnlab.catalog.model_ids()``) or a spec.
    axes : mapping of str to sequence
        One array axis per entry (the Dataset's dims, in this order): layout parameters ``tp``, ``pp``, ``dp``,
        ``cp``, ``ep``, ``vpp``, ``zero`` (0-3), ``recompute`` (``"none"``, ``"selective"``,
        ``"full"`` or 0-2), ``micro_batch`` [sequences], ``global_batch`` [sequences],
        ``seq_len`` [tokens], and hardware ``system``, ``chip``, ``precision`` (ids). Layout
        parameters not given are 1 (``zero`` and ``recompute`` 0).
    system, chip, precision : str
        The hardware when not an axis (``chip`` defaults to the system's chip).
    global_batch : int
        Sequences per step when not an axis [sequences] (default:
        :func:`~trnlab.engine.layouts.default_global_batch`).
    seq_len : int
        Sequence length when not an axis [tokens].
    dtype : {"float32", "float64"}
        Float type of the evaluation; float32 is about 1.6x as fast and agrees with float64 to
        ~1e-5 relative.
    chunk : int
        Most configurations per block [1]; bounds the memory of the temporaries.
    reduce : {None, "max_tokens_per_s"}
        None: return every output on the grid. ``"max_tokens_per_s"``: keep only the best
        valid configuration of each block, and return the overall best, re-evaluated in
        float64 (nothing of grid size is ever held).
    outputs : sequence of str, optional
        Outputs to keep (default: all of :data:`trnlab.perf.train.OUTPUTS`; ``fits`` and
        ``reason`` are always kept).
    client : dask.distributed.Client, optional
        Run the blocks as dask tasks on this cluster.
    workers : int, optional
        Threads for the blocks when no client is given (default: the CPU count with NumPy, 1
        with other backends).

    Returns
    -------
    xarray.Dataset
        Without ``reduce``: dims in the order of ``axes`` with coordinates; one variable per
        output [SI units], each computed on the dims it depends on and broadcast (a view, no
        copy) to all dims; ``reason`` (int8, :data:`~trnlab.engine.layouts.REASONS`). With
        ``reduce``: scalar coordinates of the best configuration, its outputs (float64),
        ``best_per_block`` (dim ``block``) [1/s]; attrs ``n_configs``, ``n_valid``.
    """
    where = "evaluate_grid"
    spec = catalog.spec(spec_or_id)
    if not isinstance(axes, Mapping):
        raise checks.fail(where, "axes", axes, "a mapping of axis name -> values")
    if reduce is not None and reduce not in REDUCE:
        raise ParameterError(bad_value("evaluate_grid", "reduce", reduce,
                                       f"allowed: None, {', '.join(REDUCE)}"))
    chunk = checks.positive_int(where, "chunk", chunk)
    if workers is not None:
        workers = checks.positive_int(where, "workers", workers, 4096)
    if "seq_len" not in axes:
        seq_len = checks.positive_int(where, "seq_len", seq_len, checks.MAX_TOKENS)
    params = params or load_training()
    outs = tuple(OUTPUTS if outputs is None else dict.fromkeys([*outputs, "fits"]))
    bad = [o for o in outs if o not in OUTPUTS]
    if bad:
        raise ParameterError(bad_value("evaluate_grid", "outputs", bad[0],
                                       f"allowed: {', '.join(OUTPUTS)}"))
    if global_batch is None:
        if "seq_len" in axes:
            raise ParameterError(bad_value("evaluate_grid", "global_batch", None,
                                           "give global_batch= (or an axis) when seq_len is an "
                                           "axis"))
        global_batch = default_global_batch(1, seq_len)
    scalars = {**DEFAULTS, "global_batch": global_batch, "seq_len": seq_len, "system": system,
               "chip": chip, "precision": precision}
    p = _problem(spec, axes, scalars, params, dtype, tp_outside_domain)
    todo = blocks(p.sizes, chunk)
    if workers is None:
        workers = (os.cpu_count() or 1) if backend.get_backend() == "numpy" else 1
    attrs = {"model": spec.name, "dtype": dtype, "n_configs": math.prod(p.sizes),
             "n_blocks": len(todo), "reason_names": json.dumps(REASONS)}
    attrs.update({k: v for k, v in scalars.items()
                  if k not in axes and k not in DEFAULTS and v is not None})
    p = _with_terms(p, chunk, numpy=client is not None)
    if reduce:
        return _reduced(p, todo, axes, params, spec, scalars, client, workers, attrs)
    return _full(p, todo, outs, axes, client, workers, attrs)


def _dependence(p: _Problem, outs: tuple[str, ...]) -> dict[str, tuple[bool, ...]]:
    """Which dims each output varies along: its shape on a 2-per-axis probe of the grid."""
    probe = tuple(slice(0, min(2, n)) for n in p.sizes)
    shape = tuple(sl.stop for sl in probe)
    with backend.set_backend("numpy"):
        res = _evaluate_block(replace(p, dtype="float64", terms=None), probe, outs, None)
    return {k: tuple(n > 1 and s > 1 for n, s in zip(v.shape, shape, strict=True))
            for k, v in res.items()}


def _full(p: _Problem, todo: list[tuple[slice, ...]], outs: tuple[str, ...],
          axes: Mapping[str, Any], client: Any, workers: int, attrs: dict[str, Any]
          ) -> xr.Dataset:
    deps = _dependence(p, outs)
    dtypes = {k: (np.int8 if k == "reason" else np.bool_ if k == "fits" else p.dtype)
              for k in deps}
    arrays = {k: np.empty([n if d else 1 for n, d in zip(p.sizes, dep, strict=True)],
                          dtype=dtypes[k]) for k, dep in deps.items()}
    counts = np.zeros(len(REASONS), dtype=np.int64)
    for i, res in _run(p, todo, outs, None, client, workers):
        block = todo[i]
        counts += np.bincount(res["reason"].reshape(-1), minlength=len(REASONS))
        for k, value in res.items():
            dep = deps[k]
            if any(not d and sl.start > 0 for d, sl in zip(dep, block, strict=True)):
                continue  # already written by the block at index 0 of that axis
            target = tuple(sl if d else slice(None) for d, sl in zip(dep, block, strict=True))
            arrays[k][target] = value
    ds = xr.Dataset(coords=_coords(p, axes))
    for k, a in arrays.items():
        extra = {"reason_names": json.dumps(REASONS)} if k == "reason" else {}
        ds[k] = xr.Variable(p.dims, np.broadcast_to(a, p.sizes), variables.attrs(k, **extra))
    ds = ds.transpose(*axes)
    attrs.update({"n_valid": int(counts[0]), "invalid_by_reason": json.dumps(
        {REASONS[i]: int(c) for i, c in enumerate(counts) if i and c})})
    ds.attrs.update(attrs)
    return ds


def _reduced(p: _Problem, todo: list[tuple[slice, ...]], axes: Mapping[str, Any],
             params: TrainingParams, spec: TransformerSpec, scalars: dict[str, Any],
             client: Any, workers: int, attrs: dict[str, Any]) -> xr.Dataset:
    best = np.zeros(len(todo))
    index = np.zeros(len(todo), dtype=np.int64)
    n_valid = 0
    for i, res in _run(p, todo, (), "max_tokens_per_s", client, workers):
        best[i], index[i] = res["best"], res["index"]
        n_valid += res["n_valid"]
    attrs["n_valid"] = n_valid
    per_block = variables.attrs("tokens_per_s_per_chip", "best valid training tokens per "
                                "second per chip of each block (0: none valid)")
    if best.max() <= 0:
        ds = xr.Dataset({"best_per_block": ("block", best, per_block)})
    else:
        k = int(np.argmax(best))  # first block with the maximum: deterministic
        point = np.unravel_index(int(index[k]), p.sizes)
        one = {d: [list(axes[d])[j] if d not in LAYOUT else int(p.layout[d].reshape(-1)[j])]
               for d, j in zip(p.dims, point, strict=True)}
        hw_scalars = {k2: v for k2, v in scalars.items() if k2 not in DEFAULTS}
        full = evaluate_grid(spec, one, **hw_scalars, params=params, dtype="float64",
                             workers=1, tp_outside_domain=p.tp_outside_domain)
        ds = full.isel(dict.fromkeys(p.dims, 0)).copy(deep=True)
        ds["best_per_block"] = ("block", best, per_block)
    ds.attrs = attrs
    return ds
