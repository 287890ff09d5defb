"""LLM serving on one model replica: prefill, decode, KV cache and continuous batching.

Vectorized like :mod:`trnlab.perf.train`: every argument broadcasts. Units are SI.

- **Layout** of a replica: ``tp x pp`` chips; experts are spread over the ``tp`` chips of a
  stage (by expert parallelism ``ep`` or expert-TP: the bytes per chip are the same, ``ep`` sets
  the all-to-all); attention-DP ``adp`` splits the tp chips into ``adp`` groups that each run
  attention with ``tp/adp``-way TP on their own ``B/adp`` sequences (DeepSeek-V3 serving).
- **Weights** per chip: attention / (tp/adp), other dense weights / tp, routed experts / tp, all
  / pp; a decode step reads only the experts its tokens hit, ``E (1 - (1 - k/E)^B)``.
- **KV cache** per token: ``2 L g d b`` (MHA/GQA) or ``L (r_kv + d_rope) b`` (MLA), split over
  the ``tp/adp`` attention ranks as far as there are KV heads (replicated beyond ``g``; an MLA
  latent is not split), and over ``pp``.
- **Decode step** (batch B, mean context c): a roofline where weights and the KV cache stream
  from HBM and the GEMMs run at an efficiency that falls for few rows, ``B / (B + r_half)``
  (a tensor-core tile or systolic array is only partly filled by B tokens; ``r_half`` is
  fitted on serving measurements), plus un-overlapped TP all-reduces
  (2 per layer), EP all-to-alls (2 per MoE layer) and a fixed per-step runtime cost
  (scheduling, kernel launches; ``hw.step_overhead``, per runtime family) plus a cost per
  sequence in the step (scheduling, sampling) — the terms that set the floor of time per
  output token.
- **Prefill** of T prompt tokens: compute-bound GEMMs at m = T, causal attention, TP traffic.
- **Continuous batching**: a replica holding B requests spends ``prefill(B x input)`` and
  ``output`` decode steps per B requests; with pipeline parallelism the B requests are split
  into pp micro-batches, one per stage (Yu et al., Orca, OSDI'22; Agrawal et al., Sarathi).
- **Server scenario** (MLPerf Server, a Poisson request rate under p99 TTFT/TPOT limits):
  :func:`server_scenario` closes Little's law with the prefills of arriving prompts
  interrupting decode, the Poisson quantile of the batch in flight (:func:`poisson_quantile`)
  and the M/D/1 wait for a prefill (:func:`md1_wait_quantile`, Pollaczek-Khinchine).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trnlab.perf import comm
from trnlab.perf._xp import xp_of
from trnlab.perf.compute import attended_keys, kv_tokens
from trnlab.perf.hardware import Hardware


@dataclass(frozen=True)
class ServeShape:
    """What the serving model needs to know about a transformer (plain numbers)."""

    name: str
    layers: float
    moe_layers: float
    hidden: float
    heads: float
    qk_dim: float
    v_dim: float
    kv_heads: float  # 0 for MLA
    kv_latent: float  # MLA: kv_lora_rank + rope dim per layer; 0 otherwise
    moe_experts: float
    moe_active: float
    attn_params: float  # attention weights, all layers
    dense_params: float  # all non-routed-expert weights (attention, dense MLP, shared, logits)
    expert_params: float  # one routed expert, all MoE layers
    flop_params: float  # weights multiplied per token, logits included
    kv_rank: float = 0.0  # MLA: kv_lora_rank, the value width of absorbed attention; 0 otherwise
    window: float = 0.0  # sliding-window keys of the windowed layers [tokens]; 0 = none
    window_share: float = 0.0  # share of the layers that attend over the window [1]

    def kv_tokens(self, context: Any) -> Any:
        """Tokens of a ``context``-token sequence in the KV cache, mean over layers [tokens]
        (:func:`trnlab.perf.compute.kv_tokens`: a windowed layer keeps its last ``window``);
        also the keys a decoded token attends to."""
        return kv_tokens(context, self.window, self.window_share)

    def attended_keys(self, seq_len: Any) -> Any:
        """Keys a prompt token attends to, causal, mean over tokens and layers [tokens]
        (:func:`trnlab.perf.compute.attended_keys`)."""
        return attended_keys(seq_len, self.window, self.window_share)

    def attention_flops(self, context: Any) -> Any:
        """Attention score + context FLOPs of one token over ``context`` keys [FLOP]
        (``Q·Kᵀ`` and ``P·V``, 2 FLOPs per multiply-add)."""
        return 2.0 * context * self.heads * (self.qk_dim + self.v_dim) * self.layers

    def decode_attention_flops(self, context: Any) -> Any:
        """Attention FLOPs of one decoded token over ``context`` keys [FLOP]. MLA decodes with
        the up-projections absorbed into the query and output (DeepSeek-V2, sec. 2.1.3;
        FlashMLA): every head scores the ``kv_lora_rank + rope`` latent and sums the
        ``kv_lora_rank`` values, ``2·context·heads·(kv_latent + kv_rank)`` per layer, 3.4x the
        ``qk_dim + v_dim`` of the decompressed form for DeepSeek-V3 (576 + 512 vs 192 + 128);
        other attention as :meth:`attention_flops`."""
        if self.kv_latent:
            return 2.0 * context * self.heads * (self.kv_latent + self.kv_rank) * self.layers
        return self.attention_flops(context)


@dataclass(frozen=True)
class ServeCalibration:
    """Serving parameters (data/perf/serving.toml, with units and sources; no defaults)."""

    mem_eff: float  # achieved fraction of HBM bandwidth when streaming weights and KV [1]
    mem_reserve: float  # fraction of HBM the runtime holds back (context, activations) [1]
    kv_free_fraction: float  # share of what is left beside the weights given to the KV cache [1]
    decode_half_rows: float  # GEMM rows (tokens) at which a decode GEMM is half-efficient [1]
    per_sequence_overhead: float  # runtime cost per sequence in a step (scheduling, sampling) [s]
    activation_bytes: float  # per element of the activations TP, EP and PP traffic carries [B]


@dataclass(frozen=True)
class ServeLayout:
    """A serving replica's layout and number formats (floats or arrays that broadcast):
    ``tp`` x ``pp`` chips, expert parallelism ``ep``, attention data parallelism ``adp``;
    bytes per weight ``wbytes`` and per cached KV element ``kvbytes`` [B]."""

    tp: Any
    pp: Any
    ep: Any
    adp: Any
    wbytes: Any
    kvbytes: Any


def weight_bytes_per_chip(m: ServeShape, tp: Any, pp: Any, adp: Any, wbytes: Any,
                          batch: Any = None) -> Any:
    """Weights a chip holds (``batch=None``) or reads in a decode step of ``batch`` tokens [B]."""
    experts = m.moe_experts
    if experts and batch is not None:
        experts = m.moe_experts * (1.0 - (1.0 - m.moe_active / m.moe_experts) ** batch)
    attn = m.attn_params * adp / tp
    return (attn + (m.dense_params - m.attn_params) / tp + m.expert_params * experts / tp) \
        * wbytes / pp


def kv_bytes_per_token(m: ServeShape, tp: Any, pp: Any, adp: Any, kvbytes: Any,
                       ranks_per_chip: Any = 1.0) -> Any:
    """KV-cache bytes per token on the chips that hold it [B] (per chip of its attention group).

    Every rank holds whole KV heads, at least one (GQA heads are replicated when the TP ranks
    outnumber them, and padded when they do not divide evenly; an MLA latent is whole on every
    rank), and a chip of ``ranks_per_chip`` ranks (Neuron logical cores) holds its ranks'
    copies: ``max(ceil(g·adp / (tp·r)), 1) · r`` heads per chip."""
    xp = xp_of(tp, pp, adp)
    r = ranks_per_chip
    if m.kv_latent:
        return m.layers * m.kv_latent * kvbytes * r / pp + 0.0 * tp * adp
    # whole heads per rank; the 1e-9 keeps an exact quotient (8 / 8.0) from rounding up
    heads = xp.maximum(xp.ceil(m.kv_heads * adp / (tp * r) - 1e-9), 1.0) * r
    return 2.0 * m.layers * heads * m.qk_dim * kvbytes / pp  # K and V


def kv_bytes_per_request(m: ServeShape, context: Any, kvbytes: Any) -> Any:
    """KV-cache bytes of one request of ``context`` tokens, whole model, unsplit [B]: the bytes
    per token x the tokens its layers keep (:meth:`ServeShape.kv_tokens`, fewer with sliding
    windows)."""
    return kv_bytes_per_token(m, 1.0, 1.0, 1.0, kvbytes) * m.kv_tokens(context)


def max_concurrency(m: ServeShape, hbm_capacity: Any, tp: Any, pp: Any, adp: Any, wbytes: Any,
                    kvbytes: Any, context: Any, cal: ServeCalibration,
                    ranks_per_chip: Any = 1.0) -> Any:
    """Requests of ``context`` tokens whose KV cache fits beside the weights [1] (<= 0: none).

    The KV cache gets ``kv_free_fraction x (HBM x (1 - mem_reserve) - weights)``: vLLM
    everything below ``gpu_memory_utilization`` = 0.9 of HBM (mem_reserve 0.1, fraction 1),
    TensorRT-LLM 0.9 of the memory free after the weights (KvCacheConfig.
    free_gpu_memory_fraction); data/perf/serving.toml. Each of the ``adp`` attention groups
    holds the KV cache of its own ``1/adp`` of the requests.
    """
    xp = xp_of(hbm_capacity, tp, context)
    free = cal.kv_free_fraction * (hbm_capacity * (1.0 - cal.mem_reserve)
                                   - weight_bytes_per_chip(m, tp, pp, adp, wbytes))
    return xp.floor(adp * free / (kv_bytes_per_token(m, tp, pp, adp, kvbytes, ranks_per_chip)
                                  * m.kv_tokens(context)))


def _efficiency(m: ServeShape, hw: Hardware, rows: Any, tp: Any, half_rows: Any,
                half_dim: float) -> Any:
    """Achieved fraction of peak of the layer GEMMs for ``rows`` tokens [1]: the large-GEMM
    efficiency x a row factor x the factors of a column-parallel ``hidden x hidden/tp`` shape."""
    n, k = m.hidden / tp, m.hidden
    return hw.gemm_eff * rows / (rows + half_rows) * n / (n + half_dim) * k / (k + half_dim)


def _tp_traffic(m: ServeShape, tokens: Any, tp: Any, ep: Any, pp: Any, hw: Hardware,
                abytes: float) -> Any:
    """Un-overlapped TP all-reduces (2 per layer: after attention and after the MLP) and EP
    all-to-alls (2 per MoE layer: dispatch and combine) of ``abytes`` [B] activations [s]."""
    act = abytes * tokens * m.hidden
    n_in = comm.members_in_domain(tp, 1.0, hw.domain)
    ar = comm.all_reduce(act, tp, n_in, hw.up_bw, hw.up_latency, hw.out_bw,
                         hw.out_latency)
    ep_in = comm.members_in_domain(ep, tp, hw.domain)
    a2a = comm.all_to_all(act / tp * m.moe_active, ep, ep_in, hw.up_bw, hw.up_latency,
                          hw.out_bw, hw.out_latency)
    return (2.0 * m.layers * ar + 2.0 * m.moe_layers * a2a) / pp


def decode_terms(m: ServeShape, hw: Hardware, lay: ServeLayout, batch: Any, context: Any,
                 cal: ServeCalibration, half_dim: float) -> dict[str, Any]:
    """The terms of one decode step of one pipeline stage for ``batch`` sequences [s]:
    ``compute`` (the weight GEMMs at the row-dependent efficiency), ``stream`` (the weights
    read from HBM), ``attention`` (the attention kernels: ``kv``, the KV cache read from HBM,
    or ``attention_compute``, their FLOPs at the same efficiency, whichever is larger),
    ``traffic`` (un-overlapped TP all-reduces, EP all-to-alls) and ``overhead`` (the
    runtime's per-step and per-sequence cost).
    :func:`decode_step` combines them; studies read them to say which term sets the step."""
    tp, pp, ep, adp, wbytes, kvbytes = lay.tp, lay.pp, lay.ep, lay.adp, lay.wbytes, lay.kvbytes
    xp = xp_of(batch, context, tp)
    eff = _efficiency(m, hw, batch, tp, cal.decode_half_rows, half_dim)
    bw = hw.hbm_bw * cal.mem_eff
    keys = m.kv_tokens(context)  # the context, or less with sliding windows
    kv = batch / adp * keys * kv_bytes_per_token(m, tp, pp, adp, kvbytes,
                                                 hw.ranks_per_chip) / bw
    attn = m.decode_attention_flops(keys) * batch / (tp * pp) / (hw.peak_gemm * eff)
    return {"compute": 2.0 * m.flop_params * batch / (tp * pp) / (hw.peak_gemm * eff),
            "stream": weight_bytes_per_chip(m, tp, pp, adp, wbytes, batch) / bw,
            "kv": kv, "attention_compute": attn, "attention": xp.maximum(kv, attn),
            # each of the adp attention groups exchanges its own batch / adp sequences
            "traffic": _tp_traffic(m, batch / adp, tp / adp, ep, pp, hw, cal.activation_bytes),
            "overhead": hw.step_overhead + cal.per_sequence_overhead * batch}


def decode_step(m: ServeShape, hw: Hardware, lay: ServeLayout, batch: Any, context: Any,
                cal: ServeCalibration, half_dim: float) -> Any:
    """Time of one decode step of one pipeline stage for ``batch`` sequences [s]: the weight
    GEMMs' roofline, then the attention kernels (a separate kernel: their KV reads do not hide
    behind the GEMMs), ``max(compute, stream) + attention + traffic + overhead`` of
    :func:`decode_terms`."""
    t = decode_terms(m, hw, lay, batch, context, cal, half_dim)
    xp = xp_of(t["compute"], t["stream"])
    return xp.maximum(t["compute"], t["stream"]) + t["attention"] + t["traffic"] \
        + t["overhead"]


def prefill_time(m: ServeShape, hw: Hardware, lay: ServeLayout, requests: Any, input_len: Any,
                 cal: ServeCalibration, half_dim: float) -> Any:
    """Prefill of ``requests`` prompts of ``input_len`` tokens through all stages [s]."""
    tp, pp, ep, adp, wbytes = lay.tp, lay.pp, lay.ep, lay.adp, lay.wbytes
    xp = xp_of(requests, input_len, tp)
    tokens = requests * input_len
    # causal prompt: a token attends to input_len / 2 keys on average (fewer with windows)
    flops = (2.0 * m.flop_params * tokens + m.attention_flops(m.attended_keys(input_len))
             * tokens) / tp
    eff = _efficiency(m, hw, tokens, tp, half_dim, half_dim)
    weights = weight_bytes_per_chip(m, tp, pp, adp, wbytes) * pp / (hw.hbm_bw * cal.mem_eff)
    return xp.maximum(flops / (hw.peak_gemm * eff), weights) \
        + _tp_traffic(m, tokens / adp, tp / adp, ep, 1.0, hw, cal.activation_bytes) \
        + hw.step_overhead \
        + cal.per_sequence_overhead * requests


def weight_gemm_share(flop_params: Any, tokens_per_s: Any, achievable: Any) -> Any:
    """Share of the time the weight GEMMs keep the tensor units busy [1]: ``2 N`` FLOPs per
    token processed (prompt and output) at ``tokens_per_s`` [token/s] over the ``achievable``
    ``peak_gemm x gemm_eff`` [FLOP/s], at most 1 (the compute activity of the power model)."""
    xp = xp_of(tokens_per_s, achievable)
    return xp.minimum(2.0 * flop_params * tokens_per_s / achievable, 1.0)


def mean_context(input_len: Any, output_len: Any) -> Any:
    """Tokens a request's decode steps attend to on average [tokens]: its prompt plus half its
    output, ``input + output / 2`` (the context grows by one token per step)."""
    return input_len + 0.5 * output_len


def serve(m: ServeShape, hw: Hardware, lay: ServeLayout, batch: Any, input_len: Any,
          output_len: Any, cal: ServeCalibration, half_dim: float,
          minimal: bool = False, context: Any = None) -> dict[str, Any]:
    """Steady-state continuous batching of one replica of ``tp x pp`` chips holding ``batch``
    requests of ``input_len`` prompt and ``output_len`` generated tokens. ``context``: the
    tokens each decode step attends to [tokens] (None: :func:`mean_context`; a runtime compiled
    for a fixed sequence length reads its whole KV buffer every step).

    Returns ``ttft`` [s] (prefill of one request's prompt with the batch in flight),
    ``tpot`` [s], ``output_tokens_per_s`` and ``input_tokens_per_s`` of the replica [1/s],
    their per-chip values, ``kv_per_token`` and ``weights_per_chip`` [B], ``max_concurrency``
    [1] and ``fits`` (the batch's KV cache and the weights fit in HBM). ``minimal=True``
    returns only ``tpot``, ``output_tokens_per_s_per_chip`` and ``fits`` (grid searches).
    """
    tp, pp, adp, wbytes, kvbytes = lay.tp, lay.pp, lay.adp, lay.wbytes, lay.kvbytes
    xp = xp_of(tp, batch, input_len, output_len)
    context = mean_context(input_len, output_len) if context is None else context
    per_stage = batch / pp
    stage = decode_step(m, hw, lay, per_stage, context, cal, half_dim)
    across = tp * pp > hw.domain  # a replica larger than the domain pipelines over scale-out
    act = cal.activation_bytes * per_stage * m.hidden
    hop = xp.where(across, comm.send_recv(act, hw.out_bw, hw.out_latency),
                   comm.send_recv(act, hw.up_bw, hw.up_latency))
    tpot = pp * stage + (pp - 1.0) * hop
    prefill = prefill_time(m, hw, lay, batch, input_len, cal, half_dim)
    cycle = prefill + output_len * tpot  # one prefill and the decode of `batch` requests
    chips = tp * pp
    out_rate = batch * output_len / cycle
    in_rate = batch * input_len / cycle
    limit = max_concurrency(m, hw.hbm_capacity, tp, pp, adp, wbytes, kvbytes,
                            input_len + output_len, cal, hw.ranks_per_chip)
    fits = (limit >= batch) & (limit >= 1.0)
    if minimal:
        return {"tpot": tpot, "output_tokens_per_s_per_chip": out_rate / chips, "fits": fits}
    return {
        "ttft": prefill_time(m, hw, lay, 1.0, input_len, cal, half_dim) + tpot,
        "tpot": tpot,
        "output_tokens_per_s": out_rate,
        "input_tokens_per_s": in_rate,
        "output_tokens_per_s_per_chip": out_rate / chips,
        "input_tokens_per_s_per_chip": in_rate / chips,
        "prefill_fraction": prefill / cycle,
        "kv_per_token": kv_bytes_per_token(m, tp, pp, adp, kvbytes, hw.ranks_per_chip),
        "weights_per_chip": weight_bytes_per_chip(m, tp, pp, adp, wbytes) + 0.0 * batch,
        "max_concurrency": limit + 0.0 * batch,
        "fits": fits & xp.isfinite(cycle),
    }


def poisson_quantile(mean: Any, z: Any) -> Any:
    """Quantile of a Poisson count of ``mean`` [1] at the standard-normal score ``z`` [1]: the
    normal approximation ``mean + z sqrt(mean)``. Under Poisson arrivals the requests in flight
    of a continuous-batching replica (every admitted request is served at once, an M/G/inf
    system) are Poisson distributed (Kleinrock, Queueing Systems Vol. 1, sec. 3.7)."""
    xp = xp_of(mean, z)
    return mean + z * xp.sqrt(xp.maximum(mean, 0.0))


def md1_wait_quantile(rho: Any, service: Any, q: Any) -> Any:
    """Waiting time [s] of an M/D/1 queue (Poisson arrivals, deterministic ``service`` [s],
    utilisation ``rho`` [1]) exceeded with probability ``1 - q``.

    Pollaczek-Khinchine mean wait ``W = rho S / (2 (1 - rho))`` (c_s = 0), with the
    exponential tail ``P(wait > t) = rho exp(-rho t / W)`` (exact for M/M/1, Kingman's
    heavy-traffic law otherwise): ``t_q = (W / rho) ln(rho / (1 - q))`` when ``rho > 1 - q``,
    else 0 (at least a fraction q of the requests do not wait). ``rho >= 1``: infinite.
    """
    xp = xp_of(rho, service, q)
    r = xp.minimum(xp.maximum(xp.asarray(rho) * 1.0, 1e-12), 1.0 - 1e-12)
    wait = r * service / (2.0 * (1.0 - r))
    t = xp.where(r > 1.0 - q, wait / r * xp.log(xp.maximum(r / (1.0 - q), 1.0)), 0.0)
    return xp.where(rho < 1.0, t, xp.inf)


def server_scenario(m: ServeShape, hw: Hardware, lay: ServeLayout, mean_batch: Any,
                    input_len: Any, output_len: Any, cal: ServeCalibration, half_dim: float,
                    z: Any, q: Any) -> dict[str, Any]:
    """Continuous batching of one replica under Poisson arrivals holding ``mean_batch``
    requests on average (the MLPerf server scenario, vLLM ``--request-rate``).

    - Decode steps of the mean batch take ``t = tpot(mean_batch)`` (:func:`serve`); prefills of
      arriving prompts interrupt them at ``pb`` each, the prefill of ``B`` prompts batched as
      the offline cycle batches them, divided by ``B`` (chunked prefill rides on the decode
      steps that stream the weights anyway), so a request's time per output token is
      ``T = t / (1 - rho)`` with the prefill utilisation ``rho = rate pb``.
    - Little's law, ``mean_batch = rate (p1 + t + output T)`` with ``p1`` the prefill of one
      prompt alone (its latency), is a quadratic in the rate; its smaller root, written
      stably, is ``rate = 2 B / (b + sqrt(b^2 - 4 F pb B))`` with ``F = p1 + t``,
      ``D = output t`` and ``b = F + D + B pb``.
    - The p-quantile (score ``z``, probability ``q``) of the batch is
      :func:`poisson_quantile`; TPOT at that batch, stretched by ``1 / (1 - rho)``, is the
      quantile TPOT; TTFT is ``p1 + t`` plus the M/D/1 wait :func:`md1_wait_quantile` at
      utilisation ``rho`` behind a prefill of ``p1``.

    Returns ``rate`` [1/s], ``output_tokens_per_s`` [1/s] of the replica, ``tpot`` and ``ttft``
    (means) and ``tpot_q``, ``ttft_q`` (quantiles) [s], ``peak_batch`` [1] and ``fits`` (the
    peak batch's KV cache and the weights fit in HBM).
    """
    xp = xp_of(mean_batch, input_len, output_len)
    res = serve(m, hw, lay, mean_batch, input_len, output_len, cal, half_dim)
    t = res["tpot"]
    p1 = prefill_time(m, hw, lay, 1.0, input_len, cal, half_dim)
    pb = prefill_time(m, hw, lay, mean_batch, input_len, cal, half_dim) / mean_batch
    f = p1 + t
    b = f + output_len * t + mean_batch * pb
    rate = 2.0 * mean_batch / (b + xp.sqrt(xp.maximum(b * b - 4.0 * f * pb * mean_batch, 0.0)))
    rho = rate * pb
    peak = poisson_quantile(mean_batch, z)
    at_peak = serve(m, hw, lay, peak, input_len, output_len, cal, half_dim)
    stretch = 1.0 / xp.maximum(1.0 - rho, 1e-12)
    return {
        "rate": rate,
        "output_tokens_per_s": rate * output_len,
        "tpot": t * stretch,
        "ttft": f,
        "tpot_q": at_peak["tpot"] * stretch,
        "ttft_q": f + md1_wait_quantile(rho, p1, q),
        "peak_batch": peak,
        "fits": at_peak["fits"] & (rho < 1.0),
    }
