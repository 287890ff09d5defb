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

What a layer *keeps* for its backward pass is another matter (:func:`stored_activations`): an
op's traffic reads tensors its backward does not need (a residual add's inputs, RoPE's input).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from trnlab.errors import ParameterError, bad_value
from trnlab.workloads._array import as_float
from trnlab.workloads.flops import RECOMPUTE, RECOMPUTED
from trnlab.workloads.gemms import layer_gemms
from trnlab.workloads.spec import TransformerSpec

__all__ = ["EAGER_TRAFFIC", "FP8_CAST", "FP8_CAST_TRAFFIC", "GEMM_INPUT", "STORES",
           "ElementwiseOp", "StoredTensor", "activation_bytes_per_token_per_layer",
           "elementwise_traffic", "fp8_cast_elements", "memory_bound_ops",
           "stored_activation_bytes_per_token_per_layer", "stored_activations",
           "weight_bytes_per_layer"]


#: forward FLOPs per element *read* by each kind of memory-bound op (first-order counts, the
#: arithmetic of the op, not a fitted number): RMSNorm squares, sums, scales by rsqrt and the
#: weight (4); RoPE is x cos + rot(x) sin (3); a residual add reads two tensors for one add
#: (0.5); SwiGLU silu(g) u reads two (2.5 per element read); top-k softmax (4); the MoE combine
#: is a weighted sum (2); a pure copy (MoE dispatch) does none
FLOPS_PER_READ = {"norm": 4.0, "rope": 3.0, "residual": 0.5, "act": 2.5, "router_topk": 4.0,
                  "moe_combine": 2.0, "moe_dispatch": 0.0}

#: traffic of an op kind run eagerly (one PyTorch kernel per operator, no fusion) over the fused
#: kernel's read-once-write-once traffic, bf16 activations with fp32 upcasts at 4 B per element,
#: from the decomposition of the reference Llama modules (torchtitan@9dec370
#: torchtitan/models/norms.py RMSNorm, models/llama/model.py apply_rotary_emb and FeedForward;
#: Hugging Face LlamaRMSNorm is the same):
#:   norm: x.float() R2 W4, pow(2) R4 W4, mean R4, x * rsqrt R4 W4, type_as R4 W2, * weight
#:         R2 W2 = 36 B per element against R2 W2 = 4 B: 9 (RMSNorm only: F.layer_norm is one
#:         kernel);
#:   rope: x.float() R2 W4, complex multiply R4 W4, type_as R4 W2 = 20 B against 4 B: 5;
#:   act:  silu(g) R2 W2, then silu(g) * u R4 W2 = 10 B per output element against the fused
#:         R4 W2 = 6 B: 5/3 (gated MLPs only: a plain GELU is one kernel).
#: Residual adds, MoE routing, dispatch and combine are one kernel each either way.
EAGER_TRAFFIC = {"norm": 9.0, "rope": 5.0, "act": 5.0 / 3.0}

#: the unfused kind of a stack that casts every FP8 GEMM input by a kernel of its own (torchao
#: Float8Linear, dynamic tensorwise scaling; Transformer Engine fuses the cast into the kernel
#: that produces the input, which the fitted FP8 GEMM factor covers)
FP8_CAST = "fp8_cast"
#: traffic of one such cast per element of the GEMM input, in elements of the 2 B activation
#: format: under torch.compile the amax reduction fuses into the producer, the cast reads the
#: bf16 input and writes fp8, R2 W1 = 3 B = 1.5 elements (torchao/float8/float8_scaling_utils
#: hp_tensor_to_float8_dynamic: amax, scale, cast; the backward casts the output gradient and
#: transposes both operands, about twice the forward, as backward_memory_factor counts)
FP8_CAST_TRAFFIC = 1.5


class ElementwiseOp(NamedTuple):
    """A memory-bound op of one layer, per token [elements]."""

    name: str
    read: float
    write: float

    @property
    def kind(self) -> str:
        """The op's kind, the last part of its name (``attn_norm`` is a ``norm``): a key of
        :data:`FLOPS_PER_READ`."""
        kind = next((k for k in FLOPS_PER_READ if self.name == k or self.name.endswith(k)), None)
        if kind is None:
            raise ParameterError(bad_value("memory_bound_ops", "op", self.name,
                                           f"one of the kinds {', '.join(FLOPS_PER_READ)}"))
        return kind

    @property
    def flops(self) -> float:
        """Forward FLOPs per token [FLOP]: ``read`` x :data:`FLOPS_PER_READ` of its kind."""
        return FLOPS_PER_READ[self.kind] * self.read


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


def fp8_cast_elements(spec: TransformerSpec, layer_kind: str = "dense") -> float:
    """Elements of the weight GEMMs' inputs per token of one layer [elements]: what a stack
    casting each FP8 GEMM input separately (:data:`FP8_CAST`) casts, ``sum m_per_token x k x
    count`` over :func:`~trnlab.workloads.gemms.layer_gemms` (routed experts: ``top-k x h``),
    each input tensor once (torch.compile eliminates the repeated casts of a tensor several
    Linears read: Q, K, V; gate and up); the router stays in high precision.
    Llama 3 8B: ``3h + ffn`` = 26,624."""
    return float(sum(g.m_per_token * g.k * g.count for g in layer_gemms(spec, layer_kind)
                     if g.name != "router"))


def elementwise_traffic(spec: TransformerSpec, layer_kind: str = "dense",
                        eager: frozenset[str] = frozenset()) -> float:
    """Elements the memory-bound ops of one layer's forward pass move per token [elements]:
    the reads and writes of :func:`memory_bound_ops`, the kinds in ``eager`` (run one PyTorch
    kernel per operator, a subset of :data:`EAGER_TRAFFIC`) times their eager traffic; an
    RMSNorm-free model's norms (LayerNorm) and an ungated activation stay one kernel. With
    :data:`FP8_CAST` in ``eager``, each FP8 GEMM input's own cast adds
    :data:`FP8_CAST_TRAFFIC` x :func:`fp8_cast_elements`."""
    unknown = sorted(eager - EAGER_TRAFFIC.keys() - {FP8_CAST})
    if unknown:
        raise ParameterError(bad_value("elementwise_traffic", "eager", ", ".join(unknown),
                                       f"kinds among {', '.join([*EAGER_TRAFFIC, FP8_CAST])}"))
    one_kernel = {"norm": spec.norm != "rmsnorm", "act": not spec.gated_mlp}
    casts = FP8_CAST_TRAFFIC * fp8_cast_elements(spec, layer_kind) if FP8_CAST in eager else 0.0
    return casts + sum((EAGER_TRAFFIC[op.kind] if op.kind in eager
                        and not one_kernel.get(op.kind) else 1.0) * (op.read + op.write)
                       for op in memory_bound_ops(spec, layer_kind))


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


# ---------------------------------------------------------------- stored activations
#: how a stored tensor is kept: at the activation precision, as the input of weight GEMMs (at
#: the GEMM precision), or as an fp32 per-row statistic
STORES = ("activation", "gemm_input", "statistic")

#: the tensor each weight GEMM of :func:`~trnlab.workloads.gemms.layer_gemms` reads (several
#: GEMMs may read one tensor: MLA's q and kv down-projections, an MoE layer's router and shared
#: experts)
GEMM_INPUT = {"qkv": "attn_norm_out", "q": "attn_norm_out", "q_down": "attn_norm_out",
              "kv_down": "attn_norm_out", "q_up": "q_latent_norm_out",
              "kv_up": "kv_latent_norm_out", "attn_out": "attn_core_out",
              "mlp_up": "mlp_norm_out", "router": "mlp_norm_out", "shared_up": "mlp_norm_out",
              "mlp_down": "mlp_act_out", "expert_up": "dispatched",
              "expert_down": "expert_act_out", "shared_down": "shared_act_out"}


class StoredTensor(NamedTuple):
    """A tensor one layer keeps for its backward pass, per token [elements].

    Attributes
    ----------
    name : str
        What it is (``attn_norm_in``, ``q``, ``lse``, ``mlp_act_out``, ...).
    elems : float
        Elements per token of the layer's input [elements].
    store : {"activation", "gemm_input", "statistic"}
        Kept at the activation precision, as the input of weight GEMMs, or as fp32 statistics.
    readers : int
        Weight GEMMs that read it (``gemm_input``; a narrower GEMM format keeps one cast per
        GEMM) [1].
    attention_core : bool
        The attention core keeps it: a ``statistic`` or ``activation`` only the core keeps
        (dropped when the core is recomputed), or a ``gemm_input`` the core also keeps at the
        activation precision (FlashAttention's output ``O``, which the output projection reads).
    """

    name: str
    elems: float
    store: str
    readers: int = 0
    attention_core: bool = False


def stored_activations(spec: TransformerSpec, layer_kind: str = "dense") -> list[StoredTensor]:
    """The tensors one layer keeps for its backward pass, per token [elements].

    A FlashAttention implementation with sequence parallelism (Megatron-Core with Transformer
    Engine): Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
    Models", sec. 4.1 and table 2 (eq. 1: ``sbh(34 + 5as/h)`` bytes per layer; with sequence
    parallelism every term is split over the ``t`` TP ranks, eq. 5), adapted:

    * FlashAttention (Dao 2023, FlashAttention-2, alg. 1-2) keeps ``Q``, ``K``, ``V`` at their
      own head counts, its output ``O`` and one fp32 log-sum-exp per head and token: no ``s²``
      term (the paper's ``5as/h``).
    * ``O`` is the output projection's input: one tensor, counted once.
    * Every GEMM keeps its input (weight gradient); a tensor read by several GEMMs is one tensor
      (a narrower GEMM format keeps one cast per GEMM: the bytes function below).
    * A norm keeps its input and fp32 statistics (RMSNorm ``1/rms``; LayerNorm mean and
      ``1/σ``); an activation function its input (SwiGLU: gate and up, ``2·ffn``).
    * Kept by nothing: residual-add inputs (the gradient passes through), RoPE's input (a
      fixed rotation: its backward needs only cos/sin), MoE dispatch (a permutation: indices
      only), the layer's output (the next layer's input).
    * No dropout (rate 0, as in current LLM recipes): the paper's two ``sbh`` masks are gone.
    * MoE combine (``Σ p_i y_i``): the gradient of a routing weight ``p_i`` needs the expert
      output ``y_i``, so ``k·h`` expert outputs and ``k`` weights are kept; the router keeps its
      ``E`` scores (softmax/sigmoid backward, load-balancing loss).

    Per token and layer, with ``b`` bytes per activation element, ``c = 2`` for a gated MLP
    (else 1), ``n_w`` fp32 statistics per norm (1 RMSNorm, 2 LayerNorm) and GEMM inputs at the
    activation precision (BF16/FP16 GEMMs)::

        attention (MHA/GQA/MQA):  b·(h + a·d + 2·g·d)            norm input, Q, K, V
                                + b·(h + a·d)                    QKV input, O (= out-proj input)
                                + 4·a + 4·n_w                    log-sum-exp, norm statistics
        attention (MLA):          b·(h + q_r + kv_r + 2·a·d_qk + a·d_v)
                                + b·(h + q_r + kv_r + a·d_v)     (q_r = 0 without q_lora)
                                + 4·a + 4·n_w·(2 + [q_r > 0])    d_qk = nope + rope
        dense MLP:                b·(h + c·f) + b·(h + f) + 4·n_w
        MoE MLP:                  b·(h + E + c·(k + s)·f_e + k·h + k)
                                + b·(h + k·h + (k + s)·f_e)      dispatched tokens, expert
                                                                 and shared down inputs
                                + 4·n_w

    (``a`` query heads, ``g`` key/value heads, ``d`` head dim, ``d_v`` value head dim, ``f``
    dense ffn, ``f_e`` expert ffn, ``k`` routed experts per token, ``s`` shared experts, ``E``
    routed experts). For MHA, ``f = 4h``, no gating, LayerNorm and ``b = 2`` this is
    ``32·h + 4·a + 16`` bytes: the paper's ``34·h`` less its two dropout masks, plus the
    fp32 statistics.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    layer_kind : {"dense", "moe"}
        Which layer type.
    """
    gemms = layer_gemms(spec, layer_kind)  # validates layer_kind
    h, a, g = spec.hidden, spec.heads, spec.kv_heads
    c = 2 if spec.gated_mlp else 1
    n_w = 2 if spec.norm == "layernorm" else 1
    reads: dict[str, list[float]] = {}
    for gm in gemms:
        reads.setdefault(GEMM_INPUT[gm.name], []).append(gm.k * gm.m_per_token * gm.count)
    for name, sizes in reads.items():  # readers of one tensor read the same elements
        if any(x != sizes[0] for x in sizes):
            raise ParameterError(bad_value("stored_activations", name, sizes, "equal sizes"))

    def gemm_in(name: str, attention_core: bool = False) -> StoredTensor:
        return StoredTensor(name, float(reads[name][0]), "gemm_input", len(reads[name]),
                            attention_core)

    def act(name: str, elems: float) -> StoredTensor:
        return StoredTensor(name, float(elems), "activation")

    def stat(name: str, elems: float, attention_core: bool = False) -> StoredTensor:
        return StoredTensor(name, float(elems), "statistic", 0, attention_core)

    out = [act("attn_norm_in", h), stat("attn_norm_stats", n_w), gemm_in("attn_norm_out")]
    if spec.is_mla:
        if spec.q_lora_rank:
            out += [act("q_latent_norm_in", spec.q_lora_rank),
                    stat("q_latent_norm_stats", n_w), gemm_in("q_latent_norm_out")]
        out += [act("kv_latent_norm_in", spec.kv_lora_rank), stat("kv_latent_norm_stats", n_w),
                gemm_in("kv_latent_norm_out")]
    # FlashAttention's inputs after RoPE (MLA: K per head, nope + the shared rope part), its
    # output (the output projection's input) and its log-sum-exp
    out += [act("q", a * spec.qk_head_dim), act("k", g * spec.qk_head_dim),
            act("v", g * spec.v_dim), gemm_in("attn_core_out", attention_core=True),
            stat("lse", a, attention_core=True),
            act("mlp_norm_in", h), stat("mlp_norm_stats", n_w), gemm_in("mlp_norm_out")]
    if layer_kind == "dense":
        return [*out, act("mlp_act_in", c * spec.ffn), gemm_in("mlp_act_out")]
    k, e, f = spec.moe_active, spec.moe_experts, spec.moe_ffn
    out += [act("router_scores", e), gemm_in("dispatched"), act("expert_act_in", c * k * f),
            gemm_in("expert_act_out"), act("combine_expert_out", k * h),
            act("combine_weights", k)]
    if spec.moe_shared_experts:
        out += [act("shared_act_in", c * spec.moe_shared_experts * f), gemm_in("shared_act_out")]
    return out


def stored_activation_bytes_per_token_per_layer(
        spec: TransformerSpec, activation_bytes: float, gemm_bytes: float, stat_bytes: float,
        recompute: str = "none", layer_kind: str = "dense") -> float:
    """Bytes one layer keeps for its backward pass per token of its input [B].

    The sum over :func:`stored_activations`, under a recompute mode of
    :data:`~trnlab.workloads.flops.RECOMPUTED`:

    * ``"none"``: every tensor. A GEMM input is one tensor at ``activation_bytes`` when the GEMMs
      run at that precision; when they run narrower (FP8, Transformer Engine), each GEMM keeps
      its own cast (``gemm_bytes`` per element and reader) and a tensor the attention core also
      keeps (``O``) stays at ``activation_bytes`` beside it.
    * ``"selective"`` (the attention core recomputed, Korthikanti et al. 2022, sec. 5): less what
      only the core keeps, its log-sum-exp and, at a narrower GEMM format, its copy of ``O``.
      ``Q``, ``K``, ``V`` stay (the recompute's inputs); ``O`` stays as the output projection's
      input.
    * ``"full"``: the layer's input, ``activation_bytes·h`` (Korthikanti et al. 2022, sec. 4.3).

    Divide by the TP degree for the bytes per chip with sequence parallelism.

    Parameters
    ----------
    spec : TransformerSpec
        The model.
    activation_bytes, gemm_bytes, stat_bytes : float
        Bytes per activation element, per element of a GEMM's kept input, per statistic [B]
        (``data/perf/training.toml`` and ``formats.toml``; no defaults).
    recompute : {"none", "selective", "full"}
        Activation recomputation.
    layer_kind : {"dense", "moe"}
        Which layer type.
    """
    if recompute not in RECOMPUTED:
        raise ParameterError(bad_value("stored_activation_bytes_per_token_per_layer",
                                       "recompute", recompute, f"one of {', '.join(RECOMPUTE)}"))
    b, gb, sb = (as_float(x, n) for x, n in ((activation_bytes, "activation_bytes"),
                                             (gemm_bytes, "gemm_bytes"),
                                             (stat_bytes, "stat_bytes")))
    if not all(isinstance(x, float) for x in (b, gb, sb)):
        raise ParameterError(bad_value("stored_activation_bytes_per_token_per_layer", "bytes",
                                       "an array", "numbers [B]"))
    r = RECOMPUTED[recompute]
    tensors = stored_activations(spec, layer_kind)
    if r.gemms >= 1.0:  # the whole layer runs again from its input
        return b * spec.hidden
    core = 1.0 - r.attention  # what only the attention core keeps survives this fraction
    total = 0.0
    for t in tensors:
        if t.store == "gemm_input":
            total += t.elems * (b if gb >= b else gb * t.readers + core * b * t.attention_core)
        else:
            total += t.elems * (b if t.store == "activation" else sb) \
                * (core if t.attention_core else 1.0)
    return total
