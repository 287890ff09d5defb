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


def test_energy_power_and_cost_claims_get_verdicts_with_assumptions_and_ranges():
    for cid in ("energy-efficiency", "less-power", "cost"):
        r = ROWS[cid]
        assert r.verdict != "not-checkable"
        assert r.low <= r.value <= r.high
        assert "projected" in r.reason or "assumes" in r.reason
    assert ROWS["less-power"].verdict in ("inconsistent", "partly")
    assert "llama3-405b" in ROWS["energy-efficiency"].reason


def test_energy_efficiency_follows_the_power_assumption():
    base = {r.id: r for r in claims.ledger(claims.Assumptions(n_samples=400))}
    low_power = {r.id: r for r in claims.ledger(claims.Assumptions(
        n_samples=400, chip_power_w=(300.0, 350.0, 400.0)))}
    # a Trn3 chip drawing a third of the power is about 3x more efficient
    ratio = low_power["energy-efficiency"].value / base["energy-efficiency"].value
    assert 2.0 < ratio < 4.0


def test_cost_break_even_is_half_the_gpu_cost_per_token():
    from trnlab.engine import economics, points

    r = ROWS["cost"]
    h100 = points.training_point("llama3-405b", "dgx-h100", 16384, "fp8")
    trn3 = points.training_point("llama3-405b", "trn3-ultraserver", 16384, "fp8")
    expected = 0.5 * economics.cloud_price("dgx-h100") * trn3["tokens_per_s_per_chip"] \
        / h100["tokens_per_s_per_chip"]
    assert f"dgx-h100: ${expected:.2f}" in r.computed


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
