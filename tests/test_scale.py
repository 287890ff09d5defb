"""Training at scale: tiered collectives, switch counts, Young/Daly, goodput, Monte-Carlo runs,
the Llama 3 interruption check, the scale-out data and the ``trnlab scale`` command."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from trnlab.catalog.scale import load_scale
from trnlab.cli import main
from trnlab.engine import scale
from trnlab.errors import CatalogError, TrnlabError
from trnlab.perf import network, reliability

# a two-tier fabric: 4 domains per leaf group, 64 per spine block; 50 GB/s per chip into the
# leaves, 25 GB/s (2:1 oversubscribed) into the spines; 10 us and 20 us per step
SPANS, BWS, LATS = (4.0, 64.0), (50e9, 25e9), (10e-6, 20e-6)


def test_two_tier_reduce_scatter_and_all_reduce_by_hand() -> None:
    # 16 domains: 4 members per leaf group, 16/4 = 4 leaf groups under the spine
    assert network.tier_members(16.0, SPANS) == (4.0, 4.0)
    # leaf: 3/4 x 1 GB / 50 GB/s + 3 x 10 us = 15 ms + 30 us
    # spine on the quarter left: 3/4 x 0.25 GB / 25 GB/s + 3 x 20 us = 7.5 ms + 60 us
    assert network.reduce_scatter(1e9, 16.0, SPANS, BWS, LATS) == pytest.approx(0.02259)
    # all-reduce: twice the bandwidth terms (45 ms); latency min(2(n-1), 2 log2 n) = 4 steps per
    # tier: 4 x 10 us + 4 x 20 us = 120 us
    assert network.all_reduce(1e9, 16.0, SPANS, BWS, LATS) == pytest.approx(0.04512)
    # 3 domains stay under one leaf: 2/3 x 1 GB / 50 GB/s + 2 x 10 us
    assert network.reduce_scatter(1e9, 3.0, SPANS, BWS, LATS) == pytest.approx(
        2 / 3 * 1e9 / 50e9 + 2 * 10e-6)


def test_effective_link_reproduces_the_tiered_all_reduce_in_the_flat_ring() -> None:
    bw, lat = network.effective_link(16.0, SPANS, BWS, LATS)
    # (15/16) / (3/4 / 50e9 + 3/4 / 4 / 25e9) = 0.9375 / 2.25e-11
    assert float(bw) == pytest.approx(0.9375 / 2.25e-11)
    # (4 x 10 us + 4 x 20 us) / (2 x 15)
    assert float(lat) == pytest.approx(4e-6)
    for nbytes in (1e6, 1e9):  # the flat ring of trnlab.perf.comm: 2 ((n-1)/n B/bw + (n-1) a)
        flat = 2 * (15 / 16 * nbytes / bw + 15 * lat)
        assert float(flat) == pytest.approx(network.all_reduce(nbytes, 16.0, SPANS, BWS, LATS))
    bw1, lat1 = network.effective_link(1.0, SPANS, BWS, LATS)  # inside one domain
    assert (float(bw1), float(lat1)) == (50e9, 10e-6)


def test_switch_counts_of_a_two_level_fat_tree_by_hand() -> None:
    # 1,024 chips, one port each, radix 64: leaves 32 down / 32 up -> 32 leaves, 1,024 uplinks,
    # spines with all 64 ports down -> 16; 48 switches
    c = network.switch_counts(np.asarray(1024.0), 1.0, 64.0, (256.0, 16384.0), (1.0, 1.0))
    assert [float(x) for x in c["per_tier"]] == [32.0, 16.0]
    assert float(c["switch_links"]) == 1024.0 and float(c["nic_links"]) == 1024.0
    # 3:1 oversubscribed leaves: 48 down / 16 up -> ceil(1024/48) = 22 leaves, 352 uplinks,
    # ceil(352/64) = 6 spines
    c = network.switch_counts(np.asarray(1024.0), 1.0, 64.0, (256.0, 16384.0), (1.0, 3.0))
    assert [float(x) for x in c["per_tier"]] == [22.0, 6.0]
    # 200 chips fit under one leaf group: the leaves are the top tier, all 64 ports down
    c = network.switch_counts(np.asarray(200.0), 1.0, 64.0, (256.0, 16384.0), (1.0, 1.0))
    assert [float(x) for x in c["per_tier"]] == [4.0, 0.0]


def test_young_and_daly_by_hand() -> None:
    # delta 10 s, M 180 min: Young sqrt(2 x 10 x 10,800) = 464.76 s (7.7 min)
    assert float(reliability.young_interval(10.0, 10800.0)) == pytest.approx(464.758, rel=1e-5)
    # Daly: x = 10 / 21,600; 464.758 (1 + sqrt(x)/3 + x/9) - 10 = 458.12 s (7.6 min)
    x = 10 / 21600
    assert float(reliability.daly_interval(10.0, 10800.0)) == pytest.approx(
        464.758 * (1 + math.sqrt(x) / 3 + x / 9) - 10, rel=1e-5)
    assert float(reliability.daly_interval(50.0, 20.0)) == 20.0  # delta >= 2M: tau = M


def test_goodput_by_hand_and_against_the_first_order_waste() -> None:
    tau, delta, r, m = 600.0, 10.0, 600.0, 10800.0
    e = m * math.exp(r / m) * (math.exp((tau + delta) / m) - 1)
    assert float(reliability.segment_time(tau, delta, r, m)) == pytest.approx(e)
    g = float(reliability.goodput(tau, delta, r, m))
    assert g == pytest.approx(tau / e)
    first_order = 1 - (delta / tau + (tau / 2 + r) / m)  # Young's waste
    assert g == pytest.approx(first_order, abs=0.01)
    # a planned interruption per day at R: the wall time stretches by 1 + R / 86,400
    assert float(reliability.goodput(tau, delta, r, m, 1 / 86400)) == pytest.approx(
        tau / e / (1 + r / 86400))


def test_monte_carlo_mean_matches_the_analytical_expectation() -> None:
    work, tau, delta, r, m = 1e6, 600.0, 10.0, 300.0, 3600.0
    n = 20_000
    wall = np.asarray(scale.simulate_runs(np.full(n, work), tau, delta, r, m, 0.0,
                                          np.random.default_rng(1)))
    expected = work / tau * m * math.exp(r / m) * (math.exp((tau + delta) / m) - 1)
    assert wall.std() > 0
    assert abs(wall.mean() - expected) < 4 * wall.std() / math.sqrt(n)
    assert wall.min() >= work / tau * (tau + delta)  # never faster than failure-free


def test_monte_carlo_counts_failures_during_restarts() -> None:
    # restart as long as the MTBF: Daly's factor e^(R/M) = e must be in the mean
    work, tau, m = 2e5, 100.0, 1000.0
    wall = np.asarray(scale.simulate_runs(np.full(20_000, work), tau, 0.0, m, m, 0.0,
                                          np.random.default_rng(2)))
    expected = work / tau * m * math.e * math.expm1(tau / m)
    assert abs(wall.mean() - expected) < 4 * wall.std() / math.sqrt(wall.size)


def test_llama3_interruptions_reproduced_within_the_band() -> None:
    # rates per 1,000 chip-days 0.3029 + 0.0475 + 0.0712 on 16,384 x 54 chip-days, host
    # 0.4159 per 1,000 node-days on 2,048 x 54: 884.736 x 0.4216 + 110.592 x 0.4159 = 419.0
    r = scale.interruptions("dgx-h100", 16384, 54.0)
    assert r["expected"] == pytest.approx(884.736 * 0.4216 + 110.592 * 0.4159, rel=1e-4)
    assert r["p5"] <= 419 <= r["p95"]
    assert r["p95"] - r["p5"] < 150  # measured rates: the band is the count's own noise
    assert r["job_mtbf_h"] == pytest.approx(54 * 24 / 419, rel=1e-3)


def test_llama3_goodput_consistent_with_the_published_effective_training_time() -> None:
    r = scale.evaluate_run("llama3-405b", "dgx-h100", 16384, precision="bf16", n_trials=2000)
    assert r["goodput_analytic"] > 0.90  # Llama 3: ">90% effective training time"
    assert r["goodput_band"]["p5"] < 0.90 < r["goodput_band"]["p95"]
    assert r["job_mtbf_h"] == pytest.approx(54 * 24 / 419, rel=1e-3)
    # the Daly interval of a ~5 s checkpoint at M ~3.1 h is a few minutes
    assert 2 < r["checkpoint_interval_min"] < 10


def test_trainium3_fabric_tapers_at_the_campus_tier() -> None:
    t = scale.tiers("trn3-ultraserver")
    assert t.spans == (32.0, 2048.0, 8192.0)  # 4,608 / 294,912 / 1,179,648 chips in 144s
    assert t.bws[0] == t.bws[1] == 2 * t.bws[2]  # 1:1, 1:1, 2:1
    cfg = {"dp": np.asarray([64.0, 124416.0]), "cp": np.asarray([1.0, 1.0]),
           "tp": np.asarray([8.0, 8.0])}
    bw, _ = scale.dp_link(cfg, 144.0, t)
    assert bw[0] == pytest.approx(t.bws[0])  # 64 x 8 / 144 -> 4 domains, under one leaf
    assert t.bws[2] < bw[1] < t.bws[0]  # 6,912 domains reach the tapered tier


def test_the_search_sees_the_tiered_network(tmp_path) -> None:
    from trnlab._paths import data_dir

    shutil.copytree(data_dir() / "scale", tmp_path / "scale")
    path = tmp_path / "scale" / "scaleout.toml"
    spine = 'oversubscription = { value = 1, unit = "1", status = "announced", source = ' \
        '"LLAMA3-HERD; NV-SUPERPOD-H100" }'
    text = path.read_text()
    assert text.count(spine) == 1
    path.write_text(text.replace(spine, 'oversubscription = { value = 16, unit = "1", '
                                 'status = "announced", source = "LLAMA3-HERD" }'))
    tapered = load_scale(tmp_path / "scale")
    flat = scale.hardware("gb200", "gb200-nvl72", "fp8")
    base = scale.search("llama3-405b", "gb200-nvl72", 9216)
    slow = scale.search("llama3-405b", "gb200-nvl72", 9216, data=tapered)
    assert base["hardware"].out_bw == pytest.approx(flat.out_bw)  # under the non-blocking core
    # 16:1 into the spines: the data-parallel ring is slower, or the search avoids it
    assert slow["tokens_per_s_per_chip"] < base["tokens_per_s_per_chip"]
    assert slow["hardware"].out_bw < flat.out_bw or slow["layout"] != base["layout"]


def test_bad_scale_data_is_one_catalog_error(tmp_path) -> None:
    from trnlab._paths import data_dir

    shutil.copytree(data_dir() / "scale", tmp_path / "scale")
    path = tmp_path / "scale" / "scaleout.toml"
    text = path.read_text()
    path.write_text(text.replace('span = { value = 294912, range = [147456, 294912]',
                                 'span = { value = 2304, range = [2304, 2304]', 1))
    with pytest.raises(CatalogError, match="spans must increase"):
        load_scale(tmp_path / "scale")
    path.write_text(text.replace('"trn3-ultraserver", ', '"trn9-ultraserver", ', 1))
    with pytest.raises(CatalogError, match="trn9-ultraserver"):
        load_scale(tmp_path / "scale")


def test_bad_arguments_raise_trnlab_errors() -> None:
    with pytest.raises(TrnlabError, match="n_chips"):
        scale.evaluate_run("llama3-405b", "trn3-ultraserver", 0)
    with pytest.raises(TrnlabError, match="recovery"):
        scale.evaluate_run("llama3-405b", "trn3-ultraserver", 1440, recovery="prayer")
    with pytest.raises(TrnlabError, match="no fabric serves"):
        scale.evaluate_run("llama3-405b", "dgx-a100", 1024)


def test_cli_scale_json_keys_and_bad_input(capsys) -> None:
    assert main(["scale", "--model", "llama3-70b", "--system", "trn3-ultraserver", "--chips",
                 "1152", "--trials", "200", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    for key in ("tokens_per_s_per_chip", "mfu", "job_mtbf_h", "checkpoint_interval_min",
                "goodput", "days_to_train", "facility_power_mw"):
        assert isinstance(out[key], float), key
    assert out["precision"] == "mxfp8"
    assert out["goodput_band"]["p5"] <= out["goodput"] <= out["goodput_band"]["p95"]
    assert main(["scale", "--model", "llama3-70b", "--system", "trn3-ultraserver", "--chips",
                 "-5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "n_chips" in err


def test_facility_power_at_a_million_chips_is_chips_hosts_network_and_cooling() -> None:
    r = scale.evaluate_run("llama3-405b", "trn3-ultraserver", 995_328, n_trials=500)
    p = r["facility_power_mw_band"]
    # 995,328 chips x 0.7-1.4 kW x (1 + 0.2-1.05) x PUE 1.15: between 0.8 and 3.2 GW
    assert 800 < p["p5"] < p["p50"] < p["p95"] < 3200
    assert 0 < r["network_power_mw_band"]["p50"] < 0.1 * p["p50"]
    assert 0 < r["power_swing_mw_band"]["p50"] < p["p50"]


def test_network_and_reliability_run_on_the_strict_array_api() -> None:
    xps = pytest.importorskip("array_api_strict")
    n = xps.asarray([3.0, 16.0])
    got = network.all_reduce(xps.asarray(1e9), n, SPANS, BWS, LATS)
    want = [network.all_reduce(1e9, float(v), SPANS, BWS, LATS) for v in (3.0, 16.0)]
    assert np.allclose(np.asarray(got), np.asarray(want, dtype=float))
    g = reliability.goodput(xps.asarray([600.0]), 10.0, 600.0, xps.asarray([10800.0]))
    assert float(g[0]) == pytest.approx(float(reliability.goodput(600.0, 10.0, 600.0, 10800.0)))
    c = network.switch_counts(xps.asarray([1024.0]), 1.0, 64.0, (256.0, 16384.0), (1.0, 1.0))
    assert float(c["switches"][0]) == 48.0


def test_bench_reports_the_monte_carlo_at_a_million_chips() -> None:
    from trnlab import bench

    out = bench._scale_monte_carlo(1)
    assert out["scale_mc_1m_10k_s"] > 0 and out["scale_mc_runs_per_s"] > 0


def test_scale_study_dataset_and_reading() -> None:
    from trnlab import io
    from trnlab.studies import scale as study

    ds = study.study(systems=["trn3-ultraserver", "tpu-v7-pod"], chips=[1152, 147456],
                     n_trials=200, intervals_min=[1, 10])
    io.check_attrs(ds)
    trn3 = ds.sel(system="trn3-ultraserver")
    # weak scaling: 1,024 tokens per chip (1.2M at 1,152 chips), capped by the critical batch
    weak = trn3["batch_tokens"].sel(scaling="weak")
    assert float(weak.sel(n_chips=1152)) == pytest.approx(1024 * 1152, rel=0.5)
    assert float(weak.sel(n_chips=147456)) <= 1.5 * ds.attrs["critical_batch_tokens"]
    g = trn3["goodput"].sel(recovery="checkpoint", percentile=50)
    assert float(g.sel(n_chips=147456)) < float(g.sel(n_chips=1152))  # MTBF falls as 1/N
    assert float(trn3["job_mtbf"].sel(n_chips=1152)) == pytest.approx(
        128 * float(trn3["job_mtbf"].sel(n_chips=147456)))
    shares = trn3["step_fraction"].sum("term")
    assert np.allclose(shares, 1.0)  # the breakdown adds up to the step
    text = study.reading(ds)
    assert f"{float(ds['mfu'].sel(system='tpu-v7-pod', n_chips=147456, scaling='strong')):.1%}" \
        in text
    assert ds.attrs["headline"] in text
