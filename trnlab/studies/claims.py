"""The Trainium3 claims ledger: every published claim recomputed on every fair basis.

Claims live in ``data/claims/trainium3.toml`` (text, published value, source, the basis the
source states, and the name of the check below). A check computes the claimed quantity on each
basis the claim could mean (per chip and per UltraServer; training and SLO-bound serving; BF16,
FP8/MXFP8 and FP4; Trn2 and Trn3 where the claim is about "Trainium"), as a function of the
projected inputs (chip powers, Trn3's delivered throughput, Trn3's scale-up bandwidth, prices,
system overhead, PUE; each ``[low, central, high]``, overridable through :class:`Assumptions`).

The verdicts follow the one rule of :mod:`trnlab.engine.verdicts` (stated there once, shared
with the Trainium4 claims of :func:`trnlab.studies.trainium4.claims`); no verdict is written per
claim. Reasons are written from the computed numbers; claims resting on a projected input carry
a ``sensitivity`` (tornado).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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
from trnlab.catalog.params import load_economics
from trnlab.catalog.units import dimension
from trnlab.engine.economics import break_even_prices, cloud_price, slo_rate, training_rate
from trnlab.engine.hardware import precision_bytes
from trnlab.engine.variables import attrs
from trnlab.engine.verdicts import (
    QUANTIFIERS,
    SENSES,
    TOLERANCE,
    VERDICTS,
    Basis,
    Claim,
    Input,
    Verdict,
    assess,
    at,
    corners,
    published_text,
    reason,
)
from trnlab.engine.verdicts import (
    row as verdict_row,
)
from trnlab.errors import CatalogError, ParameterError, bad_value
from trnlab.perf import power

TRN2, TRN3 = "trn2", "trn3"
TRN2_SERVER, TRN3_SERVER, TRN3_SERVER_64 = "trn2-ultraserver", "trn3-ultraserver", \
    "trn3-ultraserver-64"
TRN2_INSTANCE = "trn2-48xl"  # the Trn2 system with a listed price (per chip-hour)
GPUS = ("dgx-h100", "dgx-h200", "dgx-b200")  # on-demand GPU systems of the cost claim
TRN1, A100_40 = "trn1-32xl", "hgx-a100-40gb"  # the older Trainium and GPU rentals (p4d)
#: precisions of the bases: label -> precision id (Trn2 has no FP4: it falls back to cFP8)
PRECISIONS = {"BF16": "bf16", "FP8": "fp8", "FP4": "mxfp4"}


# ------------------------------------------------------------------------------- the claims
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
        for key, allowed in (("sense", SENSES), ("quantifier", QUANTIFIERS)):
            if key in raw and raw[key] not in allowed:
                raise CatalogError(bad_value(where, key, raw[key],
                                             f"allowed: {', '.join(allowed)}"))
        basis = raw.get("basis", [])
        if not isinstance(basis, list) or not all(isinstance(t, str) for t in basis):
            raise CatalogError(bad_value(where, "basis", basis, "a list of tags"))
        fields = {}
        for key in ("published", "target", "relayed"):
            if key in raw:
                unit = raw[key].get("unit", "") if isinstance(raw[key], dict) else ""
                dim = dimension(unit) if unit in _catalog.units.UNITS else "count"
                fields[key] = parse_field(raw[key], where, key, dim, sources)
        claims.append(Claim(cid, raw["text"], raw["check"], fields["published"], tuple(basis),
                            raw.get("sense", "equal"), raw.get("quantifier", "all"),
                            fields.get("target"), fields.get("relayed")))
    return claims


def _claim_inputs(path: Path | None = None) -> dict[str, Field]:
    """The ``[input.*]`` fields of the claims file (the claims' own projected inputs)."""
    path = path or data_dir() / "claims" / "trainium3.toml"
    sources = set(_catalog.default().sources)
    return {k: parse_field(v["value"], f"{path.name}: [input.{k}]", "value", "count", sources)
            for k, v in read_toml(path).get("input", {}).items()}


# ------------------------------------------------------------------------- projected inputs
def _triple(f: Field, scale: float = 1.0) -> tuple[float, float, float]:
    return f.low / scale, f.si / scale, f.high / scale


def default_inputs() -> dict[str, Input]:
    """Every projected input of the checks at the catalog's ranges (prices: the listed kinds).

    ``trn3_scaleup`` spans the readings of Trn3's scale-up bandwidth the sources give (the
    704 GB/s link description to the 2.56 TB/s aggregate); ``trn2_price`` spans Trn2's listed
    spot and capacity-block prices (central: capacity block); ``gpu_price`` is the GPUs' price as
    a fraction of on-demand, down to the lowest capacity-block / on-demand ratio listed.
    """
    cat = _catalog.default()
    t2, t3 = cat.chip(TRN2), cat.chip(TRN3)
    bw = t3.fields["scaleup_bandwidth"]
    bws = [bw.si, *(a.si for a in bw.alt)]
    fac = cat.facility().fields
    cb = cloud_price(TRN2_INSTANCE, "capacity_block")
    spot = cloud_price(TRN2_INSTANCE, "spot")
    ratios = [cloud_price(g, "capacity_block") / cloud_price(g) for g in GPUS]
    ratios = [r for r in ratios if math.isfinite(r)] or [1.0]
    mfu = _claim_inputs()["trn3_mfu"]
    rows = [("trn2_power", "Trn2 chip TDP", "W", _triple(t2.fields["tdp"])),
            ("trn3_power", "Trn3 chip TDP", "W", _triple(t3.fields["tdp"])),
            ("trn3_mfu", "Trn3 throughput / model", "1", _triple(mfu)),
            ("trn3_scaleup", "Trn3 scale-up bandwidth", "GB/s",
             (min(bws) / 1e9, bw.si / 1e9, max(bws) / 1e9)),
            ("trn2_price", "Trn2 price", "USD/(chip*h)", (min(spot, cb), cb, cb)),
            ("gpu_price", "GPU price / on-demand", "1", (min(ratios), 1.0, 1.0)),
            ("system_overhead", "system overhead", "1", _triple(fac["system_overhead"])),
            ("pue", "PUE", "1", _triple(fac["pue"]))]
    return {n: Input(n, label, unit, *v) for n, label, unit, v in rows}


#: Assumptions field -> the input it overrides
_OVERRIDES = {"trn2_power_w": "trn2_power", "chip_power_w": "trn3_power",
              "trn3_mfu": "trn3_mfu", "trn3_scaleup_gbps": "trn3_scaleup",
              "trn2_price": "trn2_price", "gpu_price": "gpu_price",
              "system_overhead": "system_overhead", "pue": "pue"}
#: bounds of the ranged assumptions: (low, low is open)
_RANGE_BOUNDS = {"chip_power_w": (0.0, True), "trn2_power_w": (0.0, True),
                 "trn3_mfu": (0.0, True), "trn3_scaleup_gbps": (0.0, True),
                 "trn2_price": (0.0, True), "gpu_price": (0.0, True),
                 "system_overhead": (0.0, False), "pue": (1.0, False)}


@dataclass(frozen=True)
class Assumptions:
    """Inputs that are not facts: the cluster size, the projected inputs (each ``(low, central,
    high)`` in the unit of its name; None: the catalog's), and the reference workloads."""

    cluster_chips: int = 1_000_000
    chip_power_w: tuple[float, float, float] | None = None  # Trn3 chip TDP [W]
    trn2_power_w: tuple[float, float, float] | None = None  # Trn2 chip TDP [W]
    trn3_mfu: tuple[float, float, float] | None = None  # Trn3 delivered / modelled [1]
    trn3_scaleup_gbps: tuple[float, float, float] | None = None  # Trn3 scale-up [GB/s]
    trn2_price: tuple[float, float, float] | None = None  # [USD/(chip*h)]
    gpu_price: tuple[float, float, float] | None = None  # fraction of on-demand [1]
    system_overhead: tuple[float, float, float] | None = None  # [1]
    pue: tuple[float, float, float] | None = None  # [1]
    model: str = "llama3-405b"  # reference training workload
    n_chips: int = 16384
    precision: str = "fp8"  # training precision of the power and cost bases
    serve_model: str = "llama3-70b"  # dense serving workload
    moe_model: str = "qwen3-235b-a22b"  # MoE serving workload of the energy bases
    gpt_oss_model: str = "gpt-oss-120b"  # the GPT-OSS claims' model (the size is not stated)
    input_len: int = 2048
    output_len: int = 512
    tpot_ms: float = 50.0
    ttft_ms: float = 2000.0


def inputs_for(assume: Assumptions) -> dict[str, Input]:
    """:func:`default_inputs` with ``assume``'s overrides."""
    out = default_inputs()
    for attr, name in _OVERRIDES.items():
        v = getattr(assume, attr)
        if v is not None:
            i = out[name]
            out[name] = Input(name, i.label, i.unit, *(float(x) for x in v))
    return out


# ------------------------------------------------------------------------------- the checks
@dataclass(frozen=True)
class _Ctx:
    cat: _catalog.Catalog
    assume: Assumptions
    claims: tuple[Claim, ...]

    def published(self, check: str) -> Claim:
        return next(c for c in self.claims if c.check == check)


Check = Callable[[_Ctx, Mapping[str, float]], list[Basis]]


def _tags(*tags: str) -> frozenset[str]:
    return frozenset(t.lower() for t in tags)


def _chip_peak(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
    t3 = c.cat.chip(TRN3)
    return [Basis(f"per chip, {label} dense", t3.peak(p) / 1e15, "PFLOP/s", _tags("chip", label))
            for label, p in PRECISIONS.items()]


def _hbm_capacity(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
    f = c.cat.chip(TRN3).fields["hbm_capacity"]
    out = [Basis(f"per chip, {f.value:g} {f.unit} ({'; '.join(f.sources)})", f.si / 1e9, "GB",
                 _tags("chip"))]
    out += [Basis(f"per chip, {a.value:g} {a.unit} ({a.source})", a.si / 1e9, "GB",
                  _tags("chip")) for a in f.alt]
    return out


def _hbm_bandwidth(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
    f = c.cat.chip(TRN3).fields["hbm_bandwidth"]
    out = [Basis(f"per chip, {'; '.join(f.sources)}", f.si / 1e12, "TB/s", _tags("chip"))]
    out += [Basis(f"per chip, {a.source}", a.si / 1e12, "TB/s", _tags("chip", "alt"))
            for a in f.alt]
    return out


def _ratio_claim(key: str) -> Check:
    def check(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
        a, b = c.cat.chip(TRN3).fields[key], c.cat.chip(TRN2).fields[key]
        s3, s2 = c.cat.system(TRN3_SERVER), c.cat.system(TRN2_SERVER)
        out = [Basis(f"per chip, {a.value:g} {a.unit} / {b.value:g} {b.unit}", a.si / b.si,
                     tags=_tags("chip"))]
        out += [Basis(f"per chip, {p.value:g} {p.unit} / {q.value:g} {q.unit} ({p.source})",
                      p.si / q.si, tags=_tags("chip", "alt"))
                for p, q in zip(a.alt, b.alt, strict=False)]
        out.append(Basis(f"per UltraServer, {s3.n_chips} vs {s2.n_chips} chips",
                         a.si * s3.n_chips / (b.si * s2.n_chips), tags=_tags("server", "gen2")))
        return out
    return check


def _server_ratio(c: _Ctx, metric: Callable[[Any], float], label: str) -> list[Basis]:
    s3, s2, s64 = (c.cat.system(s) for s in (TRN3_SERVER, TRN2_SERVER, TRN3_SERVER_64))
    chip = metric(c.cat.chip(TRN3)) / metric(c.cat.chip(TRN2))
    return [Basis(f"per UltraServer ({s3.n_chips} vs {s2.n_chips} chips), {label}",
                  chip * s3.n_chips / s2.n_chips, tags=_tags("server", "gen2", label)),
            Basis(f"per Gen1 UltraServer ({s64.n_chips} vs {s2.n_chips} chips), {label}",
                  chip * s64.n_chips / s2.n_chips, tags=_tags("server", "gen1", label)),
            Basis(f"per chip, {label}", chip, tags=_tags("chip", label))]


def _server_compute(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
    out = []
    for label, p in PRECISIONS.items():
        out += _server_ratio(c, lambda ch, p=p: ch.peak(p), label)
    return out


def _server_bandwidth(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
    return _server_ratio(c, lambda ch: ch.hbm_bandwidth, "HBM")


def _chips_per_server(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
    return [Basis(f"{s.name}", float(s.n_chips), "chip", _tags("server", f"gen{g}"))
            for g, s in ((2, c.cat.system(TRN3_SERVER)), (1, c.cat.system(TRN3_SERVER_64)))]


def _cluster_size(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
    n = float(c.assume.cluster_chips)
    out = []
    for g, sid in ((2, TRN3_SERVER), (1, TRN3_SERVER_64)):
        per = c.cat.system(sid).n_chips
        out.append(Basis(f"UltraServers of {per} for {n:,.0f} chips",
                         float(power.units_needed(n, per)), "1", _tags("server", f"gen{g}")))
    gw = float(power.facility_power(power.it_power(n, x["trn3_power"], x["system_overhead"]),
                                    x["pue"])) / 1e9
    out.insert(0, Basis(f"facility power of {n:,.0f} chips at full load", gw, "GW",
                        _tags("power"), checkable=False))
    return out


# ------------------------------------------------------------- energy, power, cost, GPT-OSS
def _chip_w(tdp: float, compute_share: float, memory_share: float) -> float:
    """Average chip power [W] at the workload's activity (:func:`trnlab.perf.power.chip_power`)
    with the catalog's central idle share and memory weight."""
    p = load_economics().power
    return float(power.chip_power(tdp, p["idle_fraction"].si, compute_share, memory_share,
                                  p["memory_weight"].si))


def _workloads(c: _Ctx) -> list[tuple[str, frozenset[str], str, str]]:
    """(label, tags, kind, precision) of the energy bases: training at BF16/FP8, serving the
    dense and the MoE model at each precision."""
    a = c.assume
    out = [(f"training {a.model}, {label}", _tags("training", "dense", label), "train", p)
           for label, p in PRECISIONS.items() if p != "mxfp4"]
    for model, kind in ((a.serve_model, "dense"), (a.moe_model, "moe")):
        out += [(f"serving {model} at the SLO, {label}", _tags("serving", kind, label),
                 f"serve:{model}", p) for label, p in PRECISIONS.items()]
    return out


def _rate(c: _Ctx, x: Mapping[str, float], kind: str, system: str, precision: str
          ) -> tuple[float, float, float]:
    """(tokens/s per chip, compute share, memory share) of a workload; Trn3's throughput scaled
    by ``trn3_mfu`` and its scale-up bandwidth at ``trn3_scaleup``."""
    a = c.assume
    trn3 = c.cat.system(system).chip == TRN3
    bw = x["trn3_scaleup"] * 1e9 if trn3 else None
    if bw is not None and math.isclose(bw, c.cat.system(system).scaleup_bandwidth):
        bw = None
    scale = x["trn3_mfu"] if trn3 else 1.0
    if kind == "train":
        r = training_rate(a.model, system, a.n_chips, precision, bw)
        return r["tokens_per_s_per_chip"] * scale, r["compute_share"] * scale, r["memory_share"]
    r = slo_rate(kind.split(":", 1)[1], system, precision, a.input_len, a.output_len,
                 a.tpot_ms, a.ttft_ms, bw)
    share = min(1.0, r["compute_share"] * scale)
    return r["output_tokens_per_s_per_chip"] * scale, share, 1.0 - share


def _efficiency(c: _Ctx, x: Mapping[str, float], kind: str, precision: str
                ) -> tuple[float, float, float]:
    """(tokens/J Trn3 / Trn2, Trn3 chip power [W], Trn2 chip power [W]). System overhead and
    PUE multiply both generations' power alike and cancel in the ratio."""
    t3, a3, m3 = _rate(c, x, kind, TRN3_SERVER, precision)
    t2, a2, m2 = _rate(c, x, kind, TRN2_SERVER, precision)
    w3, w2 = _chip_w(x["trn3_power"], a3, m3), _chip_w(x["trn2_power"], a2, m2)
    return (t3 / w3) / (t2 / w2), w3, w2


def _energy_efficiency(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
    out = [Basis(f"per UltraServer = per chip, {label}", _efficiency(c, x, kind, p)[0],
                 tags=tags | _tags("server", "chip"))
           for label, tags, kind, p in _workloads(c)]
    compute = _server_ratio(c, lambda ch: ch.peak("fp8"), "FP8")[0].value
    less = c.published("less_power").published.value
    out.append(Basis(f"implied by the {compute:.2f}x FP8 compute and the {1 - less:.0%} less "
                     "power claims", compute / less, tags=_tags("claims")))
    return out


def _less_power(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
    a = c.assume
    claim = c.published("less_power")
    n3, n2 = c.cat.system(TRN3_SERVER).n_chips, c.cat.system(TRN2_SERVER).n_chips
    eff, w3, w2 = _efficiency(c, x, "train", a.precision)
    label = a.precision.upper()
    out = [Basis(f"power per chip, training {a.model} {label}", w3 / w2,
                 tags=_tags("power", "chip")),
           Basis(f"power per UltraServer ({n3} vs {n2} chips), training {a.model} {label}",
                 w3 * n3 / (w2 * n2), tags=_tags("power", "server")),
           Basis(f"energy per trained token, {label}", 1.0 / eff, tags=_tags("energy"))]
    for model in (a.serve_model, a.moe_model):
        e = _efficiency(c, x, f"serve:{model}", a.precision)[0]
        out.append(Basis(f"energy per served token, {model} {label}", 1.0 / e,
                         tags=_tags("energy")))
    if claim.relayed is not None:
        rel = claim.relayed.value
        out.append(Basis(f"as '{rel - 1:.0%} more energy-efficient', training {label}", eff,
                         target=rel, tags=_tags("relayed")))
        for model in (a.serve_model, a.moe_model):
            e = _efficiency(c, x, f"serve:{model}", a.precision)[0]
            out.append(Basis(f"as '{rel - 1:.0%} more energy-efficient', serving {model} "
                             f"{label}", e, target=rel, tags=_tags("relayed")))
    return out


def _cost_ratio(c: _Ctx, x: Mapping[str, float], kind: str, precision: str, trn: str,
                gpu: str, trn_price: float) -> float:
    """Cost per token of Trainium system ``trn`` at ``trn_price`` [USD/(chip*h)] / GPU system
    ``gpu`` at its newest on-demand price x ``gpu_price``."""
    a = c.assume
    if kind == "train":
        rate = [training_rate(a.model, s, a.n_chips, p)["tokens_per_s_per_chip"]
                for s, p in ((trn, precision), (gpu, precision))]
    else:
        rate = [slo_rate(a.serve_model, s, precision, a.input_len, a.output_len, a.tpot_ms,
                         a.ttft_ms)["output_tokens_per_s_per_chip"] for s in (trn, gpu)]
    return (trn_price / rate[0]) / (cloud_price(gpu) * x["gpu_price"] / rate[1])


def _cost(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
    a = c.assume
    out = []
    for gpu in GPUS:
        name = c.cat.system(gpu).chip.upper()
        out.append(Basis(f"Trn2 UltraServer vs on-demand {name}, training {a.model} "
                         f"{a.precision.upper()}, per token",
                         _cost_ratio(c, x, "train", a.precision, TRN2_SERVER, gpu,
                                     x["trn2_price"]), tags=_tags("trainium", "trn2", "training")))
        out.extend(Basis(f"Trn2 UltraServer vs on-demand {name}, serving {a.serve_model} at "
                         f"{label}, per token", _cost_ratio(c, x, "serve", PRECISIONS[label],
                                                            TRN2_SERVER, gpu, x["trn2_price"]),
                         tags=_tags("trainium", "trn2", "serving", label))
                   for label in ("BF16", "FP8"))
    out.append(Basis(f"Trn1 vs on-demand A100 40 GB (p4d), training {a.model} BF16, per token",
                     _cost_ratio(c, x, "train", "bf16", TRN1, A100_40, cloud_price(TRN1)),
                     tags=_tags("trainium", "trn1", "training")))
    # Trn3 has no price: the break-even price per chip-hour against on-demand H100 (no verdict)
    rates = {"tokens_per_s_per_chip": np.array([[training_rate(
        a.model, s, a.n_chips, a.precision)["tokens_per_s_per_chip"]] for s in
        (GPUS[0], TRN3_SERVER)]), "output_tokens_per_s_per_chip": np.ones((2, 1))}
    rates["tokens_per_s_per_chip"][1] *= x["trn3_mfu"]
    price = np.array([cloud_price(GPUS[0]) * x["gpu_price"], np.nan])
    be = break_even_prices(rates, price, price, 1, c.published("cost").published.value)
    out.append(Basis(f"Trn3 price per chip-hour for half H100's cost per trained token "
                     f"({a.precision.upper()})", float(be["training_cloud"][0]), "USD/(chip*h)",
                     _tags("trn3"), checkable=False))
    return out


def _gpt_oss(metric: str) -> Check:
    def check(c: _Ctx, x: Mapping[str, float]) -> list[Basis]:
        a = c.assume
        out = []
        for model, kind in ((a.gpt_oss_model, "moe"), (a.serve_model, "dense")):
            for label, p in PRECISIONS.items():
                bw = x["trn3_scaleup"] * 1e9
                if math.isclose(bw, c.cat.system(TRN3_SERVER).scaleup_bandwidth):
                    bw = None
                r3 = slo_rate(model, TRN3_SERVER, p, a.input_len, a.output_len, a.tpot_ms,
                              a.ttft_ms, bw)
                r2 = slo_rate(model, TRN2_SERVER, p, a.input_len, a.output_len, a.tpot_ms,
                              a.ttft_ms)
                if metric == "throughput":
                    v = r3["output_tokens_per_s_per_chip"] * x["trn3_mfu"] / \
                        r2["output_tokens_per_s_per_chip"]
                    what = "output tokens/s per chip at the SLO"
                else:
                    v = r2["fastest_tpot"] / (r3["fastest_tpot"] / x["trn3_mfu"])
                    what = "fastest time per output token, Trn2 / Trn3"
                out.append(Basis(f"{model} ({kind}), {label}: {what}", v,
                                 tags=_tags("serving", kind, label)))
        return out
    return check


CHECKS: dict[str, Check] = {
    "chip_peak": _chip_peak,
    "hbm_capacity": _hbm_capacity,
    "hbm_bandwidth": _hbm_bandwidth,
    "memory_vs_trn2": _ratio_claim("hbm_capacity"),
    "bandwidth_vs_trn2": _ratio_claim("hbm_bandwidth"),
    "server_compute": _server_compute,
    "server_bandwidth": _server_bandwidth,
    "chips_per_server": _chips_per_server,
    "cluster_size": _cluster_size,
    "energy_efficiency": _energy_efficiency,
    "less_power": _less_power,
    "cost": _cost,
    "gpt_oss_throughput": _gpt_oss("throughput"),
    "gpt_oss_latency": _gpt_oss("latency"),
}
#: the projected inputs each check depends on (the rows of its tornado)
_POWER = ("trn2_power", "trn3_power", "trn3_mfu", "trn3_scaleup")
INPUTS_OF: dict[str, tuple[str, ...]] = {
    "cluster_size": ("trn3_power", "system_overhead", "pue"),
    "energy_efficiency": _POWER, "less_power": _POWER,
    "cost": ("trn2_price", "gpu_price", "trn3_mfu"),
    "gpt_oss_throughput": ("trn3_mfu", "trn3_scaleup"),
    "gpt_oss_latency": ("trn3_mfu", "trn3_scaleup"),
}


# ---------------------------------------------------------------------- evaluating a claim
def evaluate(claim: Claim, ctx: _Ctx, inputs: Mapping[str, Input]) -> Verdict:
    """Every basis of ``claim`` at the central inputs and its two corners, the verdict by the
    rule (:mod:`trnlab.engine.verdicts`), the tornado of its projected inputs, and the reason
    written from those numbers."""
    check = CHECKS[claim.check]
    names = INPUTS_OF.get(claim.check, ())
    central, ends, lows, highs = corners(lambda x: check(ctx, x), inputs, names)
    a = assess(claim, central, ends, lows, highs, inputs, names)
    extra = NOTES.get(claim.check)
    text = reason(claim, a) + (f"; {extra(claim, a.bases, ctx, inputs)}" if extra else "")
    return verdict_row(claim, a, text, "projected" if names else "derived")


def _note_peak(claim: Claim, bases: Sequence[Basis], ctx: _Ctx, x: Any) -> str:
    v = {b.name.split(", ")[1].split()[0]: b.value for b in bases}
    return (f"FP4 (MXFP4) runs at {v['FP4'] / v['FP8']:.2f}x the FP8 rate ({v['FP4']:.3g} vs "
            f"{v['FP8']:.3g} PFLOP/s); BF16 is {v['BF16']:.3g} PFLOP/s, "
            f"{v['FP8'] / v['BF16']:.2f}x less")


def _note_capacity(claim: Claim, bases: Sequence[Basis], ctx: _Ctx, x: Any) -> str:
    vals = [b.value for b in bases]
    return (f"GB or GiB is not settled by AWS's own documents ({min(vals):.1f} vs "
            f"{max(vals):.1f} GB, {max(vals) / min(vals) - 1:.1%} apart); either reading gives at "
            f"least {published_text(claim)}")


def _note_server(claim: Claim, bases: Sequence[Basis], ctx: _Ctx, x: Any) -> str:
    s3, s2 = ctx.cat.system(TRN3_SERVER), ctx.cat.system(TRN2_SERVER)
    chip = next(b for b in bases if {"chip", *claim.basis} - {"server", "gen2"} <= b.tags)
    bf16 = [b for b in bases if {"chip", "bf16"} <= b.tags and b is not chip]
    text = (f"{s3.n_chips / s2.n_chips:.2f}x of it is more chips ({s3.n_chips} vs {s2.n_chips}); "
            f"per chip it is {chip.value:.2f}x")
    return text + (f", and at BF16 the chip gains {bf16[0].value:.2f}x" if bf16 else "")


def _note_cluster(claim: Claim, bases: Sequence[Basis], ctx: _Ctx,
                  inputs: Mapping[str, Input]) -> str:
    p = inputs["trn3_power"]
    return (f"at {p.central:,.0f} W per Trn3 chip ({p.low:,.0f}-{p.high:,.0f} W projected; no "
            f"Trainium power is published) plus system overhead and PUE the cluster needs "
            f"{bases[0].value:.2f} GW at full load; no Trn3 cluster of this size is reported")


def _note_energy(claim: Claim, bases: Sequence[Basis], ctx: _Ctx,
                 inputs: Mapping[str, Input]) -> str:
    compute = _server_ratio(ctx, lambda ch: ch.peak("fp8"), "FP8")[0].value
    less = ctx.published("less_power").published.value
    a = ctx.assume
    eff, w3, w2 = _efficiency(ctx, at(inputs), "train", a.precision)
    need = w3 * eff / claim.published.value
    return (f"internal consistency: {compute:.2f}x compute with {1 - less:.0%} less power implies "
            f"{compute / less:.1f}x perf/W, not {claim.published.value:g}x; on training "
            f"{a.model} at {a.precision.upper()} Trn3 draws {w3:,.0f} W vs Trn2's {w2:,.0f} W "
            f"per chip, and {claim.published.value:g}x would need Trn3 at {need:,.0f} W")


def _note_less_power(claim: Claim, bases: Sequence[Basis], ctx: _Ctx, x: Any) -> str:
    chip, server = bases[0].value, bases[1].value
    word = "more" if chip > 1 else "less"
    text = (f"a Trn3 chip draws {chip:.2f}x Trn2's power ({abs(chip - 1):.0%} {word}) and an "
            f"UltraServer {server:.2f}x at the central projected TDPs")
    rel = [b for b in bases if "relayed" in b.tags]
    if rel:
        text += (f"; read as '{claim.relayed.value - 1:.0%} more energy-efficient' the training "
                 f"basis gives {rel[0].value:.2f}x")
    return text


def _note_cost(claim: Claim, bases: Sequence[Basis], ctx: _Ctx,
               inputs: Mapping[str, Input]) -> str:
    trn3 = bases[-1]
    p = inputs["trn2_price"]
    return (f"Trn2 at ${p.central:.2f} per chip-hour (capacity block; spot ${p.low:.2f}); "
            f"serving precision is stated in each basis; Trn3 has no public price: it must rent "
            f"below ${trn3.value:.2f} per chip-hour for half H100's cost per trained token")


def _note_gpt(claim: Claim, bases: Sequence[Basis], ctx: _Ctx, x: Any) -> str:
    a = ctx.assume
    spec = _catalog.spec(a.gpt_oss_model)
    return (f"GPT-OSS is {a.gpt_oss_model} ({spec.total_params / 1e9:.1f}B parameters, "
            f"{spec.moe_active} of {spec.moe_experts} experts per token; the source states no "
            f"size, and its alternating sliding-window attention is modelled as full "
            f"attention), at input {a.input_len} / output {a.output_len} tokens, TPOT <= "
            f"{a.tpot_ms:g} ms, TTFT <= {a.ttft_ms:g} ms, weights, activations and KV cache in "
            f"each precision")


NOTES: dict[str, Callable[..., str]] = {
    "chip_peak": _note_peak, "hbm_capacity": _note_capacity, "server_compute": _note_server,
    "server_bandwidth": _note_server, "cluster_size": _note_cluster,
    "energy_efficiency": _note_energy, "less_power": _note_less_power, "cost": _note_cost,
    "gpt_oss_throughput": _note_gpt, "gpt_oss_latency": _note_gpt,
}


# ------------------------------------------------------------------------------ the ledger
def check_assumptions(assume: Assumptions) -> Assumptions:
    """``assume`` checked: ``cluster_chips`` and ``n_chips`` integers >= 1, known models and
    precision, lengths in 1..2^24, SLO targets > 0 [ms], and each range ``[low, central,
    high]`` finite, increasing and physical (power, throughput, bandwidth, prices > 0;
    overhead >= 0, PUE >= 1)."""
    where = "claims"
    if not isinstance(assume, Assumptions):
        raise checks.fail(where, "assume", assume, "an Assumptions (claims.assumptions(...))")
    checks.positive_int(where, "cluster_chips", assume.cluster_chips, checks.MAX_CLUSTER_CHIPS)
    checks.positive_int(where, "n_chips", assume.n_chips, checks.MAX_CHIPS)
    for name in ("model", "serve_model", "moe_model", "gpt_oss_model"):
        _catalog.model(checks.ident(where, name, getattr(assume, name), CatalogError))
    checks.choice(where, "precision", assume.precision, precision_bytes())
    for name in ("input_len", "output_len"):
        checks.positive_int(where, name, getattr(assume, name), checks.MAX_TOKENS)
    for name in ("tpot_ms", "ttft_ms"):
        checks.positive(where, name, getattr(assume, name), unit="ms")
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
    assume = check_assumptions(assume or Assumptions())
    claims = tuple(load_claims())
    ctx = _Ctx(cat or _catalog.default(), assume, claims)
    inputs = inputs_for(assume)
    return [evaluate(c, ctx, inputs) for c in claims]


_STR = {"units": "1"}


def ledger_dataset(rows: list[Verdict]) -> xr.Dataset:
    """The ledger as a Dataset with a ``claim`` dim, and the tornado on ``claim`` x ``input``.

    Coordinates along ``claim``: ``check`` (a key of :data:`CHECKS`) and ``claim_status``
    (``derived`` from catalog figures, ``projected`` when resting on projected inputs).
    ``value``/``low``/``high`` are the claim's primary basis at the central inputs and its two
    corners; ``bases`` and ``sensitivity`` hold the JSON lists of :meth:`Verdict.to_dict`.
    """
    names = list(dict.fromkeys(r["name"] for row in rows for r in row.sensitivity))
    labels = {r["name"]: r["input"] for row in rows for r in row.sensitivity}
    ds = xr.Dataset(coords={
        "claim": ("claim", [r.id for r in rows], {**_STR, "long_name": "claim id"}),
        "check": ("claim", [r.check for r in rows], {**_STR, "long_name": "kind of check"}),
        "claim_status": ("claim", [r.status for r in rows], {
            **_STR, "long_name": "derived (catalog figures) | projected (projected inputs)"}),
        "input": ("input", names, {**_STR, "long_name": "projected input"}),
        "input_label": ("input", [labels[n] for n in names], {**_STR,
                                                              "long_name": "projected input"}),
    })
    for key, long_name in (("claim_text", "claim as published"), ("source", "source keys"),
                           ("published", "published value"),
                           ("computed", "computed on every basis"),
                           ("verdict", "holds | partly | inconsistent | not-checkable"),
                           ("reason", "why"), ("decided_by", "basis that decides the verdict"),
                           ("primary", "basis of value, low, high and the tornado")):
        attr = "claim" if key == "claim_text" else key
        ds[key] = ("claim", np.array([getattr(r, attr) for r in rows]),
                   {**_STR, "long_name": long_name})
    ds["bases"] = ("claim", np.array([json.dumps(list(r.bases)) for r in rows]),
                   {**_STR, "long_name": "JSON list of {basis, computed, unit, verdict}"})
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
    shape = (len(rows), len(names))
    grids = {k: np.full(shape, np.nan) for k in ("low", "high", "computed_low",
                                                  "computed_high")}
    vgrid = {k: np.full(shape, "", dtype=object) for k in ("verdict_low", "verdict_high")}
    for i, row in enumerate(rows):
        for r in row.sensitivity:
            j = names.index(r["name"])
            for k, grid in (*grids.items(), *vgrid.items()):
                grid[i, j] = r[k]
    for k in ("low", "high"):
        ds[f"input_{k}"] = (("claim", "input"), grids[k], {
            "units": "1", "long_name": f"{k} end of the input, in its own unit"})
        ds[f"sensitivity_{k}"] = (("claim", "input"), grids[f"computed_{k}"], {
            "units": "1", "long_name": f"primary basis with the input at its {k} end "
                                       "(value_unit)"})
        ds[f"verdict_{k}"] = (("claim", "input"), vgrid[f"verdict_{k}"].astype(str), {
            **_STR, "long_name": f"verdict with the input at its {k} end"})
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
                trn2_power_w: Sequence[float] = (), trn3_mfu: Sequence[float] = (),
                trn3_scaleup_gbps: Sequence[float] = (), trn2_price: Sequence[float] = (),
                gpu_price: Sequence[float] = (), **kwargs: Any) -> Assumptions:
    """:class:`Assumptions` from notebook parameters: an empty list takes the catalog's range,
    otherwise ``[low, central, high]`` in increasing order; ``kwargs`` are passed on."""
    ranges = {}
    cluster_chips = checks.positive_int("claims", "cluster_chips", cluster_chips,
                                        checks.MAX_CLUSTER_CHIPS)
    given = {"chip_power_w": chip_power_w, "system_overhead": system_overhead, "pue": pue,
             "trn2_power_w": trn2_power_w, "trn3_mfu": trn3_mfu,
             "trn3_scaleup_gbps": trn3_scaleup_gbps, "trn2_price": trn2_price,
             "gpu_price": gpu_price}
    for name, v in given.items():
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
    unknown = [k for k in kwargs if k not in Assumptions.__dataclass_fields__ or k in given]
    if unknown:
        raise checks.fail("claims", "assumption", unknown[0],
                          f"allowed: {', '.join(Assumptions.__dataclass_fields__)}")
    return check_assumptions(Assumptions(cluster_chips=cluster_chips, **ranges, **kwargs))


def study(assume: Assumptions | None = None) -> xr.Dataset:
    """The claims study: the ledger (``claim`` dim, tornado on ``claim`` x ``input``) and the
    generation comparison."""
    assume = check_assumptions(assume or Assumptions())
    rows = ledger(assume)
    ds = xr.merge([ledger_dataset(rows), generations_dataset()], combine_attrs="override")
    ds.attrs = {"title": "Trainium3 claims ledger", "assumptions": json.dumps(asdict(assume)),
                "cluster_chips": assume.cluster_chips, "model": assume.model,
                "n_chips": assume.n_chips, "precision": assume.precision,
                "tolerance": TOLERANCE}
    ds.attrs["headline"] = headline(ds)
    return ds


# ------------------------------------------------------------------------------ the reading
def _row(ds: xr.Dataset, check: str) -> xr.Dataset | None:
    """The ledger row of the first claim checked by ``check`` (None if there is none)."""
    hits = [i for i, c in enumerate(ds["check"].values) if str(c) == check]
    return ds.isel(claim=hits[0]) if hits else None


def _num(row: xr.Dataset, key: str) -> float:
    return float(row[key])


def _pub(row: xr.Dataset) -> str:
    """The published number as published (``2.52 PFLOP/s``, ``4.4x``)."""
    unit = str(row["published_unit"].values)
    return f"{_num(row, 'published_value'):g}" + ("x" if unit == "1" else f" {unit}")


def headline(ds: xr.Dataset) -> str:
    """One sentence: the verdict counts, the energy-efficiency ratio on its primary basis
    against its claim and the facility power of the largest claimed cluster."""
    counts = Counter(str(v) for v in ds["verdict"].values)
    parts = [f"{counts[v]} {v.replace('holds', 'hold')}" for v in VERDICTS if counts[v]]
    out = f"Of {ds.sizes['claim']} Trainium3 claims {', '.join(parts)}"
    eff, cl = _row(ds, "energy_efficiency"), _row(ds, "cluster_size")
    if eff is not None:
        out += (f"; on {eff['primary'].values!s} Trn3 gives {_num(eff, 'value'):.2f}x Trn2's "
                f"tokens per joule ({_num(eff, 'low'):.2f}–{_num(eff, 'high'):.2f}x across the "
                f"input ranges) where {_pub(eff)} is claimed")
    gw = _gw(cl) if cl is not None else None
    if gw is not None:
        out += (f"; {int(ds.attrs['cluster_chips']):,} chips need {gw['computed']:.2f} GW "
                + (f"({gw['range'][0]:.2f}–{gw['range'][1]:.2f})" if "range" in gw else ""))
    return out


def _gw(row: xr.Dataset) -> dict[str, Any] | None:
    """The facility-power basis of the cluster claim (unit GW), from the row's ``bases``."""
    return next((b for b in json.loads(str(row["bases"].values)) if b["unit"] == "GW"), None)


_VERB_READ = {"holds": "holds", "partly": "holds only partly", "inconsistent": "does not hold",
              "not-checkable": "cannot be checked"}


#: the reading's bullets: title -> the checks it gathers (checks not listed go to "Other")
GROUPS = {"Compute": ("chip_peak", "server_compute"),
          "Memory": ("hbm_capacity", "hbm_bandwidth", "memory_vs_trn2", "bandwidth_vs_trn2",
                     "server_bandwidth"),
          "Scale": ("chips_per_server", "cluster_size"),
          "Power and energy": ("energy_efficiency", "less_power"),
          "Cost": ("cost",),
          "Published results": ("gpt_oss_throughput", "gpt_oss_latency")}


def _claim_sentence(ds: xr.Dataset, i: int) -> str:
    r = ds.isel(claim=i)
    verdict = str(r["verdict"].values)
    text = (f"\"{r['claim_text'].values!s}\" {_VERB_READ[verdict]} (decided by "
            f"{r['decided_by'].values!s}): {r['reason'].values!s}.")
    flips = []
    for j in range(ds.sizes.get("input", 0)):
        lo, hi = str(r["verdict_low"].values[j]), str(r["verdict_high"].values[j])
        if lo and lo != hi:
            flips.append(f"{ds['input_label'].values[j]!s} ({lo} at "
                         f"{float(r['input_low'].values[j]):g}, {hi} at "
                         f"{float(r['input_high'].values[j]):g})")
    return text + (" Flips with: " + "; ".join(flips) + "." if flips else "")


def reading(ds: xr.Dataset) -> str:
    """The reading of a :func:`study` Dataset as Markdown bullets, every number from ``ds``:
    one bullet per group of claims (compute, memory, scale, power and energy, cost, published
    results), each claim with its verdict, deciding basis, reason and the inputs that flip it."""
    checks_ = [str(c) for c in ds["check"].values]
    known = {c for group in GROUPS.values() for c in group}
    groups = {**GROUPS, "Other": tuple(c for c in checks_ if c not in known)}
    lines = []
    for title, members in groups.items():
        idx = [i for i, c in enumerate(checks_) if c in members]
        if idx:
            lines.append(f"- **{title}.** " + " ".join(_claim_sentence(ds, i) for i in idx))
    return "\n".join(lines)
