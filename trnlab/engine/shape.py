"""Turn a :class:`~trnlab.workloads.TransformerSpec` into the numbers the core needs: the
:class:`~trnlab.perf.train.ModelShape` of the step model and the
:class:`~trnlab.perf.serve.ServeShape` of the serving model."""

from __future__ import annotations

from functools import lru_cache

from trnlab.perf.serve import ServeShape
from trnlab.perf.train import LayerGemm, ModelShape
from trnlab.workloads import TransformerSpec
from trnlab.workloads.flops import RECOMPUTED, SELECTIVE, Recompute
from trnlab.workloads.gemms import layer_gemms
from trnlab.workloads.traffic import elementwise_traffic, stored_activations

_ACTIVATIONS = ("gemm_in", "attn_in", "attn_out", "elementwise", "stats")


def _gemms(spec: TransformerSpec, kind: str) -> tuple[LayerGemm, ...]:
    return tuple(LayerGemm(g.name, g.m_per_token, g.k, g.n, g.count)
                 for g in layer_gemms(spec, kind) if g.layers)


def _activations(spec: TransformerSpec, kind: str) -> dict[str, float]:
    """Activations one layer keeps for its backward pass, per token [elements], as the step
    model takes them: :func:`trnlab.workloads.traffic.stored_activations` (the formula in bytes
    and its reference are there) grouped into the inputs of the weight GEMMs (``gemm_in``, each
    tensor once, ``O`` included), FlashAttention's inputs Q, K, V (``attn_in``), what the
    attention core keeps beside them that no GEMM keeps (``attn_out``: nothing, its output
    ``O`` is the output projection's input), the other tensors kept at the activation precision
    (``elementwise``: norm and activation-function inputs, MoE router scores and combine
    inputs), and the softmax log-sum-exp, one per head (``stats``, fp32).

    Selective recompute (:data:`trnlab.workloads.flops.RECOMPUTED`) thus drops the log-sum-exp
    alone: ``O`` stays as the output projection's input. Two terms of the exact count have no
    field in :class:`~trnlab.perf.train.ModelShape` and are left out: the norms' fp32
    statistics (4 B x 1-2 per norm, two norms per layer: < 0.1 %), and, when the GEMMs run in a
    narrower format (FP8), FlashAttention's own copy of ``O`` at the activation precision
    beside the output projection's cast, and the extra casts of a tensor several GEMMs read
    (MLA's q/kv down-projections, an MoE layer's router and shared experts).
    """
    if not any(g.layers for g in layer_gemms(spec, kind)):
        return dict.fromkeys(_ACTIVATIONS, 0.0)
    kept = stored_activations(spec, kind)
    qkv = {"q", "k", "v"}
    return {
        "gemm_in": sum(t.elems for t in kept if t.store == "gemm_input"),
        "attn_in": sum(t.elems for t in kept if t.name in qkv),
        "attn_out": 0.0,
        "elementwise": sum(t.elems for t in kept
                           if t.store == "activation" and t.name not in qkv),
        "stats": sum(t.elems for t in kept if t.store == "statistic" and t.attention_core),
    }


@lru_cache(maxsize=64)
def model_shape(spec: TransformerSpec, selective: str | Recompute = "attention",
                eager: frozenset[str] = frozenset()) -> ModelShape:
    """The :class:`~trnlab.perf.train.ModelShape` of ``spec``; ``selective`` is what the
    "selective" recompute mode runs again: a framework's policy by name
    (:data:`trnlab.workloads.flops.SELECTIVE`) or a :class:`~trnlab.workloads.flops.Recompute`
    (:func:`trnlab.workloads.flops.saving_recompute`); ``eager``: the memory-bound op kinds
    the framework runs one PyTorch kernel per operator
    (:data:`trnlab.workloads.traffic.EAGER_TRAFFIC`)."""
    pc = spec.param_counts()
    elem = {k: elementwise_traffic(spec, k, eager)
            if spec.moe_layers or k == "dense" else 0.0 for k in ("dense", "moe")}
    act = {k: _activations(spec, k) for k in ("dense", "moe")}
    moe_shared = (spec.attention_params_per_layer + spec.norm_params_per_layer
                  + spec.router_params_per_layer
                  + spec.moe_shared_experts * spec.expert_params) if spec.moe_layers else 0.0
    sel = SELECTIVE[selective] if isinstance(selective, str) else selective
    none, full = RECOMPUTED["none"], RECOMPUTED["full"]  # codes 0 and 2
    return ModelShape(
        name=spec.name, dense_layers=spec.dense_layers, moe_layers=spec.moe_layers,
        hidden=spec.hidden, heads=spec.heads, kv_heads=spec.kv_heads, qk_dim=spec.qk_head_dim,
        v_dim=spec.v_dim, vocab=spec.vocab, moe_active=spec.moe_active,
        gemms_dense=_gemms(spec, "dense"), gemms_moe=_gemms(spec, "moe"),
        elem_traffic_dense=elem["dense"], elem_traffic_moe=elem["moe"],
        act_gemm_in_dense=act["dense"]["gemm_in"], act_gemm_in_moe=act["moe"]["gemm_in"],
        act_attn_in_dense=act["dense"]["attn_in"], act_attn_in_moe=act["moe"]["attn_in"],
        act_attn_out_dense=act["dense"]["attn_out"], act_attn_out_moe=act["moe"]["attn_out"],
        act_elem_dense=act["dense"]["elementwise"], act_elem_moe=act["moe"]["elementwise"],
        softmax_stats_dense=act["dense"]["stats"], softmax_stats_moe=act["moe"]["stats"],
        params_dense_layer=spec.attention_params_per_layer + spec.mlp_params_per_layer
        + spec.norm_params_per_layer,
        params_moe_shared=moe_shared,
        params_experts=spec.moe_experts * spec.expert_params if spec.moe_layers else 0.0,
        params_embedding=pc.embedding + pc.lm_head,
        flop_params=spec.flop_params,
        layer_flop_params=spec.flop_params - spec.vocab * spec.hidden,
        recompute_gemms=(none.gemms, sel.gemms, full.gemms),
        recompute_attention=(none.attention, sel.attention, full.attention),
        recompute_elementwise=(none.elementwise, sel.elementwise, full.elementwise),
        window=float(spec.sliding_window), window_share=spec.windowed_layers / spec.layers,
        kept_selective_dense=sel.kept_dense, kept_selective_moe=sel.kept_moe,
    )


@lru_cache(maxsize=64)
def serve_shape(spec: TransformerSpec) -> ServeShape:
    """The :class:`~trnlab.perf.serve.ServeShape` of ``spec``."""
    pc = spec.param_counts()
    experts = spec.moe_layers * spec.expert_params if spec.moe_experts else 0.0
    latent = (spec.kv_lora_rank + spec.qk_rope_head_dim) if spec.is_mla else 0.0
    return ServeShape(
        name=spec.name, layers=spec.layers, moe_layers=spec.moe_layers, hidden=spec.hidden,
        heads=spec.heads, qk_dim=spec.qk_head_dim, v_dim=spec.v_dim,
        kv_heads=0.0 if spec.is_mla else spec.kv_heads, kv_latent=latent,
        kv_rank=float(spec.kv_lora_rank) if spec.is_mla else 0.0,
        moe_experts=spec.moe_experts, moe_active=spec.moe_active,
        attn_params=spec.layers * spec.attention_params_per_layer,
        dense_params=pc.total - pc.experts + (0 if spec.lm_head_params else
                                              spec.vocab * spec.hidden),
        expert_params=experts, flop_params=spec.flop_params,
        window=float(spec.sliding_window), window_share=spec.windowed_layers / spec.layers)
