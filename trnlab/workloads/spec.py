"""The architecture of a decoder-only transformer and its parameter counts.

Parameter counts follow the weight shapes of the reference implementations: Megatron-LM GPT
(Narayanan et al., SC'21, appendix, eq. for P), Hugging Face ``LlamaForCausalLM`` /
``MixtralForCausalLM`` / ``Qwen3MoeForCausalLM``, and DeepSeek-V3 (DeepSeek-AI, "DeepSeek-V3
Technical Report", arXiv:2412.19437, sec. 2.1, MLA and DeepSeekMoE).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from trnlab.errors import ParameterError, bad_value
from trnlab.workloads._array import as_float, minimum

__all__ = ["ParamCounts", "TransformerSpec"]

NORMS = ("rmsnorm", "layernorm")


@dataclass(frozen=True)
class ParamCounts:
    """Parameters of a whole model split by how they are sharded [count of parameters].

    Attributes
    ----------
    attention : int
        Attention projections of all layers, incl. their biases and MLA latent norms
        (tensor-parallel).
    mlp : int
        Dense MLP layers (tensor-parallel).
    experts : int
        Routed experts of all MoE layers (expert-parallel).
    shared_experts : int
        Shared (always active) experts of all MoE layers.
    router : int
        MoE router (gate) weights of all MoE layers.
    embedding : int
        Input token embedding plus a learned absolute position table (vocab-parallel).
    lm_head : int
        Output (logit) projection; 0 when tied to the input embedding.
    norms : int
        Layer norms of all layers and the final norm (replicated).
    """

    attention: int
    mlp: int
    experts: int
    shared_experts: int
    router: int
    embedding: int
    lm_head: int
    norms: int

    @property
    def total(self) -> int:
        """Sum of all kinds [count]."""
        return sum(getattr(self, f.name) for f in fields(self))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class TransformerSpec:
    """A decoder-only transformer (dense, GQA/MQA, MoE, MLA).

    Parameters
    ----------
    name : str
        Model id (e.g. ``"llama3-70b"``).
    layers : int
        Decoder layers ``L``.
    hidden : int
        Model width ``h`` [elements].
    heads : int
        Query heads ``a``.
    kv_heads : int, optional
        Key/value heads ``g`` (GQA/MQA); ``heads`` when omitted. Must divide ``heads``; equal to
        ``heads`` for MLA.
    head_dim : int, optional
        Per-head dimension ``d`` [elements]; ``hidden // heads`` when omitted (then ``heads`` must
        divide ``hidden``). For MLA it is the query/key head dim ``qk_nope + qk_rope``.
    ffn : int
        Intermediate size of a dense MLP layer [elements]; 0 when every layer is MoE.
    gated_mlp : bool
        ``True``: gated MLP (SwiGLU/GeGLU, 3 matrices); ``False``: 2 matrices (GeLU, ReLU).
    vocab : int
        Vocabulary size ``V`` (padded where the implementation pads).
    tied_embeddings : bool
        The logit projection shares the input embedding's weights.
    moe_experts : int
        Routed experts per MoE layer ``E`` (0 = dense model).
    moe_active : int
        Routed experts per token (top-k) ``k``.
    moe_shared_experts : int
        Shared experts per MoE layer, each of width ``moe_ffn``.
    moe_ffn : int
        Intermediate size of one expert [elements].
    moe_dense_layers : int
        Leading layers that have a dense MLP instead of MoE (DeepSeek ``first_k_dense_replace``).
    q_lora_rank, kv_lora_rank, qk_rope_head_dim, qk_nope_head_dim, v_head_dim : int
        Multi-head latent attention (DeepSeek-V2/V3); ``kv_lora_rank > 0`` turns MLA on.
        ``q_lora_rank = 0`` means queries are projected directly.
    linear_bias : bool
        Linear layers carry biases (GPT-2/3, Megatron GPT defaults); not modelled for MLA.
    norm : {"rmsnorm", "layernorm"}
        Normalization: RMSNorm has ``h`` parameters, LayerNorm ``2h``.
    pos_embeddings : int
        Rows of a learned absolute position table (GPT-3: 2048); 0 for RoPE models.
    sliding_window : int
        Keys a query of a windowed layer attends to at most [tokens] (gpt-oss: 128, Gemma 3:
        1024, Mistral 7B v0.1: 4096); 0 = every layer attends over the whole context.
    window_layers : int
        Layers that attend over the sliding window [count] (gpt-oss: every other layer,
        Gemma 3: five of six); 0 with a window = all layers.
    params_published : float, optional
        Total parameters as published [1e9].
    active_params_published : float, optional
        Active parameters per token as published (MoE) [1e9].
    source : str
        Citation of the architecture and of the published counts.

    Notes
    -----
    Not modelled: qk-norm weights (Qwen3, 2·d per layer), router biases, DeepSeek-V3's
    multi-token-prediction module (excluded from its published 671B as well), attention sinks.
    """

    name: str
    layers: int
    hidden: int
    heads: int
    kv_heads: int | None = None
    head_dim: int | None = None
    ffn: int = 0
    gated_mlp: bool = False
    vocab: int = 0
    tied_embeddings: bool = False
    moe_experts: int = 0
    moe_active: int = 0
    moe_shared_experts: int = 0
    moe_ffn: int = 0
    moe_dense_layers: int = 0
    q_lora_rank: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    qk_nope_head_dim: int = 0
    v_head_dim: int = 0
    linear_bias: bool = False
    norm: str = "rmsnorm"
    pos_embeddings: int = 0
    sliding_window: int = 0
    window_layers: int = 0
    params_published: float | None = None
    active_params_published: float | None = None
    source: str = ""

    # ------------------------------------------------------------------ validation
    def __post_init__(self) -> None:
        where = f"model {self.name!r}"
        if not isinstance(self.name, str) or not self.name:
            raise ParameterError(bad_value("TransformerSpec", "name", self.name, "a non-empty str"))
        for opt in ("q_lora_rank", "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim",
                    "v_head_dim", "moe_experts", "moe_active", "moe_shared_experts", "moe_ffn",
                    "moe_dense_layers", "ffn", "pos_embeddings", "sliding_window",
                    "window_layers"):
            if getattr(self, opt) is None:
                object.__setattr__(self, opt, 0)
        for pos in ("layers", "hidden", "heads", "vocab"):
            v = getattr(self, pos)
            if not _is_int(v) or v <= 0:
                raise ParameterError(bad_value(where, pos, v, "a positive int"))
        for nonneg in ("ffn", "moe_experts", "moe_active", "moe_shared_experts", "moe_ffn",
                       "moe_dense_layers", "q_lora_rank", "kv_lora_rank", "qk_rope_head_dim",
                       "qk_nope_head_dim", "v_head_dim", "pos_embeddings", "sliding_window",
                       "window_layers"):
            v = getattr(self, nonneg)
            if not _is_int(v) or v < 0:
                raise ParameterError(bad_value(where, nonneg, v, "an int >= 0"))
        for flag in ("gated_mlp", "tied_embeddings", "linear_bias"):
            v = getattr(self, flag)
            if not isinstance(v, bool):
                raise ParameterError(bad_value(where, flag, v, "true or false"))
        if self.norm not in NORMS:
            raise ParameterError(bad_value(where, "norm", self.norm, f"one of {', '.join(NORMS)}"))
        for pub in ("params_published", "active_params_published"):
            v = getattr(self, pub)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float) or v <= 0):
                raise ParameterError(bad_value(where, pub, v, "a positive number [1e9] or None"))
        if not isinstance(self.source, str):
            raise ParameterError(bad_value(where, "source", self.source, "a str"))
        self._check_attention(where)
        self._check_window(where)
        self._check_moe(where)

    def _check_window(self, where: str) -> None:
        if self.window_layers > self.layers:
            raise ParameterError(bad_value(where, "window_layers", self.window_layers,
                                           f"<= layers = {self.layers}"))
        if self.window_layers and not self.sliding_window:
            raise ParameterError(bad_value(where, "window_layers", self.window_layers,
                                           "0 unless sliding_window > 0"))

    def _check_attention(self, where: str) -> None:
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)
        g = self.kv_heads
        if not _is_int(g) or g <= 0 or self.heads % g:
            raise ParameterError(bad_value(where, "kv_heads", g,
                                           f"a positive int dividing heads = {self.heads}"))
        mla = ("q_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim")
        if self.kv_lora_rank > 0:
            for f in mla[1:]:
                if getattr(self, f) <= 0:
                    raise ParameterError(bad_value(where, f, getattr(self, f),
                                                   "a positive int when kv_lora_rank > 0 (MLA)"))
            if g != self.heads:
                raise ParameterError(bad_value(where, "kv_heads", g,
                                               f"must equal heads = {self.heads} for MLA"))
            qk = self.qk_nope_head_dim + self.qk_rope_head_dim
            if self.head_dim is None:
                object.__setattr__(self, "head_dim", qk)
            if self.head_dim != qk:
                raise ParameterError(bad_value(where, "head_dim", self.head_dim,
                                               f"qk_nope_head_dim + qk_rope_head_dim = {qk} (MLA)"))
            return
        for f in mla:
            if getattr(self, f) != 0:
                raise ParameterError(bad_value(where, f, getattr(self, f),
                                               "0 unless kv_lora_rank > 0 (MLA)"))
        if self.head_dim is None:
            if self.hidden % self.heads:
                raise ParameterError(bad_value(where, "head_dim", None,
                                               f"required: heads = {self.heads} does not divide "
                                               f"hidden = {self.hidden}"))
            object.__setattr__(self, "head_dim", self.hidden // self.heads)
        if not _is_int(self.head_dim) or self.head_dim <= 0:
            raise ParameterError(bad_value(where, "head_dim", self.head_dim, "a positive int"))

    def _check_moe(self, where: str) -> None:
        e = self.moe_experts
        if e == 0:
            for f in ("moe_active", "moe_shared_experts", "moe_ffn", "moe_dense_layers"):
                if getattr(self, f) != 0:
                    raise ParameterError(bad_value(where, f, getattr(self, f),
                                                   "0 for a dense model (moe_experts = 0)"))
        else:
            if not 1 <= self.moe_active <= e:
                raise ParameterError(bad_value(where, "moe_active", self.moe_active,
                                               f"1 <= moe_active <= moe_experts = {e}"))
            if self.moe_ffn <= 0:
                raise ParameterError(bad_value(where, "moe_ffn", self.moe_ffn,
                                               "a positive int for an MoE model"))
            if self.moe_dense_layers >= self.layers:
                raise ParameterError(bad_value(where, "moe_dense_layers", self.moe_dense_layers,
                                               f"< layers = {self.layers}"))
        if self.dense_layers > 0 and self.ffn <= 0:
            raise ParameterError(bad_value(where, "ffn", self.ffn,
                                           f"a positive int ({self.dense_layers} dense MLP layers)"))

    # ------------------------------------------------------------------ structure
    @property
    def is_moe(self) -> bool:
        """Whether the model has routed experts."""
        return self.moe_experts > 0

    @property
    def is_mla(self) -> bool:
        """Whether attention is multi-head latent attention (DeepSeek-V2/V3)."""
        return self.kv_lora_rank > 0

    @property
    def dense_layers(self) -> int:
        """Layers with a dense MLP [count]."""
        return self.moe_dense_layers if self.is_moe else self.layers

    @property
    def moe_layers(self) -> int:
        """Layers with an MoE block [count]."""
        return self.layers - self.moe_dense_layers if self.is_moe else 0

    @property
    def qk_head_dim(self) -> int:
        """Query/key dimension per head [elements] (MLA: ``qk_nope + qk_rope``)."""
        return self.head_dim  # type: ignore[return-value]

    @property
    def v_dim(self) -> int:
        """Value (attention-context) dimension per head [elements]."""
        return self.v_head_dim if self.is_mla else self.head_dim  # type: ignore[return-value]

    # ------------------------------------------------------------------ per-layer counts
    @property
    def attention_matmul_params_per_layer(self) -> int:
        """Weights of the attention projections of one layer [count].

        MHA/GQA: ``h·(a + 2g)·d + a·d·h``. MLA (DeepSeek-V3 report, eqs. 1-10): ``h·q_lora +
        q_lora·a·(nope+rope)`` (or ``h·a·(nope+rope)`` without q compression) ``+ h·(kv_lora +
        rope) + kv_lora·a·(nope + v) + a·v·h``.
        """
        h, a = self.hidden, self.heads
        if self.is_mla:
            qk = self.qk_head_dim
            q = h * self.q_lora_rank + self.q_lora_rank * a * qk if self.q_lora_rank else h * a * qk
            kv = (h * (self.kv_lora_rank + self.qk_rope_head_dim)
                  + self.kv_lora_rank * a * (self.qk_nope_head_dim + self.v_head_dim))
            return q + kv + a * self.v_head_dim * h
        d, g = self.head_dim, self.kv_heads
        return h * (a + 2 * g) * d + a * d * h  # type: ignore[operator]

    @property
    def attention_params_per_layer(self) -> int:
        """Attention parameters of one layer incl. biases and MLA latent norms [count]."""
        n = self.attention_matmul_params_per_layer
        if self.is_mla:
            n += (self.q_lora_rank + self.kv_lora_rank) * self._norm_width
        elif self.linear_bias:  # biases of q, k, v and the output projection (not for MLA)
            n += (self.heads + 2 * self.kv_heads) * self.head_dim + self.hidden  # type: ignore[operator]
        return n

    def _mlp_matmul(self, width: int) -> int:
        return (3 if self.gated_mlp else 2) * self.hidden * width

    def _mlp_params(self, width: int) -> int:
        n = self._mlp_matmul(width)
        if self.linear_bias:
            n += (2 if self.gated_mlp else 1) * width + self.hidden
        return n

    @property
    def mlp_params_per_layer(self) -> int:
        """Parameters of one dense MLP [count]: ``(3 if gated else 2)·h·ffn`` (+ biases)."""
        return self._mlp_params(self.ffn)

    @property
    def expert_params(self) -> int:
        """Parameters of one routed or shared expert [count] (an MLP of width ``moe_ffn``)."""
        return self._mlp_params(self.moe_ffn)

    @property
    def router_params_per_layer(self) -> int:
        """Router (gate) weights of one MoE layer [count]: ``h·E``."""
        return self.hidden * self.moe_experts

    @property
    def moe_params_per_layer(self) -> int:
        """Parameters of one MoE block [count]: ``(E + shared)·expert + router``."""
        if not self.is_moe:
            return 0
        return ((self.moe_experts + self.moe_shared_experts) * self.expert_params
                + self.router_params_per_layer)

    @property
    def moe_active_params_per_layer(self) -> int:
        """Parameters of one MoE block that a token uses [count]: ``(k + shared)·expert + router``."""
        if not self.is_moe:
            return 0
        return ((self.moe_active + self.moe_shared_experts) * self.expert_params
                + self.router_params_per_layer)

    @property
    def _norm_width(self) -> int:
        return 2 if self.norm == "layernorm" else 1

    @property
    def norm_params_per_layer(self) -> int:
        """Two pre-norms per layer [count]: ``2·h`` (RMSNorm) or ``4·h`` (LayerNorm)."""
        return 2 * self.hidden * self._norm_width

    # ------------------------------------------------------------------ model counts
    @property
    def embedding_params(self) -> int:
        """Input token embedding plus learned positions [count]: ``(V + pos)·h``."""
        return (self.vocab + self.pos_embeddings) * self.hidden

    @property
    def lm_head_params(self) -> int:
        """Stored weights of the logit projection [count]: ``V·h``, 0 when tied."""
        return 0 if self.tied_embeddings else self.vocab * self.hidden

    def param_counts(self) -> ParamCounts:
        """Parameters of the whole model by kind (for sharding) [count]."""
        return ParamCounts(
            attention=self.layers * self.attention_params_per_layer,
            mlp=self.dense_layers * self.mlp_params_per_layer,
            experts=self.moe_layers * self.moe_experts * self.expert_params,
            shared_experts=self.moe_layers * self.moe_shared_experts * self.expert_params,
            router=self.moe_layers * self.router_params_per_layer,
            embedding=self.embedding_params,
            lm_head=self.lm_head_params,
            norms=self.layers * self.norm_params_per_layer + self.hidden * self._norm_width,
        )

    @property
    def total_params(self) -> int:
        """All parameters [count], the tied embedding counted once."""
        return self.param_counts().total

    @property
    def active_params(self) -> int:
        """Parameters used by one token [count]: all but the ``E - k`` unrouted experts."""
        unused = self.moe_layers * (self.moe_experts - self.moe_active) * self.expert_params
        return self.total_params - unused

    @property
    def flop_params(self) -> int:
        """Weights multiplied per token [count]: active matmul weights incl. the logit layer.

        ``L·attn + L_dense·mlp + L_moe·(h·E + (k + shared)·expert) + V·h``, without biases,
        norms and the embedding lookup; the logit matmul ``V·h`` counts even when tied. A
        forward pass costs ``2·flop_params`` FLOPs per token plus attention scores.
        """
        moe = 0
        if self.is_moe:
            moe = (self.router_params_per_layer
                   + (self.moe_active + self.moe_shared_experts) * self._mlp_matmul(self.moe_ffn))
        return (self.layers * self.attention_matmul_params_per_layer
                + self.dense_layers * self._mlp_matmul(self.ffn)
                + self.moe_layers * moe
                + self.vocab * self.hidden)

    # ------------------------------------------------------------------ attention span
    @property
    def windowed_layers(self) -> int:
        """Layers that attend over the sliding window [count] (0 without one)."""
        return (self.window_layers or self.layers) if self.sliding_window else 0

    def mean_attended_keys(self, seq_len: Any) -> Any:
        """Keys a query attends to under the causal mask, mean over queries and layers [tokens].

        A full layer: ``s/2``. A layer with window ``w``: query ``i`` attends to ``min(i, w)``
        keys, ``m - m²/(2s)`` on average with ``m = min(w, s)`` (``s/2`` when ``w >= s``);
        :func:`trnlab.perf.compute.attended_keys` is the same formula for the core.
        """
        s = as_float(seq_len, "seq_len")
        if not self.sliding_window:
            return 0.5 * s
        share = self.windowed_layers / self.layers
        m = minimum(s, float(self.sliding_window))
        return (1.0 - share) * 0.5 * s + share * (m - m * m / (2.0 * s))

    # ------------------------------------------------------------------ KV cache
    @property
    def kv_elems_per_token(self) -> int:
        """KV-cache elements per token over all layers [elements].

        MHA/GQA: ``L·2·g·d``. MLA caches the compressed latent and the shared RoPE key:
        ``L·(kv_lora_rank + qk_rope_head_dim)`` (DeepSeek-V2 report, sec. 2.1.2).
        """
        if self.is_mla:
            return self.layers * (self.kv_lora_rank + self.qk_rope_head_dim)
        return self.layers * 2 * self.kv_heads * self.head_dim  # type: ignore[operator]

    def kv_bytes_per_token(self, bytes_per_elem: Any = 2) -> Any:
        """KV-cache bytes per token over all layers [B].

        Parameters
        ----------
        bytes_per_elem : float or array
            Bytes per cached element [B] (2 for BF16, 1 for FP8). Arrays broadcast.
        """
        return self.kv_elems_per_token * bytes_per_elem
