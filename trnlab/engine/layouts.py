"""Enumerate parallel layouts of ``n`` chips as flat arrays, with a reason code for invalid ones.

:data:`REASONS` is the one vocabulary of why a configuration is invalid, for training layouts,
serving layouts (memory, SLO targets) and the studies that report them.

A layout is tp x pp x dp x cp = n chips (ep divides the experts and tp x dp x cp: expert-parallel
folding, Megatron-Core, expert-TP 1; vpp interleaved chunks per stage), with
ZeRO stage, recompute and micro-batch. Layouts that break a rule stay in the arrays, masked with
the first rule they break (:data:`REASONS`); they are never dropped silently.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from trnlab.catalog.params import load_defaults
from trnlab.perf.moe import expert_tp_size
from trnlab.workloads import TransformerSpec

REASONS = {
    0: "ok",
    1: "tp does not divide the attention heads / kv heads",
    2: "fewer than one layer per pipeline chunk (pp x vpp > layers + 2: the embedding and the "
       "loss may count as one pipeline layer each)",
    3: "dp x micro_batch does not divide the global batch",
    4: "tp spans more than one scale-up domain",
    5: "ep does not divide the experts, or ep (x the expert-TP size) does not divide "
       "tp x dp x cp",
    6: "cp does not divide the sequence into 2 x cp chunks",
    7: "does not fit in HBM",
    8: "misses the time-per-output-token target",
    9: "misses the time-to-first-token target",
}
#: codes by meaning, for the code that sets them
OK, NO_FIT, MISSES_TPOT, MISSES_TTFT = 0, 7, 8, 9
FIELDS = ("tp", "pp", "dp", "cp", "ep", "vpp", "zero", "recompute", "micro_batch")


def default_global_batch(n_chips: int, seq_len: int, tokens: float | None = None) -> int:
    """Sequences per step near ``tokens`` per step (default: ``tokens_per_step`` of
    data/perf/defaults.toml, 16 Mi, Llama 3 405B's batch) [sequence]: the one default of trnlab.

    ``odd x 2^k`` with ``odd`` the odd part of ``n_chips`` and ``k`` chosen to come nearest
    (in ratio) to ``tokens / seq_len``: a data-parallel degree made of the chip count's odd
    factors and a power of two can then divide it (1152 = 2^7 x 9 chips -> 2304 sequences).
    A grid with no chip count (``n_chips=1``) gets a power of two.
    """
    tokens = tokens or load_defaults()["tokens_per_step"].si
    odd = n_chips
    while odd % 2 == 0:
        odd //= 2
    target = max(tokens / seq_len / odd, 1.0)
    k = max(0, round(math.log2(target)))
    return odd * 2**k


def divisors(n: int, limit: int | None = None) -> list[int]:
    """Divisors of ``n`` up to ``limit`` (inclusive), ascending."""
    top = n if limit is None else min(n, limit)
    small = [d for d in range(1, int(n**0.5) + 1) if n % d == 0]
    return sorted(d for d in {*small, *(n // d for d in small)} if d <= top)


def broken_rules(spec: TransformerSpec, tp: Any, pp: Any, dp: Any, cp: Any, ep: Any, vpp: Any,
                 micro_batch: Any, global_batch: Any, seq_len: Any, domain: Any,
                 tp_outside_domain: bool = False, expert_tp: int = 1) -> list[Any]:
    """Masks of the broken rules 1..6 of :data:`REASONS`, in order (integer arrays broadcast).

    Each mask depends only on the parameters of its rule, so on a factored grid it stays on the
    small sub-grid of those axes. ``expert_tp``: a MoE stack's expert-tensor-parallel size
    (data/perf/moe.toml; 0 = the TP size): with expert parallelism ep x expert-TP ranks tile
    tp x dp x cp (ep = 1 keeps the experts TP-sharded like a dense MLP).
    """
    etp = 1 if expert_tp == 1 else np.where(ep > 1, expert_tp_size(int(expert_tp), tp), 1)
    kv_ok = (spec.kv_heads % tp == 0) | (tp % spec.kv_heads == 0)
    return [
        (spec.heads % tp != 0) | ~kv_ok,
        # the embedding and the loss may take a pipeline slot each (data/perf/defaults.toml)
        pp * vpp > spec.dense_layers + spec.moe_layers
        + int(load_defaults()["pipeline_extra_layers"].si),
        global_batch % (dp * micro_batch) != 0,
        (tp > domain) & (not tp_outside_domain),
        ((tp * dp * cp) % (ep * etp) != 0) | ((spec.moe_experts or 1) % ep != 0),
        seq_len % (2 * cp) != 0,
    ]


def reason_codes(spec: TransformerSpec, cfg: dict[str, np.ndarray], global_batch: int,
                 seq_len: int, domain: int, tp_outside_domain: bool = False,
                 expert_tp: int = 1) -> np.ndarray:
    """The first broken rule of each configuration (0 = valid before the memory check);
    ``expert_tp`` as in :func:`broken_rules`."""
    tp, pp, dp, cp, ep, vpp, mb = (cfg[k] for k in ("tp", "pp", "dp", "cp", "ep", "vpp",
                                                    "micro_batch"))
    rules = broken_rules(spec, tp, pp, dp, cp, ep, vpp, mb, global_batch, seq_len, domain,
                         tp_outside_domain, expert_tp)
    reason = np.zeros(tp.shape, dtype=np.int8)
    for code, broken in reversed(list(enumerate(rules, start=1))):
        reason[broken] = code
    return reason


def _cross(*axes: np.ndarray) -> list[np.ndarray]:
    """Flat cartesian product of 1-D arrays (each output has prod(len) elements)."""
    grids = np.meshgrid(*axes, indexing="ij")
    return [g.ravel() for g in grids]


def enumerate_layouts(spec: TransformerSpec, n_chips: int, *, micro_batches: Sequence[int],
                      zeros: Sequence[int], recomputes: Sequence[int], vpps: Sequence[int],
                      tp_max: int = 64, cp_max: int = 64, ep_values: Iterable[int] = (1,)
                      ) -> dict[str, np.ndarray]:
    """Every (tp, pp, cp) with tp x pp x cp dividing ``n_chips`` crossed with the other choices.

    Built with array operations (no loop over configurations). Interleaving (vpp > 1) is only
    enumerated with a pipeline (pp > 1). Returns flat int64 arrays keyed by :data:`FIELDS`.
    """
    layers = spec.dense_layers + spec.moe_layers
    tp, cp, pp = _cross(np.array(divisors(n_chips, tp_max)), np.array(divisors(n_chips, cp_max)),
                        np.array(divisors(n_chips, layers)))
    keep = n_chips % (tp * cp * pp) == 0
    tp, cp, pp = tp[keep], cp[keep], pp[keep]
    idx, ep, vpp, zero, rc, mb = _cross(np.arange(tp.size), *(np.asarray(list(v), dtype=np.int64)
                                                               for v in (ep_values, vpps, zeros,
                                                                         recomputes,
                                                                         micro_batches)))
    keep = (vpp == 1) | (pp[idx] > 1)
    idx, ep, vpp, zero, rc, mb = (a[keep] for a in (idx, ep, vpp, zero, rc, mb))
    tp, cp, pp = tp[idx], cp[idx], pp[idx]
    return {"tp": tp, "pp": pp, "dp": n_chips // (tp * pp * cp), "cp": cp, "ep": ep,
            "vpp": vpp, "zero": zero, "recompute": rc, "micro_batch": mb}
