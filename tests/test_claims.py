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


# ----------------------------------------------------------- headline, reading, coordinates
DS = claims.study()


def _row(ds, check):
    return ds.isel(claim=list(ds["check"].values).index(check))


def test_headline_is_set_and_formatted_from_the_dataset():
    assert DS.attrs["headline"] == claims.headline(DS)
    eff = _row(DS, "energy_efficiency")
    assert (f"{float(eff['value']):.2f}x Trn2's tokens per joule (p5–p95 "
            f"{float(eff['low']):.2f}–{float(eff['high']):.2f}x)") in DS.attrs["headline"]
    counts = {v: list(DS["verdict"].values).count(v) for v in claims.VERDICTS}
    assert f"{counts['holds']} hold, {counts['partly']} partly" in DS.attrs["headline"]


def test_reading_follows_a_changed_parameter():
    half = claims.study(claims.assumptions(500_000, [1000, 1000, 1000], [0.5, 0.5, 0.5],
                                           [1.2, 1.2, 1.2]))
    text, base = claims.reading(half), claims.reading(DS)
    assert text != base
    # 500,000 chips x 1 kW x 1.5 x 1.2 = 0.90 GW, from the Dataset and by hand
    assert float(_row(half, "cluster_size")["value"]) == pytest.approx(0.9)
    assert "500,000 chips are 3,473 trn3 UltraServers" in text and "0.90 GW" in text
    assert "1,000,000" not in text and "1,000,000" in base
    assert "500,000 chips need 0.90 GW" in half.attrs["headline"]


def test_reading_numbers_are_the_datasets_numbers():
    """The energy-efficiency figures of the reading are the Dataset's, rounded; nothing else."""
    import re

    text = claims.reading(DS)
    eff = _row(DS, "energy_efficiency")
    m = re.search(r"tokens per joule at ([\d.]+)x trn2's .*? \(([\d.]+)–([\d.]+)x\)", text)
    assert m, text
    got = [float(g) for g in m.groups()]
    assert got == [round(float(eff[k]), 2) for k in ("value", "low", "high")]


def test_reading_words_come_from_the_dataset_not_from_prose():
    ds = DS.copy(deep=True)
    i = list(ds["check"].values).index("energy_efficiency")
    ds["verdict"][i], ds["value"][i], ds["low"][i], ds["high"][i] = "holds", 4.2, 3.9, 4.6
    ds["gain"].loc[{"metric": "BF16 peak", "scope": "chip"}] = 1.5
    text = claims.reading(ds)
    assert 'at 4.20x trn2\'s' in text and '(3.90–4.60x), so "4x" holds.' in text
    assert "a trn3 chip is faster than a trn2 chip (1.50x)" in text
    assert "about as fast as" in claims.reading(DS)


def test_vendor_status_and_units_coordinates():
    from trnlab import units

    for gen, vendor in zip(DS["generation"].values, DS["vendor"].values, strict=True):
        assert vendor == catalog.chip(str(gen)).vendor
    status = dict(zip(DS["check"].values, DS["claim_status"].values, strict=True))
    assert status["energy_efficiency"] == "projected" and status["chip_peak"] == "derived"
    for var in DS.variables.values():
        if "units" in var.attrs:
            units.parse(var.attrs["units"])  # raises outside the grammar
    assert DS["server_chips"].attrs["units"] == "chip"
    assert float(DS["gain"].sel(metric="HBM capacity", scope="chip")) == pytest.approx(1.5)


def test_assumptions_from_notebook_lists():
    from trnlab.errors import ParameterError

    a = claims.assumptions(1000, [], [0.1, 0.2, 0.3], [])
    assert a.cluster_chips == 1000 and a.chip_power_w is None
    assert a.system_overhead == (0.1, 0.2, 0.3)
    with pytest.raises(ParameterError, match="pue"):
        claims.assumptions(1000, [], [], [1.3, 1.2, 1.1])
