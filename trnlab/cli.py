"""The ``trnlab`` command: ``catalog``, ``claims``, ``compare``, ``report``, ``search``, ``serve``,
``validate``, ``calibrate``, ``scale``, ``bench``.

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
                     "fabrics": [f.to_dict() for f in cat.fabrics.values()],
                     "prices": [p.to_dict() for p in cat.prices.values()],
                     "digest": cat.digest})
        return 0
    print(_table([[c.id, c.name, _si(c.peak("bf16"), "FLOP/s"), _si(c.peak("fp8"), "FLOP/s"),
                   _si(c.hbm_capacity, "B"), _si(c.hbm_bandwidth, "B/s"), f"{c.tdp:.0f} W",
                   c.fields["tdp"].status] for c in cat.chips.values()],
                 ["chip", "name", "bf16", "fp8-class", "hbm", "hbm bw", "power", "power status"]))
    print()
    print(_table([[s.id, s.name, " + ".join(f"{n} {c}" for c, n in s.chip_counts.items())
                   if s.mixed else s.chip, str(s.n_chips), s.scaleup_topology, s.scaleout]
                  for s in cat.systems.values()],
                 ["system", "name", "chip", "chips", "scale-up", "scale-out"]))
    print(f"\n{len(cat.chips)} chips, {len(cat.systems)} systems, {len(cat.networks)} networks, "
          f"{len(cat.prices)} prices; catalog digest {cat.digest}")
    return 0


# ------------------------------------------------------------------------------------ claims
def claim_ledgers() -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, rows) of each claims ledger, both under the one verdict rule of
    :mod:`trnlab.engine.verdicts`: Trainium3, then Trainium4."""
    from trnlab.studies import claims, trainium4

    return [("Trainium3 claims", [r.to_dict() for r in claims.ledger()]),
            ("Trainium4 claims", [r.to_dict() for r in trainium4.claims()])]


def claim_rows() -> list[dict[str, Any]]:
    """Every ledger's rows as JSON dicts (keys id, claim, source, published, computed, verdict,
    reason, decided_by, bases, sensitivity, flips, status, range): the Trainium3 rows followed by
    the Trainium4 rows."""
    return [r for _, rows in claim_ledgers() for r in rows]


def cmd_claims(args: argparse.Namespace) -> int:
    ledgers = claim_ledgers()
    if args.json:
        _print_json([r for _, rows in ledgers for r in rows])
        return 0
    for title, rows in ledgers:
        print(f"== {title} ({len(rows)}) ==\n")
        for r in rows:
            print(f"[{r['verdict']}] {r['claim']}\n    published:  {r['published']}\n    "
                  f"decided by: {r['decided_by']}\n    reason:     {r['reason']}")
            for s in r["sensitivity"]:
                print(f"    {s['input']:<26} {s['low']:>8g} -> {s['computed_low']:<8g} "
                      f"({s['verdict_low']}); {s['high']:>8g} -> {s['computed_high']:<8g} "
                      f"({s['verdict_high']})")
            print()
    return 0


# ----------------------------------------------------------------------------------- compare
def cmd_compare(args: argparse.Namespace) -> int:
    from trnlab.studies import peers

    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    ds = peers.study(peers.check_systems(systems), dense_model=args.dense_model,
                     moe_model=args.moe_model, precision=args.precision, tpot_ms=args.tpot_ms,
                     ttft_ms=args.ttft_ms, n_samples=args.samples)
    rows = peers.table(ds)
    if args.json:
        _print_json([{k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                      for k, v in r.items()} for r in rows])
        return 0
    num = lambda v, f: "-" if not math.isfinite(v) else format(v, f)
    band = lambda r, key: "-" if not math.isfinite(r[f"{key} p50"]) else (
        f"{r[f'{key} p50']:.3g} [{r[f'{key} p5']:.3g}-{r[f'{key} p95']:.3g}]")
    keys = [("PF BF16", ".0f"), ("PF FP8", ".0f"), ("PF FP4", ".0f"), ("HBM TB", ".1f"),
            ("HBM TB/s", ".0f"), ("kW", ".0f"), ("USD/h", ".0f")]
    print(_table([[r["system"], str(r["chips"]), *(num(r[k], f) for k, f in keys)]
                  for r in rows], ["system", "chips", *(k for k, _ in keys)]))
    for wl in ("dense", "moe"):
        model = ds["model"].sel(workload=wl).item()
        print(f"\n{model} ({wl}) at {ds.attrs['precision']}, TPOT <= {args.tpot_ms:g} ms, "
              f"TTFT <= {args.ttft_ms:g} ms (p50 [p5-p95])")
        print(_table([[r["system"], num(r[f"{wl} tokens/s"], ",.0f"),
                       band(r, f"{wl} tokens/J"), band(r, f"{wl} USD/M tokens"), r["cost basis"]]
                      for r in rows],
                     ["system", "tokens/s per rack", "tokens/J", "USD/M tokens", "cost basis"]))
    return 0


# ------------------------------------------------------------------------------------ report
def cmd_report(args: argparse.Namespace) -> int:
    try:
        from trnlab import report

        if args.list:
            for nb in report.available():
                print(nb.stem)
            return 0
        result = report.run(args.notebooks, dict(args.parameter or []), out=args.out,
                            timeout=args.timeout, jobs=args.jobs, progress=not args.no_progress)
    except KeyboardInterrupt as stop:  # report.ReportInterrupted: kernels stopped, index written
        print(str(stop) or "interrupted: no notebook was started", file=sys.stderr)
        return 128 + getattr(stop, "signum", 2)  # 130 for SIGINT
    for r in result.runs:
        print(f"{r.status:6s} {r.duration:6.1f} s  {r.name}" + (f"  {r.error}" if r.error else ""))
    print(f"report: {result.index}")
    return 0 if result.ok else 1


# ------------------------------------------------------------------------------- training
def _expert_tp_text(expert_tp: int) -> str:
    """The search header's words for a MoE layout's expert-TP size ('' for the default 1)."""
    return {1: "", 0: ", expert-TP = TP"}.get(expert_tp, f", expert-TP {expert_tp}")


def cmd_search(args: argparse.Namespace) -> int:
    from trnlab.engine import training

    ds = training.search(args.model, args.system, args.chips, precision=args.precision,
                         seq_len=args.seq, global_batch=args.global_batch, top=args.top,
                         power_cap_w=args.power_cap, attention_precision=args.attention,
                         activation_offload=args.offload,
                         optimizer_offload=args.optimizer_offload, expert_tp=args.expert_tp)
    rows = [training.best_row(ds, i) for i in range(min(args.top, ds.sizes["config"]))]
    if args.json:
        _print_json({"model": ds.attrs["model"], "system": ds.attrs["system"],
                     "n_chips": ds.attrs["n_chips"], "global_batch": ds.attrs["global_batch"],
                     "optimizer_offload": bool(ds.attrs["optimizer_offload"]),
                     "expert_tp": ds.attrs["expert_tp"],
                     "n_evaluated": ds.attrs["n_evaluated"], "n_valid": ds.attrs["n_valid"],
                     "invalid_by_reason": json.loads(ds.attrs["invalid_by_reason"]),
                     "layouts": rows})
        return 0
    print(f"{ds.attrs['model']} on {args.chips:,} x {ds.attrs['chip']} ({args.system}), "
          f"{args.precision}, seq {args.seq}, global batch {ds.attrs['global_batch']}"
          f"{', optimizer on the host CPU' if ds.attrs['optimizer_offload'] else ''}"
          f"{_expert_tp_text(ds.attrs['expert_tp'])}: "
          f"{ds.attrs['n_valid']:,} valid of {ds.attrs['n_evaluated']:,} layouts")
    if not rows:
        print("no valid layout; invalid by reason: " + ds.attrs["invalid_by_reason"])
        return 0
    print(_table([[str(r[k]) for k in ("tp", "pp", "dp", "cp", "ep", "vpp", "zero", "recompute",
                                       "micro_batch")]
                  + [f"{r['tokens_per_s_per_chip']:.1f}", f"{r['mfu']:.3f}",
                     f"{r['step_time']:.2f}", f"{r['mem_per_chip'] / 2**30:.1f}"] for r in rows],
                 ["tp", "pp", "dp", "cp", "ep", "vpp", "zero", "recompute", "mb", "tok/s/chip",
                  "mfu", "step s", "GiB/chip"]))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from trnlab.engine import serving

    ds = serving.frontier(args.model, args.system, input_len=args.input,
                            output_len=args.output, ttft_ms=args.ttft_ms, tpot_ms=args.tpot_ms,
                            weights=args.weights, activations=args.activations, kv=args.kv,
                            price_per_chip_hour=args.price, power_cap_w=args.power_cap)
    front = ds.where(ds["pareto"], drop=True).sortby("tpot")
    rows = [{k: (int(front[k][i]) if k in ("tp", "pp", "ep", "adp", "batch")
                 else float(front[k][i]))
             for k in ("tp", "pp", "ep", "adp", "batch", "ttft", "tpot",
                       "output_tokens_per_s_per_chip", "chip_s_per_m_tokens", "usd_per_m_tokens")}
            for i in range(front.sizes["config"])]
    best = serving.best(ds)
    price = float(ds.attrs["price_per_chip_hour"])
    priced = math.isfinite(price)
    no_price = f"no list price for {args.system}; pass --price USD/chip-hour"
    if args.json:  # JSON has no NaN: a missing price is null
        plain = lambda row: {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                             for k, v in row.items()}
        _print_json({"model": ds.attrs["model"], "system": args.system, "input": args.input,
                     "output": args.output, "ttft_ms": args.ttft_ms, "tpot_ms": args.tpot_ms,
                     "price_per_chip_hour": price if priced else None,
                     "best": plain(best), "frontier": [plain(r) for r in rows]})
        return 0
    slo = ", ".join(f"{k} <= {v:g} ms" for k, v in (("ttft", args.ttft_ms),
                                                     ("tpot", args.tpot_ms)) if v is not None)
    print(f"{ds.attrs['model']} on {args.system} ({ds.attrs['chip']}), input {args.input}, "
          f"output {args.output}, SLO: {slo or 'none (pass --ttft-ms, --tpot-ms)'}"
          + (f", {price:.4g} USD/chip-hour" if priced else ""))
    if not priced:
        print(no_price)
    if not rows:
        print("no layout meets the targets")
        return 0
    usd = (lambda r: [f"{r['usd_per_m_tokens']:.2f}"]) if priced else (lambda r: [])
    print(_table([[str(r["tp"]), str(r["pp"]), str(r["adp"]), str(r["batch"]),
                   f"{r['ttft'] * 1e3:.0f}", f"{r['tpot'] * 1e3:.1f}",
                   f"{r['output_tokens_per_s_per_chip']:.1f}",
                   f"{r['chip_s_per_m_tokens']:.0f}", *usd(r)]
                  for r in rows],
                 ["tp", "pp", "adp", "batch", "ttft ms", "tpot ms", "out tok/s/chip",
                  "chip-s / M tok", *(["USD / M tok"] if priced else [])]))
    return 0


def cmd_hetero(args: argparse.Namespace) -> int:
    from trnlab import catalog
    from trnlab.errors import ParameterError
    from trnlab.studies import trainium4

    system = catalog.system(args.system)
    if not system.mixed:
        raise ParameterError(f"hetero: system = {args.system!r}: not a mixed domain; allowed: "
                             + ", ".join(s.id for s in catalog.default().systems.values()
                                         if s.mixed))
    ds = trainium4.study(model=args.model, moe_model=args.moe_model, train_model=args.model,
                         input_len=args.input, output_len=args.output, tpot_ms=args.tpot_ms,
                         ttft_ms=args.ttft_ms, precision=args.precision,
                         n_samples=args.samples, seed=args.seed, workloads=args.workload)
    band = lambda var, i: [float(v) for v in ds[var].isel(option=i).values]
    rows = [{"workload": str(ds["workload"].values[i]), "option": str(ds["label"].values[i]),
             "kind": str(ds["kind"].values[i]), "fabric_mode": str(ds["fabric_mode"].values[i]),
             **{k: band(k, i) for k in ("tokens_per_s_per_rack", "usd_per_m_tokens",
                                        "tokens_per_joule", "share")}}
            for i in range(ds.sizes["option"])]
    gains = {w: {"gain_usd_p5_p50_p95": [float(v) for v in ds["gain"].sel(
        conclusion=w, metric="usd_per_m_tokens", fabric="rdma").values],
        "decided_by": trainium4.decisive_input(ds, w)[0],
        "survives_all_ranges": trainium4.survives(ds, w)} for w in args.workload}
    if args.json:
        clean = lambda v: [x if math.isfinite(x) else None for x in v]
        _print_json({"system": args.system, "members": system.chip_counts,
                     "headline": ds.attrs["headline"], "gains": {
                         w: {**g, "gain_usd_p5_p50_p95": clean(g["gain_usd_p5_p50_p95"])}
                         for w, g in gains.items()},
                     "options": [{k: (clean(v) if isinstance(v, list) else v)
                                  for k, v in r.items()} for r in rows]})
        return 0
    cell = lambda v, f: "-" if not math.isfinite(v[1]) else \
        f"{v[1]:{f}} [{v[0]:{f}}-{v[2]:{f}}]"
    print(f"{args.system} ({' + '.join(f'{n} {c}' for c, n in system.chip_counts.items())}), "
          f"p50 [p5-p95] over {args.samples} draws")
    print(_table([[r["workload"], r["option"], cell(r["tokens_per_s_per_rack"], ".3g"),
                   cell(r["usd_per_m_tokens"], ".3g"), cell(r["tokens_per_joule"], ".3g")]
                  for r in rows],
                 ["workload", "option", "tokens/s per rack", "USD / M tokens", "tokens / J"]))
    print()
    print(trainium4.reading(ds))
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trnlab.calibration import validate

    out = validate.check_output(Path(args.out), Path(args.cases))  # before any work
    rows = validate.read_cases(Path(args.cases))
    preds = validate.predict(rows)
    validate.write_predictions(rows, preds, out)
    for src, (n, err) in validate.by_source(preds).items():
        print(f"{src:20s} {n:3d} cases  MAPE {err:6.1%}")
    skipped = sum(1 for p in preds if p.predicted != p.predicted)
    print(f"{'overall':20s} {sum(n for n, _ in validate.by_source(preds).values()):3d} cases  "
          f"MAPE {validate.mape(preds):6.1%}   ({skipped} not predicted, see 'why')")
    for label, (n, err, med) in validate.fit_split(preds).items():
        print(f"{label:20s} {n:3d} cases  MAPE {err:6.1%}   median {med:.1%}")
    fit, n = validate.layouts_that_fit(preds)
    if n:
        print(f"{'memory':20s} {fit:3d} of {n} training layouts fit our memory model "
              "(every published run fitted)")
    print(f"predictions: {args.out}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from trnlab._paths import data_dir
    from trnlab.calibration import fit

    cases = Path(args.cases) if args.cases else data_dir() / "measurements" / "cases.csv"
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if not args.quiet else None
    if not args.scores or args.write:
        result = fit.run(cases, with_loso=not args.no_loso, write=args.write, progress=say)
        print(fit.summary(result))
        print("written: " + ", ".join(str(f.path) for f in result.values()) if args.write else
              "nothing written: pass --write to write these values to data/perf/")
    if args.scores:  # with --write, kept in data/perf/scores.toml for notebook 00
        from trnlab.calibration import scores, validate

        result = scores.run(validate.read_cases(cases), progress=say)
        print(scores.report(result))
        if args.write:
            print(f"written: {scores.write_record(result, cases)}")
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    from trnlab.engine import scale

    r = scale.evaluate_run(args.model, args.system, args.chips, precision=args.precision,
                           train_tokens=args.tokens, n_trials=args.trials, seed=args.seed,
                           recovery=args.recovery, spares=not args.no_spares)
    if args.json:
        _print_json(r)
        return 0
    g, d, p = r["goodput_band"], r["days_to_train_band"], r["facility_power_mw_band"]
    print(f"{r['model']} on {r['n_chips']:,} x {r['chip']} ({r['system']}, {r['fabric']}), "
          f"{r['precision']}, {r['batch_tokens'] / 1e6:.1f}M tokens/step, {r['recovery']}\n"
          f"layout {r['layout']}\n"
          f"tokens/s/chip {r['tokens_per_s_per_chip']:.1f}  mfu {r['mfu']:.3f}  "
          f"largest non-compute term {r['dominant_term']}\n"
          f"job MTBF {r['job_mtbf_h']:.2f} h  checkpoint every "
          f"{r['checkpoint_interval_min']:.2f} min  restart {r['restart_min']:.1f} min\n"
          f"goodput {g['p50']:.3f} [{g['p5']:.3f}, {g['p95']:.3f}]  days to train "
          f"{d['p50']:.1f} [{d['p5']:.1f}, {d['p95']:.1f}]  facility {p['p50']:.1f} MW "
          f"[{p['p5']:.1f}, {p['p95']:.1f}]  (p50 [p5, p95] of {r['n_trials']} runs)")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from trnlab import bench

    result = bench.run(quick=args.quick)
    if args.json:
        _print_json(result)
    else:
        for key, value in result.items():
            print(f"{key:24s} {value}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="trnlab", description="Study AI accelerators (Trainium3 first) for "
                     "LLM training and inference.")
    parser.add_argument("--version", action="version", version=f"trnlab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("catalog", help="list the hardware catalog or show one entry")
    p.add_argument("id", nargs="?", help="chip, system, network or price id (e.g. trn3)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_catalog)

    p = sub.add_parser("claims", help="the Trainium3 and Trainium4 claims ledgers")
    p.add_argument("--json", action="store_true",
                   help="print a JSON list of {id, claim, source, published, verdict, reason, "
                   "bases, sensitivity}")
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser("compare", help="rack-level peer table (peaks, HBM, power, price, "
                       "serving tokens/s, tokens/J, USD per million tokens)")
    p.add_argument("--systems", default="trn3-ultraserver,gb300-nvl72,gb200-nvl72,tpu-v7-pod,"
                   "mi355x-8", help="comma-separated system ids (default: the five racks)")
    p.add_argument("--dense-model", default="llama3-70b", help="dense served model")
    p.add_argument("--moe-model", default="qwen3-235b-a22b", help="MoE served model")
    p.add_argument("--precision", default="fp8", help="weights, activations and KV precision")
    p.add_argument("--tpot-ms", type=float, default=50.0, help="TPOT target [ms]")
    p.add_argument("--ttft-ms", type=float, default=2000.0, help="TTFT target [ms]")
    p.add_argument("--samples", type=int, default=2000, help="Monte-Carlo samples of the bands")
    p.add_argument("--json", action="store_true", help="print a JSON list, one row per rack")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("report", help="run notebooks into reports/<run>/ (ipynb, html, .nc)")
    p.add_argument("notebooks", nargs="*", help="notebook names (default: all)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                   help="set a notebook parameter (checked against the notebook's declaration)")
    p.add_argument("--out", help="run directory (default reports/<timestamp>)")
    p.add_argument("--timeout", type=float, default=600, help="per-cell timeout [s] (>= 1)")
    p.add_argument("--jobs", type=int, default=2, help="notebooks run at once (>= 1)")
    p.add_argument("--list", action="store_true", help="list the notebooks and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("search", help="best parallel layouts of a model on n chips")
    p.add_argument("--model", required=True, help="model preset id (e.g. llama3-405b)")
    p.add_argument("--system", required=True, help="system id (e.g. trn3-ultraserver)")
    p.add_argument("--chips", type=int, required=True, help="chips in the job (1..1e7)")
    p.add_argument("--precision", default="bf16", help="GEMM precision (bf16, fp8, mxfp8, ...)")
    p.add_argument("--seq", type=int, default=8192, help="sequence length [tokens] (1..2^24)")
    p.add_argument("--global-batch", type=int, default=None,
                   help="sequences per step (default: about 16M tokens, a multiple of the odd part of --chips)")
    p.add_argument("--top", type=int, default=10, help="layouts to show (>= 1)")
    p.add_argument("--power-cap", type=float, default=None, metavar="W",
                   help="chip power cap [W], at most the chip's TDP: compute slows to the "
                   "clock the chip holds")
    p.add_argument("--attention", default="bf16", metavar="PRECISION",
                   help="precision of the attention core's matmuls: bf16, or fp8 (Transformer "
                   "Engine's FP8 attention, on chips with an FP8 rate)")
    p.add_argument("--offload", type=float, default=None, metavar="SHARE",
                   help="share 0..1 of the saved activations kept in host memory (copies over "
                   "the chip's host link; default 0)")
    p.add_argument("--optimizer-offload", action="store_true",
                   help="Adam states and update on the host CPU (DeepSpeed ZeRO-Offload): "
                   "HBM keeps the weights, the update runs in the host's DRAM")
    p.add_argument("--expert-tp", type=int, default=1, metavar="N",
                   help="expert-tensor-parallel size of a MoE model's expert-parallel layouts "
                   "(>= 0): 1 whole experts per chip (default), 0 the TP size (Megatron-Core "
                   "before 0.10); ep x N must tile tp x dp x cp")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("serve", help="throughput-vs-latency frontier of serving a model")
    p.add_argument("--model", required=True, help="model preset id (e.g. llama3-70b)")
    p.add_argument("--system", required=True, help="system id (e.g. trn3-ultraserver)")
    p.add_argument("--input", type=int, default=2048,
                   help="prompt tokens per request (1..2^24)")
    p.add_argument("--output", type=int, default=512,
                   help="generated tokens per request (1..2^24)")
    p.add_argument("--ttft-ms", type=float, default=None,
                   help="time-to-first-token target [ms] (> 0; default: none)")
    p.add_argument("--tpot-ms", type=float, default=None,
                   help="time-per-output-token target [ms] (> 0; default: none)")
    p.add_argument("--weights", default="bf16", help="weight format (bf16, fp8, fp4, ...)")
    p.add_argument("--activations", default="bf16", help="compute format of the GEMMs")
    p.add_argument("--kv", default="bf16", help="KV-cache format")
    p.add_argument("--power-cap", type=float, default=None, metavar="W",
                   help="chip power cap [W], at most the chip's TDP: compute slows to the "
                   "clock the chip holds")
    p.add_argument("--price", type=float, default=None,
                   help="USD per chip-hour (> 0; default: the system's on-demand list price, "
                   "if any)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("hetero", help="a mixed Trainium4 + Rubin rack against homogeneous racks")
    p.add_argument("--system", default="trn4-rubin-nvl72", help="a mixed system id")
    p.add_argument("--workload", nargs="+", default=["serving", "afd", "training", "rl"],
                   help="serving, afd, training, rl (default: all)")
    p.add_argument("--model", default="llama3-70b", help="served and trained model preset")
    p.add_argument("--moe-model", default="deepseek-v3", help="MoE model of the AFD workload")
    p.add_argument("--input", type=int, default=2048, help="prompt tokens (1..2^24)")
    p.add_argument("--output", type=int, default=512, help="generated tokens (1..2^24)")
    p.add_argument("--tpot-ms", type=float, default=50.0, help="TPOT target [ms] (> 0)")
    p.add_argument("--ttft-ms", type=float, default=2000.0, help="TTFT target [ms] (> 0)")
    p.add_argument("--precision", default="fp8", help="bf16, fp8 or fp4")
    p.add_argument("--samples", type=int, default=200, help="Monte-Carlo draws (>= 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (>= 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_hetero)

    p = sub.add_parser("validate", help="predict published measurements (case schema)")
    p.add_argument("cases", help="case file (data/measurements/SCHEMA.md)")
    p.add_argument("--out", required=True, help="predictions CSV to write")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("calibrate", help="fit the step model's parameters to a case file")
    p.add_argument("cases", nargs="?", default=None,
                   help="case file (default: data/measurements/cases.csv)")
    p.add_argument("--no-loso", action="store_true", help="skip leave-one-source-out")
    p.add_argument("--write", action="store_true", help="write the fitted values to "
                   "data/perf/training.toml and serving.toml (default: print them next to the "
                   "committed ones and write nothing)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--scores", action="store_true", help="training scores only: MAPE, "
                   "leave-one-source/chip-family/feature-out, correlated parameters, parameters "
                   "at bounds (writes nothing; with --write, after the usual calibration, and kept "
                   "in data/perf/scores.toml for notebook 00)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("scale", help="a training job at scale: tiered network, goodput under "
                       "failures, days to train, facility power (with bands)")
    p.add_argument("--model", required=True, help="model preset id (e.g. llama3-405b)")
    p.add_argument("--system", required=True, help="system id (e.g. trn3-ultraserver)")
    p.add_argument("--chips", type=int, required=True, help="chips in the job (1..1e7)")
    p.add_argument("--precision", default=None,
                   help="GEMM precision (default: the chip's native one, mxfp8 on Trn3)")
    p.add_argument("--tokens", type=float, default=15e12, help="training tokens (> 0)")
    p.add_argument("--recovery", default="checkpoint",
                   help="checkpoint (checkpoint/restart) or in-memory (checkpointless)")
    p.add_argument("--no-spares", action="store_true",
                   help="no hot spares: each restart waits for hardware")
    p.add_argument("--trials", type=int, default=2000, help="Monte-Carlo runs (1..1e6)")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("bench", help="speed benchmarks (configurations/s, search times, RSS)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--quick", action="store_true", help="a smaller grid (for a smoke test)")
    p.set_defaults(func=cmd_bench)
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
