"""Load and validate ``data/hardware/*.toml`` into typed records.

Every error names the file, the entry, the field and the value, and says what is allowed.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trnlab.catalog.fields import Field, parse_field
from trnlab.catalog.records import PRECISIONS, Chip, Fabric, Facility, Network, Price, System
from trnlab.errors import CatalogError, bad_value

FILES = {"chip": "chips.toml", "fabric": "fabrics.toml", "system": "systems.toml",
         "network": "networks.toml", "price": "prices.toml", "facility": "facility.toml"}
#: tables whose file may be absent (an empty table)
OPTIONAL_FILES = ("fabric",)
_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")
_PEAK = ("flop_rate", (1e11, 1e17))

#: numeric fields per table: name -> (dimension, required, sane SI range)
NUMERIC: dict[str, dict[str, tuple[str, bool, tuple[float, float]]]] = {
    "chip": {
        **{f"peak_{p}": (_PEAK[0], p == "bf16", _PEAK[1]) for p in PRECISIONS},
        "hbm_capacity": ("bytes", True, (4e9, 2e12)),
        "hbm_bandwidth": ("byte_rate", True, (1e11, 1e14)),
        "hbm_stacks": ("count", False, (1, 16)),
        "sram": ("bytes", False, (1e6, 1e10)),
        "cores": ("count", False, (1, 1000)),
        "ranks_per_chip": ("count", False, (1, 16)),
        "scaleup_bandwidth": ("byte_rate", True, (1e10, 1e14)),
        "scaleout_bandwidth": ("byte_rate", False, (1e9, 1e12)),
        "host_bandwidth": ("byte_rate", False, (1e9, 1e13)),
        "host_memory": ("bytes", False, (1e9, 1e13)),
        "host_memory_bandwidth": ("byte_rate", False, (1e9, 1e13)),
        "tdp": ("power", True, (30, 5000)),
    },
    "system": {
        "n_chips": ("count", True, (1, 1e7)),
        "scaleup_bandwidth": ("byte_rate", False, (1e10, 1e14)),
        "scaleup_latency": ("time", True, (1e-8, 1e-3)),
        "power": ("power", False, (100, 1e8)),
        **{f"peak_{p}": (_PEAK[0], False, (1e11, 1e22)) for p in PRECISIONS},
        "hbm_capacity": ("bytes", False, (4e9, 1e16)),
        "hbm_bandwidth": ("byte_rate", False, (1e11, 1e18)),
    },
    "fabric": {
        "bandwidth": ("byte_rate", True, (1e10, 1e14)),
        "latency": ("time", True, (1e-8, 1e-3)),
        "domain": ("count", True, (2, 1e5)),
        "cross_vendor_rdma": ("count", True, (0.0, 1.0)),
        "cross_vendor_loadstore": ("count", True, (0.0, 1.0)),
        "cross_vendor_reduction": ("count", True, (0.0, 1.0)),
        "cross_vendor_efficiency": ("count", True, (0.01, 1.0)),
    },
    "network": {
        "bandwidth": ("byte_rate", True, (1e8, 1e12)),
        "latency": ("time", True, (1e-7, 1e-3)),
    },
    "price": {"usd_per_hour": ("price_rate", True, (1e-5, 1.0))},
    "facility": {
        "system_overhead": ("count", True, (0.0, 3.0)),
        "pue": ("count", True, (1.0, 3.0)),
    },
}

#: plain (non-numeric) keys per table: name -> (type, required, allowed values or None)
PLAIN: dict[str, dict[str, tuple[type, bool, tuple[str, ...] | None]]] = {
    "chip": {"name": (str, True, None), "vendor": (str, True, ("aws", "nvidia", "google", "amd")),
             "year": (int, True, None), "process": (str, False, None), "note": (str, False, None)},
    "system": {"name": (str, True, None), "chip": (str, True, None),
               "scaleup_topology": (str, True, ("switched", "torus", "ring", "mesh")),
               "scaleout": (str, True, None), "chips_per_node": (int, False, None),
               "members": (dict, False, None), "fabric": (str, False, None),
               "note": (str, False, None)},
    "fabric": {"name": (str, True, None), "kind": (str, True, ("nvlink", "ualink")),
               "note": (str, False, None)},
    "network": {"name": (str, True, None),
                "kind": (str, True, ("infiniband", "roce", "efa", "dcn")),
                "note": (str, False, None)},
    "price": {"name": (str, False, None), "system": (str, True, None),
              "instance": (str, True, None), "instance_chips": (int, True, None),
              "kind": (str, True, ("on_demand", "capacity_block", "spot", "reserved")),
              "region": (str, False, None), "date": (str, True, None), "note": (str, False, None)},
    "facility": {"name": (str, False, None), "note": (str, False, None)},
}

#: system aggregates cross-checked against n_chips x the chip's value
AGGREGATES = (*(f"peak_{p}" for p in PRECISIONS), "hbm_capacity", "hbm_bandwidth")
AGGREGATE_TOLERANCE = 0.03


@dataclass(frozen=True)
class Entry:
    """A validated table entry before it becomes a typed record."""

    id: str
    where: str
    plain: dict[str, Any]
    fields: dict[str, Field]
    file: str


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML data file; a missing or malformed file is one CatalogError line."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as err:
        raise CatalogError(f"{path}: file not found") from err
    except tomllib.TOMLDecodeError as err:
        raise CatalogError(f"{path}: malformed TOML: {err}") from err


def _entries(path: Path, table: str, sources: set[str]) -> list[Entry]:
    if table in OPTIONAL_FILES and not path.exists():
        return []
    doc = read_toml(path)
    unknown = set(doc) - {table}
    if unknown:
        raise CatalogError(bad_value(str(path), "table", min(unknown),
                                     f"this file holds only [{table}.<id>] tables"))
    out = []
    for entry_id, raw in doc.get(table, {}).items():
        where = f"{path.name}: [{table}.{entry_id}]"
        if not _ID.match(entry_id):
            raise CatalogError(bad_value(where, "id", entry_id, "use lower-case [a-z0-9.-]"))
        if not isinstance(raw, dict):
            raise CatalogError(bad_value(where, "entry", raw, "must be a table"))
        plain: dict[str, Any] = {}
        fields: dict[str, Field] = {}
        for key, value in raw.items():
            if key in PLAIN[table]:
                kind, _, allowed = PLAIN[table][key]
                if not isinstance(value, kind) or isinstance(value, bool):
                    raise CatalogError(bad_value(where, key, value, f"must be {kind.__name__}"))
                if allowed and value not in allowed:
                    raise CatalogError(bad_value(where, key, value,
                                                 f"allowed: {', '.join(allowed)}"))
                plain[key] = value
            elif key in NUMERIC[table]:
                dim, _, (lo, hi) = NUMERIC[table][key]
                fld = parse_field(value, where, key, dim, sources)
                if not lo <= fld.si <= hi:
                    raise CatalogError(bad_value(where, key, fld.value,
                                                 f"impossible for {key}: expected "
                                                 f"{lo:g}..{hi:g} {fld.si_unit} after conversion"))
                fields[key] = fld
            else:
                allowed_keys = ", ".join([*PLAIN[table], *NUMERIC[table]])
                raise CatalogError(bad_value(where, key, value,
                                             f"unknown field; allowed: {allowed_keys}"))
        for key, (_, required, _) in PLAIN[table].items():
            if required and key not in plain:
                raise CatalogError(f"{where}: missing required field '{key}'")
        for key, (_, required, _) in NUMERIC[table].items():
            if required and key not in fields:
                raise CatalogError(f"{where}: missing required field '{key}' "
                                   "(a number with value, unit, status, source)")
        out.append(Entry(entry_id, where, plain, fields, path.name))
    return out


def _si(entry: Entry, key: str, default: float = math.nan) -> float:
    return entry.fields[key].si if key in entry.fields else default


def _chip(e: Entry) -> Chip:
    peaks = {p: e.fields[f"peak_{p}"].si for p in PRECISIONS if f"peak_{p}" in e.fields}
    for narrow in ("fp8", "mxfp8", "fp4", "mxfp4", "nvfp4"):
        if narrow in peaks and peaks[narrow] < peaks["bf16"] * 0.999:
            raise CatalogError(bad_value(e.where, f"peak_{narrow}", e.fields[f"peak_{narrow}"].value,
                                         "impossible: below peak_bf16 (narrower formats are "
                                         "never slower)"))
    if "fp32" in peaks and peaks["fp32"] > peaks["bf16"] * 1.001:
        raise CatalogError(bad_value(e.where, "peak_fp32", e.fields["peak_fp32"].value,
                                     "impossible: above peak_bf16"))
    year = e.plain["year"]
    if not 2010 <= year <= 2035:
        raise CatalogError(bad_value(e.where, "year", year, "expected 2010..2035"))
    tdp = e.fields["tdp"]
    return Chip(e.id, e.plain["name"], e.fields, e.file, e.plain["vendor"], year,
                e.plain.get("process", ""), peaks, _si(e, "hbm_capacity"),
                _si(e, "hbm_bandwidth"), _si(e, "scaleup_bandwidth"),
                _si(e, "scaleout_bandwidth"), _si(e, "sram"), tdp.si, (tdp.low, tdp.high),
                int(_si(e, "ranks_per_chip", 1.0)), _si(e, "host_bandwidth"),
                _si(e, "host_memory"), _si(e, "host_memory_bandwidth"))


def _members(e: Entry, chips: dict[str, Chip], n_chips: float) -> tuple[tuple[str, int], ...]:
    """The ``members = {chip = count, ...}`` of a mixed domain, checked: known chip ids, whole
    positive counts adding up to ``n_chips``, the system's ``chip`` among them."""
    raw = e.plain.get("members")
    if raw is None:
        return ()
    out = []
    for chip_id, count in raw.items():
        if chip_id not in chips:
            raise CatalogError(bad_value(e.where, "members", chip_id,
                                         f"unknown chip id; known: {', '.join(sorted(chips))}"))
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise CatalogError(bad_value(e.where, f"members.{chip_id}", count,
                                         "must be a whole number >= 1"))
        out.append((chip_id, count))
    if sum(c for _, c in out) != n_chips:
        raise CatalogError(bad_value(e.where, "members", raw,
                                     f"counts must add up to n_chips = {n_chips:g}"))
    if e.plain["chip"] not in raw:
        raise CatalogError(bad_value(e.where, "chip", e.plain["chip"],
                                     "must be one of the members (the first one by convention)"))
    return tuple(out)


def _system(e: Entry, chips: dict[str, Chip], networks: dict[str, Network],
            fabrics: dict[str, Fabric] | None = None) -> System:
    fabrics = fabrics or {}
    if "fabric" in e.plain and e.plain["fabric"] not in fabrics:
        raise CatalogError(bad_value(e.where, "fabric", e.plain["fabric"],
                                     f"unknown fabric id; known: {', '.join(sorted(fabrics))}"))
    chip = chips.get(e.plain["chip"])
    if chip is None:
        raise CatalogError(bad_value(e.where, "chip", e.plain["chip"],
                                     f"unknown chip id; known: {', '.join(sorted(chips))}"))
    if e.plain["scaleout"] not in networks:
        raise CatalogError(bad_value(e.where, "scaleout", e.plain["scaleout"],
                                     f"unknown network id; known: {', '.join(sorted(networks))}"))
    n_chips = e.fields["n_chips"].value
    if n_chips != int(n_chips):
        raise CatalogError(bad_value(e.where, "n_chips", n_chips, "must be a whole number"))
    per_node = e.plain.get("chips_per_node", int(n_chips))
    if per_node < 1 or n_chips % per_node:
        raise CatalogError(bad_value(e.where, "chips_per_node", per_node,
                                     f"must divide n_chips = {int(n_chips)}"))
    members = _members(e, chips, n_chips)
    counts = dict(members) if members else {chip.id: n_chips}
    for key in AGGREGATES:
        if key not in e.fields:
            continue
        chip_key = key.removeprefix("peak_")
        expected = 0.0
        for member, count in counts.items():
            rec = chips[member]
            per_chip = rec.peak_flops.get(chip_key) if key.startswith("peak_") \
                else getattr(rec, key)
            if per_chip is None:
                raise CatalogError(bad_value(e.where, key, e.fields[key].value,
                                             f"chip {rec.id} has no {key} to check it against"))
            expected += count * per_chip
        if abs(e.fields[key].si / expected - 1) > AGGREGATE_TOLERANCE:
            raise CatalogError(bad_value(
                e.where, key, e.fields[key].value,
                f"inconsistent: {int(n_chips)} x {chip.id} gives {expected:.4g} "
                f"{e.fields[key].si_unit}, this is {e.fields[key].si:.4g} (allowed "
                f"difference {AGGREGATE_TOLERANCE:.0%})"))
    return System(e.id, e.plain["name"], e.fields, e.file, chip.id, int(n_chips), per_node,
                  e.plain["scaleup_topology"], _si(e, "scaleup_bandwidth", chip.scaleup_bandwidth),
                  _si(e, "scaleup_latency"), e.plain["scaleout"], _si(e, "power"), members,
                  e.plain.get("fabric", ""))


def _price(e: Entry, systems: dict[str, System]) -> Price:
    if e.plain["system"] not in systems:
        raise CatalogError(bad_value(e.where, "system", e.plain["system"],
                                     f"unknown system id; known: {', '.join(sorted(systems))}"))
    if not re.match(r"^\d{4}-\d{2}-\d{2}$", e.plain["date"]):
        raise CatalogError(bad_value(e.where, "date", e.plain["date"], "must be YYYY-MM-DD"))
    chips = e.plain["instance_chips"]
    if chips < 1:
        raise CatalogError(bad_value(e.where, "instance_chips", chips, "must be >= 1"))
    per_hour = e.fields["usd_per_hour"].value
    return Price(e.id, e.plain.get("name", e.plain["instance"]), e.fields, e.file,
                 e.plain["system"], e.plain["instance"], chips, e.plain["kind"],
                 e.plain.get("region", ""), e.plain["date"], per_hour, per_hour / chips)


@dataclass(frozen=True)
class Catalog:
    """The validated hardware catalog."""

    root: Path
    sources: dict[str, str]
    chips: dict[str, Chip]
    systems: dict[str, System]
    networks: dict[str, Network]
    prices: dict[str, Price]
    facilities: dict[str, Facility]
    digest: str
    fabrics: dict[str, Fabric] = field(default_factory=dict)

    def _get(self, table: str, entry_id: str) -> Any:
        entries = getattr(self, {"facility": "facilities"}.get(table, f"{table}s"))
        if entry_id not in entries:
            raise CatalogError(bad_value(f"{self.root}/{FILES[table]}", f"{table} id", entry_id,
                                         f"unknown; known: {', '.join(sorted(entries))}"))
        return entries[entry_id]

    def chip(self, chip_id: str) -> Chip:
        return self._get("chip", chip_id)

    def system(self, system_id: str) -> System:
        return self._get("system", system_id)

    def network(self, network_id: str) -> Network:
        return self._get("network", network_id)

    def fabric(self, fabric_id: str) -> Fabric:
        return self._get("fabric", fabric_id)

    def price(self, price_id: str) -> Price:
        return self._get("price", price_id)

    def facility(self, facility_id: str = "default") -> Facility:
        return self._get("facility", facility_id)

    def latest_price(self, system: str, kind: str = "on_demand") -> Price | None:
        """The newest price of ``kind`` for an instance of ``system`` (None if none listed)."""
        prices = sorted((p for p in self.prices.values() if p.system == system and p.kind == kind),
                        key=lambda p: p.date)
        return prices[-1] if prices else None

    def entry(self, entry_id: str) -> Any:
        """Look ``entry_id`` up in every table (chips first)."""
        for table in FILES:
            entries = getattr(self, {"facility": "facilities"}.get(table, f"{table}s"))
            if entry_id in entries:
                return entries[entry_id]
        known = sorted({*self.chips, *self.systems, *self.networks, *self.prices})
        raise CatalogError(bad_value("catalog", "id", entry_id,
                                     f"unknown; known: {', '.join(known)}"))


def load(root: Path) -> Catalog:
    """Load and validate every file of the hardware catalog in ``root`` (``data/hardware``)."""
    root = Path(root)
    src_doc = read_toml(root / "sources.toml")
    raw_sources = src_doc.get("sources")
    if not isinstance(raw_sources, dict) or not raw_sources:
        raise CatalogError(f"{root / 'sources.toml'}: needs a non-empty [sources] table")
    for key, cite in raw_sources.items():
        if not isinstance(cite, str) or not cite.strip():
            raise CatalogError(bad_value(f"{root / 'sources.toml'}", key, cite,
                                         "must be a citation (URL or repo@commit path)"))
    keys = set(raw_sources)
    entries = {t: _entries(root / f, t, keys) for t, f in FILES.items()}
    chips = {e.id: _chip(e) for e in entries["chip"]}
    networks = {e.id: Network(e.id, e.plain["name"], e.fields, e.file, e.plain["kind"],
                              _si(e, "bandwidth"), _si(e, "latency"))
                for e in entries["network"]}
    fabrics = {e.id: Fabric(e.id, e.plain["name"], e.fields, e.file, e.plain["kind"],
                            _si(e, "bandwidth"), _si(e, "latency"), int(_si(e, "domain")),
                            *(_si(e, f"cross_vendor_{k}") for k in ("rdma", "loadstore",
                                                                    "reduction", "efficiency")))
               for e in entries["fabric"]}
    systems = {e.id: _system(e, chips, networks, fabrics) for e in entries["system"]}
    prices = {e.id: _price(e, systems) for e in entries["price"]}
    facilities = {e.id: Facility(e.id, e.plain.get("name", e.id), e.fields, e.file,
                                 _si(e, "system_overhead"), _si(e, "pue"))
                  for e in entries["facility"]}
    digest = hashlib.sha256()
    for name in ["sources.toml", *FILES.values()]:
        if (root / name).exists() or name not in (FILES[t] for t in OPTIONAL_FILES):
            digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return Catalog(root, dict(raw_sources), chips, systems, networks, prices, facilities,
                   digest.hexdigest()[:16], fabrics)
