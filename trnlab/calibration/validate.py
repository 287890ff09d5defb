"""Predict published measurements (case schema of data/measurements/SCHEMA.md) and score them.

``trnlab validate CASES.csv --out PRED.csv`` predicts each row's ``metric`` in that row's units
with the training model, converting step time with the *source's own* FLOP convention
(data/measurements/conventions.toml: the ``[source.*]`` of its case_id prefix, else the
``[family.*]`` its source or notes name, else "convention unknown" and the PaLM count, said in
``why``). The framework family's software stack (data/perf/stacks.toml: attention kernel, TP
overlap, FSDP reshard, default micro-batch and interleave) and a power limit stated in the notes
(:func:`power_cap_of`) are applied. A field a case leaves empty takes the one rule of
:mod:`trnlab.calibration.defaults` for it (TP/PP split, ep and recompute: the fastest layout
that fits; micro-batch and interleave: the family's default), and ``why`` names every default
taken. A chip whose per-chip inputs are projected (data/perf/chip_efficiency.toml) gets the band
of its prediction at the ends of their ranges in ``why``.

A malformed cell (a number that is not one, a boolean that is not ``true``/``false``) stops the
file with one line naming file, line, case, column and value. A row that cannot be predicted (an
unknown chip, system or metric, a missing architecture) gets an empty prediction and its reason;
it never stops the others.
"""

from __future__ import annotations

import csv
import dataclasses
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
from trnlab.catalog.params import (
    ServingParams,
    TrainingParams,
    load_moe_stacks,
    load_serving,
    load_stacks,
    load_training,
)
from trnlab.engine import serving as serving_engine
from trnlab.engine.hardware import (
    attention_kernel_rate,
    attention_precisions,
    chip_inputs_band,
    format_bytes,
    hardware,
    moe_calibration,
    system_of,
    with_stack,
)
from trnlab.engine.layouts import enumerate_layouts, reason_codes
from trnlab.engine.shape import model_shape
from trnlab.engine.training import divisors_or_one, evaluate
from trnlab.errors import CatalogError, TrnlabError, bad_value
from trnlab.perf.train import RECOMPUTE
from trnlab.workloads import TransformerSpec, conventions
from trnlab.workloads.flops import (
    MEGATRON_MODULES,
    Recompute,
    block_recompute,
    module_recompute,
    saving_recompute,
)
from trnlab.workloads.traffic import FP8_CAST

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
TRAINING_PRECISIONS = ("bf16", "fp16", "fp8", "mxfp8", "fp4", "mxfp4", "nvfp4")


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


def load_families(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """The framework families of conventions.toml (``[family.<id>]``), in the file's order."""
    path = path or data_dir() / "measurements" / "conventions.toml"
    return dict(read_toml(path).get("family", {}))


def family_of(row: dict[str, str], families: dict[str, dict[str, Any]]) -> str:
    """The framework family whose ``match`` words first occur in a row's ``source``,
    ``metric_note`` or ``notes`` (families tried in the file's order), or ``""``."""
    text = " ".join(row.get(c) or "" for c in ("source", "metric_note", "notes"))
    for name, fam in families.items():
        if any(re.search(word, text, re.IGNORECASE) for word in fam.get("match", ())):
            return name
    return ""


def training_conventions(row: dict[str, str], conv: dict[str, dict[str, Any]],
                         families: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The conventions of a training row: its ``[source.*]`` table (longest case_id prefix),
    else the ``[family.*]`` its text names (``family`` set to it), else ``{}`` (unknown)."""
    src = source_of(row["case_id"], conv)
    if src in conv:
        return conv[src]
    fam = family_of(row, families)
    return {**families[fam], "family": fam, "matched": True} if fam else {}


#: a stated power limit in a case's notes: "500W power limit", "power cap of 400 W", ...
_POWER_CAP = (re.compile(r"(\d{3,4})\s*W\b[^.;|]{0,12}?power[ -]?(?:cap|limit)", re.IGNORECASE),
              re.compile(r"power[ -]?(?:cap|limit)(?:p?ed|ping|s)?\s*(?:of|at|to|=|:)?\s*(\d{3,4})\s*W\b",
                         re.IGNORECASE))


#: a case's own selective-recompute policy (torchtitan's 'selective op' / 'selective layer')
_SELECTIVE = re.compile(r"recompute '?selective (op|layer)\b", re.IGNORECASE)


#: Megatron-Core's selective recompute of named modules: "recompute_modules=[layernorm, moe_act]"
_MODULES = re.compile(r"recompute_modules\s*=\s*\[([^\]]*)\]")
#: Megatron's block recompute: "recompute_num_layers=5" (full granularity, method block)
_BLOCK = re.compile(r"recompute_num_layers\s*=\s*(\d+)")
#: the activations a recipe offloads to host memory: a case's ``offload: share=X`` entry
#: (Normalization notes), or Megatron-Core's cpu_offloading_num_layers=N of the model's layers
_OFFLOAD_SHARE = re.compile(r"offload:\s*share\s*=\s*([0-9.]+)")
_OFFLOAD_LAYERS = re.compile(r"cpu_offloading_num_layers\s*=\s*(\d+)")
#: MaxText's remat policy in a case's notes: a named policy, or "custom (offload a, b, ...)"
_REMAT = re.compile(r"remat_policy '?(\w+)'?(?: \((?:offload|device) ([\w, ]+))?")
#: MaxText's checkpoint names (src/MaxText/layers: checkpoint_name(...)) -> trnlab's GEMM
#: outputs (trnlab.workloads.gemms) or the attention core's output. ``mlpwo`` names every
#: down projection's output: the dense MLP's and a shared expert's (linears.py MlpBlock) and
#: the routed experts' (moe.py: the grouped GEMM's output, ``moe_mlpwo``, top-k rows a token)
_MAXTEXT_NAMES = {"query_proj": ("q",), "key_proj": ("k",), "value_proj": ("v",),
                  "qkv_proj": ("q", "k", "v"), "out_proj": ("attn_out",),
                  "mlpwi": ("mlp_up",), "mlpwo": ("mlp_down", "expert_down", "shared_down"),
                  "context": ("attention",)}
#: MaxText's named remat policies that keep some outputs (base.yml remat_policy)
_MAXTEXT_POLICIES = {"qkv_proj_offloaded": ("qkv_proj",), "save_qkv_proj": ("qkv_proj",),
                     "out_proj_offloaded": ("out_proj",), "save_out_proj": ("out_proj",),
                     "minimal": ("qkv_proj", "out_proj", "mlpwi", "mlpwo"),
                     "minimal_offloaded": ("qkv_proj", "out_proj", "mlpwi", "mlpwo")}


def _text(row: dict[str, str]) -> str:
    """A case's ``metric_note`` and ``notes``, where it states what its columns cannot."""
    return f"{row.get('metric_note') or ''} {row.get('notes') or ''}"


def _block_layers(row: dict[str, str]) -> int | None:
    """Megatron's ``recompute_num_layers`` a case's notes state (block method), or None."""
    m = _BLOCK.search(_text(row))
    return int(m.group(1)) if m else None


def _recompute_modules(row: dict[str, str]) -> frozenset[str] | None:
    """The Megatron ``recompute_modules`` a case's notes list, or None."""
    m = _MODULES.search(_text(row))
    return None if m is None else frozenset(
        n.strip(" '\"") for n in m.group(1).split(",") if n.strip(" '\""))


def offload_share(row: dict[str, str]) -> float | None:
    """The share of the saved activations a case's recipe keeps in host memory [1] (training.toml
    ``activation_offload``): its notes' ``offload: share=X``, or Megatron-Core's
    ``cpu_offloading_num_layers=N`` as N / layers; None when it states neither."""
    text = _text(row)
    if m := _OFFLOAD_SHARE.search(text):
        share = float(m.group(1))
    elif (m := _OFFLOAD_LAYERS.search(text)) and _int(row, "layers"):
        share = int(m.group(1)) / int(row["layers"])
    else:
        return None
    if not 0.0 <= share <= 1.0:
        raise TrnlabError(bad_value(f"case {row['case_id']}", "offload share", share,
                                    "a share in [0, 1] of the saved activations"))
    return share


def _selective_policy(row: dict[str, str], stack_policy: str,
                      spec: TransformerSpec | None = None) -> str | Recompute:
    """What "selective" recompute runs again for a case (trnlab.workloads.flops.SELECTIVE):
    the policy its notes name ("recompute 'selective op'" / "'selective layer'"; Megatron's
    ``recompute_modules=[...]``, as :func:`~trnlab.workloads.flops.module_recompute`; a
    MaxText ``remat_policy`` that keeps named outputs, as
    :func:`~trnlab.workloads.flops.saving_recompute` of ``spec``), else its framework stack's.
    A "full" case whose notes give Megatron's block ``recompute_num_layers=N`` recomputes
    only those layers: :func:`~trnlab.workloads.flops.block_recompute`, evaluated in the
    selective slot (:func:`_predict_training`)."""
    text = _text(row)
    if spec is not None and row.get("recompute") == "full" and (layers := _block_layers(row)):
        chunks = (_int(row, "pp") or 1) * (_int(row, "vpp") or 1)
        return block_recompute(spec, layers, chunks)
    if spec is not None and (modules := _recompute_modules(row)) is not None:
        return module_recompute(spec, modules & MEGATRON_MODULES.keys())
    if m := _SELECTIVE.search(text):
        return m.group(1).lower()
    for m in _REMAT.finditer(text) if spec is not None else ():  # the first that names them
        names = _MAXTEXT_POLICIES.get(m.group(1)) or (
            [n.strip() for n in m.group(2).split(",")] if m.group(1) == "custom" and m.group(2)
            else None)
        if names is not None:
            return saving_recompute(spec, frozenset(
                part for n in names for part in _MAXTEXT_NAMES.get(n, ())))
    return stack_policy


#: a case run under torch.compile fuses the memory-bound ops an eager stack runs unfused; a
#: fused RMSNorm kernel (torchtitan's norm_type "fused_rmsnorm") fuses the norm alone
_COMPILED = re.compile(r"torch\.compile|\bcompile\s*=\s*true", re.IGNORECASE)
#: Liger-Kernel on (the ml-engineering benchmark's USE_LIGER=1): fused RMSNorm, RoPE, SwiGLU
#: and cross-entropy Triton kernels in place of the eager PyTorch ones
_LIGER = re.compile(r"use_liger\s*=\s*1", re.IGNORECASE)
#: DeepSpeed ZeRO-Offload: the optimizer states and step on the host CPU
_OPTIMIZER_OFFLOAD = re.compile(r"offload_optimizer\s*(?:=\s*1|device\s*cpu)", re.IGNORECASE)
_FUSED_NORM = re.compile(r"fused_rms_?norm", re.IGNORECASE)


def eager_kinds(row: dict[str, str], stack: Any, precision: str = "bf16") -> frozenset[str]:
    """The memory-bound op kinds a training case runs unfused: its stack's ``eager`` kinds
    (data/perf/stacks.toml), none under torch.compile or Liger-Kernel, the norm fused where the
    case names a fused RMSNorm kernel; and at an 8-bit GEMM ``precision`` the FP8 casts
    (:data:`FP8_CAST`) of a stack that casts by kernels of their own (``fp8_cast``), compiled
    or not."""
    text = _text(row)
    casts = {FP8_CAST} if stack.fp8_cast and format_bytes(precision) == 1 else set()
    if _COMPILED.search(text) or _LIGER.search(text):
        return frozenset(casts)
    return frozenset(stack.eager) - ({"norm"} if _FUSED_NORM.search(text) else set()) | casts


#: a case that states TP communication overlap although its family's default is off
_TP_OVERLAP = re.compile(r"async[ -]?tp\b|asynctp|tp[-_ ]comm[-_ ]overlap", re.IGNORECASE)
#: the key block of MaxText's splash attention a case's recipe sets (sa_block_kv)
_SA_BLOCK = re.compile(r"\bsa_block_kv\s*[=:]?\s*(\d+)")
#: a recipe that runs the attention core in FP8 (Transformer Engine / Megatron-Core
#: fp8_dot_product_attention, --fp8-dot-product-attention)
_FP8_ATTENTION = re.compile(r"fp8_dot_product_attention\s*=\s*true|--fp8-dot-product-attention",
                            re.IGNORECASE)


def power_cap_of(row: dict[str, str]) -> float | None:
    """The power limit [W] a case's ``notes`` or ``metric_note`` states, if below the chip's
    TDP (a part run at or above its TDP runs at its nominal clock), else None."""
    text = _text(row)
    for pattern in _POWER_CAP:
        if m := pattern.search(text):
            cap = float(m.group(1))
            return cap if cap < catalog.chip(row["chip"]).tdp else None
    return None


def held_out(source: str, conv: dict[str, dict[str, Any]]) -> bool:
    """Whether a source is held out of the fits (conventions.toml ``[source.<prefix>]
    fit = false``: its rows are predicted and reported, never fitted)."""
    return not conv.get(source, {}).get("fit", True)


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


def _flops_per_iteration(kind: str, spec: TransformerSpec, gb: int, s: int, n: int,
                         recompute: int = 0, hardware_flops: bool = False,
                         selective: str | Recompute = "attention") -> tuple[float, str]:
    """FLOPs per iteration by the source's formula ``kind`` (conventions.toml ``flops``) and
    the caveat to report: a source without a known formula gets PaLM's count, said so. With
    ``hardware_flops`` (``hw_tflops_per_chip``) the recomputed forward of the layout's
    ``recompute`` mode (``selective``: what its selective slot runs again) is added where the
    formula does not count it."""
    caveat = ""
    if kind not in conventions.FORMULAS:
        caveat = ("FLOP convention unknown for this source: PaLM's 6N + 12·L·H·Q·T (non-causal,"
                  " no recompute) assumed")
        kind = "palm"
    flops = conventions.flops_per_iteration(kind, spec, gb, s, n, full_recompute=recompute == 2)
    if hardware_flops and kind not in conventions.RECOMPUTE_COUNTED and not (
            kind == "megatron_deepspeed" and recompute == 2):
        shape = model_shape(spec, selective)
        r_g = shape.recompute_gemms[recompute]
        r_a = shape.recompute_attention[recompute]
        flops += float(shape.recompute_flops_per_token(s, r_g, r_a)) * gb * s
    return flops, caveat


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
    if ep and ranks > 1:  # EP counts NeuronCores too: a chip's cores share its E/ep experts
        ep = max(1, ep // ranks)
    zero = {"": conv.get("zero", 1), "fsdp": 3}.get(row["zero"])
    zero = int(row["zero"]) if zero is None else zero
    if not row["zero"]:
        notes.append(rules.note("zero", zero, "training",
                                rules.DECLARED if "zero" in conv else ""))
    stacks = load_stacks()
    family = conv.get("family", "")
    stack = stacks.get(family, stacks["default"])
    if not stack.tp_overlap and _TP_OVERLAP.search(_text(row)):
        stack = dataclasses.replace(stack, tp_overlap=True)  # the case turned it on
    params = with_stack(params, stack)
    if block := _SA_BLOCK.search(_text(row)):  # the recipe's attention kernel tile
        params = params.replace(attention_block=float(block.group(1)))
    if (share := offload_share(row)) is not None:  # activations kept in host memory
        params = params.replace(activation_offload=share)
    selective = _selective_policy(row, stack.selective, spec)
    rc = row["recompute"]
    # unstated: the stack's default and the heavier modes memory may force, else the search
    lightest = RECOMPUTE.index(stack.recompute) if stack.recompute else 0
    recomputes = [RECOMPUTE.index(rc)] if rc in RECOMPUTE else list(range(lightest, 3))
    if rc == "full" and _block_layers(row):
        recomputes = [1]  # block recompute: a share of full, in the selective slot
    unknown = sorted((_recompute_modules(row) or frozenset()) - MEGATRON_MODULES.keys())
    if unknown:
        notes.append(f"recompute modules {', '.join(unknown)} not modelled (allowed: "
                     f"{', '.join(sorted(MEGATRON_MODULES))}): not counted")
    mb = _int(row, "micro_batch")
    mbs = [mb] if mb else [stack.micro_batch] if stack.micro_batch else [1, 2, 4, 8]
    interleaved = re.search(r"interleav", _text(row), re.IGNORECASE)
    vpps = [vpp] if vpp else list(range(2, 13)) if interleaved else [stack.vpp]
    cfg = enumerate_layouts(spec, n, micro_batches=mbs, zeros=[zero],
                            recomputes=recomputes, vpps=vpps,
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
    cap = power_cap_of(row)
    if cap is not None:
        caveats.append(f"power limit {cap:.0f} W: the clock the chip holds under it "
                       "(data/perf/power.toml clock law)")
    attention = "fp8" if _FP8_ATTENTION.search(_text(row)) else "bf16"
    if attention not in attention_precisions(row["chip"]):
        attention = "bf16"
        caveats.append(f"FP8 attention stated, but {row['chip']} has no FP8 rate: BF16")
    elif attention == "fp8":
        notes.append("attention core in FP8 (fp8_dot_product_attention in the case's recipe): "
                     "the FP8 peak x fp8_attention_factor (data/perf/training.toml)")
    hw = hardware(row["chip"], system, precision, params, power_cap_w=cap, training=True,
                  attention_precision=attention, attention_kernel=stack.attention_kernel)
    if (kernel := attention_kernel_rate(row["chip"], stack.attention_kernel)) is not None:
        notes.append(f"attention kernel {stack.attention_kernel}: {kernel:g}x the chip's "
                     "attention rates (data/perf/chip_efficiency.toml)")
    if stack.attention_rate != 1.0:  # another kernel generation than the chip's FA2-class one
        hw = dataclasses.replace(hw, attn_fwd_eff=hw.attn_fwd_eff * stack.attention_rate,
                                 attn_bwd_eff=hw.attn_bwd_eff * stack.attention_rate)
    if _OPTIMIZER_OFFLOAD.search(_text(row)):
        if hw.can_offload_optimizer:
            params = params.replace(optimizer_offload=1.0)
            notes.append("the optimizer on the host CPU (DeepSpeed ZeRO-Offload): its states in "
                         "host memory, the update at host_adam_eff of the chip's "
                         "host_memory_bandwidth (data/perf/training.toml)")
        else:
            caveats.append(f"the optimizer step on the host CPU (DeepSpeed ZeRO-Offload) is not "
                           f"modelled: {row['chip']} has no host_memory_bandwidth or "
                           "host_bandwidth in the catalog; the prediction leaves out its time")
    domain = catalog.system(system).n_chips
    moe, moe_note = _moe_stack(row, family) if spec.is_moe else (None, "")
    notes += [moe_note] if moe_note else []
    reason = reason_codes(spec, cfg, gb, s, domain, tp_outside_domain=True,
                          expert_tp=int(moe.expert_tp) if moe is not None else 1)
    eager = eager_kinds(row, stack, precision)
    if eager - {FP8_CAST}:
        notes.append(f"eager PyTorch: {', '.join(sorted(eager - {FP8_CAST}))} unfused "
                     "(data/perf/stacks.toml; trnlab.workloads.traffic.EAGER_TRAFFIC)")
    if FP8_CAST in eager:
        notes.append("FP8 GEMM inputs cast by kernels of their own (the stack's fp8_cast; "
                     "trnlab.workloads.traffic.FP8_CAST_TRAFFIC)")
    res = evaluate(spec, hw, cfg, gb, s, params, moe=moe, selective=selective, eager=eager)
    ok = (reason == 0) & res["fits"]
    if not ok.any():
        ok = reason == 0
        caveats.append(f"{NO_FIT}; predicted anyway")
        if not ok.any():
            return math.nan, "the published layout breaks a divisibility rule", {}, notes
    speed = np.where(ok, res["tokens_per_s_per_chip"], -np.inf)
    i = int(np.argmax(speed))
    t = float(res["step_time"][i])
    layout = {k: int(v[i]) for k, v in cfg.items()}
    notes += _layout_notes(row, layout, ranks, stack, bool(interleaved))
    if conv.get("matched"):
        notes.append(f"framework family {family}, named in the case's text (conventions.toml); "
                     "its stack from data/perf/stacks.toml")
    elif not family:
        notes.append("framework family unknown: the default stack (data/perf/stacks.toml)")
    metric = row["metric"]
    if metric in ("model_tflops_per_chip", "hw_tflops_per_chip", "mfu"):
        flops, caveat = _flops_per_iteration(conv.get("flops", ""), spec, gb, s, n,
                                             layout["recompute"], metric == "hw_tflops_per_chip",
                                             selective)
        caveats += [caveat] if caveat else []
    else:
        flops = 0.0
    value = _metric_value(metric, t, gb, s, n, flops, row["chip"], precision)
    if value is None:
        return math.nan, f"metric {metric} is not predicted for training yet", layout, notes
    band = chip_inputs_band(row["chip"], precision)
    if band:
        lo_hw, hi_hw = _band_hardware(hw, band)
        one = {k: v[i:i + 1] for k, v in cfg.items()}
        ends = [_metric_value(metric, float(evaluate(spec, h, one, gb, s, params, moe=moe,
                                                     selective=selective,
                                                     eager=eager)["step_time"][0]),
                              gb, s, n, flops, row["chip"], precision) for h in (lo_hw, hi_hw)]
        caveats.append(f"band {min(ends):.4g} to {max(ends):.4g}: projected chip inputs "
                       f"({', '.join(band)}, data/perf/chip_efficiency.toml)")
    return value, "; ".join(caveats), layout, notes


_MOE_ENTRY = re.compile(r"moe:\s*([^;|]*)")
#: MoE settings a case's recipe states -> the data/perf/moe.toml ``[stack.*]`` table of the
#: constants they set: Megatron-Core's 1F1B all-to-all overlap (--overlap-moe-expert-parallel-
#: comm, Megatron-Bridge moe_a2a_overlap), its flex dispatcher (DeepEP / HybridEP backends),
#: MaxText's dense_matmul MoE (sparse_matmul False: GShard's one-hot einsum dispatch, with the
#: capacity factor the case states as its load_imbalance) and NeMo AutoModel's balanced gate
#: (fake_balanced_gate true: each token's experts consecutive)
_MOE_SETTINGS = (
    ("megatron-a2a-overlap", re.compile(r"moe_a2a_overlap\s*=\s*true|overlap[-_]moe[-_]expert"
                                        r"[-_]parallel[-_]comm(?!\s*=\s*false)", re.IGNORECASE)),
    ("megatron-flex-dispatcher", re.compile(
        r"moe_token_dispatcher_type\s*=\s*flex|(?:moe_)?enable_deepep\W{0,3}true|"
        r"moe_flex_dispatcher_backend\s*=\s*(?:deepep|hybridep)", re.IGNORECASE)),
    ("maxtext-dense-matmul", re.compile(r"sparse_matmul[\"']?\s*[=:]?\s*false", re.IGNORECASE)),
    ("automodel-fake-balanced-gate", re.compile(r"fake_balanced_gate\W{0,3}true", re.IGNORECASE)),
)


#: the row tiles a MaxText recipe sets for its six grouped GEMMs (wi/wo x forward, data and
#: weight gradients), or the one tile of older MaxText versions (tile_batch_seq)
_GROUP_TILES = re.compile(r"\b(w[io]_tile_(?:fwd|dlhs|drhs))_batch_seq\W{0,4}(\d+)")
_GROUP_TILE = re.compile(r"(?<![a-z_])tile_batch_seq\W{0,4}(\d+)")


def _group_tile(text: str, default: float) -> float | None:
    """The grouped GEMMs' row tile a recipe states (data/perf/moe.toml ``group_tile``): the mean
    of its six GEMMs' tiles, the unstated ones at ``default``; None when it states none."""
    tiles = dict(_GROUP_TILES.findall(text))
    if tiles:
        names = [f"w{w}_tile_{p}" for w in "io" for p in ("fwd", "dlhs", "drhs")]
        return sum(float(tiles.get(n, default)) for n in names) / len(names)
    m = _GROUP_TILE.search(text)
    return float(m.group(1)) if m else None


def _moe_stack(row: dict[str, str], family: str) -> tuple[Any, str]:
    """The MoE constants of a MoE case (:func:`trnlab.engine.hardware.moe_calibration`): the
    defaults, its family's ``[stack.<family>]`` of data/perf/moe.toml, the grouped GEMMs' row
    tiles its recipe states (where its stack tiles them), then the case's own
    ``moe: key=value, ...`` entries (Normalization notes: the dispatcher or all-to-all overlap
    the source states); and the note saying which applied."""
    norm = row["notes"].split("|| Normalization:", 1)[-1].split("|| Original:", 1)[0]
    text, stacks = _text(row), load_moe_stacks()
    values = {key: field.si for name, pattern in _MOE_SETTINGS if pattern.search(text)
              for key, field in stacks[name].items()}
    tile = values.get("group_tile", moe_calibration(family).group_tile)
    if tile and (stated := _group_tile(text, tile)) is not None:
        values["group_tile"] = stated
    values |= {key: float(val) for entry in _MOE_ENTRY.findall(norm)
               for key, val in re.findall(r"([a-z_0-9]+)\s*=\s*([0-9.]+)", entry)}
    stacked = family in stacks
    note = "; ".join(x for x in (
        f"MoE stack of family {family} (data/perf/moe.toml)" if stacked else "",
        "the case's MoE stack: " + ", ".join(f"{k}={v:g}" for k, v in values.items())
        if values else "") if x)
    return moe_calibration(family, **values), note


def _metric_value(metric: str, t: float, gb: int, s: int, n: int, flops: float, chip: str,
                  precision: str) -> float | None:
    """A predicted step time ``t`` [s] in the units of ``metric`` (SCHEMA.md's table)."""
    if metric in ("model_tflops_per_chip", "hw_tflops_per_chip"):
        return flops / (t * n * 1e12)
    if metric == "mfu":
        return flops / (t * n * catalog.chip(chip).peak(precision))
    return {"tokens_per_s_per_chip": gb * s / (t * n), "sequences_per_s": gb / t,
            "step_time_s": t, "chip_hours_per_t_tokens": n * t / 3600 * 1e12 / (gb * s)
            }.get(metric)


def _band_hardware(hw: Any, band: dict[str, tuple[float, float, float]]) -> tuple[Any, Any]:
    """The hardware at the low and high ends of the projected per-chip inputs ``band``
    (name -> value, low, high): the GEMM efficiency scales with the chip's share, the
    attention rates take the ends."""
    ends = []
    for end in (1, 2):
        values = {}
        for name, rng in band.items():
            if name == "gemm":
                values["gemm_eff"] = hw.gemm_eff * rng[end] / rng[0]
            else:
                values[f"{name}_eff"] = rng[end]
        ends.append(dataclasses.replace(hw, **values))
    return ends[0], ends[1]


def _layout_notes(row: dict[str, str], layout: dict[str, int], ranks: int, stack: Any,
                  interleaved: bool) -> list[str]:
    """The ``why`` entries of the layout fields the case left empty (schema units: ranks)."""
    fastest = "fastest fitting layout"
    default = f"the {stack.family} stack's default (data/perf/stacks.toml)"
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
        out.append(rules.note("vpp", layout["vpp"], "training",
                              f"{fastest}, the notes say interleaved" if interleaved
                              else default))
    if not row["micro_batch"]:
        out.append(rules.note("micro_batch", layout["micro_batch"], "training",
                              default if stack.micro_batch else fastest))
    if row["recompute"] not in RECOMPUTE:
        out.append(rules.note("recompute", RECOMPUTE[layout["recompute"]], "training",
                              f"{default}, or heavier where it does not fit"
                              if stack.recompute else fastest))
    return out


def predict_training(row: dict[str, str], conv: dict[str, Any],
                     params: TrainingParams) -> tuple[float, str, dict[str, Any]]:
    """Predicted value of a training case in its metric's units, why (the reason or caveat,
    then the defaults taken), layout."""
    value, why, layout, notes = _predict_training(row, conv, params)
    return value, "; ".join(x for x in (why, *notes) if x), layout


#: throughput metrics of inference: summed over the case's chips (SCHEMA.md), so scaled by the
#: replicas a whole-system result runs
_THROUGHPUT_METRICS = ("output_tokens_per_s", "input_tokens_per_s")
#: a case's text naming the MLPerf server scenario (or a Poisson request rate)
_SERVER = re.compile(r"\bserver[\s_-]+scenario\b|\bscenario\s*[:=]?\s*server\b|"
                     r"mlperf[^|;]{0,80}\bserver\b|\bserver\b[^|;]{0,80}mlperf|"
                     r"\binteractive[\s_-]+scenario\b", re.IGNORECASE)
#: a case's text naming the offline scenario
_OFFLINE = re.compile(r"\boffline\b", re.IGNORECASE)
#: a case's notes stating the runtime's largest batch (vLLM/SGLang max_num_seqs,
#: TensorRT-LLM max_batch_size)
_MAX_BATCH = re.compile(r"max[_-]num[_-]seqs\s*[=:]?\s*(\d+)|max[_ -]batch[_ -]size\s*[=:]?\s*(\d+)",
                        re.IGNORECASE)
#: a case's text stating a finite Poisson request rate (vLLM --request-rate, QPS) [1/s]
_RATE = re.compile(r"request[\s_-]*rate\s*[=:]?\s*(\d+(?:\.\d+)?)(?!\s*%)|"
                   r"(\d+(?:\.\d+)?)\s*(?:qps|req(?:uests)?/s)\b", re.IGNORECASE)
#: a case's text stating an FP8 KV cache
_FP8_KV = re.compile(r"fp8[\s_-]+kv|kv[\s_-]*(?:cache)?[^|;]{0,20}\bfp8\b", re.IGNORECASE)


def _scenario(row: dict[str, str]) -> str:
    """``server`` when the case's metric_note (else notes) names the server scenario and not
    the offline one, else ``offline``/``static`` by its concurrency column."""
    for text in (row["metric_note"], row["notes"]):
        if _SERVER.search(text) and not _OFFLINE.search(text):
            return "server"
        if _OFFLINE.search(text) and not _SERVER.search(text):
            break
    if _request_rate(row) is not None:
        return "rate"
    return "offline" if row["concurrency"] in ("offline", "") else "static"


def _request_rate(row: dict[str, str]) -> float | None:
    """The finite request rate [1/s] the case's metric_note (else notes) states, or None."""
    for text in (row["metric_note"], row["notes"]):
        if m := _RATE.search(text):
            rate = float(next(g for g in m.groups() if g))
            return rate if rate > 0 else None
    return None


def _tp_candidates(spec: TransformerSpec, ranks_total: int, pp: int, ranks: int) -> list[int]:
    """Tensor-parallel degrees [ranks] of a replica the case's chips can hold whole replicas
    of: divisors of ranks_total / pp whose attention share divides the heads, in whole chips."""
    per = ranks_total // pp if ranks_total % pp == 0 else 0
    out = [d for d in range(1, per + 1) if per % d == 0 and (d % ranks == 0 or ranks % d == 0)]
    ok = serving_engine.attention_tp_ok(spec, np.array([max(1, d // ranks) for d in out]), 1)
    return [d for d, good in zip(out, ok, strict=True) if good] or [per]


def _replica(spec: TransformerSpec, row: dict[str, str], chip: str, system: str, tp: int,
             pp: int, replicas: int, scenario: str, formats: dict[str, str],
             conv: dict[str, Any], serving: ServingParams | None,
             training: TrainingParams | None) -> tuple[dict[str, float], str]:
    """One replica of ``tp x pp`` chips in ``scenario`` (offline, static or server): its
    outputs, and a caveat ("" if none)."""
    inp, out = int(row["input_len"]), int(row["output_len"])
    common = {"tp": tp, "pp": pp, "input_len": inp, "output_len": out, "params": serving,
              "training": training, **formats}
    stated = _MAX_BATCH.search(row["notes"])
    cap = conv.get("max_batch") or (int(next(g for g in stated.groups() if g)) if stated else None)
    extra = {"max_batch": max(1, min(int(cap), 2**20))} if cap else {}
    if scenario == "server":
        bench = rules.benchmark_of(row)
        if bench is not None and bench.has_limits:
            q = bench.latency_percentile.value if bench.latency_percentile else 99.0
            res = serving_engine.server_throughput(
                spec, chip, system, ttft_limit_s=bench.ttft_limit.si,  # type: ignore[union-attr]
                tpot_limit_s=bench.tpot_limit.si, percentile=q,  # type: ignore[union-attr]
                **extra, **common)
            if res["batch"] or res["limited_by"] == "memory":
                return res, (f"server scenario: the Poisson request rate whose p{q:g} TTFT and "
                             f"TPOT meet {bench.name}'s limits "
                             f"({bench.ttft_limit.si * 1e3:g} ms, "  # type: ignore[union-attr]
                             f"{bench.tpot_limit.si * 1e3:g} ms)")  # type: ignore[union-attr]
            return res, (f"server scenario: no request rate meets {bench.name}'s "
                         f"{res['limited_by'].upper()} limit by our model")
        caveat = ("server scenario without known latency limits (no benchmark of "
                  "data/perf/benchmarks.toml named): predicted as offline")
        res = serving_engine.offline_throughput(spec, chip, system, **extra, **common)
        return res, caveat
    if scenario == "rate":
        rate = _request_rate(row) / replicas  # type: ignore[operator]
        off = serving_engine.offline_throughput(spec, chip, system, **extra, **common)
        if pp > 1 or not off["batch"]:
            return off, "a stated request rate with a pipeline: predicted as offline"
        st = serving_engine.steady_state(spec, chip, system, tp=tp, request_rate=rate,
                                         input_len=inp, output_len=out, params=serving,
                                         **formats)
        if not bool(st["sustainable"]) or float(st["batch"]) > off["batch"] \
                or rate * out >= off["output_tokens_per_s"]:
            return off, (f"the stated request rate ({rate:g}/s per replica) is above what a "
                         "replica sustains by our model: predicted at its offline capacity")
        return {"batch": float(st["batch"]), "output_tokens_per_s": rate * out,
                "input_tokens_per_s": rate * inp, "tpot": float(st["tpot"]),
                "ttft": float(st["ttft"])}, (f"Poisson arrivals at the stated request rate, "
                                             f"{rate:g}/s per replica (Little's law)")
    if scenario == "offline":
        return serving_engine.offline_throughput(spec, chip, system, **extra, **common), ""
    batch = max(1.0, float(row["concurrency"]) / replicas)
    kv_context = conv.get("kv_context")
    if kv_context not in (None, "compiled"):
        raise CatalogError(bad_value("conventions.toml", "kv_context", kv_context,
                                     "'compiled' or absent (the live context)"))
    compiled = kv_context == "compiled" and row["seq_len"]
    raw = serving_engine.evaluate(spec, chip, system, batch=batch,
                                  kv_context=float(row["seq_len"]) if compiled else None,
                                  **common)
    return {"batch": batch, **{k: float(v) for k, v in raw.items()}}, (
        f"decode attends the compiled {int(row['seq_len'])} tokens (conventions.toml "
        "kv_context)" if compiled else "")


_TRTLLM = re.compile(r"tensorrt[-_ ]?llm|\btrt[-_ ]?llm", re.IGNORECASE)
_GPU_MEMORY = re.compile(r"gpu_memory_utilization\s*[:=]\s*([0-9.]+)")


def serving_runtime(row: dict[str, str], serving: ServingParams) -> tuple[ServingParams, str]:
    """The serving parameters of an inference case's runtime and the note saying so:
    TensorRT-LLM's KV-cache sizing (serving.toml ``[runtime.tensorrt-llm]``) when the case names
    it, else the default (vLLM's rule) with the ``gpu_memory_utilization`` the case states."""
    text = _text(row)
    if _TRTLLM.search(text):
        return serving.for_runtime("tensorrt-llm"), ("TensorRT-LLM sizes the KV cache "
                                                     "(serving.toml [runtime.tensorrt-llm])")
    if m := _GPU_MEMORY.search(text):
        util = float(m.group(1))
        return serving.replace(mem_reserve=1.0 - util), (f"gpu_memory_utilization {util:g} "
                                                         "from the case")
    return serving, ""


def _predict_inference(row: dict[str, str], conv: dict[str, Any],
                       serving: ServingParams | None = None,
                       training: TrainingParams | None = None
                       ) -> tuple[float, str, dict[str, Any], list[str]]:
    """(value, reason or caveat, layout, defaults taken) of an inference case.

    A replica is ``tp x pp`` ranks; the case's ``n_chips`` hold ``replicas = n_chips x
    ranks_per_chip / (tp x pp)`` of them, and a throughput metric (summed over the case's chips,
    SCHEMA.md) is the replica's times ``replicas``; latencies are one replica's. An empty ``tp``
    is one TP group over all the chips for a latency metric, and for a throughput metric the
    fastest tp whose replicas fit (a tuned benchmark). The scenario: ``server`` when the case
    names it (MLPerf Server: the request rate whose p99 latencies meet the named benchmark's
    limits, :func:`trnlab.engine.serving.server_throughput`), ``offline`` for ``offline`` or
    empty concurrency, else a static batch of ``concurrency`` requests spread over the replicas.
    """
    row, notes = rules.fill(row, conv)
    if reason := _unpredictable(row):
        return math.nan, reason, {}, notes
    if row["metric"] not in ("output_tokens_per_s", "input_tokens_per_s", "tpot_ms", "ttft_ms"):
        return math.nan, (f"metric {row['metric']} is not predicted for inference (allowed: "
                          "output_tokens_per_s, input_tokens_per_s, tpot_ms, ttft_ms)"), {}, notes
    spec = _spec(row, conv)
    n = int(row["n_chips"])
    system = _system(row, "inference", notes)
    ranks = _ranks(row, "inference", notes)
    pp = _int(row, "pp") or 1
    if not row["pp"]:
        notes.append(rules.note("pp", 1, "inference"))
    total = n * ranks
    if _int(row, "tp") and total < _int(row, "tp") * pp:  # type: ignore[operator]
        return math.nan, (f"tp x pp = {_int(row, 'tp')} x {pp} ranks is more than the case's "
                          f"n_chips x ranks_per_chip = {total}"), {}, notes
    kv = conv.get("kv") or ("fp8" if _FP8_KV.search(row["notes"]) else "bf16")
    compute = "bf16" if row["precision"] == "int8-weights" else row["precision"]  # SCHEMA.md
    formats = {"weights": conv.get("weights") or row["precision"],
               "activations": conv.get("activations") or compute, "kv": kv}
    scenario = "static" if conv.get("mode") == "static" and row["concurrency"] not in (
        "", "offline") else "offline" if conv.get("mode") == "offline" else _scenario(row)
    throughput = row["metric"] in _THROUGHPUT_METRICS
    if row["tp"]:
        tps = [int(row["tp"])]
    elif throughput and scenario != "static":
        tps = _tp_candidates(spec, total, pp, ranks)
    else:
        tps = [total // pp]
    serving, runtime_note = serving_runtime(row, serving or load_serving())
    notes += [runtime_note] if runtime_note else []
    best: tuple[float, int, dict[str, float], str] | None = None
    for tp_ranks in tps:
        tp = max(1, tp_ranks // ranks)
        replicas = max(1, total // (tp_ranks * pp))
        res, caveat = _replica(spec, row, row["chip"], system, tp, pp, replicas, scenario,
                               formats, conv, serving, training)
        if not res["batch"] or not math.isfinite(res.get("tpot", math.nan)):
            if best is None:
                best = (-math.inf, tp_ranks, res, caveat)
            continue
        speed = res["output_tokens_per_s"] * replicas
        if best is None or speed > best[0]:
            best = (speed, tp_ranks, res, caveat)
    assert best is not None
    _, tp_ranks, res, caveat = best
    tp = max(1, tp_ranks // ranks)
    replicas = max(1, total // (tp_ranks * pp))
    if not row["tp"]:
        notes.append(rules.note("tp", tp_ranks, "inference",
                                "one TP group over the case's chips" if len(tps) == 1 else
                                f"the fastest tp of {tps} whose replicas fit"))
    if scenario == "offline" and not row["concurrency"]:
        notes.append(rules.note("concurrency", "offline", "inference",
                                f"offline, as many as fit: batch {res['batch']:.0f}"))
    if not res["batch"] or not math.isfinite(res.get("tpot", math.nan)):
        reason = caveat if caveat.startswith("server scenario: no") else \
            "the model does not fit in memory by our model"
        return math.nan, reason, {"tp": tp, "pp": pp, "batch": res["batch"]}, notes
    caveats = [caveat] if caveat else []
    if total % (tp_ranks * pp):
        caveats.append(f"n_chips x ranks_per_chip = {total} is not a multiple of tp x pp = "
                       f"{tp_ranks * pp}: {replicas} whole replicas counted")
    scale = replicas if throughput else 1
    if throughput and replicas > 1:
        caveats.append(f"{replicas} replicas of tp {tp_ranks} x pp {pp} ranks")
    value = {"output_tokens_per_s": res["output_tokens_per_s"] * scale,
             "input_tokens_per_s": res["input_tokens_per_s"] * scale,
             "tpot_ms": res["tpot"] * 1e3, "ttft_ms": res["ttft"] * 1e3}[row["metric"]]
    return value, "; ".join(caveats), {"tp": tp, "pp": pp, "batch": res["batch"],
                                       "replicas": replicas, "scenario": scenario}, notes


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
    families = load_families()
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
                    row, training_conventions(row, conv, families), params)
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


#: the caveat of a training case whose layout the memory model rejects
NO_FIT = "the layout does not fit in memory by our model"


def layouts_that_fit(preds: list[Prediction]) -> tuple[int, int]:
    """(training cases whose layout fits in memory by our model, training cases predicted):
    every published run fitted in its chips' memory, so the share checks the memory model
    (a rejected layout is predicted anyway, with :data:`NO_FIT` in its ``why``)."""
    training = [p for p in preds if p.case_id.startswith("T-") and math.isfinite(p.predicted)]
    return sum(NO_FIT not in p.why for p in training), len(training)


def fit_split(preds: list[Prediction]) -> dict[str, tuple[int, float, float]]:
    """``"fitted sources"`` / ``"held-out sources"`` -> (cases predicted, MAPE, median |error|)
    [1]: the cases ``trnlab calibrate`` fits on this file and those of the sources
    conventions.toml holds out (``fit = false``: predicted, never fitted). Groups with no
    predicted case are left out."""
    conv = load_conventions()
    out = {}
    for label, held in (("fitted sources", False), ("held-out sources", True)):
        group = [p for p in preds if math.isfinite(p.rel_error) and held_out(p.source, conv) == held]
        if group:
            out[label] = (len(group), mape(group),
                          float(np.median([abs(p.rel_error) for p in group])))
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
