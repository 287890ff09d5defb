"""Speed benchmarks of the step model (``trnlab bench``).

Measures, as medians of a few repeats after one warm-up run:

- ``train_configs_per_s``: training configurations per second of
  :func:`trnlab.engine.train_grid.evaluate_grid` on a factored grid of >= 10^7 layouts of
  llama3-405b (float32, NumPy, in search mode: step time, memory, fit and validity of every
  configuration, the best kept per block); ``train_configs_per_s_full`` does the same while
  keeping every output in a Dataset; ``train_configs_per_s_cupy`` with CuPy when a CUDA device
  is present;
- ``search_405b_16k_s`` and ``search_405b_1m_s``: the time of a full layout search
  (:func:`trnlab.engine.training.search`) of llama3-405b on 16,384 and on 1,000,000 Trn3 chips
  (the latter with a global batch of 125,000 sequences, which 1,000,000 = 2^6 5^6 chips can
  split: the default 2,048 sequences leave no valid layout);
- ``serve_configs_per_s``: serving configurations per second of
  :func:`trnlab.engine.serve_grid.best_throughput` (llama3-70b on six systems x tp x pp x
  batch x input x output lengths, >= 10^7 configurations, float32, the best valid layout per
  system and request shape kept);
- ``mc_samples_x_configs_s``: the time to evaluate 10^5 Monte-Carlo samples of the power inputs
  x 10^3 configurations (energy per token, p5/p50/p95 per configuration), and
  ``mc_cells_per_s``;
- ``peak_rss_mb``: the peak resident memory of the process [MB].

Importable with NumPy alone; CuPy is used only when ``cupy.is_available()``.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

from trnlab import backend
from trnlab.errors import BackendError

MODEL = "llama3-405b"
SYSTEMS = ("trn3-ultraserver", "trn3-ultraserver-64")
SEQ_LEN = 8192
GLOBAL_BATCH = 2048  # 16 Mi tokens per step
BATCH_1M = 125_000  # sequences per step on 10^6 chips (dp can divide it)


def grid_axes(quick: bool = False) -> dict[str, list[Any]]:
    """The benchmark grid: 15,482,880 layouts (``quick``: 967,680)."""
    return {
        "tp": [1, 2, 4, 8, 16, 32, 64],
        "pp": [1, 2, 3, 6, 7, 9, 14, 18, 21, 42, 63, 126],  # the divisors of 126 layers
        "dp": list(range(1, 5 if quick else 65)),
        "cp": [1, 2, 4, 8, 16],
        "vpp": [1, 2, 3],
        "zero": [0, 1, 2, 3],
        "recompute": ["none", "selective", "full"],
        "micro_batch": list(range(1, 9)),
        "system": list(SYSTEMS),
    }


SERVE_SYSTEMS = ("trn2-ultraserver", "trn3-ultraserver", "dgx-h100", "dgx-h200", "dgx-b200",
                 "gb200-nvl72")


def _serving_and_monte_carlo(quick: bool, repeats: int) -> dict[str, Any]:
    import numpy as np

    from trnlab.engine.economics import energy_per_token_bands
    from trnlab.engine.serve_grid import best_throughput

    n_len = 16 if quick else 80
    axes = {"tp": [1, 2, 4, 8, 16, 32, 64, 128], "pp": [1, 2, 4],
            "batch": [2**i for i in range(13)],
            "input_len": list(np.linspace(128, 32768, n_len).astype(int)),
            "output_len": list(np.linspace(16, 4096, n_len).astype(int))}
    _, n = best_throughput("llama3-70b", SERVE_SYSTEMS, **axes)
    serve_s = _median_time(lambda: best_throughput("llama3-70b", SERVE_SYSTEMS, **axes),
                           repeats)
    samples, configs = (10_000, 1_000) if quick else (100_000, 1_000)
    tps = np.linspace(100.0, 2000.0, configs)
    mc_s = _median_time(lambda: energy_per_token_bands("trn3", tps, np.full(configs, 0.8),
                                                       n_samples=samples), 1 if quick else 3)
    return {"serve_configs_per_s": n / serve_s, "serve_grid_size": n,
            "mc_samples": samples, "mc_configs": configs, "mc_samples_x_configs_s": mc_s,
            "mc_cells_per_s": samples * configs / mc_s}


def _scale_monte_carlo(repeats: int) -> dict[str, Any]:
    """Whole training runs under failures at 1M chips (:mod:`trnlab.engine.scale`):
    ``scale_mc_1m_10k_s`` [s], one job of Llama 3 405B on 995,328 Trn3 with 10,000 trials
    (search, bands and run simulation); ``scale_mc_runs_per_s`` [1/s], simulated runs per
    second on a 10,000 trials x 64 checkpoint-interval grid."""
    import numpy as np

    from trnlab.engine import scale

    job = _median_time(lambda: scale.evaluate_run(MODEL, "trn3-ultraserver", 995_328,
                                                  n_trials=10_000), repeats)
    tau = backend.asarray(np.geomspace(5.0, 3600.0, 64))[None, :]
    work = backend.asarray(np.full((10_000, 1), 5e5))

    def runs() -> Any:
        return scale.simulate_runs(work, tau, 2.0, 120.0, 200.0, 1e-5, scale.generator(0))

    return {"scale_mc_1m_10k_s": job,
            "scale_mc_runs_per_s": 10_000 * 64 / _median_time(runs, repeats)}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far [MB] (``ru_maxrss``)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10  # bytes on macOS, KiB else


def _median_time(func: Callable[[], Any], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call [s]."""
    func()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(quick: bool = False) -> dict[str, Any]:
    """Run the benchmarks and return the numbers (see the module docstring).

    Parameters
    ----------
    quick : bool
        A 967,680-configuration grid and fewer repeats (a smoke test of a few seconds).

    Returns
    -------
    dict
        ``train_configs_per_s`` [1/s], ``grid_size`` [1], ``search_405b_16k_s`` [s],
        ``search_405b_1m_s`` [s], ``peak_rss_mb`` [MB], ``backend``, plus
        ``train_configs_per_s_full`` [1/s], ``train_configs_per_s_cupy`` [1/s] (with a CUDA
        device), ``peak_rss_full_mb`` [MB] and notes on what was measured.
    """
    from trnlab.engine import training
    from trnlab.engine.train_grid import evaluate_grid

    repeats = 2 if quick else 5
    axes = grid_axes(quick)
    size = 1
    for values in axes.values():
        size *= len(values)

    def grid(reduce: str | None = "max_tokens_per_s") -> Any:
        return evaluate_grid(MODEL, axes, global_batch=GLOBAL_BATCH, seq_len=SEQ_LEN,
                             dtype="float32", reduce=reduce)

    out: dict[str, Any] = {}
    with backend.set_backend("numpy"):
        out["train_configs_per_s"] = size / _median_time(grid, repeats)
        out["grid_size"] = size
        out["search_405b_16k_s"] = _median_time(
            lambda: training.search(MODEL, "trn3-ultraserver", 16_384, seq_len=SEQ_LEN,
                                    global_batch=GLOBAL_BATCH), repeats)
        out["search_405b_1m_s"] = _median_time(
            lambda: training.search(MODEL, "trn3-ultraserver", 1_000_000, seq_len=SEQ_LEN,
                                    global_batch=BATCH_1M), repeats)
        out.update(_serving_and_monte_carlo(quick, repeats))
        out.update(_scale_monte_carlo(repeats))
        out["peak_rss_mb"] = peak_rss_mb()
        out["train_configs_per_s_full"] = size / _median_time(lambda: grid(None), 2 if quick
                                                              else 3)
        out["peak_rss_full_mb"] = peak_rss_mb()
    out["backend"] = "numpy"
    try:  # trnlab.backend refuses CuPy unless cupy.is_available()
        gpu = backend.set_backend("cupy")
    except BackendError:
        pass
    else:
        with gpu:
            out["train_configs_per_s_cupy"] = size / _median_time(grid, repeats)
            out["scale_mc_runs_per_s_cupy"] = _scale_monte_carlo(repeats)["scale_mc_runs_per_s"]
        out["backend"] = "numpy+cupy"
    out["threads"] = os.cpu_count() or 1
    out["notes"] = (
        f"grid: {MODEL} on {' and '.join(SYSTEMS)}, seq {SEQ_LEN}, global batch {GLOBAL_BATCH}, "
        "float32, search mode (best valid layout kept per block); _full keeps every output; "
        f"search 16k: global batch {GLOBAL_BATCH}; search 1m: global batch {BATCH_1M} "
        f"sequences of {SEQ_LEN}; medians of {repeats} runs after a warm-up")
    return out
