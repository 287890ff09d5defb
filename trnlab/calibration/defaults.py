"""What the calibration reader takes for a case field the source left empty: one rule per field.

``data/measurements/SCHEMA.md``: an empty cell means "not stated by the source, or unknown", and a
reader that needs a value "picks its own and should say so". This module is the one place where
trnlab's reader picks: :data:`RULES` holds one rule per field with its reasoning (the table is
repeated in SCHEMA.md, "Defaults of trnlab's reader"; a test keeps the two in step), and every
default a prediction takes is named in the ``why`` column of ``trnlab validate``, as
``global_batch: default 4096 (rule: the engine's default global batch)``.

Layout fields (tp, pp, ep, vpp, micro-batch, recompute) are chosen by the layout search in
:mod:`trnlab.calibration.validate`; the rules for them are declared here too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from trnlab import catalog
from trnlab.calibration.cases import parse_arch_notes
from trnlab.catalog.benchmarks import Benchmark, benchmarks
from trnlab.engine.layouts import default_global_batch

__all__ = ["BENCHMARKS", "RULES", "Rule", "fill", "kind_of", "matching_preset", "note",
           "ranks_per_chip"]


@dataclass(frozen=True)
class Rule:
    """How an empty ``field`` is filled: ``rule`` (short, quoted in ``why``) and ``reason``."""

    field: str
    kinds: str  # "training", "inference" or "both"
    rule: str
    reason: str


#: the last resort of the ``seq_len`` rule [tokens]
FALLBACK_SEQ_LEN = 2048
#: the last resort of the ``vocab`` rule [tokens]
FALLBACK_VOCAB = 51200
#: the last resort of the ``input_len`` / ``output_len`` rules [tokens]
FALLBACK_INPUT_LEN, FALLBACK_OUTPUT_LEN = 2048, 512

#: pre-training context [tokens] of the model presets (data/models), by preset-id prefix
PRETRAIN_CONTEXT: dict[str, tuple[int, str]] = {
    "llama2-": (4096, "Touvron et al. 2023, Llama 2, Table 1 (context length 4k)"),
    "llama3-": (8192, "Dubey et al. 2024, The Llama 3 Herd of Models, sec. 3.4 (pre-trained at "
                      "8K tokens, extended to 128K at the end)"),
    "gpt3-": (2048, "Brown et al. 2020, GPT-3, sec. 2.1 (n_ctx = 2048)"),
    "megatron-gpt-": (2048, "Narayanan et al. 2021, SC'21, Table 1 (sequence length 2048)"),
    "megatron-core-gpt-": (4096, "Megatron-LM README model table (r0.8.0), sequence length 4096"),
    "mixtral-": (32768, "Jiang et al. 2024, Mixtral of Experts, sec. 2 (context size 32k)"),
    "deepseek-v3": (4096, "DeepSeek-V3 Technical Report, sec. 4.2 (maximum sequence length 4K "
                          "during pre-training)"),
    "gpt-oss-": (4096, "OpenAI gpt-oss, gpt_oss/torch/model.py ModelConfig "
                       "(initial_context_length 4096, extended by YaRN)"),
    "qwen3-": (4096, "Qwen3 Technical Report, sec. 3.2 (stages S1 and S2 at 4,096 tokens)"),
    "nemotron-4-": (4096, "Nemotron-4 340B Technical Report (sequence length 4096)"),
}


#: the standard inference benchmarks a case can name (data/perf/benchmarks.toml, each length
#: with its source), most specific first
BENCHMARKS: tuple[Benchmark, ...] = benchmarks()

RULES: tuple[Rule, ...] = (
    Rule("kind", "both", "the case_id prefix",
         "SCHEMA.md: prefix T- = training, I- = inference."),
    Rule("n_chips", "both", "tp*pp*dp*cp / ranks_per_chip",
         "SCHEMA.md: tp*pp*dp*cp = n_chips * ranks_per_chip. Training needs tp, pp and dp stated "
         "(cp empty = 1), inference tp (pp empty = 1); otherwise the row is not predicted."),
    Rule("ranks_per_chip", "both", "the chip's ranks per chip in the catalog",
         "notes state ranks_per_chip=N for Neuron cases; without it a rank is what the hardware "
         "catalog says one chip holds (2 NeuronCores on trn1/inf2, 4 on trn2/trn3 at LNC=2, "
         "1 on GPUs and TPUs)."),
    Rule("system", "both", "the chip's reference system",
         "the largest scale-up domain built of the chip in data/hardware/systems.toml "
         "(trnlab.engine.hardware.system_of, the one rule of trnlab for a chip without a "
         "system)."),
    Rule("precision", "both", "bf16, which every framework of the cases runs",
         "the compute format every training framework and serving runtime of the cases "
         "supports; a narrower format is a choice a source states. A format the training model "
         "lacks (int8-weights) is computed as bf16, and said so; a 4-bit format (fp4, mxfp4, "
         "nvfp4) runs the 4-bit training recipe, fp4_recipe_bf16_fraction of the GEMM work in "
         "BF16 (training.toml)."),
    Rule("vocab", "both", "the source's declared vocab, else a preset of the same shape, "
                          f"else {FALLBACK_VOCAB}",
         "the vocabulary belongs to the architecture: first the padded vocabulary the source's "
         "framework uses (conventions.toml `defaults`), then the vocab of the model preset "
         "(data/models) with the same layers, hidden, heads (kv_heads and moe_experts when "
         "stated; the model label breaks ties), else 51,200: GPT-2/GPT-3's BPE (50,257) padded "
         "to a multiple of 1,024 as Megatron-LM does, the vocabulary of the GPT-style "
         "benchmarks."),
    Rule("kv_heads", "both", "the source's declared kv_heads, else heads (MHA)",
         "a source that does not state grouped-query attention ran multi-head attention "
         "(the GPT-style models of Megatron-LM and NeMo)."),
    Rule("ffn", "both", "the source's declared ffn_per_hidden x hidden, else 4 x hidden",
         "the GPT MLP width (Megatron-LM's default --ffn-hidden-size); an MoE model without "
         "dense layers has none (0)."),
    Rule("gated_mlp", "both", "the source's declared gated_mlp, else false",
         "a 2-matrix GeLU MLP, the GPT default; SwiGLU models state it."),
    Rule("seq_len", "training", "the pre-training context of a preset of the same shape, "
                                f"else {FALLBACK_SEQ_LEN}",
         "a benchmark trains at the model's own context: the preset with the same shape "
         "(as for vocab) and its published pre-training context (PRETRAIN_CONTEXT in "
         "trnlab/calibration/defaults.py, each with its source); else 2048, GPT-3's context "
         "and the sequence length of the Megatron-LM 2021, NeMo GPT-3 and MaxText synthetic "
         "benchmarks. Inference rows do not use seq_len (the request lengths are "
         "input_len/output_len)."),
    Rule("global_batch", "training", "the engine's default global batch",
         "trnlab.engine.layouts.default_global_batch(n_chips, seq_len): about 16 Mi tokens per "
         "step (data/perf/defaults.toml, Llama 3 405B's batch) as odd(n_chips) x 2^k "
         "sequences, so that a data-parallel degree can divide it; the same default as "
         "`trnlab search`."),
    Rule("tp", "training", "fastest fitting layout",
         "a published benchmark is a tuned recipe: the fastest (tp, pp) split that fits in "
         "memory and keeps every layout rule (the search of `trnlab search`); a stated pp "
         "constrains it."),
    Rule("pp", "training", "1 when tp is stated and dp is not; n_chips / (tp x dp x cp) when "
         "tp and dp are; else the fastest fitting layout",
         "a source that states tp but no pipeline ran without one; with tp and dp stated the "
         "pipeline is what is left."),
    Rule("dp", "training", "the rest of the layout, n_chips x ranks_per_chip / (tp x pp x cp)",
         "SCHEMA.md's identity tp*pp*dp*cp = n_chips * ranks_per_chip; a stated dp is honoured: "
         "the search keeps only tp x pp x cp = n_chips x ranks_per_chip / dp."),
    Rule("cp", "training", "1 unless stated, or what stated tp, pp and dp imply",
         "context parallelism is used only where a source states it (it appeared in "
         "Megatron-Core in 2024); searching it would credit a layout the source did not run."),
    Rule("ep", "training", "fastest fitting layout",
         "powers of two dividing the experts, as `trnlab search` tries (1 for a dense model)."),
    Rule("vpp", "training", "the framework family's default (1, no interleave), or the fastest of 2..12 when the notes say interleaved",
         "data/perf/stacks.toml gives each framework family's default: Megatron-LM, NeMo, torchtitan and the others interleave only when told (--num-layers-per-virtual-pipeline-stage), so an unstated vpp is 1; taking the fastest interleave would predict the optimum, not what ran. A case whose notes say interleaved gets the fastest of 2..12."),
    Rule("zero", "training", "the source's declared zero, else 1",
         "conventions.toml gives each framework's optimizer sharding (Megatron-Core/NeMo: the "
         "distributed optimizer = ZeRO-1; Megatron 2021 and Neuron: none); else ZeRO-1, "
         "the distributed optimizer of current frameworks."),
    Rule("micro_batch", "training", "the framework family's default micro-batch (1)",
         "data/perf/stacks.toml gives each framework family's default (Megatron-LM's --micro-batch-size, torchtitan's pipeline micro-batch: 1); a family declaring 0 searches 1, 2, 4 and 8 and takes the fastest that fits."),
    Rule("recompute", "training", "the framework family's default, else the fastest fitting layout",
         "data/perf/stacks.toml gives a family's default where its framework has one (Neuron "
         "NxD: selective, the core attention), a heavier mode where that does not fit; "
         "elsewhere none, selective or full (also for `unknown`): the fastest that fits, as a "
         "tuned recipe recomputes only what memory forces."),
    Rule("tp", "inference", "one TP group over the case's chips (n_chips x ranks_per_chip) "
         "for a latency metric; for a throughput metric the fastest tp whose replicas fit",
         "SCHEMA.md: a latency is one request's, so the latency-optimal layout, one TP group; "
         "a throughput is summed over the case's chips, which a tuned benchmark fills with as "
         "many replicas of the fastest fitting tp as they hold (the MLPerf and vendor "
         "whole-system results); the case's chips are n_chips x ranks_per_chip / (tp x pp) "
         "replicas, and the replica's throughput is multiplied by them."),
    Rule("pp", "inference", "1, no pipeline unless stated", "serving benchmarks pipeline only where they say so."),
    Rule("input_len", "inference", "the named benchmark's mean prompt, "
                                   f"else {FALLBACK_INPUT_LEN}",
         "a standard benchmark named in metric_note or notes (data/perf/benchmarks.toml, "
         "each length with its source) gives its published mean "
         "lengths; else trnlab's own request shape (`trnlab serve` defaults, 2048 in / 512 "
         "out), so that an unstated request is predicted like trnlab's other inference "
         "numbers."),
    Rule("output_len", "inference", "the named benchmark's mean output, "
                                    f"else {FALLBACK_OUTPUT_LEN}",
         "as input_len."),
    Rule("concurrency", "inference", "offline",
         "maximum-throughput mode: as many requests as fit in memory, up to the source's "
         "max_batch (conventions.toml), a max_num_seqs stated in notes, or the engine's "
         "(8192); a case whose metric_note or notes name a server scenario or a request rate "
         "is predicted at that scenario instead (SCHEMA.md, inference rows)."),
)


def rule(field: str, kind: str) -> Rule:
    """The rule for ``field`` of a ``kind`` case (KeyError if none)."""
    for r in RULES:
        if r.field == field and r.kinds in (kind, "both"):
            return r
    raise KeyError(field)


def note(field: str, value: object, kind: str, how: str = "") -> str:
    """The ``why`` entry of a default: ``field: default VALUE (rule: HOW)``; ``how`` is the
    branch of the field's rule that applied (default: the whole rule)."""
    return f"{field}: default {value} (rule: {how or rule(field, kind).rule})"


def kind_of(row: Mapping[str, str]) -> str:
    """``training`` or ``inference``; an empty kind from the case_id prefix; else ``""``."""
    kind = (row.get("kind") or "").strip()
    if kind:
        return kind if kind in ("training", "inference") else ""
    cid = row.get("case_id") or ""
    return "training" if cid.startswith("T-") else "inference" if cid.startswith("I-") else ""


def ranks_per_chip(row: Mapping[str, str]) -> tuple[int, bool]:
    """(ranks per chip, whether it was stated in notes) of a case (SCHEMA.md)."""
    if m := re.search(r"ranks_per_chip=(\d+)", row.get("notes") or ""):
        return int(m.group(1)), True
    return int(catalog.chip(row["chip"]).ranks_per_chip), False


def _cell_int(row: Mapping[str, str], col: str) -> int | None:
    text = (row.get(col) or "").strip()
    return int(text) if text else None


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9]", "", text.lower())


def matching_preset(row: Mapping[str, str]) -> str | None:
    """The model preset (data/models) with the row's shape, or None.

    Same ``layers``, ``hidden``, ``heads`` and, where the row states them, ``kv_heads``,
    ``vocab`` and ``moe_experts`` (empty = dense). Among several, the one whose id shares the
    longest prefix with the ``model`` label (``Llama-3-70B`` -> ``llama3-70b``); a tie is no
    match.
    """
    shape = {c: _cell_int(row, c) for c in ("layers", "hidden", "heads", "kv_heads", "vocab",
                                             "moe_experts")}
    if None in (shape["layers"], shape["hidden"], shape["heads"]):
        return None
    shape["moe_experts"] = shape["moe_experts"] or 0
    hits = []
    for mid in catalog.model_ids():
        spec = catalog.model(mid)
        if all(v is None or getattr(spec, c) == v for c, v in shape.items()):
            hits.append(mid)
    if len(hits) <= 1:
        return hits[0] if hits else None
    label = _norm(row.get("model") or "")

    def common(mid: str) -> int:
        a, n = _norm(mid), 0
        while n < min(len(a), len(label)) and a[n] == label[n]:
            n += 1
        return n

    best = max(common(m) for m in hits)
    top = [m for m in hits if common(m) == best]
    return top[0] if len(top) == 1 else None


def _context(preset: str | None) -> tuple[int, str, str] | None:
    """(pre-training context, its source, the preset) of a preset, if declared."""
    if preset is None:
        return None
    hits = [k for k in PRETRAIN_CONTEXT if preset.startswith(k)]
    return (*PRETRAIN_CONTEXT[max(hits, key=len)], preset) if hits else None


DECLARED = "declared by the source in conventions.toml"


def benchmark_of(row: Mapping[str, str]) -> Benchmark | None:
    """The standard benchmark a case's ``metric_note`` or ``notes`` names, if any."""
    for text in (row.get("metric_note") or "", row.get("notes") or ""):
        if hit := next((b for b in BENCHMARKS if b.matches(text)), None):
            return hit
    return None


def fill(row: Mapping[str, str], conv: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """A copy of ``row`` with the empty non-layout fields filled by :data:`RULES`, and the
    ``why`` entries of the defaults taken.

    ``conv`` is the case's source table of conventions.toml. The layout fields (tp, pp, cp, ep,
    vpp, micro_batch, recompute, zero; inference tp, pp and concurrency) are left to the
    predictor, which names them with :func:`note`. ``n_chips`` stays empty when the parallel
    degrees do not give it.
    """
    out = {k: (v or "").strip() for k, v in row.items()}
    kind = kind_of(out)
    taken: list[str] = []

    def put(field: str, value: object, how: str = "") -> None:
        out[field] = str(value)
        taken.append(note(field, value, kind, how))

    if not out.get("kind") and kind:
        put("kind", kind, f"case_id prefix {out.get('case_id', '')[:2]}")
    if not out["n_chips"] and out["chip"] in catalog.default().chips:
        ranks = ranks_per_chip(out)[0]
        tp, pp, dp, cp = (_cell_int(out, c) for c in ("tp", "pp", "dp", "cp"))
        degrees = tp * (pp or 1) if kind == "inference" and tp else \
            tp * pp * dp * (cp or 1) if tp and pp and dp else None
        if degrees and degrees % ranks == 0:
            put("n_chips", degrees // ranks, f"parallel degrees {degrees} / {ranks} ranks per "
                "chip")
    if not out["precision"]:
        put("precision", "bf16")
    defaults = conv.get("defaults", {})
    hidden, heads = _cell_int(out, "hidden"), _cell_int(out, "heads")
    if not out["kv_heads"] and heads:
        if "kv_heads" in defaults:
            put("kv_heads", defaults["kv_heads"], DECLARED)
        else:
            put("kv_heads", heads, "= heads, multi-head attention")
    if not out["gated_mlp"]:
        put("gated_mlp", str(bool(defaults.get("gated_mlp", False))).lower(),
            DECLARED if "gated_mlp" in defaults else "false: a GeLU MLP")
    if not out["ffn"] and hidden:
        arch = parse_arch_notes(out.get("notes") or "")
        dense = not _cell_int(out, "moe_experts") or arch.get("moe_dense_layers", 0) > 0
        if "ffn_per_hidden" in defaults:
            put("ffn", int(defaults["ffn_per_hidden"] * hidden), DECLARED)
        elif "ffn" in defaults:
            put("ffn", defaults["ffn"], DECLARED)
        elif dense:
            put("ffn", 4 * hidden, "4 x hidden")
    preset = None
    if not out["vocab"]:
        preset = matching_preset(out)
        if "vocab" in defaults:
            put("vocab", defaults["vocab"], DECLARED)
        elif preset is not None:
            put("vocab", catalog.model(preset).vocab, f"preset {preset} has the same shape")
        else:
            put("vocab", FALLBACK_VOCAB, "no declared vocab or preset of the same shape: "
                f"{FALLBACK_VOCAB}, GPT-2's BPE padded as Megatron-LM pads it")
    if kind == "training":
        if not out["seq_len"]:
            ctx = _context(preset or matching_preset(out))
            if ctx is not None:
                put("seq_len", ctx[0], f"pre-training context of preset {ctx[2]}: {ctx[1]}")
            else:
                put("seq_len", FALLBACK_SEQ_LEN, "no preset of the same shape: "
                    f"{FALLBACK_SEQ_LEN}, GPT-3's context")
        if not out["global_batch"] and out["n_chips"]:
            put("global_batch", default_global_batch(int(out["n_chips"]), int(out["seq_len"])),
                "the engine's default global batch, about 16 Mi tokens per step")
    elif kind == "inference":
        bench = benchmark_of(out)
        for field, fallback in (("input_len", FALLBACK_INPUT_LEN),
                                ("output_len", FALLBACK_OUTPUT_LEN)):
            if not out[field]:
                mean = getattr(bench, field) if bench else None
                if mean is not None:
                    put(field, max(1, round(mean.value)), f"{bench.name}: mean {mean.value:g} "  # type: ignore[union-attr]
                        f"({mean.status}; {'; '.join(mean.sources)}"
                        + (f": {mean.note}" if mean.note else "") + ")")
                else:
                    put(field, fallback, (f"{bench.name} publishes no mean {field}; " if bench
                                          else "no standard benchmark named; ")
                        + "trnlab serve's request shape")
    return out, taken
