"""Training study: evaluate layouts, search the best parallel layout, build Datasets.

The core (:func:`trnlab.perf.train.train_step`) is evaluated on flat arrays of configurations,
in chunks of bounded size; chunks can run on a dask.distributed cluster (``client=``).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import xarray as xr

from trnlab import backend, catalog, checks
from trnlab.catalog.params import TrainingParams, load_training
from trnlab.engine.hardware import hardware, moe_calibration, precision_bytes, train_calibration
from trnlab.engine.layouts import (
    FIELDS,
    REASONS,
    default_global_batch,
    enumerate_layouts,
    reason_codes,
)
from trnlab.engine.shape import model_shape
from trnlab.engine.variables import attrs
from trnlab.errors import CatalogError
from trnlab.perf.moe import MoECalibration
from trnlab.perf.train import OUTPUTS, RECOMPUTE, Hardware, Layout, train_step
from trnlab.workloads import TransformerSpec
from trnlab.workloads.flops import Recompute

CHUNK = 1 << 16  # configurations per evaluation chunk (bounded memory)

def check_power_cap(where: str, chip_id: str, power_cap_w: Any) -> float | None:
    """``power_cap_w`` [W] checked against the chip: None (no cap) or in ``(0, TDP]``.

    A cap above the chip's TDP would be a silent no-op (the clock never exceeds nominal), so
    it is an error naming the TDP."""
    if power_cap_w is None:
        return None
    tdp = catalog.chip(chip_id).tdp
    cap = checks.finite(where, "power_cap_w", power_cap_w, unit="W")
    if not 0.0 < cap <= tdp:
        raise checks.fail(where, "power_cap_w", power_cap_w,
                          f"must be > 0 and <= {chip_id}'s TDP {tdp:g} W (a cap above the TDP "
                          "would not slow the chip)")
    return cap


def evaluate(spec: TransformerSpec, hw: Hardware, cfg: dict[str, np.ndarray], global_batch: Any,
             seq_len: Any, params: TrainingParams | None = None,
             chunk: int = CHUNK, moe: MoECalibration | None = None,
             selective: str | Recompute = "attention",
             eager: frozenset[str] = frozenset()) -> dict[str, np.ndarray]:
    """Run the step model over flat configuration arrays, chunk by chunk, on the backend.

    Returns NumPy arrays of every output of :func:`~trnlab.perf.train.train_step`. ``moe``:
    the MoE constants of a stack (default: data/perf/moe.toml's, through ``params``);
    ``selective``: what selective recompute runs again, ``eager``: the memory-bound op kinds
    run unfused (:func:`~trnlab.engine.shape.model_shape`).
    """
    params = params or load_training()
    shape, cal = model_shape(spec, selective, eager), train_calibration(params)
    if moe is not None:
        cal = dataclasses.replace(cal, moe=moe)
    n = next(iter(cfg.values())).size
    out: dict[str, list[np.ndarray]] = {}
    for lo in range(0, n, chunk):  # chunks of configurations, each one vectorized call
        part = {k: backend.asarray(np.asarray(v[lo:lo + chunk], dtype=np.float64))
                for k, v in cfg.items()}
        ones = backend.asarray(np.ones(part["tp"].shape[0]))
        lay = Layout(**part, global_batch=ones * float(global_batch), seq_len=ones * float(seq_len))
        for key, value in train_step(shape, hw, lay, cal).items():
            out.setdefault(key, []).append(np.asarray(backend.to_numpy(value)))
    return {k: np.concatenate(v) for k, v in out.items()}


def evaluate_distributed(client: Any, spec: TransformerSpec, hw: Hardware,
                         cfg: dict[str, np.ndarray], global_batch: int, seq_len: int,
                         params: TrainingParams | None = None, chunk: int = CHUNK,
                         moe: MoECalibration | None = None) -> dict[str, np.ndarray]:
    """:func:`evaluate` with one dask.distributed task per chunk (``client``: a dask Client)."""
    params = params or load_training()
    n = next(iter(cfg.values())).size
    parts = [{k: v[lo:lo + chunk] for k, v in cfg.items()} for lo in range(0, n, chunk)]
    futures = client.map(evaluate, [spec] * len(parts), [hw] * len(parts), parts,
                         [global_batch] * len(parts), [seq_len] * len(parts),
                         [params] * len(parts), [chunk] * len(parts), [moe] * len(parts),
                         pure=False)
    results = client.gather(futures)
    return {k: np.concatenate([r[k] for r in results]) for k in results[0]}


def pareto_front(mem: np.ndarray, speed: np.ndarray) -> np.ndarray:
    """Mask of configurations not dominated in (lower memory, higher speed)."""
    order = np.lexsort((-speed, mem))
    best = np.maximum.accumulate(speed[order])
    front = np.zeros(mem.size, dtype=bool)
    front[order] = speed[order] >= best  # nobody with less (or equal) memory is faster
    front[order[1:]] &= speed[order[1:]] > best[:-1]
    return front


def search(model_id: TransformerSpec | str, system: str, n_chips: int, *,
           precision: str = "bf16", seq_len: int = 8192, global_batch: int | None = None,
           chip: str | None = None, micro_batches: Sequence[int] = (1, 2, 4, 8),
           zeros: Sequence[int] = (0, 1, 2, 3), recomputes: Sequence[str] = RECOMPUTE,
           vpps: Sequence[int] = (1, 2, 4, 8), tp_outside_domain: bool = False, top: int = 20,
           params: TrainingParams | None = None, client: Any = None,
           power_cap_w: float | None = None, attention_precision: str = "bf16",
           activation_offload: float | None = None,
           optimizer_offload: bool = False, expert_tp: int = 1) -> xr.Dataset:
    """Every valid layout of ``model`` on ``n_chips`` chips of ``system``, best first.

    Parameters
    ----------
    model_id : str or TransformerSpec
        A preset id (``trnlab.catalog.model_ids()``) or a spec.
    system : str
        Scale-up system id; its chip is used unless ``chip`` is given.
    n_chips : int
        Chips in the job [1], 1..:data:`~trnlab.checks.MAX_CHIPS`.
    precision : str
        GEMM precision (bf16, fp8, mxfp8, ...; data/perf/formats.toml).
    seq_len, global_batch : int
        Sequence length [tokens], 1..2^24, and sequences per step, 1..2^30 (default:
        :func:`default_global_batch`, about 16M tokens per step).
    top : int
        Layouts kept in the Dataset (plus the memory-vs-speed Pareto set), >= 1.
    client : dask.distributed.Client, optional
        Evaluate the chunks on a dask cluster.
    power_cap_w : float, optional
        Chip power cap [W], in (0, TDP]: the compute peaks scale with the clock the chip holds
        under it.
    attention_precision : {"bf16", "fp8"}
        Precision of the attention core's matmuls ("fp8": Transformer Engine's FP8 attention,
        :func:`trnlab.engine.hardware.hardware`); fp8 only on a chip with an FP8 rate.
    activation_offload : float, optional
        Share [0, 1] of the saved activations kept in host memory (default: ``params``',
        training.toml ``activation_offload``, 0): HBM holds the rest; the copies cross the chip's
        host link (catalog ``host_bandwidth``) behind each pass, exposed where they outlast it.
    expert_tp : int
        Expert-tensor-parallel size of a MoE model's layouts with expert parallelism [1], >= 0:
        1 (default) whole experts per chip, as the MoE recipes set it; 0 the TP size
        (Megatron-Core's default, and before 0.10 its only layout); the EP ranks times it must
        tile tp x dp x cp (data/perf/moe.toml expert_tp).
    optimizer_offload : bool
        Keep the Adam states and update on the host CPU (DeepSpeed ZeRO-Offload; training.toml
        ``optimizer_offload``): HBM holds the weights only, the update runs in the host's DRAM
        (catalog ``host_memory_bandwidth``, a chip without it is refused).

    Every argument is checked first (:mod:`trnlab.checks`); a bad one raises one
    ParameterError/CatalogError line naming it, its value and what is allowed.

    Returns
    -------
    xarray.Dataset
        Dim ``config`` (ranked by tokens/s per chip), layout variables, outputs and the time
        breakdown, ``pareto`` (bool); attrs: counts of evaluated/valid layouts, invalid layouts by
        reason, the best layout as JSON.
    """
    where = "search"
    spec = catalog.spec(model_id, where)
    n_chips = checks.positive_int(where, "n_chips", n_chips, checks.MAX_CHIPS)
    seq_len = checks.positive_int(where, "seq_len", seq_len, checks.MAX_TOKENS)
    if global_batch is not None:
        global_batch = checks.positive_int(where, "global_batch", global_batch, checks.MAX_BATCH)
    top = checks.positive_int(where, "top", top)
    micro_batches = checks.int_list(where, "micro_batches", micro_batches, 1, checks.MAX_BATCH)
    zeros = checks.int_list(where, "zeros", zeros, 0, 3)
    vpps = checks.int_list(where, "vpps", vpps, 1, 1024)
    if isinstance(recomputes, str):
        recomputes = [recomputes]
    recomputes = [checks.choice(where, "recompute", r, RECOMPUTE) for r in recomputes]
    if not recomputes:
        raise checks.fail(where, "recomputes", recomputes, f"a non-empty list of "
                          f"{', '.join(RECOMPUTE)}")
    precision = checks.choice(where, "precision", precision, precision_bytes())
    sysrec = catalog.system(checks.ident(where, "system", system, CatalogError))
    if chip is not None:
        catalog.chip(checks.ident(where, "chip", chip, CatalogError))
    power_cap_w = check_power_cap(where, chip or sysrec.chip, power_cap_w)
    params = params or load_training()
    if activation_offload is not None:
        params = params.replace(activation_offload=checks.finite(
            where, "activation_offload", activation_offload, 0.0, 1.0))
    attention_precision = checks.choice(where, "attention_precision", attention_precision,
                                        ("bf16", "fp8"))
    hw = hardware(chip or sysrec.chip, system, precision, params, power_cap_w=power_cap_w,
                  training=True, attention_precision=attention_precision)
    if optimizer_offload:
        if not hw.can_offload_optimizer:
            raise checks.fail(where, "optimizer_offload", optimizer_offload,
                              f"not on chip {chip or sysrec.chip}: it has no "
                              "host_memory_bandwidth or host_bandwidth in the catalog")
        params = params.replace(optimizer_offload=1.0)
    expert_tp = checks.integer(where, "expert_tp", expert_tp, 0, checks.MAX_CHIPS)
    moe = None
    if expert_tp != 1:
        if not spec.is_moe:
            raise checks.fail(where, "expert_tp", expert_tp,
                              f"1 for a dense model ({spec.name} has no experts)")
        moe = dataclasses.replace(moe_calibration(), expert_tp=float(expert_tp))
    global_batch = global_batch or default_global_batch(n_chips, seq_len)
    ep_values = divisors_or_one(spec)
    cfg = enumerate_layouts(spec, n_chips, micro_batches=micro_batches, zeros=zeros,
                            recomputes=[RECOMPUTE.index(r) for r in recomputes], vpps=vpps,
                            ep_values=ep_values)
    reason = reason_codes(spec, cfg, global_batch, seq_len, sysrec.n_chips, tp_outside_domain,
                          expert_tp)
    run = evaluate_distributed if client is not None else evaluate
    res = run(*((client,) if client is not None else ()), spec, hw, cfg, global_batch, seq_len,
              params, moe=moe)
    reason[(reason == 0) & ~res["fits"]] = 7
    valid = reason == 0
    speed = np.where(valid, res["tokens_per_s_per_chip"], -np.inf)
    front = np.zeros(valid.size, dtype=bool)
    front[valid] = pareto_front(res["mem_per_chip"][valid], speed[valid])
    order = np.argsort(-speed, kind="stable")
    keep = np.union1d(order[:top][valid[order[:top]]], np.flatnonzero(front))
    keep = keep[np.argsort(-speed[keep], kind="stable")]
    ds = _dataset({**cfg, **res}, reason, front, keep)
    counts = np.bincount(reason, minlength=len(REASONS))
    ds.attrs.update({
        "model": spec.name, "system": system, "chip": chip or sysrec.chip, "n_chips": n_chips,
        "precision": precision, "seq_len": seq_len, "global_batch": global_batch,
        "power_cap_w": json.dumps(power_cap_w), "attention_precision": attention_precision,
        "activation_offload": params.fields["activation_offload"].si,
        "optimizer_offload": int(params.fields["optimizer_offload"].si),
        "expert_tp": expert_tp,
        "n_evaluated": int(reason.size), "n_valid": int(valid.sum()),
        "invalid_by_reason": json.dumps({REASONS[i]: int(c) for i, c in enumerate(counts)
                                         if i and c}),
        "best": json.dumps(best_row(ds)) if valid.any() else "{}",
    })
    return ds


def divisors_or_one(spec: TransformerSpec) -> list[int]:
    """Expert-parallel degrees to try: powers of two dividing the experts (1 for dense)."""
    e = spec.moe_experts
    return [1] if not e else [d for d in (1, 2, 4, 8, 16, 32, 64, 128, 256) if e % d == 0]


def _dataset(arrays: dict[str, np.ndarray], reason: np.ndarray, front: np.ndarray,
             keep: np.ndarray) -> xr.Dataset:
    """The kept rows as a Dataset over ``config``, built in one call (one alignment, not one
    per variable: a search spends its time here otherwise)."""
    data = {key: ("config", arrays[key][keep].astype(np.int64), attrs(key)) for key in FIELDS}
    data.update({key: ("config", arrays[key][keep], attrs(key)) for key in OUTPUTS})
    data["pareto"] = ("config", front[keep], attrs("pareto"))
    data["reason"] = ("config", reason[keep], attrs("reason", reason_names=json.dumps(REASONS)))
    return xr.Dataset(data, coords={"config": np.arange(keep.size)})


def best_row(ds: xr.Dataset, i: int = 0) -> dict[str, Any]:
    """Layout and headline outputs of row ``i`` of a search Dataset, as plain Python."""
    row = {k: int(ds[k][i]) for k in FIELDS}
    row["recompute"] = RECOMPUTE[row["recompute"]]
    row.update({k: float(ds[k][i]) for k in ("step_time", "tokens_per_s_per_chip", "mfu",
                                              "mem_per_chip")})
    return row
