"""The scale data: ``data/scale/scaleout.toml`` (scale-out fabrics as tiers of switches) and
``data/scale/reliability.toml`` (failure rates, checkpoints, restarts, spares, the batch cap),
validated, each value a :class:`~trnlab.catalog.fields.Field` with unit, status and source.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from trnlab import catalog
from trnlab._paths import data_dir
from trnlab.catalog.fields import Field, parse_table
from trnlab.catalog.loader import read_toml
from trnlab.errors import CatalogError, bad_value

SCALEOUT_FIELDS = ("port_speed", "switch_radix", "switch_power", "switch_cost", "optic_power",
                 "optic_cost", "optics_per_nic_link", "optics_per_switch_link")
TIER_FIELDS = ("span", "oversubscription", "latency")
RELIABILITY = {
    "failure": ("accelerator", "host", "network", "software", "unmeasured_factor",
                "planned_per_day"),
    "checkpoint": ("storage_bandwidth_per_chip", "blocking_floor", "bytes_per_param"),
    "restart": ("restart_time", "fast_restart_time", "requeue_time", "spare_fraction"),
    "batch": ("critical_batch_tokens",),
}


@dataclass(frozen=True)
class Tier:
    """One switch tier above the scale-up domain (fields: span [chips], oversubscription [1],
    latency [s])."""

    name: str
    fields: dict[str, Field]


@dataclass(frozen=True)
class ScaleOut:
    """A scale-out fabric: its NIC network id, switch/optics fields and tiers, bottom first."""

    id: str
    name: str
    systems: tuple[str, ...]
    network: str
    fields: dict[str, Field]
    tiers: tuple[Tier, ...]


@dataclass(frozen=True)
class ScaleData:
    """Everything of ``data/scale``."""

    fabrics: dict[str, ScaleOut]
    reliability: dict[str, dict[str, Field]]  # table -> field name -> Field
    measured_chips: tuple[str, ...] = ()  # chips whose failure rates were measured

    def fabric_of(self, system_id: str) -> ScaleOut:
        """The fabric serving ``system_id``; a system no fabric lists is a CatalogError."""
        for fab in self.fabrics.values():
            if system_id in fab.systems:
                return fab
        served = sorted(s for f in self.fabrics.values() for s in f.systems)
        raise CatalogError(bad_value("data/scale/scaleout.toml", "system", system_id,
                                     f"no fabric serves it; served: {', '.join(served)}"))

    def field(self, table: str, name: str) -> Field:
        return self.reliability[table][name]


def _require(where: str, have: dict[str, Field], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key not in have:
            raise CatalogError(f"{where}: missing required field '{key}'")


def _fabric(fid: str, raw: dict, sources: set[str], path: Path) -> ScaleOut:
    where = f"{path.name}: [fabric.{fid}]"
    cat = catalog.default()
    plain = {k: raw.get(k) for k in ("name", "systems", "network")}
    if not isinstance(plain["name"], str):
        raise CatalogError(bad_value(where, "name", plain["name"], "must be a string"))
    systems = plain["systems"]
    if not isinstance(systems, list) or not systems:
        raise CatalogError(bad_value(where, "systems", systems, "a non-empty list of system ids"))
    for s in systems:
        if s not in cat.systems:
            raise CatalogError(bad_value(where, "systems", s, "unknown system id "
                                         "(data/hardware/systems.toml)"))
    if plain["network"] not in cat.networks:
        raise CatalogError(bad_value(where, "network", plain["network"],
                                     "unknown network id (data/hardware/networks.toml)"))
    numeric = {k: v for k, v in raw.items() if k in SCALEOUT_FIELDS}
    extra = set(raw) - set(SCALEOUT_FIELDS) - {"name", "systems", "network", "tier"}
    if extra:
        raise CatalogError(bad_value(where, "field", min(extra),
                                     f"allowed: name, systems, network, tier, "
                                     f"{', '.join(SCALEOUT_FIELDS)}"))
    fields = parse_table(numeric, where, sources)
    _require(where, fields, SCALEOUT_FIELDS)
    tiers = []
    for i, t in enumerate(raw.get("tier", [])):
        twhere = f"{where} tier {i + 1}"
        tf = parse_table({k: v for k, v in t.items() if k != "name"}, twhere, sources)
        _require(twhere, tf, TIER_FIELDS)
        if tf["oversubscription"].low < 1.0:
            raise CatalogError(bad_value(twhere, "oversubscription", tf["oversubscription"].value,
                                         "must be >= 1 (down:up)"))
        if tiers and tf["span"].si <= tiers[-1].fields["span"].si:
            raise CatalogError(bad_value(twhere, "span", tf["span"].value,
                                         "spans must increase from tier to tier"))
        tiers.append(Tier(str(t.get("name", f"tier{i + 1}")), tf))
    if not tiers:
        raise CatalogError(bad_value(where, "tier", [], "at least one [[tier]]"))
    return ScaleOut(fid, plain["name"], tuple(systems), plain["network"], fields, tuple(tiers))


def load_scale(root: Path | None = None) -> ScaleData:
    """Read and validate ``data/scale`` (cached)."""
    return _load(str(root or data_dir() / "scale"))


@lru_cache(maxsize=4)
def _load(root_str: str) -> ScaleData:
    root = Path(root_str)
    sources = set(catalog.default().sources)
    fpath, rpath = root / "scaleout.toml", root / "reliability.toml"
    fabrics = {fid: _fabric(fid, raw, sources, fpath)
               for fid, raw in read_toml(fpath).get("fabric", {}).items()}
    seen: dict[str, str] = {}
    for fab in fabrics.values():
        for s in fab.systems:
            if s in seen:
                raise CatalogError(bad_value(fpath.name, "systems", s,
                                             f"served by both {seen[s]} and {fab.id}"))
            seen[s] = fab.id
    doc = read_toml(rpath)
    rel = {}
    for table, keys in RELIABILITY.items():
        where = f"{rpath.name}: [{table}]"
        rel[table] = parse_table(doc.get(table, {}), where, sources)
        _require(where, rel[table], keys)
    measured = doc.get("measured", {}).get("chips", [])
    for chip_id in measured:
        if chip_id not in catalog.default().chips:
            raise CatalogError(bad_value(f"{rpath.name}: [measured]", "chips", chip_id,
                                         "unknown chip id (data/hardware/chips.toml)"))
    return ScaleData(fabrics, rel, tuple(measured))
