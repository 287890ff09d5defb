"""The verdict rule of the claims ledgers: one rule for every published claim trnlab checks.

A claim (:class:`Claim`: published value, the basis the source states, ``sense``) is recomputed
on every basis it could fairly mean (:class:`Basis`: a reading and the number it gives), as a
function of projected inputs (:class:`Input`: ``[low, central, high]``).

**The rule.** A basis reproduces a published number when, at the central inputs, the computed
number agrees within :data:`TOLERANCE` (``equal``), or is no worse than it (``at_least`` /
``at_most``, with the same tolerance), or falls in the published range. Each basis gets
``holds`` (reproduces it at the central inputs), ``partly`` (reproduces it only somewhere within
the input ranges: between its two corners, every input at the end that lowers, resp. raises, the
number), ``inconsistent`` (nowhere within the ranges) or ``not-checkable`` (no number to compare
with). The claim then (:func:`verdict_of`):

- **holds** when its own stated basis reproduces it: every basis carrying the tags the source
  states (``basis``) holds (``quantifier = "any"``, the 'up to' claims: one does);
- **partly** when only some fair bases reproduce it (hold, or hold within the input ranges);
- **inconsistent** when no fair basis reproduces it anywhere within the input ranges;
- **not-checkable** when nothing public constrains it (no basis has a number to compare with).

The deciding basis (:func:`decisive`) is the stated basis that holds, else the first that holds
or holds within the ranges, else the checkable basis coming closest to the target. Claims resting
on projected inputs carry a ``sensitivity`` (tornado, :func:`assess`): the number on the claim's
primary basis and the verdict with each input at its low and its high end, the others central.
Reasons are written from the computed numbers (:func:`reason`). Both ledgers
(:mod:`trnlab.studies.claims`, Trainium3; :func:`trnlab.studies.trainium4.claims`) apply it and
return :class:`Verdict` rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from trnlab.catalog.fields import Field

VERDICTS = ("holds", "partly", "inconsistent", "not-checkable")
TOLERANCE = 0.05  # relative difference within which a computed number reproduces a published one
SENSES = ("equal", "at_least", "at_most")
QUANTIFIERS = ("all", "any")
ENDS = ("low", "high")


# ------------------------------------------------------------------------------ records
@dataclass(frozen=True)
class Claim:
    """A published claim as written in ``data/claims``."""

    id: str
    text: str
    check: str
    published: Field
    basis: tuple[str, ...] = ()
    sense: str = "equal"
    quantifier: str = "all"
    target: Field | None = None  # what the checked quantity must reach, when not ``published``
    relayed: Field | None = None  # a likely relayed wording, tested as its own basis


@dataclass(frozen=True)
class Input:
    """A projected input: label, unit of its values, and ``[low, central, high]``."""

    name: str
    label: str
    unit: str
    low: float
    central: float
    high: float


@dataclass(frozen=True)
class Basis:
    """One reading of a claim and the number it gives (``value`` in ``unit``; NaN: none).

    ``target`` (NaN: the claim's) and ``target_range`` override what the number must reach;
    ``sense`` overrides the claim's; ``checkable=False`` marks a number shown but not judged."""

    name: str
    value: float
    unit: str = "1"
    tags: frozenset[str] = frozenset()
    target: float = math.nan
    target_range: tuple[float, float] | None = None
    sense: str | None = None
    checkable: bool = True


# ------------------------------------------------------------------------------ the rule
def reproduces(value: float, target: float, sense: str,
               target_range: tuple[float, float] | None) -> bool:
    """Whether ``value`` reproduces ``target`` (or lies in ``target_range``) under ``sense``."""
    if not math.isfinite(value):
        return False
    if target_range is not None:
        return target_range[0] <= value <= target_range[1]
    if sense == "at_least":
        return value >= target * (1 - TOLERANCE)
    if sense == "at_most":
        return value <= target * (1 + TOLERANCE)
    return abs(value / target - 1) <= TOLERANCE


def reproduces_within(low: float, high: float, target: float, sense: str,
                      target_range: tuple[float, float] | None) -> bool:
    """Whether some number between ``low`` and ``high`` reproduces the target."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return False
    lo, hi = min(low, high), max(low, high)
    if target_range is not None:
        return hi >= target_range[0] and lo <= target_range[1]
    if sense == "at_least":
        return hi >= target * (1 - TOLERANCE)
    if sense == "at_most":
        return lo <= target * (1 + TOLERANCE)
    return hi >= target * (1 - TOLERANCE) and lo <= target * (1 + TOLERANCE)


def target_of(b: Basis, claim: Claim) -> tuple[float, str, tuple[float, float] | None]:
    """(target, sense, target range) a basis's number must reach."""
    sense = b.sense or claim.sense
    if b.target_range is not None or math.isfinite(b.target):
        return b.target, sense, b.target_range
    if claim.target is not None:
        t = claim.target
        return t.value, sense, (t.range if t.range else None)
    return claim.published.value, sense, None


def basis_verdict(b: Basis, claim: Claim, low: float | None = None,
                  high: float | None = None) -> str:
    """The rule on one basis: holds / partly (only within the input ranges, ``low``..``high``)
    / inconsistent / not-checkable (no number, or nothing to compare it with)."""
    target, sense, rng = target_of(b, claim)
    if not b.checkable or not math.isfinite(b.value) or not (
            math.isfinite(target) or rng is not None):
        return "not-checkable"
    if reproduces(b.value, target, sense, rng):
        return "holds"
    lo = b.value if low is None else low
    hi = b.value if high is None else high
    return "partly" if reproduces_within(lo, hi, target, sense, rng) else "inconsistent"


def stated(b: Basis, claim: Claim) -> bool:
    """Whether ``b`` is the claim's own stated basis: it carries every tag the source states and
    is not an alternative reading (tag ``alt``, ``relayed``, ``claims``)."""
    return set(claim.basis) <= b.tags and not ({"alt", "relayed", "claims"} & b.tags)


def verdict_of(claim: Claim, bases: Sequence[Basis], verdicts: Sequence[str]) -> str:
    """The claim's verdict from its bases' verdicts (the rule of the module docstring)."""
    checkable = [(b, v) for b, v in zip(bases, verdicts, strict=True) if v != "not-checkable"]
    if not checkable:
        return "not-checkable"
    own = [v for b, v in checkable if stated(b, claim)]
    if own:
        agg = all if claim.quantifier == "all" else any
        if agg(v == "holds" for v in own):
            return "holds"
    if any(v in ("holds", "partly") for _, v in checkable):
        return "partly"
    return "inconsistent"


def point_verdict(claim: Claim, bases: Sequence[Basis]) -> str:
    """The claim's verdict from numbers at one point of the inputs (no ranges)."""
    return verdict_of(claim, bases, [basis_verdict(b, claim) for b in bases])


def decisive(claim: Claim, bases: Sequence[Basis], verdicts: Sequence[str],
             lows: Sequence[float], highs: Sequence[float]) -> int:
    """The basis that decides the verdict: the stated basis that holds (holds), else the first
    basis that holds or holds within the ranges (partly), else the checkable basis whose range
    comes closest to the target (inconsistent)."""
    order = sorted(range(len(bases)), key=lambda k: not stated(bases[k], claim))
    for wanted in (("holds",), ("partly",)):
        for k in order:
            if verdicts[k] in wanted:
                return k
    best, gap = 0, math.inf
    for k, b in enumerate(bases):
        target, _, rng = target_of(b, claim)
        if verdicts[k] == "not-checkable":
            continue
        t = rng[0] if rng else target
        d = min(abs(math.log(max(v, 1e-30) / t)) for v in (lows[k], highs[k], b.value)
                if math.isfinite(v) and v > 0) if t > 0 else math.inf
        if d < gap:
            best, gap = k, d
    return best


# ------------------------------------------------------------------------------ evaluation
Ends = Mapping[tuple[str, str], Sequence[Basis]]


def at(inputs: Mapping[str, Input], **ends: str) -> dict[str, float]:
    """Input values: every input central except ``name=low|high``."""
    return {n: getattr(i, ends.get(n, "central")) for n, i in inputs.items()}


def corners(check: Callable[[Mapping[str, float]], list[Basis]], inputs: Mapping[str, Input],
            names: Sequence[str]) -> tuple[list[Basis], dict[tuple[str, str], list[Basis]],
                                           list[float], list[float]]:
    """``check`` at the central inputs, with each input of ``names`` at each end (the tornado),
    and each basis's two corners (every input at the end that lowers, resp. raises, its
    number): (central bases, ends, lows, highs)."""
    central = check(at(inputs))
    ends = {(n, e): check(at(inputs, **{n: e})) for n in names for e in ENDS}
    lows, highs = [], []
    for k, b in enumerate(central):
        if not names:
            lows.append(b.value)
            highs.append(b.value)
            continue
        down = {n: min(ENDS, key=lambda e, n=n: ends[n, e][k].value) for n in names}
        up = {n: "high" if down[n] == "low" else "low" for n in names}
        lows.append(check(at(inputs, **down))[k].value)
        highs.append(check(at(inputs, **up))[k].value)
    return central, ends, lows, highs


@dataclass(frozen=True)
class Assessment:
    """A claim under the rule: its bases at the central inputs, their corners and verdicts, the
    claim's verdict, the deciding and the primary (tornado) basis, and the tornado."""

    bases: tuple[Basis, ...]
    lows: tuple[float, ...]
    highs: tuple[float, ...]
    verdicts: tuple[str, ...]
    verdict: str
    decisive: int
    primary: int
    rows: tuple[dict[str, Any], ...]
    sensitivity: tuple[dict[str, Any], ...]
    flips: tuple[str, ...]


def _primary(claim: Claim, bases: Sequence[Basis], names: Sequence[str], ends: Ends,
             k_decide: int) -> int:
    """The basis the tornado follows: the deciding basis if its number moves with an input,
    else the first stated basis whose number moves, else the first basis whose number moves,
    else the first stated basis."""
    moves = [k for k in range(len(bases)) if any(
        ends[n, e][k].value != bases[k].value for n in names for e in ENDS)]
    for pool in ([k for k in moves if k == k_decide],
                 [k for k in moves if stated(bases[k], claim)], moves,
                 [k for k, b in enumerate(bases) if stated(b, claim)]):
        if pool:
            return pool[0]
    return 0


def assess(claim: Claim, central: Sequence[Basis], ends: Ends, lows: Sequence[float],
           highs: Sequence[float], inputs: Mapping[str, Input],
           names: Sequence[str]) -> Assessment:
    """The rule applied to ``claim``'s numbers: each basis at the central inputs (``central``)
    and between its corners (``lows``, ``highs``), the claim's verdict, and the tornado of the
    inputs ``names`` (``ends[name, 'low'|'high']``: the bases with that input at that end)."""
    verdicts = [basis_verdict(b, claim, lo, hi)
                for b, lo, hi in zip(central, lows, highs, strict=True)]
    verdict = verdict_of(claim, central, verdicts)
    k_decide = decisive(claim, central, verdicts, lows, highs)
    k_primary = _primary(claim, central, names, ends, k_decide)
    rows = tuple(
        {"basis": b.name, "computed": sig(b.value, 4), "unit": b.unit, "verdict": v,
         "stated": stated(b, claim), "tags": sorted(b.tags),
         **({"range": [sig(lo), sig(hi)]} if names and math.isfinite(lo) else {}),
         **({"target": sig(target_of(b, claim)[0])} if math.isfinite(b.target) else {})}
        for b, v, lo, hi in zip(central, verdicts, lows, highs, strict=True))
    point = point_verdict(claim, central)
    sens, flips = [], []
    for n in names:
        i = inputs[n]
        row = {"input": i.label, "name": n, "unit": i.unit, "low": sig(i.low, 4),
               "high": sig(i.high, 4), "central": sig(i.central, 4),
               "computed_low": sig(ends[n, "low"][k_primary].value, 4),
               "computed_high": sig(ends[n, "high"][k_primary].value, 4),
               "verdict_low": point_verdict(claim, ends[n, "low"]),
               "verdict_high": point_verdict(claim, ends[n, "high"])}
        sens.append(row)
        if point not in (row["verdict_low"], row["verdict_high"]) or \
                row["verdict_low"] != row["verdict_high"]:
            flips.append(n)
    return Assessment(tuple(central), tuple(lows), tuple(highs), tuple(verdicts), verdict,
                      k_decide, k_primary, rows, tuple(sens), tuple(flips))


# ------------------------------------------------------------------------------ text
def fmt(v: float, unit: str) -> str:
    """A computed number for a reason (``4.36x``, ``2,517 TFLOP/s``, ``n/a``)."""
    if not math.isfinite(v):
        return "n/a"
    if unit == "1":
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}x"
    return f"{v:,.0f} {unit}" if abs(v) >= 1000 else f"{v:.3g} {unit}"


def published_text(claim: Claim) -> str:
    """The published number as published (``2.52 PFLOP/s``, ``6``)."""
    pub = claim.published
    number = f"{int(pub.value):,}" if float(pub.value).is_integer() else f"{pub.value:g}"
    return number + ("" if pub.unit == "1" else f" {pub.unit}")


def reason(claim: Claim, a: Assessment) -> str:
    """The reason of the verdict, every number from the bases (ledgers append their notes)."""
    pub = published_text(claim)
    k = a.decisive
    b, lo, hi = a.bases[k], a.lows[k], a.highs[k]
    rng = f" ({fmt(lo, b.unit)}-{fmt(hi, b.unit)} across the input ranges)" if lo != hi else ""
    good = [x.name for x, v in zip(a.bases, a.verdicts, strict=True) if v == "holds"]
    within = [x.name for x, v in zip(a.bases, a.verdicts, strict=True) if v == "partly"]
    n = sum(v != "not-checkable" for v in a.verdicts)
    target, _, trange = target_of(b, claim)
    want = (f"{trange[0]:,.0f}-{trange[1]:,.0f}" if trange else fmt(target, b.unit)
            if b.unit == claim.published.unit else pub)
    if a.verdict == "holds":
        return (f"on its stated basis ({b.name}) the catalog gives {fmt(b.value, b.unit)}{rng} "
                f"against {want}")
    if a.verdict == "partly":
        text = (f"{len(good)} of {n} fair bases reproduce {pub} at the central inputs"
                + (f", {len(within)} only within the input ranges" if within else "")
                + f"; e.g. {b.name}: {fmt(b.value, b.unit)}{rng}")
        own = [x for x in a.bases if stated(x, claim)]
        if own and own[0] is not b:
            text += f"; on the stated basis ({own[0].name}) {fmt(own[0].value, own[0].unit)}"
        return text
    if a.verdict == "inconsistent":
        return (f"no fair basis reproduces {want} within the input ranges; the closest is "
                f"{b.name}: {fmt(b.value, b.unit)}{rng}")
    return "nothing public gives a number to compare with"


# ------------------------------------------------------------------------------ the row
@dataclass(frozen=True, kw_only=True)
class Verdict:
    """One row of a ledger."""

    id: str
    claim: str
    source: str
    published: str
    check: str
    verdict: str
    reason: str
    computed: str
    bases: tuple[dict[str, Any], ...]
    sensitivity: tuple[dict[str, Any], ...] = ()
    decided_by: str = ""
    primary: str = ""
    value: float = math.nan
    low: float = math.nan
    high: float = math.nan
    unit: str = "1"
    status: str = "derived"
    published_value: float = math.nan
    published_unit: str = "1"
    flips: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        """The JSON row of ``trnlab claims --json``."""
        out: dict[str, Any] = {"id": self.id, "claim": self.claim, "source": self.source,
                               "published": self.published, "computed": self.computed,
                               "verdict": self.verdict, "reason": self.reason,
                               "decided_by": self.decided_by, "bases": list(self.bases),
                               "sensitivity": list(self.sensitivity),
                               "flips": list(self.flips), "status": self.status}
        if math.isfinite(self.low) and math.isfinite(self.high):
            out["range"] = [sig(self.low), sig(self.high)]
            out["range_unit"] = self.unit
        return json_safe(out)


def row(claim: Claim, a: Assessment, reason_text: str, status: str) -> Verdict:
    """The ledger row of an assessed claim."""
    p = a.bases[a.primary]
    return Verdict(id=claim.id, claim=claim.text, source="; ".join(claim.published.sources),
                   published=published_text(claim), check=claim.check, verdict=a.verdict,
                   reason=reason_text,
                   computed="; ".join(f"{b.name}: {fmt(b.value, b.unit)}" for b in a.bases),
                   bases=a.rows, sensitivity=a.sensitivity, decided_by=a.bases[a.decisive].name,
                   primary=p.name, value=p.value, low=a.lows[a.primary],
                   high=a.highs[a.primary], unit=p.unit, status=status,
                   published_value=float(claim.published.value),
                   published_unit=claim.published.unit, flips=a.flips)


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN and infinities as None (strict JSON)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    return obj


def sig(x: float, digits: int = 3) -> float:
    """``x`` rounded to ``digits`` significant digits (non-finite values unchanged)."""
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x
