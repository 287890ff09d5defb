"""The mixture-of-experts terms of a training step, vectorized (arrays broadcast, SI units).

A MoE layer routes each token to ``k`` of ``E`` experts (top-k). Under expert parallelism
(``ep`` ranks, each holding ``E/ep`` experts) it adds four things to a dense layer's terms:

- **Grouped GEMMs** (:func:`grouped_gemm_time`). Each local expert multiplies only the tokens
  routed to it, ``rows = T k ep f / E`` on the most loaded rank (``T`` tokens per chip, ``f``
  the load imbalance), so its GEMMs are short in ``m`` and run below a dense GEMM's efficiency:
  the dense curve of :mod:`trnlab.perf.compute` evaluated at ``m = rows``, ``n`` and ``k`` the
  expert's width and the hidden size (MegaBlocks, Gale et al. 2023, sec. 3 and 6: grouped /
  block-sparse expert GEMMs against dense cuBLAS; Megatron-Core's grouped GEMM).
- **All-to-all dispatch and combine** (:func:`all_to_all_time`), forward and backward, over a
  two-tier network: copies to ranks in the sender's scale-up domain go over scale-up links,
  the rest over its NIC, both at once. Without de-duplication every (token, expert) pair is one
  copy (Megatron-Core's alltoall dispatcher); with it a token crosses the scale-out network once
  per destination domain, at most ``node_limit`` of them (DeepSeek-V3 node-limited routing,
  ``M = 4``), and is forwarded inside the domain (DeepEP). Routing is uniform over the experts,
  or, with ``consecutive_routing``, each token's ``k`` experts are consecutive (the balanced
  gate of NeMo AutoModel's benchmarks), on neighbouring ranks, mostly of one domain. The
  dispatch may be FP8 (DeepSeek-V3:
  1 B + a scale per 128 elements); the combine and the backward all-to-alls are BF16. The
  ``ep_overlap`` share of it hides behind compute, its own parameter: each all-to-all beside
  one compute chunk of another micro-batch, never more than that chunk (:func:`exposed`).
- **A fixed cost per MoE layer** (:func:`fixed_bytes`): router logits and top-k, the token
  permutations around the all-to-all and the casts to the dispatch and GEMM formats, all
  memory-bound, plus the layer's extra kernel launches and host synchronisation
  (``moe_layer_overhead``).
- **Load imbalance** ``f >= 1`` (capacity factor with padding, or max/mean load dropless): the
  most loaded rank sets the time of the grouped GEMMs and the all-to-all.
- **One-hot einsum dispatch** (:func:`einsum_dispatch_time`, ``einsum_dispatch`` = 1): GShard's
  dense MoE (Lepikhin et al. 2021, sec. 2.2 and Algorithm 2), MaxText's dense_matmul path: each
  sequence's tokens are scattered to capacity-padded expert buffers and gathered back by two
  matmuls with one-hot masks, ``BSM,BSEC->EBCM`` and ``EBCM,BSEC->BSM``, in place of the
  permutations. Their work grows with the sequence: ``C = s k f / E`` slots per expert, so
  each costs ``2 s k f h`` FLOPs per token, and each mask holds ``s k f`` elements per token;
  the experts compute their padded buffers whole (``f`` x the routed rows, with or without
  expert parallelism: :func:`trnlab.perf.train._gemm_op`).

Layout: expert-model-parallel folding (Megatron-Core): the ``tp x cp x dp`` ranks of a pipeline
stage are regrouped as ``ep x edp`` for the experts, expert-tensor-parallel size 1 (what the
MoE recipes set: Megatron-Core's flag defaults to the TP size), the ``ep`` group innermost
(consecutive ranks), so ``ep`` divides ``tp x cp x dp`` and a token's ``T/tp`` share (sequence
parallelism) is dispatched by the rank that holds it. Without expert parallelism (``ep = 1``)
the experts stay TP-sharded like a dense MLP (expert-TP = ``tp``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trnlab.perf._xp import xp_of
from trnlab.perf.compute import gemm_efficiency, gemm_time, memory_time


@dataclass(frozen=True)
class MoECalibration:
    """Constants of the MoE terms; every value comes from ``data/perf/moe.toml``
    (:func:`trnlab.engine.hardware.moe_calibration`), where each has its unit, status and
    source."""

    ep_overlap: float  # fraction of the expert all-to-all hidden behind compute [1]
    a2a_dedup: float  # 1: one scale-out copy per destination domain; 0: per routed expert [1]
    node_limit: float  # most domains a token is routed to (0 = no limit) [1]
    dispatch_bytes: float  # per element of a dispatched token [B]
    combine_bytes: float  # per element of a combined output and of the backward all-to-alls [B]
    load_imbalance: float  # most loaded expert rank / mean [1]
    permute_copies: float  # permutation traffic, in copies of the routed tokens [1]
    router_traffic: float  # router bytes per token and expert [B]
    moe_layer_overhead: float  # fixed time per MoE layer per forward pass [s]
    einsum_dispatch: float  # 1: one-hot einsum dispatch and combine (GShard) [1]
    einsum_backward: float  # backward work of the two einsums over their forward work [1]
    group_tile: float  # row tile a grouped GEMM revisits where two experts share it [1]
    consecutive_routing: float  # 1: a token's k experts are consecutive; 0: uniform [1]
    expert_tp: float  # expert-tensor-parallel size with expert parallelism; 0 = the TP size [1]

    def unsharded_rows(self) -> float:
        """Rows each expert computes over those routed to it when the chip runs every expert
        (no expert parallelism) [1]: the capacity factor (``load_imbalance``) for GShard's
        capacity-padded buffers, 1 for a dropless stack (its imbalance costs nothing there)."""
        return self.load_imbalance if self.einsum_dispatch else 1.0


def expert_tp_size(expert_tp: Any, tp: Any) -> Any:
    """Expert-tensor-parallel size [1] of a stack's ``expert_tp`` at TP size ``tp``: the value,
    or ``tp`` where it is 0 (Megatron-Core's default when --expert-tensor-parallel-size is unset,
    and before 0.10 its only layout); an array like ``tp``."""
    return tp if not expert_tp else expert_tp + 0 * tp


def expert_rows(tokens: Any, top_k: Any, experts: Any, ep: Any, imbalance: Any) -> Any:
    """Rows of each local expert's GEMM on the most loaded rank [tokens]:
    ``T k ep f / E`` (the ``ep`` ranks' ``T`` tokens each, ``k`` copies each, spread over ``E``
    experts, ``f`` times the mean on the busiest rank)."""
    return tokens * top_k * ep * imbalance / experts


def tiled_rows(rows: Any, local_experts: Any, tile: Any) -> Any:
    """Rows each local expert's GEMM computes in a grouped GEMM that tiles the sorted tokens by
    ``tile`` rows and visits a tile once per expert it holds [1]: ``rows + tile (G - 1) / G``
    over the chip's ``G`` local experts (every interior group boundary that falls inside a tile
    computes that tile twice: ``ceil(m / tile) + G - 1`` tiles for ``m`` rows). MaxText's
    megablox kernels (``make_group_metadata``: each group's start rounded down and end rounded
    up to the tile) with ``wi_tile_*_batch_seq`` = 512 rows by default; ``tile`` 0: none (one
    GEMM per expert, or a grouped kernel that masks the rows of other groups; a scalar, the
    stack's constant)."""
    if not tile:
        return rows
    return rows + tile * (local_experts - 1.0) / local_experts


def grouped_gemm_efficiency(rows: Any, width: Any, hidden: Any, eff_max: Any, d0: Any) -> Any:
    """Achieved fraction of peak of one expert's GEMM of ``rows`` tokens [1]: the dense GEMM
    curve (:func:`trnlab.perf.compute.gemm_efficiency`) at ``m = rows``, ``n = width``,
    ``k = hidden``; it falls as fewer tokens reach each expert (MegaBlocks, Gale et al. 2023)."""
    return gemm_efficiency(rows, width, hidden, eff_max, d0)


def grouped_gemm_time(rows: Any, n: Any, k: Any, local_experts: Any, peak: Any, eff_max: Any,
                      d0: Any, hbm_bw: Any, mem_eff: Any, bytes_per_elem: Any) -> Any:
    """Time of the grouped GEMM ``local_experts x ([rows, k] @ [k, n])`` on one chip [s]: each
    expert's GEMM on the roofline of :func:`trnlab.perf.compute.gemm_time` (its weights are read
    once per expert, so short GEMMs turn memory-bound)."""
    return local_experts * gemm_time(rows, n, k, peak, eff_max, d0, hbm_bw, mem_eff,
                                     bytes_per_elem)


def dispatch_copies(top_k: Any, ep: Any, n_in: Any, dedup: Any, node_limit: Any,
                    experts: Any = 0.0, consecutive: Any = 0.0) -> tuple[Any, Any]:
    """Copies of one token a rank sends per dispatch (or combine), (over scale-up, over
    scale-out) [1], over ``ep`` ranks in ``ep / n_in`` domains.

    Plain: ``k (n_in - 1)/ep`` to peers in the domain, ``k (ep - n_in)/ep`` outside.
    De-duplicated: the token crosses the scale-out network once per distinct domain among its
    ``k`` experts, ``D (1 - (1 - 1/D)^k)`` of the ``D = ep / n_in`` domains under uniform
    routing, capped at ``node_limit`` (when > 0), of which ``(D - 1)/D`` are remote; inside the
    destination domain the copies are forwarded to their experts' ranks, ``k (n_in - 1)/n_in``
    per token over scale-up. With ``consecutive`` routing the ``k`` experts are neighbours
    (``E/ep`` per rank, ``E`` = ``experts``): they sit on ``max(1, k ep / E)`` neighbouring
    ranks, so in ``max(1, k ep / (E n_in))`` domains; without an expert count (``experts`` 0)
    the routing is taken as uniform. ``dedup``, ``node_limit``, ``experts`` and ``consecutive``
    are scalars (constants of the dispatcher, the router and the model).
    """
    if not dedup > 0:
        return top_k * (n_in - 1.0) / ep, top_k * (ep - n_in) / ep
    xp = xp_of(top_k, ep, n_in)
    domains = ep / n_in
    if consecutive > 0 and experts > 0:
        distinct = xp.maximum(top_k * ep / (experts * n_in), 1.0)
    else:
        distinct = domains * (1.0 - (1.0 - 1.0 / domains) ** top_k)
    if node_limit > 0:
        distinct = xp.minimum(distinct, xp.asarray(float(node_limit), dtype=distinct.dtype)) \
            if hasattr(distinct, "dtype") else min(distinct, float(node_limit))
    return top_k * (n_in - 1.0) / n_in, distinct * (domains - 1.0) / domains


def all_to_all_time(nbytes_token: Any, copies_in: Any, copies_out: Any, tokens: Any, ep: Any,
                    n_in: Any, bw_in: Any, alpha_in: Any, bw_out: Any, alpha_out: Any) -> Any:
    """One all-to-all of ``tokens`` tokens of ``nbytes_token`` [B] each, ``copies_in`` /
    ``copies_out`` copies of each over scale-up / scale-out (:func:`dispatch_copies`) [s]: both
    tiers at once, the slower sets the time; a message to each of the ``n_in - 1`` peers and
    the ``ep/n_in - 1`` other domains pays its latency (as
    :func:`trnlab.perf.comm.all_to_all`)."""
    xp = xp_of(tokens, ep, n_in, bw_in, bw_out)
    inside = tokens * nbytes_token * copies_in / bw_in + (n_in - 1.0) * alpha_in
    outside = tokens * nbytes_token * copies_out / bw_out + (ep / n_in - 1.0) * alpha_out
    return xp.maximum(inside, outside)


def layer_all_to_all_parts(tokens: Any, hidden: Any, top_k: Any, ep: Any, n_in: Any,
                           bw_in: Any, alpha_in: Any, bw_out: Any, alpha_out: Any,
                           cal: MoECalibration, recompute: Any, experts: Any
                           ) -> tuple[Any, Any, Any, Any]:
    """The four expert all-to-alls of one MoE layer per micro-batch on one chip, before
    overlap [s]: (forward dispatch, forward combine, backward dispatch, backward combine).
    The forward dispatches at ``dispatch_bytes`` and combines at ``combine_bytes``, ``1 +
    recompute`` times (a recomputed forward dispatches again); the backward sends the
    activation gradients at ``combine_bytes``: the combine's gradient is dispatched (the
    backward combine, first in the backward) and the dispatch's combined (the backward
    dispatch); all on the most loaded rank (x ``load_imbalance``). ``experts`` [1]: the routed
    experts of the layer (:func:`dispatch_copies`, consecutive routing)."""
    c_in, c_out = dispatch_copies(top_k, ep, n_in, cal.a2a_dedup, cal.node_limit, experts,
                                  cal.consecutive_routing)

    def one(nbytes: float) -> Any:
        return cal.load_imbalance * all_to_all_time(nbytes * hidden, c_in, c_out, tokens, ep,
                                                    n_in, bw_in, alpha_in, bw_out, alpha_out)

    forward = 1.0 + recompute
    backward = one(cal.combine_bytes)
    return forward * one(cal.dispatch_bytes), forward * one(cal.combine_bytes), \
        backward, backward


def fixed_bytes(tokens: Any, hidden: Any, width: Any, top_k: Any, experts: Any,
                activation_bytes: Any, gemm_bytes: Any, cal: MoECalibration) -> Any:
    """Memory-bound HBM traffic of one MoE layer's forward on one chip beyond a dense layer's
    [B], for ``tokens`` tokens of ``hidden`` elements routed to ``top_k`` of ``experts``
    experts of width ``width`` (the down projection's input):

    - router: ``T E router_traffic`` (fp32 logits, scores, top-k);
    - permutation: ``permute_copies x T k f h`` elements at ``activation_bytes`` (the routed
      tokens read and written by each permutation around the all-to-all);
    - casts: to an FP8 dispatch format before the dispatch (``T h`` read at
      ``activation_bytes``, written at ``dispatch_bytes``); to a narrower GEMM format, the
      expert up-projection's input (unless dispatched in it already) ``T k f h`` and the
      down-projection's ``T k f width`` elements, each read and written once.
    """
    a = activation_bytes  # a scalar of the recipe, like the constants of ``cal``
    routed = tokens * top_k * cal.load_imbalance  # token copies the rank handles
    router = tokens * experts * cal.router_traffic
    permute = cal.permute_copies * routed * hidden * a
    narrow_dispatch = cal.dispatch_bytes < a
    q_dispatch = tokens * hidden * (a + cal.dispatch_bytes) if narrow_dispatch else 0.0
    # where the GEMMs run narrower than the activations, a cast reads and writes each input
    if hasattr(gemm_bytes, "dtype"):
        xp = xp_of(gemm_bytes)
        cast = xp.where(gemm_bytes < a, a + gemm_bytes, 0.0 * gemm_bytes)
    else:
        cast = a + gemm_bytes if gemm_bytes < a else 0.0
    cast_up = 0.0 if narrow_dispatch else routed * hidden
    casts = cast * (cast_up + routed * width)
    return router + permute + q_dispatch + casts


def fixed_time(tokens: Any, hidden: Any, width: Any, top_k: Any, experts: Any,
               activation_bytes: Any, gemm_bytes: Any, hbm_bw: Any, mem_eff: Any,
               cal: MoECalibration) -> Any:
    """Fixed cost of one MoE layer's forward on one chip [s]: :func:`fixed_bytes` at the
    achieved HBM bandwidth plus ``moe_layer_overhead``."""
    return memory_time(fixed_bytes(tokens, hidden, width, top_k, experts, activation_bytes,
                                   gemm_bytes, cal), hbm_bw, mem_eff) + cal.moe_layer_overhead


def einsum_dispatch_time(tokens: Any, seq_len: Any, hidden: Any, top_k: Any, capacity: Any,
                         peak: Any, eff_max: Any, d0: Any, hbm_bw: Any, mem_eff: Any,
                         bytes_per_elem: Any) -> tuple[Any, Any]:
    """Forward FLOPs [FLOP] and time [s] of the one-hot dispatch and combine of one MoE layer
    on one chip (GShard, Lepikhin et al. 2021, Algorithm 2; MaxText dense_matmul) for
    ``tokens`` tokens in sequences of ``seq_len``, each routed to ``top_k`` experts at capacity
    factor ``capacity``: a sequence has ``E C = s k f`` expert slots and two masks
    ``[s, E, C]`` (dispatch, combine), each written once (``2 s k f`` elements per token at
    ``bytes_per_elem``), then two einsums, each a GEMM per sequence on the roofline of
    :func:`trnlab.perf.compute.gemm_time` (which reads the mask as an operand):

    - dispatch ``BSM,BSEC->EBCM``: ``[E C, s] @ [s, h]``;
    - combine ``EBCM,BSEC->BSM``: ``[s, E C] @ [E C, h]``;

    ``4 s k f h`` FLOPs per token. Mixtral 8x7B at s = 4096 (k = 2, f = 1.25, h = 4096):
    168 MFLOP per token, a fifth of its expert GEMMs'; the work grows with the sequence."""
    slots = seq_len * top_k * capacity  # E C: the capacity-padded expert slots of a sequence
    sequences = tokens / seq_len
    flops = 4.0 * tokens * slots * hidden
    masks = memory_time(2.0 * tokens * slots * bytes_per_elem, hbm_bw, mem_eff)
    time = masks + sequences * (
        gemm_time(slots, hidden, seq_len, peak, eff_max, d0, hbm_bw, mem_eff, bytes_per_elem)
        + gemm_time(seq_len, hidden, slots, peak, eff_max, d0, hbm_bw, mem_eff, bytes_per_elem))
    return flops, time


def exposed(parts: tuple[Any, Any, Any, Any], chunks: tuple[Any, Any, Any, Any] | None,
            cal: MoECalibration) -> Any:
    """The part of the all-to-all ``parts`` (forward dispatch, forward combine, backward
    dispatch, backward combine [s], :func:`layer_all_to_all_parts`) left on the critical path
    [s], beside the compute ``chunks`` (forward attention, forward MLP, backward attention,
    backward MLP [s]; not needed where ``ep_overlap`` is 0).

    An overlapped schedule (DeepSeek-V3's DualPipe, Megatron-Core's 1F1B all-to-all overlap)
    runs one micro-batch's forward beside another's backward and pairs each all-to-all with
    one compute chunk (DeepSeek-V3 report, sec. 3.2.1, Fig. 4): the backward combine beside
    the forward attention, the forward dispatch beside the backward MLP, the backward dispatch
    beside the forward MLP, the forward combine beside the backward attention. Each hides at
    most its chunk's length, and the ``ep_overlap`` share of that:
    ``sum(parts) - ep_overlap sum(min(part, chunk))``."""
    total = parts[0] + parts[1] + parts[2] + parts[3]
    if not cal.ep_overlap:  # nothing hidden (Megatron-Core's default): skip the grid-wide min
        return total
    f_dispatch, f_combine, b_dispatch, b_combine = parts
    f_attn, f_mlp, b_attn, b_mlp = chunks
    xp = xp_of(total, f_attn)
    hidden = xp.minimum(b_combine, f_attn) + xp.minimum(f_dispatch, b_mlp) \
        + xp.minimum(b_dispatch, f_mlp) + xp.minimum(f_combine, b_attn)
    return total - cal.ep_overlap * hidden
