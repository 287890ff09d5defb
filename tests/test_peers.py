from __future__ import annotations

import json

import numpy as np
import pytest

from trnlab import catalog
from trnlab.cli import main
from trnlab.engine.economics import slo_rate
from trnlab.errors import CatalogError, ParameterError
from trnlab.studies import peers

DS = peers.study(n_samples=400)


def test_rack_peaks_and_memory_by_hand():
    # Trn3 Gen2: 144 x 2,517 TFLOP/s = 362.4 PFLOP/s FP8 (MXFP4 at the same rate)
    t = DS.sel(system="trn3-ultraserver")
    assert float(t["rack_peak_fp8"]) == pytest.approx(144 * 2517e12)
    assert float(t["rack_peak_fp4"]) == pytest.approx(144 * 2517e12)
    assert float(t["rack_hbm_capacity"]) == pytest.approx(144 * 144 * 2**30)
    # MI355X rack: 128 GPUs (16 x 8-GPU platforms) x 5,033 TFLOP/s FP8, x 10,066 FP4
    m = DS.sel(system="mi355x-8")
    assert int(m["rack_chips"]) == 128
    assert float(m["rack_peak_fp8"]) == pytest.approx(128 * 5033e12)
    assert float(m["rack_peak_fp4"]) == pytest.approx(128 * 10066e12)
    # Ironwood rack: one 4x4x4 cube = 64 chips x 4,614 TFLOP/s FP8
    assert float(DS["rack_peak_fp8"].sel(system="tpu-v7-pod")) == pytest.approx(64 * 4614e12)
    assert float(DS["rack_hbm_bandwidth"].sel(system="gb200-nvl72")) == \
        pytest.approx(72 * catalog.chip("gb200").hbm_bandwidth)


def test_rack_power_lies_within_the_input_ranges():
    fac = catalog.facility().fields["system_overhead"]
    for s in DS["system"].values:
        chip = catalog.chip(catalog.system(str(s)).chip)
        n = float(DS["rack_chips"].sel(system=s))
        lo, hi = chip.tdp_range
        p5, p50, p95 = DS["rack_power"].sel(system=s).values
        assert n * lo * (1 + fac.low) <= p5 <= p50 <= p95 <= n * hi * (1 + fac.high)


def test_tokens_per_rack_are_the_per_chip_slo_rate_times_the_rack():
    for wl, model in (("dense", "llama3-70b"), ("moe", "qwen3-235b-a22b")):
        rate = slo_rate(model, "gb200-nvl72", "fp8")["output_tokens_per_s_per_chip"]
        assert float(DS["rack_tokens_per_s"].sel(system="gb200-nvl72", workload=wl)) == \
            pytest.approx(72 * rate)


def test_cost_per_token_from_a_list_price_and_none_without_one():
    price = float(DS["rack_price"].sel(system="gb300-nvl72"))
    if np.isfinite(price):  # a listed price: USD/h per rack / tokens per hour per rack
        tps = float(DS["rack_tokens_per_s"].sel(system="gb300-nvl72", workload="moe"))
        usd = DS["rack_usd_per_m_tokens"].sel(system="gb300-nvl72", workload="moe")
        assert float(usd.sel(percentile=50.0)) == pytest.approx(price / 3600 / tps * 1e6)
    for s in DS["system"].values:
        if DS["cost_basis"].sel(system=s) == "none":
            assert np.isnan(DS["rack_usd_per_m_tokens"].sel(system=s)).all()
        else:
            band = DS["rack_usd_per_m_tokens"].sel(system=s, workload="dense").values
            assert band[0] <= band[1] <= band[2]


def test_tokens_per_joule_band_and_reading_numbers():
    for s in DS["system"].values:
        band = DS["rack_tokens_per_joule"].sel(system=s, workload="moe").values
        assert 0 < band[0] <= band[1] <= band[2]
    text = peers.reading(DS)
    tps = float(DS["rack_tokens_per_s"].sel(system="trn3-ultraserver", workload="dense"))
    assert f"trn3-ultraserver {tps:,.0f}" in text
    assert DS.attrs["headline"] in text


def test_bad_input_is_one_trnlab_error():
    with pytest.raises(CatalogError, match="system"):
        peers.study(["trn3-ultraserver", "no-such-rack"])
    with pytest.raises(ParameterError, match="tpot_ms"):
        peers.study(tpot_ms=0)


def test_compare_cli_json_and_exit_2(capsys):
    assert main(["compare", "--systems", "trn3-ultraserver,gb200-nvl72", "--samples", "200",
                 "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["system"] for r in rows] == ["trn3-ultraserver", "gb200-nvl72"]
    assert {"PF BF16", "PF FP8", "PF FP4", "HBM TB", "HBM TB/s", "kW", "USD/h",
            "moe tokens/s", "moe tokens/J p50", "dense USD/M tokens p95"} <= set(rows[0])
    assert main(["compare", "--systems", "trn3-ultraserver,nope"]) == 2
    assert capsys.readouterr().err.startswith("trnlab: error:")


def test_scaleup_params_scale_the_ring_bandwidth_of_one_system():
    """hardware(): ring bandwidth = aggregate scale-up / 2 x topology factor x collective
    efficiency, so asking for 704 GB/s on Trn3 (catalog 2,560) scales it by 704 / 2,560."""
    from trnlab.engine.economics import scaleup_params
    from trnlab.engine.hardware import hardware

    base = hardware("trn3", "trn3-ultraserver").up_bw
    slow = hardware("trn3", "trn3-ultraserver", "bf16", scaleup_params("trn3-ultraserver",
                                                                       704e9)).up_bw
    assert slow / base == pytest.approx(704 / 2560)
    assert scaleup_params("trn3-ultraserver", None) is scaleup_params("trn2-ultraserver", None)


def test_a_rack_slice_keeps_its_replicas_inside_the_rack():
    free = slo_rate("qwen3-235b-a22b", "tpu-v7-pod", "fp8")["output_tokens_per_s_per_chip"]
    rack = slo_rate("qwen3-235b-a22b", "tpu-v7-pod", "fp8",
                    max_replica_chips=64)["output_tokens_per_s_per_chip"]
    assert rack <= free  # a subset of the layouts
    tps = float(DS["rack_tokens_per_s"].sel(system="tpu-v7-pod", workload="moe"))
    assert tps == pytest.approx(64 * rack)
