"""How accurate is the model on published measurements? Every row of a case file, predicted.

:func:`study` predicts each row of a case file (``data/measurements/cases.csv`` by default) with
:func:`trnlab.calibration.validate.predict` (the committed parameters, nothing refitted) and
returns a Dataset over ``case``: the published and predicted value of each row in the row's own
metric, the relative error, and what each row is (kind, source, chip family, features, chip,
vendor, chips, model size, sequence length, precision). Its attrs hold MAPE and median |error|
for training and inference and MAPE per source, chip family and feature (JSON).
:func:`headline` and :func:`reading` format every number from the Dataset.

These are in-sample scores: the training parameters were fitted on these cases.
``trnlab calibrate --scores`` gives the held-out ones (leave-one-source/family/feature-out);
with ``--write`` it keeps them in ``data/perf/scores.toml``, which :func:`study` copies into the
Dataset (attr ``held_out_scores``, JSON) and :func:`held_out_table` / :func:`held_out_reading`
show, saying when the case file has changed since they were computed.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import xarray as xr

from trnlab import catalog
from trnlab._paths import data_dir
from trnlab.calibration import defaults as rules
from trnlab.calibration import scores, validate

KINDS = ("training", "inference")


def default_cases() -> Path:
    """The committed case file."""
    return data_dir() / "measurements" / "cases.csv"


def _float(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _size_b(row: dict[str, str], conv: dict) -> float:
    """Model size [1e9 parameters] from the row's architecture, else its ``params_b``."""
    try:
        filled, _ = rules.fill(row, conv)
        return validate._spec(filled, conv).total_params / 1e9
    except Exception:  # noqa: BLE001 - no architecture: the stated size or NaN
        return _float(row.get("params_b", ""))


def _mape(err: np.ndarray) -> float:
    err = np.abs(err[np.isfinite(err)])
    return float(err.mean()) if err.size else math.nan


def _median(err: np.ndarray) -> float:
    err = np.abs(err[np.isfinite(err)])
    return float(np.median(err)) if err.size else math.nan


def _by(labels: list[str], err: np.ndarray) -> dict[str, list[float]]:
    """label -> [cases predicted, MAPE] over the rows with a finite error."""
    out = {}
    for g in sorted(set(labels) - {""}):
        e = np.array([x for lab, x in zip(labels, err, strict=True) if lab == g])
        n = int(np.isfinite(e).sum())
        if n:
            out[g] = [n, _mape(e)]
    return out


def _held_out(ds: xr.Dataset) -> np.ndarray:
    """Per case: its source is held out of the fits (:func:`validate.held_out`)."""
    conv = validate.load_conventions()
    return np.array([validate.held_out(str(s), conv) for s in ds["source"].values], dtype=bool)


def scores_of(ds: xr.Dataset) -> dict:
    """The scores of ``ds``, computed from its ``predicted`` and ``measured`` (so an edited
    prediction changes them): per kind cases, predicted, MAPE and median |error|, the share of
    rows predicted, and MAPE per source, chip family and feature of the training rows (JSON)."""
    err = ds["predicted"].values / ds["measured"].values - 1.0
    kind = ds["kind"].values.astype(str)
    held = _held_out(ds)
    out: dict = {}
    for k in KINDS:
        e = err[kind == k]
        out[f"{k}_cases"] = int((kind == k).sum())
        out[f"{k}_predicted"] = int(np.isfinite(e).sum())
        out[f"{k}_mape"] = _mape(e)
        out[f"{k}_median_abs_error"] = _median(e)
        for part, mask in (("fitted", ~held), ("held_out", held)):
            out[f"{k}_{part}_cases"] = int(((kind == k) & mask).sum())
            out[f"{k}_{part}_mape"] = _mape(err[(kind == k) & mask])
    out["share_predicted"] = float(np.isfinite(err).mean()) if err.size else math.nan
    train = kind == "training"
    feats = [str(f).split(",") for f in ds["features"].values]
    by_feature = {}
    for f in sorted({x for fs in feats for x in fs} - {""}):
        e = err[train & np.array([f in fs for fs in feats])]
        if np.isfinite(e).any():
            by_feature[f] = [int(np.isfinite(e).sum()), _mape(e)]
    for key in ("source", "family"):
        labels = [str(x) if t else "" for x, t in zip(ds[key].values, train, strict=True)]
        out[f"mape_by_{key}"] = json.dumps(_by(labels, err))
    out["mape_by_feature"] = json.dumps(by_feature)
    return out


def study(cases: str | Path | None = None) -> xr.Dataset:
    """Predict every row of ``cases`` (empty or None: :func:`default_cases`); see the module
    docstring for the Dataset."""
    path = Path(cases) if cases else default_cases()
    rows = validate.read_cases(path)
    preds = validate.predict(rows)
    conv = validate.load_conventions()
    grp = scores.groups(rows)
    chips = catalog.default().chips
    ids = [r["case_id"] for r in rows]
    kinds = [rules.kind_of(r) for r in rows]
    filled = [rules.fill(r, conv.get(p.source, {}))[0] for r, p in zip(rows, preds, strict=True)]
    length = [_float(f["input_len"] if k == "inference" else f["seq_len"])
              for f, k in zip(filled, kinds, strict=True)]

    def var(values, units, long_name):
        return ("case", np.asarray(values), {"units": units, "long_name": long_name})

    ds = xr.Dataset({
        "measured": var([p.value for p in preds], "1", "published value, in the row's metric"),
        "predicted": var([p.predicted for p in preds], "1",
                         "predicted value, in the row's metric (NaN: not predicted)"),
        "rel_error": var([p.rel_error for p in preds], "1", "predicted / measured - 1"),
        "metric": var([r["metric"] for r in rows], "1", "metric of the row (SCHEMA.md)"),
        "kind": var(kinds, "1", "training or inference"),
        "source": var([p.source for p in preds], "1", "source (conventions.toml)"),
        "family": var([grp.get(i, ("", frozenset()))[0] for i in ids], "1",
                      "chip family <vendor>-<generation>"),
        "features": var([",".join(sorted(grp.get(i, ("", frozenset()))[1])) for i in ids], "1",
                        "features of the row, comma-separated"),
        "chip": var([r["chip"] for r in rows], "1", "chip id"),
        "vendor": var([chips[r["chip"]].vendor if r["chip"] in chips else "" for r in rows],
                      "1", "chip vendor (catalog)"),
        "n_chips": var([_float(f["n_chips"]) for f in filled], "1", "chips in the job"),
        "params_b": var([_size_b(r, conv.get(p.source, {})) for r, p in
                         zip(rows, preds, strict=True)], "1",
                        "model size in 1e9 parameters (NaN: unknown)"),
        "seq_len": var(length, "token", "sequence length (inference: prompt length)"),
        "precision": var([r["precision"] for r in rows], "1", "precision"),
        "why": var([p.why for p in preds], "1", "reason not predicted, caveats, defaults"),
    }, coords={"case": ("case", ids, {"units": "1", "long_name": "case id"})})
    ds.attrs = {"title": "Model accuracy on published measurements", "cases_file": path.name,
                **scores_of(ds)}
    ds.attrs["headline"] = headline(ds)
    record = scores.load_record(cases=path)
    ds.attrs["held_out_scores"] = json.dumps(record) if record else ""
    return ds


# ------------------------------------------------------------------------------ the reading
def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if math.isfinite(x) else "n/a"


def headline(ds: xr.Dataset) -> str:
    """One sentence: MAPE and median |error| of training and inference, the MAPE of the rows
    fitted and of those held out of the fits, and the share predicted."""
    a = scores_of(ds)
    parts = [f"{k} MAPE {_pct(a[f'{k}_mape'])} (median {_pct(a[f'{k}_median_abs_error'])}) over "
             f"{a[f'{k}_predicted']} of {a[f'{k}_cases']} cases: "
             f"{a[f'{k}_fitted_cases']} fitted {_pct(a[f'{k}_fitted_mape'])}, "
             f"{a[f'{k}_held_out_cases']} held out {_pct(a[f'{k}_held_out_mape'])}"
             for k in KINDS]
    return f"{'; '.join(parts)}; {_pct(a['share_predicted'])} of all rows predicted"


def _groups(attr: str) -> str:
    return ", ".join(f"{g} {_pct(m)} ({n})" for g, (n, m) in json.loads(attr).items()) or "none"


def reading(ds: xr.Dataset) -> str:
    """The reading of a :func:`study` Dataset as Markdown bullets, every number from ``ds``."""
    a = scores_of(ds)
    train = ds.isel(case=(ds["kind"] == "training").values)
    err = (train["predicted"] / train["measured"] - 1).dropna("case")
    worst = err.sortby(abs(err), ascending=False).isel(case=slice(0, 3))
    worst_text = ", ".join(f"{c} {100 * float(e):+.0f}%" for c, e in
                           zip(worst["case"].values, worst.values, strict=True)) or "none"
    missed = ds["predicted"].isnull().values
    held = sorted({str(src) for src, h in zip(ds["source"].values, _held_out(ds), strict=True)
                   if h})
    held_text = ("the held-out sources " + ", ".join(held) + " (conventions.toml `fit = false`: "
                 "predicted, never fitted)") if held else "no held-out source"
    return "\n".join([
        f"- **Training.** MAPE {_pct(a['training_mape'])}, median |error| "
        f"{_pct(a['training_median_abs_error'])}, over {a['training_predicted']} of "
        f"{a['training_cases']} cases. Largest misses: {worst_text}.",
        f"- **Inference.** MAPE {_pct(a['inference_mape'])}, median |error| "
        f"{_pct(a['inference_median_abs_error'])}, over {a['inference_predicted']} of "
        f"{a['inference_cases']} cases.",
        f"- **By source (training, cases).** {_groups(a['mape_by_source'])}.",
        f"- **By chip family (training).** {_groups(a['mape_by_family'])}.",
        f"- **By feature (training).** {_groups(a['mape_by_feature'])}.",
        f"- **Not predicted.** {int(missed.sum())} of {ds.sizes['case']} rows "
        "(the `why` variable says why).",
        f"- **In-sample, but for {held_text}.** The parameters were fitted on the other cases, "
        "so their errors are in-sample; the held-out scores (leave-one-source-, chip-family- "
        "and feature-out, `trnlab calibrate --scores --write`) are the honest guide for a "
        "chip generation not measured here.",
    ])


def _record(ds: xr.Dataset) -> dict | None:
    text = ds.attrs.get("held_out_scores", "")
    return json.loads(text) if text else None


def held_out_table(ds: xr.Dataset) -> list[dict]:
    """One row per group of each leave-one-group-out of the stored scores: ``held out`` (source,
    family, feature), ``group``, ``cases``, the group's ``in-sample MAPE [%]`` (this Dataset's,
    NaN for a group it lacks) beside its ``held-out MAPE [%]``; [] when none are stored."""
    record = _record(ds)
    if not record:
        return []
    rows = []
    for key in scores.KEYS:
        fitted = json.loads(ds.attrs.get(f"mape_by_{key}", "{}"))
        for group, v in record.get(key, {}).items():
            in_sample = fitted.get(group, (0, math.nan))[1]
            rows.append({"held out": key, "group": group, "cases": int(v["cases"]),
                         "in-sample MAPE [%]": round(100 * float(in_sample), 1),
                         "held-out MAPE [%]": round(100 * float(v["mape"]), 1)})
    return rows


def held_out_reading(ds: xr.Dataset) -> str:
    """The stored held-out scores in one paragraph, every number from ``ds``'s record."""
    record = _record(ds)
    if not record:
        return ("No held-out scores are stored: `trnlab calibrate --scores --write` computes "
                "them (about half an hour) and keeps them in data/perf/scores.toml.")
    meta, held, par = record["meta"], record["held_out"], record["parameters"]
    stale = (" **The case file has changed since: these scores are stale; rerun `trnlab "
             "calibrate --scores --write`.**") if record["stale"] else ""
    bounds = ", ".join(f"{b['name']} ({b['side']} bound)" for b in par["at_bounds"]) or "none"
    pairs = ", ".join(f"{c['a']}/{c['b']} r = {c['r']:+.2f}"
                      for c in par["strongly_correlated"]) or "none"
    return (f"Computed on {meta['date']} over {meta['cases']} training cases of "
            f"{meta['case_file']} ({meta['predicted']} predicted).{stale} Fitted on all of "
            f"them: MAPE {_pct(meta['in_sample_mape'])}. Each group left out of the fit and "
            f"predicted: leave-one-source-out {_pct(held['source'])}, leave-one-chip-family-out "
            f"{_pct(held['family'])}, leave-one-feature-out {_pct(held['feature'])}. Fitted "
            f"parameters at a bound: {bounds}; correlated above |r| = {scores.STRONG}: {pairs}.")
