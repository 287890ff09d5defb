"""The roofline of the serving operators: arithmetic intensity of decode and prefill.

An operator doing ``F`` FLOPs over ``Q`` bytes of HBM traffic has arithmetic intensity
``I = F / Q`` [FLOP/B]; on a chip of peak ``P`` [FLOP/s] and HBM bandwidth ``W`` [B/s] it runs
at most at ``min(P, I W)``, memory-bound below the ridge ``I* = P / W`` and compute-bound above
it (Williams, Waterman and Patterson, "Roofline", CACM 52(4), 2009).

The weight GEMMs of one forward pass over ``t`` tokens do ``2 N t`` FLOPs (``N`` weights
multiplied per token) and read the weights once — for a mixture of experts only the experts the
tokens hit, ``E (1 - (1 - k/E)^t)`` (:func:`trnlab.perf.serve.weight_bytes_per_chip`) — plus
the activations in and out of every GEMM, ``b_a t sum(k + n)``, approximated by treating each
weight matrix as ``hidden`` wide: ``sum(k + n) ~ 2 N / hidden``. For ``t`` far below ``hidden``
the intensity is ``~ 2 t / b_w``: a decode step at batch ``B`` sits at ``2 B / b_w`` FLOP/B,
a prefill of ``T`` prompt tokens at ``~ 2 T / b_w``, capped near ``hidden / b_a``.

A decode *step* also streams the KV cache of every sequence, ``B c kv`` bytes for
``c`` tokens of context, and does the attention FLOPs over it, ``F_att(c)`` per sequence: its
intensity tends to ``(2 N + F_att(c)) / (c kv)`` however large the batch (Pope et al.,
"Efficiently Scaling Transformer Inference", MLSys 2023).

Intensities do not depend on the tensor-parallel degree: FLOPs and bytes both divide by ``tp``.
"""

from __future__ import annotations

from typing import Any

from trnlab.perf._xp import xp_of
from trnlab.perf.serve import ServeShape, kv_bytes_per_token, weight_bytes_per_chip


def gemm_traffic(m: ServeShape, tokens: Any, wbytes: Any, abytes: Any) -> tuple[Any, Any]:
    """FLOPs [FLOP] and HBM bytes [B] of the weight GEMMs of one pass over ``tokens`` tokens.

    Parameters
    ----------
    m : ServeShape
        The model.
    tokens : array_like
        Tokens in the pass (decode: the batch; prefill: the prompt tokens) [1].
    wbytes, abytes : array_like
        Bytes per weight and per activation element [B].
    """
    flops = 2.0 * m.flop_params * tokens
    weights = weight_bytes_per_chip(m, 1.0, 1.0, 1.0, wbytes, tokens)
    return flops, weights + abytes * tokens * 2.0 * m.flop_params / m.hidden


def gemm_intensity(m: ServeShape, tokens: Any, wbytes: Any, abytes: Any) -> Any:
    """Arithmetic intensity of the weight GEMMs of a pass over ``tokens`` tokens [FLOP/B]."""
    flops, nbytes = gemm_traffic(m, tokens, wbytes, abytes)
    return flops / nbytes


def decode_step_intensity(m: ServeShape, batch: Any, context: Any, wbytes: Any, kvbytes: Any,
                          abytes: Any) -> Any:
    """Arithmetic intensity of a whole decode step: weight GEMMs plus attention over the KV
    cache of ``batch`` sequences of ``context`` tokens [FLOP/B].

    Parameters
    ----------
    batch, context : array_like
        Sequences in the step [1] and their mean context [tokens].
    wbytes, kvbytes, abytes : array_like
        Bytes per weight, per KV-cache element and per activation element [B].
    """
    flops, nbytes = gemm_traffic(m, batch, wbytes, abytes)
    one = 1.0 + 0.0 * batch  # an array, so the core sees the namespace of the inputs
    keys = m.kv_tokens(context)  # fewer than the context with sliding windows
    kv = batch * keys * kv_bytes_per_token(m, one, one, one, kvbytes)
    return (flops + m.decode_attention_flops(keys) * batch) / (nbytes + kv)


def ridge(peak: Any, hbm_bw: Any) -> Any:
    """Ridge-point intensity ``peak / hbm_bw`` [FLOP/B]; ``peak`` [FLOP/s], ``hbm_bw`` [B/s]."""
    return peak / hbm_bw


def attainable(intensity: Any, peak: Any, hbm_bw: Any) -> Any:
    """Roofline attainable rate ``min(peak, intensity x hbm_bw)`` [FLOP/s]."""
    xp = xp_of(intensity, peak, hbm_bw)
    return xp.minimum(peak, intensity * hbm_bw)
