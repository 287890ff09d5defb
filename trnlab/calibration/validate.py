"""Predict published measurements (case schema of data/measurements/SCHEMA.md) and score them.

``trnlab validate CASES.csv --out PRED.csv`` predicts each row's ``metric`` in that row's units
with the training model, converting step time with the *source's own* FLOP convention
(data/measurements/conventions.toml). A field a case leaves empty takes the one rule of
:mod:`trnlab.calibration.defaults` for it (layout fields: the fastest layout that fits, as a tuned
recipe would), and ``why`` names every default taken.

A malformed cell (a number that is not one, a boolean that is not ``true``/``false``) stops the
file with one line naming file, line, case, column and value. A row that cannot be predicted (an
unknown chip, system or metric, a missing architecture) gets an empty prediction and its reason;
it never stops the others.
"""

from __future__ import annotations

import csv
import io as _io
import math
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trnlab import catalog
from trnlab._files import write_text
from trnlab._paths import data_dir
from trnlab.calibration import defaults as rules
from trnlab.calibration.cases import spec_from_case
from trnlab.catalog.loader import read_toml
from trnlab.catalog.params import ServingParams, TrainingParams, load_training
from trnlab.engine import serving as serving_engine
from trnlab.engine.hardware import hardware, system_of
from trnlab.engine.layouts import enumerate_layouts, reason_codes
from trnlab.engine.shape import model_shape
from trnlab.engine.training import divisors_or_one, evaluate
from trnlab.errors import CatalogError, TrnlabError, bad_value
from trnlab.perf.train import RECOMPUTE
from trnlab.workloads import TransformerSpec, conventions

SCHEMA_COLUMNS = ["case_id", "kind", "source", "trust", "chip", "system", "scaleout", "n_chips", "model", "params_b", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "seq_len", "moe_experts", "moe_active", "moe_ffn", "gated_mlp", "tp", "pp", "dp", "cp", "ep", "vpp", "zero", "global_batch", "micro_batch", "precision", "recompute", "input_len", "output_len", "concurrency", "metric", "value", "metric_note", "notes"]
METRICS = ("model_tflops_per_chip", "hw_tflops_per_chip", "mfu", "tokens_per_s_per_chip",
           "sequences_per_s", "step_time_s", "time_to_train_min", "output_tokens_per_s",
           "tpot_ms", "ttft_ms", "input_tokens_per_s", "chip_hours_per_t_tokens")
#: integer columns and their least value (SCHEMA.md: no thousands separators)
INT_COLUMNS = {**dict.fromkeys(("n_chips", "layers", "hidden", "heads", "kv_heads", "head_dim",
                                "vocab", "seq_len", "tp", "pp", "dp", "cp", "ep", "vpp",
                                "global_batch", "micro_batch", "input_len", "output_len"), 1),
               **dict.fromkeys(("ffn", "moe_experts", "moe_active", "moe_ffn"), 0)}
#: the precisions the training model computes in; another is computed as bf16 (and said so)
TRAINING_PRECISIONS = ("bf16", "fp16", "fp8", "mxfp8")


@dataclass
class Prediction:
    """One case: the published value, our prediction (NaN when none) and why.

    ``why`` is the reason a row was not predicted or a caveat, followed by the ``defaults``
    taken for the fields the case left empty (:mod:`trnlab.calibration.defaults`).
    """

    case_id: str
    source: str
    value: float
    predicted: float = math.nan
    why: str = ""
    layout: dict[str, Any] = field(default_factory=dict)
    defaults: list[str] = field(default_factory=list)

    @property
    def rel_error(self) -> float:
        ok = math.isfinite(self.predicted) and math.isfinite(self.value) and self.value != 0
        return self.predicted / self.value - 1.0 if ok else math.nan


def read_cases(path: Path) -> list[dict[str, str]]:
    """Read a case file; a malformed one raises one line naming the file, line, case, column
    and value.

    Malformed = wrong header or field count, or a cell that is not of its column's type
    (integers, ``params_b`` and ``value`` numbers, ``gated_mlp`` true/false, ``zero``
    0-3/fsdp, ``concurrency`` an integer or ``offline``). An unknown id (chip, metric, ...) is
    not malformed: :func:`predict` leaves that row unpredicted with its reason.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise TrnlabError(f"{path}: cannot read: {getattr(err, 'strerror', None) or err}"
                          ) from err
    reader = csv.DictReader(_io.StringIO(text))
    header = reader.fieldnames or []
    if header != SCHEMA_COLUMNS:
        missing = [c for c in SCHEMA_COLUMNS if c not in header]
        extra = [c for c in header if c not in SCHEMA_COLUMNS]
        detail = (f"missing column {missing[0]!r}" if missing else
                  f"unknown column {extra[0]!r}" if extra else "columns out of order")
        raise TrnlabError(f"{path}: header: {detail}; expected the columns of "
                          "data/measurements/SCHEMA.md")
    rows = list(reader)
    for i, row in enumerate(rows, start=2):
        if None in row or any(v is None for v in row.values()):
            raise TrnlabError(f"{path}: line {i}: wrong number of fields")
        _check_types(row, f"{path}: line {i} ({row['case_id'] or '?'})")
    return rows


def _check_types(row: dict[str, str], where: str) -> None:
    for col, least in INT_COLUMNS.items():
        text = row[col].strip()
        if text and not (re.fullmatch(r"[0-9]+", text) and int(text) >= least):
            raise TrnlabError(bad_value(where, col, row[col], f"an integer >= {least} or empty "
                                        "(data/measurements/SCHEMA.md)"))
    for col in ("params_b", "value"):
        text = row[col].strip()
        if text and not (_is_number(text) and float(text) > 0):
            raise TrnlabError(bad_value(where, col, row[col], "a positive number or empty"))
    checks = (("gated_mlp", ("true", "false"), "true, false or empty"),
              ("zero", ("0", "1", "2", "3", "fsdp"), "0, 1, 2, 3, fsdp or empty"))
    for col, allowed, text in checks:
        if row[col].strip() and row[col].strip().lower() not in allowed:
            raise TrnlabError(bad_value(where, col, row[col], text))
    conc = row["concurrency"].strip()
    if conc and conc != "offline" and not (conc.isdigit() and int(conc) >= 1):
        raise TrnlabError(bad_value(where, "concurrency", row["concurrency"],
                                    "an integer >= 1, offline or empty"))


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def check_output(out: Path, cases: Path | None = None) -> Path:
    """Refuse an output path ``validate`` cannot write: a directory, a folder that does not
    exist (it is not created), a folder that is not writable, or the case file itself."""
    out = Path(out)
    where = f"--out {out}"
    if out.is_dir():
        raise TrnlabError(f"{where}: is a directory; give a file name, e.g. "
                          f"{out / 'predictions.csv'}")
    parent = out.parent
    if not parent.exists():
        raise TrnlabError(f"{where}: folder {parent} does not exist (create it first: "
                          "validate does not create folders)")
    if not parent.is_dir():
        raise TrnlabError(f"{where}: {parent} is not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TrnlabError(f"{where}: folder {parent} is not writable")
    if cases is not None and out.resolve() == Path(cases).resolve():
        raise TrnlabError(f"{where}: is the case file itself; write the predictions elsewhere")
    return out


def load_conventions(path: Path | None = None) -> dict[str, dict[str, Any]]:
    path = path or data_dir() / "measurements" / "conventions.toml"
    doc = read_toml(path)
    if "source" not in doc:
        raise CatalogError(f"{path}: needs [source.<case-id prefix>] tables")
    return doc["source"]


def source_of(case_id: str, conv: dict[str, dict[str, Any]]) -> str:
    """The conventions key of a case (longest prefix), or its first two id parts."""
    hits = [k for k in conv if case_id.startswith(k)]
    return max(hits, key=len) if hits else "-".join(case_id.split("-")[:2])


def _int(row: dict[str, str], col: str) -> int | None:
    return int(row[col]) if row[col].strip() else None


#: conventions.toml ``defaults`` keys that fill a case column (the rest are spec fields)
_COLUMN_DEFAULTS = ("vocab", "kv_heads", "gated_mlp", "ffn", "ffn_per_hidden")


def _spec(row: dict[str, str], conv: dict[str, Any]) -> TransformerSpec:
    """The architecture of a row whose empty columns :func:`rules.fill` has filled."""
    extra = {k: v for k, v in conv.get("defaults", {}).items() if k not in _COLUMN_DEFAULTS}
    return spec_from_case(row, extra)


def _flops_per_iteration(kind: str, spec: TransformerSpec, gb: int, s: int, n: int) -> float:
    if kind == "megatron2021":
        return float(conventions.megatron2021_flops_per_iteration(spec, gb, s))
    if kind == "megatron_core":
        return float(conventions.megatron_core_flops_per_iteration(spec, gb, s))
    if kind == "maxtext_legacy":
        return float(conventions.maxtext_legacy_tflops_per_device(spec, gb / n, s)) * 1e12 * n
    if kind == "maxtext":
        return float(conventions.maxtext_flops_per_token(spec, s)) * gb * s
    return float(model_shape(spec).model_flops_per_token(s)) * gb * s


def _unpredictable(row: dict[str, str]) -> str:
    """Why a (filled) row cannot be predicted at all, or ``""``."""
    kind = rules.kind_of(row)
    if not kind:
        return f"kind {row['kind']!r} is not training or inference (nor is the case_id prefix)"
    if not row["metric"]:
        return "the case has no normalised metric"
    if row["metric"] not in METRICS:
        return f"metric {row['metric']!r} is not in the schema (allowed: {', '.join(METRICS)})"
    if not row["chip"]:
        return "chip is empty: the accelerator is needed"
    if row["chip"] not in catalog.default().chips:
        return (f"chip {row['chip']!r} is not in the hardware catalog "
                "(data/hardware/chips.toml)")
    if row["system"] and row["system"] not in catalog.default().systems:
        return (f"system {row['system']!r} is not in the hardware catalog "
                "(data/hardware/systems.toml)")
    if not row["n_chips"]:
        return "n_chips is empty and the parallel degrees do not give it"
    for col in ("layers", "hidden", "heads"):
        if not row[col]:
            return f"{col} is empty: the architecture is needed"
    return ""


def _system(row: dict[str, str], kind: str, notes: list[str]) -> str:
    if row["system"]:
        return row["system"]
    system = system_of(row["chip"])
    notes.append(rules.note("system", system, kind))
    return system


def _ranks(row: dict[str, str], kind: str, notes: list[str]) -> int:
    ranks, stated = rules.ranks_per_chip(row)
    if not stated and ranks != 1:
        notes.append(rules.note("ranks_per_chip", ranks, kind))
    return ranks


def _predict_training(row: dict[str, str], conv: dict[str, Any], params: TrainingParams
                      ) -> tuple[float, str, dict[str, Any], list[str]]:
    """(value in the metric's units, reason or caveat, layout, defaults taken) of a training
    case."""
    row, notes = rules.fill(row, conv)
    if reason := _unpredictable(row):
        return math.nan, reason, {}, notes
    spec = _spec(row, conv)
    n, gb, s = int(row["n_chips"]), int(row["global_batch"]), int(row["seq_len"])
    system = _system(row, "training", notes)
    ranks = _ranks(row, "training", notes)
    tp, pp, dp, cp, ep, vpp = (_int(row, c) for c in ("tp", "pp", "dp", "cp", "ep", "vpp"))
    if tp and ranks > 1:  # Neuron ranks are NeuronCores: TP shards a layer over tp/ranks chips
        if dp and tp < ranks:  # a chip holds ranks/tp DP replicas: dp counts ranks, not chips
            dp = max(1, dp * tp // ranks)
        tp = max(1, tp // ranks)
    zero = {"": conv.get("zero", 1), "fsdp": 3}.get(row["zero"])
    zero = int(row["zero"]) if zero is None else zero
    if not row["zero"]:
        notes.append(rules.note("zero", zero, "training",
                                rules.DECLARED if "zero" in conv else ""))
    rc = row["recompute"]
    recomputes = [RECOMPUTE.index(rc)] if rc in RECOMPUTE else [0, 1, 2]
    mb = _int(row, "micro_batch")
    cfg = enumerate_layouts(spec, n, micro_batches=[mb] if mb else [1, 2, 4, 8], zeros=[zero],
                            recomputes=recomputes, vpps=[vpp] if vpp else list(range(1, 13)),
                            ep_values=[ep] if ep else divisors_or_one(spec), tp_max=n,
                            cp_max=n)
    # every published layout field is a filter (ep, vpp, micro_batch, zero and recompute were
    # enumerated at their published values already); an empty pp is 1 when tp is stated and dp
    # is not, an empty cp is 1 unless tp, pp and dp are stated; a published dp leaves
    # tp x pp x cp = n_chips / dp to the search
    pp = pp or (1 if tp and not dp else None)
    given = {"tp": tp, "pp": pp, "dp": dp, "cp": cp or (None if tp and pp and dp else 1),
             "ep": ep, "vpp": vpp, "micro_batch": mb, "zero": zero,
             "recompute": recomputes[0] if len(recomputes) == 1 else None}
    keep = np.ones(cfg["tp"].size, dtype=bool)
    for key, value in given.items():
        if value:
            keep &= cfg[key] == value
    cfg = {k: v[keep] for k, v in cfg.items()}
    if not cfg["tp"].size:
        return math.nan, "the published layout is not a valid factorisation of n_chips", {}, \
            notes
    precision = row["precision"] if row["precision"] in TRAINING_PRECISIONS else "bf16"
    caveats = [] if precision == row["precision"] else [
        f"precision {row['precision']} is computed as bf16 (the training model runs "
        f"{', '.join(TRAINING_PRECISIONS)})"]
    hw = hardware(row["chip"], system, precision, params)
    domain = catalog.system(system).n_chips
    reason = reason_codes(spec, cfg, gb, s, domain, tp_outside_domain=True)
    res = evaluate(spec, hw, cfg, gb, s, params)
    ok = (reason == 0) & res["fits"]
    if not ok.any():
        ok = reason == 0
        caveats.append("the layout does not fit in memory by our model; predicted anyway")
        if not ok.any():
            return math.nan, "the published layout breaks a divisibility rule", {}, notes
    speed = np.where(ok, res["tokens_per_s_per_chip"], -np.inf)
    i = int(np.argmax(speed))
    t = float(res["step_time"][i])
    layout = {k: int(v[i]) for k, v in cfg.items()}
    notes += _layout_notes(row, layout, ranks)
    why = "; ".join(caveats)
    metric = row["metric"]
    if metric in ("model_tflops_per_chip", "hw_tflops_per_chip", "mfu"):
        flops = _flops_per_iteration(conv.get("flops", "none"), spec, gb, s, n)
        value = flops / (t * n * 1e12)
        if metric == "mfu":
            value = flops / (t * n * catalog.chip(row["chip"]).peak(precision))
    elif metric == "tokens_per_s_per_chip":
        value = gb * s / (t * n)
    elif metric == "sequences_per_s":
        value = gb / t
    elif metric == "step_time_s":
        value = t
    elif metric == "chip_hours_per_t_tokens":
        value = n * t / 3600 * 1e12 / (gb * s)
    else:
        return math.nan, f"metric {metric} is not predicted for training yet", layout, notes
    return value, why, layout, notes


def _layout_notes(row: dict[str, str], layout: dict[str, int], ranks: int) -> list[str]:
    """The ``why`` entries of the layout fields the case left empty (schema units: ranks)."""
    fastest = "fastest fitting layout"
    out = []
    if not row["tp"]:
        out.append(rules.note("tp", layout["tp"] * ranks, "training", fastest))
    if not row["pp"]:
        out.append(rules.note("pp", layout["pp"], "training",
                              "n_chips / (tp x dp x cp), tp and dp are stated"
                              if row["tp"] and row["dp"] else
                              "1, tp is stated" if row["tp"] else fastest))
    if not row["dp"]:
        out.append(rules.note("dp", layout["dp"], "training"))
    if not row["cp"]:
        out.append(rules.note("cp", layout["cp"], "training",
                              "n_chips / (tp x pp x dp), they are stated"
                              if row["tp"] and row["dp"] and (row["pp"] or layout["pp"] == 1)
                              and layout["cp"] > 1 else ""))
    if not row["ep"] and not (row["moe_experts"] in ("", "0")):
        out.append(rules.note("ep", layout["ep"], "training", fastest))
    if not row["vpp"]:
        out.append(rules.note("vpp", layout["vpp"], "training", fastest))
    if not row["micro_batch"]:
        out.append(rules.note("micro_batch", layout["micro_batch"], "training", fastest))
    if row["recompute"] not in RECOMPUTE:
        out.append(rules.note("recompute", RECOMPUTE[layout["recompute"]], "training",
                              fastest))
    return out


def predict_training(row: dict[str, str], conv: dict[str, Any],
                     params: TrainingParams) -> tuple[float, str, dict[str, Any]]:
    """Predicted value of a training case in its metric's units, why (the reason or caveat,
    then the defaults taken), layout."""
    value, why, layout, notes = _predict_training(row, conv, params)
    return value, "; ".join(x for x in (why, *notes) if x), layout


def _predict_inference(row: dict[str, str], conv: dict[str, Any],
                       serving: ServingParams | None = None,
                       training: TrainingParams | None = None
                       ) -> tuple[float, str, dict[str, Any], list[str]]:
    """(value, reason, layout, defaults taken) of an inference case."""
    row, notes = rules.fill(row, conv)
    if reason := _unpredictable(row):
        return math.nan, reason, {}, notes
    spec = _spec(row, conv)
    n = int(row["n_chips"])
    system = _system(row, "inference", notes)
    ranks = _ranks(row, "inference", notes)
    if not row["tp"]:
        notes.append(rules.note("tp", n * ranks, "inference"))
    tp = max(1, (_int(row, "tp") or n * ranks) // ranks)
    pp = _int(row, "pp") or 1
    if not row["pp"]:
        notes.append(rules.note("pp", 1, "inference"))
    weights = conv.get("weights") or row["precision"]
    formats = {"weights": weights, "activations": conv.get("activations") or row["precision"],
               "kv": conv.get("kv") or "bf16"}
    inp, out = int(row["input_len"]), int(row["output_len"])
    if conv.get("mode") == "offline" or row["concurrency"] in ("offline", ""):
        extra = {"max_batch": int(conv["max_batch"])} if "max_batch" in conv else {}
        res = serving_engine.offline_throughput(spec, row["chip"], system, tp=tp, pp=pp,
                                                input_len=inp, output_len=out, params=serving,
                                                training=training, **extra, **formats)
        batch = res["batch"]
        if not row["concurrency"]:
            notes.append(rules.note("concurrency", "offline", "inference",
                                    f"offline, as many as fit: batch {batch:.0f}"))
    else:
        batch = float(row["concurrency"])
        raw = serving_engine.evaluate(spec, row["chip"], system, tp=tp, pp=pp, batch=batch,
                                      input_len=inp, output_len=out, params=serving,
                                      training=training, **formats)
        res = {k: float(v) for k, v in raw.items()}
    if not batch or not math.isfinite(res["tpot"]):
        return math.nan, "the model does not fit in memory by our model", {"batch": batch}, \
            notes
    value = {"output_tokens_per_s": res["output_tokens_per_s"],
             "input_tokens_per_s": res["input_tokens_per_s"],
             "tpot_ms": res["tpot"] * 1e3, "ttft_ms": res["ttft"] * 1e3}.get(row["metric"])
    if value is None:
        return math.nan, f"metric {row['metric']} is not predicted for inference", {}, notes
    return value, "", {"tp": tp, "pp": pp, "batch": batch}, notes


def predict_inference(row: dict[str, str], conv: dict[str, Any],
                      serving: ServingParams | None = None) -> tuple[float, str, dict[str, Any]]:
    """Predicted value of an inference case, why (the reason, then the defaults taken), and
    the batch used.

    ``offline`` sources queue every request: the runtime holds as many as fit in memory, up to
    its ``max_batch``; ``static`` sources run the case's concurrency as one batch.
    """
    value, why, layout, notes = _predict_inference(row, conv, serving)
    return value, "; ".join(x for x in (why, *notes) if x), layout


def predict(rows: Iterable[dict[str, str]], params: TrainingParams | None = None,
            serving: ServingParams | None = None) -> list[Prediction]:
    """Predict every row of a case file (training and inference).

    A row that cannot be predicted gets ``predicted = NaN`` and its reason in ``why``; it never
    stops the others. ``params`` is used by the inference rows too (the GEMM efficiencies are
    shared).
    """
    conv = load_conventions()
    params = params or load_training()
    out = []
    for row in rows:
        src = source_of(row["case_id"], conv)
        value = float(row["value"]) if _is_number(row["value"]) else math.nan
        p = Prediction(row["case_id"], src, value)
        kind = rules.kind_of(row)
        try:
            if kind == "inference":
                p.predicted, why, p.layout, p.defaults = _predict_inference(
                    row, conv.get(src, {}), serving, params)
            elif kind == "training":
                p.predicted, why, p.layout, p.defaults = _predict_training(
                    row, conv.get(src, {}), params)
            else:
                why = _unpredictable(row)
        except TrnlabError as err:
            why = f"cannot predict: {err}"
        except Exception as err:  # noqa: BLE001 - a bad row never stops the others
            why = f"cannot predict: {type(err).__name__}: {err}"
        if math.isfinite(p.predicted) and not math.isfinite(p.value):
            why = "; ".join(x for x in ("no published value to compare with", why) if x)
        p.why = "; ".join(x for x in (why, *p.defaults) if x)
        out.append(p)
    return out


def mape(preds: Iterable[Prediction]) -> float:
    """Mean absolute percentage error [1] of the predicted cases (NaN if none)."""
    errs = [abs(p.rel_error) for p in preds if math.isfinite(p.rel_error)]
    return float(np.mean(errs)) if errs else math.nan


def by_source(preds: list[Prediction]) -> dict[str, tuple[int, float]]:
    """Source -> (cases predicted, MAPE)."""
    out = {}
    for src in sorted({p.source for p in preds}):
        group = [p for p in preds if p.source == src and math.isfinite(p.rel_error)]
        if group:
            out[src] = (len(group), mape(group))
    return out


def write_predictions(rows: list[dict[str, str]], preds: list[Prediction], out: Path) -> Path:
    """All input columns plus ``predicted``, ``rel_error``, ``why`` (written atomically; the
    folder must exist, see :func:`check_output`)."""
    out = check_output(Path(out))
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*SCHEMA_COLUMNS, "predicted", "rel_error", "why"],
                            lineterminator="\n")
    writer.writeheader()
    for row, p in zip(rows, preds, strict=True):
        writer.writerow({**row, "predicted": f"{p.predicted:.6g}" if math.isfinite(p.predicted)
                         else "", "rel_error": f"{p.rel_error:.4f}" if math.isfinite(p.rel_error)
                         else "", "why": p.why})
    try:
        return write_text(out, buf.getvalue())
    except OSError as err:
        raise TrnlabError(f"--out {out}: cannot write: {err.strerror or err}") from err
