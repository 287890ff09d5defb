"""Predict published measurements (case schema of data/measurements/SCHEMA.md) and score them.

``trnlab validate CASES.csv --out PRED.csv`` predicts each row's ``metric`` in that row's units
with the training model, converting step time with the *source's own* FLOP convention
(data/measurements/conventions.toml). Fields a case leaves empty (recompute, micro-batch, the
TP/PP split) are chosen the way a tuned recipe would: the fastest layout that fits in memory.
"""

from __future__ import annotations

import csv
import io as _io
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trnlab import catalog
from trnlab._files import write_text
from trnlab._paths import data_dir
from trnlab.calibration.cases import spec_from_case
from trnlab.catalog.loader import read_toml
from trnlab.catalog.params import ServingParams, TrainingParams, load_training
from trnlab.engine import serving as serving_engine
from trnlab.engine.hardware import hardware, system_of
from trnlab.engine.layouts import enumerate_layouts, reason_codes
from trnlab.engine.shape import model_shape
from trnlab.engine.training import evaluate
from trnlab.errors import CatalogError, TrnlabError, bad_value
from trnlab.perf.train import RECOMPUTE
from trnlab.workloads import TransformerSpec, conventions

SCHEMA_COLUMNS = ["case_id", "kind", "source", "trust", "chip", "system", "scaleout", "n_chips", "model", "params_b", "layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "seq_len", "moe_experts", "moe_active", "moe_ffn", "gated_mlp", "tp", "pp", "dp", "cp", "ep", "vpp", "zero", "global_batch", "micro_batch", "precision", "recompute", "input_len", "output_len", "concurrency", "metric", "value", "metric_note", "notes"]
METRICS = ("model_tflops_per_chip", "hw_tflops_per_chip", "mfu", "tokens_per_s_per_chip",
           "sequences_per_s", "step_time_s", "time_to_train_min", "output_tokens_per_s",
           "tpot_ms", "ttft_ms", "input_tokens_per_s", "chip_hours_per_t_tokens")


@dataclass
class Prediction:
    """One case: the published value, our prediction (NaN when none) and why."""

    case_id: str
    source: str
    value: float
    predicted: float = math.nan
    why: str = ""
    layout: dict[str, Any] = field(default_factory=dict)

    @property
    def rel_error(self) -> float:
        return self.predicted / self.value - 1.0 if math.isfinite(self.predicted) else math.nan


def read_cases(path: Path) -> list[dict[str, str]]:
    """Read a case file; a malformed one raises one line naming the file, row and column."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise TrnlabError(f"{path}: cannot read: {err.strerror}") from err
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
        where = f"{path}: line {i} ({row['case_id'] or '?'})"
        if row["kind"] not in ("training", "inference"):
            raise TrnlabError(bad_value(where, "kind", row["kind"], "training or inference"))
        if row["metric"] and row["metric"] not in METRICS:
            raise TrnlabError(bad_value(where, "metric", row["metric"],
                                        f"allowed: {', '.join(METRICS)}"))
        for col in ("n_chips", "value"):
            if row["metric"] and not _is_number(row[col]):
                raise TrnlabError(bad_value(where, col, row[col], "must be a number"))
    return rows


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


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
    return int(float(row[col])) if row[col].strip() else None


def _spec(row: dict[str, str], conv: dict[str, Any]) -> TransformerSpec:
    defaults = dict(conv.get("defaults", {}))
    hidden = int(row["hidden"])
    if "ffn_per_hidden" in defaults:
        defaults["ffn"] = defaults.pop("ffn_per_hidden") * hidden
    defaults.setdefault("kv_heads", int(row["heads"]))
    defaults.setdefault("gated_mlp", False)
    return spec_from_case(row, defaults)


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


def predict_training(row: dict[str, str], conv: dict[str, Any],
                     params: TrainingParams) -> tuple[float, str, dict[str, Any]]:
    """Predicted value of a training case in its metric's units, why (if empty), layout."""
    spec = _spec(row, conv)
    n, gb, s = int(row["n_chips"]), int(row["global_batch"]), int(row["seq_len"])
    system = row["system"] or system_of(row["chip"])
    ranks = int(m.group(1)) if (m := re.search(r"ranks_per_chip=(\d+)", row["notes"])) else 1
    tp, pp, cp, ep, vpp = (_int(row, c) for c in ("tp", "pp", "cp", "ep", "vpp"))
    if tp and ranks > 1:  # Neuron ranks are NeuronCores: TP shards a layer over tp/ranks chips
        tp = max(1, tp // ranks)
    zero = {"": conv.get("zero", 1), "fsdp": 3}.get(row["zero"])
    zero = int(row["zero"]) if zero is None else zero
    rc = row["recompute"]
    recomputes = [RECOMPUTE.index(rc)] if rc in RECOMPUTE else [0, 1, 2]
    mb = _int(row, "micro_batch")
    cfg = enumerate_layouts(spec, n, micro_batches=[mb] if mb else [1, 2, 4, 8], zeros=[zero],
                            recomputes=recomputes, vpps=[vpp] if vpp else list(range(1, 13)),
                            ep_values=[ep or 1], tp_max=n, cp_max=n)
    keep = np.ones(cfg["tp"].size, dtype=bool)
    for key, given in (("tp", tp), ("pp", pp or (1 if tp else None)), ("cp", cp or 1)):
        if given:
            keep &= cfg[key] == given
    cfg = {k: v[keep] for k, v in cfg.items()}
    if not cfg["tp"].size:
        return math.nan, "the published layout is not a valid factorisation of n_chips", {}
    precision = row["precision"] if row["precision"] in ("bf16", "fp16", "fp8", "mxfp8") \
        else "bf16"
    hw = hardware(row["chip"], system, precision, params)
    domain = catalog.system(system).n_chips
    reason = reason_codes(spec, cfg, gb, s, domain, tp_outside_domain=True)
    res = evaluate(spec, hw, cfg, gb, s, params)
    ok = (reason == 0) & res["fits"]
    why = ""
    if not ok.any():
        ok = reason == 0
        why = "the layout does not fit in memory by our model; predicted anyway"
        if not ok.any():
            return math.nan, "the published layout breaks a divisibility rule", {}
    speed = np.where(ok, res["tokens_per_s_per_chip"], -np.inf)
    i = int(np.argmax(speed))
    t = float(res["step_time"][i])
    layout = {k: int(v[i]) for k, v in cfg.items()}
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
        return math.nan, f"metric {metric} is not predicted for training yet", layout
    return value, why, layout


def predict_inference(row: dict[str, str], conv: dict[str, Any],
                      serving: ServingParams | None = None) -> tuple[float, str, dict[str, Any]]:
    """Predicted value of an inference case, why (if empty), and the batch used.

    ``offline`` sources queue every request: the runtime holds as many as fit in memory, up to
    its ``max_batch``; ``static`` sources run the case's concurrency as one batch.
    """
    spec = _spec(row, conv)
    n = int(row["n_chips"])
    system = row["system"] or system_of(row["chip"])
    ranks = int(m.group(1)) if (m := re.search(r"ranks_per_chip=(\d+)", row["notes"])) else 1
    tp = max(1, (_int(row, "tp") or n) // ranks)
    pp = _int(row, "pp") or 1
    weights = conv.get("weights") or row["precision"]
    formats = {"weights": weights, "activations": conv.get("activations") or row["precision"],
               "kv": conv.get("kv") or "bf16"}
    inp, out = int(row["input_len"]), int(row["output_len"])
    if conv.get("mode") == "offline" or row["concurrency"] == "offline":
        res = serving_engine.offline_throughput(spec, row["chip"], system, tp=tp, pp=pp,
                                                input_len=inp, output_len=out,
                                                max_batch=int(conv.get("max_batch", 8192)),
                                                params=serving, **formats)
        batch = res["batch"]
    else:
        batch = float(row["concurrency"])
        raw = serving_engine.evaluate(spec, row["chip"], system, tp=tp, pp=pp, batch=batch,
                                      input_len=inp, output_len=out, params=serving, **formats)
        res = {k: float(v) for k, v in raw.items()}
    if not batch or not math.isfinite(res["tpot"]):
        return math.nan, "the model does not fit in memory by our model", {"batch": batch}
    value = {"output_tokens_per_s": res["output_tokens_per_s"],
             "input_tokens_per_s": res["input_tokens_per_s"],
             "tpot_ms": res["tpot"] * 1e3, "ttft_ms": res["ttft"] * 1e3}.get(row["metric"])
    if value is None:
        return math.nan, f"metric {row['metric']} is not predicted for inference", {}
    return value, "", {"tp": tp, "pp": pp, "batch": batch}


def predict(rows: Iterable[dict[str, str]], params: TrainingParams | None = None,
            serving: ServingParams | None = None) -> list[Prediction]:
    """Predict every row of a case file (training and inference)."""
    params = params or load_training()
    conv = load_conventions()
    out = []
    for row in rows:
        src = source_of(row["case_id"], conv)
        value = float(row["value"]) if row["value"] else math.nan
        p = Prediction(row["case_id"], src, value)
        if not row["metric"]:
            p.why = "the case has no normalised metric"
        elif row["kind"] == "inference":
            try:
                p.predicted, p.why, p.layout = predict_inference(row, conv.get(src, {}),
                                                                 serving)
            except TrnlabError as err:
                p.why = f"cannot predict: {err}"
        else:
            try:
                p.predicted, p.why, p.layout = predict_training(row, conv.get(src, {}), params)
            except TrnlabError as err:
                p.why = f"cannot predict: {err}"
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
    """All input columns plus ``predicted``, ``rel_error``, ``why`` (written atomically)."""
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*SCHEMA_COLUMNS, "predicted", "rel_error", "why"],
                            lineterminator="\n")
    writer.writeheader()
    for row, p in zip(rows, preds, strict=True):
        writer.writerow({**row, "predicted": f"{p.predicted:.6g}" if math.isfinite(p.predicted)
                         else "", "rel_error": f"{p.rel_error:.4f}" if math.isfinite(p.rel_error)
                         else "", "why": p.why})
    return write_text(Path(out), buf.getvalue())
