"""The Trainium3 claims ledger: every published claim recomputed from the catalog.

Claims live in ``data/claims/trainium3.toml`` (text, published value, source, and the name of
the check below). Each check recomputes the claim from ``data/hardware`` and returns a verdict:

- ``holds``: the catalog reproduces the published number (within 5%) on the stated basis;
- ``partly``: it holds only on a narrower basis (a precision, per server not per chip, a unit);
- ``inconsistent``: no basis reproduces it, or it contradicts other claims;
- ``not-checkable``: it needs a model or a fact trnlab does not have yet (the reason says which).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from trnlab import catalog as _catalog
from trnlab import checks
from trnlab._paths import data_dir
from trnlab.catalog.fields import Field, parse_field
from trnlab.catalog.loader import read_toml
from trnlab.catalog.units import dimension
from trnlab.engine.economics import break_even_table, cloud_price, power_inputs
from trnlab.engine.hardware import precision_bytes
from trnlab.engine.points import training_point
from trnlab.engine.sampling import bands
from trnlab.engine.variables import attrs
from trnlab.errors import CatalogError, ParameterError, bad_value
from trnlab.perf import power

VERDICTS = ("holds", "partly", "inconsistent", "not-checkable")
AGREEMENT = 0.05  # relative difference within which a published number "holds"
TRN2, TRN3 = "trn2", "trn3"
#: the random stream of a user-set Trn3 power range: apart from the catalog's power inputs
TRN3_POWER_STREAM = 7
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
class Finding:
    """What a check computed. ``value``, ``low``, ``high`` are in ``unit`` (NaN: none);
    ``status`` is ``derived`` (from catalog figures) or ``projected`` (rests on projected power
    or price inputs)."""

    computed: str
    verdict: str
    reason: str
    value: float = math.nan
    low: float = math.nan
    high: float = math.nan
    unit: str = "1"
    status: str = "derived"


@dataclass(frozen=True, kw_only=True)
class Verdict(Finding):
    """One row of the ledger: a :class:`Finding` with the claim it answers."""

    id: str
    claim: str
    published: str
    check: str = ""
    published_value: float = math.nan
    published_unit: str = "1"

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
class Assumptions:
    """Inputs that are not facts: cluster size, power ranges (default: the catalog's), and the
    reference workload of the energy and cost claims."""

    cluster_chips: int = 1_000_000
    chip_power_w: tuple[float, float, float] | None = None  # Trn3: low, central, high [W]
    system_overhead: tuple[float, float, float] | None = None  # [1]
    pue: tuple[float, float, float] | None = None  # [1]
    model: str = "llama3-405b"  # reference training workload
    n_chips: int = 16384
    precision: str = "fp8"  # FP8-class: the format of the compute claims
    n_samples: int = 2000  # Monte-Carlo samples of the ranged power and price inputs
    seed: int = 0


def _sig(x: float, digits: int = 3) -> float:
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


def _agrees(published: float, computed: float) -> bool:
    return abs(computed / published - 1) <= AGREEMENT


def load_claims(path: Path | None = None) -> list[Claim]:
    """Read and validate ``data/claims/trainium3.toml``."""
    path = path or data_dir() / "claims" / "trainium3.toml"
    doc = read_toml(path)
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
    claims: tuple[Claim, ...]  # all published claims (some checks weigh one against another)



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


def _samples(c: _Ctx, systems: list[str]) -> dict[str, np.ndarray]:
    """Sampled power inputs (system, sample); the assumptions override the catalog's ranges."""
    a = c.assume
    x = power_inputs(systems, a.n_samples, a.seed,
                      {"system_overhead": a.system_overhead, "pue": a.pue})
    if a.chip_power_w is not None and TRN3_SERVER in systems:
        low, mode, high = a.chip_power_w
        x["tdp"][systems.index(TRN3_SERVER)] = np.full(a.n_samples, mode) if low == high else \
            np.random.default_rng(a.seed + TRN3_POWER_STREAM).triangular(low, mode, high,
                                                                          a.n_samples)
    return x


def _cluster_size(c: _Ctx, pub: Field) -> Finding:
    n = float(c.assume.cluster_chips or pub.si)
    servers = float(power.units_needed(n, c.cat.system(TRN3_SERVER).n_chips))
    x = _samples(c, [TRN3_SERVER])
    facility = power.facility_power(power.it_power(n, x["tdp"][0], x["overhead"][0]),
                                    x["pue"][0])
    gw, chip_w = bands(facility) / 1e9, bands(x["tdp"][0])
    return Finding(
        f"{servers:,.0f} UltraServers of 144; facility power at full load {gw[1]:.2f} GW "
        f"(p5-p95 {gw[0]:.2f}-{gw[2]:.2f})", "partly",
        f"the arithmetic holds ({servers:,.0f} UltraServers is 'thousands'), but no Trn3 cluster "
        f"of this size is reported; at a projected {chip_w[0]:.0f}-{chip_w[2]:.0f} W per chip "
        f"(p5-p95), plus system overhead and PUE sampled from their ranges, it needs "
        f"{gw[0]:.1f}-{gw[2]:.1f} GW, the scale of the largest AI campuses announced to date",
        gw[1], gw[0], gw[2], "GW", "projected")


def _trainium_energy(c: _Ctx) -> dict[str, np.ndarray]:
    """Trn3 vs Trn2 UltraServer on the reference training workload, per power sample.

    Chip power follows the workload's tensor activity (:func:`trnlab.perf.power.chip_power`)
    with sampled TDPs, idle share, system overhead and PUE (common to both: they cancel in the
    ratios). Returns (sample,) arrays of Trn3 / Trn2 ratios.
    """
    a = c.assume
    systems = [TRN2_SERVER, TRN3_SERVER]
    pts = [training_point(a.model, s, a.n_chips, a.precision) for s in systems]
    tps = np.array([[p["tokens_per_s_per_chip"]] for p in pts])
    act = np.array([[p["compute_share"]] for p in pts])
    comm = np.array([[p["memory_share"]] for p in pts])
    x = _samples(c, systems)
    chip = power.chip_power(x["tdp"], x["idle"], act, comm, x["memory_weight"])
    it = chip * (1.0 + x["overhead"])
    n3, n2 = c.cat.system(TRN3_SERVER).n_chips, c.cat.system(TRN2_SERVER).n_chips
    return {"efficiency": (tps[1] / it[1]) / (tps[0] / it[0]), "chip_power": chip[1] / chip[0],
            "server_power": chip[1] * n3 / (chip[0] * n2),
            "throughput": np.full(a.n_samples, tps[1, 0] / tps[0, 0]),
            "trn3_w": chip[1], "trn2_w": chip[0]}


def _energy_efficiency(c: _Ctx, pub: Field) -> Finding:
    e = _trainium_energy(c)
    eff, w3, w2 = bands(e["efficiency"]), bands(e["trn3_w"]), bands(e["trn2_w"])
    verdict = "inconsistent" if pub.si > eff[2] else "holds" if pub.si < eff[0] else "partly"
    a = c.assume
    return Finding(
        f"training tokens per joule (IT power), Trn3 / Trn2 UltraServer: {eff[1]:.2f}x "
        f"(p5-p95 {eff[0]:.2f}-{eff[2]:.2f}x)", verdict,
        f"{a.model} on {a.n_chips:,} chips at {a.precision}: the training model gives Trn3 "
        f"{e['throughput'][0]:.2f}x Trn2's tokens/s per chip while drawing {w3[1]:.0f} W "
        f"(p5-p95 {w3[0]:.0f}-{w3[2]:.0f}) vs {w2[1]:.0f} W ({w2[0]:.0f}-{w2[2]:.0f}) per chip at "
        "the projected TDP ranges (no Trainium power is published); 4x would need Trn3 to draw "
        f"{e['throughput'][0] * w2[1] / pub.si:.0f} W at Trn2's {w2[1]:.0f} W", eff[1], eff[0],
        eff[2], status="projected")


def _less_power(c: _Ctx, pub: Field) -> Finding:
    e = _trainium_energy(c)
    chip, server = bands(e["chip_power"]), bands(e["server_power"])
    per_token = bands(1.0 / e["efficiency"])
    comp_server, comp_chip, _ = _system_ratio(c, lambda ch: ch.peak("fp8"))
    eff_claim = next(cl for cl in c.claims if cl.check == "energy_efficiency").published.si
    implied = float(power.implied_power_ratio(comp_server, eff_claim))
    holds_per_token = per_token[0] <= pub.si <= per_token[2]
    return Finding(
        f"power per chip {chip[1]:.2f}x Trn2 ({chip[0]:.2f}-{chip[2]:.2f}), per UltraServer "
        f"{server[1]:.2f}x ({server[0]:.2f}-{server[2]:.2f}); energy per trained token "
        f"{per_token[1]:.2f}x ({per_token[0]:.2f}-{per_token[2]:.2f})",
        "partly" if holds_per_token else "inconsistent",
        "a Trn3 chip and UltraServer draw more power than Trn2's at any projected TDP, so '40% "
        "less power' cannot mean power; "
        + ("it holds as energy per unit of work at the upper part of the power range"
           if holds_per_token else "even as energy per trained token the range misses 0.6x")
        + f"; with 4x efficiency and 4.36x compute the power would be {implied:.2f}x, so the "
        f"three claims cannot all hold on one basis (compute per chip {comp_chip:.2f}x)",
        per_token[1], per_token[0], per_token[2], status="projected")


def _cost(c: _Ctx, pub: Field) -> Finding:
    a = c.assume
    gpus = ("dgx-h100", "dgx-h200", "dgx-b200", "gb200-nvl72")
    be = break_even_table(a.model, (*gpus, TRN3_SERVER), TRN3_SERVER, n_chips=a.n_chips,
                          precision=a.precision, target_ratio=pub.si, seed=a.seed)
    n = len(gpus)
    cloud, tco, serve = (be[k][:n] for k in ("training_cloud", "training_tco", "serving_cloud"))
    parts = [f"{g}: ${p:.2f}" + (f" (serving ${q:.2f})" if np.isfinite(q) else "")
             for g, p, q in zip(gpus, cloud, serve, strict=True) if np.isfinite(p)]
    trn2_cb = cloud_price("trn2-48xl", "capacity_block")
    finite = [v for v in (*cloud, *serve) if np.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (math.nan, math.nan)
    return Finding(
        "break-even Trn3 price per chip-hour for half the cost per trained token vs on-demand "
        + "; ".join(parts) + f"; vs GB200 at TCO ${tco[-1]:.2f}", "partly",
        f"holds only if AWS prices Trn3 below ${lo:.2f}-{hi:.2f} per chip-hour (no Trn3 price is "
        f"published; Trn2 capacity blocks sell at ${trn2_cb:.2f}); assumes {a.model} training "
        f"on {a.n_chips:,} chips at {a.precision} with the MFU the model predicts for each "
        "system, GPUs at their newest on-demand list price, and no discounts on either side",
        float(np.nanmedian(cloud)), lo, hi, "USD/(chip*h)", "projected")


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


#: bounds of the ranged assumptions: (low, low is open) of each value
_RANGE_BOUNDS = {"chip_power_w": (0.0, True), "system_overhead": (0.0, False),
                 "pue": (1.0, False)}


def check_assumptions(assume: Assumptions) -> Assumptions:
    """``assume`` checked: ``cluster_chips``, ``n_chips`` and ``n_samples`` integers >= 1
    (0 would silently mean "the published cluster size"), ``seed`` >= 0, a known model and
    precision, and each range ``[low, central, high]`` finite, increasing and physical
    (power > 0 W, overhead >= 0, PUE >= 1)."""
    where = "claims"
    if not isinstance(assume, Assumptions):
        raise checks.fail(where, "assume", assume, "an Assumptions (claims.assumptions(...))")
    checks.positive_int(where, "cluster_chips", assume.cluster_chips, checks.MAX_CLUSTER_CHIPS)
    checks.positive_int(where, "n_chips", assume.n_chips, checks.MAX_CHIPS)
    checks.positive_int(where, "n_samples", assume.n_samples, checks.MAX_SAMPLES)
    checks.integer(where, "seed", assume.seed, 0)
    _catalog.model(checks.ident(where, "model", assume.model, CatalogError))
    checks.choice(where, "precision", assume.precision, precision_bytes())
    for name, (low, low_open) in _RANGE_BOUNDS.items():
        v = getattr(assume, name)
        if v is None:
            continue
        if isinstance(v, str) or not isinstance(v, Sequence) or len(v) != 3:
            raise checks.fail(where, name, v, "None (catalog) or [low, central, high]")
        vals = [checks.finite(where, name, x, low, low_open=low_open) for x in v]
        if not vals[0] <= vals[1] <= vals[2]:
            raise checks.fail(where, name, list(v), "[low, central, high] in increasing order")
    return assume


def ledger(assume: Assumptions | None = None,
           cat: _catalog.Catalog | None = None) -> list[Verdict]:
    """Recompute every claim of ``data/claims/trainium3.toml``; one :class:`Verdict` each.
    ``assume`` is checked first (:func:`check_assumptions`)."""
    if assume is not None:
        check_assumptions(assume)
    claims = tuple(load_claims())
    ctx = _Ctx(cat or _catalog.default(), assume or Assumptions(), claims)
    rows = []
    for claim in claims:
        found = CHECKS[claim.check](ctx, claim.published)
        if found.verdict not in VERDICTS:
            raise AssertionError(f"check {claim.check} gave verdict {found.verdict!r}")
        pub = claim.published
        number = f"{int(pub.value):,}" if pub.value.is_integer() else f"{pub.value:g}"
        published = number + ("" if pub.unit == "1" else f" {pub.unit}")
        numbers = {k: float(getattr(found, k)) for k in ("value", "low", "high")}
        rows.append(Verdict(**{**vars(found), **numbers}, id=claim.id, claim=claim.text,
                            published=published, check=claim.check,
                            published_value=float(pub.value), published_unit=pub.unit))
    return rows


_STR = {"units": "1"}


def ledger_dataset(rows: list[Verdict]) -> xr.Dataset:
    """The ledger as a Dataset with a ``claim`` dim (strings and the computed numbers).

    Coordinates along ``claim``: ``check`` (the kind of check, a key of :data:`CHECKS`) and
    ``claim_status``: ``derived`` when the computed value follows from catalog figures,
    ``projected`` when it rests on projected power or price inputs.
    """
    ds = xr.Dataset(coords={
        "claim": ("claim", [r.id for r in rows], {**_STR, "long_name": "claim id"}),
        "check": ("claim", [r.check for r in rows], {**_STR, "long_name": "kind of check"}),
        "claim_status": ("claim", [r.status for r in rows], {
            **_STR, "long_name": "derived (catalog figures) | projected (projected inputs)"}),
    })
    for key, long_name in (("claim_text", "claim as published"),
                           ("published", "published value"), ("computed", "computed from catalog"),
                           ("verdict", "holds | partly | inconsistent | not-checkable"),
                           ("reason", "why")):
        attr = "claim" if key == "claim_text" else key
        ds[key] = ("claim", np.array([getattr(r, attr) for r in rows]),
                   {**_STR, "long_name": long_name})
    ds["published_value"] = ("claim", np.array([r.published_value for r in rows]), {
        "units": "1", "long_name": "published number as a number of published_unit"})
    ds["published_unit"] = ("claim", np.array([r.published_unit for r in rows]), {
        **_STR, "long_name": "unit of published_value (trnlab.units grammar)"})
    for key in ("value", "low", "high"):
        ds[key] = ("claim", np.array([getattr(r, key) for r in rows]),
                   {"units": "1", "long_name": f"computed {key} as a number of value_unit (each "
                    "claim has its own unit)"})
    ds["value_unit"] = ("claim", np.array([r.unit for r in rows]),
                        {**_STR, "long_name": "unit of value, low and high (trnlab.units grammar)"})
    return ds


#: the generation comparison: variable -> (label of the gain plot, units, long_name)
METRICS = {
    "peak_bf16": ("BF16 peak", "FLOP/s", "dense BF16 peak"),
    "peak_fp8": ("FP8-class peak", "FLOP/s", "dense FP8-class peak (Trn3: MXFP8)"),
    "hbm_capacity": ("HBM capacity", "B", "HBM capacity"),
    "hbm_bandwidth": ("HBM bandwidth", "B/s", "HBM bandwidth"),
}


def generations_dataset(cat: _catalog.Catalog | None = None) -> xr.Dataset:
    """Trn2 vs Trn3 per chip and per UltraServer: peaks, HBM capacity and bandwidth, and the
    gain of the newer generation (``gain``, dims ``metric`` x ``scope``)."""
    cat = cat or _catalog.default()
    systems = [cat.system(s) for s in (TRN2_SERVER, TRN3_SERVER)]
    chips = [cat.chip(s.chip) for s in systems]
    scale = np.array([[1.0, s.n_chips] for s in systems])  # (generation, scope)
    ds = xr.Dataset(coords={
        "generation": ("generation", [c.id for c in chips], attrs("chip", "chip generation")),
        "scope": ("scope", ["chip", "server"], {**_STR, "long_name": "per chip or per server"}),
        "server": ("generation", [s.id for s in systems],
                   {**_STR, "long_name": "UltraServer of the generation"}),
        "server_chips": ("generation", np.array([s.n_chips for s in systems], dtype=np.int64),
                         {"units": "chip", "long_name": "chips per UltraServer"}),
        "vendor": ("generation", [c.vendor for c in chips], attrs("vendor")),
        "metric": ("metric", [label for label, _, _ in METRICS.values()],
                   {**_STR, "long_name": "metric"}),
    })
    getters = {"peak_bf16": lambda c: c.peak("bf16"), "peak_fp8": lambda c: c.peak("fp8"),
               "hbm_capacity": lambda c: c.hbm_capacity,
               "hbm_bandwidth": lambda c: c.hbm_bandwidth}
    for key, (_, units, long_name) in METRICS.items():
        ds[key] = (("generation", "scope"), scale * np.array([[getters[key](c)] for c in chips]),
                   {"units": units, "long_name": long_name})
    gain = [ds[k].isel(generation=-1) / ds[k].isel(generation=0) for k in METRICS]
    ds["gain"] = (("metric", "scope"), np.array([g.values for g in gain]), {
        "units": "1", "long_name": f"{chips[-1].id} / {chips[0].id}"})
    return ds


def assumptions(cluster_chips: int = 1_000_000, chip_power_w: Sequence[float] = (),
                system_overhead: Sequence[float] = (), pue: Sequence[float] = (),
                **kwargs: Any) -> Assumptions:
    """:class:`Assumptions` from notebook parameters: an empty list takes the catalog's range,
    otherwise ``[low, central, high]`` in increasing order; ``kwargs`` are passed on."""
    ranges = {}
    cluster_chips = checks.positive_int("claims", "cluster_chips", cluster_chips,
                                        checks.MAX_CLUSTER_CHIPS)
    for name, v in (("chip_power_w", chip_power_w), ("system_overhead", system_overhead),
                    ("pue", pue)):
        if isinstance(v, str) or not isinstance(v, Sequence):
            raise ParameterError(bad_value("claims", name, v,
                                           "[] (catalog) or [low, central, high]"))
        low, low_open = _RANGE_BOUNDS[name]
        vals = [checks.finite("claims", name, x, low, low_open=low_open) for x in v]
        if v and (len(v) != 3 or not vals[0] <= vals[1] <= vals[2]):
            raise ParameterError(bad_value("claims", name, list(v),
                                           "[] (catalog) or [low, central, high] in "
                                           "increasing order"))
        ranges[name] = tuple(float(x) for x in v) if v else None
    unknown = [k for k in kwargs if k not in Assumptions.__dataclass_fields__]
    if unknown:
        raise checks.fail("claims", "assumption", unknown[0],
                          f"allowed: {', '.join(Assumptions.__dataclass_fields__)}")
    return check_assumptions(Assumptions(cluster_chips=cluster_chips, **ranges, **kwargs))


def study(assume: Assumptions | None = None) -> xr.Dataset:
    """The claims study: the ledger (``claim`` dim) and the generation comparison."""
    assume = check_assumptions(assume or Assumptions())
    rows = ledger(assume)
    ds = xr.merge([ledger_dataset(rows), generations_dataset()], combine_attrs="override")
    ds.attrs = {"title": "Trainium3 claims ledger", "assumptions": json.dumps(asdict(assume)),
                "cluster_chips": assume.cluster_chips, "model": assume.model,
                "n_chips": assume.n_chips, "precision": assume.precision,
                "n_samples": assume.n_samples, "seed": assume.seed}
    ds.attrs["headline"] = headline(ds)
    return ds


# ------------------------------------------------------------------------------ the reading
#: a verdict as a verb phrase
_VERB = {"holds": "holds", "partly": "holds only partly", "inconsistent": "does not hold",
         "not-checkable": "cannot be checked"}


def _row(ds: xr.Dataset, check: str) -> xr.Dataset | None:
    """The ledger row of the first claim checked by ``check`` (None if there is none)."""
    hits = [i for i, c in enumerate(ds["check"].values) if str(c) == check]
    return ds.isel(claim=hits[0]) if hits else None


def _num(row: xr.Dataset, key: str) -> float:
    return float(row[key])


def _verb(row: xr.Dataset) -> str:
    return _VERB[str(row["verdict"].values)]


def _pub(row: xr.Dataset) -> str:
    """The published number as published (``2.52 PFLOP/s``, ``4.4x``)."""
    unit = str(row["published_unit"].values)
    return f"{_num(row, 'published_value'):g}" + ("x" if unit == "1" else f" {unit}")


def _gain(ds: xr.Dataset, metric: str, scope: str) -> float:
    return float(ds["gain"].sel(metric=METRICS[metric][0], scope=scope))


def headline(ds: xr.Dataset) -> str:
    """One sentence: the verdict counts, the energy-efficiency ratio against its claim and the
    facility power of the largest claimed cluster."""
    counts = Counter(str(v) for v in ds["verdict"].values)
    parts = [f"{counts[v]} {v.replace('holds', 'hold')}" for v in VERDICTS if counts[v]]
    out = f"Of {ds.sizes['claim']} Trainium3 claims {', '.join(parts)}"
    eff, cl = _row(ds, "energy_efficiency"), _row(ds, "cluster_size")
    if eff is not None:
        out += (f"; Trn3 trains {_num(eff, 'value'):.2f}x Trn2's tokens per joule (p5–p95 "
                f"{_num(eff, 'low'):.2f}–{_num(eff, 'high'):.2f}x) where {_pub(eff)} is claimed")
    if cl is not None:
        out += (f"; {int(ds.attrs['cluster_chips']):,} chips need {_num(cl, 'value'):.2f} GW "
                f"(p5–p95 {_num(cl, 'low'):.2f}–{_num(cl, 'high'):.2f})")
    return out


def reading(ds: xr.Dataset) -> str:
    """The reading of a :func:`study` Dataset as Markdown bullets, every number from ``ds``."""
    a = ds.attrs
    old, new = (str(g) for g in ds["generation"].values)
    n_old, n_new = (int(n) for n in ds["server_chips"].values)
    lines = []

    # compute
    peak, srv = _row(ds, "chip_peak"), _row(ds, "server_compute")
    bf16 = _gain(ds, "peak_bf16", "chip")
    chip_fp8, server_fp8 = _gain(ds, "peak_fp8", "chip"), _gain(ds, "peak_fp8", "server")
    fp8_new = float(ds["peak_fp8"].sel(generation=new, scope="chip"))
    bf16_new = float(ds["peak_bf16"].sel(generation=new, scope="chip"))
    text = "- **Compute.** "
    if peak is not None:
        text += (f"The published {_pub(peak)} per chip {_verb(peak)}: it is the dense "
                 f"FP8-class peak ({fp8_new / 1e15:.2f} PFLOP/s), {fp8_new / bf16_new:.2f}x the "
                 f"BF16 peak ({bf16_new / 1e15:.2f} PFLOP/s). ")
    word = "about as fast as" if abs(bf16 - 1) <= AGREEMENT else \
        ("faster than" if bf16 > 1 else "slower than")
    text += f"At BF16 a {new} chip is {word} a {old} chip ({bf16:.2f}x). "
    if srv is not None:
        more_chips = n_new / n_old
        bigger = ("more of it comes from the larger UltraServer than from the faster chip"
                  if more_chips > chip_fp8 else
                  "more of it comes from the faster chip than from the larger UltraServer")
        text += (f"The {_pub(srv)} UltraServer claim {_verb(srv)}: per server it is "
                 f"{server_fp8:.2f}x at FP8-class precision, of which {more_chips:.2f}x is "
                 f"{n_new} vs {n_old} chips and {chip_fp8:.2f}x the chip; {bigger}.")
    lines.append(text.rstrip())

    # memory
    mem, bw, cap = _row(ds, "memory_vs_trn2"), _row(ds, "bandwidth_vs_trn2"), \
        _row(ds, "hbm_capacity")
    parts = [f"{_pub(r)} {label} {_verb(r)} per chip ({_num(r, 'value'):.2f}x"
             + (f"; {_num(r, 'low'):.2f}–{_num(r, 'high'):.2f}x across the sources' own pairs)"
                if _num(r, "high") - _num(r, "low") > 0.005 else ")")
             for r, label in ((mem, "capacity"), (bw, "bandwidth")) if r is not None]
    text = "- **Memory.** " + (" and ".join(parts) + ". " if parts else "")
    if cap is not None:
        lo, hi = _num(cap, "low"), _num(cap, "high")
        text += (f"Whether \"{_pub(cap)}\" means GB or GiB is not settled by AWS's own "
                 f"documents ({lo:.1f} vs {hi:.1f} GB, a {hi / lo - 1:.1%} difference); the "
                 f"claim {_verb(cap)}.")
    lines.append(text.rstrip())

    # power and energy
    eff, less = _row(ds, "energy_efficiency"), _row(ds, "less_power")
    if eff is not None:
        text = (f"- **Power and energy.** No Trainium power is published; at the projected power "
                f"ranges (sampled, p5–p95) the training model puts {new}'s tokens per joule at "
                f"{_num(eff, 'value'):.2f}x {old}'s for {a['model']} at {a['precision']} on "
                f"{int(a['n_chips']):,} chips ({_num(eff, 'low'):.2f}–{_num(eff, 'high'):.2f}x), "
                f"so \"{_pub(eff)}\" {_verb(eff)}.")
        if less is not None:
            pub = _num(less, "published_value")
            inside = _num(less, "low") <= pub <= _num(less, "high")
            text += (f" \"{1 - pub:.0%} less power\" {_verb(less)}: energy per trained token "
                     f"is {_num(less, 'value'):.2f}x {old}'s ({_num(less, 'low'):.2f}–"
                     f"{_num(less, 'high'):.2f}x), a range that "
                     f"{'includes' if inside else 'misses'} {pub:g}x.")
            if srv is not None:
                implied = float(power.implied_power_ratio(_num(srv, "value"),
                                                          _num(eff, "published_value")))
                agree = _agrees(pub, implied)
                text += (f" With {_pub(eff)} efficiency and {_num(srv, 'value'):.2f}x compute the "
                         f"power would be {implied:.2f}x, "
                         + ("so the three claims agree on one basis." if agree else
                            f"not {pub:g}x: the three claims cannot all hold on one basis."))
        lines.append(text)

    # cluster and cost
    cl, cost = _row(ds, "cluster_size"), _row(ds, "cost")
    if cl is not None:
        n = int(a["cluster_chips"])
        servers = int(power.units_needed(n, n_new))
        lines.append(f"- **Cluster.** {n:,} chips are {servers:,} {new} UltraServers of {n_new}; "
                     f"at full load they need {_num(cl, 'value'):.2f} GW of facility power "
                     f"(p5–p95 {_num(cl, 'low'):.2f}–{_num(cl, 'high'):.2f} GW); the claim "
                     f"{_verb(cl)}.")
    if cost is not None:
        lines.append(f"- **Cost.** \"Up to {1 - _num(cost, 'published_value'):.0%} lower cost\" "
                     f"{_verb(cost)}: Trn3 would have to rent below "
                     f"${_num(cost, 'low'):.2f}–{_num(cost, 'high'):.2f} per chip-hour against "
                     "on-demand GPUs (training and serving); no Trn3 price is published. "
                     "Notebooks 04 and 05 show the power and cost models behind these verdicts.")
    return "\n".join(lines)
