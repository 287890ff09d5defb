"""The training-at-scale study: best layouts, time to train, breakdown, heat map, roofline."""

from __future__ import annotations

import json

import numpy as np
import pytest

from trnlab import catalog, io
from trnlab.engine import training
from trnlab.engine.variables import BREAKDOWN
from trnlab.errors import TrnlabError
from trnlab.studies import training as training_study


@pytest.fixture(scope="module")
def ds():
    return training_study.study()


def test_dims_and_attrs(ds, tmp_path):
    assert set(ds.dims) == {"system", "n_chips", "component", "tp", "pp", "chip", "op"}
    assert list(ds["system"].values) == list(training_study.SYSTEMS)
    assert list(ds["n_chips"].values) == list(training_study.SCALES)
    assert list(ds["chip"].values) == list(training_study.ROOFLINE_CHIPS)
    io.check_attrs(ds)  # units and long_name everywhere
    assert io.load(io.save(ds, tmp_path / "r.nc"))["best_tp"].shape == (5, 3)


def test_every_default_point_has_a_layout(ds):
    assert (ds["reason"] == "ok").all()
    assert np.isfinite(ds["tokens_per_s_per_chip"]).all()
    assert ((ds["mfu"] > 0) & (ds["mfu"] < 1)).all()
    layout = ds["best_tp"] * ds["best_pp"] * ds["best_dp"] * ds["best_cp"]
    np.testing.assert_array_equal(layout, ds["n_chips"].broadcast_like(layout))


def test_time_to_train_and_chip_hours(ds):
    budget = ds.attrs["token_budget"]
    assert budget == 15e12
    np.testing.assert_allclose(ds["chip_hours"], ds["n_chips"] * ds["time_to_train"] / 3600,
                               rtol=1e-12)
    np.testing.assert_allclose(ds["time_to_train"] * ds["tokens_per_s_per_chip"] * ds["n_chips"],
                               budget, rtol=1e-12)


def test_breakdown_sums_to_step_time(ds):
    np.testing.assert_allclose(ds["breakdown"].sum("component"), ds["step_time"], rtol=1e-6)
    assert (ds["breakdown"] >= 0).all()
    assert "compute" in ds["component"].values and "dp" in ds["component"].values


def test_best_layout_is_the_search_best(ds):
    search = training.search("llama3-405b", "dgx-h100", 4096, top=training_study.TIES)
    best = json.loads(search.attrs["best"])
    row = ds.sel(system="dgx-h100", n_chips=4096)
    assert float(row["tokens_per_s_per_chip"]) == pytest.approx(best["tokens_per_s_per_chip"],
                                                                rel=1e-9)
    layout = {k: int(row[f"best_{k}"]) for k in training_study.LAYOUT}
    rows = [{k: int(search[k][i]) for k in training_study.LAYOUT}
            for i in range(search.sizes["config"])]
    assert layout in rows
    i = rows.index(layout)
    for key in ("step_time", "mfu", "mem_per_chip"):
        assert float(row[key]) == float(search[key][i]), key
    np.testing.assert_array_equal(row["breakdown"].values,
                                  [float(search[t][i]) for t in BREAKDOWN])


def test_ties_go_to_the_simplest_layout():
    import xarray as xr

    cfg = {"tp": [8, 8, 8, 4], "pp": [1, 1, 1, 1], "cp": [4, 2, 2, 1], "vpp": [1, 1, 1, 1],
           "ep": [1, 1, 1, 1], "zero": [1, 1, 1, 1], "recompute": [2, 1, 1, 0],
           "micro_batch": [4, 2, 2, 1], "tokens_per_s_per_chip": [100.0, 100.0, 100.0, 99.0]}
    search = xr.Dataset({k: ("config", np.array(v)) for k, v in cfg.items()})
    assert training_study._pick(search) == 1  # cp 2 beats cp 4; the slower cp 1 is no tie


def test_heatmap_max_is_the_best_layout(ds):
    system, n = ds.attrs["heatmap_system"], ds.attrs["heatmap_chips"]
    assert n in ds["n_chips"].values
    best = float(ds["tokens_per_s_per_chip"].sel(system=system, n_chips=n))
    heat = ds["heatmap_tokens_per_s_per_chip"]
    assert float(heat.max()) == pytest.approx(best, rel=1e-9)
    row = ds.sel(system=system, n_chips=n)
    cell = heat.sel(tp=int(row["best_tp"]), pp=int(row["best_pp"]))
    assert float(cell) == pytest.approx(best, rel=1e-9)  # the best layout's own cell
    assert (heat.fillna(0) <= best * (1 + 1e-9)).all()


def test_heatmap_outside_the_grid_and_odd_scales():
    ds = training_study.study("llama3-8b", systems=("trn3-ultraserver",), scales=(100, 300),
                              heatmap_system="dgx-h100", heatmap_chips=64,
                              roofline_chips=("trn3",))
    assert (ds["reason"] == "ok").all()  # 100 and 300 are not multiples of 144
    search = training.search("llama3-8b", "dgx-h100", 64)
    assert float(ds["heatmap_tokens_per_s_per_chip"].max()) == pytest.approx(
        float(search["tokens_per_s_per_chip"][0]), rel=1e-12)


def test_no_valid_layout_is_nan_with_a_reason():
    ds = training_study.study(systems=("dgx-h100",), scales=(1, 1024), heatmap_system="dgx-h100",
                              heatmap_chips=1024, roofline_chips=("h100-sxm",))
    one = ds.sel(system="dgx-h100", n_chips=1)
    assert "HBM" in str(one["reason"].values)
    for key in ("best_tp", "tokens_per_s_per_chip", "mfu", "time_to_train", "chip_hours"):
        assert np.isnan(float(one[key])), key
    assert np.isnan(one["breakdown"]).all()
    assert str(ds["reason"].sel(system="dgx-h100", n_chips=1024).values) == "ok"


def test_roofline(ds):
    att, peak, bw = ds["attainable"], ds["peak"], ds["hbm_bandwidth"]
    assert (att <= peak * (1 + 1e-12)).all()
    below = ds["intensity"] < ds["ridge_point"]
    roof = (ds["intensity"] * bw).transpose(*att.dims)
    np.testing.assert_allclose(att.where(below), roof.where(below), rtol=1e-12)
    np.testing.assert_allclose(att.where(~below), peak.broadcast_like(att).where(~below),
                               rtol=1e-12)
    np.testing.assert_allclose(ds["ridge_point"], peak / bw, rtol=1e-12)
    kind = ds["op_kind"]
    assert below.where(kind == "memory", True).all()  # norms, residuals: memory-bound
    assert (~below).where(kind != "memory", True).all()  # big GEMMs, attention: compute-bound
    assert (ds["modelled"] <= att * (1 + 1e-9)).all()  # the model never beats the roofline
    np.testing.assert_allclose(ds["intensity"], ds["op_flops"] / ds["op_bytes"], rtol=1e-12)
    assert {"qkv", "attn_out", "mlp_up", "mlp_down", "attention_core", "attn_norm"} \
        <= set(ds["op"].values)


def test_roofline_gemm_intensity_by_hand():
    ds = training_study.study("llama3-8b", systems=("dgx-h100",), scales=(8,),
                              heatmap_system="dgx-h100", heatmap_chips=8,
                              roofline_chips=("h100-sxm",), seq_len=4096, roofline_tp=4)
    m, k, n = 4096, 4096, 14336 * 2 / 4  # mlp_up: column-parallel, n split by tp
    expected = 2 * m * k * n / (2 * (m * k + k * n + m * n))
    assert float(ds["intensity"].sel(op="mlp_up")) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("kwargs", [
    {"model_id": "no-such-model"},
    {"systems": ("trn3-ultraserver", "no-such-system")},
    {"heatmap_system": "nope"},
    {"roofline_chips": ("trn3", "nope")},
    {"precision": "fp7"},
    {"scales": (0, 1024)},
    {"scales": ()},
    {"token_budget": -1.0},
])
def test_bad_input_is_a_one_line_error(kwargs):
    with pytest.raises(TrnlabError) as err:
        training_study.study(**kwargs)
    assert "\n" not in str(err.value)


@pytest.mark.slow
def test_notebook_runs_with_parameters(tmp_path):
    from trnlab import report

    run = report.run(["02"], {"model": "llama3-70b", "scales": "[256, 1000]",
                              "systems": '["trn3-ultraserver", "dgx-h100"]',
                              "heatmap_chips": "64", "token_budget": "2e12"},
                     out=tmp_path, progress=False)
    assert run.ok, run.runs[0].error
    ds = io.load(run.runs[0].result)
    assert io.parameters(ds)["scales"] == [256, 1000]
    assert list(ds["n_chips"].values) == [256, 1000]
    assert ds.attrs["token_budget"] == 2e12 and ds.attrs["heatmap_chips"] == 64


def test_roofline_operators_add_up_to_the_step_models_compute():
    """The roofline reads the step model's own operator terms: forward GEMMs, attention and
    logits from :func:`operator_terms`, with the memory-bound ops and the fixed cost, rebuild
    the step model's compute time of one micro-batch exactly (no recompute, one stage)."""
    from trnlab.catalog import model
    from trnlab.catalog.params import load_training
    from trnlab.engine.hardware import hardware, train_calibration
    from trnlab.engine.shape import model_shape
    from trnlab.perf.compute import memory_time
    from trnlab.perf.train import Layout, operator_terms, train_step

    spec, cal = model("llama3-8b"), train_calibration()
    sh, hw = model_shape(spec), hardware("trn3", "trn3-ultraserver", "bf16", load_training())
    lay = Layout(tp=4.0, pp=1.0, dp=1.0, cp=1.0, ep=1.0, vpp=1.0, zero=0.0, recompute=0.0,
                 micro_batch=1.0, global_batch=1.0, seq_len=8192.0)
    ops = operator_terms(sh, hw, lay, cal)
    layers, tokens = spec.layers, 8192.0
    gemm = sum(t for name, (_, t) in ops.items() if name not in ("attention_core", "logits"))
    attn, logits = ops["attention_core"][1], ops["logits"][1]
    elem = memory_time(cal.activation_bytes * sh.elem_traffic_dense * tokens / 4.0,
                       hw.hbm_bw, cal.mem_eff)
    softmax = memory_time(2.0 * cal.logits_bytes * tokens * spec.vocab / 4.0, hw.hbm_bw,
                          cal.mem_eff)
    # the backward's 2.5x work runs at the chip's backward attention rate
    bwd_attn = cal.attention_backward_factor * hw.attn_fwd_eff / hw.attn_bwd_eff
    per_layer = (3.0 * gemm + (1.0 + bwd_attn) * attn
                 + (1.0 + cal.backward_memory_factor) * (elem + cal.layer_overhead))
    expected = layers * per_layer + 3.0 * logits + (1.0 + cal.backward_memory_factor) * softmax
    got = float(train_step(sh, hw, lay, cal, ("t_compute",))["t_compute"])
    assert got == pytest.approx(expected, rel=1e-12)
    ds = training_study.roofline(spec, ["trn3"], precision="bf16", seq_len=8192, tp=4,
                                 params=load_training())
    flops = float(ds["op_flops"].sel(op="attention_core"))
    assert float(ds["modelled"].sel(chip="trn3", op="attention_core")) == pytest.approx(
        flops / attn, rel=1e-12)


def test_headline_and_reading_are_printed_from_the_result(ds):
    """The numbers of the reading come from the Dataset: a different token budget changes the
    chip-hours they state, and the vendor coordinate follows the catalog."""
    assert list(ds["vendor"].values) == [catalog.chip(catalog.system(s).chip).vendor
                                         for s in ds["system"].values]
    n = int(ds["n_chips"].values[-1])
    first = str(ds["system"].values[0])
    mch = float(ds["chip_hours"].sel(system=first, n_chips=n)) / 1e6
    assert f"{first} {mch:.3g} M" in ds.attrs["headline"]
    half = ds.copy()
    half["chip_hours"] = ds["chip_hours"] / 2
    assert f"{first} {mch / 2:.3g} M" in training_study.headline(half)
    text = training_study.reading(ds)
    assert text.count("\n- ") >= 3
    ratio = ds["tokens_per_s_per_chip"].sel(system="dgx-h100") / ds["tokens_per_s_per_chip"].sel(
        system="trn3-ultraserver")
    assert f"{float(ratio.min()):.2f}" in text
