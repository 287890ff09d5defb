"""FLOPs per token of a decoder-only transformer, as array functions of the sequence length.

Convention (trnlab's own; the measurement sources' conventions are in
:mod:`trnlab.workloads.conventions`):

* A matmul of ``[m, k] @ [k, n]`` costs ``2·m·k·n`` FLOPs; the backward pass costs twice the
  forward (data and weight gradients), so training costs 3 forward passes (Kaplan et al. 2020,
  "Scaling Laws for Neural Language Models", sec. 2.1; Narayanan et al., SC'21, appendix).
* Weight matmuls: ``2·N`` FLOPs per token forward, where ``N`` = :attr:`TransformerSpec.flop_params`
  (active weights, MoE top-k and shared experts and router, the logit layer ``V·h`` counted even
  when tied; no embedding lookup, norms, biases or elementwise ops).
* Attention scores and context: ``Q·Kᵀ`` and ``P·V`` cost ``2·s·a·(d_qk + d_v)`` FLOPs per token
  per layer forward for a sequence of ``s`` tokens without a mask (``4·s·a·d`` for MHA). With a
  causal mask a token attends to ``s/2`` keys on average, so the term is halved (as in MaxText
  and PaLM, Chowdhery et al. 2022, app. B; Megatron-Core r0.8.0 does *not* halve it).
* Training FLOPs per token = ``6·N + 12·L·a·d·s`` (non-causal) or ``6·N + 6·L·a·d·s`` (causal),
  for ``d_qk = d_v = d``.

Every function takes ``seq_len`` (or ``context_len``) as a Python number or an array of any
array-API namespace and returns the same kind; integer arrays are computed in float64.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from trnlab.errors import ParameterError, bad_value
from trnlab.workloads._array import as_float
from trnlab.workloads.gemms import layer_gemms
from trnlab.workloads.spec import TransformerSpec

__all__ = [
    "MEGATRON_MODULES",
    "RECOMPUTE",
    "RECOMPUTED",
    "SELECTIVE",
    "Recompute",
    "attention_flops_per_token",
    "block_recompute",
    "decode_flops_per_token",
    "forward_flops_per_token",
    "hardware_flops_per_token",
    "model_flops_per_token",
    "module_recompute",
    "recompute_flops_per_token",
    "saving_recompute",
]

RECOMPUTE = ("none", "selective", "full")


class Recompute(NamedTuple):
    """What an activation-recompute mode runs again in the backward pass, per part of a decoder
    layer, as a multiple of that part's forward [1]. A recomputed part keeps only its inputs
    for the backward pass, not its internal activations."""

    gemms: float  #: the weight GEMMs (recomputing them recomputes the whole layer)
    attention: float  #: the attention core: ``Q·Kᵀ``, softmax, dropout, ``·V``
    elementwise: float  #: the memory-bound ops: norms, activations, residuals, RoPE
    #: what a policy that names its saved tensors keeps per token in a dense / MoE layer: the
    #: layer's input and the saved outputs [elements]; 0: the mode's own accounting
    #: (:class:`trnlab.perf.train.ModelShape`)
    kept_dense: float = 0.0
    kept_moe: float = 0.0


#: The one definition of each recompute mode, used by the FLOP counts here and (through
#: :class:`trnlab.perf.train.ModelShape`) by the step model's time, activation memory and HFU.
#:
#: * ``"selective"``: Korthikanti et al. 2022, "Reducing Activation Recomputation in Large
#:   Transformer Models", sec. 5 (selective activation recomputation): the attention core,
#:   ``Q·Kᵀ``, softmax, softmax dropout and attention over ``V``, is checkpointed and run again
#:   in the backward pass; the weight GEMMs and the other ops are not. The core keeps only its
#:   inputs ``Q``, ``K``, ``V``: the paper's saving is the ``5·a·s²·b`` bytes of scores,
#:   softmax and dropout; FlashAttention never stores those, so here the saving is what the
#:   fused kernel keeps beside its inputs (its output and the softmax statistics).
#: * ``"full"``: every decoder layer runs its forward again from its stored input (Chen et
#:   al. 2016; Narayanan et al., SC'21); the logit layer is not recomputed (Megatron-LM).
RECOMPUTED = {
    "none": Recompute(gemms=0.0, attention=0.0, elementwise=0.0),
    "selective": Recompute(gemms=0.0, attention=1.0, elementwise=0.0),
    "full": Recompute(gemms=1.0, attention=1.0, elementwise=1.0),
}

#: What "selective" recompute runs again under each framework's policy (a framework family's
#: ``selective`` in data/perf/stacks.toml, or a case's notes):
#:
#: * ``"attention"``: Korthikanti et al. 2022, as ``RECOMPUTED["selective"]`` (Megatron-LM,
#:   NeMo, Megatron-Bridge).
#: * ``"op"``: torchtitan's op-level selective checkpointing
#:   (torchtitan/distributed/activation_checkpoint.py ``_custom_policy``): the outputs of the
#:   matmuls, of SDPA and of reduce-scatter are saved "except every second mm", every other op
#:   is recomputed: half the weight GEMMs and all memory-bound ops run again, the attention core
#:   does not.
#: * ``"layer"``: torchtitan's layer-level option ``selective_ac_option = '2'``: full
#:   recompute on every second decoder layer, half of everything.
SELECTIVE = {
    "attention": RECOMPUTED["selective"],
    "op": Recompute(gemms=0.5, attention=0.0, elementwise=1.0),
    "layer": Recompute(gemms=0.5, attention=0.5, elementwise=0.5),
}


def saving_recompute(spec: TransformerSpec, saved: frozenset[str]) -> Recompute:
    """What a policy that keeps only the outputs ``saved`` runs again in the backward pass
    (MaxText's ``remat_policy``: named checkpoints kept on device or offloaded to the host,
    every other tensor recomputed) [1], and what it keeps per token (the layer's input and the
    saved outputs) [elements].

    ``saved`` names weight GEMMs of :func:`trnlab.workloads.gemms.layer_gemms` (``"q"``,
    ``"k"``, ``"v"`` for the parts of a fused ``qkv`` by their output width,
    ``"attn_out"``, ``"mlp_up"``, ``"mlp_down"``, ...) and ``"attention"`` for the attention
    core's output. The recomputed GEMM share is ``1 - (FLOPs of the saved GEMMs) / (FLOPs of
    all layer GEMMs)``; the attention core runs again unless its output is saved; the
    memory-bound ops always do.
    """
    width = spec.heads + 2 * spec.kv_heads  # a fused qkv splits by output width: a, g, g
    qkv = {"q": spec.heads / width, "k": spec.kv_heads / width, "v": spec.kv_heads / width}

    def kept_share(name: str) -> float:  # the part of one GEMM's output that is saved
        if name == "qkv":
            return sum(f for part, f in qkv.items() if part in saved)
        return 1.0 if name in saved else 0.0

    def kept(kind: str) -> float:  # the layer's input, then the saved outputs [elements]
        core = spec.heads * spec.v_dim if "attention" in saved else 0.0
        return spec.hidden + core + sum(g.m_per_token * g.n * g.count * kept_share(g.name)
                                        for g in layer_gemms(spec, kind) if g.layers)

    return Recompute(gemms=1.0 - _gemm_share(spec, kept_share),
                     attention=0.0 if "attention" in saved else 1.0, elementwise=1.0,
                     kept_dense=kept("dense"), kept_moe=kept("moe"))


def _layer_kinds(spec: TransformerSpec) -> list[tuple[str, int]]:
    """The layer kinds ``spec`` has and how many layers of each."""
    return [(k, n) for k, n in (("dense", spec.dense_layers), ("moe", spec.moe_layers)) if n]


def _gemm_share(spec: TransformerSpec, share: Callable[[str], float]) -> float:
    """FLOP-weighted mean of ``share(gemm name)`` over all layer GEMMs of ``spec`` [1]."""
    gemms = [g for k, _ in _layer_kinds(spec) for g in layer_gemms(spec, k)]
    total = sum(g.flops_per_token for g in gemms)
    return sum(g.flops_per_token * share(g.name) for g in gemms) / total if total else 0.0


#: Megatron-Core's ``recompute_modules`` (``recompute_granularity = "selective"``,
#: megatron/core/transformer/transformer_config.py): the weight GEMMs
#: (:func:`trnlab.workloads.gemms.layer_gemms`) and memory-bound ops
#: (:func:`trnlab.workloads.traffic.memory_bound_ops`) each module runs again; ``core_attn`` is
#: the attention core.
MEGATRON_MODULES: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    "core_attn": (frozenset(), frozenset()),
    "layernorm": (frozenset(), frozenset({"attn_norm", "mlp_norm"})),
    "mla_up_proj": (frozenset({"q_up", "kv_up"}), frozenset({"rope"})),
    "mlp": (frozenset({"mlp_up", "mlp_down"}), frozenset({"mlp_act"})),
    "moe_act": (frozenset(), frozenset({"expert_act"})),
    "moe": (frozenset({"router", "expert_up", "expert_down", "shared_up", "shared_down"}),
            frozenset({"router_topk", "moe_dispatch", "expert_act", "moe_combine"})),
    "shared_experts": (frozenset({"shared_up", "shared_down"}), frozenset()),
}


def module_recompute(spec: TransformerSpec, modules: frozenset[str]) -> Recompute:
    """What Megatron-Core's selective recompute of ``modules`` (:data:`MEGATRON_MODULES`) runs
    again in the backward pass [1].

    The GEMM share is the recomputed GEMMs' FLOPs over all layer GEMM FLOPs, the memory-bound
    share their HBM traffic over all memory-bound traffic (each weighted by the layers of its
    kind), the attention core 1 with ``core_attn`` else 0.
    """
    from trnlab.workloads.traffic import memory_bound_ops  # traffic imports this module

    unknown = sorted(modules - MEGATRON_MODULES.keys())
    if unknown:
        raise ParameterError(bad_value("module_recompute", "modules", unknown[0],
                                       f"one of {', '.join(sorted(MEGATRON_MODULES))}"))
    gemm_names = frozenset().union(*(MEGATRON_MODULES[m][0] for m in modules))
    op_names = frozenset().union(*(MEGATRON_MODULES[m][1] for m in modules))
    ops = [(op, n) for k, n in _layer_kinds(spec) for op in memory_bound_ops(spec, k)]
    traffic = sum((op.read + op.write) * n for op, n in ops)
    redone = sum((op.read + op.write) * n for op, n in ops if op.name in op_names)
    return Recompute(gemms=_gemm_share(spec, lambda name: float(name in gemm_names)),
                     attention=1.0 if "core_attn" in modules else 0.0,
                     elementwise=redone / traffic if traffic else 0.0)


def block_recompute(spec: TransformerSpec, layers_per_chunk: int, chunks: int) -> Recompute:
    """Megatron's full recompute with ``recompute_method = "block"``: the first
    ``layers_per_chunk`` (``recompute_num_layers``) decoder layers of each of the ``chunks``
    (pipeline stages x virtual stages) model chunks run their forward again, the others keep
    their activations: a share ``min(1, layers_per_chunk x chunks / L)`` of full recompute
    (megatron/core/transformer/transformer_block.py ``_checkpointed_forward``) [1]."""
    share = min(1.0, layers_per_chunk * chunks / spec.layers)
    return Recompute(gemms=share, attention=share, elementwise=share)


def attention_flops_per_token(spec: TransformerSpec, seq_len: Any, causal: bool = True) -> Any:
    """Forward FLOPs of attention scores and context per token, all layers [FLOP].

    ``2·L·a·(d_qk + d_v)·s``, halved when ``causal`` (``4·L·a·d·s`` for MHA; MLA uses
    ``d_qk = qk_nope + qk_rope`` and ``d_v = v_head_dim``). Causal with sliding windows: ``s/2``
    becomes the mean keys per query over the layers
    (:meth:`TransformerSpec.mean_attended_keys`); a non-causal count (the full ``s²`` of a
    framework's formula) stays as the framework writes it.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    seq_len : int, float or array
        Tokens per sequence ``s`` [tokens].
    causal : bool
        Count half of the ``s²`` score matrix (causal mask).

    References
    ----------
    Narayanan et al., SC'21, appendix "Floating-point operations"; Chowdhery et al. 2022 (PaLM),
    appendix B.
    """
    s = as_float(seq_len, "seq_len")
    coef = 2.0 * spec.layers * spec.heads * (spec.qk_head_dim + spec.v_dim)
    return coef * (spec.mean_attended_keys(s) if causal else s)


def forward_flops_per_token(spec: TransformerSpec, seq_len: Any, causal: bool = True) -> Any:
    """FLOPs of one forward pass per token [FLOP]: ``2·N`` plus attention.

    Parameters
    ----------
    spec : TransformerSpec
        The model; ``N`` = ``spec.flop_params``.
    seq_len : int, float or array
        Tokens per sequence ``s`` [tokens]. For a prefill of a ``s``-token prompt this is the
        FLOPs per prompt token.
    causal : bool
        Halve the attention term (causal mask).
    """
    return 2.0 * spec.flop_params + attention_flops_per_token(spec, seq_len, causal)


def model_flops_per_token(spec: TransformerSpec, seq_len: Any, causal: bool = True) -> Any:
    """Training model FLOPs per token (forward + backward, no recompute) [FLOP].

    ``6·N + 3·attention_forward``: ``6·N + 12·L·a·d·s`` without a mask, ``6·N + 6·L·a·d·s`` with
    a causal mask (``d_qk = d_v = d``). ``N`` = active matmul weights incl. the logit layer
    (``spec.flop_params``). This is the numerator of MFU.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    seq_len : int, float or array
        Tokens per training sequence ``s`` [tokens].
    causal : bool
        Halve the attention term (causal mask).

    References
    ----------
    Kaplan et al. 2020, sec. 2.1 (``6N``); Narayanan et al., SC'21, appendix; Chowdhery et al.
    2022 (PaLM), appendix B (MFU, ``6N + 12·L·H·Q·T`` non-causal).
    """
    return 3.0 * forward_flops_per_token(spec, seq_len, causal)


def recompute_flops_per_token(spec: TransformerSpec, seq_len: Any, recompute: str = "none",
                              causal: bool = True) -> Any:
    """FLOPs per token that recomputation runs again, as :data:`RECOMPUTED` defines it [FLOP].

    ``gemms·2·(N - V·h) + attention·attention_forward``: the decoder layers' weight GEMMs
    (``N`` = ``spec.flop_params`` less the logit layer ``V·h``, never recomputed) and the
    attention core's forward (:func:`attention_flops_per_token`). Memory-bound ops count no
    FLOPs in trnlab's convention.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    seq_len : int, float or array
        Tokens per training sequence ``s`` [tokens].
    recompute : {"none", "selective", "full"}
        Activation recomputation.
    causal : bool
        Halve the attention term (causal mask).

    References
    ----------
    Korthikanti et al. 2022, sec. 5 (selective); Narayanan et al., SC'21, appendix (full).
    """
    if recompute not in RECOMPUTED:
        raise ParameterError(bad_value("hardware_flops_per_token", "recompute", recompute,
                                       f"one of {', '.join(RECOMPUTE)}"))
    r = RECOMPUTED[recompute]
    layers = 2.0 * (spec.flop_params - spec.vocab * spec.hidden)  # 2 FLOPs per multiply-add
    return r.gemms * layers + r.attention * attention_flops_per_token(spec, seq_len, causal)


def hardware_flops_per_token(spec: TransformerSpec, seq_len: Any, recompute: str = "none",
                             causal: bool = True) -> Any:
    """Training FLOPs per token executed by the hardware, incl. recomputation [FLOP].

    The model FLOPs plus :func:`recompute_flops_per_token` (:data:`RECOMPUTED`):

    * ``"none"``: the model FLOPs.
    * ``"selective"``: plus one more forward of the attention core (scores, softmax, context;
      Korthikanti et al. 2022, sec. 5).
    * ``"full"``: plus one more forward pass of every decoder layer (weights and attention).
      The logit layer is not recomputed, as in Megatron-LM: for MHA, ``ffn = 4h``, no gating and
      ``causal=False`` this is Narayanan et al.'s ``96·B·s·L·h²·(1 + s/(6h) + V/(16·L·h))``
      per iteration of ``B·s`` tokens.

    Parameters and references as :func:`recompute_flops_per_token` (Korthikanti et al. 2022,
    table 4, for the totals).
    """
    extra = recompute_flops_per_token(spec, seq_len, recompute, causal)
    return model_flops_per_token(spec, seq_len, causal) + extra


def decode_flops_per_token(spec: TransformerSpec, context_len: Any, mla_absorb: bool = True
                           ) -> Any:
    """Forward FLOPs to generate one token that attends to ``context_len`` cached tokens [FLOP].

    ``2·N + 2·L·a·(d_qk + d_v)·c`` (no mask: the new token sees the whole context). For MLA
    with the up-projections absorbed into the query and output (DeepSeek-V2 report, sec.
    2.1.2; as served by vLLM/SGLang), attention runs in the latent space:
    ``2·L·a·(2·kv_lora_rank + qk_rope_head_dim)·c``; the weight FLOPs are unchanged.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    context_len : int, float or array
        Keys attended, incl. the new token [tokens].
    mla_absorb : bool
        Use the absorbed MLA form (ignored for non-MLA models).
    """
    c = as_float(context_len, "context_len")
    if spec.is_mla and mla_absorb:
        per_key = 2.0 * spec.heads * (2 * spec.kv_lora_rank + spec.qk_rope_head_dim)
    else:
        per_key = 2.0 * spec.heads * (spec.qk_head_dim + spec.v_dim)
    return 2.0 * spec.flop_params + spec.layers * per_key * c
