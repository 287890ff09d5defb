"""Memory traffic of a transformer layer: weight bytes and the bytes of memory-bound ops.

Assumptions (a first-order model, forward pass):

* Every elementwise/normalization op reads its inputs from and writes its output to device
  memory once (no fusion across ops). Bias adds and activation scaling are fused into the GEMM
  epilogues and not listed.
* Attention scores, softmax and context run in one fused kernel (FlashAttention, Dao et al.
  2022) whose traffic is the Q/K/V/O tensors and, when decoding, the KV cache
  (:meth:`TransformerSpec.kv_bytes_per_token`); it is not listed here.
* MoE dispatch and combine copy each token's hidden state once per routed expert.
* Norm weights and biases are negligible next to the GEMM weights and are left out.
* The backward pass moves about twice the forward traffic (not modelled here).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from trnlab.workloads._array import as_float
from trnlab.workloads.gemms import layer_gemms
from trnlab.workloads.spec import TransformerSpec

__all__ = ["ElementwiseOp", "activation_bytes_per_token_per_layer", "memory_bound_ops",
           "weight_bytes_per_layer"]


class ElementwiseOp(NamedTuple):
    """A memory-bound op of one layer, per token [elements]."""

    name: str
    read: float
    write: float


def memory_bound_ops(spec: TransformerSpec, layer_kind: str = "dense") -> list[ElementwiseOp]:
    """The memory-bound (non-GEMM) ops of one layer's forward pass, per token [elements].

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    layer_kind : {"dense", "moe"}
        Which layer type.
    """
    layer_gemms(spec, layer_kind)  # validates layer_kind
    h, a = spec.hidden, spec.heads
    ops = [ElementwiseOp("attn_norm", h, h)]
    if spec.is_mla:
        r = spec.qk_rope_head_dim
        if spec.q_lora_rank:
            ops.append(ElementwiseOp("q_latent_norm", spec.q_lora_rank, spec.q_lora_rank))
        ops += [ElementwiseOp("kv_latent_norm", spec.kv_lora_rank, spec.kv_lora_rank),
                ElementwiseOp("rope", (a + 1) * r, (a + 1) * r)]
    else:
        qk = (a + spec.kv_heads) * spec.head_dim  # type: ignore[operator]
        ops.append(ElementwiseOp("rope", qk, qk))
    ops += [ElementwiseOp("attn_residual", 2 * h, h), ElementwiseOp("mlp_norm", h, h)]
    act = 2 if spec.gated_mlp else 1  # gated: act(gate) * up reads 2 inputs
    if layer_kind == "dense":
        ops.append(ElementwiseOp("mlp_act", act * spec.ffn, spec.ffn))
    else:
        k, e, f = spec.moe_active, spec.moe_experts, spec.moe_ffn
        per_tok = (k + spec.moe_shared_experts) * f
        ops += [ElementwiseOp("router_topk", e, 2 * k),
                ElementwiseOp("moe_dispatch", k * h, k * h),
                ElementwiseOp("expert_act", act * per_tok, per_tok),
                ElementwiseOp("moe_combine", k * h + k, h)]
    ops.append(ElementwiseOp("mlp_residual", 2 * h, h))
    return ops


def activation_bytes_per_token_per_layer(spec: TransformerSpec, bytes_per_elem: Any,
                                         layer_kind: str = "dense") -> Any:
    """Bytes moved by the memory-bound ops of one layer's forward pass, per token [B].

    The sum of reads and writes of :func:`memory_bound_ops` times ``bytes_per_elem``.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    bytes_per_elem : float or array
        Bytes per activation element [B] (the format's size, ``data/perf/formats.toml``;
        no default: workloads hold no physical constant).
    layer_kind : {"dense", "moe"}
        Which layer type.
    """
    elems = sum(op.read + op.write for op in memory_bound_ops(spec, layer_kind))
    return float(elems) * as_float(bytes_per_elem, "bytes_per_elem")


def weight_bytes_per_layer(spec: TransformerSpec, bytes_per_elem: Any,
                           layer_kind: str = "dense", tokens: Any = None) -> Any:
    """Weight bytes one layer reads in a forward pass over a batch of ``tokens`` tokens [B].

    Dense: all GEMM weights. MoE: attention, router and shared experts, plus the routed experts
    that at least one token uses. With uniform, independent top-k routing the expected number
    of distinct experts hit by ``T`` tokens is ``E·(1 - (1 - k/E)^T)``; ``tokens=None`` counts
    all ``E`` (a large batch or a weight-streaming bound).

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    bytes_per_elem : float or array
        Bytes per weight element [B] (the format's size, ``data/perf/formats.toml``).
    layer_kind : {"dense", "moe"}
        Which layer type.
    tokens : int, float, array or None
        Tokens in the batch (decode: the batch size) [tokens].
    """
    b = as_float(bytes_per_elem, "bytes_per_elem")
    fixed, expert = 0.0, 0.0
    for g in layer_gemms(spec, layer_kind):
        if g.name.startswith("expert_"):
            expert += g.k * g.n  # one routed expert
        else:
            fixed += g.weight_elems
    t = None if tokens is None else as_float(tokens, "tokens")
    if not expert:
        return fixed * b if t is None else fixed * b + 0.0 * t  # broadcast like ``tokens``
    e, k = spec.moe_experts, spec.moe_active
    miss = 1.0 - k / e  # probability that one token does not route to a given expert
    hit = float(e) if t is None else e * (1.0 - miss**t)
    return (fixed + expert * hit) * b
