"""Turn a :class:`~trnlab.workloads.TransformerSpec` into the numbers the core needs: the
:class:`~trnlab.perf.train.ModelShape` of the step model and the
:class:`~trnlab.perf.serve.ServeShape` of the serving model."""

from __future__ import annotations

from functools import lru_cache

from trnlab.perf.serve import ServeShape
from trnlab.perf.train import LayerGemm, ModelShape
from trnlab.workloads import TransformerSpec
from trnlab.workloads.gemms import layer_gemms
from trnlab.workloads.traffic import memory_bound_ops

BF16 = 2.0


def _gemms(spec: TransformerSpec, kind: str) -> tuple[LayerGemm, ...]:
    return tuple(LayerGemm(g.name, g.m_per_token, g.k, g.n, g.count)
                 for g in layer_gemms(spec, kind) if g.layers)


def _activations(spec: TransformerSpec, kind: str) -> tuple[float, float, float]:
    """Stored activations per token of one layer (bf16) [B]: (all, GEMM inputs + attention,
    GEMM inputs alone).

    Backward needs the input of every GEMM (weight gradients) and of every elementwise op;
    FlashAttention keeps Q, K, V, the output and fp32 softmax statistics (Dao 2023).
    Selective recompute (Korthikanti et al. 2022) drops the elementwise inputs and recomputes.
    """
    if not any(g.layers for g in layer_gemms(spec, kind)):
        return 0.0, 0.0, 0.0
    gemm_in = sum(g.k * g.m_per_token * g.count for g in layer_gemms(spec, kind))
    attn = spec.heads * spec.qk_head_dim * 2 + spec.kv_heads * spec.qk_head_dim \
        + spec.heads * spec.v_dim + 2 * spec.heads  # Q, K, V, O and lse (2 fp32 = 4 bf16 units)
    elementwise = sum(op.read for op in memory_bound_ops(spec, kind))
    kept = BF16 * (gemm_in + attn)
    return kept + BF16 * elementwise, kept, BF16 * gemm_in


@lru_cache(maxsize=64)
def model_shape(spec: TransformerSpec) -> ModelShape:
    """The :class:`~trnlab.perf.train.ModelShape` of ``spec``."""
    pc = spec.param_counts()
    elem = {k: BF16 * sum(op.read + op.write for op in memory_bound_ops(spec, k))
            if spec.moe_layers or k == "dense" else 0.0 for k in ("dense", "moe")}
    act = {k: _activations(spec, k) for k in ("dense", "moe")}
    moe_shared = (spec.attention_params_per_layer + spec.norm_params_per_layer
                  + spec.router_params_per_layer
                  + spec.moe_shared_experts * spec.expert_params) if spec.moe_layers else 0.0
    return ModelShape(
        name=spec.name, dense_layers=spec.dense_layers, moe_layers=spec.moe_layers,
        hidden=spec.hidden, heads=spec.heads, kv_heads=spec.kv_heads, qk_dim=spec.qk_head_dim,
        v_dim=spec.v_dim, vocab=spec.vocab, moe_active=spec.moe_active,
        gemms_dense=_gemms(spec, "dense"), gemms_moe=_gemms(spec, "moe"),
        elem_bytes_dense=elem["dense"], elem_bytes_moe=elem["moe"],
        act_bytes_dense=act["dense"][0], act_bytes_moe=act["moe"][0],
        act_gemm_dense=act["dense"][1], act_gemm_moe=act["moe"][1],
        act_gemm_in_dense=act["dense"][2], act_gemm_in_moe=act["moe"][2],
        params_dense_layer=spec.attention_params_per_layer + spec.mlp_params_per_layer
        + spec.norm_params_per_layer,
        params_moe_shared=moe_shared,
        params_experts=spec.moe_experts * spec.expert_params if spec.moe_layers else 0.0,
        params_embedding=pc.embedding + pc.lm_head,
        flop_params=spec.flop_params,
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
