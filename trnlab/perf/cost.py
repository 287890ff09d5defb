"""Cost per chip-second and per token: cloud prices or total cost of ownership (TCO).

All functions broadcast over array arguments. Money in USD, time in s, energy in J.

TCO per chip-second (straight-line amortisation, e.g. Barroso et al., *The Datacenter as a
Computer*, ch. 6):

``c = capex_chip (1 + f_net) / life + P_facility (k_fac / life_fac + price_energy)``

where ``P_facility`` is the chip's share of facility power (chip power x (1 + system overhead)
x PUE) and ``k_fac`` the facility capex per watt.
"""

from __future__ import annotations

from typing import Any

YEAR = 365.25 * 24 * 3600.0  # [s]


def tco_per_chip_second(capex_per_chip: Any, network_fraction: Any, life_years: Any,
                        facility_power_w: Any, facility_capex_per_w: Any,
                        facility_life_years: Any, energy_price_per_j: Any) -> Any:
    """Total cost of owning one chip for one second [USD/s].

    Parameters
    ----------
    capex_per_chip : array_like
        Purchase price of the system / its chips [USD].
    network_fraction : array_like
        Scale-out network capex as a fraction of system capex [1].
    life_years, facility_life_years : array_like
        Amortisation lives [years].
    facility_power_w : array_like
        Facility power attributed to the chip [W].
    facility_capex_per_w : array_like
        Building, power and cooling capex per watt of IT load [USD/W].
    energy_price_per_j : array_like
        Electricity price [USD/J].
    """
    hardware = capex_per_chip * (1.0 + network_fraction) / (life_years * YEAR)
    facility = facility_power_w * facility_capex_per_w / (facility_life_years * YEAR)
    return hardware + facility + facility_power_w * energy_price_per_j


def cost_per_token(price_per_chip_second: Any, tokens_per_s_per_chip: Any) -> Any:
    """Cost of one token [USD] at a chip price [USD/s] and a throughput [1/s per chip]."""
    return price_per_chip_second / tokens_per_s_per_chip


def break_even_price(target_cost_per_token: Any, tokens_per_s_per_chip: Any) -> Any:
    """Chip price [USD/s] at which a chip of this throughput meets a target cost per token."""
    return target_cost_per_token * tokens_per_s_per_chip


def cost_per_pflop_hour(price_per_chip_second: Any, delivered_flops_per_chip: Any) -> Any:
    """USD per PFLOP/s-hour *delivered* (1 PFLOP/s sustained for an hour, at the achieved,
    not the peak, FLOP/s) [USD]."""
    return price_per_chip_second * 3600.0 / (delivered_flops_per_chip / 1e15)
