"""The serving model: KV cache, memory limits, decode/prefill physics, frontier, pools."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trnlab import backend
from trnlab.catalog import model
from trnlab.cli import main
from trnlab.engine import serving
from trnlab.engine.hardware import half_dim, hardware, serve_calibration
from trnlab.engine.layouts import NO_FIT
from trnlab.engine.shape import serve_shape
from trnlab.perf import serve as core

CAL = serve_calibration()


def test_kv_bytes_per_token_gqa_and_mla():
    m = serve_shape(model("llama3-70b"))
    full = 2 * 80 * 8 * 128 * 2
    assert float(core.kv_bytes_per_token(m, 1.0, 1.0, 1.0, 2.0)) == full
    assert float(core.kv_bytes_per_token(m, 8.0, 1.0, 1.0, 2.0)) == full / 8
    assert float(core.kv_bytes_per_token(m, 16.0, 1.0, 1.0, 2.0)) == full / 8  # replicated heads
    assert float(core.kv_bytes_per_token(m, 8.0, 2.0, 1.0, 1.0)) == full / 8 / 2 / 2
    ds = serve_shape(model("deepseek-v3"))
    latent = 61 * (512 + 64) * 2
    assert float(core.kv_bytes_per_token(ds, 1.0, 1.0, 1.0, 2.0)) == latent
    assert float(core.kv_bytes_per_token(ds, 8.0, 1.0, 1.0, 2.0)) == latent  # not split by TP


def test_weights_that_do_not_fit_are_masked_never_fast():
    res = serving.evaluate("llama3-405b", "h100-sxm", "dgx-h100", tp=np.array([1, 8, 8]),
                             batch=8, input_len=1024, output_len=256,
                             weights=np.array(["fp8"])[0])
    assert list(res["fits"]) == [False, True, True]  # 405 GB of FP8 weights need 8 x 80 GB
    bf16 = serving.evaluate("llama3-405b", "h100-sxm", "dgx-h100", tp=8, batch=8,
                              input_len=1024, output_len=256)
    assert not bf16["fits"]  # 811 GB of BF16 weights do not fit in 640 GB
    ds = serving.frontier("llama3-405b", "dgx-h100", input_len=1024, output_len=256)
    unfit = ds.where(ds["tp"] * ds["pp"] < 8, drop=True)
    assert (unfit["reason"] == NO_FIT).all() and not unfit["pareto"].any()


def test_concurrency_falls_with_context_and_trn3_holds_more_than_trn2():
    m = serve_shape(model("llama3-70b"))
    ctx = np.array([2048.0, 8192.0, 32768.0])
    per_chip = {}
    for chip, system in (("trn2", "trn2-48xl"), ("trn3", "trn3-ultraserver")):
        hw = hardware(chip, system)
        limit = core.max_concurrency(m, hw.hbm_capacity, 8.0, 1.0, 1.0, 2.0, 2.0, ctx, CAL)
        assert np.all(np.diff(limit) < 0)
        per_chip[chip] = limit[1]
    assert per_chip["trn3"] > 1.5 * per_chip["trn2"]  # 1.5x HBM, the weights do not grow


def test_decode_physics():
    m = serve_shape(model("llama3-8b"))
    hw = hardware("h100-sxm", "dgx-h100", "fp8")
    batch = np.array([1.0, 8.0, 64.0, 512.0])
    lay = core.ServeLayout(tp=1.0, pp=1.0, ep=1.0, adp=1.0, wbytes=1.0, kvbytes=1.0)
    step = core.decode_step(m, hw, lay, batch, 2048.0, CAL, half_dim())
    assert np.all(np.diff(step) > 0)
    assert np.all(np.diff(batch / step) > 0)  # batching raises throughput
    weights = 8.03e9 * 1.0 / (hw.hbm_bw * CAL.mem_eff)
    # batch 1 streams the weights (plus KV); the runtime's fixed cost comes on top
    assert step[0] - hw.step_overhead == pytest.approx(weights, rel=0.1)
    longer = core.decode_step(m, hw, lay, batch, 8192.0, CAL, half_dim())
    assert np.all(longer > step)


def test_backends_agree(xp_name):
    m = serve_shape(model("mixtral-8x7b"))
    hw = hardware("trn3", "trn3-ultraserver", "bf16")
    layout = {"tp": [1.0, 2.0, 4.0, 8.0], "pp": [1.0, 1.0, 2.0, 1.0], "ep": 1.0, "adp": 1.0,
              "wbytes": 2.0, "kvbytes": 2.0}
    batch, rest = np.array([1.0, 16.0, 64.0, 256.0]), (2048.0, 512.0, CAL, half_dim())
    ref = core.serve(m, hw, core.ServeLayout(**{k: np.asarray(v) for k, v in layout.items()}),
                     batch, *rest)
    got = core.serve(m, hw, core.ServeLayout(**{k: backend.asarray(np.asarray(v, dtype=float))
                                                for k, v in layout.items()}),
                     backend.asarray(batch), *rest)
    for key in ("tpot", "ttft", "output_tokens_per_s", "max_concurrency"):
        np.testing.assert_allclose(backend.to_numpy(got[key]), ref[key], rtol=1e-6)


def test_frontier_meets_targets_and_is_pareto():
    ds = serving.frontier("llama3-70b", "trn3-ultraserver", input_len=2048, output_len=512,
                            tpot_ms=40, ttft_ms=1500)
    ok = ds.where(ds["reason"] == 0, drop=True)
    assert (ok["tpot"] * 1e3 <= 40).all() and (ok["ttft"] * 1e3 <= 1500).all()
    front = ds.where(ds["pareto"], drop=True).sortby("tpot")
    assert np.all(np.diff(front["output_tokens_per_s_per_chip"].values) > 0)
    best = serving.best(ds)
    assert best["output_tokens_per_s_per_chip"] == pytest.approx(
        float(ok["output_tokens_per_s_per_chip"].max()))
    assert best["chip_s_per_m_tokens"] == pytest.approx(1e6 / best["output_tokens_per_s_per_chip"])


def test_disaggregated_pools_balance_rates():
    same = serving.disaggregated("llama3-70b", "trn3-ultraserver", "trn3-ultraserver")
    cross = serving.disaggregated("llama3-70b", "dgx-h100", "trn3-ultraserver")
    assert same["prefill_chips_per_decode_chip"] == pytest.approx(
        same["decode_requests_per_s_per_chip"] / same["prefill_requests_per_s_per_chip"])
    assert cross["kv_transfer_s"] > same["kv_transfer_s"]  # scale-out is slower than scale-up
    assert same["ttft"] > same["kv_transfer_s"]


def test_steady_state_follows_littles_law():
    rates = np.array([2.0, 5.0, 20.0, 1e4])
    st = serving.steady_state("llama3-8b", "h100-sxm", "dgx-h100", tp=1, request_rate=rates,
                                input_len=1000, output_len=200)
    assert np.all(np.diff(st["batch"]) > 0)
    assert st["sustainable"][0] and not st["sustainable"][-1]
    np.testing.assert_allclose(st["batch"][:2], rates[:2] * (st["ttft"][:2] + 200 *
                                                              st["tpot"][:2]), rtol=1e-3)


def test_cli_serve(capsys):
    assert main(["serve", "--model", "llama3-8b", "--system", "dgx-h100", "--input", "1024",
                 "--output", "256", "--tpot-ms", "30", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["best"]["tpot"] * 1e3 <= 30
    assert {"tp", "batch", "ttft", "tpot", "chip_s_per_m_tokens"} <= set(out["frontier"][0])
    assert main(["serve", "--model", "llama3-8b", "--system", "dgx-h100", "--kv", "fp9"]) == 2
    assert "fp9" in capsys.readouterr().err


def test_serving_grid_matches_the_direct_evaluation():
    from trnlab.engine.serve_grid import best_throughput

    kw = {"tp": [1, 2, 4, 8], "pp": [1, 2], "batch": [1, 8, 64, 512],
          "input_len": [512, 4096], "output_len": [128, 1024]}
    best, n = best_throughput("llama3-8b", ["dgx-h100"], tpot_ms=40, dtype="float64", chunk=1,
                              **kw)
    assert n == 4 * 2 * 4 * 2 * 2
    tp, pp, b = (g.ravel() for g in np.meshgrid(kw["tp"], kw["pp"], kw["batch"], indexing="ij"))
    for i, inp in enumerate(kw["input_len"]):
        for j, out in enumerate(kw["output_len"]):
            r = serving.evaluate("llama3-8b", "h100-sxm", "dgx-h100", tp=tp, pp=pp, batch=b,
                                   input_len=inp, output_len=out)
            ok = r["fits"] & (r["tpot"] * 1e3 <= 40)
            expected = np.max(np.where(ok, r["output_tokens_per_s_per_chip"], 0.0))
            assert best[0, i, j] == pytest.approx(expected, rel=1e-9)


def test_frontier_prices_tokens_at_the_list_or_a_given_price():
    priced = serving.frontier("llama3-8b", "dgx-h100", input_len=1024, output_len=256,
                                price_per_chip_hour=3.6)
    np.testing.assert_allclose(priced["usd_per_m_tokens"], priced["chip_s_per_m_tokens"] * 1e-3)
    listed = serving.frontier("llama3-8b", "dgx-h100", input_len=1024, output_len=256)
    assert listed.attrs["price_per_chip_hour"] == pytest.approx(55.04 / 8)  # p5.48xlarge
    unpriced = serving.frontier("llama3-8b", "gb200-nvl72", input_len=1024, output_len=256)
    assert np.isnan(unpriced["usd_per_m_tokens"]).all()  # no list price in the catalog


def test_decode_reads_the_mean_context_of_the_output():
    """Continuous batching: a request's decode steps read, on average, its prompt plus half its
    output (``context = input + output / 2``): TPOT of one stage is the decode step at that
    context, not at the prompt or the full length."""
    m = serve_shape(model("llama3-8b"))
    hw = hardware("h100-sxm", "dgx-h100", "bf16")
    lay = core.ServeLayout(tp=1.0, pp=1.0, ep=1.0, adp=1.0, wbytes=2.0, kvbytes=2.0)
    batch, inp, out = 32.0, 2048.0, 512.0
    tpot = float(core.serve(m, hw, lay, batch, inp, out, CAL, half_dim())["tpot"])
    at = lambda ctx: float(core.decode_step(m, hw, lay, batch, ctx, CAL, half_dim()))
    assert core.mean_context(inp, out) == inp + out / 2
    assert tpot == pytest.approx(at(inp + out / 2), rel=1e-12)
    assert tpot != pytest.approx(at(inp), rel=1e-6)
    assert tpot != pytest.approx(at(inp + out), rel=1e-6)
