"""Fit the step model's few shared parameters to the published training measurements.

Least squares on ``log(predicted / measured)`` over the training cases (scipy's trust-region
reflective solver), each parameter bounded by the physical range written next to it in
``data/perf/training.toml``. The fitted values, the method and the fit quality are written back
to that file. Leave-one-source-out (LOSO): refit without one source, predict that source; a
vendor family left without any case takes the ``default`` efficiency, as an uncalibrated chip
would.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

from trnlab._files import write_text
from trnlab.studies.training_params import TrainingParams, load_params
from trnlab.validation import Prediction, by_source, load_conventions, mape, predict, read_cases

#: fitted parameters: the shared ones, then the vendor efficiencies present in the data
SHARED = ("gemm_half_dim", "layer_overhead", "layer_comm_overlap", "dp_overlap",
          "fp8_gemm_factor", "step_overhead")
VENDOR_OF_CHIP = {"a100-sxm-80gb": "nvidia", "h100-sxm": "nvidia", "h200": "nvidia",
                  "tpu-v5p": "google", "trn1": "aws", "inf2": "aws"}


def _bounds(params: TrainingParams, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for name in names:
        f = params.gemm_eff[name[9:]] if name.startswith("gemm_eff_") else params.fields[name]
        rng = f.range or (f.value, f.value)
        lo.append(rng[0])
        hi.append(rng[1])
    return np.array(lo, dtype=float), np.array(hi, dtype=float)


def _value(params: TrainingParams, name: str) -> float:
    f = params.gemm_eff[name[9:]] if name.startswith("gemm_eff_") else params.fields[name]
    return f.value


def fit(rows: list[dict[str, str]], params: TrainingParams | None = None
        ) -> tuple[TrainingParams, list[str]]:
    """Fit to the training ``rows``; returns the new parameters and the names fitted."""
    params = params or load_params()
    rows = [r for r in rows if r["kind"] == "training" and r["metric"]]
    vendors = sorted({VENDOR_OF_CHIP.get(r["chip"], "default") for r in rows})
    names = [*SHARED, *(f"gemm_eff_{v}" for v in vendors)]
    if not any(r["precision"] in ("fp8", "mxfp8") for r in rows):
        names.remove("fp8_gemm_factor")
    lo, hi = _bounds(params, names)
    x0 = np.clip([_value(params, n) for n in names], lo, hi)
    scale = np.maximum(hi - lo, 1e-12)

    def residuals(u: np.ndarray) -> np.ndarray:
        trial = params.replace(**dict(zip(names, lo + u * scale, strict=True)))
        preds = predict(rows, trial)
        return np.array([math.log(p.predicted / p.value) if p.predicted > 0 else 3.0
                         for p in preds])

    sol = least_squares(residuals, (x0 - lo) / scale, bounds=(0.0, 1.0), diff_step=1e-3,
                        x_scale=1.0, max_nfev=200)
    fitted = params.replace(**dict(zip(names, lo + sol.x * scale, strict=True)))
    return _with_default(fitted, vendors), names


def _with_default(params: TrainingParams, vendors: list[str]) -> TrainingParams:
    """Set ``default`` efficiency to the mean of the calibrated families."""
    known = [params.gemm_eff[v].value for v in vendors if v in params.gemm_eff and v != "default"]
    return params.replace(gemm_eff_default=float(np.mean(known))) if known else params


def loso(rows: list[dict[str, str]], params: TrainingParams | None = None
         ) -> list[Prediction]:
    """Leave-one-source-out predictions of every training case."""
    params = params or load_params()
    conv = load_conventions()
    from trnlab.validation import source_of

    train = [r for r in rows if r["kind"] == "training" and r["metric"]]
    sources = sorted({source_of(r["case_id"], conv) for r in train})
    out: list[Prediction] = []
    for src in sources:
        held = [r for r in train if source_of(r["case_id"], conv) == src]
        rest = [r for r in train if source_of(r["case_id"], conv) != src]
        fitted, _ = fit(rest, params)
        held_vendors = {VENDOR_OF_CHIP.get(r["chip"], "default") for r in held}
        rest_vendors = {VENDOR_OF_CHIP.get(r["chip"], "default") for r in rest}
        for v in held_vendors - rest_vendors:  # an uncalibrated family takes the default
            fitted = fitted.replace(**{f"gemm_eff_{v}": fitted.gemm_eff["default"].value})
        out += predict(held, fitted)
    return out


def write_params(params: TrainingParams, names: list[str], preds: list[Prediction],
                 loso_preds: list[Prediction] | None = None, path: Path | None = None) -> Path:
    """Write the fitted values (status derived) and the fit summary into training.toml."""
    path = path or params.path
    text = path.read_text(encoding="utf-8")
    for name in names:
        table_key = name.removeprefix("gemm_eff_")
        f = params.gemm_eff[table_key] if name.startswith("gemm_eff_") else params.fields[name]
        text = re.sub(rf"(?m)^({re.escape(table_key)} = \{{ value = )[^,]+(,.*?status = \")"
                      rf"\w+(\", source = \")[^\"]+", rf"\g<1>{f.value:.4g}\g<2>derived\g<3>FIT-TRAIN",
                      text, count=1)
    default = params.gemm_eff["default"].value
    text = re.sub(r'(?m)^(default = \{ value = )[^,]+', rf"\g<1>{default:.4g}", text, count=1)
    summary = [('method = "least squares on log(predicted/measured), bounds = the ranges below '
               '(scipy least_squares, trf)"'),
               f'fitted = "{", ".join(names)}"',
               f'cases = {sum(math.isfinite(p.rel_error) for p in preds)}',
               f'date = "{dt.date.today().isoformat()}"',
               f"mape = {mape(preds):.4f}"]
    if loso_preds is not None:
        summary.append(f"loso_mape = {mape(loso_preds):.4f}")
    summary.append("mape_by_source = { " + ", ".join(
        f'"{k}" = {v[1]:.4f}' for k, v in by_source(preds).items()) + " }")
    if loso_preds is not None:
        summary.append("loso_by_source = { " + ", ".join(
            f'"{k}" = {v[1]:.4f}' for k, v in by_source(loso_preds).items()) + " }")
    text = re.sub(r"(?ms)^\[fit\]\n.*?(?=^\[param\])", "[fit]\n" + "\n".join(summary) + "\n\n",
                  text, count=1)
    return write_text(path, text)


def run(cases: Path, with_loso: bool = True) -> tuple[list[Prediction], list[Prediction] | None]:
    """Fit on ``cases``, write data/perf/training.toml, return (predictions, LOSO predictions)."""
    rows = read_cases(cases)
    params = load_params()
    fitted, names = fit(rows, params)
    preds = predict(rows, fitted)
    loso_preds = loso(rows, params) if with_loso else None
    write_params(fitted, names, preds, loso_preds)
    from trnlab.studies import training_params

    training_params._load.cache_clear()
    return preds, loso_preds
