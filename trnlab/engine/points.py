"""A system's performance on a reference workload, shared by the power and cost studies.

Training: the best layout of :func:`trnlab.engine.training.search`. Serving: the best layout of
:func:`trnlab.engine.serving.frontier` under the SLO. Results are cached per arguments.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from trnlab import catalog
from trnlab.engine import serving, training
from trnlab.engine.hardware import hardware
from trnlab.engine.variables import TRANSFER
from trnlab.perf.serve import weight_gemm_share


@lru_cache(maxsize=256)
def training_point(model: str, system: str, n_chips: int, precision: str = "bf16",
                   seq_len: int = 8192, global_batch: int | None = None) -> dict[str, Any]:
    """Best training layout of ``model`` on ``n_chips`` of ``system``: tokens/s per chip, MFU,
    model FLOP/s per chip, the compute share of the step (tensor activity), the share spent in
    exposed communication and the optimizer update (HBM and link activity: ``memory_share``;
    pipeline bubbles and fixed overheads count as idle), and the layout. Empty values (NaN) when
    no layout is valid."""
    ds = training.search(model, system, n_chips, precision=precision, seq_len=seq_len,
                         global_batch=global_batch, top=1)
    if not ds.sizes["config"]:
        nan = float("nan")
        return {"tokens_per_s_per_chip": nan, "mfu": nan, "model_flops_per_chip": nan,
                "compute_share": nan, "memory_share": nan, "layout": {}}
    row = training.best_row(ds)
    return {"tokens_per_s_per_chip": row["tokens_per_s_per_chip"], "mfu": row["mfu"],
            "model_flops_per_chip": float(ds["model_flops_per_chip"][0]),
            "compute_share": float(ds["t_compute"][0] / ds["step_time"][0]),
            "memory_share": float(sum(ds[k][0] for k in TRANSFER) / ds["step_time"][0]),
            "layout": row}


@lru_cache(maxsize=256)
def serving_point(model: str, system: str, input_len: int = 2048, output_len: int = 512,
                  tpot_ms: float | None = 50.0, ttft_ms: float | None = 2000.0,
                  weights: str = "bf16", activations: str = "bf16", kv: str = "bf16"
                  ) -> dict[str, Any]:
    """Best serving layout under the SLO: output tokens/s per chip, and the tensor and memory
    activity shares (tensor share = delivered FLOP/s / achievable FLOP/s; the rest is HBM-bound).
    """
    ds = serving.frontier(model, system, input_len=input_len, output_len=output_len,
                            tpot_ms=tpot_ms, ttft_ms=ttft_ms, weights=weights,
                            activations=activations, kv=kv)
    best = serving.best(ds)
    if not best:
        nan = float("nan")
        return {"output_tokens_per_s_per_chip": nan, "compute_share": nan,
                "memory_share": nan, "layout": {}}
    spec = catalog.model(model)
    chip = catalog.chip(catalog.system(system).chip)
    tokens = best["output_tokens_per_s_per_chip"] * (1.0 + input_len / output_len)
    hw = hardware(chip.id, system, activations)
    compute = float(weight_gemm_share(spec.flop_params, tokens, hw.peak_gemm * hw.gemm_eff))
    return {"output_tokens_per_s_per_chip": best["output_tokens_per_s_per_chip"],
            "compute_share": compute, "memory_share": 1.0 - compute, "layout": best}
