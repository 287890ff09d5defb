"""The Trainium3 claims ledger: every published claim recomputed from the catalog.

Claims live in ``data/claims/trainium3.toml`` (text, published value, source, and the name of
the check below). Each check recomputes the claim from ``data/hardware`` and returns a verdict:

- ``holds``: the catalog reproduces the published number (within 5%) on the stated basis;
- ``partly``: it holds only on a narrower basis (a precision, per server not per chip, a unit);
- ``inconsistent``: no basis reproduces it, or it contradicts other claims;
- ``not-checkable``: it needs a model or a fact trnlab does not have yet (the reason says which).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from trnlab import catalog as _catalog
from trnlab._paths import data_dir
from trnlab.catalog.fields import Field, parse_field
from trnlab.catalog.units import dimension
from trnlab.errors import CatalogError, bad_value
from trnlab.perf import power

VERDICTS = ("holds", "partly", "inconsistent", "not-checkable")
AGREEMENT = 0.05  # relative difference within which a published number "holds"
TRN2, TRN3 = "trn2", "trn3"
TRN2_SERVER, TRN3_SERVER, TRN3_SERVER_64 = "trn2-ultraserver", "trn3-ultraserver", \
    "trn3-ultraserver-64"


@dataclass(frozen=True)
class Claim:
    """A published claim as written in ``data/claims``."""

    id: str
    text: str
    check: str
    published: Field


@dataclass(frozen=True)
class Verdict:
    """One row of the ledger. ``value``, ``low``, ``high`` are in ``unit`` (NaN: none)."""

    id: str
    claim: str
    published: str
    computed: str
    verdict: str
    reason: str
    value: float = math.nan
    low: float = math.nan
    high: float = math.nan
    unit: str = "1"

    def to_dict(self) -> dict[str, Any]:
        """The JSON row of ``trnlab claims --json``."""
        out: dict[str, Any] = {"id": self.id, "claim": self.claim, "published": self.published,
                               "computed": self.computed, "verdict": self.verdict,
                               "reason": self.reason}
        if math.isfinite(self.low) and math.isfinite(self.high):
            out["range"] = [_sig(self.low), _sig(self.high)]
            out["range_unit"] = self.unit
        return out


@dataclass(frozen=True)
class Finding:
    """What a check computed. ``value``, ``low``, ``high`` are in ``unit`` (NaN: none)."""

    computed: str
    verdict: str
    reason: str
    value: float = math.nan
    low: float = math.nan
    high: float = math.nan
    unit: str = "1"


@dataclass(frozen=True)
class Assumptions:
    """Inputs that are not facts: cluster size, and power ranges (default: the catalog's)."""

    cluster_chips: int = 1_000_000
    chip_power_w: tuple[float, float, float] | None = None  # low, central, high [W]
    system_overhead: tuple[float, float, float] | None = None  # [1]
    pue: tuple[float, float, float] | None = None  # [1]


def _sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


def _agrees(published: float, computed: float) -> bool:
    return abs(computed / published - 1) <= AGREEMENT


def load_claims(path: Path | None = None) -> list[Claim]:
    """Read and validate ``data/claims/trainium3.toml``."""
    path = path or data_dir() / "claims" / "trainium3.toml"
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise CatalogError(f"{path}: malformed TOML: {err}") from err
    sources = set(_catalog.default().sources)
    claims = []
    for cid, raw in doc.get("claim", {}).items():
        where = f"{path.name}: [claim.{cid}]"
        for key in ("text", "check", "published"):
            if key not in raw:
                raise CatalogError(f"{where}: missing required field '{key}'")
        if raw["check"] not in CHECKS:
            raise CatalogError(bad_value(where, "check", raw["check"],
                                         f"allowed: {', '.join(CHECKS)}"))
        unit = raw["published"].get("unit", "") if isinstance(raw["published"], dict) else ""
        dim = dimension(unit) if unit in _catalog.units.UNITS else "count"
        claims.append(Claim(cid, raw["text"], raw["check"],
                            parse_field(raw["published"], where, "published", dim, sources)))
    return claims


# ---------------------------------------------------------------- checks, one per claim kind
@dataclass(frozen=True)
class _Ctx:
    cat: _catalog.Catalog
    assume: Assumptions

    def range3(self, given: tuple[float, float, float] | None, fld: Field) -> np.ndarray:
        """[low, central, high] from an assumption or a catalog field (SI)."""
        return np.array(given if given is not None else (fld.low, fld.si, fld.high), dtype=float)


def _paired(a: Field, b: Field) -> list[float]:
    """a/b for the values used and for each pair of alternatives (same source convention)."""
    ratios = [a.si / b.si]
    ratios += [x.si / y.si for x, y in zip(a.alt, b.alt, strict=False)]
    return ratios


def _chip_peak(c: _Ctx, pub: Field) -> Finding:
    t3 = c.cat.chip(TRN3)
    match = [p for p, v in t3.peak_flops.items() if _agrees(pub.si, v)]
    bf16 = t3.peak_flops["bf16"]
    computed = (f"{t3.peak('mxfp8') / 1e15:.3f} PFLOP/s dense at {'/'.join(match) or 'none'}; "
                f"BF16 {bf16 / 1e15:.3f} PFLOP/s")
    if not match:
        return Finding(computed, "inconsistent", "no precision of the catalog reaches it")
    return Finding(computed, "partly",
            f"only in {', '.join(m.upper() for m in match)} (dense): MXFP4 runs at the MXFP8 rate, "
            f"so there is no 2x for 4-bit; BF16/FP16 dense is {bf16 / 1e15:.3f} PFLOP/s, "
            f"{t3.peak('mxfp8') / bf16:.2f}x less", t3.peak("mxfp8") / 1e15,
            bf16 / 1e15, t3.peak("mxfp8") / 1e15, "PFLOP/s")


def _hbm_capacity(c: _Ctx, pub: Field) -> Finding:
    f = c.cat.chip(TRN3).fields["hbm_capacity"]
    alts = "; ".join(f"{a.value:g} {a.unit} ({a.source})" for a in f.alt)
    computed = f"{f.value:g} {f.unit} = {f.si / 1e9:.1f} GB ({'; '.join(f.sources)}); alt: {alts}"
    if _agrees(pub.si, f.si) and all(_agrees(pub.si, a.si) for a in f.alt):
        return Finding(computed, "holds", "all sources agree", f.si / 1e9, unit="GB")
    verdict = "partly" if any(_agrees(pub.si, a.si) for a in f.alt) or _agrees(pub.si, f.si) \
        else "inconsistent"
    spread = max(f.si, *(a.si for a in f.alt)) / min(f.si, *(a.si for a in f.alt)) - 1
    return Finding(computed, verdict,
            f"the number 144 is consistent everywhere but the unit is not: Neuron docs say GiB "
            f"({f.si / 1e9:.1f} GB), AWS marketing says GB ({pub.si / 2**30:.1f} GiB), a "
            f"{spread:.1%} ambiguity; trnlab uses {f.unit} (the UltraServer table, "
            f"20,736 GiB = 144 x 144 GiB, agrees)", f.si / 1e9,
            min(f.si, *(a.si for a in f.alt)) / 1e9, max(f.si, *(a.si for a in f.alt)) / 1e9, "GB")


def _hbm_bandwidth(c: _Ctx, pub: Field) -> Finding:
    f = c.cat.chip(TRN3).fields["hbm_bandwidth"]
    values = [f.si, *(a.si for a in f.alt)]
    alts = "; ".join(f"{a.value:g} {a.unit} ({a.source})" for a in f.alt)
    computed = f"{f.si / 1e12:g} TB/s ({'; '.join(f.sources)}); alt: {alts}"
    verdict = "holds" if _agrees(pub.si, f.si) else "inconsistent"
    return Finding(computed, verdict,
            f"the architecture page gives {f.si / 1e12:g} TB/s; AWS's own NKI programming guide "
            f"gives {min(values) / 1e12:g} TB/s ({min(values) / f.si - 1:+.0%})",
            f.si / 1e12, min(values) / 1e12, max(values) / 1e12, "TB/s")


def _ratio_claim(key: str, label: str) -> Callable[[_Ctx, Field], Finding]:
    def check(c: _Ctx, pub: Field) -> Finding:
        a, b = c.cat.chip(TRN3).fields[key], c.cat.chip(TRN2).fields[key]
        ratios = _paired(a, b)
        computed = (f"{a.value:g} {a.unit} / {b.value:g} {b.unit} = {ratios[0]:.2f}x"
                    + "".join(f"; other sources {r:.2f}x" for r in ratios[1:]))
        verdict = "holds" if _agrees(pub.si, ratios[0]) else "inconsistent"
        reason = (f"{label}: {ratios[0]:.2f}x with the values trnlab uses"
                  + (f", {min(ratios):.2f}-{max(ratios):.2f}x across the sources' own pairs"
                     if len(ratios) > 1 else ""))
        return Finding(computed, verdict, reason, ratios[0], min(ratios), max(ratios))
    return check


def _system_ratio(c: _Ctx, metric: Callable[[Any, Any], float]) -> tuple[float, float, float]:
    """(per server, per chip, like-for-like 64-chip) Trn3 / Trn2 ratios of ``metric(chip)``."""
    s3, s2, s3_64 = (c.cat.system(s) for s in (TRN3_SERVER, TRN2_SERVER, TRN3_SERVER_64))
    per_chip = metric(c.cat.chip(s3.chip)) / metric(c.cat.chip(s2.chip))
    return per_chip * s3.n_chips / s2.n_chips, per_chip, per_chip * s3_64.n_chips / s2.n_chips


def _server_compute(c: _Ctx, pub: Field) -> Finding:
    fp8 = _system_ratio(c, lambda ch: ch.peak("fp8"))
    bf16 = _system_ratio(c, lambda ch: ch.peak("bf16"))
    n3, n2 = c.cat.system(TRN3_SERVER).n_chips, c.cat.system(TRN2_SERVER).n_chips
    computed = (f"per server {fp8[0]:.2f}x (FP8-class: Trn3 MXFP8 vs Trn2 cFP8), "
                f"{bf16[0]:.2f}x at BF16; per chip {fp8[1]:.2f}x / {bf16[1]:.2f}x")
    verdict = "partly" if _agrees(pub.si, fp8[0]) else "inconsistent"
    return Finding(computed, verdict,
            f"holds per server at FP8-class precision ({fp8[0]:.2f}x rounds to 4.4x), but "
            f"{n3 / n2:.2f}x of it is more chips ({n3} vs {n2}); per chip it is {fp8[1]:.2f}x, "
            f"the 64-chip Trn3 UltraServer gives {fp8[2]:.2f}x, and at BF16 the chip is flat "
            f"({bf16[1]:.2f}x)", fp8[0], bf16[0], fp8[0])


def _server_bandwidth(c: _Ctx, pub: Field) -> Finding:
    bw = _system_ratio(c, lambda ch: ch.hbm_bandwidth)
    verdict = "holds" if _agrees(pub.si, bw[0]) else "partly"
    return Finding(f"per server {bw[0]:.2f}x; per chip {bw[1]:.2f}x; 64-chip Trn3 UltraServer {bw[2]:.2f}x",
            verdict, f"'nearly 4x' is {bw[0]:.2f}x per UltraServer; per chip it is {bw[1]:.2f}x, "
            "the rest is 144 vs 64 chips", bw[0], bw[1], bw[0])


def _chips_per_server(c: _Ctx, pub: Field) -> Finding:
    n = c.cat.system(TRN3_SERVER).n_chips
    n64 = c.cat.system(TRN3_SERVER_64).n_chips
    verdict = "holds" if n == pub.value else "inconsistent"
    return Finding(f"{n} chips ({TRN3_SERVER}); {n64} in {TRN3_SERVER_64}", verdict,
            f"two UltraServer generations ship: only the Gen2 ({n} chips) reaches it; Gen1 has "
            f"{n64}", float(n))


def _cluster(c: _Ctx, n_chips: float) -> dict[str, np.ndarray]:
    """Facility power [W] of ``n_chips`` Trn3 chips as [low, central, high]."""
    fac = c.cat.facility()
    chip_w = c.range3(c.assume.chip_power_w, c.cat.chip(TRN3).fields["tdp"])
    overhead = c.range3(c.assume.system_overhead, fac.fields["system_overhead"])
    pue = c.range3(c.assume.pue, fac.fields["pue"])
    it = power.it_power(n_chips, chip_w, overhead)
    return {"chip_w": chip_w, "overhead": overhead, "pue": pue,
            "facility": power.facility_power(it, pue)}


def _cluster_size(c: _Ctx, pub: Field) -> Finding:
    n = float(c.assume.cluster_chips or pub.si)
    servers = float(power.units_needed(n, c.cat.system(TRN3_SERVER).n_chips))
    p = _cluster(c, n)
    gw = p["facility"] / 1e9
    return Finding(f"{servers:,.0f} UltraServers of 144; facility power {gw[0]:.2f}-{gw[2]:.2f} GW "
            f"(central {gw[1]:.2f} GW)", "partly",
            f"the arithmetic holds ({servers:,.0f} UltraServers is 'thousands'), but no Trn3 "
            f"cluster of this size is reported; at {p['chip_w'][0]:.0f}-{p['chip_w'][2]:.0f} W "
            f"per chip (projected), system overhead {p['overhead'][0]:.2f}-{p['overhead'][2]:.2f}"
            f" and PUE {p['pue'][0]:.2f}-{p['pue'][2]:.2f} it needs {gw[0]:.1f}-{gw[2]:.1f} GW, "
            "the scale of the largest AI campuses announced to date", gw[1], gw[0], gw[2], "GW")


def _perf_per_watt(c: _Ctx) -> np.ndarray:
    """Trn3 / Trn2 peak FP8-class FLOP/s per chip watt as [low, central, high]."""
    t3, t2 = c.cat.chip(TRN3), c.cat.chip(TRN2)
    p3 = c.range3(c.assume.chip_power_w, t3.fields["tdp"])
    p2 = c.range3(None, t2.fields["tdp"])
    ratio = t3.peak("fp8") / t2.peak("fp8")
    return np.array([ratio * p2[0] / p3[2], ratio * p2[1] / p3[1], ratio * p2[2] / p3[0]])


def _energy_efficiency(c: _Ctx, pub: Field) -> Finding:
    eff = _perf_per_watt(c)
    t2w = c.cat.chip(TRN2).tdp
    need = c.cat.chip(TRN3).peak("fp8") / c.cat.chip(TRN2).peak("fp8") * t2w / pub.si
    return Finding(f"peak FP8 FLOP/s per chip watt {eff[0]:.2f}-{eff[2]:.2f}x (central {eff[1]:.2f}x) "
            "at projected TDPs", "not-checkable",
            "no Trainium power is published and the workload power model does not exist yet "
            f"(power/energy issue); at the catalog's projected TDPs peak perf/W is only "
            f"{eff[0]:.1f}-{eff[2]:.1f}x Trn2, and 4x would need a Trn3 chip at {need:.0f} W "
            f"if Trn2 draws {t2w:.0f} W", eff[1], eff[0], eff[2])


def _less_power(c: _Ctx, pub: Field) -> Finding:
    comp_server, comp_chip, _ = _system_ratio(c, lambda ch: ch.peak("fp8"))
    eff_claim = next(cl for cl in load_claims() if cl.check == "energy_efficiency").published.si
    implied = power.implied_power_ratio(np.array([comp_chip, comp_server]), eff_claim)
    needed_compute = pub.si * eff_claim
    t3, t2 = c.cat.chip(TRN3), c.cat.chip(TRN2)
    chip_ratio = (t3.tdp_range[0] / t2.tdp_range[1], t3.tdp / t2.tdp,
                  t3.tdp_range[1] / t2.tdp_range[0])
    return Finding(f"4.4x compute at 4x perf/W means {implied[1]:.2f}x the power per server "
            f"({implied[1] - 1:+.0%}); per chip {implied[0]:.2f}x", "inconsistent",
            f"with 4x efficiency, 40% less power means only {needed_compute:.1f}x compute, but "
            f"the catalog gives {comp_server:.2f}x per server and {comp_chip:.2f}x per chip, so "
            "the three claims cannot hold on one basis; at projected TDPs a Trn3 chip draws "
            f"{chip_ratio[0]:.1f}-{chip_ratio[2]:.1f}x a Trn2 chip, not 0.6x",
            float(implied[1]), float(implied[0]), float(implied[1]))


def _cost(c: _Ctx, pub: Field) -> Finding:
    latest: dict[tuple[str, str], Any] = {}
    for p in sorted(c.cat.prices.values(), key=lambda p: p.date):  # newest read wins
        if p.kind in ("on_demand", "capacity_block"):
            latest[(p.instance, p.kind)] = p
    per_chip = {f"{inst}{'' if kind == 'on_demand' else ' (capacity block)'}":
                p.usd_per_chip_hour for (inst, kind), p in latest.items()}
    context = ", ".join(f"{k} ${v:.2f}" for k, v in sorted(per_chip.items(), key=lambda kv: kv[1]))
    return Finding(f"list USD per chip-hour: {context}; Trn3: no public price", "not-checkable",
            "needs the training and serving performance models (MFU and tokens/s per chip) and a "
            "Trn3 price; AWS sells Trn3 only as UltraServer capacity with no published rate")


CHECKS: dict[str, Callable[[_Ctx, Field], Finding]] = {
    "chip_peak": _chip_peak,
    "hbm_capacity": _hbm_capacity,
    "hbm_bandwidth": _hbm_bandwidth,
    "memory_vs_trn2": _ratio_claim("hbm_capacity", "per chip, same unit on both sides"),
    "bandwidth_vs_trn2": _ratio_claim("hbm_bandwidth", "per chip"),
    "server_compute": _server_compute,
    "server_bandwidth": _server_bandwidth,
    "chips_per_server": _chips_per_server,
    "cluster_size": _cluster_size,
    "energy_efficiency": _energy_efficiency,
    "less_power": _less_power,
    "cost": _cost,
}


def ledger(assume: Assumptions | None = None,
           cat: _catalog.Catalog | None = None) -> list[Verdict]:
    """Recompute every claim of ``data/claims/trainium3.toml``; one :class:`Verdict` each."""
    ctx = _Ctx(cat or _catalog.default(), assume or Assumptions())
    rows = []
    for claim in load_claims():
        found = CHECKS[claim.check](ctx, claim.published)
        if found.verdict not in VERDICTS:
            raise AssertionError(f"check {claim.check} gave verdict {found.verdict!r}")
        pub = claim.published
        number = f"{int(pub.value):,}" if pub.value.is_integer() else f"{pub.value:g}"
        published = number + ("" if pub.unit == "1" else f" {pub.unit}")
        rows.append(Verdict(claim.id, claim.text, published, found.computed, found.verdict,
                            found.reason, float(found.value), float(found.low),
                            float(found.high), found.unit))
    return rows


_STR = {"units": "1"}


def ledger_dataset(rows: list[Verdict]) -> xr.Dataset:
    """The ledger as a Dataset with a ``claim`` dim (strings and the computed numbers)."""
    ds = xr.Dataset(coords={"claim": [r.id for r in rows]})
    for key, long_name in (("claim_text", "claim as published"),
                           ("published", "published value"), ("computed", "computed from catalog"),
                           ("verdict", "holds | partly | inconsistent | not-checkable"),
                           ("reason", "why")):
        attr = "claim" if key == "claim_text" else key
        ds[key] = ("claim", np.array([getattr(r, attr) for r in rows]),
                   {**_STR, "long_name": long_name})
    for key in ("value", "low", "high"):
        ds[key] = ("claim", np.array([getattr(r, key) for r in rows]),
                   {"units": "see value_unit", "long_name": f"computed {key} (in value_unit)"})
    ds["value_unit"] = ("claim", np.array([r.unit for r in rows]),
                        {**_STR, "long_name": "unit of value, low and high"})
    return ds


def generations_dataset(cat: _catalog.Catalog | None = None) -> xr.Dataset:
    """Trn2 vs Trn3 per chip and per UltraServer: peaks, HBM capacity and bandwidth."""
    cat = cat or _catalog.default()
    systems = [cat.system(s) for s in (TRN2_SERVER, TRN3_SERVER)]
    chips = [cat.chip(s.chip) for s in systems]
    scale = np.array([[1.0, s.n_chips] for s in systems])  # (generation, scope)
    ds = xr.Dataset(coords={"generation": [c.id for c in chips], "scope": ["chip", "server"],
                            "server": ("generation", [s.id for s in systems])})
    ds["server"].attrs.update({**_STR, "long_name": "UltraServer of the generation"})
    metrics = {
        "peak_bf16": (lambda c: c.peak("bf16"), "FLOP/s", "dense BF16 peak"),
        "peak_fp8": (lambda c: c.peak("fp8"), "FLOP/s", "dense FP8-class peak (Trn3: MXFP8)"),
        "hbm_capacity": (lambda c: c.hbm_capacity, "B", "HBM capacity"),
        "hbm_bandwidth": (lambda c: c.hbm_bandwidth, "B/s", "HBM bandwidth"),
    }
    for key, (get, units, long_name) in metrics.items():
        ds[key] = (("generation", "scope"), scale * np.array([[get(c)] for c in chips]),
                   {"units": units, "long_name": long_name})
    return ds


def study(assume: Assumptions | None = None) -> xr.Dataset:
    """The claims study: the ledger (``claim`` dim) and the generation comparison."""
    rows = ledger(assume)
    ds = xr.merge([ledger_dataset(rows), generations_dataset()], combine_attrs="override")
    ds.attrs["title"] = "Trainium3 claims ledger"
    return ds
