"""Time of operators on one chip: a roofline with a shape-dependent GEMM efficiency.

A GEMM ``[m, k] @ [k, n]`` does ``2 m k n`` FLOPs (a multiply and an add per term) and moves
at least ``b (m k + k n + m n)`` bytes. Its time is the larger of the compute time at the achieved
rate and the memory time (the roofline, Williams et al., CACM 2009):

``t = max(2 m k n / (peak * eff(m, n, k)), bytes / (hbm_bw * mem_eff))``

The achieved fraction of peak falls for small dimensions (tile quantization, pipeline fill and
the fixed cost of each tile), modelled as a saturating factor per dimension with one
half-efficiency size ``d0``:

``eff(m, n, k) = eff_max * m/(m + d0) * n/(n + d0) * k/(k + d0)``

Memory-bound operators (norms, activations, residuals, softmax statistics) take
``bytes / (hbm_bw * mem_eff)``.
"""

from __future__ import annotations

from typing import Any

from trnlab.perf._xp import xp_of


def gemm_efficiency(m: Any, n: Any, k: Any, eff_max: Any, d0: Any) -> Any:
    """Achieved fraction of peak of a GEMM of shape (m, n, k) [1]. Broadcasts."""
    return eff_max * (m / (m + d0)) * (n / (n + d0)) * (k / (k + d0))


def gemm_time(m: Any, n: Any, k: Any, peak: Any, eff_max: Any, d0: Any, hbm_bw: Any,
              mem_eff: Any, bytes_per_elem: Any) -> Any:
    """Time of one GEMM ``[m, k] @ [k, n]`` [s] on a chip of ``peak`` [FLOP/s], ``hbm_bw`` [B/s].

    Parameters
    ----------
    m, n, k : array_like
        GEMM dimensions [elements].
    peak : array_like
        Dense peak of the chip at the GEMM's precision [FLOP/s].
    eff_max, d0 : array_like
        Large-GEMM efficiency [1] and half-efficiency dimension [elements].
    hbm_bw, mem_eff : array_like
        Memory bandwidth [B/s] and its achieved fraction [1].
    bytes_per_elem : array_like
        Operand size [B] (``Hardware.gemm_bytes``: the precision's size in
        ``data/perf/formats.toml``).
    """
    xp = xp_of(m, n, k, peak, hbm_bw)
    compute = 2.0 * m * n * k / (peak * gemm_efficiency(m, n, k, eff_max, d0))
    memory = bytes_per_elem * (m * k + k * n + m * n) / (hbm_bw * mem_eff)
    return xp.maximum(compute, memory)


def memory_time(nbytes: Any, hbm_bw: Any, mem_eff: Any) -> Any:
    """Time of a memory-bound operator moving ``nbytes`` [B] at ``hbm_bw * mem_eff`` [B/s] [s]."""
    return nbytes / (hbm_bw * mem_eff)


def attended_keys(seq_len: Any, window: float, window_share: float, block: float = 0.0,
                  floor: Any = 0.0) -> Any:
    """Keys a query attends to under the causal mask, mean over queries and layers [tokens].

    A full layer: ``s/2``. A share ``window_share`` of the layers attends over a sliding
    window of ``window`` keys (0: none): query ``i`` sees ``min(i, w)`` keys, on average
    ``m - m²/(2s)`` with ``m = min(w, s)`` (``s/2`` when ``w >= s``). The same formula as
    :meth:`trnlab.workloads.TransformerSpec.mean_attended_keys`. A kernel that computes whole
    tiles of ``block`` keys (> 0) computes, for a query tile ``[iB, (i+1)B)``, the band
    ``[iB - w, (i+1)B)`` rounded out to whole key tiles, ``B (1 + ceil(w/B))`` keys:
    ``B ceil(m/B) - m + B`` more per query of a windowed layer (one tile where the window is a
    multiple of it), at most ``s/2``. A kernel whose windowed query costs at least ``floor``
    keys (``Hardware.attn_window_keys``: its fixed cost per query tile, measured on the
    kernel) is charged ``max(that, floor)``.
    """
    if not window:
        return 0.5 * seq_len
    xp = xp_of(seq_len, floor)
    m = xp.minimum(seq_len, window)
    tiles = block * xp.ceil(m / block) - m + block if block else 0.0
    windowed = xp.minimum(m - m * m / (2.0 * seq_len) + tiles, 0.5 * seq_len)
    windowed = xp.maximum(windowed, floor)
    return (1.0 - window_share) * 0.5 * seq_len + window_share * windowed


def padded_head_work(qk_dim: float, v_dim: float, lanes: Any) -> Any:
    """Attention work of head dimensions padded to a multiple of ``lanes`` over the unpadded
    work [1]: ``(ceil(d_qk/l) + ceil(d_v/l)) l / (d_qk + d_v)``. TPU splash attention runs on
    128 lanes: gpt-oss's 64 + 64 costs 2x, DeepSeek-V3's 192 + 128 1.2x; ``lanes`` 1: 1."""
    xp = xp_of(lanes)
    return (xp.ceil(qk_dim / lanes) + xp.ceil(v_dim / lanes)) * lanes / (qk_dim + v_dim)


def kv_tokens(context: Any, window: float, window_share: float) -> Any:
    """Tokens of a ``context``-token sequence whose K and V a layer keeps, mean over the
    layers [tokens]: a windowed layer keeps only its last ``window`` (a ring buffer)."""
    if not window:
        return context
    return (1.0 - window_share) * context + window_share * xp_of(context).minimum(context,
                                                                                    window)
