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
