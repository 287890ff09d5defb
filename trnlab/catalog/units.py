"""Units accepted in data/ and their conversion to SI (FLOP/s, B, B/s, W, s, USD, USD/s, USD/J)."""

from __future__ import annotations

#: unit -> (dimension, factor to SI)
UNITS: dict[str, tuple[str, float]] = {
    "FLOP/s": ("flop_rate", 1.0),
    "GFLOP/s": ("flop_rate", 1e9),
    "TFLOP/s": ("flop_rate", 1e12),
    "PFLOP/s": ("flop_rate", 1e15),
    "EFLOP/s": ("flop_rate", 1e18),
    "B": ("bytes", 1.0),
    "KB": ("bytes", 1e3),
    "MB": ("bytes", 1e6),
    "GB": ("bytes", 1e9),
    "TB": ("bytes", 1e12),
    "PB": ("bytes", 1e15),
    "KiB": ("bytes", 2.0**10),
    "MiB": ("bytes", 2.0**20),
    "GiB": ("bytes", 2.0**30),
    "TiB": ("bytes", 2.0**40),
    "B/s": ("byte_rate", 1.0),
    "GB/s": ("byte_rate", 1e9),
    "GiB/s": ("byte_rate", 2.0**30),
    "TB/s": ("byte_rate", 1e12),
    "Gbit/s": ("byte_rate", 1e9 / 8),
    "Tbit/s": ("byte_rate", 1e12 / 8),
    "W": ("power", 1.0),
    "kW": ("power", 1e3),
    "MW": ("power", 1e6),
    "s": ("time", 1.0),
    "ms": ("time", 1e-3),
    "us": ("time", 1e-6),
    "ns": ("time", 1e-9),
    "USD": ("money", 1.0),
    "USD/h": ("price_rate", 1.0 / 3600.0),
    "USD/kWh": ("energy_price", 1.0 / 3.6e6),
    "USD/W": ("power_price", 1.0),
    "1": ("count", 1.0),
}

#: dimension -> the SI unit string written into Dataset ``units`` attrs
SI_UNIT: dict[str, str] = {
    "flop_rate": "FLOP/s",
    "bytes": "B",
    "byte_rate": "B/s",
    "power": "W",
    "time": "s",
    "money": "USD",
    "price_rate": "USD/s",
    "energy_price": "USD/J",
    "power_price": "USD/W",
    "count": "1",
}


def to_si(value: float, unit: str) -> float:
    """Convert ``value`` [unit] to SI; ``unit`` must be a key of :data:`UNITS`."""
    return float(value) * UNITS[unit][1]


def dimension(unit: str) -> str:
    """The physical dimension of ``unit`` (``flop_rate``, ``bytes``, ...)."""
    return UNITS[unit][0]
