"""One training step of a decoder-only transformer under a parallel layout, vectorized.

Every argument broadcasts: pass arrays on orthogonal axes (a factored grid: each term is
evaluated on the sub-grid of the axes it depends on, and only the final combination spans the
whole grid) or flat arrays of equal length (a list of configurations). Units are SI.

Model of the step (references in brackets):

- Layout: ranks ordered tp (innermost), cp, dp, pp (outermost); the experts regroup the
  tp x cp x dp ranks of a stage as ep (innermost) x edp with expert-TP 1, or keep the experts
  TP-sharded when ep = 1 (Megatron-Core expert-parallel folding; MoE terms in
  :mod:`trnlab.perf.moe`). ``tp`` uses sequence parallelism (Korthikanti et al. 2022).
- Per micro-batch and pipeline stage, forward time = GEMMs (roofline with shape-dependent
  efficiency, :mod:`trnlab.perf.compute`) + attention core (its own per-chip kernel rates,
  forward and backward, of a FlashAttention-class kernel whose backward does
  ``attention_backward_factor`` = 2.5x the forward matmul work, Dao 2023; or the materialised
  ``s x s`` scores of a pre-FlashAttention stack, ``fused_attention`` = 0) + memory-bound ops +
  a fixed per-layer cost + exposed TP/EP/CP communication (``layer_comm_overlap`` of the TP
  collectives hidden, of the backward's only where ``tp_overlap_backward``: Transformer
  Engine's userbuffers overlap every pass, PyTorch's async TP the forward's); backward is
  twice the forward GEMM work (data and weight gradients) and ``backward_memory_factor`` times
  the memory-bound work and fixed cost. Recompute runs parts of the forward again, as
  :data:`trnlab.workloads.flops.RECOMPUTED` defines them (selective: the attention core,
  Korthikanti et al. 2022, sec. 5; full: the whole layer), passed in through
  :class:`ModelShape`.
- Pipeline 1F1B with ``vpp`` interleaved chunks: ``(n_mb + (pp-1)/vpp) (t_f + t_b)``, the bubble
  is ``(pp-1)/vpp (t_f + t_b)`` (Narayanan et al., SC'21).
- Data parallel: gradient reduce-scatter + parameter all-gather (= an all-reduce) per step,
  hidden behind one micro-batch's compute up to ``dp_overlap``; ZeRO-3/FSDP all-gathers the
  parameters for the forward and again for the backward and reduce-scatters the gradients,
  ``zero3_comm_factor`` = 1.5 all-reduces (Rajbhandari et al. 2020, sec. 7.2.2), behind the same
  window. ``zero3_regather_per_microbatch`` is the reshard policy under pipelining: 0 = once
  per step (PyTorch's pipeline schedules defer the reshard and the gradient reduce-scatter to a
  stage's last micro-batch): with more than one micro-batch the stage's parameters stay
  gathered for the whole step and the gradients accumulate unsharded until the one
  reduce-scatter, so ZeRO-3 shards only the optimizer states (memory as ZeRO-1); 1 = per
  micro-batch (the traffic ``n_mb`` times, weights and gradients stay sharded). Without
  pipelining every micro-batch gathers and reduce-scatters (gradient accumulation under FSDP2,
  Megatron-FSDP and DeepSpeed ZeRO-3 reshards after each forward and backward: a model larger
  than a chip never stays gathered). With one micro-batch both policies are the same.
- Optimizer: memory-bound Adam update of the local shard, in HBM; or with
  ``optimizer_offload`` (DeepSpeed ZeRO-Offload, Ren et al. 2021) in the host's DRAM at
  ``host_adam_eff`` of its peak, the states and main gradients in host memory, the updated BF16
  weights back over the host link.
- Memory: weights, gradients and Adam states (sharded by ZeRO stage), activations of the
  micro-batches in flight on the first stage, fp32 logits on the last.

Every physical constant (byte sizes, the FlashAttention backward factor, overlaps, the ZeRO-3
factor) comes in through :class:`Calibration` (``data/perf/training.toml``); the numbers
written here are counts of the algorithms (``2 m n k`` FLOPs, ``6 N``, the causal ``1/2``, two
TP all-reduces per layer, ...), each with its reason beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trnlab.errors import ParameterError, bad_value
from trnlab.perf import comm, moe
from trnlab.perf._xp import xp_of
from trnlab.perf.compute import attended_keys, gemm_time, memory_time, padded_head_work
from trnlab.perf.hardware import Hardware

RECOMPUTE = ("none", "selective", "full")
#: GEMMs whose output columns (n) are split by TP; row-parallel ones split k
TP_COLUMN = frozenset({"qkv", "q", "q_up", "kv_up", "mlp_up", "expert_up", "shared_up", "logits"})
TP_ROW = frozenset({"attn_out", "mlp_down", "expert_down", "shared_down"})
EXPERT = frozenset({"expert_up", "expert_down"})
#: the GEMMs of a MoE layer's MLP chunk (router, routed and shared experts: the GEMMs of
#: Megatron-Core's "moe" module, trnlab.workloads.flops.MEGATRON_MODULES, which the core may
#: not import; a test keeps the two equal); the rest of the layer (attention projections) is its
#: attention chunk (:func:`trnlab.perf.moe.exposed`)
MOE_MLP = frozenset({"router", "expert_up", "expert_down", "shared_up", "shared_down"})


@dataclass(frozen=True)
class LayerGemm:
    """A weight GEMM of one layer: ``m = tokens * m_per_token``, ``count`` instances."""

    name: str
    m_per_token: float
    k: float
    n: float
    count: float = 1.0


@dataclass(frozen=True)
class ModelShape:
    """What the step model needs to know about a transformer (plain numbers, no arrays).

    Built from a :class:`trnlab.workloads.TransformerSpec` by :func:`model_shape`.
    """

    name: str
    dense_layers: float
    moe_layers: float
    hidden: float
    heads: float
    kv_heads: float
    qk_dim: float
    v_dim: float
    vocab: float
    moe_active: float
    gemms_dense: tuple[LayerGemm, ...]
    gemms_moe: tuple[LayerGemm, ...]
    elem_traffic_dense: float  # forward memory-bound traffic per token per layer [elements]
    elem_traffic_moe: float
    # activations a layer keeps for its backward pass, per token [elements]
    act_gemm_in_dense: float  # inputs of the weight GEMMs (kept at the GEMM precision)
    act_gemm_in_moe: float
    act_attn_in_dense: float  # the attention core's inputs Q, K, V
    act_attn_in_moe: float
    act_attn_out_dense: float  # the attention core's output, as FlashAttention keeps it
    act_attn_out_moe: float
    act_elem_dense: float  # inputs of the memory-bound ops (norms, activations, RoPE, ...)
    act_elem_moe: float
    softmax_stats_dense: float  # softmax statistics FlashAttention keeps, per token [1]
    softmax_stats_moe: float
    params_dense_layer: float  # [1]
    params_moe_shared: float  # non-expert parameters of a MoE layer [1]
    params_experts: float  # routed-expert parameters of a MoE layer [1]
    params_embedding: float  # input embedding + untied output layer [1]
    flop_params: float  # weights multiplied per token, logits included [1]
    layer_flop_params: float  # ... in the decoder layers alone (no logits) [1]
    # the forward work each recompute mode (none, selective, full) runs again in the backward
    # pass, as a multiple of the forward of each part (trnlab.workloads.flops.RECOMPUTED) [1]
    recompute_gemms: tuple[float, float, float]  # weight GEMMs (and the layer's fixed cost)
    recompute_attention: tuple[float, float, float]  # attention core
    recompute_elementwise: tuple[float, float, float]  # memory-bound ops
    window: float = 0.0  # sliding-window keys of the windowed layers [tokens]; 0 = none
    window_share: float = 0.0  # share of the layers that attend over the window [1]
    # what the selective mode keeps per token in a dense / MoE layer when it is a policy that
    # names its saved tensors (the layer input and those outputs) [elements]; 0: the
    # per-part accounting of the recompute factors
    kept_selective_dense: float = 0.0
    kept_selective_moe: float = 0.0

    @property
    def layers(self) -> float:
        return self.dense_layers + self.moe_layers

    @property
    def named_selective(self) -> bool:
        """Whether the selective mode is a policy that names the tensors it keeps."""
        return bool(self.kept_selective_dense or self.kept_selective_moe)

    def attended_keys(self, seq_len: Any, block: float = 0.0, floor: Any = 0.0) -> Any:
        """Keys a query attends to, causal, mean over queries and layers [tokens]; with
        ``block`` > 0 the keys a kernel of that tile computes, at least ``floor`` per windowed
        query (:func:`trnlab.perf.compute.attended_keys`: ``s/2`` without sliding windows)."""
        return attended_keys(seq_len, self.window, self.window_share, block, floor)

    def attention_flops_per_token(self, seq_len: Any, causal: bool = True) -> Any:
        """Forward attention score + context FLOPs per token [FLOP]: ``2 keys a (d_qk + d_v)
        L`` (2 FLOPs per multiply-add) over the keys a query attends to: ``s`` without a mask,
        :meth:`attended_keys` (``s/2`` without sliding windows) under the causal mask."""
        keys = self.attended_keys(seq_len) if causal else seq_len
        return 2.0 * keys * self.heads * (self.qk_dim + self.v_dim) * self.layers

    def model_flops_per_token(self, seq_len: Any) -> Any:
        """Training model FLOPs per token, causal, no recompute [FLOP]: ``6N + 3 attn``
        (forward ``2N``, backward twice the forward: Kaplan et al. 2020, sec. 2.1)."""
        return 6.0 * self.flop_params + 3.0 * self.attention_flops_per_token(seq_len)

    def recompute_flops_per_token(self, seq_len: Any, gemms: Any, attention: Any) -> Any:
        """FLOPs per token run again by recompute [FLOP]: ``gemms`` forwards of the decoder
        layers' weight GEMMs (``2 N_layers``; the logits are never recomputed) and
        ``attention`` forwards of the causal attention core
        (:func:`trnlab.workloads.flops.recompute_flops_per_token`)."""
        return gemms * (2.0 * self.layer_flop_params) \
            + attention * self.attention_flops_per_token(seq_len)


@dataclass(frozen=True)
class Calibration:
    """The step model's physical parameters: fitted efficiencies and the constants of the
    algorithms, number formats and mixed-precision recipe. No defaults: every value comes from
    ``data/perf/training.toml`` (:func:`trnlab.engine.hardware.train_calibration`), where each
    has its unit, status and source."""

    gemm_half_dim: float  # GEMM dimension at half efficiency [elements]
    mem_eff: float  # achieved fraction of HBM bandwidth [1]
    layer_overhead: float  # fixed cost per layer per forward pass (launch, sync) [s]
    layer_comm_overlap: float  # fraction of TP/EP communication hidden behind compute [1]
    dp_overlap: float  # fraction of one micro-batch's compute that can hide DP traffic [1]
    step_overhead: float  # fixed cost per step (data loading, logging) [s]
    mem_reserve: float  # fraction of HBM not usable (runtime, fragmentation) [1]
    attention_backward_factor: float  # FlashAttention backward / forward work [1]
    backward_memory_factor: float  # backward / forward of memory-bound ops and fixed cost [1]
    cp_overlap: float  # fraction of the attention core's time that hides the CP ring [1]
    zero3_comm_factor: float  # ZeRO-3 traffic per gather round / the DP all-reduce [1]
    activation_bytes: float  # per activation element [B]
    softmax_stat_bytes: float  # per softmax statistic (one per head and token) [B]
    logits_bytes: float  # per logit [B]
    weight_bytes: float  # per parameter [B]
    grad_bytes: float  # per parameter, main gradients [B]
    grad_reduce_bytes: float  # per parameter, in the DP all-reduce / ZeRO-3 gathers [B]
    optimizer_bytes: float  # per parameter, master weights + Adam m, v [B]
    optimizer_traffic: float  # per parameter, HBM bytes moved by the Adam update [B]
    zero3_regather_per_microbatch: float  # ZeRO-3 under pipelining: 0 once per step, 1 per micro-batch
    tp_overlap_backward: float  # 1: the backward's TP collectives hide as the forward's; 0: not
    fused_attention: float  # 1 FlashAttention-class kernel, 0 materialised s x s scores [1]
    attention_block: float  # keys per tile of the fused attention kernel [tokens]
    activation_offload: float  # share of the saved activations held in host memory [1]
    offload_resident_layers: float  # layers of an offloading stage still held in HBM [1]
    optimizer_offload: float  # 1: Adam states, main gradients and update on the host CPU [1]
    host_adam_eff: float  # achieved share of the host's DRAM peak by the host's Adam update [1]
    # the MoE terms (data/perf/moe.toml, :mod:`trnlab.perf.moe`): expert-parallel folding over
    # tp x cp x dp with expert-TP 1, grouped GEMMs, hierarchical all-to-all with its own
    # overlap, a fixed cost per MoE layer, load imbalance. None: the earlier MoE model (experts
    # TP-sharded, all-to-all behind layer_comm_overlap, no MoE fixed cost)
    moe: moe.MoECalibration | None = None


@dataclass(frozen=True)
class Layout:
    """A parallel layout and batch (arrays broadcast). ``zero`` 0-3; ``recompute`` 0/1/2 =
    none/selective/full."""

    tp: Any
    pp: Any
    dp: Any
    cp: Any
    ep: Any
    vpp: Any
    zero: Any
    recompute: Any
    micro_batch: Any
    global_batch: Any
    seq_len: Any


def _gemm_op(g: LayerGemm, tokens: Any, lay: Layout, hw: Hardware, cal: Calibration
             ) -> tuple[Any, Any]:
    """Forward FLOPs [FLOP] and time [s] of one layer's GEMM ``g`` (all ``g.count`` of them) on
    one chip.

    A chip with several ranks (NeuronCores) splits each TP-sharded GEMM over its ranks too: each
    core runs a GEMM ``ranks_per_chip`` times narrower at ``1/ranks_per_chip`` of the peak.
    Without expert parallelism the chip runs every expert, so the most loaded one sets nothing
    and the expert GEMMs see the routed rows, unless the stack pads each expert to its capacity
    (GShard's einsum dispatch): then ``capacity x`` those rows
    (:meth:`trnlab.perf.moe.MoECalibration.unsharded_rows`). A grouped GEMM that tiles the
    sorted rows computes each expert's rows plus its share of the tiles two experts straddle
    (:func:`trnlab.perf.moe.tiled_rows`; the FLOPs stay the routed rows').
    """
    split = lay.tp * hw.ranks_per_chip
    m, count = tokens * g.m_per_token, g.count
    if g.name in EXPERT:  # E/ep experts per chip, each gets the tokens of the ep group
        m, count = m * lay.ep, count / lay.ep
        if cal.moe is not None:
            m = m * cal.moe.unsharded_rows()  # GShard's padded buffers (else 1)
    # the rows the GEMM computes (the FLOPs count m): shared tiles computed once per expert
    tiled = moe.tiled_rows(m, count, cal.moe.group_tile) \
        if g.name in EXPERT and cal.moe is not None else m
    n = g.n / split if g.name in TP_COLUMN else g.n
    k = g.k / split if g.name in TP_ROW else g.k
    cores = hw.ranks_per_chip if g.name in TP_COLUMN or g.name in TP_ROW else 1.0
    time = count * gemm_time(tiled, n, k, hw.peak_gemm / cores, hw.gemm_eff, cal.gemm_half_dim,
                             hw.hbm_bw / cores, cal.mem_eff, hw.gemm_bytes)
    flops = 2.0 * m * n * k * count * cores  # 2 FLOPs per multiply-add, on every core
    if g.name not in EXPERT or cal.moe is None:
        return flops, time
    # with expert parallelism, a grouped GEMM (perf.moe): the chip's E/ep experts (spread over
    # its cores), each its 1/etp share (up projection by columns, down by rows), on the tokens
    # of the ep x etp ranks routed to them; without (ep = 1) the experts stay TP-sharded like a
    # dense MLP (expert-TP = tp), as above
    cores, etp = hw.ranks_per_chip, _expert_tp(lay, cal)
    rows = moe.expert_rows(tokens / lay.tp, g.m_per_token * g.count, g.count, lay.ep * etp,
                           cal.moe.load_imbalance)
    local = g.count / (lay.ep * cores)
    n_e = g.n / etp if g.name in TP_COLUMN else g.n
    k_e = g.k / etp if g.name in TP_ROW else g.k
    folded = moe.grouped_gemm_time(moe.tiled_rows(rows, local, cal.moe.group_tile), n_e, k_e,
                                   local, hw.peak_gemm / cores, hw.gemm_eff,
                                   cal.gemm_half_dim, hw.hbm_bw / cores, cal.mem_eff,
                                   hw.gemm_bytes)
    xp = xp_of(lay.ep, rows, time)
    on = lay.ep > 1.0
    return (xp.where(on, 2.0 * rows * n_e * k_e * g.count / lay.ep, flops),
            xp.where(on, folded, time))


def _gemms_time(gemms: tuple[LayerGemm, ...], tokens: Any, lay: Layout, hw: Hardware,
                cal: Calibration) -> Any:
    """Forward time of one layer's weight GEMMs on one chip [s] (:func:`_gemm_op`)."""
    total = 0.0
    for g in gemms:
        total = total + _gemm_op(g, tokens, lay, hw, cal)[1]
    return total


def _attention_times(m: ModelShape, tokens: Any, seq_len: Any, tp: Any, hw: Hardware,
                     cal: Calibration) -> tuple[Any, Any, Any]:
    """Forward FLOPs [FLOP], forward and backward time [s] of one layer's attention core on one
    chip (``T`` = tokens of the micro-batch on the chip, ``s`` = sequence, ``a/tp`` heads).

    Fused (``cal.fused_attention`` = 1, a FlashAttention-class kernel): the causal
    ``2 T (s/2) (a/tp) (d_qk + d_v)`` FLOPs (``s/2`` -> the mean keys over the layers with
    sliding windows, :meth:`ModelShape.attended_keys`: the kernels skip the key tiles
    outside the window but compute the band's tiles whole, ``cal.attention_block`` keys more
    per query of a windowed layer, and at least ``hw.attn_window_keys``: a kernel's fixed cost
    per query tile, which dominates narrow windows) at the chip's forward attention rate
    ``peak_bf16 x attn_fwd_eff`` (``data/perf/chip_efficiency.toml``: FlashAttention-2 50-73% of
    A100, Dao 2023; FlashAttention-3 ~60-75% of H100, Shah et al. 2024), scaled for short
    shapes by the GEMM shape factors of ``T`` query rows and those keys; the backward does
    ``attention_backward_factor`` times that work at ``attn_bwd_eff``. A kernel that pads each
    head dimension to a multiple of ``hw.attn_lanes`` (TPU splash attention: 128 lanes) does
    the padded work (:func:`~trnlab.perf.compute.padded_head_work`). A backward that computes
    ``hw.attn_window_bwd_span x s`` keys per windowed query (cuDNN's FP8 backward on Blackwell:
    the whole ``s x s`` matrix) does that work instead of the window's.

    Materialised (0, attention before FlashAttention: Megatron-LM 2021 CoreAttention): the full
    ``s x s`` score matrix of every head (the causal mask is applied after the product, so no
    halving, nor windowing), two batched GEMMs per head and sequence at GEMM efficiency (``Q K^T``:
    ``[s, d_qk] @ [d_qk, s]``; ``P V``: ``[s, s] @ [s, d_v]``), plus the softmax and dropout
    passes over the scores, each reading and writing them once (2 x 2 x ``activation_bytes``
    per score); the backward runs twice the GEMMs (gradients of both operands) and
    ``backward_memory_factor`` times the memory passes.
    """
    ctx = m.attended_keys(seq_len)  # causal: mean keys per query (s/2 without windows)
    flops = 2.0 * tokens * ctx * (m.heads / tp) * (m.qk_dim + m.v_dim)  # 2 per mul-add
    if cal.fused_attention >= 1.0:
        # whole tiles of a window's band, at least the kernel's per-query floor
        keys = m.attended_keys(seq_len, cal.attention_block, hw.attn_window_keys)
        work = flops * keys / ctx * padded_head_work(m.qk_dim, m.v_dim, hw.attn_lanes)
        shape = tokens / (tokens + cal.gemm_half_dim) * keys / (keys + cal.gemm_half_dim)
        t_fwd = work / (hw.peak_attn * hw.attn_fwd_eff * shape)
        t_bwd = cal.attention_backward_factor * work / (hw.peak_attn * hw.attn_bwd_eff * shape)
        if m.window:  # a backward that computes more of a window's keys (FP8 on Blackwell)
            floor = xp_of(seq_len).maximum(hw.attn_window_keys, hw.attn_window_bwd_span * seq_len)
            t_bwd = t_bwd * m.attended_keys(seq_len, cal.attention_block, floor) / keys
        return flops, t_fwd, t_bwd
    heads = (tokens / seq_len) * (m.heads / tp)  # (sequence, head) pairs on the chip
    gemms = heads * (gemm_time(seq_len, seq_len, m.qk_dim, hw.peak_attn, hw.gemm_eff,
                               cal.gemm_half_dim, hw.hbm_bw, cal.mem_eff, cal.activation_bytes)
                     + gemm_time(seq_len, m.v_dim, seq_len, hw.peak_attn, hw.gemm_eff,
                                 cal.gemm_half_dim, hw.hbm_bw, cal.mem_eff,
                                 cal.activation_bytes))
    scores = heads * seq_len * seq_len
    passes = memory_time(2.0 * 2.0 * cal.activation_bytes * scores, hw.hbm_bw, cal.mem_eff)
    return flops, gemms + passes, 2.0 * gemms + cal.backward_memory_factor * passes


def _attention_op(m: ModelShape, tokens: Any, seq_len: Any, tp: Any, hw: Hardware,
                  cal: Calibration) -> tuple[Any, Any]:
    """Forward FLOPs [FLOP] and time [s] of one layer's attention core on one chip
    (:func:`_attention_times`)."""
    flops, t_fwd, _ = _attention_times(m, tokens, seq_len, tp, hw, cal)
    return flops, t_fwd


def operator_terms(m: ModelShape, hw: Hardware, lay: Layout, cal: Calibration
                   ) -> dict[str, tuple[Any, Any]]:
    """Forward FLOPs [FLOP] and time [s] of each operator the step model times, for one layer
    (of each kind present) and the logits, per micro-batch on one chip: the weight GEMMs by
    name, ``attention_core`` and ``logits``. The same functions make up :func:`step_terms`, so
    a roofline drawn from these terms is the step model's own (no re-implementation)."""
    tokens = lay.micro_batch * lay.seq_len / lay.cp
    out: dict[str, tuple[Any, Any]] = {}
    for g in (*m.gemms_dense, *m.gemms_moe, LayerGemm("logits", 1.0, m.hidden, m.vocab)):
        out.setdefault(g.name, _gemm_op(g, tokens, lay, hw, cal))
    out["attention_core"] = _attention_op(m, tokens, lay.seq_len, lay.tp, hw, cal)
    return out


def _group(n: Any, stride: Any, hw: Hardware) -> tuple[Any, ...]:
    n_in = comm.members_in_domain(n, stride, hw.domain)
    return n, n_in, hw.up_bw, hw.up_latency, hw.out_bw, hw.out_latency


#: outputs of :func:`train_step`, in order
OUTPUTS = ("step_time", "tokens_per_s_per_chip", "model_flops_per_chip", "mfu", "hfu",
           "mem_per_chip", "fits", "n_microbatches", "t_compute", "t_tp", "t_ep", "t_cp",
           "t_offload", "t_pp", "t_dp", "t_bubble", "t_optimizer", "t_overhead")


def _arrays(xp: Any, lay: Layout, hw: Hardware) -> tuple[Layout, Hardware]:
    """Layout and hardware with every plain number turned into a 0-d array of the float dtype
    of the array inputs (so that float32 grids stay float32)."""
    values = [*vars(lay).values(), *vars(hw).values()]
    if all(hasattr(v, "dtype") for v in values):
        return lay, hw
    floats = [v.dtype for v in values
              if hasattr(v, "dtype") and xp.isdtype(v.dtype, "real floating")]
    ft = xp.result_type(*floats) if floats else xp.float64

    def conv(v: Any) -> Any:
        return v if hasattr(v, "dtype") else xp.asarray(v, dtype=ft)

    return (Layout(**{k: conv(v) for k, v in vars(lay).items()}),
            Hardware(**{k: conv(v) for k, v in vars(hw).items()}))


TERMS = ("mb_compute", "t_tp", "t_ep", "t_cp", "t_offload", "t_mb", "p_dense", "p_expert",
         "t_dp_raw", "r_gemms", "r_attn", "r_elem", "saved")


def _by_mode(recompute: Any, values: tuple[float, float, float], ft: Any) -> Any:
    """``values[recompute]`` for an array of recompute codes (0 none, 1 selective, 2 full), in
    the float dtype ``ft``."""
    xp = xp_of(recompute)
    none, selective, full = (xp.asarray(v, dtype=ft) for v in values)
    return xp.where(recompute == 2, full, xp.where(recompute == 1, selective, none))


def _recomputed(m: ModelShape, recompute: Any, ft: Any) -> tuple[Any, Any, Any]:
    """The forward work run again by recompute, per part of a layer: (weight GEMMs and the
    fixed cost, attention core, memory-bound ops), each a multiple of that part's forward [1]."""
    return (_by_mode(recompute, m.recompute_gemms, ft),
            _by_mode(recompute, m.recompute_attention, ft),
            _by_mode(recompute, m.recompute_elementwise, ft))


def _expert_tp(lay: Layout, cal: Calibration) -> Any:
    """Expert-tensor-parallel size [1]: with expert parallelism the MoE stack's ``expert_tp``
    (1: whole experts per chip, the recipes' folding; 0: the TP size, Megatron-Core's default and
    before 0.10 its only layout), ``tp`` without it (ep = 1: TP-sharded like a dense MLP) and in
    the earlier MoE model."""
    if cal.moe is None:
        return lay.tp
    xp = xp_of(lay.ep, lay.tp)
    return xp.where(lay.ep > 1.0, moe.expert_tp_size(cal.moe.expert_tp, lay.tp), lay.tp)


def _moe_tp_pairs(m: ModelShape, lay: Layout, cal: Calibration) -> Any:
    """TP all-gather + reduce-scatter pairs (sequence parallelism) of one MoE layer [1]: with
    expert parallelism the attention's, plus one for shared experts (a TP-sharded dense MLP);
    the routed tokens leave the TP group by all-to-all (Megatron-Core's alltoall and flex
    dispatchers); without (ep = 1) and in the earlier MoE model two, as a dense layer."""
    if cal.moe is None or not m.moe_layers:
        return 2.0
    shared = any(g.name == "shared_up" for g in m.gemms_moe)
    xp, zero = xp_of(lay.ep), 0.0 * lay.ep
    return xp.where(lay.ep > 1.0, zero + 1.0 + float(shared), zero + 2.0)


def _dispatch_group(lay: Layout, cal: Calibration) -> Any:
    """Chips over which the MoE dispatcher gathers the tokens it received [1]: the expert-TP
    group with expert parallelism (:func:`_expert_tp`), 1 without it (ep = 1: the experts are
    TP-sharded like a dense MLP, their TP pairs counted as a dense layer's) and in the earlier
    MoE model; a scalar 1 at expert-TP 1 (no grid)."""
    if cal.moe is None or cal.moe.expert_tp == 1.0:
        return 1.0
    xp = xp_of(lay.ep, lay.tp)
    return xp.where(lay.ep > 1.0, _expert_tp(lay, cal), 1.0 + 0.0 * lay.tp)


def _expert_tp_gathers(m: ModelShape, tokens: Any, lay: Layout, hw: Hardware,
                       cal: Calibration) -> Any:
    """Time of one MoE layer's expert-TP collectives in one pass on one chip [s]: over the
    dispatch group of ``g`` chips (:func:`_dispatch_group`) the dispatcher all-gathers the
    tokens the chip received before the experts and reduce-scatters the experts' outputs after
    them, each of the gathered ``g T k f h`` elements (``T`` = the chip's tokens), one
    all-reduce's volume, on the compute stream: exposed (Megatron-Core 0.9
    ``MoEAlltoAllTokenDispatcher``: gather_from_sequence_parallel_region after the all-to-all,
    reduce_scatter_to_sequence_parallel_region before the one back). 0 for a group of 1."""
    group = _dispatch_group(lay, cal)
    if not hasattr(group, "shape"):
        return 0.0
    gathered = cal.activation_bytes * group * tokens * m.moe_active * cal.moe.load_imbalance \
        * m.hidden
    return comm.all_reduce(gathered, *_group(group, 1.0, hw))


def _expert_down(m: ModelShape) -> LayerGemm | None:
    """The routed experts' down projection of a MoE layer (its ``count`` is the number of
    routed experts, its ``k`` their width); None without routed experts."""
    return next((g for g in m.gemms_moe if g.name == "expert_down"), None)


def _moe_fixed(m: ModelShape, tokens: Any, hw: Hardware, cal: Calibration) -> Any:
    """Forward fixed cost of one MoE layer on one chip beyond a dense layer's [s]
    (:func:`trnlab.perf.moe.fixed_time`) for its ``tokens`` (after sequence parallelism); 0 in
    the earlier model or without routed experts."""
    down = _expert_down(m)
    if cal.moe is None or down is None:
        return 0.0
    return moe.fixed_time(tokens, m.hidden, down.k, m.moe_active, down.count,
                          cal.activation_bytes, hw.gemm_bytes, hw.hbm_bw, cal.mem_eff, cal.moe)


def _moe_einsum_dispatch(m: ModelShape, tokens: Any, group: Any, hw: Hardware,
                         cal: Calibration) -> Any | None:
    """Forward time of one MoE layer's one-hot dispatch and combine einsums on one chip [s]
    (:func:`trnlab.perf.moe.einsum_dispatch_time`: GShard / MaxText dense_matmul) for its
    ``tokens`` in groups (sequences) of ``group`` tokens, at the capacity factor
    ``load_imbalance``; None unless ``einsum_dispatch`` is set."""
    if cal.moe is None or not cal.moe.einsum_dispatch or not m.moe_layers:
        return None
    return moe.einsum_dispatch_time(tokens, group, m.hidden, m.moe_active,
                                    cal.moe.load_imbalance, hw.peak_gemm, hw.gemm_eff,
                                    cal.gemm_half_dim, hw.hbm_bw, cal.mem_eff, hw.gemm_bytes)[1]


def _stage_layers(m: ModelShape, pp: Any) -> tuple[Any, Any]:
    """Dense and MoE layers of the slowest pipeline stage: ``ceil(L/pp)`` layers when pp does
    not divide L (uneven stages, as Megatron-Core allows), split in the model's proportion."""
    xp = xp_of(pp)
    share = xp.ceil(m.layers / pp) / m.layers
    return m.dense_layers * share, m.moe_layers * share


def _layer_bytes(m: ModelShape, cal: Calibration) -> tuple[float, float]:
    """Activation bytes one token leaves in a dense / MoE layer without recompute [B]: the
    inputs of the GEMMs, of the attention core and of the memory-bound ops, the core's output
    and its softmax statistics (Korthikanti et al. 2022, sec. 4)."""
    a, stat = cal.activation_bytes, cal.softmax_stat_bytes
    return (a * (m.act_gemm_in_dense + m.act_attn_in_dense + m.act_attn_out_dense
                 + m.act_elem_dense) + stat * m.softmax_stats_dense,
            a * (m.act_gemm_in_moe + m.act_attn_in_moe + m.act_attn_out_moe
                 + m.act_elem_moe) + stat * m.softmax_stats_moe)


def _saved_per_token(m: ModelShape, hw: Hardware, cal: Calibration, recompute: Any,
                     recomputed: tuple[Any, Any, Any], ld: Any, lm: Any, etp: Any = 1.0) -> Any:
    """Activation bytes one token leaves for the backward pass in the stage's ``ld`` dense and
    ``lm`` MoE layers [B] (Korthikanti et al. 2022, sec. 4).

    Per layer without recompute the inputs of the GEMMs, of the attention core and of the
    memory-bound ops, the core's output and its softmax statistics; a recomputed part keeps only
    its inputs (its output is the next part's input, kept there): selective recompute
    (``recomputed`` = the GEMM, attention and memory-bound shares run again, :func:`_recomputed`)
    drops what the attention core keeps beside Q, K, V. Narrow GEMMs keep their cast inputs at
    the GEMM precision (FP8: Transformer Engine). Recomputing the GEMMs recomputes the whole
    layer: only its input is kept. A selective mode that names its saved tensors (MaxText's
    remat policies, ``m.kept_selective_*``) keeps the layer input and those outputs. With a
    dispatch group of ``etp`` chips (:func:`_dispatch_group`) a chip keeps the experts' inputs
    of the group's tokens, ``etp`` times its own: ``(etp - 1) k h`` elements more per token and
    MoE layer (the down projection's input stays: ``etp`` times the rows at ``1/etp`` the
    width)."""
    r_gemms, r_attn, r_elem = recomputed
    xp = xp_of(r_gemms, hw.gemm_bytes, ld)
    a, stat = cal.activation_bytes, cal.softmax_stat_bytes
    kept_d, kept_m = _layer_bytes(m, cal)
    drop_d = r_attn * (a * m.act_attn_out_dense + stat * m.softmax_stats_dense) \
        + r_elem * (a * m.act_elem_dense)
    drop_m = r_attn * (a * m.act_attn_out_moe + stat * m.softmax_stats_moe) \
        + r_elem * (a * m.act_elem_moe)
    narrow = (a - xp.minimum(hw.gemm_bytes, a)) * (
        ld * m.act_gemm_in_dense + lm * m.act_gemm_in_moe)
    gathered = lm * a * (etp - 1.0) * m.moe_active * m.hidden
    per_token = xp.where(r_gemms >= 1.0, a * m.hidden * (ld + lm),
                         ld * (kept_d - drop_d) + lm * (kept_m - drop_m) - narrow + gathered)
    if m.named_selective:
        named = a * (ld * m.kept_selective_dense + lm * m.kept_selective_moe)
        per_token = xp.where(recompute == 1.0, named, per_token)
    return per_token


def step_terms(m: ModelShape, hw: Hardware, lay: Layout, cal: Calibration) -> dict[str, Any]:
    """The many-operation terms of the step, each on the sub-grid of the inputs it depends on.

    Per micro-batch and pipeline stage (on tp, pp, cp, ep, micro_batch, seq_len, recompute and
    the hardware; not on dp, zero, vpp or the global batch): ``mb_compute`` (forward, backward,
    recompute and logits), ``t_tp`` (TP communication, exposed), ``t_ep`` (the EP
    all-to-all, exposed), ``t_cp`` (exposed CP communication), ``t_offload`` (exposed copies
    of offloaded activations) and ``t_mb`` (all of it, exposed) [s]; ``saved``, the
    activation bytes one token leaves in the stage for its backward [B]. Per chip:
    ``p_dense``, ``p_expert`` (parameters, not sharded by ZeRO) [1] and ``t_dp_raw`` (the
    gradient all-reduce before overlap, on tp, pp, dp, cp, ep and the hardware) [s]; and the
    recompute factors ``r_gemms``, ``r_attn``, ``r_elem`` [1] (on recompute).

    A factored grid computes these once and :func:`train_step` (``terms=``) combines slices of
    them block by block.
    """
    xp = xp_of(lay.tp, lay.pp, lay.dp, lay.micro_batch, lay.seq_len, hw.peak_gemm)
    lay, hw = _arrays(xp, lay, hw)
    tp, pp, dp, cp, ep = lay.tp, lay.pp, lay.dp, lay.cp, lay.ep
    s = lay.seq_len
    tokens = lay.micro_batch * s / cp  # per chip per micro-batch (SP splits them over tp)
    ft = tokens.dtype
    ld, lm = _stage_layers(m, pp)
    r_gemms, r_attn, r_elem = _recomputed(m, lay.recompute, ft)

    # ---- compute per micro-batch per stage, forward
    # sub-grid: tp, pp, cp, ep, micro_batch, seq_len, recompute, hardware
    t_gemm_moe = lm * _gemms_time(m.gemms_moe, tokens, lay, hw, cal)
    t_gemm = ld * _gemms_time(m.gemms_dense, tokens, lay, hw, cal) + t_gemm_moe
    _, t_attn, t_attn_bwd = _attention_times(m, tokens, s, tp, hw, cal)
    t_attn, t_attn_bwd = (ld + lm) * t_attn, (ld + lm) * t_attn_bwd
    t_elem_moe = memory_time(lm * (cal.activation_bytes * m.elem_traffic_moe) * tokens / tp,
                             hw.hbm_bw, cal.mem_eff) if m.moe_layers else 0.0
    t_elem = memory_time(ld * (cal.activation_bytes * m.elem_traffic_dense) * tokens / tp,
                         hw.hbm_bw, cal.mem_eff) + t_elem_moe
    t_moe_fixed = lm * _moe_fixed(m, tokens / tp, hw, cal)
    t_fixed = (ld + lm) * cal.layer_overhead + t_moe_fixed
    logits = LayerGemm("logits", 1.0, m.hidden, m.vocab)
    t_logits_gemm = _gemms_time((logits,), tokens, lay, hw, cal)
    t_logits_mem = memory_time(  # the loss softmax reads and writes the logits once
        2.0 * cal.logits_bytes * tokens * m.vocab / tp, hw.hbm_bw, cal.mem_eff)
    fwd = t_gemm + t_attn + t_elem + t_fixed
    # GEMM backward = data + weight gradients, two GEMMs of the forward's size
    bwd = 2.0 * t_gemm + cal.backward_memory_factor * (t_elem + t_fixed) + t_attn_bwd
    recompute = r_gemms * t_gemm + r_attn * t_attn + r_elem * t_elem + r_gemms * t_fixed
    t_dispatch = _moe_einsum_dispatch(m, tokens / tp, s / cp, hw, cal)
    if t_dispatch is None:
        t_dispatch = t_dispatch_bwd = 0.0
    else:  # GShard's one-hot einsums: forward, backward, once more per recomputed forward
        t_dispatch = lm * t_dispatch
        t_dispatch_bwd = cal.moe.einsum_backward * t_dispatch
        fwd, bwd = fwd + t_dispatch, bwd + t_dispatch_bwd
        recompute = recompute + r_gemms * t_dispatch

    # ---- communication inside the layers, per micro-batch per stage (fwd + bwd + recompute)
    passes = 2.0 + r_gemms  # forward, backward, a recomputed forward of the GEMMs
    act = cal.activation_bytes * tokens * m.hidden  # one activation tensor [B]
    # two TP all-reduces per layer (after attention and after the MLP; with SP an all-gather +
    # reduce-scatter pair of the same volume); a MoE layer with expert parallelism has the
    # attention's and, with shared experts, their MLP's: its routed tokens leave by all-to-all
    moe_pairs = _moe_tp_pairs(m, lay, cal)
    t_tp = passes * (2.0 * ld + moe_pairs * lm) * comm.all_reduce(act, *_group(tp, 1.0, hw))
    if not m.moe_layers:  # a dense model: no all-to-all
        t_ep = 0.0 * t_tp
    elif cal.moe is None:  # the earlier MoE model: exposed as much as the TP overlap leaves
        t_ep = (1.0 - cal.layer_comm_overlap) * passes * 2.0 * lm * comm.all_to_all(
            act / tp * m.moe_active, *_group(ep, tp * cp, hw))
    else:  # EP folded over tp x cp x dp inside the expert-TP groups: ranks etp apart (perf.moe)
        ep_in = comm.members_in_domain(ep, _expert_tp(lay, cal), hw.domain)
        down = _expert_down(m)
        t_ep = tuple(lm * part for part in moe.layer_all_to_all_parts(
            tokens / tp, m.hidden, m.moe_active, ep, ep_in, hw.up_bw, hw.up_latency, hw.out_bw,
            hw.out_latency, cal.moe, r_gemms, down.count if down else 0.0))
        # each all-to-all hides behind one compute chunk of the MoE layers (perf.moe.exposed)
        chunks = None
        if cal.moe.ep_overlap:
            t_attn_moe, t_attn_bwd_moe = (lm / (ld + lm)) * t_attn, (lm / (ld + lm)) * t_attn_bwd
            t_mlp = lm * _gemms_time(tuple(g for g in m.gemms_moe if g.name in MOE_MLP),
                                     tokens, lay, hw, cal)
            attn_gemm = t_gemm_moe - t_mlp
            bmf = cal.backward_memory_factor
            chunks = ((1.0 + r_gemms) * (attn_gemm + t_attn_moe + t_elem_moe),
                      (1.0 + r_gemms) * (t_mlp + t_moe_fixed + t_dispatch),
                      2.0 * attn_gemm + t_attn_bwd_moe + bmf * t_elem_moe,
                      2.0 * t_mlp + bmf * t_moe_fixed + t_dispatch_bwd)
        t_ep = moe.exposed(t_ep, chunks, cal.moe) + passes * lm * _expert_tp_gathers(
            m, tokens / tp, lay, hw, cal)
    kv = cal.activation_bytes * tokens * 2.0 * (m.kv_heads / tp) * m.qk_dim  # K and V [B]
    cp_n, cp_in = cp, comm.members_in_domain(cp, tp, hw.domain)
    cp_bw = xp.where(cp_in >= cp_n, hw.up_bw, hw.out_bw)
    cp_lat = xp.where(cp_in >= cp_n, hw.up_latency, hw.out_latency)
    # the ring passes K, V around cp - 1 times in the forward, K, V and dK, dV in the backward
    t_cp_raw = 3.0 * (ld + lm) * (cp - 1.0) * comm.send_recv(kv, cp_bw, cp_lat)
    # ... hidden behind the attention core of the forward and the backward
    t_cp = xp.maximum(t_cp_raw - cal.cp_overlap * (t_attn + t_attn_bwd), 0.0)
    # logits: forward + backward (the logits are never recomputed)
    t_logits = 3.0 * t_logits_gemm + (1.0 + cal.backward_memory_factor) * t_logits_mem
    mb_compute = fwd + bwd + recompute + t_logits

    # ---- activation offload: the share of the saved activations kept in host memory leaves
    # over the host link during the forward and returns during the backward, each copy hidden
    # behind its pass (copy engines run beside the compute); a chip without a link hides none
    saved = _saved_per_token(m, hw, cal, lay.recompute, (r_gemms, r_attn, r_elem), ld, lm,
                             _dispatch_group(lay, cal))
    # the exposed share: layer_comm_overlap of the forward passes' collectives hides, of the
    # backward's only where the stack overlaps them too (async TP overlaps the forward's)
    t_tp = t_tp * (1.0 - cal.layer_comm_overlap * (
        1.0 if cal.tp_overlap_backward else (1.0 + r_gemms) / passes))
    t_mb = mb_compute + t_tp + t_ep + t_cp
    if cal.activation_offload:
        copy = cal.activation_offload * saved * tokens / tp / xp.maximum(hw.host_bw, 1.0)
        t_offload = xp.maximum(copy - fwd, 0.0) + xp.maximum(copy - (bwd + recompute), 0.0)
        t_mb = t_mb + t_offload
    else:  # nothing offloaded (the default): no term on the grid
        t_offload = xp.zeros((), dtype=ft)

    # ---- data-parallel gradient all-reduce (sub-grid: tp, pp, dp, cp, ep, hardware)
    emb = m.params_embedding / tp
    emb = xp.where(pp > 1, 0.5 * emb, emb)  # input embedding on the first stage, output on the last
    p_dense = (ld * m.params_dense_layer + lm * m.params_moe_shared) / tp + emb
    dense_ar = comm.all_reduce(cal.grad_reduce_bytes * p_dense, *_group(dp * cp, tp, hw))
    if cal.moe is None:
        p_expert = lm * m.params_experts / (ep * tp)
        expert_ar = comm.all_reduce(cal.grad_reduce_bytes * p_expert,
                                    *_group(dp * cp / ep, tp * cp * ep, hw))
    else:  # folding: ETP (innermost) x EP x EDP = tp x cp x dp; the gradients of the chip's
        # experts are reduced over the EDP group, ranks ep x ETP apart
        etp = _expert_tp(lay, cal)
        p_expert = lm * m.params_experts / (ep * etp)
        expert_ar = comm.all_reduce(cal.grad_reduce_bytes * p_expert,
                                    *_group(tp * dp * cp / (ep * etp), ep * etp, hw))
    return {"mb_compute": mb_compute, "t_tp": t_tp, "t_ep": t_ep, "t_cp": t_cp,
            "t_offload": t_offload, "t_mb": t_mb, "saved": saved,
            "p_dense": p_dense, "p_expert": p_expert, "t_dp_raw": dense_ar + expert_ar,
            "r_gemms": r_gemms, "r_attn": r_attn, "r_elem": r_elem}


def train_step(m: ModelShape, hw: Hardware, lay: Layout, cal: Calibration,
               outputs: tuple[str, ...] | None = None, broadcast: bool = True,
               terms: dict[str, Any] | None = None) -> dict[str, Any]:
    """Step time, throughput, MFU, memory and the time breakdown of one training step.

    Returns a dict of arrays: ``step_time`` [s], ``tokens_per_s_per_chip`` [1/s],
    ``model_flops_per_chip`` [FLOP/s], ``mfu``, ``hfu`` [1], ``mem_per_chip`` [B], ``fits``
    (bool), and the breakdown ``t_compute``, ``t_tp``, ``t_ep``, ``t_cp``, ``t_pp``, ``t_dp``,
    ``t_bubble``, ``t_optimizer``, ``t_overhead`` [s] (exposed times; they add up to
    ``step_time``), plus ``n_microbatches`` [1].

    Parameters
    ----------
    outputs : tuple of str, optional
        Compute only these outputs (default: all of :data:`OUTPUTS`); a grid search asks for
        ``step_time`` and ``fits`` only.
    broadcast : bool
        True: every output has the broadcast shape of all inputs. False: each output keeps the
        shape of the inputs it depends on (e.g. ``t_compute`` does not depend on ``zero``), so a
        factored grid never materialises a term on axes it does not vary along.
    terms : dict, optional
        :func:`step_terms` of these inputs (or of a grid they are a block of, sliced to the
        block), computed once; default: computed here.

    Each term is computed on the sub-grid of the axes it depends on (per-layer compute on tp,
    cp, micro_batch, seq_len, recompute, ep and the hardware; DP communication on dp, tp, cp,
    ep; ...); only the final sums span the whole grid.
    """
    want = OUTPUTS if outputs is None else tuple(outputs)
    unknown = sorted(set(want) - set(OUTPUTS))
    if unknown:
        raise ParameterError(bad_value("train_step", "outputs", unknown[0],
                                       f"allowed: {', '.join(OUTPUTS)}"))
    if terms is None:
        terms = step_terms(m, hw, lay, cal)
    xp = xp_of(lay.tp, lay.pp, lay.dp, lay.micro_batch, lay.seq_len, hw.peak_gemm)
    lay, hw = _arrays(xp, lay, hw)
    tp, pp, dp, cp, ep, vpp = lay.tp, lay.pp, lay.dp, lay.cp, lay.ep, lay.vpp
    s = lay.seq_len
    tokens = lay.micro_batch * s / cp  # per chip per micro-batch [tokens]
    ft = tokens.dtype
    n_mb = lay.global_batch / (dp * lay.micro_batch)
    ld, lm = _stage_layers(m, pp)
    mb_compute, t_tp, t_ep, t_cp, t_offload, t_mb = (terms[k] for k in TERMS[:6])
    r_gemms, r_attn = terms["r_gemms"], terms["r_attn"]
    p_dense, p_expert, t_dp_raw = terms["p_dense"], terms["p_expert"], terms["t_dp_raw"]
    act = cal.activation_bytes * tokens * m.hidden  # one activation tensor [B]

    # ---- pipeline (1F1B: n_mb t_mb + bubble = (n_mb + (pp - 1)/vpp) t_mb)
    stages = (pp - 1.0) / vpp
    stride_pp = tp * cp * dp
    p2p_bw = xp.where(stride_pp < hw.domain, hw.up_bw, hw.out_bw)
    p2p_lat = xp.where(stride_pp < hw.domain, hw.up_latency, hw.out_latency)
    # activations forward and their gradients backward, over each of the vpp (pp - 1) hops
    t_pp = 2.0 * vpp * (pp - 1.0) * comm.send_recv(act / tp, p2p_bw, p2p_lat)

    # ---- data parallel and optimizer (sub-grid: tp, pp, dp, cp, ep, zero, hardware)
    window = cal.dp_overlap * t_mb
    regather = cal.zero3_regather_per_microbatch > 0.0  # ZeRO-3 reshard policy (a scalar)
    # the stage stays gathered across its micro-batches: only a pipeline stage, only under the
    # once-per-step policy (gradient accumulation alone reshards every micro-batch)
    kept = (pp > 1.0) & (not regather)
    shard_d, shard_e = dp * cp, dp * cp / ep if cal.moe is None \
        else tp * dp * cp / (ep * _expert_tp(lay, cal))
    p_all, p_shard = p_dense + p_expert, p_dense / shard_d + p_expert / shard_e
    p_opt = xp.where(lay.zero >= 1, p_shard, p_all)  # parameters this chip updates
    if cal.optimizer_offload:  # ZeRO-Offload: the update in host DRAM, every chip of the host
        # at once (host_mem_bw is the host's peak per chip), then the BF16 weights back to HBM
        t_opt = memory_time(cal.optimizer_traffic * p_opt, hw.host_mem_bw, cal.host_adam_eff) \
            + p_opt * cal.weight_bytes / hw.host_bw
    else:
        t_opt = memory_time(cal.optimizer_traffic * p_opt, hw.hbm_bw, cal.mem_eff)

    # ---- the sums over the whole grid, grouped so that the partial sums stay on sub-grids:
    # pipeline terms do not depend on zero, DP and optimizer terms not on vpp
    out: dict[str, Any] = {}
    need_step = {"step_time", "tokens_per_s_per_chip", "model_flops_per_chip", "mfu", "hfu"}
    if need_step & set(want) or "t_dp" in want:
        # ZeRO-3 gathers the parameters twice and reduce-scatters once per gather round: once
        # per step, or once per micro-batch, each round behind the window of one micro-batch
        rounds = xp.where(kept, 1.0, n_mb)
        t_dp = xp.where(lay.zero == 3,
                        rounds * xp.maximum(cal.zero3_comm_factor * t_dp_raw - window, 0.0),
                        xp.maximum(t_dp_raw - window, 0.0))
        out["t_dp"] = t_dp
    if need_step & set(want):
        step = (t_mb * (n_mb + stages) + t_pp) + (t_dp + (t_opt + cal.step_overhead))
        out["step_time"] = step
        n_chips = tp * pp * dp * cp
        tokens_step = lay.global_batch * s
        model_flops = tokens_step * m.model_flops_per_token(s)
        per_step = 1.0 / step if len(need_step & set(want)) > 2 else None
        rates = {"tokens_per_s_per_chip": tokens_step / n_chips,
                 "model_flops_per_chip": model_flops / n_chips,
                 "mfu": model_flops * hw.clock / (n_chips * hw.peak_gemm)}
        if "hfu" in want:
            rates["hfu"] = (model_flops + tokens_step * m.recompute_flops_per_token(
                s, r_gemms, r_attn)) * hw.clock / (n_chips * hw.peak_gemm)
        for key, per_step_value in rates.items():
            if key in want:
                out[key] = per_step_value / step if per_step is None \
                    else per_step_value * per_step

    # ---- memory per chip (first stage activations, last stage logits: the worse of both)
    if "mem_per_chip" in want or "fits" in want:
        def sharded(nbytes: float, on: Any) -> Any:
            return xp.where(on, p_shard, p_all) * nbytes

        # gathered once per step over several micro-batches (under pipelining), ZeRO-3 keeps
        # the stage's full weights for the step, and the one reduce-scatter needs the
        # micro-batches' gradients summed unsharded (memory as ZeRO-1); with one micro-batch
        # both policies are the same round, resharded after use
        z = lay.zero
        once = (z == 3) & (n_mb > 1.0) & kept
        w_on, g_on = (z >= 3) & ~once, (z >= 2) & ~once
        # ZeRO-Offload keeps the main gradients and the Adam states in host memory
        on_chip = 1.0 - cal.optimizer_offload
        states = sharded(cal.weight_bytes, w_on) + on_chip * (
            sharded(cal.grad_bytes, g_on) + sharded(cal.optimizer_bytes, z >= 1))
        per_token = terms["saved"]  # the stage's activation bytes per token
        # micro-batches in flight on the first stage: 1F1B holds min(n_mb, pp) of them, the
        # interleaved schedule (1 + (pp - 1)/(pp vpp)) times as many (Korthikanti et al. 2022,
        # sec. 4.2.3; Narayanan et al. 2021, sec. 2.2.2)
        interleave = xp.where(vpp > 1.0, 1.0 + (pp - 1.0) / (pp * vpp), 1.0)
        in_flight = xp.minimum(n_mb, pp) * interleave  # >= 1; 1 with one stage
        per_mb = per_token * tokens / tp  # one micro-batch through the stage's layers [B]
        # the last stage holds one micro-batch and the fp32 logits (one stage holds both): the
        # worse stage (not on zero or hardware)
        logits = cal.logits_bytes * tokens * m.vocab / tp
        # offload: the share f of each micro-batch's activations waits in host memory; HBM
        # keeps the rest and ``offload_resident_layers`` layers (computed and in transit)
        f = cal.activation_offload
        resident = (1.0 - f) * per_mb if f else per_mb
        act = xp.maximum(in_flight * resident, resident + logits)
        if f:
            act = act + f * xp.minimum(cal.offload_resident_layers / (ld + lm), 1.0) * per_mb
        # + one layer's activations while its backward rebuilds it (full recompute, or a policy
        # that names what it keeps); not on vpp
        rebuild = r_gemms >= 1.0
        if m.named_selective:
            rebuild = rebuild | (lay.recompute == 1.0)
        rest = states + xp.where(rebuild, _layer_bytes(m, cal)[0] * tokens / tp, 0.0)
        usable = hw.hbm_capacity * (1.0 - cal.mem_reserve)
        if "mem_per_chip" in want:
            mem = rest + act
            out["mem_per_chip"] = mem
            if "fits" in want:
                out["fits"] = mem <= usable
        elif "fits" in want:  # the same test without the grid-sized sum (a search)
            out["fits"] = act <= usable - rest
        if f and "fits" in want:  # the offloaded share of the micro-batches in flight
            host = f * in_flight * per_mb
            out["fits"] = out["fits"] & (host <= hw.host_capacity * (1.0 - cal.mem_reserve))
    if "n_microbatches" in want:
        out["n_microbatches"] = n_mb
    if "t_compute" in want:
        out["t_compute"] = n_mb * mb_compute
    if "t_tp" in want:
        out["t_tp"] = n_mb * t_tp
    if "t_ep" in want:
        out["t_ep"] = n_mb * t_ep
    if "t_cp" in want:
        out["t_cp"] = n_mb * t_cp
    if "t_offload" in want:
        out["t_offload"] = n_mb * t_offload
    if "t_pp" in want:
        out["t_pp"] = t_pp
    if "t_bubble" in want:
        out["t_bubble"] = stages * t_mb
    if "t_optimizer" in want:
        out["t_optimizer"] = t_opt
    if "t_overhead" in want:
        out["t_overhead"] = xp.asarray(cal.step_overhead, dtype=ft)
    out = {k: out[k] for k in want}
    if not broadcast:
        return out
    shape = _broadcast_shape(lay, hw)
    return {k: xp.broadcast_to(v, shape) if tuple(v.shape) != shape else v
            for k, v in out.items()}


def _broadcast_shape(lay: Layout, hw: Hardware) -> tuple[int, ...]:
    """Broadcast shape of all array inputs."""
    shape: tuple[int, ...] = ()
    for v in (*vars(lay).values(), *vars(hw).values()):
        a, b = (1,) * (len(v.shape) - len(shape)) + shape, tuple(v.shape)
        a, b = (1,) * (len(b) - len(a)) + a, (1,) * (len(a) - len(b)) + b
        shape = tuple(max(x, y) for x, y in zip(a, b, strict=True))
    return shape
