"""Turn a :class:`~trnlab.workloads.TransformerSpec` into the numbers the core needs: the
:class:`~trnlab.perf.train.ModelShape` of the step model and the
:class:`~trnlab.perf.serve.ServeShape` of the serving model."""

from __future__ import annotations

from functools import lru_cache

from trnlab.perf.serve import ServeShape
from trnlab.perf.train import RECOMPUTE, LayerGemm, ModelShape
from trnlab.workloads import TransformerSpec
from trnlab.workloads.flops import RECOMPUTED
from trnlab.workloads.gemms import layer_gemms
from trnlab.workloads.traffic import memory_bound_ops

_ACTIVATIONS = ("gemm_in", "attn_in", "attn_out", "elementwise", "stats")


def _gemms(spec: TransformerSpec, kind: str) -> tuple[LayerGemm, ...]:
    return tuple(LayerGemm(g.name, g.m_per_token, g.k, g.n, g.count)
                 for g in layer_gemms(spec, kind) if g.layers)


def _activations(spec: TransformerSpec, kind: str) -> dict[str, float]:
    """Activations one layer keeps for its backward pass, per token [elements]: the inputs of
    the weight GEMMs (``gemm_in``), the attention core's inputs Q, K, V (``attn_in``) and the
    output FlashAttention keeps (``attn_out``), the inputs of the memory-bound ops
    (``elementwise``), and the softmax statistics, one per head (``stats``; counted apart,
    they are fp32).

    Backward needs the input of every GEMM (weight gradients) and of every elementwise op;
    FlashAttention keeps Q, K, V, the output and the softmax log-sum-exp (Dao 2023). Which of
    them a recompute mode drops is :data:`trnlab.workloads.flops.RECOMPUTED`. The core
    multiplies the counts by the byte sizes of ``data/perf/training.toml``.
    """
    if not any(g.layers for g in layer_gemms(spec, kind)):
        return dict.fromkeys(_ACTIVATIONS, 0.0)
    return {
        "gemm_in": float(sum(g.k * g.m_per_token * g.count for g in layer_gemms(spec, kind))),
        # Q, K and V as FlashAttention keeps them (V counted at heads x d_qk)
        "attn_in": float(spec.heads * spec.qk_head_dim * 2 + spec.kv_heads * spec.qk_head_dim),
        "attn_out": float(spec.heads * spec.v_dim),
        "elementwise": float(sum(op.read for op in memory_bound_ops(spec, kind))),
        "stats": float(spec.heads),
    }


@lru_cache(maxsize=64)
def model_shape(spec: TransformerSpec) -> ModelShape:
    """The :class:`~trnlab.perf.train.ModelShape` of ``spec``."""
    pc = spec.param_counts()
    elem = {k: float(sum(op.read + op.write for op in memory_bound_ops(spec, k)))
            if spec.moe_layers or k == "dense" else 0.0 for k in ("dense", "moe")}
    act = {k: _activations(spec, k) for k in ("dense", "moe")}
    moe_shared = (spec.attention_params_per_layer + spec.norm_params_per_layer
                  + spec.router_params_per_layer
                  + spec.moe_shared_experts * spec.expert_params) if spec.moe_layers else 0.0
    none, selective, full = (RECOMPUTED[mode] for mode in RECOMPUTE)  # codes 0, 1, 2
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
        recompute_gemms=(none.gemms, selective.gemms, full.gemms),
        recompute_attention=(none.attention, selective.attention, full.attention),
        recompute_elementwise=(none.elementwise, selective.elementwise, full.elementwise),
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
        moe_experts=spec.moe_experts, moe_active=spec.moe_active,
        attn_params=spec.layers * spec.attention_params_per_layer,
        dense_params=pc.total - pc.experts + (0 if spec.lm_head_params else
                                              spec.vocab * spec.hidden),
        expert_params=experts, flop_params=spec.flop_params)
