"""The memory-and-inference study: HBM, KV cache, the serving roofline, SLO rates, what fits."""

from __future__ import annotations

import re

import numpy as np
import pytest

from trnlab import backend, catalog, io
from trnlab.catalog import model
from trnlab.catalog.params import load_serving
from trnlab.engine.hardware import serve_calibration
from trnlab.engine.shape import serve_shape
from trnlab.errors import CatalogError, ParameterError
from trnlab.perf import roofline
from trnlab.perf import serve as core
from trnlab.studies import memory

CAL = serve_calibration()


@pytest.fixture(scope="module")
def ds():
    return memory.study()


def test_default_study_shape_and_attrs(ds, tmp_path):
    assert dict(ds.sizes) == {"chip": 6, "model": 4, "context": 4, "batch": 11}
    for name in [*ds.dims, *ds.data_vars]:
        assert re.fullmatch(r"[a-z][a-z0-9_]*", name), name
    for name, var in ds.data_vars.items():
        assert var.attrs.get("units") and var.attrs.get("long_name"), name
    back = io.load(io.save(ds, tmp_path / "m.nc", parameters={"models": list(ds.model.values)}))
    assert set(back.data_vars) == set(ds.data_vars)
    assert list(back["slo_reason"].values.ravel()) == list(ds["slo_reason"].values.ravel())


def test_each_chip_in_its_largest_domain(ds):
    assert list(ds["system"].values) == ["trn2-ultraserver", "trn3-ultraserver", "dgx-h200",
                                         "dgx-b200", "gb200-nvl72", "tpu-v7-pod"]
    assert list(ds["n_chips"].values) == [64, 144, 8, 8, 72, 9216]


def test_per_chip_memory_from_the_catalog(ds):
    for chip in ds["chip"].values:
        rec = catalog.chip(str(chip))
        row = ds.sel(chip=chip)
        assert float(row["hbm_capacity"]) == rec.hbm_capacity
        assert float(row["hbm_bandwidth"]) == rec.hbm_bandwidth
        assert float(row["bytes_per_flop"]) == pytest.approx(rec.hbm_bandwidth / rec.peak("bf16"))
        assert float(row["ridge_intensity"] * row["bytes_per_flop"]) == pytest.approx(1.0)
    t2, t3 = ds.sel(chip="trn2"), ds.sel(chip="trn3")
    assert float(t3["hbm_capacity"] / t2["hbm_capacity"]) == pytest.approx(1.5, rel=1e-3)
    assert float(t3["ridge_intensity"]) < float(t2["ridge_intensity"])  # more bytes per FLOP


def test_kv_bytes_per_token_mha_gqa_mla(ds):
    kv = ds["kv_bytes_per_token"]
    assert float(kv.sel(model="llama3-70b")) == 327680  # 2 x 80 layers x 8 KV heads x 128 x 2 B
    assert float(kv.sel(model="llama3-405b")) == 2 * 126 * 8 * 128 * 2
    assert float(kv.sel(model="deepseek-v3")) == 61 * (512 + 64) * 2  # MLA latent + rope key
    assert float(kv.sel(model="gpt-oss-120b")) == 2 * 36 * 8 * 64 * 2
    assert list(ds["attention"].values) == ["GQA", "GQA", "MLA", "GQA + SWA"]
    # one request: every layer holds its whole context, but gpt-oss's 18 windowed layers hold
    # 128 tokens: at 8192 tokens 0.5 x 8192 + 0.5 x 128 = 4160 tokens on average
    req = ds["kv_bytes_per_request"].sel(context=8192)
    assert float(req.sel(model="llama3-70b")) == 327680 * 8192
    assert float(req.sel(model="gpt-oss-120b")) == 2 * 36 * 8 * 64 * 2 * 4160
    fp8 = memory.kv_dataset(["llama3-70b"], memory.chips_dataset(["trn3"]), [8192], kv="fp8")
    assert float(fp8["kv_bytes_per_token"].sel(model="llama3-70b")) == 327680 / 2


def test_trn3_holds_more_than_1p5x_the_requests_of_trn2_per_chip(ds):
    at8k = ds.sel(model="llama3-70b", context=8192)
    t2, t3 = at8k.sel(chip="trn2"), at8k.sel(chip="trn3")
    assert float(t2["replica_tp"]) == float(t3["replica_tp"]) == 2  # 141 GB of BF16 weights
    # 1.5x HBM, but the weights per chip do not grow: the KV room grows by far more than 1.5x
    assert float(t3["max_concurrency_per_chip"]) > 1.5 * float(t2["max_concurrency_per_chip"])


def test_replica_is_the_smallest_power_of_two_that_holds_one_request(ds):
    m = serve_shape(model("llama3-405b"))
    for chip in ds["chip"].values:
        for ctx in ds["context"].values:
            row = ds.sel(model="llama3-405b", chip=chip, context=ctx)
            tp = float(row["replica_tp"])
            cap = float(ds["hbm_capacity"].sel(chip=chip))
            r = float(catalog.chip(str(chip)).ranks_per_chip)  # Neuron: logical cores per chip
            got = core.max_concurrency(m, cap, tp, 1.0, 1.0, 2.0, 2.0, float(ctx), CAL, r)
            assert float(row["max_concurrency"]) == float(got) >= 1
            smaller = core.max_concurrency(m, cap, tp / 2, 1.0, 1.0, 2.0, 2.0, float(ctx), CAL,
                                           r)
            assert tp == 1 or float(smaller) < 1
            assert float(row["max_concurrency_per_chip"]) == float(got) / tp
    conc = ds["max_concurrency"].sel(model="llama3-70b", chip="trn3")
    assert np.all(np.diff(conc.values) < 0)  # longer contexts, fewer requests


def test_mla_replica_that_does_not_fit_in_one_domain_is_nan(ds):
    row = ds.sel(model="deepseek-v3", chip="h200")  # 1.34 TB of BF16 weights > 8 x 141 GB
    assert np.isnan(row["max_concurrency"]).all() and np.isnan(row["replica_tp"]).all()
    assert (ds["replica_adp"].sel(model="llama3-70b") == 1).all()  # GQA: no attention-DP
    trn3 = ds.sel(model="deepseek-v3", chip="trn3", context=8192)
    assert float(trn3["replica_adp"]) > 1  # MLA latents are not split by TP: DP attention


def test_decode_gemm_intensity_is_two_batch_over_weight_bytes(ds):
    dense = ds["decode_gemm_intensity"].sel(model="llama3-70b")
    batch = ds["batch"].values
    np.testing.assert_allclose(dense.sel(batch=slice(1, 64)), batch[batch <= 64], rtol=0.03)
    fp8 = memory.roofline_dataset(["llama3-70b"], memory.chips_dataset(["trn3"]), 2048, 512,
                                  weights="fp8")
    one = fp8["decode_gemm_intensity"].sel(model="llama3-70b", batch=1)
    assert float(one) == pytest.approx(2.0, rel=0.03)  # the embedding is read, not multiplied
    moe = ds["decode_gemm_intensity"].sel(model="deepseek-v3")
    assert float(moe.sel(batch=1024)) < 0.1 * 1024  # a big batch hits (and reads) every expert


def test_decode_is_below_the_ridge_and_dense_prefill_above(ds):
    ridge = ds["ridge_intensity"]
    small = ds["decode_step_intensity"].sel(batch=slice(1, 64))
    assert (small < ridge.min()).all()
    assert bool(ds["decode_step_memory_bound"].sel(batch=slice(1, 64)).all())
    slo = ds["slo_decode_intensity"]
    assert bool((slo < ridge).where(slo.notnull(), True).all())  # decode at the SLO batch
    dense = ds["prefill_intensity"].sel(model=["llama3-70b", "llama3-405b"])
    assert (dense > ridge.max()).all()
    assert bool(ds["prefill_compute_bound"].sel(model=["llama3-70b", "llama3-405b"]).all())
    # DeepSeek-V3: 2048 tokens spread over 256 experts give each expert 64 tokens
    assert float(ds["prefill_intensity"].sel(model="deepseek-v3")) < float(ridge.min())
    # the weight GEMMs alone cross the ridge near B ~ ridge (BF16 weights: 2B / 2 B)
    cross = ds["decode_gemm_ridge_batch"].sel(model="llama3-70b")
    assert (cross >= ridge / 2).all() and (cross <= 2 * ridge).all()


def test_attainable_is_the_roofline(ds):
    att = ds["decode_step_attainable"]
    peak, bw = ds["peak_bf16"], ds["hbm_bandwidth"]
    assert (att <= peak).all()
    mem = ds["decode_step_memory_bound"]
    want = (ds["decode_step_intensity"] * bw).where(mem).transpose(*att.dims)
    np.testing.assert_allclose(att.where(mem), want)
    assert bool((ds["prefill_attainable"] == peak).where(ds["prefill_compute_bound"],
                                                         True).all())


def test_per_system_rate_is_per_chip_times_n_chips_and_nan_has_a_reason(ds):
    per_chip, per_sys = ds["tokens_per_s_per_chip"], ds["tokens_per_s_per_system"]
    np.testing.assert_allclose(per_sys, per_chip * ds["n_chips"])
    missing = per_chip.isnull()
    has_reason = ds["slo_reason"] != ""
    assert bool((missing == has_reason).all())
    assert not missing.sel(model="llama3-70b").any()
    ok = ds.where(~missing)
    assert bool((ok["slo_tpot"] <= 0.050).where(~missing, True).all())
    assert bool((ok["slo_ttft"] <= 2.0).where(~missing, True).all())
    terms = np.maximum(ds["slo_decode_compute_time"], ds["slo_decode_stream_time"])
    assert bool((ds["slo_tpot"] >= terms).where(~missing, True).all())


def test_tokens_per_s_matches_the_inference_frontier(ds):
    from trnlab.engine import serving

    front = serving.frontier("llama3-70b", "trn3-ultraserver", tpot_ms=50.0, ttft_ms=2000.0)
    best = serving.best(front)
    row = ds.sel(model="llama3-70b", chip="trn3")
    assert float(row["tokens_per_s_per_chip"]) == pytest.approx(
        best["output_tokens_per_s_per_chip"])
    assert int(row["slo_batch"]) == best["batch"]


def test_pooled_memory_what_fits_in_one_domain(ds):
    fits = ds["fits_one_domain"]
    assert bool(fits.sel(model="llama3-405b", chip="trn3"))
    # 811.7 GB of BF16 weights + 64 requests x 8192 tokens x 516,096 B of KV = 1,082.3 GB
    # against 8 x 141 GiB x (1 - 0.1, vLLM's gpu_memory_utilization) = 1,090.1 GB: it fits,
    # by 1%, and not once the runtime keeps 2% more
    assert bool(fits.sel(model="llama3-405b", chip="h200"))
    tight = memory.study(params=load_serving().replace(mem_reserve=0.12))
    assert not bool(tight["fits_one_domain"].sel(model="llama3-405b", chip="h200"))
    assert bool(fits.sel(model="deepseek-v3", chip="trn3"))
    assert not bool(fits.sel(model="deepseek-v3", chip="h200"))
    need, usable = ds["replica_bytes"], ds["hbm_usable"]
    per = ds["chips_per_replica"]
    assert bool(((per - 1) * usable < need).all() & (per * usable >= need).all())
    assert bool((ds["replicas_per_domain"] * per <= ds["n_chips"]).all())
    assert bool(((ds["replicas_per_domain"] >= 1) == fits).all())
    w = float(ds["weight_bytes"].sel(model="llama3-405b"))
    kv = 64 * 8192 * float(ds["kv_bytes_per_token"].sel(model="llama3-405b"))
    assert float(need.sel(model="llama3-405b")) == pytest.approx(w + kv)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"models": []}, "models"),
    ({"chips": "trn3"}, "chips"),
    ({"contexts": [0, 8192]}, "contexts"),
    ({"contexts": [8192, 8192]}, "contexts"),
    ({"input_len": 0}, "input_len"),
    ({"tpot_ms": -1.0}, "tpot_ms"),
    ({"weights": "fp7"}, "fp7"),
])
def test_bad_parameters_are_named(kwargs, match):
    with pytest.raises(ParameterError, match=match):
        memory.study(**kwargs)


def test_unknown_ids_are_catalog_errors():
    with pytest.raises(CatalogError, match="trn9"):
        memory.study(chips=["trn9"])
    with pytest.raises(CatalogError, match="llama9"):
        memory.study(models=["llama9"])


def test_roofline_core_uses_the_namespace_of_its_inputs(xp_name):
    m = serve_shape(model("llama3-70b"))
    batch = backend.asarray([1.0, 16.0, 256.0])
    inten = roofline.gemm_intensity(m, batch, 2.0, 2.0)
    assert type(inten) is type(batch)
    att = roofline.attainable(inten, 671e12, 4.9e12)
    got = backend.to_numpy(att)
    np.testing.assert_allclose(got, np.minimum(671e12, backend.to_numpy(inten) * 4.9e12))
    step = backend.to_numpy(roofline.decode_step_intensity(m, batch, 2304.0, 2.0, 2.0, 2.0))
    assert step[2] < 0.5 * float(backend.to_numpy(inten)[2])  # at B = 256 the KV cache weighs
