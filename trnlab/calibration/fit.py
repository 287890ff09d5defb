"""Fit the models' few shared parameters to the published measurements.

Least squares on ``log(predicted / measured)`` (scipy's trust-region reflective solver), each
parameter bounded by the physical range written next to it in ``data/perf/*.toml``. Training
parameters are fitted on the training cases, then the serving parameters on the inference cases
(the GEMM efficiencies are shared). Leave-one-source-out (LOSO): refit without one source,
predict that source; a vendor family left without any case takes the ``default`` efficiency, as
an uncalibrated chip would. The vendor efficiencies are those of each vendor's reference chip;
every other chip scales them by its microbenchmark ratio (``data/perf/chip_efficiency.toml``),
and each case runs its framework family's stack (``data/perf/stacks.toml``), so the fit keeps
only what the framework and its overheads add.

Reproducible: every fit starts from the middle of each parameter's range (not from the values
in the file, which a previous fit wrote), cases and sources are taken in a fixed order, and the
fitted values are rounded to the digits written (4 significant) before anything uses them, so a
run without writing prints exactly the digits a ``write=True`` run writes, and a second run
gives the same digits. :func:`run` writes ``data/perf/*.toml`` only with ``write=True``.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from trnlab import catalog
from trnlab._files import write_text
from trnlab.calibration.defaults import kind_of
from trnlab.calibration.validate import (
    METRICS,
    Prediction,
    by_source,
    held_out,
    load_conventions,
    mape,
    predict,
    read_cases,
    source_of,
)
from trnlab.catalog import params as param_files
from trnlab.catalog.params import ServingParams, TrainingParams, load_serving, load_training

#: fitted training parameters: the shared ones, then the vendor efficiencies present in the data
SHARED = ("gemm_half_dim", "layer_overhead", "layer_comm_overlap", "fp8_gemm_factor",
          "step_overhead")
SERVING = ("mem_eff", "decode_half_rows", "per_sequence_overhead")
Rows = list[dict[str, str]]
Progress = Callable[[str], None] | None
#: residual evaluations between two progress lines of a fit
PROGRESS_EVERY = 25
#: most residual evaluations of one fit (scipy's ``max_nfev``)
MAX_NFEV = 200


VENDOR_TABLES = ("gemm_eff", "step_overhead")  # per-vendor tables, keys "<table>_<vendor>"


def _split(name: str) -> tuple[str, str]:
    """(table, key) of a fitted name: ``gemm_eff_aws`` -> (gemm_eff, aws), ``mem_eff`` ->
    (fields, mem_eff)."""
    for table in VENDOR_TABLES:
        if name.startswith(f"{table}_"):
            return table, name.removeprefix(f"{table}_")
    return "fields", name


def _field(params: Any, name: str) -> Any:
    table, key = _split(name)
    return getattr(params, table)[key]


def _vendors(rows: Rows) -> list[str]:
    return sorted({catalog.chip(r["chip"]).vendor for r in rows})


def _written(value: float) -> float:
    """``value`` with the digits :func:`write_params` writes (4 significant)."""
    return float(f"{value:.4g}")


def _rounded(params: Any, names: list[str]) -> Any:
    """``params`` with the values of ``names`` rounded to the digits written."""
    values = {}
    for n in names:
        f = _field(params, n)
        values[n] = _written(f.value) * (f.si / f.value) if f.value else 0.0
    return params.replace(**values)


def _with_default(params: Any, table: str, vendors: list[str]) -> Any:
    """Set a per-vendor table's ``default`` to the mean of the calibrated families (rounded to
    the digits written)."""
    known = [getattr(params, table)[v].value for v in vendors if v != "default"]
    if not known:
        return params
    return _rounded(params.replace(**{f"{table}_default": float(np.mean(known))}),
                    [f"{table}_default"])


def _solve(params: Any, names: list[str], residuals: Callable[[Any], np.ndarray],
           progress: Progress = None, label: str = "fit", info: dict | None = None) -> Any:
    """Bounded least squares over ``names`` of ``params`` (each scaled to [0, 1]), from the
    middle of each range; the result is rounded to the digits written.

    ``info``, if given, receives scipy's solution (``solution``: ``x``, ``jac``, ``active_mask``
    in the scaled [0, 1] coordinates), ``names``, ``lo`` and ``hi``."""
    lo = np.array([(_field(params, n).range or (_field(params, n).value,) * 2)[0] for n in names])
    hi = np.array([(_field(params, n).range or (_field(params, n).value,) * 2)[1] for n in names])
    scale = np.maximum(hi - lo, 1e-12)
    trial = lambda u: params.replace(**dict(zip(names, lo + u * scale, strict=True)))
    calls = [0]

    def fun(u: np.ndarray) -> np.ndarray:
        res = residuals(trial(u))
        calls[0] += 1
        if progress and calls[0] % PROGRESS_EVERY == 0:
            progress(f"    {label}: {calls[0]} evaluations, MAPE "
                     f"{float(np.mean(np.abs(np.expm1(res)))):.2%}")
        return res

    sol = least_squares(fun, np.full(len(names), 0.5), bounds=(0.0, 1.0), diff_step=1e-3,
                        max_nfev=MAX_NFEV)
    if info is not None:
        info.update(solution=sol, names=list(names), lo=lo, hi=hi)
    return _rounded(trial(sol.x), names)


def _log_errors(preds: list[Prediction]) -> np.ndarray:
    return np.array([math.log(p.predicted / p.value) if p.predicted > 0 else 3.0
                     for p in preds])


def _kind(rows: Rows, kind: str) -> Rows:
    """The rows of ``kind`` that can be compared: a schema metric, a value, a catalog chip."""
    chips = catalog.default().chips
    return [r for r in rows if kind_of(r) == kind and r["metric"] in METRICS
            and r["value"].strip() and r["chip"] in chips]


def _fitted_rows(rows: Rows, kind: str) -> Rows:
    """The rows of ``kind`` a fit uses: comparable (:func:`_kind`), not held out."""
    conv = load_conventions()
    return [r for r in _kind(rows, kind) if not held_out(source_of(r["case_id"], conv), conv)]


def fit(rows: Rows, params: TrainingParams | None = None, progress: Progress = None,
        label: str = "training fit", info: dict | None = None
        ) -> tuple[TrainingParams, list[str]]:
    """Fit the training parameters to the training ``rows``; returns them and the names fitted
    (``info``: see :func:`_solve`)."""
    params = params or load_training()
    rows = _fitted_rows(rows, "training")
    vendors = _vendors(rows)
    names = [*SHARED, *(f"gemm_eff_{v}" for v in vendors)]
    if not any(r["precision"] in ("fp8", "mxfp8") for r in rows):
        names.remove("fp8_gemm_factor")
    fitted = _solve(params, names, lambda p: _log_errors(predict(rows, p)), progress, label,
                    info)
    return _with_default(fitted, "gemm_eff", vendors), names


def fit_serving(rows: Rows, serving: ServingParams | None = None,
                params: TrainingParams | None = None, progress: Progress = None,
                label: str = "serving fit") -> tuple[ServingParams, list[str]]:
    """Fit the serving parameters to the inference ``rows`` (training parameters ``params``
    fixed; default: data/perf/training.toml)."""
    serving = serving or load_serving()
    rows = _fitted_rows(rows, "inference")
    vendors = _vendors(rows)
    names = [*SERVING, *(f"step_overhead_{v}" for v in vendors)]
    fitted = _solve(serving, names, lambda s: _log_errors(predict(rows, params, s)), progress,
                    label)
    return _with_default(fitted, "step_overhead", vendors), names


def leave_out(rows: Rows, group_of: Callable[[dict[str, str]], str | set[str] | frozenset[str]],
              kind: str = "training", params: TrainingParams | None = None,
              serving: ServingParams | None = None, progress: Progress = None,
              what: str = "") -> dict[str, list[Prediction]]:
    """Leave-one-group-out predictions of the cases of ``kind``: for each group (in sorted
    order), refit on the cases outside it and predict the cases in it.

    ``group_of(row)`` gives a row's group, or a set of groups (a row may then be held out more
    than once, and a row with no group is never held out). A vendor family left without any
    case takes the ``default`` efficiency, as an uncalibrated chip would.
    """
    cases = _kind(rows, kind)
    member = [(r, {g} if isinstance(g := group_of(r), str) else set(g)) for r in cases]
    groups = sorted(set().union(*(m for _, m in member)))
    out: dict[str, list[Prediction]] = {}
    fits: dict[frozenset[str], Any] = {}  # a fold that removes only held-out rows fits the same
    for k, group in enumerate(groups, start=1):
        if progress:
            progress(f"  leave out {what}{group} ({k}/{len(groups)})")
        held = [r for r, m in member if group in m]
        rest = [r for r, m in member if group not in m]
        table = "step_overhead" if kind == "inference" else "gemm_eff"
        label = f"without {group}"
        key = frozenset(r["case_id"] for r in _fitted_rows(rest, kind))
        if key not in fits:
            fits[key] = fit_serving(rest, serving, params, progress, label)[0] \
                if kind == "inference" else fit(rest, params, progress, label)[0]
        fitted = fits[key]
        # a vendor the fold leaves uncalibrated takes the default (one never in the table
        # already does): uncalibrated = no fitted case of it left, although held-out cases of
        # it may remain (they are never fitted)
        calibrated = set(_vendors(_fitted_rows(rest, kind)))
        for vendor in (set(_vendors(held)) - calibrated) & set(getattr(fitted, table)):
            fitted = fitted.replace(**{f"{table}_{vendor}":
                                       getattr(fitted, table)["default"].value})
        out[group] = predict(held, params, fitted) if kind == "inference" else \
            predict(held, fitted, serving)
    return out


def loso(rows: Rows, kind: str = "training", params: TrainingParams | None = None,
         serving: ServingParams | None = None, progress: Progress = None) -> list[Prediction]:
    """Leave-one-source-out predictions of every case of ``kind``."""
    conv = load_conventions()
    held = leave_out(rows, lambda r: source_of(r["case_id"], conv), kind, params, serving,
                     progress)
    return [p for group in held.values() for p in group]


def _summary(names: list[str], preds: list[Prediction],
             loso_preds: list[Prediction] | None) -> str:
    conv = load_conventions()
    held = sorted({p.source for p in preds if held_out(p.source, conv)})
    lines = ['method = "least squares on log(predicted/measured), bounds = the ranges below '
             '(scipy least_squares, trf)"',
             f'fitted = "{", ".join(names)}"',
             f"cases = {sum(math.isfinite(p.rel_error) for p in preds)}",
             *([f'held_out = "{", ".join(held)} (predicted, not fitted; in the MAPE below)"']
               if held else []),
             f'date = "{dt.date.today().isoformat()}"',
             f"mape = {mape(preds):.4f}"]
    groups = [("mape_by_source", preds)]
    if loso_preds is not None:
        lines.append(f"loso_mape = {mape(loso_preds):.4f}")
        groups.append(("loso_by_source", loso_preds))
    for key, group in groups:
        lines.append(f"{key} = {{ " + ", ".join(
            f'"{k}" = {v[1]:.4f}' for k, v in by_source(group).items()) + " }")
    return "[fit]\n" + "\n".join(lines) + "\n\n"


def write_params(params: Any, names: list[str], preds: list[Prediction],
                 loso_preds: list[Prediction] | None = None, path: Path | None = None) -> Path:
    """Write fitted values (status ``derived``, source ``FIT-TRAIN``) and the fit summary."""
    path = path or params.path
    text = path.read_text(encoding="utf-8")
    keys = {n: _split(n)[1] for n in names}
    keys.update({f"{t}_default": "default" for t in VENDOR_TABLES if hasattr(params, t)})
    for name, key in keys.items():
        f = _field(params, name)
        status, source = ("derived", "FIT-TRAIN") if name in names else (f.status,
                                                                        "; ".join(f.sources))
        text = re.sub(rf'(?m)^({re.escape(key)} = \{{ value = )[^,]+(,.*?status = ")\w+'
                      rf'(", source = ")[^"]+', rf"\g<1>{f.value:.4g}\g<2>{status}\g<3>{source}",
                      text, count=1)
    text = re.sub(r"(?ms)^\[fit\]\n.*?(?=^\[param\])", _summary(names, preds, loso_preds),
                  text, count=1)
    return write_text(path, text)


@dataclass
class Fitted:
    """One kind's calibration: the fitted parameters next to the committed ones."""

    kind: str  # "training" or "inference"
    params: Any  # fitted, rounded to the digits written
    committed: Any  # as read from the file before the fit
    names: list[str]  # the parameters fitted
    preds: list[Prediction]  # with the fitted parameters
    loso: list[Prediction] | None
    committed_preds: list[Prediction]  # the same cases with the committed parameters
    path: Path  # the file a write would (or did) change

    def rows(self) -> list[tuple[str, float, float, tuple[float, float] | None]]:
        """(name, committed, fitted, range) of every value a write changes."""
        table = "step_overhead" if self.kind == "inference" else "gemm_eff"
        names = [*self.names, f"{table}_default"]
        return [(n, _field(self.committed, n).value, _field(self.params, n).value,
                 _field(self.params, n).range) for n in names]


def run(cases: Path, with_loso: bool = True, write: bool = False, progress: Progress = None,
        training_path: Path | None = None, serving_path: Path | None = None
        ) -> dict[str, Fitted]:
    """Fit on ``cases``; with ``write`` write data/perf/training.toml and serving.toml (or
    ``training_path`` / ``serving_path``), else write nothing.

    ``progress`` gets a line per stage (and every :data:`PROGRESS_EVERY` evaluations of a fit).
    Returns each kind's :class:`Fitted` (no ``inference`` entry without inference cases).
    """
    say = progress or (lambda _msg: None)
    start = time.monotonic()

    def stage(k: int, total: int, text: str) -> None:
        say(f"[{k}/{total}] {text} ({time.monotonic() - start:.0f} s)")

    rows = read_cases(cases)
    train_rows, serve_rows = _kind(rows, "training"), _kind(rows, "inference")
    total = 1 + (1 + with_loso) * (1 + bool(serve_rows)) + 1
    stage(1, total, f"{len(train_rows)} training and {len(serve_rows)} inference cases "
          f"from {cases}")
    params = load_training(training_path)
    serving = load_serving(serving_path)
    k = 2
    stage(k, total, f"fitting the training parameters on {len(train_rows)} cases")
    fitted, names = fit(rows, params, progress)
    train_preds = predict(train_rows, fitted, serving)
    say(f"  training MAPE {mape(train_preds):.2%}")
    train_loso = None
    if with_loso:
        k += 1
        stage(k, total, "leave-one-source-out, training")
        train_loso = loso(rows, "training", params, serving, progress)
        say(f"  training leave-one-source-out MAPE {mape(train_loso):.2%}")
    out = {"training": Fitted("training", fitted, params, names, train_preds, train_loso,
                              predict(train_rows, params, serving), params.path)}
    if serve_rows:
        k += 1
        stage(k, total, f"fitting the serving parameters on {len(serve_rows)} cases")
        fitted_s, snames = fit_serving(rows, serving, fitted, progress)
        serve_preds = predict(serve_rows, fitted, fitted_s)
        say(f"  inference MAPE {mape(serve_preds):.2%}")
        serve_loso = None
        if with_loso:
            k += 1
            stage(k, total, "leave-one-source-out, inference")
            serve_loso = loso(rows, "inference", fitted, serving, progress)
            say(f"  inference leave-one-source-out MAPE {mape(serve_loso):.2%}")
        out["inference"] = Fitted("inference", fitted_s, serving, snames, serve_preds,
                                  serve_loso, predict(serve_rows, params, serving), serving.path)
    if write:
        stage(total, total, "writing " + ", ".join(str(f.path) for f in out.values()))
        for f in out.values():
            write_params(f.params, f.names, f.preds, f.loso, path=f.path)
        param_files._load_training.cache_clear()
        param_files._load_serving.cache_clear()
    else:
        stage(total, total, "done; nothing written (pass --write to write the fitted values)")
    return out


def summary(result: dict[str, Fitted]) -> str:
    """The fitted values and fit quality next to the committed ones (a readable table)."""
    lines = []
    for f in result.values():
        lines.append(f"{f.kind} parameters ({f.path}):")
        lines.append(f"  {'parameter':24s} {'committed':>11s} {'fitted':>11s}  range")
        for name, old, new, rng in f.rows():
            mark = "" if f"{old:.4g}" == f"{new:.4g}" else "  *"
            span = f"[{rng[0]:.4g}, {rng[1]:.4g}]" if rng else ""
            lines.append(f"  {name:24s} {old:11.4g} {new:11.4g}  {span}{mark}")
        recorded = f.committed.fit
        lines.append(f"  {'MAPE':24s} {_pct(recorded.get('mape')):>11s} {_pct(mape(f.preds)):>11s}"
                     f"  (committed values on these cases: {_pct(mape(f.committed_preds))})")
        if f.loso is not None:
            lines.append(f"  {'leave-one-source-out':24s} {_pct(recorded.get('loso_mape')):>11s} "
                         f"{_pct(mape(f.loso)):>11s}")
        old_src = recorded.get("mape_by_source", {})
        old_loso = recorded.get("loso_by_source", {})
        new_loso = by_source(f.loso) if f.loso is not None else {}
        for src, (n, err) in by_source(f.preds).items():
            lines.append(f"    {src:22s} {n:3d} cases  MAPE {_pct(old_src.get(src)):>7s} -> "
                         f"{_pct(err):>7s}" + (f"   LOSO {_pct(old_loso.get(src)):>7s} -> "
                                               f"{_pct(new_loso[src][1]):>7s}"
                                               if src in new_loso else ""))
    lines.append("(committed = data/perf/*.toml and its recorded [fit]; * = changed)")
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2%}"
