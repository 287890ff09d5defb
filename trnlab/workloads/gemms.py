"""The weight matmuls (GEMMs) of a transformer, with shapes, for shape-dependent efficiency.

For a batch of ``T`` tokens a GEMM is ``[m, k] @ [k, n]`` with ``m = T·m_per_token``, repeated
``count`` times per layer (e.g. once per expert) in ``layers`` layers. Its forward cost is
``2·m·k·n·count·layers`` FLOPs; summed over :func:`gemms` this is ``2·spec.flop_params`` per
token. Attention scores/context (batched ``s × s`` products) are not weight GEMMs: see
:func:`trnlab.workloads.flops.attention_flops_per_token`.

Implementation shapes follow Megatron-Core: the query/key/value projections are one fused
GEMM (``linear_qkv``), and a gated MLP's gate and up projections are one GEMM of width
``2·ffn`` (``linear_fc1``). Routed experts see ``m_per_token = k/E`` (uniform routing).
"""

from __future__ import annotations

from typing import NamedTuple

from trnlab.errors import ParameterError, bad_value
from trnlab.workloads.spec import TransformerSpec

__all__ = ["LAYER_KINDS", "Gemm", "gemms", "layer_gemms"]

LAYER_KINDS = ("dense", "moe")


class Gemm(NamedTuple):
    """One weight matmul of a layer.

    Attributes
    ----------
    name : str
        ``qkv``, ``attn_out``, ``q_down``, ``q_up``, ``q``, ``kv_down``, ``kv_up``, ``mlp_up``,
        ``mlp_down``, ``router``, ``expert_up``, ``expert_down``, ``shared_up``,
        ``shared_down`` or ``logits``.
    m_per_token : float
        Rows per token of the batch [1] (``k/E`` for one routed expert).
    k : int
        Contraction dimension [elements].
    n : int
        Output columns [elements].
    count : int
        Instances per layer (``E`` for routed experts) [1].
    layers : int
        Layers that contain this GEMM (1 for the logits) [1].
    """

    name: str
    m_per_token: float
    k: int
    n: int
    count: int = 1
    layers: int = 1

    @property
    def flops_per_token(self) -> float:
        """Forward FLOPs per token of the batch, all instances and layers [FLOP]."""
        return 2.0 * self.m_per_token * self.k * self.n * self.count * self.layers

    @property
    def weight_elems(self) -> int:
        """Weight elements of all instances in one layer [elements]."""
        return self.k * self.n * self.count


def _attention(spec: TransformerSpec, layers: int) -> list[Gemm]:
    h, a = spec.hidden, spec.heads
    if not spec.is_mla:
        return [Gemm("qkv", 1.0, h, (a + 2 * spec.kv_heads) * spec.head_dim, 1, layers),
                Gemm("attn_out", 1.0, a * spec.head_dim, h, 1, layers)]
    qk = spec.qk_head_dim
    if spec.q_lora_rank:
        q = [Gemm("q_down", 1.0, h, spec.q_lora_rank, 1, layers),
             Gemm("q_up", 1.0, spec.q_lora_rank, a * qk, 1, layers)]
    else:
        q = [Gemm("q", 1.0, h, a * qk, 1, layers)]
    return [*q,
            Gemm("kv_down", 1.0, h, spec.kv_lora_rank + spec.qk_rope_head_dim, 1, layers),
            Gemm("kv_up", 1.0, spec.kv_lora_rank,
                 a * (spec.qk_nope_head_dim + spec.v_head_dim), 1, layers),
            Gemm("attn_out", 1.0, a * spec.v_head_dim, h, 1, layers)]


def layer_gemms(spec: TransformerSpec, layer_kind: str = "dense") -> list[Gemm]:
    """The weight GEMMs of one dense or MoE layer.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    layer_kind : {"dense", "moe"}
        Which layer type; ``layers`` of each GEMM is how many layers of that type the model has
        (possibly 0).

    Returns
    -------
    list of Gemm
        Attention projections, then the MLP (dense) or router, routed and shared experts (MoE).
    """
    if layer_kind not in LAYER_KINDS:
        raise ParameterError(bad_value("layer_gemms", "layer_kind", layer_kind,
                                       f"one of {', '.join(LAYER_KINDS)}"))
    h, up = spec.hidden, 2 if spec.gated_mlp else 1
    if layer_kind == "dense":
        n = spec.dense_layers
        return [*_attention(spec, n),
                Gemm("mlp_up", 1.0, h, up * spec.ffn, 1, n),
                Gemm("mlp_down", 1.0, spec.ffn, h, 1, n)]
    n, e, f = spec.moe_layers, spec.moe_experts, spec.moe_ffn
    out = [*_attention(spec, n), Gemm("router", 1.0, h, e, 1, n)]
    if e:
        m = spec.moe_active / e
        out += [Gemm("expert_up", m, h, up * f, e, n), Gemm("expert_down", m, f, h, e, n)]
    if spec.moe_shared_experts:
        fs = spec.moe_shared_experts * f  # shared experts run as one MLP (DeepSeek-V3)
        out += [Gemm("shared_up", 1.0, h, up * fs, 1, n), Gemm("shared_down", 1.0, fs, h, 1, n)]
    return out


def gemms(spec: TransformerSpec) -> list[Gemm]:
    """All weight GEMMs of the model: dense layers, MoE layers (when present) and the logits.

    ``sum(g.flops_per_token for g in gemms(spec)) == 2 * spec.flop_params``.
    """
    out: list[Gemm] = []
    if spec.dense_layers:
        out += layer_gemms(spec, "dense")
    if spec.moe_layers:
        out += layer_gemms(spec, "moe")
    return [*out, Gemm("logits", 1.0, spec.hidden, spec.vocab, 1, 1)]
