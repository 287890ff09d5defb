"""Power at chip, system and facility level.

All functions broadcast over array arguments and use the array namespace of their inputs.
"""

from __future__ import annotations

from typing import Any

from trnlab.perf._xp import xp_of


def it_power(n_chips: Any, chip_power: Any, system_overhead: Any) -> Any:
    """IT power of ``n_chips`` chips with their share of hosts, NICs, switches and fans [W].

    ``P_IT = n_chips * chip_power * (1 + system_overhead)``

    Parameters
    ----------
    n_chips : array_like
        Number of chips [1].
    chip_power : array_like
        Power per chip [W] (TDP, or the activity-scaled power of a workload).
    system_overhead : array_like
        Power of everything else in the systems, as a fraction of chip power [1]
        (DGX H100: 10.2 kW for 8 x 700 W GPUs gives 0.82).
    """
    xp = xp_of(n_chips, chip_power, system_overhead)
    return xp.asarray(n_chips) * xp.asarray(chip_power) * (1 + xp.asarray(system_overhead))


def facility_power(it: Any, pue: Any) -> Any:
    """Facility power drawn for IT power ``it`` [W]: ``P = PUE * P_IT`` (The Green Grid PUE)."""
    xp = xp_of(it, pue)
    return xp.asarray(it) * xp.asarray(pue)


def implied_power_ratio(compute_ratio: Any, efficiency_ratio: Any) -> Any:
    """Power ratio implied by a compute ratio and a perf/W ratio [1].

    perf/W = compute / power, so ``power_new / power_old = compute_ratio / efficiency_ratio``.
    """
    xp = xp_of(compute_ratio, efficiency_ratio)
    return xp.asarray(compute_ratio) / xp.asarray(efficiency_ratio)


def units_needed(n_chips: Any, chips_per_unit: Any) -> Any:
    """Whole units (servers, UltraServers) needed to hold ``n_chips`` chips [1]: ceil(n / k)."""
    xp = xp_of(n_chips, chips_per_unit)
    return xp.ceil(xp.asarray(n_chips) / xp.asarray(chips_per_unit))


def chip_power(tdp: Any, idle_fraction: Any, compute_activity: Any, memory_activity: Any,
               memory_weight: Any) -> Any:
    """Average chip power under a workload [W].

    ``P = TDP * (idle + (1 - idle) * min(1, a_c + w_m * a_m))``: a static floor plus dynamic
    power that scales with the share of time the tensor units are busy (``a_c``) and the share
    bound by HBM traffic (``a_m``, weighted by ``w_m`` < 1: streaming memory costs less than
    full tensor activity). Reaches TDP when the tensor units never idle.

    Parameters
    ----------
    tdp : array_like
        Thermal design power of the chip [W].
    idle_fraction : array_like
        Power at no load / TDP [1].
    compute_activity, memory_activity : array_like
        Time shares of tensor-bound and HBM-bound work [1].
    memory_weight : array_like
        Dynamic power of HBM-bound work relative to tensor-bound work [1].
    """
    xp = xp_of(tdp, compute_activity, memory_activity)
    activity = xp.minimum(compute_activity + memory_weight * memory_activity, 1.0)
    return tdp * (idle_fraction + (1.0 - idle_fraction) * activity)


def energy(power_w: Any, seconds: Any) -> Any:
    """Energy [J] of ``power_w`` [W] drawn for ``seconds`` [s]."""
    return power_w * seconds


def capped_clock_fraction(tdp: Any, power_cap: Any, idle_fraction: Any, activity: Any,
                          exponent: Any) -> Any:
    """Fraction of the nominal clock a chip can hold under a power cap [1].

    Dynamic power scales as ``f^exponent`` (``f V^2`` with ``V ~ f``), so the cap is met when
    ``idle + (1 - idle) a (f/f0)^e = cap / TDP``; the clock never exceeds nominal:
    ``f/f0 = min(1, ((cap/TDP - idle) / ((1 - idle) a))^(1/e))``. Compute peaks scale by it;
    memory bandwidth does not.

    Parameters
    ----------
    tdp, power_cap : array_like
        Nominal chip power and the cap [W].
    idle_fraction : array_like
        Static power / TDP [1].
    activity : array_like
        Dynamic activity at the nominal clock, 1 for tensor-bound work [1].
    exponent : array_like
        Power-versus-clock exponent [1].
    """
    xp = xp_of(tdp, power_cap, activity)
    headroom = xp.maximum(power_cap / tdp - idle_fraction, 1e-6)
    return xp.minimum((headroom / ((1.0 - idle_fraction) * activity)) ** (1.0 / exponent), 1.0)
