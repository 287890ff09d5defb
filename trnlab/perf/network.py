"""Collectives and switch counts on a multi-tier scale-out fabric (alpha-beta model), vectorized.

Above the scale-up domain a fabric has tiers ``k = 1..K`` of switches (leaf, spine, core, ...).
Tier ``k`` joins ``spans[k]`` domains; traffic that crosses into tier ``k`` gets the per-chip
bandwidth ``bws[k]`` (the NIC bandwidth divided by the oversubscription of every tier up to
``k``) and pays ``lats[k]`` per algorithm step. Spans are in domains, bottom first, increasing.

A scale-out group of ``n`` domains laid out on consecutive domains has ``n_k`` members at tier
``k`` (:func:`tier_members`, ``prod n_k = n``). A hierarchical reduce-scatter runs tier by tier
from the bottom, each tier on the data the tiers below have left (``B / prod_{j<k} n_j``),
with ring cost ``(n_k - 1)/n_k * B_k / bw_k + (n_k - 1) alpha_k`` per tier (Thakur et al.,
IJHPCA 2005; the two-tier form is :mod:`trnlab.perf.comm`). An all-reduce is a reduce-scatter
and an all-gather in bandwidth; its latency per tier is the smaller of the ring's
``2 (n_k - 1)`` steps and a double binary tree's ``2 log2 n_k`` (NCCL; Sanders, Speck and
Traeff, Parallel Computing 2009). Tiers are few: the loops below run over tiers, never over
configurations; every argument broadcasts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trnlab.perf._xp import xp_of


def tier_members(n: Any, spans: Sequence[Any]) -> tuple[Any, ...]:
    """Members ``n_k`` of an ``n``-domain group at each tier [1]: ``min(n, S_k) / S_{k-1}``
    (at least 1; ``S_0`` = 1 domain), the top tier taking whatever exceeds its span."""
    xp = xp_of(n, *spans)
    out, below = [], 1.0
    for k, span in enumerate(spans):
        top = n if k == len(spans) - 1 else xp.minimum(n, span)
        out.append(xp.maximum(top / below, 1.0))
        below = span
    return tuple(out)


def reduce_scatter(nbytes: Any, n: Any, spans: Sequence[Any], bws: Sequence[Any],
                   lats: Sequence[Any]) -> Any:
    """Hierarchical ring reduce-scatter (or all-gather) of ``nbytes`` [B] per chip over an
    ``n``-domain group [s]: ``sum_k (n_k-1)/n_k B_k/bw_k + (n_k-1) alpha_k``."""
    total, data = 0.0, nbytes
    for n_k, bw, lat in zip(tier_members(n, spans), bws, lats, strict=True):
        total = total + (n_k - 1.0) / n_k * data / bw + (n_k - 1.0) * lat
        data = data / n_k
    return total


def _latency_steps(n_k: Any) -> Any:
    """All-reduce steps at one tier: ring ``2 (n-1)`` or double binary tree ``2 log2 n``."""
    xp = xp_of(n_k)
    return xp.minimum(2.0 * (n_k - 1.0), 2.0 * xp.log2(n_k))


def all_reduce(nbytes: Any, n: Any, spans: Sequence[Any], bws: Sequence[Any],
               lats: Sequence[Any]) -> Any:
    """Hierarchical all-reduce of ``nbytes`` [B] per chip over an ``n``-domain group [s]:
    twice the reduce-scatter's bandwidth term, :func:`_latency_steps` per tier."""
    total, data = 0.0, nbytes
    for n_k, bw, lat in zip(tier_members(n, spans), bws, lats, strict=True):
        total = total + 2.0 * (n_k - 1.0) / n_k * data / bw + _latency_steps(n_k) * lat
        data = data / n_k
    return total


def effective_link(n: Any, spans: Sequence[Any], bws: Sequence[Any], lats: Sequence[Any]
                   ) -> tuple[Any, Any]:
    """Per-chip bandwidth [B/s] and latency [s] of one flat ring over the ``n`` domains that
    gives the same all-reduce time as :func:`all_reduce`: the two-tier model of
    :mod:`trnlab.perf.comm` then sees the tiered fabric.

    ``bw = ((n-1)/n) / sum_k ((n_k-1)/n_k / prod_{j<k} n_j / bw_k)`` (the bandwidth terms are
    linear in the bytes, so this holds for any message); ``alpha = sum_k steps_k alpha_k /
    (2 (n-1))``. A group inside one domain (``n = 1``) gets the first tier's values.
    """
    xp = xp_of(n, *spans, *bws, *lats)
    inv_bw, steps_lat, share = 0.0, 0.0, 1.0
    for n_k, bw, lat in zip(tier_members(n, spans), bws, lats, strict=True):
        inv_bw = inv_bw + (n_k - 1.0) / n_k * share / bw
        steps_lat = steps_lat + _latency_steps(n_k) * lat
        share = share / n_k
    many = n > 1.0
    safe_n = xp.where(many, n, 2.0)
    bw_eff = xp.where(many, (safe_n - 1.0) / safe_n / xp.where(many, inv_bw, 1.0), bws[0])
    lat_eff = xp.where(many, steps_lat / (2.0 * (safe_n - 1.0)), lats[0])
    return bw_eff, lat_eff


def switch_counts(n_chips: Any, ports_per_chip: Any, radix: Any, spans_chips: Sequence[Any],
                  oversub: Sequence[Any]) -> dict[str, Any]:
    """Switches and links of a folded Clos for ``n_chips`` [1].

    ``spans_chips``: chips under one switch group per tier [chips]; ``oversub[k]``: down:up ratio
    of the tier-``k`` switches' ports toward tier ``k+1`` (the data's oversubscription of tier
    ``k+1``). Tier 1 is always built; tier ``k > 1`` only when ``n_chips`` exceeds tier
    ``k-1``'s span. A switch below the top built tier has ``radix o/(o+1)`` ports down and
    ``radix/(o+1)`` up; the top built tier has all ``radix`` ports down. Ports entering tier 1
    are the NIC ports, ``n_chips x ports_per_chip``.

    Returns ``switches`` (total), ``per_tier`` (tuple), ``nic_links`` and ``switch_links`` [1].
    """
    xp = xp_of(n_chips, ports_per_chip, radix, *spans_chips, *oversub)
    ports = n_chips * ports_per_chip
    zero = 0.0 * ports  # an array of the grid's shape: xp.where takes no two scalars
    radix = radix + zero
    nic_links, switches, links, per_tier = ports, 0.0, 0.0, []
    k_top = len(spans_chips) - 1
    for k in range(len(spans_chips)):
        built = n_chips > 0.0 if k == 0 else n_chips > spans_chips[k - 1]
        is_top = (n_chips <= spans_chips[k]) if k < k_top else n_chips > -1.0
        o_up = (oversub[k + 1] if k < k_top else 1.0) + zero
        down = xp.where(is_top, radix, radix * o_up / (o_up + 1.0))
        count = xp.where(built, xp.ceil(ports / down), 0.0)
        up = xp.where(built & ~is_top, count * radix / (o_up + 1.0), 0.0)
        per_tier.append(count)
        switches = switches + count
        links = links + up
        ports = up
    return {"switches": switches, "per_tier": tuple(per_tier), "nic_links": nic_links,
            "switch_links": links}


def fabric_power(switches: Any, optics: Any, switch_power: Any, optic_power: Any) -> Any:
    """Scale-out network power [W]: switches x their power + transceivers x theirs."""
    return switches * switch_power + optics * optic_power
