"""Work placed on two chip types in one scale-up domain (a mixed NVLink Fusion rack).

Pure array functions (every argument broadcasts; SI units). Chip type A and chip type B each
run their part at their own speed (from :mod:`trnlab.perf.serve` / :mod:`trnlab.perf.train`);
what these functions add is the traffic between the types and how the work is balanced:

- A link between two chips runs at the slower end: ``min(bw_a, bw_b) / 2`` per direction
  (aggregate bidirectional bandwidths), times the achieved fraction of cross-vendor transfers.
- Which operations cross vendors is an input (``rdma``, ``reduction``: 1 yes, 0 no). Without
  RDMA between the types, their data leaves over the scale-out network (EFA).
- A collective spanning both types runs at the slower member's link; with in-network
  (SHARP-style) reduction an all-reduce moves each byte once per direction (``B / bw``) instead
  of the ring's ``2 (n-1)/n B / bw`` (Thakur et al., IJHPCA 2005; NVLink SHARP).
- Disaggregated serving (Zhong et al., DistServe, OSDI'24; Patel et al., Splitwise, ISCA'24):
  requests/s of ``n_a`` prefill and ``n_b`` decode chips is the smallest of the two pools' rates
  and of the KV-cache rate their links carry.
- Attention/FFN disaggregation with ping-pong micro-batches (Zhu et al., MegaScale-Infer,
  2025): a decode step takes the slowest of attention, experts and the token exchange, plus the
  un-hidden per-layer latency of the exchange.
- Pipeline over two types (HetPipe, ATC'20; FlashFlex, 2024): layers split in proportion to
  speed in whole layers; the slower stage group sets the rate.
"""

from __future__ import annotations

from typing import Any

from trnlab.perf._xp import xp_of


def link_bandwidth(bw_a: Any, bw_b: Any, efficiency: Any = 1.0) -> Any:
    """Achieved bandwidth per direction of a link between a chip of type A and one of type B
    [B/s]: ``min(bw_a, bw_b) / 2 x efficiency`` (``bw_*`` aggregate bidirectional per chip)."""
    xp = xp_of(bw_a, bw_b)
    return xp.minimum(bw_a, bw_b) / 2.0 * efficiency


def cross_path(rdma: Any, fabric_bw: Any, fabric_latency: Any, out_bw: Any,
               out_latency: Any) -> tuple[Any, Any]:
    """Bandwidth [B/s] and latency [s] of data crossing between the two types: the fabric's where
    cross-vendor RDMA works (``rdma >= 0.5``), else the scale-out network's."""
    xp = xp_of(rdma, fabric_bw, out_bw)
    on = xp.asarray(rdma) >= 0.5
    return xp.where(on, fabric_bw, out_bw), xp.where(on, fabric_latency, out_latency)


def transfer_time(nbytes: Any, bw: Any, latency: Any) -> Any:
    """Point-to-point transfer of ``nbytes`` [B] at ``bw`` [B/s] after ``latency`` [s] [s]."""
    return nbytes / bw + latency


def spanning_all_reduce(nbytes: Any, n: Any, bw_a: Any, bw_b: Any, latency: Any,
                        reduction: Any) -> Any:
    """All-reduce of ``nbytes`` [B] per chip over ``n`` chips of both types [s].

    The ring runs at the slower member's per-direction bandwidth ``min(bw_a, bw_b)``:
    ``2 (n-1)/n B / bw + 2 (n-1) alpha``. With in-network reduction across the types
    (``reduction >= 0.5``) each chip sends and receives its data once: ``B / bw + 2 alpha``.
    """
    xp = xp_of(nbytes, n, bw_a, bw_b, reduction)
    bw = xp.minimum(bw_a, bw_b)
    ring = 2.0 * (n - 1.0) / n * nbytes / bw + 2.0 * (n - 1.0) * latency
    switch = nbytes / bw + 2.0 * latency
    return xp.where(xp.asarray(reduction) >= 0.5, xp.minimum(ring, switch), ring)


def disaggregated_rate(prefill_rate: Any, decode_rate: Any, n_prefill: Any, n_decode: Any,
                       kv_bytes: Any, link_bw: Any) -> Any:
    """Requests per second of a prefill pool of ``n_prefill`` chips (``prefill_rate`` requests/s
    per chip) feeding a decode pool of ``n_decode`` chips (``decode_rate`` per chip), each
    request's ``kv_bytes`` [B] crossing at ``link_bw`` [B/s] per chip and direction (every
    prefill chip sends, every decode chip receives): the smallest of the four rates [1/s]."""
    xp = xp_of(prefill_rate, decode_rate, n_prefill, n_decode, kv_bytes, link_bw)
    send = n_prefill * link_bw / kv_bytes
    receive = n_decode * link_bw / kv_bytes
    return xp.minimum(xp.minimum(n_prefill * prefill_rate, n_decode * decode_rate),
                      xp.minimum(send, receive))


def balanced_prefill_share(prefill_rate: Any, decode_rate: Any) -> Any:
    """Share of the chips on prefill that balances the two pools [1]:
    ``n_p p = n_d d`` with ``n_p + n_d = n`` gives ``n_p / n = d / (p + d)``."""
    return decode_rate / (prefill_rate + decode_rate)


def afd_step(t_attention: Any, t_experts: Any, t_exchange: Any, layers: Any,
             latency: Any) -> Any:
    """Decode step with attention on one chip type and experts on the other [s].

    Two micro-batches ping-pong (MegaScale-Infer): attention, expert FFN and the token exchange
    overlap, so the slowest of ``t_attention``, ``t_experts`` and ``t_exchange`` (all for the
    whole step) sets the step; each layer's dispatch and combine add their ``latency`` [s]
    un-hidden: ``max(...) + 2 x layers x latency``.
    """
    xp = xp_of(t_attention, t_experts, t_exchange)
    return xp.maximum(xp.maximum(t_attention, t_experts), t_exchange) \
        + 2.0 * layers * latency


def pingpong_time(compute: Any, stream: Any, overhead: Any) -> Any:
    """Time of one chip's part of a decode step run as two micro-batches [s], from the terms
    of ONE micro-batch (half the sequences): ``2 x (max(compute, stream) + overhead)``. Each
    micro-batch is its own pass through the layers, so the weights stream from HBM once per
    micro-batch (the KV cache and the FLOPs are split between them)."""
    xp = xp_of(compute, stream, overhead)
    return 2.0 * (xp.maximum(compute, stream) + overhead)


def colocated_ep_step(t_attention: Any, t_experts: Any, t_exchange: Any, layers: Any,
                      latency: Any) -> Any:
    """Decode step of a wide expert-parallel pool where every chip runs attention on its own
    sequences (attention-DP) and holds a share of the experts [s]. Two micro-batches overlap
    one's all-to-all with the other's compute (DeepSeek-V3 dual micro-batch overlap, SGLang
    two-batch overlap), but attention and experts share the chip, so their times add:
    ``max(t_attention + t_experts, t_exchange) + 2 x layers x latency`` (compare
    :func:`afd_step`, where they run on different chips at once)."""
    xp = xp_of(t_attention, t_experts, t_exchange)
    return xp.maximum(t_attention + t_experts, t_exchange) + 2.0 * layers * latency


def afd_exchange_bytes(tokens: Any, hidden: Any, top_k: Any, layers: Any, dispatch_bytes: Any,
                       combine_bytes: Any) -> Any:
    """Bytes sent between attention and expert chips in one decode step [B]: each token's
    hidden state goes to its ``top_k`` experts (dispatch) and comes back (combine), every MoE
    layer: ``tokens x hidden x top_k x layers x (dispatch + combine bytes)``."""
    return tokens * hidden * top_k * layers * (dispatch_bytes + combine_bytes)


def pipeline_split(speed_a: Any, speed_b: Any, n_a: Any, n_b: Any, layers: Any) -> Any:
    """Training tokens/s of a pipeline whose first stage group is ``n_a`` chips of type A and
    second ``n_b`` chips of type B [token/s].

    ``speed_*`` are tokens/s per chip of each type training the whole model on its own. A group
    holding ``l`` of the ``layers`` runs at ``n s layers / l``; the layers are split in whole
    layers, ``l_a = round(layers x n_a s_a / (n_a s_a + n_b s_b))`` (at least one each), and
    the slower group sets the rate. An all-A or all-B pipeline gives ``n s``.
    """
    xp = xp_of(speed_a, speed_b, n_a, n_b, layers)
    ra, rb = n_a * speed_a, n_b * speed_b
    ideal = layers * ra / (ra + rb)
    l_a = xp.where(n_a <= 0, 0.0, xp.where(n_b <= 0, layers,
                                           xp.clip(xp.round(ideal), 1.0, layers - 1.0)))
    l_b = layers - l_a
    big = xp.asarray(1e300)
    rate_a = xp.where(l_a > 0, ra * layers / xp.maximum(l_a, 1.0), big)
    rate_b = xp.where(l_b > 0, rb * layers / xp.maximum(l_b, 1.0), big)
    return xp.minimum(rate_a, rate_b)


def pipeline_boundary_limit(bw: Any, n_links: Any, hidden: Any, act_bytes: Any) -> Any:
    """Tokens/s that a pipeline boundary carries [token/s]: each token's activation goes
    forward and its gradient back (``2 x hidden x act_bytes`` [B]) over ``n_links`` links of
    ``bw`` [B/s] per direction; forward and backward use opposite directions, so one
    direction carries ``hidden x act_bytes`` per token."""
    return n_links * bw / (hidden * act_bytes)


def rl_step_time(rollout_tokens: Any, rollout_rate: Any, train_tokens: Any, train_rate: Any,
                 sync: Any, overlap: Any) -> Any:
    """Time of one RL step [s]: generating ``rollout_tokens`` at ``rollout_rate`` [token/s] and
    training on ``train_tokens`` at ``train_rate`` [token/s], then the weight sync ``sync`` [s].
    On separate pools with one-step off-policy overlap (``overlap >= 0.5``) the phases run at
    once (``max``); otherwise one after the other (``sum``), as on one time-shared pool."""
    xp = xp_of(rollout_tokens, rollout_rate, train_rate, overlap)
    gen, train = rollout_tokens / rollout_rate, train_tokens / train_rate
    return xp.where(xp.asarray(overlap) >= 0.5, xp.maximum(gen, train), gen + train) + sync
