"""Fit the models' few shared parameters to the published measurements.

Least squares on ``log(predicted / measured)`` (scipy's trust-region reflective solver), each
parameter bounded by the physical range written next to it in ``data/perf/*.toml``; the fitted
values, the method and the fit quality are written back there. Training parameters are fitted
on the training cases, then the serving parameters on the inference cases (the GEMM efficiencies
are shared). Leave-one-source-out (LOSO): refit without one source, predict that source; a
vendor family left without any case takes the ``default`` efficiency, as an uncalibrated chip
would.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import least_squares

from trnlab import catalog
from trnlab._files import write_text
from trnlab.calibration.validate import (
    Prediction,
    by_source,
    load_conventions,
    mape,
    predict,
    read_cases,
    source_of,
)
from trnlab.catalog import params as param_files
from trnlab.catalog.params import ServingParams, TrainingParams, load_serving, load_training

#: fitted training parameters: the shared ones, then the vendor efficiencies present in the data
SHARED = ("gemm_half_dim", "layer_overhead", "layer_comm_overlap", "dp_overlap",
          "fp8_gemm_factor", "step_overhead", "attention_eff")
SERVING = ("mem_eff", "mem_reserve", "decode_half_rows", "per_sequence_overhead")
Rows = list[dict[str, str]]


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


def _with_default(params: Any, table: str, vendors: list[str]) -> Any:
    """Set a per-vendor table's ``default`` to the mean of the calibrated families."""
    known = [getattr(params, table)[v].value for v in vendors if v != "default"]
    return params.replace(**{f"{table}_default": float(np.mean(known))}) if known else params


def _solve(params: Any, names: list[str], residuals: Callable[[Any], np.ndarray]) -> Any:
    """Bounded least squares over ``names`` of ``params`` (each scaled to [0, 1])."""
    lo = np.array([(_field(params, n).range or (_field(params, n).value,) * 2)[0] for n in names])
    hi = np.array([(_field(params, n).range or (_field(params, n).value,) * 2)[1] for n in names])
    x0 = np.clip([_field(params, n).value for n in names], lo, hi)
    scale = np.maximum(hi - lo, 1e-12)
    trial = lambda u: params.replace(**dict(zip(names, lo + u * scale, strict=True)))
    sol = least_squares(lambda u: residuals(trial(u)), (x0 - lo) / scale, bounds=(0.0, 1.0),
                        diff_step=1e-3, max_nfev=200)
    return trial(sol.x)


def _log_errors(preds: list[Prediction]) -> np.ndarray:
    return np.array([math.log(p.predicted / p.value) if p.predicted > 0 else 3.0
                     for p in preds])


def _kind(rows: Rows, kind: str) -> Rows:
    return [r for r in rows if r["kind"] == kind and r["metric"]]


def fit(rows: Rows, params: TrainingParams | None = None) -> tuple[TrainingParams, list[str]]:
    """Fit the training parameters to the training ``rows``; returns them and the names fitted."""
    params = params or load_training()
    rows = _kind(rows, "training")
    vendors = _vendors(rows)
    names = [*SHARED, *(f"gemm_eff_{v}" for v in vendors)]
    if not any(r["precision"] in ("fp8", "mxfp8") for r in rows):
        names.remove("fp8_gemm_factor")
    fitted = _solve(params, names, lambda p: _log_errors(predict(rows, p)))
    return _with_default(fitted, "gemm_eff", vendors), names


def fit_serving(rows: Rows, serving: ServingParams | None = None,
                params: TrainingParams | None = None) -> tuple[ServingParams, list[str]]:
    """Fit the serving parameters to the inference ``rows`` (training parameters fixed)."""
    serving = serving or load_serving()
    rows = _kind(rows, "inference")
    vendors = _vendors(rows)
    names = [*SERVING, *(f"step_overhead_{v}" for v in vendors)]
    fitted = _solve(serving, names, lambda s: _log_errors(predict(rows, params, s)))
    return _with_default(fitted, "step_overhead", vendors), names


def loso(rows: Rows, kind: str = "training", params: TrainingParams | None = None,
         serving: ServingParams | None = None) -> list[Prediction]:
    """Leave-one-source-out predictions of every case of ``kind``."""
    conv = load_conventions()
    cases = _kind(rows, kind)
    out: list[Prediction] = []
    for src in sorted({source_of(r["case_id"], conv) for r in cases}):
        held = [r for r in cases if source_of(r["case_id"], conv) == src]
        rest = [r for r in cases if source_of(r["case_id"], conv) != src]
        table = "step_overhead" if kind == "inference" else "gemm_eff"
        fitted = fit_serving(rest, serving, params)[0] if kind == "inference" \
            else fit(rest, params)[0]
        for vendor in set(_vendors(held)) - set(_vendors(rest)):  # uncalibrated: the default
            fitted = fitted.replace(**{f"{table}_{vendor}":
                                       getattr(fitted, table)["default"].value})
        out += predict(held, params, fitted) if kind == "inference" else \
            predict(held, fitted, serving)
    return out


def _summary(names: list[str], preds: list[Prediction],
             loso_preds: list[Prediction] | None) -> str:
    lines = ['method = "least squares on log(predicted/measured), bounds = the ranges below '
             '(scipy least_squares, trf)"',
             f'fitted = "{", ".join(names)}"',
             f"cases = {sum(math.isfinite(p.rel_error) for p in preds)}",
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


def run(cases: Path, with_loso: bool = True) -> dict[str, list[Prediction] | None]:
    """Fit on ``cases`` and write data/perf/training.toml and serving.toml.

    Returns the predictions and LOSO predictions of both kinds.
    """
    rows = read_cases(cases)
    params, serving = load_training(), load_serving()
    fitted, names = fit(rows, params)
    train_preds = predict(_kind(rows, "training"), fitted)
    train_loso = loso(rows, "training", params, serving) if with_loso else None
    write_params(fitted, names, train_preds, train_loso)
    param_files._load_training.cache_clear()
    fitted = load_training()
    if not _kind(rows, "inference"):
        return {"training": train_preds, "training_loso": train_loso}
    fitted_s, snames = fit_serving(rows, serving, fitted)
    serve_preds = predict(_kind(rows, "inference"), fitted, fitted_s)
    serve_loso = loso(rows, "inference", fitted, serving) if with_loso else None
    write_params(fitted_s, snames, serve_preds, serve_loso)
    param_files._load_serving.cache_clear()
    return {"training": train_preds, "training_loso": train_loso, "inference": serve_preds,
            "inference_loso": serve_loso}
