"""Honest scores of the calibration beside leave-one-source-out.

* :func:`groups`: each case's **chip family** and **features**.
* :func:`leave_one_group_out`: refit without a chip family (or without every case with a
  feature) and predict the cases left out, with the machinery of
  :func:`trnlab.calibration.fit.leave_out` (the same as leave-one-source-out).
* :func:`parameter_correlations`: how well the data pin each fitted parameter: correlations
  from the least-squares Jacobian at the optimum, and the parameters that sit at a bound.
* :func:`write_record` / :func:`load_record`: the scores of a run kept in
  ``data/perf/scores.toml`` (``trnlab calibrate --scores --write``), with the digest of the case
  file they were computed on, so that a reader (notebook 00) shows them and says when the case
  file has changed since.

**Chip family rule** (the catalog has no family field, and ``year`` splits H100 (2022) from H200
(2024)): ``<vendor>-<generation>``, the generation read from the chip's catalog ``name``:
NVIDIA: the architecture of the model number's letter (A100 -> ampere, H100/H800/H200 ->
hopper, B200/GB200/B300 -> blackwell); Google: the TPU version (``tpu-v5p``, ``tpu-v7x``);
AWS: the product and its generation number, 1 when the name has none (``trainium1``,
``trainium2``, ``inferentia2``); AMD: the model number (``mi300``, ``mi355``). A name that
matches none of these takes the chip id.

**Feature rule** (from the row's own fields; a row has any number of them):
``moe`` if ``moe_experts`` > 0; ``long-context`` if ``seq_len`` >= 32768; ``fsdp`` if ``zero``
is ``3`` or ``fsdp``, or empty and the source's conventions declare ZeRO-3 (not the notes' text:
a page's "FSDP = 0: use DDP" or "no FSDP column" names it without using it); ``fp8`` if
``precision`` is ``fp8`` or ``mxfp8``
(the precisions the fit's FP8 factor applies to); ``pipeline`` if ``pp`` > 1. An empty cell
gives no feature.
"""

from __future__ import annotations

import datetime
import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trnlab import catalog
from trnlab._files import write_text
from trnlab._paths import data_dir
from trnlab.calibration import fit as fitmod
from trnlab.calibration.validate import (
    Prediction,
    load_conventions,
    load_families,
    mape,
    source_of,
    training_conventions,
)
from trnlab.errors import CatalogError, bad_value

Rows = list[dict[str, str]]

FEATURES = ("moe", "long-context", "fsdp", "fp8", "pipeline")
#: the leave-one-group-out scores, in the order they are run, printed and stored
KEYS = ("source", "family", "feature")
LONG_CONTEXT = 32768
FP8_CLASS = ("fp8", "mxfp8")
NVIDIA_ARCH = {"A": "ampere", "H": "hopper", "B": "blackwell"}
#: singular values of the Jacobian below this fraction of the largest are treated as zero
CUTOFF = 1e-10
#: |correlation| above which two fitted parameters are reported as not separately determined
STRONG = 0.8
#: a scaled parameter within this of 0 or 1 is at its bound
AT_BOUND = 1e-3


def family(chip_id: str) -> str:
    """The chip family ``<vendor>-<generation>`` of a catalog chip (module docstring)."""
    chip = catalog.chip(chip_id)
    name, vendor = chip.name, chip.vendor
    gen = None
    if vendor == "nvidia" and (m := re.search(r"\bG?([A-Z])\d{2,3}\b", name)):
        gen = NVIDIA_ARCH.get(m.group(1))
    elif vendor == "google" and (m := re.search(r"TPU\s*v?(\d+[a-z]*)", name)):
        gen = f"tpu-v{m.group(1)}"
    elif vendor == "aws" and (m := re.search(r"(Trainium|Inferentia)(\d*)", name)):
        gen = f"{m.group(1).lower()}{m.group(2) or 1}"
    elif vendor == "amd" and (m := re.search(r"MI(\d{3})", name)):
        gen = f"mi{m.group(1)}"
    return f"{vendor}-{gen or chip.id}"


def _int(row: dict[str, str], col: str) -> int:
    cell = row.get(col, "").strip()
    return int(float(cell)) if cell else 0


def features(row: dict[str, str], declared_zero: Any = "") -> frozenset[str]:
    """The features of a case row (module docstring); ``declared_zero``: the ZeRO stage its
    source's conventions declare for an empty ``zero`` cell."""
    out = set()
    if _int(row, "moe_experts") > 0:
        out.add("moe")
    if _int(row, "seq_len") >= LONG_CONTEXT:
        out.add("long-context")
    zero = row.get("zero", "").strip().lower() or str(declared_zero)
    if zero in ("3", "fsdp"):
        out.add("fsdp")
    if row.get("precision", "").strip().lower() in FP8_CLASS:
        out.add("fp8")
    if _int(row, "pp") > 1:
        out.add("pipeline")
    return frozenset(out)


def groups(rows: Rows) -> dict[str, tuple[str, frozenset[str]]]:
    """case_id -> (chip family, features) of every row whose chip is in the catalog."""
    chips = catalog.default().chips
    conv, families = load_conventions(), load_families()
    return {r["case_id"]: (family(r["chip"]), features(
        r, training_conventions(r, conv, families).get("zero", "")))
        for r in rows if r["chip"] in chips}


@dataclass
class GroupScores:
    """Leave-one-group-out: per group (cases, MAPE) of the held-out predictions, and the MAPE
    of all held-out predictions (a row in two feature groups counts twice)."""

    key: str
    by_group: dict[str, tuple[int, float]]
    mape: float
    preds: dict[str, list[Prediction]] = field(repr=False)


def _scores(key: str, held: dict[str, list[Prediction]]) -> GroupScores:
    by = {g: (sum(math.isfinite(p.rel_error) for p in ps), mape(ps)) for g, ps in held.items()}
    return GroupScores(key, by, mape([p for ps in held.values() for p in ps]), held)


def leave_one_group_out(rows: Rows, key: str, kind: str = "training", params: Any = None,
                        serving: Any = None, progress: fitmod.Progress = None) -> GroupScores:
    """Hold out each chip family (``key="family"``), each feature (``"feature"``: fit on the
    rows without it, predict the rows with it) or each source (``"source"``: LOSO)."""
    if key == "family":
        group_of = lambda r: family(r["chip"])
    elif key == "feature":
        group_of = features
    elif key == "source":
        conv = load_conventions()
        group_of = lambda r: source_of(r["case_id"], conv)
    else:
        raise ValueError(f"key must be family, feature or source, not {key!r}")
    return _scores(key, fitmod.leave_out(rows, group_of, kind, params, serving, progress,
                                         what=f"{key} "))


@dataclass
class Correlations:
    """Fitted-parameter correlations from the Jacobian at the optimum."""

    names: list[str]
    matrix: np.ndarray  # NaN where a parameter's variance is zero or undefined
    strong: list[tuple[str, str, float]]  # pairs with |r| > STRONG, strongest first
    at_bounds: list[tuple[str, str, float]]  # (name, "lower"/"upper", value)
    params: Any = None  # the fitted parameters (rounded to the digits written)


def correlations_of(jac: np.ndarray, names: list[str], x: np.ndarray | None = None,
                    lo: np.ndarray | None = None, hi: np.ndarray | None = None,
                    params: Any = None) -> Correlations:
    """Correlations from a Jacobian: cov ~ (JᵀJ)⁻¹, r_ij = cov_ij / sqrt(cov_ii cov_jj), of the
    free parameters; ``x`` in [0, 1] per parameter marks those at a bound, which the bounded fit
    holds fixed (their rows are NaN). The inverse is taken from the singular values of J with a
    relative cutoff (``CUTOFF``), so the covariance stays positive semi-definite and |r| <= 1
    however ill-conditioned the problem."""
    jac = np.asarray(jac, dtype=float)
    n = len(names)
    bounds = []
    if x is not None:
        for i, u in enumerate(np.asarray(x, dtype=float)):
            side = "lower" if u <= AT_BOUND else "upper" if u >= 1 - AT_BOUND else None
            if side:
                value = (lo[i] + u * (hi[i] - lo[i])) if lo is not None and hi is not None \
                    else float(u)
                bounds.append((names[i], side, float(value)))
    at_bound = {b[0] for b in bounds}
    free = np.array([name not in at_bound for name in names])
    corr = np.full((n, n), np.nan)
    if free.any():
        _, sv, vt = np.linalg.svd(jac[:, free], full_matrices=False)
        keep = sv > CUTOFF * sv.max() if sv.size and sv.max() > 0 else np.zeros(sv.shape, bool)
        cov = (vt[keep].T / sv[keep] ** 2) @ vt[keep]
        sd = np.sqrt(np.clip(np.diag(cov), 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            sub = np.clip(cov / np.outer(sd, sd), -1.0, 1.0)
        corr[np.ix_(free, free)] = np.where(np.isfinite(sub), sub, np.nan)
    strong = sorted(((names[i], names[j], float(corr[i, j])) for i in range(n)
                     for j in range(i + 1, n) if abs(corr[i, j]) > STRONG),
                    key=lambda t: -abs(t[2]))
    return Correlations(list(names), corr, strong, bounds, params)


def parameter_correlations(rows: Rows, params: Any = None,
                           progress: fitmod.Progress = None) -> Correlations:
    """Fit the training parameters to ``rows`` (starting from ``params``, default
    data/perf/training.toml) and return the fitted parameters' correlations and bounds."""
    info: dict[str, Any] = {}
    fitted, _names = fitmod.fit(rows, params, progress, "training fit", info=info)
    sol = info["solution"]
    return correlations_of(sol.jac, info["names"], sol.x, info["lo"], info["hi"], fitted)


def _pct(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.1%}"


def run(rows: Rows, kind: str = "training", progress: fitmod.Progress = None) -> dict[str, Any]:
    """Everything ``trnlab calibrate --scores`` prints: the fit (MAPE and correlations), then
    leave-one-source-, family- and feature-out. Writes nothing."""
    from trnlab.calibration.validate import predict
    from trnlab.catalog.params import load_serving, load_training

    say = progress or (lambda _m: None)
    params, serving = load_training(), load_serving()
    cases = fitmod._kind(rows, kind)
    say(f"[1/4] fitting the {kind} parameters on {len(cases)} cases")
    corr = parameter_correlations(rows, params, progress)
    preds = predict(cases, corr.params, serving)
    out: dict[str, Any] = {"cases": cases, "preds": preds, "mape": mape(preds),
                           "correlations": corr}
    for k, key in enumerate(KEYS, start=2):
        say(f"[{k}/4] leave-one-{key}-out")
        out[key] = leave_one_group_out(rows, key, kind, params, serving, progress)
    return out


def report(result: dict[str, Any]) -> str:
    """A compact table: per group, the in-sample MAPE and the held-out MAPE."""
    by_id = {p.case_id: p for p in result["preds"]}
    lines = [f"{'held out':12s} {'group':22s} {'cases':>5s} {'MAPE':>7s} {'held-out':>9s}"]
    lines.append(f"{'(none)':12s} {'all':22s} {len(result['cases']):5d} "
                 f"{_pct(result['mape']):>7s} {'':>9s}")
    for key in KEYS:
        sc: GroupScores = result[key]
        for g, (n, err) in sc.by_group.items():
            fitted = mape(by_id[p.case_id] for p in sc.preds[g] if p.case_id in by_id)
            lines.append(f"{key:12s} {g:22s} {n:5d} {_pct(fitted):>7s} {_pct(err):>9s}")
        total = sum(n for n, _ in sc.by_group.values())
        lines.append(f"{key:12s} {'all held out':22s} {total:5d} {'':>7s} {_pct(sc.mape):>9s}")
    corr: Correlations = result["correlations"]
    lines.append(f"strongly correlated fitted parameters (|r| > {STRONG}):")
    lines += [f"  {a:22s} {b:22s} r = {r:+.3f}" for a, b, r in corr.strong] or ["  none"]
    lines.append("parameters at a bound:")
    lines += [f"  {n:22s} {side} ({v:.4g})" for n, side, v in corr.at_bounds] or ["  none"]
    lines.append("(MAPE: fitted on all cases; held-out: refit without the group, predict it)")
    return "\n".join(lines)


def default_record_path() -> Path:
    """``data/perf/scores.toml``: the scores of the last ``trnlab calibrate --scores --write``."""
    return data_dir() / "perf" / "scores.toml"


def digest(path: Path) -> str:
    """SHA-256 of a case file's bytes [hex]: what the stored scores were computed on."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _num(x: float | None) -> str:
    return "nan" if x is None or not math.isfinite(x) else f"{x:.4f}"


def record_text(result: dict[str, Any], cases: Path, date: str | None = None) -> str:
    """The TOML text of a :func:`run` result: the in-sample MAPE, each leave-one-group-out's
    held-out MAPE and its groups (cases, MAPE), the fitted parameters correlated above
    ``STRONG`` and those at a bound, stamped with the date and the case file's digest."""
    corr: Correlations = result["correlations"]
    predicted = sum(math.isfinite(p.rel_error) for p in result["preds"])
    lines = ["# Honest scores of the training model: written by `trnlab calibrate --scores "
             "--write` (trnlab/calibration/scores.py), read by notebook 00. MAPE as fractions;",
             "# each leave-one-group-out refits the parameters without the group and predicts "
             "it. `cases_sha256` is the digest of the case file they were computed on.",
             "[meta]",
             f'date = "{date or datetime.date.today().isoformat()}"',
             f'case_file = "{Path(cases).name}"',
             f'cases_sha256 = "{digest(cases)}"',
             f"cases = {len(result['cases'])}",
             f"predicted = {predicted}",
             f"in_sample_mape = {_num(result['mape'])}",
             "", "[held_out]"]
    lines += [f"{key} = {_num(result[key].mape)}" for key in KEYS]
    for key in KEYS:
        lines += ["", f"[{key}]"]
        lines += [f'"{g}" = {{ cases = {n}, mape = {_num(m)} }}'
                  for g, (n, m) in result[key].by_group.items()]
    lines += ["", "[parameters]",
              "strongly_correlated = [" + ", ".join(
                  f'{{ a = "{a}", b = "{b}", r = {r:.3f} }}' for a, b, r in corr.strong) + "]",
              "at_bounds = [" + ", ".join(
                  f'{{ name = "{n}", side = "{side}", value = {v:.4g} }}'
                  for n, side, v in corr.at_bounds) + "]", ""]
    return "\n".join(lines)


def write_record(result: dict[str, Any], cases: Path, path: Path | None = None) -> Path:
    """Write :func:`record_text` to ``path`` (default :func:`default_record_path`) atomically."""
    return write_text(path or default_record_path(), record_text(result, cases))


def load_record(path: Path | None = None, cases: Path | None = None) -> dict[str, Any] | None:
    """The stored scores (None when none were written), with ``stale`` = the case file
    ``cases`` (default: the committed one) differs from the one they were computed on."""
    path = path or default_record_path()
    if not path.exists():
        return None
    try:
        with path.open("rb") as fh:
            rec = tomllib.load(fh)
        sha = rec["meta"]["cases_sha256"]
        missing = [k for k in ("meta", "held_out", "parameters", *KEYS) if k not in rec]
    except (tomllib.TOMLDecodeError, KeyError, TypeError) as err:
        raise CatalogError(bad_value(str(path), "scores record", type(err).__name__,
                                     "the TOML `trnlab calibrate --scores --write` writes "
                                     "(rerun it)")) from err
    if missing:
        raise CatalogError(bad_value(str(path), "tables", ", ".join(missing),
                                     "missing: rerun `trnlab calibrate --scores --write`"))
    case_file = Path(cases) if cases else data_dir() / "measurements" / "cases.csv"
    rec["stale"] = sha != digest(case_file)
    return rec
