"""The ``trnlab`` command: ``catalog``, ``claims``, ``report``.

Bad input prints one line (``trnlab: error: ...``) and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from trnlab import __version__
from trnlab.errors import TrnlabError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage block) and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"trnlab: error: {message} (see '{self.prog} --help')\n")


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, allow_nan=False, default=str))


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
    line = lambda r: "  ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=True))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _si(x: float, unit: str) -> str:
    if not math.isfinite(x):
        return "-"
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G")):
        if abs(x) >= scale:
            return f"{x / scale:.4g} {prefix}{unit}"
    return f"{x:.4g} {unit}"


# ----------------------------------------------------------------------------------- catalog
def cmd_catalog(args: argparse.Namespace) -> int:
    from trnlab import catalog

    cat = catalog.default()
    if args.id:
        entry = cat.entry(args.id)
        if args.json:
            _print_json(entry.to_dict())
            return 0
        print(f"{entry.id}: {entry.name}  ({entry.file})")
        rows = [[k, f"{f.value:g}", f.unit, f.status, "; ".join(f.sources),
                 f"[{f.range[0]:g}, {f.range[1]:g}]" if f.range else "",
                 "; ".join(f"{a.value:g} {a.unit}" for a in f.alt)]
                for k, f in entry.fields.items()]
        print(_table(rows, ["field", "value", "unit", "status", "source", "range", "alt"]))
        return 0
    if args.json:
        _print_json({"chips": [c.to_dict() for c in cat.chips.values()],
                     "systems": [s.to_dict() for s in cat.systems.values()],
                     "networks": [n.to_dict() for n in cat.networks.values()],
                     "prices": [p.to_dict() for p in cat.prices.values()],
                     "digest": cat.digest})
        return 0
    print(_table([[c.id, c.name, _si(c.peak("bf16"), "FLOP/s"), _si(c.peak("fp8"), "FLOP/s"),
                   _si(c.hbm_capacity, "B"), _si(c.hbm_bandwidth, "B/s"), f"{c.tdp:.0f} W",
                   c.fields["tdp"].status] for c in cat.chips.values()],
                 ["chip", "name", "bf16", "fp8-class", "hbm", "hbm bw", "power", "power status"]))
    print()
    print(_table([[s.id, s.name, s.chip, str(s.n_chips), s.scaleup_topology, s.scaleout]
                  for s in cat.systems.values()],
                 ["system", "name", "chip", "chips", "scale-up", "scale-out"]))
    print(f"\n{len(cat.chips)} chips, {len(cat.systems)} systems, {len(cat.networks)} networks, "
          f"{len(cat.prices)} prices; catalog digest {cat.digest}")
    return 0


# ------------------------------------------------------------------------------------ claims
def cmd_claims(args: argparse.Namespace) -> int:
    from trnlab.studies import claims

    rows = claims.ledger()
    if args.json:
        _print_json([r.to_dict() for r in rows])
        return 0
    for r in rows:
        print(f"[{r.verdict}] {r.claim}\n    published: {r.published}\n    computed:  "
              f"{r.computed}\n    reason:    {r.reason}\n")
    return 0


# ------------------------------------------------------------------------------------ report
def cmd_report(args: argparse.Namespace) -> int:
    from trnlab import report

    if args.list:
        for nb in report.available():
            print(nb.stem)
        return 0
    params = dict(args.parameter or [])
    result = report.run(args.notebooks, params, out=args.out, timeout=args.timeout,
                        jobs=args.jobs, progress=not args.no_progress)
    for r in result.runs:
        print(f"{r.status:6s} {r.duration:6.1f} s  {r.name}" + (f"  {r.error}" if r.error else ""))
    print(f"report: {result.index}")
    return 0 if result.ok else 1


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trnlab", description="Study AI accelerators (Trainium3 first) for "
                     "LLM training and inference.")
    parser.add_argument("--version", action="version", version=f"trnlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("catalog", help="list the hardware catalog or show one entry")
    p.add_argument("id", nargs="?", help="chip, system, network or price id (e.g. trn3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("claims", help="the Trainium3 claims ledger")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {claim, published, computed, verdict, reason}")
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser("report", help="run notebooks into reports/<run>/ (ipynb, html, .nc)")
    p.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a notebook parameter (checked against the notebook's declaration)")
    p.add_argument("--out", help="run directory (default reports/<timestamp>)")
    p.add_argument("--timeout", type=float, default=600, help="per-cell timeout [s]")
    p.add_argument("--jobs", type=int, default=2, help="notebooks run at once")
    p.add_argument("--list", action="store_true", help="list the notebooks and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``trnlab`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except TrnlabError as err:
        print(f"trnlab: error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
