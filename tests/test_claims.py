from __future__ import annotations

import ast
import json
import math
import re
from pathlib import Path

import pytest

from trnlab import catalog, io
from trnlab.catalog.params import load_economics
from trnlab.cli import main
from trnlab.engine import verdicts
from trnlab.engine.economics import cloud_price, slo_rate, training_rate
from trnlab.studies import claims, trainium4

ROWS = {r.id: r for r in claims.ledger()}


def _basis(row, start):
    return next(b for b in row.bases if b["basis"].startswith(start))


# ------------------------------------------------------------------------------- the rule
def _claim(sense="equal", quantifier="all", basis=("chip",)):
    c = claims.load_claims()[0]
    return verdicts.Claim("t", "test", c.check, c.published.__class__(
        "published", 1.0, "1", "announced", ("TC-TRN3",)), tuple(basis), sense, quantifier)


def test_basis_rule_equal_at_least_at_most_and_ranges():
    eq, least, most = _claim(), _claim("at_least"), _claim("at_most")
    b = lambda v: verdicts.Basis("b", v, tags=frozenset({"chip"}))
    assert verdicts.basis_verdict(b(1.04), eq) == "holds"  # 4% off, tolerance 5%
    assert verdicts.basis_verdict(b(1.06), eq) == "inconsistent"
    assert verdicts.basis_verdict(b(1.3), eq, 0.9, 1.5) == "partly"  # 1.0 lies in 0.9..1.5
    assert verdicts.basis_verdict(b(1.3), eq, 1.1, 1.5) == "inconsistent"
    assert verdicts.basis_verdict(b(1.5), least) == "holds"
    assert verdicts.basis_verdict(b(0.9), least) == "inconsistent"
    assert verdicts.basis_verdict(b(0.5), most) == "holds"
    assert verdicts.basis_verdict(b(1.2), most, 0.8, 1.4) == "partly"
    assert verdicts.basis_verdict(verdicts.Basis("b", 1.0, checkable=False), eq) == "not-checkable"


def test_claim_rule_holds_partly_inconsistent_not_checkable():
    c = _claim(basis=("server",))
    own = verdicts.Basis("own", 1.0, tags=frozenset({"server"}))
    other = verdicts.Basis("other", 1.0, tags=frozenset({"chip"}))
    assert verdicts.verdict_of(c, [own, other], ["holds", "inconsistent"]) == "holds"
    assert verdicts.verdict_of(c, [own, other], ["inconsistent", "holds"]) == "partly"
    assert verdicts.verdict_of(c, [own, other], ["partly", "inconsistent"]) == "partly"
    assert verdicts.verdict_of(c, [own, other], ["inconsistent"] * 2) == "inconsistent"
    assert verdicts.verdict_of(c, [own], ["not-checkable"]) == "not-checkable"
    two = [own, verdicts.Basis("own2", 1.0, tags=frozenset({"server", "gen1"}))]
    assert verdicts.verdict_of(c, two, ["holds", "inconsistent"]) == "partly"  # all must hold
    any_claim = _claim(quantifier="any", basis=("server",))
    assert verdicts.verdict_of(any_claim, two, ["holds", "inconsistent"]) == "holds"


def test_no_typed_numbers_or_verdicts_in_reason_strings():
    """Reason texts are built from numbers: no literal like '4.36x' or 'thousands' in a string
    of the module, and no verdict word passed as a literal to a Basis or a Verdict."""
    tree = ast.parse(Path(claims.__file__).read_text())
    docs = {id(n.body[0].value) for n in ast.walk(tree)
            if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef) and n.body
            and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            assert not re.search(r"\d+(\.\d+)?x\b", node.value), node.value
            assert "thousands" not in node.value.lower() or "'thousands" in node.value
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("Basis", "Verdict"):
            for kw in node.keywords:
                assert kw.arg != "verdict" or not isinstance(kw.value, ast.Constant)


# ---------------------------------------------------------------------------- the ledger
def test_every_claim_has_bases_and_projected_ones_a_tornado():
    assert set(ROWS) == {c.id for c in claims.load_claims()}
    assert len(ROWS) >= 14
    for r in ROWS.values():
        assert r.verdict in verdicts.VERDICTS and r.reason and r.bases
        assert all(b["verdict"] in verdicts.VERDICTS for b in r.bases)
        if r.check in claims.INPUTS_OF:
            assert {s["name"] for s in r.sensitivity} == set(claims.INPUTS_OF[r.check])
        else:
            assert not r.sensitivity


def test_peak_holds_on_its_stated_fp8_basis_and_not_at_bf16():
    # 8 cores x 128 x 128 PEs x 4 MAC x 2 FLOP x 2.4 GHz = 2.517 PFLOP/s
    fp8 = 8 * 128 * 128 * 4 * 2 * 2.4e9 / 1e15
    r = ROWS["chip-peak"]
    assert _basis(r, "per chip, FP8")["computed"] == pytest.approx(fp8, rel=1e-3)
    assert _basis(r, "per chip, FP8")["verdict"] == "holds"
    assert _basis(r, "per chip, BF16")["verdict"] == "inconsistent"
    assert r.verdict == "holds" and r.decided_by.startswith("per chip, FP8")


def test_either_unit_of_144_gives_at_least_144_gb():
    r = ROWS["hbm-capacity"]
    values = sorted(b["computed"] for b in r.bases)
    assert values == pytest.approx([144.0, 144 * 2**30 / 1e9], rel=1e-3)
    assert r.verdict == "holds"  # 'at least' on both readings


def test_server_compute_holds_per_ultraserver_fp8_and_is_mostly_more_chips():
    t3, t2 = catalog.chip("trn3"), catalog.chip("trn2")
    per_server = (144 * t3.peak("fp8")) / (64 * t2.peak("fp8"))  # 4.36
    r = ROWS["server-compute"]
    assert _basis(r, "per UltraServer (144 vs 64 chips), FP8")["computed"] == \
        pytest.approx(per_server, rel=1e-3)
    assert r.verdict == "holds"
    assert f"per chip it is {per_server / 2.25:.2f}x" in r.reason
    assert ROWS["server-bandwidth"].verdict == "holds"  # 3.80 is 'nearly 4'


def test_energy_reason_prints_the_internal_consistency_argument():
    t3, t2 = catalog.chip("trn3"), catalog.chip("trn2")
    compute = (144 * t3.peak("fp8")) / (64 * t2.peak("fp8"))
    r = ROWS["energy-efficiency"]
    assert (f"{compute:.2f}x compute with 40% less power implies {compute / 0.6:.1f}x perf/W, "
            "not 4x") in r.reason
    assert _basis(r, "implied by")["verdict"] == "inconsistent"
    # the serving bases move the verdict off 'inconsistent': some basis reaches 4x in range
    assert r.verdict == "partly"
    assert any(b["verdict"] == "partly" and "serving" in b["basis"] for b in r.bases)


def _shares(system):
    t = training_rate("llama3-405b", system, 16384, "fp8")
    return t["compute_share"], t["memory_share"]


def _chip_w(tdp, shares):
    p = load_economics().power
    from trnlab.perf import power

    return float(power.chip_power(tdp, p["idle_fraction"].si, shares[0], shares[1],
                                  p["memory_weight"].si))


def test_less_power_verdict_and_reason_move_together_with_the_power_inputs():
    """At the catalog powers Trn3 draws more; with Trn3 set to draw exactly 0.6x Trn2's chip
    power the per-chip basis holds and the reason says 'less' with the same number."""
    base = ROWS["less-power"]
    chip = _basis(base, "power per chip")
    assert chip["computed"] > 1 and "more)" in base.reason
    said = re.search(r"draws ([\d.]+)x Trn2's power", base.reason)  # the row keeps 4 digits
    assert said and float(said[1]) == pytest.approx(chip["computed"], abs=0.0051)
    trn2_w = 500.0
    s3, s2 = _shares("trn3-ultraserver"), _shares("trn2-ultraserver")
    trn3_w = 0.6 * _chip_w(trn2_w, s2) / _chip_w(1.0, s3)  # chip power is linear in TDP
    fixed = claims.Assumptions(chip_power_w=(trn3_w,) * 3, trn2_power_w=(trn2_w,) * 3)
    row = {r.id: r for r in claims.ledger(fixed)}["less-power"]
    chip = _basis(row, "power per chip")
    assert chip["computed"] == pytest.approx(0.6, rel=1e-3)
    assert chip["verdict"] == "holds"
    assert _basis(row, "power per UltraServer")["computed"] == pytest.approx(0.6 * 144 / 64,
                                                                             rel=1e-3)
    assert "draws 0.60x Trn2's power (40% less)" in row.reason
    assert row.verdict != base.verdict or row.reason != base.reason


def test_trn3_at_500_w_changes_the_printed_power_ratio():
    row = {r.id: r for r in claims.ledger(claims.Assumptions(
        chip_power_w=(500.0, 500.0, 500.0)))}["less-power"]
    chip = _basis(row, "power per chip")
    s3, s2 = _shares("trn3-ultraserver"), _shares("trn2-ultraserver")
    assert chip["computed"] == pytest.approx(_chip_w(500, s3) / _chip_w(500, s2), rel=1e-3)
    word = "less" if chip["computed"] < 1 else "more"
    assert f"draws {chip['computed']:.2f}x Trn2's power ({abs(chip['computed'] - 1):.0%} " \
           f"{word})" in row.reason
    assert not any(s["name"] == "trn3_power" and s["low"] != s["high"]
                   for s in row.sensitivity)


def test_cost_holds_for_trn2_customers_per_trained_token():
    """Trn2 at its capacity-block price ($35.76 / 16 chips) vs an on-demand p5 ($55.04 / 8)."""
    r = ROWS["cost"]
    trn2 = training_rate("llama3-405b", "trn2-ultraserver", 16384, "fp8")["tokens_per_s_per_chip"]
    h100 = training_rate("llama3-405b", "dgx-h100", 16384, "fp8")["tokens_per_s_per_chip"]
    expected = (35.76 / 16 / trn2) / (55.04 / 8 / h100)
    b = _basis(r, "Trn2 UltraServer vs on-demand H100-SXM, training")
    assert b["computed"] == pytest.approx(expected, rel=1e-3)
    assert r.verdict == ("holds" if min(x["computed"] for x in r.bases if x["stated"])
                         <= 0.5 * 1.05 else "partly")
    assert any("serving llama3-70b at BF16" in x["basis"] for x in r.bases)
    assert any("serving llama3-70b at FP8" in x["basis"] for x in r.bases)
    price = next(s for s in r.sensitivity if s["name"] == "trn2_price")
    assert price["low"] == pytest.approx(14.56 / 16, rel=1e-3)  # the spot read
    # cost per token is linear in the price (on the basis that decides the verdict)
    decides = _basis(r, r.decided_by)
    assert price["computed_low"] == pytest.approx(
        decides["computed"] * price["low"] / price["high"], rel=1e-2)


def test_scaleup_bandwidth_is_swept_between_the_sources_readings():
    r = ROWS["gpt-oss-throughput"]
    row = next(s for s in r.sensitivity if s["name"] == "trn3_scaleup")
    assert (row["low"], row["high"]) == (704.0, 2560.0)
    moe3 = slo_rate("gpt-oss-120b", "trn3-ultraserver", "bf16")["output_tokens_per_s_per_chip"]
    moe3_slow = slo_rate("gpt-oss-120b", "trn3-ultraserver", "bf16",
                         scaleup_bw=704e9)["output_tokens_per_s_per_chip"]
    assert moe3_slow < moe3  # MoE all-to-all on the scale-up links
    assert row["computed_low"] < row["computed_high"]


def test_gpt_oss_claims_run_on_the_gpt_oss_preset():
    # gpt-oss-120b by hand: experts 36 x 128 x (3 x 2880 x 2880 + 2 x 2880 + 2880 biases)
    # = 114.70e9; attention 36 x (2880 x (64 + 16) x 64 + 64 x 64 x 2880 + 80 x 64 + 2880)
    # = 0.956e9; router 36 x 2880 x 128 = 0.013e9; two 201,088 x 2,880 embeddings 1.158e9;
    # norms 0.0002e9: 116.83e9 (OpenAI: 117B)
    by_hand = (36 * 128 * (3 * 2880 * 2880 + 3 * 2880)
               + 36 * (2880 * 80 * 64 + 64 * 64 * 2880 + 80 * 64 + 2880)
               + 36 * 2880 * 128 + 2 * 201088 * 2880 + (2 * 36 + 1) * 2880)
    assert catalog.spec("gpt-oss-120b").total_params == pytest.approx(by_hand, rel=1e-4)
    for cid in ("gpt-oss-throughput", "gpt-oss-latency"):
        r = ROWS[cid]
        moe = [b for b in r.bases if "moe" in b["tags"]]
        assert moe and all(b["basis"].startswith("gpt-oss-120b (moe)") for b in moe)
        assert "gpt-oss-120b" in r.reason and "qwen" not in r.reason
    fp8 = _basis(ROWS["gpt-oss-throughput"], "gpt-oss-120b (moe), FP8")
    a = claims.Assumptions()
    t3, t2 = (slo_rate("gpt-oss-120b", s, "fp8", a.input_len, a.output_len, a.tpot_ms,
                       a.ttft_ms)["output_tokens_per_s_per_chip"]
              for s in ("trn3-ultraserver", "trn2-ultraserver"))
    assert fp8["computed"] == pytest.approx(t3 / t2, rel=1e-3)  # trn3_mfu central = 1


def test_cluster_power_by_hand_and_ultraserver_count():
    fixed = claims.Assumptions(chip_power_w=(1000,) * 3, system_overhead=(0.5,) * 3,
                               pue=(1.2,) * 3)
    row = {r.id: r for r in claims.ledger(fixed)}["cluster-size"]
    assert _basis(row, "facility power")["computed"] == pytest.approx(1e6 * 1000 * 1.5 * 1.2 / 1e9)
    assert _basis(row, "UltraServers of 144")["computed"] == math.ceil(1e6 / 144)  # 6,945
    assert _basis(row, "UltraServers of 64")["verdict"] == "inconsistent"  # 15,625: five digits
    assert row.verdict == "holds"


def test_trn2_power_can_be_overridden_and_moves_the_energy_ratio():
    low = {r.id: r for r in claims.ledger(claims.Assumptions(trn2_power_w=(400.0,) * 3))}
    high = {r.id: r for r in claims.ledger(claims.Assumptions(trn2_power_w=(1000.0,) * 3))}
    # Trn2 drawing 2.5x more makes Trn3 2.5x more efficient on every basis
    name = "per UltraServer = per chip, training llama3-405b, FP8"
    assert _basis(high["energy-efficiency"], name)["computed"] / \
        _basis(low["energy-efficiency"], name)["computed"] == pytest.approx(2.5, rel=1e-3)


def test_claims_json_contract(capsys):
    assert main(["claims", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    keys = {"id", "claim", "source", "verdict", "reason", "bases", "sensitivity"}
    for row in rows:
        assert keys <= set(row)
        assert all({"basis", "computed", "verdict"} <= set(b) for b in row["bases"])
        for s in row["sensitivity"]:
            assert {"input", "low", "high", "computed_low", "computed_high", "verdict_low",
                    "verdict_high"} <= set(s)
    assert sum(bool(r["sensitivity"]) for r in rows) >= 5


def test_study_dataset_saves_and_carries_the_tornado(tmp_path):
    ds = claims.study()
    assert ds.sizes["claim"] == len(ROWS)
    e = ds.sel(claim="energy-efficiency")
    assert set(ds["input"].values) >= {"trn2_power", "trn3_power", "trn3_scaleup", "pue"}
    assert float(e["input_low"].sel(input="trn3_power")) == catalog.chip("trn3").tdp_range[0]
    back = io.load(io.save(ds, tmp_path / "claims.nc"))
    assert list(back["verdict"].values) == [r.verdict for r in ROWS.values()]


DS = claims.study()


def test_headline_and_reading_from_the_dataset():
    assert DS.attrs["headline"] == claims.headline(DS)
    counts = {v: list(DS["verdict"].values).count(v) for v in verdicts.VERDICTS}
    assert f"{counts['holds']} hold" in DS.attrs["headline"]
    text = claims.reading(DS)
    for r in ROWS.values():
        assert r.reason in text
    ds = DS.copy(deep=True)
    i = list(ds["claim"].values).index("energy-efficiency")
    ds["verdict"][i] = "holds"
    assert "4x more energy-efficient than the previous generation\" holds (decided by" in \
        claims.reading(ds)
    assert text.startswith("- **Compute.** ") and "- **Published results.** " in text


def test_reading_follows_a_changed_parameter():
    half = claims.study(claims.assumptions(500_000, [1000, 1000, 1000], [0.5, 0.5, 0.5],
                                           [1.2, 1.2, 1.2]))
    assert "0.90 GW" in claims.reading(half) and "500,000 chips need 0.90 GW" in \
        half.attrs["headline"]


def test_assumptions_from_notebook_lists():
    from trnlab.errors import ParameterError

    a = claims.assumptions(1000, [], [0.1, 0.2, 0.3], [], trn2_power_w=[400, 500, 900])
    assert a.cluster_chips == 1000 and a.chip_power_w is None
    assert a.system_overhead == (0.1, 0.2, 0.3) and a.trn2_power_w == (400, 500, 900)
    with pytest.raises(ParameterError, match="pue"):
        claims.assumptions(1000, [], [], [1.3, 1.2, 1.1])
    with pytest.raises(ParameterError, match="trn3_mfu"):
        claims.assumptions(1000, trn3_mfu=[1.0, 0.9])


# ------------------------------------------------------------------------ price filings
def test_trn1_costs_the_trn1_32xlarge_price_per_chip_hour():
    assert cloud_price("trn1-32xl") == pytest.approx(21.5 / 16)
    assert cloud_price("trn1n-32xl") == pytest.approx(24.78 / 16)
    for p in catalog.default().prices.values():
        if p.instance.startswith("trn1n."):
            assert p.system == "trn1n-32xl"
            assert catalog.system(p.system).scaleout == "efa-100"


def test_p4d_is_filed_under_an_a100_40gb_system():
    for p in catalog.default().prices.values():
        if p.instance == "p4d.24xlarge":
            chip = catalog.chip(catalog.system(p.system).chip)
            assert chip.id == "a100-sxm-40gb"
            assert chip.hbm_capacity == pytest.approx(40e9, rel=0.08)  # 40 GB (or GiB)
    assert cloud_price("hgx-a100-40gb") == pytest.approx(21.957642 / 8)
    # what stays under dgx-a100 is the p4de (A100 80 GB) price
    assert cloud_price("dgx-a100") == pytest.approx(40.966 / 8)


def test_trn2_power_range_includes_the_rainier_reading():
    """Project Rainier: ~1 GW / 500K chips = 2 kW per chip; / PUE 1.15 / 1.4-1.8 host and
    network = 0.97-1.24 kW."""
    low, high = catalog.chip("trn2").tdp_range
    assert low <= 2000 / 1.15 / 1.8
    assert high >= 2000 / 1.15 / 1.4


def test_tornado_helper_draws_each_input_from_the_center_widest_on_top():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import xarray as xr

    from trnlab import plot

    dims = {"input": ["a", "b", "c"]}
    low = xr.DataArray([0.9, 0.5, float("nan")], dims="input", coords=dims)
    high = xr.DataArray([1.2, 1.0, 1.1], dims="input", coords=dims)
    _, ax = plt.subplots()
    lo_bars, hi_bars = plot.tornado(low, high, dim="input", center=1.0, reference=4.0, ax=ax)
    # 'c' has no low end: skipped; 'b' swings 0.5, 'a' 0.3: 'b' on top (last)
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert [(p.get_x(), p.get_width()) for p in lo_bars.patches] == \
        [(1.0, pytest.approx(-0.1)), (1.0, pytest.approx(-0.5))]
    assert [p.get_width() for p in hi_bars.patches] == [pytest.approx(0.2), pytest.approx(0.0)]
    plt.close("all")


# --------------------------------------------------------------- both ledgers, one rule
T4_DS = trainium4.study(n_samples=16, workloads=["serving", "afd"])
T4 = {r.id: r for r in trainium4.claims(T4_DS)}


def test_trainium4_rows_have_the_trainium3_row_shape():
    t3 = [r.to_dict() for r in ROWS.values()]
    ranged = {frozenset(r) for r in t3 if "range" in r}
    assert len(ranged) == 1  # every Trainium3 row with a range has one key set
    for r in (v.to_dict() for v in T4.values()):
        assert frozenset(r) in ranged, set(r) ^ set(next(iter(ranged)))
        assert {frozenset(b) for b in r["bases"]} <= {frozenset(b) for x in t3
                                                      for b in x["bases"]}
        assert {frozenset(s) for s in r["sensitivity"]} == {frozenset(s) for x in t3
                                                            for s in x["sensitivity"]}


def test_one_rule_gives_the_same_verdict_for_the_same_numbers():
    # FP8 'at least 3x': Trainium4 at 2.9 x 2,517 = 7,299.3 TFLOP/s is 2.9x, no worse than
    # 3 x (1 - 0.05) = 2.85: holds (the earlier Trainium4 rule, ratio >= 0.97 x 3 = 2.91, said
    # no); at 2.8x with a high end of 4x it holds only within the range: partly; at 2.8x
    # throughout: inconsistent
    t3_claim = claims.load_claims()[0]
    for lo, mid, hi, want in ((2.9, 2.9, 2.9, "holds"), (2.8, 2.8, 4.0, "partly"),
                              (2.8, 2.8, 2.8, "inconsistent")):
        rows = {r.id: r for r in trainium4.claims(T4_DS, overrides={
            "trn4_peak_fp8": [v * 2517 for v in (lo, mid, hi)]})}
        assert rows["fp8-vs-trn3"].verdict == want, (mid, rows["fp8-vs-trn3"].reason)
        # the same numbers as a Trainium3-ledger claim 'at least 3' on its per-chip basis
        same = verdicts.Claim("t", "test", t3_claim.check, t3_claim.published.__class__(
            "published", 3.0, "1", "announced", ("TC-TRN3",)), ("chip",), "at_least")
        b = verdicts.Basis("per chip", mid, tags=frozenset({"chip"}))
        v = verdicts.basis_verdict(b, same, lo, hi)
        assert verdicts.verdict_of(same, [b], [v]) == want


def test_moving_an_input_moves_a_trainium4_verdict_and_its_reason_together():
    base = T4["bandwidth-vs-trn3"]
    # Trainium3 at 5.6 TB/s: 19.6 / 5.6 = 3.5x at best (18.8 / 5.6 = 3.36x at worst), more
    # than 5 % short of 4x
    moved = {r.id: r for r in trainium4.claims(T4_DS, overrides={
        "trn3_hbm_bandwidth": [5.6, 5.6, 5.6]})}["bandwidth-vs-trn3"]
    assert base.verdict == "holds" and moved.verdict == "inconsistent"
    assert "3.5x" in moved.reason and "3.5x" not in base.reason
    assert moved.reason.startswith("no fair basis reproduces")
    # Trainium4's FP8 peak down to 5,000 TFLOP/s at its low end: the central 3x still holds,
    # the low end (5,000 / 2,517 = 1.99x) does not: the tornado flips and the range reads it
    low = {r.id: r for r in trainium4.claims(T4_DS, overrides={
        "trn4_peak_fp8": [5000, 7551, 10068]})}["fp8-vs-trn3"]
    assert low.verdict == "holds" and "trn4_peak_fp8" in low.flips
    s = next(x for x in low.sensitivity if x["name"] == "trn4_peak_fp8")
    assert s["computed_low"] == pytest.approx(5000 / 2517, rel=1e-3)
    assert (s["verdict_low"], s["verdict_high"]) == ("inconsistent", "holds")
    assert "1.99x" in low.reason and "1.99x" not in T4["fp8-vs-trn3"].reason


def test_claims_cli_holds_both_ledgers(capsys):
    import tomllib

    from trnlab._paths import data_dir

    ids = {f: set(tomllib.loads((data_dir() / "claims" / f).read_text())["claim"])
           for f in ("trainium3.toml", "trainium4.toml")}
    assert main(["claims", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    got = [r["id"] for r in rows]
    assert ids["trainium3.toml"] <= set(got) and ids["trainium4.toml"] <= set(got)
    assert len(got) == sum(len(v) for v in ids.values())
    # Trainium3 rows first, then Trainium4's
    assert set(got[:len(ids["trainium3.toml"])]) == ids["trainium3.toml"]
    assert main(["claims"]) == 0
    out = capsys.readouterr().out
    assert out.index("== Trainium3 claims") < out.index("== Trainium4 claims")
    assert "NVLink Fusion" in out.split("== Trainium4 claims")[1]
