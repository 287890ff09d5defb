"""Serving over large factored grids: every axis its own array dimension, evaluated in chunks.

Used by ``trnlab bench`` (``serve_configs_per_s``) and for sweeps: the best output tokens/s per
chip per (system, input length, output length) over tp x pp x batch, among layouts that fit and
meet a TPOT target.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from trnlab import backend, catalog
from trnlab.catalog import model
from trnlab.engine.hardware import format_bytes, half_dim, hardware, serve_calibration
from trnlab.engine.shape import serve_shape
from trnlab.perf.hardware import Hardware
from trnlab.perf.serve import ServeLayout, serve


def best_throughput(model_id: str, systems: Sequence[str], *, tp: Sequence[int],
                    pp: Sequence[int], batch: Sequence[int], input_len: Sequence[int],
                    output_len: Sequence[int], tpot_ms: float = 50.0, weights: str = "bf16",
                    activations: str = "bf16", kv: str = "bf16", dtype: str = "float32",
                    chunk: int = 8) -> tuple[np.ndarray, int]:
    """Best output tokens/s per chip, shape (system, input_len, output_len), and the number of
    configurations evaluated (systems x tp x pp x batch x inputs x outputs).

    Axes: tp (0), pp (1), batch (2), input (3), output (4); ``chunk`` output lengths at a time.
    Invalid cells (weights + KV over HBM, or TPOT above the target) count as 0.
    """
    m = serve_shape(model(model_id))
    cal, d0 = serve_calibration(), half_dim()
    xp = backend.namespace()
    ft = getattr(xp, dtype)
    axis = lambda v, i: backend.asarray(
        np.asarray(v, dtype=dtype).reshape([-1 if j == i else 1 for j in range(5)]))
    tp_a, pp_a, b_a, in_a = axis(tp, 0), axis(pp, 1), axis(batch, 2), axis(input_len, 3)
    outs = np.asarray(output_len, dtype=dtype)
    best = np.zeros((len(systems), len(input_len), outs.size))
    for s_i, system in enumerate(systems):
        hw = Hardware(**{k: xp.asarray(v, dtype=ft) for k, v in
                         vars(hardware(catalog.system(system).chip, system, activations)).items()})
        lay = ServeLayout(tp=tp_a, pp=pp_a, ep=xp.asarray(1.0, dtype=ft),
                          adp=xp.asarray(1.0, dtype=ft),
                          wbytes=xp.asarray(format_bytes(weights), dtype=ft),
                          kvbytes=xp.asarray(format_bytes(kv), dtype=ft))
        for lo in range(0, outs.size, chunk):  # chunks of output lengths, the rest vectorized
            out_a = axis(outs[lo:lo + chunk], 4)
            r = serve(m, hw, lay, b_a, in_a, out_a, cal, d0, minimal=True)
            ok = r["fits"] & (r["tpot"] * 1e3 <= tpot_ms)
            speed = xp.where(ok, r["output_tokens_per_s_per_chip"], 0.0)
            best[s_i, :, lo:lo + chunk] = backend.to_numpy(
                xp.max(xp.reshape(speed, (-1, speed.shape[3], speed.shape[4])), axis=0))
    n = len(systems) * len(tp) * len(pp) * len(batch) * len(input_len) * outs.size
    return best, n
