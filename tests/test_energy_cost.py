"""Power, energy and cost models, their Monte-Carlo bands, and the data behind them."""

from __future__ import annotations

import numpy as np
import pytest

from trnlab import catalog
from trnlab.catalog.params import load_economics
from trnlab.engine import economics, sampling
from trnlab.perf import cost, power
from trnlab.studies import cost as cost_study
from trnlab.studies import energy

ECON = load_economics()


def test_chip_power_bounds_and_monotonicity():
    act = np.linspace(0, 1, 11)
    p = power.chip_power(1000.0, 0.2, act, 0.0, 0.6)
    assert p[0] == pytest.approx(200.0) and p[-1] == pytest.approx(1000.0)
    assert np.all(np.diff(p) > 0)
    assert power.chip_power(1000.0, 0.2, 0.9, 0.9, 0.6) == pytest.approx(1000.0)  # capped
    assert power.chip_power(1000.0, 0.2, 0.0, 1.0, 0.6) == pytest.approx(200 + 800 * 0.6)


def test_tco_formula():
    year = cost.YEAR
    got = cost.tco_per_chip_second(20000.0, 0.15, 4.0, 1500.0, 12.0, 15.0, 0.08 / 3.6e6)
    expected = 20000 * 1.15 / (4 * year) + 1500 * 12 / (15 * year) + 1500 * 0.08 / 3.6e6
    assert got == pytest.approx(expected)
    assert cost.break_even_price(cost.cost_per_token(2.0, 100.0), 300.0) == pytest.approx(6.0)
    assert cost.cost_per_pflop_hour(1.0 / 3600, 1e15) == pytest.approx(1.0)  # $1/h at 1 PF/s
    assert cost.cost_per_pflop_hour(1.0 / 3600, 5e14) == pytest.approx(2.0)


def test_monte_carlo_median_matches_the_deterministic_path_at_median_inputs():
    rng = np.random.default_rng(3)
    tdp = sampling.draw(catalog.chip("trn3").fields["tdp"], 200_001, rng)
    samples = power.chip_power(tdp, 0.2, 0.8, 0.0, 0.6)  # monotone in the one uncertain input
    assert np.median(samples) == pytest.approx(float(power.chip_power(np.median(tdp), 0.2, 0.8,
                                                                      0.0, 0.6)))
    ds = energy.study(systems=("dgx-h100", "trn3-ultraserver"), n_samples=500)
    h100 = ds["chip_power_training"].sel(system="dgx-h100").values
    trn3 = ds["chip_power_training"].sel(system="trn3-ultraserver").values
    assert h100[0] <= float(ds["chip_power_training_central"].sel(system="dgx-h100")) <= h100[2]
    # the announced H100 TDP leaves only the idle-share band; the projected Trn3 TDP widens it
    assert (trn3[2] - trn3[0]) / trn3[1] > 2 * (h100[2] - h100[0]) / h100[1]


def test_draws_stay_in_range_and_mode_is_the_value():
    f = catalog.chip("trn3").fields["tdp"]
    x = sampling.draw(f, 50_000, np.random.default_rng(0))
    assert x.min() >= f.low and x.max() <= f.high
    hist, edges = np.histogram(x, bins=40)
    assert edges[np.argmax(hist)] == pytest.approx(f.si, abs=(f.high - f.low) / 20)
    assert np.all(sampling.draw(catalog.chip("h100-sxm").fields["tdp"], 5,
                                 np.random.default_rng(0)) == 700.0)


def test_energy_study_accounts():
    ds = energy.study(systems=("dgx-h100", "trn2-ultraserver", "trn3-ultraserver"),
                      n_samples=300)
    for name, var in ds.data_vars.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name
    h = ds.sel(system="dgx-h100")
    run = float(h["training_run_energy_central"])
    per_token = float(h["energy_per_token_training_central"])
    assert run == pytest.approx(per_token * 15e12)
    cl = ds["cluster_power_central"].values
    np.testing.assert_allclose(cl / ds["cluster_chips"].values, cl[0] / 144, rtol=1e-9)


def test_cost_study_break_even_and_units():
    ds = cost_study.study(n_samples=300)
    for name, var in ds.data_vars.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name
    h100, trn3 = ds.sel(system="dgx-h100"), ds.sel(system="trn3-ultraserver")
    be = float(h100["break_even_training_cloud"])
    trn3_cost = be / 3600 / float(trn3["tokens_per_s_per_chip"])
    h100_cost = float(h100["cloud_price_per_chip_hour"]) / 3600 / float(h100[
        "tokens_per_s_per_chip"])
    assert trn3_cost == pytest.approx(0.5 * h100_cost)
    ratio = ds["cost_ratio"].sel(system="dgx-h100")
    assert np.all(np.diff(ratio.values, axis=0) > 0)  # dearer Trn3 -> higher cost ratio
    assert np.all(np.diff(ratio.values, axis=1) < 0)  # higher MFU -> lower cost ratio


def test_energy_bands_for_many_configs():
    tps = np.linspace(100, 1000, 1000)
    bands = economics.energy_per_token_bands("trn3", tps, np.full(1000, 0.8), n_samples=2000)
    assert bands.shape == (3, 1000)
    assert np.all(bands[0] < bands[1]) and np.all(bands[1] < bands[2])
    np.testing.assert_allclose(bands[1] * tps, bands[1, 0] * tps[0], rtol=1e-9)


@pytest.mark.parametrize("field", [*ECON.power.values(), *ECON.capex.values(),
                                   *ECON.economics.values()], ids=lambda f: f.name)
def test_every_power_and_price_figure_is_sourced(field):
    assert field.sources and all(s in catalog.default().sources for s in field.sources)
    if field.status == "projected":
        assert field.range and field.note


def test_power_cap_clock_fraction():
    assert power.capped_clock_fraction(700.0, 800.0, 0.2, 1.0, 3.0) == 1.0
    cap = 1000.0 * (0.2 + 0.8 * 0.5**3)
    assert power.capped_clock_fraction(1000.0, cap, 0.2, 1.0, 3.0) == pytest.approx(0.5)
    caps = np.linspace(300, 700, 9)
    assert np.all(np.diff(power.capped_clock_fraction(700.0, caps, 0.2, 1.0, 3.0)) > 0)


def test_power_capped_training_is_slower_and_mfu_stays_nominal():
    from trnlab.engine.hardware import clock_fraction
    from trnlab.studies import training

    free = training.search("llama3-70b", "dgx-h100", 256, global_batch=512, top=1)
    capped = training.search("llama3-70b", "dgx-h100", 256, global_batch=512, top=1,
                             power_cap_w=450.0)
    clock = clock_fraction("h100-sxm", 450.0)
    assert 0.7 < clock < 0.95
    speed = float(capped["tokens_per_s_per_chip"][0]) / float(free["tokens_per_s_per_chip"][0])
    assert clock <= speed < 1.0  # compute slows with the clock, memory and links do not
    mfu = float(capped["mfu"][0]) / float(free["mfu"][0])
    assert mfu == pytest.approx(speed, rel=1e-9)  # MFU stays against the nominal peak


# ----------------------------------------------------------- headline, reading, coordinates
ENERGY_SYSTEMS = ("trn2-ultraserver", "trn3-ultraserver", "dgx-h100", "gb200-nvl72")


@pytest.fixture(scope="module")
def energy_ds():
    return energy.study(systems=ENERGY_SYSTEMS, precision="fp8", n_samples=300)


@pytest.fixture(scope="module")
def cost_ds():
    return cost_study.study(precision="fp8", trn3_price=4.0, n_samples=300)


def _gw(ds, chips):
    return float(ds["cluster_power"].sel(percentile=50.0, cluster_chips=chips)) / 1e9


def test_energy_reading_follows_a_changed_parameter(energy_ds):
    other = energy.study(systems=ENERGY_SYSTEMS, precision="fp8", n_samples=300,
                         cluster_chips=(144, 2_000_000), overrides={"pue": 1.5})
    text, base = energy.reading(other), energy.reading(energy_ds)
    assert text != base
    assert f"2,000,000 chips (13,889 scale-up systems) need {_gw(other, 2_000_000):.3g} GW" \
        in text
    assert f"1,000,000 chips (6,945 scale-up systems) need {_gw(energy_ds, 1_000_000):.3g} GW" \
        in base
    assert f"{_gw(other, 2_000_000):.3g} GW" in other.attrs["headline"]
    assert energy_ds.attrs["headline"] == energy.headline(energy_ds)


def test_energy_reading_numbers_are_the_datasets_numbers(energy_ds):
    """Change the Dataset, not the inputs: the reading follows, numbers and words."""
    ds = energy_ds.copy(deep=True)
    t3 = {"system": "trn3-ultraserver"}
    w = float(ds["chip_power_training"].sel(percentile=50.0, **t3))
    assert f"a trn3-ultraserver chip draws {w / 1e3:.3g} kW" in energy.reading(ds)
    ds["chip_power_training"].loc[t3] = ds["chip_power_training"].loc[t3] * 2
    assert f"a trn3-ultraserver chip draws {2 * w / 1e3:.3g} kW" in energy.reading(ds)
    tpj = ds["tokens_per_joule_training"]
    med = energy_ds["tokens_per_joule_training"].sel(percentile=50.0)
    r = float(med.sel(**t3) / med.sel(system="trn2-ultraserver"))  # the words follow the data
    assert f"that is {r:.2f}x ({energy._ratio_word(r, 'more', 'fewer')} tokens per joule)" \
        in energy.reading(energy_ds)
    tpj.loc[t3] = tpj.sel(system="trn2-ultraserver") * 1.5
    text = energy.reading(ds)
    assert "that is 1.50x (more tokens per joule)" in text
    run = float(ds["training_run_energy"].sel(percentile=50.0, system="dgx-h100")) / 3.6e12
    assert f"{run:.1f} GWh on dgx-h100" in text


def test_energy_coordinates_and_units(energy_ds):
    from trnlab import catalog, units

    for s in ENERGY_SYSTEMS:
        chip = catalog.chip(catalog.system(s).chip)
        assert energy_ds["vendor"].sel(system=s).item() == chip.vendor
        assert energy_ds["system_status"].sel(system=s).item() == chip.fields["tdp"].status
    assert {"vendor", "system_status"} <= set(energy_ds.coords)
    assert "tdp_status" not in energy_ds.data_vars
    want = {"tokens_per_joule_training": "token/J", "energy_per_token_training": "J/token",
            "energy_per_m_tokens_served": "J/Mtoken", "tokens_per_s_per_chip": "token/s",
            "output_tokens_per_s_per_chip": "token/s", "training_run_energy": "J"}
    for name, unit in want.items():
        assert energy_ds[name].attrs["units"] == unit
    for var in energy_ds.variables.values():
        if "units" in var.attrs:
            units.parse(var.attrs["units"])


@pytest.mark.parametrize("module", [energy, cost_study, "peers"])
def test_one_band_helper(module):
    """Percentile bands come from trnlab.engine.sampling.bands only (the claims ledger has no
    bands: it evaluates its inputs' ends and corners)."""
    import inspect

    from trnlab.studies import claims, peers

    source = inspect.getsource(peers if module == "peers" else module)
    assert "percentile(" not in source and "from trnlab.engine.sampling import" in source
    assert "percentile(" not in inspect.getsource(claims)


def test_cost_headline_and_reading_follow_the_scenario(cost_ds):
    ratio = float(cost_ds["scenario_cost_ratio"].sel(system="dgx-h100"))
    assert f"$4.00 per chip-hour scenario costs {ratio:.2f}x dgx-h100's" in \
        cost_ds.attrs["headline"]
    be = float(cost_ds["break_even_training_cloud"].sel(system="dgx-h100"))
    text = cost_study.reading(cost_ds)
    assert f"${be:.2f} against dgx-h100" in text
    cheap = cost_study.study(precision="fp8", trn3_price=2.0, n_samples=300)
    dear = cost_study.study(precision="fp8", trn3_price=8.0, n_samples=300)
    assert "at $2.00 it holds against all 3" in cost_study.reading(cheap)
    assert "at $8.00 it misses against all 3" in cost_study.reading(dear)
    assert "$2.00 per chip-hour scenario" in cheap.attrs["headline"]
    none = cost_study.study(precision="fp8", n_samples=50)
    assert "scenario" not in none.attrs["headline"] and "scenario" not in \
        cost_study.reading(none)
    assert none["price_status"].sel(system="trn3-ultraserver").item() == "none"


def test_cost_coordinates_and_units(cost_ds):
    from trnlab import catalog, units

    for s in cost_ds["system"].values:
        chip = catalog.chip(catalog.system(str(s)).chip)
        assert cost_ds["vendor"].sel(system=s).item() == chip.vendor
        assert cost_ds["system_status"].sel(system=s).item() == chip.fields["tdp"].status
    status = dict(zip(cost_ds["system"].values, cost_ds["price_status"].values, strict=True))
    assert status["trn3-ultraserver"] == "projected"  # the scenario
    assert status["dgx-h100"] == "announced" and status["gb200-nvl72"] == "none"
    for name in ("tco_per_chip_hour", "cloud_price_per_chip_hour", "break_even_training_cloud",
                 "trn3_price", "trn2_capacity_block_price"):
        assert cost_ds[name].attrs["units"] == "USD/(chip*h)", name
    assert cost_ds["serving_cost_per_m_tco"].attrs["units"] == "USD/Mtoken"
    assert cost_ds["tokens_per_s_per_chip"].attrs["units"] == "token/s"
    assert np.isnan(float(cost_ds["break_even_training_cloud"].sel(system="trn3-ultraserver")))
    for var in cost_ds.variables.values():
        if "units" in var.attrs:
            units.parse(var.attrs["units"])


def test_the_energy_study_prices_power_caps_on_the_cluster_system(energy_ds):
    """Along cap_fraction: the clock is the law's, the best layout's throughput relative to
    no cap lies between the clock and 1 and rises with the cap, the chip draws the cap where
    it binds (min(cap, 0.92 TDP) / 0.92 TDP) and tokens per joule is their ratio; the measured
    H100 points come from power.toml."""
    from trnlab.engine.hardware import clock_fraction

    ds, tdp = energy_ds, catalog.chip("trn3").tdp
    f = ds["cap_fraction"].values
    assert f[-1] == 1.0 and ds.attrs["cluster_system"] == "trn3-ultraserver"
    clock = np.array([clock_fraction("trn3", x * tdp) for x in f])
    assert np.allclose(ds["capped_clock"].values, clock)
    speed = ds["capped_training_speed"].values
    assert speed[-1] == 1.0 and np.all(np.diff(speed) > 0)
    assert np.all(speed >= clock - 1e-9) and np.all(speed <= 1.0)
    assert np.allclose(ds["capped_chip_power"].values, np.minimum(f, 0.92) / 0.92)
    assert np.allclose(ds["capped_energy_efficiency"].values,
                       speed / ds["capped_chip_power"].values)
    assert list(ds["h100_cap_w"].values) == [200, 300, 400, 500, 600, 700]
    assert np.allclose(ds["h100_cap_fraction"].values, np.array([2, 3, 4, 5, 6, 7]) / 7)
    assert ds["h100_measured_training_speed"].attrs["source"] == "MAYR-AIBENCH"
    assert "**Power caps.**" in energy.reading(ds)
