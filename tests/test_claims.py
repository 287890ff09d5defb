from __future__ import annotations

import json

import pytest

from trnlab import catalog, io
from trnlab.cli import main
from trnlab.studies import claims

ROWS = {r.id: r for r in claims.ledger()}


def test_every_claim_has_a_verdict_and_reason():
    assert set(ROWS) == {c.id for c in claims.load_claims()}
    assert len(ROWS) >= 12
    for r in ROWS.values():
        assert r.verdict in claims.VERDICTS
        assert r.reason and r.computed


def test_peak_holds_only_in_mx_precisions():
    r = ROWS["chip-peak"]
    assert r.verdict == "partly"
    assert "mxfp8" in r.computed and "bf16" not in r.computed.split("BF16")[0]


def test_gb_vs_gib_is_flagged():
    r = ROWS["hbm-capacity"]
    assert r.verdict == "partly"
    assert r.low == pytest.approx(144.0) and r.high == pytest.approx(144 * 2**30 / 1e9)


def test_ratios_recomputed_from_catalog():
    t3, t2 = catalog.chip("trn3"), catalog.chip("trn2")
    assert ROWS["memory-vs-trn2"].value == pytest.approx(t3.hbm_capacity / t2.hbm_capacity)
    assert ROWS["bandwidth-vs-trn2"].value == pytest.approx(t3.hbm_bandwidth / t2.hbm_bandwidth)
    per_server = (144 * t3.peak("fp8")) / (64 * t2.peak("fp8"))
    assert ROWS["server-compute"].value == pytest.approx(per_server)
    assert ROWS["server-compute"].verdict == "partly"  # per server only, not per chip
    assert ROWS["server-bandwidth"].verdict == "holds"


def test_power_claims_are_inconsistent_together():
    r = ROWS["less-power"]
    assert r.verdict == "inconsistent"
    # 4.4x compute at 4x perf/W is more power, not 40% less
    assert r.value > 1.0
    assert ROWS["energy-efficiency"].verdict == "not-checkable"
    assert ROWS["cost"].verdict == "not-checkable"


def test_cluster_power_scales_with_assumptions():
    base = {r.id: r for r in claims.ledger(claims.Assumptions(chip_power_w=(1000, 1000, 1000),
                                                              system_overhead=(0.5, 0.5, 0.5),
                                                              pue=(1.2, 1.2, 1.2)))}
    assert base["cluster-size"].value == pytest.approx(1e6 * 1000 * 1.5 * 1.2 / 1e9)
    half = claims.ledger(claims.Assumptions(cluster_chips=500_000, chip_power_w=(1000,) * 3,
                                            system_overhead=(0.5,) * 3, pue=(1.2,) * 3))
    assert {r.id: r for r in half}["cluster-size"].value == pytest.approx(0.9)
    default = ROWS["cluster-size"]
    assert default.low < default.value < default.high
    assert "6,945 UltraServers" in default.computed


def test_claims_json_keys(capsys):
    assert main(["claims", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    for row in rows:
        assert {"claim", "published", "computed", "verdict", "reason"} <= set(row)
    assert any("range" in row for row in rows)


def test_study_dataset_saves(tmp_path):
    ds = claims.study()
    assert ds.sizes["claim"] == len(ROWS)
    ratio = ds["hbm_bandwidth"].sel(generation="trn3") / ds["hbm_bandwidth"].sel(generation="trn2")
    assert float(ratio.sel(scope="server")) == pytest.approx(float(ratio.sel(scope="chip")) * 2.25)
    back = io.load(io.save(ds, tmp_path / "claims.nc"))
    assert list(back["verdict"].values) == [r.verdict for r in ROWS.values()]
