"""The FLOP formulas of the measurement sources, to convert a predicted step time into their
``*_tflops_per_chip`` / ``mfu`` numbers (``shared/calibration/README.md``, "Sources count FLOPs
differently").

Each function reproduces its source's formula as written there, applied to a
:class:`~trnlab.workloads.spec.TransformerSpec`; it is *not* trnlab's own count
(:mod:`trnlab.workloads.flops`). Batch and sequence arguments may be Python numbers or arrays of
any array-API namespace (integer arrays are computed in float64).

Notation: ``B`` global batch [sequences], ``s`` sequence length [tokens], ``L`` layers, ``h``
hidden, ``a`` heads, ``g`` kv heads, ``d`` head dim, ``f`` ffn, ``V`` vocab, ``k`` routed experts
per token.
"""

from __future__ import annotations

from typing import Any

from trnlab.errors import ParameterError, bad_value
from trnlab.workloads._array import as_float
from trnlab.workloads.spec import TransformerSpec

__all__ = [
    "FORMULAS",
    "RECOMPUTE_COUNTED",
    "flops_per_iteration",
    "maxtext_flops_per_token",
    "maxtext_legacy_tflops_per_device",
    "megatron2021_flops_per_iteration",
    "megatron_core_flops_per_iteration",
    "megatron_deepspeed_flops_per_iteration",
    "nemo_flops_per_iteration",
    "palm_flops_per_token",
]


def megatron2021_flops_per_iteration(spec: TransformerSpec, global_batch: Any, seq_len: Any
                                     ) -> Any:
    """Megatron-LM 2021 FLOPs per iteration, counting the recompute forward (HFU-like) [FLOP].

    ``96·B·s·L·h²·(1 + s/(6h) + V/(16·L·h))``: 4 passes (forward, recompute forward, 2×
    backward) over the transformer GEMMs and the *non-causal* attention scores, 3 passes over
    the logit layer. The formula assumes MHA, ``ffn = 4h``, no gating and full recomputation;
    it uses only ``L``, ``h`` and ``V`` of the spec.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    global_batch : int, float or array
        Sequences per iteration ``B`` [sequences].
    seq_len : int, float or array
        Tokens per sequence ``s`` [tokens].

    References
    ----------
    Narayanan et al., "Efficient Large-Scale Language Model Training on GPU Clusters Using
    Megatron-LM", SC'21, appendix "Floating-point operations" and Table 1; NVIDIA/Megatron-LM README at
    50a4b5fa02, ``images/cases_april2021.png`` (cases ``T-MLM21-01..10``, metric
    ``hw_tflops_per_chip``).
    """
    b, s = as_float(global_batch, "global_batch"), as_float(seq_len, "seq_len")
    L, h, v = spec.layers, spec.hidden, spec.vocab
    return 96.0 * L * h * h * b * s * (1.0 + s / (6.0 * h) + v / (16.0 * L * h))


def megatron_core_flops_per_iteration(spec: TransformerSpec, global_batch: Any, seq_len: Any
                                      ) -> Any:
    """Megatron-Core r0.8.0 model FLOPs per iteration [FLOP].

    ``12·B·s·L·h²·[(1 + g/a + s/h)·(a·d/h) + (f/h)·k·(3/2 if SwiGLU else 1) + V/(2·L·h)]``:
    no recompute, attention scores counted as the full ``s²`` (not halved). For MHA,
    ``ffn = 4h`` and no gating this is ``72·B·s·L·h²·(1 + s/(6h) + V/(12·L·h))``.

    Applied to a spec: ``d`` = ``head_dim``; for an MoE spec ``f`` = ``moe_ffn`` (Megatron's
    ``ffn_hidden_size`` is the expert width at r0.8.0) and ``k`` = ``moe_active``, else
    ``f`` = ``ffn`` and ``k = 1``. As in the source, every one of the ``L`` layers is costed
    alike: shared experts, leading dense layers and MLA ranks are ignored.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    global_batch : int, float or array
        Sequences per iteration ``B`` [sequences].
    seq_len : int, float or array
        Tokens per sequence ``s`` [tokens].

    References
    ----------
    ``num_floating_point_operations`` in ``megatron/training/training.py`` at ``core_r0.8.0``
    (NVIDIA/Megatron-LM); README at 937571cfd4, ``images/model_table.png`` (cases
    ``T-MCORE-H100-*``, metric ``model_tflops_per_chip`` and ``mfu``).
    """
    b, s = as_float(global_batch, "global_batch"), as_float(seq_len, "seq_len")
    L, h, a, g, d, v = (spec.layers, spec.hidden, spec.heads, spec.kv_heads, spec.head_dim,
                        spec.vocab)
    f, k = (spec.moe_ffn, spec.moe_active) if spec.is_moe else (spec.ffn, 1)
    gated = 1.5 if spec.gated_mlp else 1.0
    attn = (1.0 + g / a + s / h) * (a * d / h)
    mlp = (f / h) * k * gated
    return 12.0 * b * s * L * h * h * (attn + mlp + v / (2.0 * L * h))


def nemo_flops_per_iteration(spec: TransformerSpec, global_batch: Any, seq_len: Any) -> Any:
    """NeMo 24.07 "Model TFLOP / sec / GPU" numerator [FLOP]: the Megatron-Core formula.

    The calibration README checked that all 12 ``T-NEMO2407-*`` rows match
    :func:`megatron_core_flops_per_iteration` (non-causal ``s²`` attention, SwiGLU factor) within
    0.1%. Source: NVIDIA/NeMo ``docs/source/performance/performance_summary.md`` at 9c5c5e9709.
    """
    return megatron_core_flops_per_iteration(spec, global_batch, seq_len)


def maxtext_legacy_tflops_per_device(spec: TransformerSpec, per_device_batch: Any, seq_len: Any,
                                     num_params: float | None = None) -> Any:
    """MaxText (Dec 2023) training TFLOPs per device per step [1e12 FLOP].

    ``[6·N·s·b + 6·L·a·d·s²·b] / 1e12``: ``N`` = all parameters (embedding incl., counted once
    when tied), attention the non-causal ``12·L·a·d·s²·b`` halved for causality,
    rematerialization not counted.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    per_device_batch : int, float or array
        ``b`` = global batch ÷ chips [sequences].
    seq_len : int, float or array
        ``s`` [tokens].
    num_params : float, optional
        ``N`` [count]; ``spec.total_params`` when omitted (MaxText counts its parameter tree).

    References
    ----------
    ``calculate_training_tflops`` in ``MaxText/train.py`` at AI-Hypercomputer/maxtext@76bd53b0f
    (cases ``T-MAXTEXT-V5P-{32B-64,128B-128,512B-512,1024B-4096}``).
    """
    b, s = as_float(per_device_batch, "per_device_batch"), as_float(seq_len, "seq_len")
    n = float(spec.total_params if num_params is None else num_params)
    L, a, d = spec.layers, spec.heads, spec.head_dim
    return (6.0 * n * s * b + 6.0 * L * a * d * s * s * b) / 1e12


def _maxtext_ffn(spec: TransformerSpec, width: int) -> float:
    """``calculate_ffn_mamtul_tflops_per_device`` per token: ``2·h·f·(len(activations) + 1)``."""
    return 2.0 * spec.hidden * width * ((2 if spec.gated_mlp else 1) + 1)


def maxtext_flops_per_token(spec: TransformerSpec, seq_len: Any) -> Any:
    """Current MaxText training FLOPs per token [FLOP].

    ``3·[L·(FFN + QKV + out-proj) + 2·h·V] + 3·L·(4·s·a·d)/2`` per token; for a dense GQA model
    ``6·(L·(h·(a+2g)·d + a·d·h + c·h·f) + h·V) + 6·L·a·d·s`` with ``c = 3`` gated (SwiGLU,
    ``len(mlp_activations) = 2``) or ``c = 2`` otherwise. MoE: ``2·h·E`` router plus ``k`` expert
    MLPs (of width ``moe_ffn``) per layer; with shared experts or leading dense layers the
    DeepSeek path (dense layers at ``ffn``, MoE layers with shared experts). MLA per
    ``calculate_mla_tflops_per_device``. Attention is halved for causality (PR #1988); a model
    with sliding-window layers (Gemma 3, gpt-oss) counts ``s·w - w²/2`` keys per windowed layer
    (``calculate_mixed_attention_model_tflops_training_per_device`` at maxtext@e591f30c), i.e.
    :meth:`TransformerSpec.mean_attended_keys`.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    seq_len : int, float or array
        ``s`` [tokens].

    References
    ----------
    ``calculate_tflops_training_per_device`` in ``MaxText/maxtext_utils.py``
    (AI-Hypercomputer/maxtext; benchmark config at 92e59fdf; case ``T-MAXTEXT-V5P-L2-70B``,
    MFU against 459 TF).
    """
    s = as_float(seq_len, "seq_len")
    h, a, L = spec.hidden, spec.heads, spec.layers
    if spec.is_moe:
        gate = 2.0 * h * spec.moe_experts
        expert = _maxtext_ffn(spec, spec.moe_ffn)
        if spec.moe_shared_experts or spec.moe_dense_layers:  # DeepSeek / Llama4 path
            ffn = (spec.dense_layers * _maxtext_ffn(spec, spec.ffn) + spec.moe_layers
                   * (gate + (spec.moe_shared_experts + spec.moe_active) * expert))
        else:
            ffn = L * (gate + spec.moe_active * expert)
    else:
        ffn = L * _maxtext_ffn(spec, spec.ffn)
    if spec.is_mla:
        qk, nope, rope, v = (spec.qk_head_dim, spec.qk_nope_head_dim, spec.qk_rope_head_dim,
                             spec.v_head_dim)
        ql, kl = spec.q_lora_rank, spec.kv_lora_rank
        q = 2.0 * (h * ql + ql * a * qk) if ql else 2.0 * h * a * qk
        qkv = q + 2.0 * (h * (kl + rope) + kl * a * (nope + v))
        proj = 2.0 * h * a * v
        attn_coef = 2.0 * a * (qk + v)
    else:
        d, g = spec.head_dim, spec.kv_heads
        qkv = 2.0 * h * (a + 2 * g) * d
        proj = 2.0 * h * a * d
        attn_coef = 4.0 * a * d
    weights = 3.0 * (ffn + L * (qkv + proj) + 2.0 * h * spec.vocab)
    return weights + 3.0 * L * attn_coef * spec.mean_attended_keys(s)


def palm_flops_per_token(spec: TransformerSpec, seq_len: Any) -> Any:
    """PaLM's model FLOPs per token, as torchtitan and llm-foundry count them [FLOP].

    ``6·N + 12·L·H·Q·T``: ``N`` = the parameters a token uses except the input embedding (the
    logit layer counts), ``H`` heads of ``Q = head_dim``, ``T`` = sequence length; the attention
    term counts the full ``T²`` score matrix (no causal halving: "we follow the convention and do
    not account for sparsity in causal attention") and no recompute. For an MoE model ``N``
    counts the routed experts a token uses (``spec.active_params``).

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    seq_len : int, float or array
        ``T`` [tokens].

    References
    ----------
    Chowdhery et al. 2022, PaLM, appendix B ("model FLOPs utilization"); ``get_num_flop_per_token``
    in ``torchtitan/utils.py`` (pytorch/torchtitan; ``get_num_params(exclude_embedding=True)``).
    """
    t = as_float(seq_len, "seq_len")
    n = float(spec.active_params - spec.embedding_params
              + (spec.vocab * spec.hidden if spec.tied_embeddings else 0))
    return 6.0 * n + 12.0 * spec.layers * spec.heads * spec.head_dim * t


def megatron_deepspeed_flops_per_iteration(spec: TransformerSpec, global_batch: Any,
                                           seq_len: Any, full_recompute: bool) -> Any:
    """Megatron-DeepSpeed "TFLOPs" per iteration [FLOP].

    ``24·c·B·s·L·h²·(1 + s/(6h) + V/(16·L·h))`` with ``c = 4`` under activation checkpointing
    (the recomputed forward counted, HFU-like) and ``c = 3`` without: the Megatron-LM 2021 count
    (non-causal attention, ``ffn = 4h``, MHA) with the recompute pass made optional. ``c = 4``
    gives :func:`megatron2021_flops_per_iteration`.

    References
    ----------
    ``throughput_calculator`` in ``megatron/utils.py`` (microsoft/Megatron-DeepSpeed;
    ``checkpoint_activations_factor``), the formula of Narayanan et al. 2021, appendix.
    """
    b, s = as_float(global_batch, "global_batch"), as_float(seq_len, "seq_len")
    L, h, v = spec.layers, spec.hidden, spec.vocab
    c = 4.0 if full_recompute else 3.0
    return 24.0 * c * L * h * h * b * s * (1.0 + s / (6.0 * h) + v / (16.0 * L * h))


#: the formulas a conventions entry may name (``flops = "..."``), each with what it counts
FORMULAS = {
    "megatron2021": "Megatron-LM 2021: 96·B·s·L·h²·(1 + s/(6h) + V/(16Lh)), non-causal "
                    "attention, the full-recompute forward counted",
    "megatron_core": "Megatron-Core num_floating_point_operations: non-causal s² attention, "
                     "GQA and SwiGLU terms, no recompute",
    "megatron_deepspeed": "Megatron-DeepSpeed throughput_calculator: 24·c·B·s·L·h²·(...), "
                          "c = 4 with activation checkpointing, else 3",
    "maxtext_legacy": "MaxText 2023: 6·N·s·b + 6·L·a·d·s²·b (causal attention), no remat",
    "maxtext": "MaxText calculate_tflops_training_per_device: per-matmul count, causal "
               "attention, no remat",
    "palm": "PaLM / torchtitan / llm-foundry: 6·N + 12·L·H·Q·T per token (N without the input "
            "embedding), non-causal attention, no recompute",
}
#: formulas that count the recomputed forward themselves (HFU-like)
RECOMPUTE_COUNTED = frozenset({"megatron2021"})


def flops_per_iteration(formula: str, spec: TransformerSpec, global_batch: float, seq_len: float,
                        n_chips: int, full_recompute: bool = False) -> float:
    """FLOPs per iteration [FLOP] of ``global_batch`` sequences of ``seq_len`` by ``formula``
    (a key of :data:`FORMULAS`) on ``n_chips`` chips."""
    if formula == "megatron2021":
        return float(megatron2021_flops_per_iteration(spec, global_batch, seq_len))
    if formula == "megatron_core":
        return float(megatron_core_flops_per_iteration(spec, global_batch, seq_len))
    if formula == "megatron_deepspeed":
        return float(megatron_deepspeed_flops_per_iteration(spec, global_batch, seq_len,
                                                            full_recompute))
    if formula == "maxtext_legacy":
        return float(maxtext_legacy_tflops_per_device(spec, global_batch / n_chips, seq_len)
                     ) * 1e12 * n_chips
    if formula == "maxtext":
        return float(maxtext_flops_per_token(spec, seq_len)) * global_batch * seq_len
    if formula == "palm":
        return float(palm_flops_per_token(spec, seq_len)) * global_batch * seq_len
    raise ParameterError(bad_value("conventions", "flops", formula,
                                   f"allowed: {', '.join(FORMULAS)}"))
