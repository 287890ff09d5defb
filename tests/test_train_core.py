"""The vectorized step model: formulas, backends, the factored grid, properties, dask, bench."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trnlab import backend, bench, catalog
from trnlab.catalog import model
from trnlab.engine import training
from trnlab.engine.hardware import hardware, train_calibration
from trnlab.engine.layouts import REASONS, divisors, reason_codes
from trnlab.engine.shape import model_shape
from trnlab.engine.train_grid import blocks, evaluate_grid
from trnlab.engine.variables import BREAKDOWN
from trnlab.errors import ParameterError
from trnlab.perf import comm
from trnlab.perf.compute import gemm_efficiency, gemm_time
from trnlab.perf.train import OUTPUTS, Calibration, Hardware, Layout, step_terms, train_step

FIELDS = ("tp", "pp", "dp", "cp", "ep", "vpp", "zero", "recompute", "micro_batch",
          "global_batch", "seq_len")


# --------------------------------------------------------------------- collective formulas
def test_ring_all_reduce_of_8_chips():
    nbytes, bw, alpha = 1e9, 100e9, 5e-6
    got = comm.all_reduce(nbytes, 8.0, 8.0, bw, alpha, 1.0, 1.0)  # all inside the domain
    assert got == pytest.approx(2 * (7 / 8) * nbytes / bw + 14 * alpha, rel=1e-12)


def test_hierarchical_collectives_reduce_to_the_flat_ring_inside_one_domain():
    n = np.array([2.0, 4.0, 8.0, 64.0])
    nbytes, bw, alpha = 3e8, 50e9, 2e-6
    flat = (n - 1) / n * nbytes / bw + (n - 1) * alpha
    for bw_out, alpha_out in ((1.0, 1.0), (1e12, 0.0)):  # the scale-out network is unused
        np.testing.assert_allclose(comm.reduce_scatter(nbytes, n, n, bw, alpha, bw_out,
                                                       alpha_out), flat, rtol=1e-12)
        # a large all-reduce over >= 4 chips is a ring (2 chips: one exchange is as good)
        np.testing.assert_allclose(comm.all_reduce(nbytes, n[1:], n[1:], bw, alpha, bw_out,
                                                   alpha_out), 2 * flat[1:], rtol=1e-12)


def test_two_level_reduce_scatter():
    # 16 chips, 4 per domain: a ring of 4 on scale-up, then rings of 4 domains over the NICs
    # with a quarter of the data
    got = comm.reduce_scatter(4e8, 16.0, 4.0, 100e9, 1e-6, 10e9, 10e-6)
    want = (3 / 4 * 4e8 / 100e9 + 3 * 1e-6) + (3 / 4 * 1e8 / 10e9 + 3 * 10e-6)
    assert got == pytest.approx(want, rel=1e-12)
    assert comm.members_in_domain(16.0, 8.0, 64.0) == 8.0
    assert comm.members_in_domain(16.0, 128.0, 64.0) == 1.0


def test_all_to_all_inside_one_domain_uses_only_scale_up():
    n, nbytes, bw, alpha = 8.0, 8e8, 200e9, 3e-6
    got = comm.all_to_all(nbytes, n, n, bw, alpha, 1.0, 1.0)
    assert got == pytest.approx(nbytes * 7 / 8 / bw + 7 * alpha, rel=1e-12)
    # across 2 domains the NIC share (half of the data) over a slow NIC sets the time
    across = comm.all_to_all(nbytes, 16.0, 8.0, bw, alpha, 10e9, 1e-5)
    assert across == pytest.approx(nbytes * 8 / 16 / 10e9 + 1 * 1e-5, rel=1e-12)


# ------------------------------------------------------------------------- GEMM roofline
PEAK, EFF, HBM, MEM_EFF = 667e12, 0.8, 4.9e12, 0.9
D0 = 16.0  # the low end of gemm_half_dim's range: at the fitted ~200, the shape efficiency
# m / (m + d0) charges a 1-row GEMM like a d0-row tile, which makes it compute-bound


def test_gemm_of_one_row_is_memory_bound():
    m, n, k = 1.0, 8192.0, 8192.0
    got = gemm_time(m, n, k, PEAK, EFF, D0, HBM, MEM_EFF, 2.0)
    memory = 2.0 * (m * k + k * n + m * n) / (HBM * MEM_EFF)
    assert got == pytest.approx(memory, rel=1e-12)
    assert memory > 2 * m * n * k / (PEAK * gemm_efficiency(m, n, k, EFF, D0))


def test_gemm_time_is_the_roofline_maximum():
    rng = np.random.default_rng(1)
    m, n, k = rng.uniform(1, 2e4, (3, 200))
    compute = 2 * m * n * k / (PEAK * EFF * m / (m + D0) * n / (n + D0) * k / (k + D0))
    memory = 1.0 * (m * k + k * n + m * n) / (HBM * MEM_EFF)
    np.testing.assert_allclose(gemm_time(m, n, k, PEAK, EFF, D0, HBM, MEM_EFF, 1.0),
                               np.maximum(compute, memory), rtol=1e-12)


def test_large_square_gemm_is_compute_bound_at_the_shape_efficiency():
    d = 16384.0
    got = gemm_time(d, d, d, PEAK, EFF, D0, HBM, MEM_EFF, 2.0)
    eff = EFF * (d / (d + D0)) ** 3
    assert gemm_efficiency(d, d, d, EFF, D0) == pytest.approx(eff, rel=1e-12)
    assert got == pytest.approx(2 * d**3 / (PEAK * eff), rel=1e-12)
    assert got > 2.0 * 3 * d * d / (HBM * MEM_EFF)


# ------------------------------------------------------------------ the step assembly
#: a fixed chip and calibration (not data/, which a calibration run may change)
HW = Hardware(peak_gemm=667e12, peak_attn=667e12, gemm_eff=0.5, gemm_bytes=2.0,
              attn_fwd_eff=0.35, attn_bwd_eff=0.3, hbm_bw=4.9e12,
              hbm_capacity=144e9, up_bw=1.0e12, up_latency=2.5e-6, domain=144.0, out_bw=20e9,
              out_latency=12e-6, ranks_per_chip=4.0)
CAL = Calibration(gemm_half_dim=128.0, mem_eff=0.8, layer_overhead=20e-6,
                  layer_comm_overlap=0.5, dp_overlap=0.8, step_overhead=0.01, mem_reserve=0.1,
                  attention_backward_factor=2.5, backward_memory_factor=2.0,
                  cp_overlap=1.0, zero3_comm_factor=1.5, activation_bytes=2.0,
                  softmax_stat_bytes=4.0, logits_bytes=4.0, weight_bytes=2.0, grad_bytes=4.0,
                  grad_reduce_bytes=2.0, optimizer_bytes=12.0, optimizer_traffic=32.0,
                  zero3_regather_per_microbatch=0.0, tp_overlap_backward=1.0, fused_attention=1.0,
                  attention_block=128.0,
                  activation_offload=0.0, offload_resident_layers=2.0,
                  optimizer_offload=0.0, host_adam_eff=0.18)


@pytest.mark.parametrize("mid", ["llama3-405b", "deepseek-v3"])
@pytest.mark.parametrize("offload", [0.0, 0.5])
def test_the_breakdown_adds_up_and_the_terms_are_reused(mid, offload):
    m = model_shape(model(mid))
    lay = Layout(**{k: v.astype(float) for k, v in _flat_configs(400, seed=3).items()})
    # half the activations over a slow host link: some copies outlast their pass
    hw = replace(HW, host_bw=2e9, host_capacity=1e15)  # (room for any offload)
    cal = replace(CAL, activation_offload=offload)
    got = train_step(m, hw, lay, cal)
    parts = sum(got[k] for k in BREAKDOWN)
    np.testing.assert_allclose(parts, got["step_time"], rtol=1e-12)
    assert (got["t_tp"] > 0).any() and (got["t_pp"] > 0).any() and (got["t_dp"] > 0).any()
    assert (got["t_offload"] > 0).any() == (offload > 0)
    np.testing.assert_allclose(got["mem_per_chip"] <= HW.hbm_capacity * 0.9, got["fits"])
    # step_terms computed once and passed in give the same step
    again = train_step(m, hw, lay, cal, terms=step_terms(m, hw, lay, cal))
    for key in OUTPUTS:
        np.testing.assert_array_equal(again[key], got[key], err_msg=key)


def test_outputs_subset_and_unbroadcast_shapes():
    m = model_shape(model("llama3-70b"))
    lay = Layout(tp=np.array([1.0, 2.0, 4.0]).reshape(3, 1), pp=2.0,
                 dp=np.array([4.0, 8.0]).reshape(1, 2), cp=1.0, ep=1.0, vpp=1.0, zero=1.0,
                 recompute=0.0, micro_batch=1.0, global_batch=64.0, seq_len=4096.0)
    full = train_step(m, HW, lay, CAL)
    assert all(full[k].shape == (3, 2) for k in OUTPUTS)
    part = train_step(m, HW, lay, CAL, outputs=("t_compute", "step_time"), broadcast=False)
    assert list(part) == ["t_compute", "step_time"]
    np.testing.assert_array_equal(part["step_time"], full["step_time"])
    with pytest.raises(ParameterError, match="outputs = 'speed'"):
        train_step(m, HW, lay, CAL, outputs=("speed",))


# ------------------------------------------------------------------ backends agree
def _flat_configs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"tp": rng.choice([1, 2, 4, 8, 16, 64], n), "pp": rng.choice([1, 2, 4, 8], n),
            "dp": rng.choice([1, 2, 8, 64, 1024], n), "cp": rng.choice([1, 2, 4, 16], n),
            "ep": rng.choice([1, 2, 8], n), "vpp": rng.choice([1, 2, 4], n),
            "zero": rng.integers(0, 4, n), "recompute": rng.integers(0, 3, n),
            "micro_batch": rng.choice([1, 2, 4], n), "global_batch": rng.choice([512, 4096], n),
            "seq_len": rng.choice([2048, 8192], n)}


@pytest.mark.parametrize("mid", ["llama3-405b", "deepseek-v3"])
def test_backends_agree_on_the_step(xp_name, mid):
    m = model_shape(model(mid))
    cfg = {k: v.astype(np.float64) for k, v in _flat_configs(300).items()}
    with backend.set_backend("numpy"):
        ref = train_step(m, HW, Layout(**cfg), CAL)
    lay = Layout(**{k: backend.asarray(v) for k, v in cfg.items()})
    got = train_step(m, HW, lay, CAL)
    assert type(got["step_time"]) is type(lay.tp)  # the namespace of the inputs, no NumPy
    for key in OUTPUTS:
        np.testing.assert_allclose(backend.to_numpy(got[key]), ref[key], rtol=1e-6,
                                   err_msg=key)


def test_backends_agree_on_the_grid(xp_name):
    kw = {"system": "trn3-ultraserver", "global_batch": 512, "seq_len": 4096,
          "dtype": "float64", "chunk": 400}
    with backend.set_backend("numpy"):
        ref = evaluate_grid("mixtral-8x7b", SMALL_AXES, **kw)
    got = evaluate_grid("mixtral-8x7b", SMALL_AXES, **kw)
    for key in ref.data_vars:
        np.testing.assert_allclose(got[key], ref[key], rtol=1e-6, err_msg=key)
    best = evaluate_grid("mixtral-8x7b", SMALL_AXES, reduce="max_tokens_per_s", **kw)
    assert float(best["tokens_per_s_per_chip"]) == pytest.approx(
        float(ref["tokens_per_s_per_chip"].where(ref["reason"] == 0).max()), rel=1e-6)


# -------------------------------------------------------------- the factored grid
SMALL_AXES = {"tp": [1, 2, 3, 8], "dp": [1, 3, 16], "pp": [1, 2, 4], "cp": [1, 2],
              "ep": [1, 2, 8], "zero": [0, 3], "recompute": ["none", "selective", "full"],
              "micro_batch": [1, 2], "vpp": [1, 2]}


def _flatten(ds):
    """The grid's configurations as flat arrays, in the order of ``ds``'s values."""
    frame = ds[["step_time"]].to_dataframe().reset_index()
    return {k: frame[k].to_numpy() for k in ds.dims if k in FIELDS}


def test_grid_equals_the_flat_evaluation_and_masks_with_reasons():
    spec = model("mixtral-8x7b")
    ds = evaluate_grid(spec, SMALL_AXES, system="trn3-ultraserver", global_batch=48,
                       seq_len=4096, dtype="float64", chunk=97)
    assert tuple(ds.dims) == tuple(SMALL_AXES)  # the user's order
    assert ds.attrs["n_configs"] == math.prod(len(v) for v in SMALL_AXES.values()) == 5184
    assert ds.attrs["n_blocks"] > 10
    cfg = _flatten(ds)
    flat = training.evaluate(spec, hardware("trn3", "trn3-ultraserver"), cfg, 48, 4096)
    for key in OUTPUTS:
        np.testing.assert_allclose(ds[key].values.reshape(-1), flat[key], rtol=1e-9,
                                   err_msg=key)
    reason = reason_codes(spec, cfg, 48, 4096, 144)
    reason[(reason == 0) & ~flat["fits"]] = 7
    np.testing.assert_array_equal(ds["reason"].values.reshape(-1), reason)
    counts = np.bincount(reason, minlength=len(REASONS))
    assert ds.attrs["n_valid"] == counts[0] > 0
    assert set(json.loads(ds.attrs["invalid_by_reason"])) == {
        REASONS[i] for i in range(1, len(REASONS)) if counts[i]}
    assert counts[1] and counts[3] and counts[5]  # tp = 3, dp x mb, ep are masked, kept
    for name, var in ds.variables.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name
    # terms that do not vary along an axis are broadcast views, not copies
    assert ds["t_compute"].values.strides[list(ds.dims).index("zero")] == 0


def test_float32_grid_agrees_with_float64_and_the_search_finds_the_best():
    kw = {"system": ["trn3-ultraserver", "dgx-h100"], "precision": ["bf16", "fp8"]}
    axes = {"tp": [1, 2, 4, 8], "pp": [1, 2, 4], "dp": [1, 2, 4, 8], "cp": [1, 2],
            "recompute": [0, 1, 2], "micro_batch": [1, 2], **kw}
    ds64 = evaluate_grid("llama3-70b", axes, global_batch=64, seq_len=4096, dtype="float64")
    ds32 = evaluate_grid("llama3-70b", axes, global_batch=64, seq_len=4096, dtype="float32",
                         chunk=50)
    assert ds32["step_time"].dtype == np.float32
    for key in ("step_time", "tokens_per_s_per_chip", "mfu", "mem_per_chip", "t_compute"):
        np.testing.assert_allclose(ds32[key], ds64[key], rtol=1e-5, err_msg=key)
    # the exposed DP time is a difference (all-reduce - overlap window): it loses more digits,
    # small next to the step time
    np.testing.assert_allclose(ds32["t_dp"], ds64["t_dp"], rtol=1e-3,
                               atol=1e-6 * float(ds64["step_time"].max()))
    speed = ds64["tokens_per_s_per_chip"].where(ds64["reason"] == 0)
    where = speed.argmax(...)
    best = evaluate_grid("llama3-70b", axes, global_batch=64, seq_len=4096,
                         reduce="max_tokens_per_s", chunk=37)
    assert best.attrs["n_valid"] == ds64.attrs["n_valid"]
    assert best.sizes["block"] == best.attrs["n_blocks"] > 1
    assert float(best["tokens_per_s_per_chip"]) == pytest.approx(float(speed.max()), rel=1e-12)
    for dim, index in where.items():
        assert best[dim].item() == ds64[dim][int(index)].item()
    assert best["step_time"].dtype == np.float64  # the best is re-evaluated in float64
    # the hardware axes are real: an H100 with its 8-chip domain differs from a Trn3
    assert not np.allclose(ds64["step_time"].sel(system="dgx-h100"),
                           ds64["step_time"].sel(system="trn3-ultraserver"))


def test_blocks_cover_the_grid_once_within_the_chunk():
    sizes = (3, 1, 40, 7, 2)
    for chunk in (1, 5, 64, 1000, 10**6):
        seen = np.zeros(sizes, dtype=int)
        for block in blocks(sizes, chunk):
            assert math.prod(s.stop - s.start for s in block) <= max(chunk, 1)
            seen[block] += 1
        assert (seen == 1).all()


def test_grid_refuses_bad_input():
    with pytest.raises(ParameterError, match="axes = 'pipeline'"):
        evaluate_grid("llama3-8b", {"pipeline": [1]}, system="trn3-ultraserver")
    with pytest.raises(ParameterError, match="tp = 0"):
        evaluate_grid("llama3-8b", {"tp": [0, 1]}, system="trn3-ultraserver")
    with pytest.raises(ParameterError, match="recompute = 'some'"):
        evaluate_grid("llama3-8b", {"recompute": ["some"]}, system="trn3-ultraserver")
    with pytest.raises(ParameterError, match="system = None"):
        evaluate_grid("llama3-8b", {"tp": [1]})
    with pytest.raises(ParameterError, match="dtype = 'float16'"):
        evaluate_grid("llama3-8b", {"tp": [1]}, system="trn3-ultraserver", dtype="float16")
    with pytest.raises(ParameterError, match="reduce = 'min'"):
        evaluate_grid("llama3-8b", {"tp": [1]}, system="trn3-ultraserver", reduce="min")


@pytest.mark.slow
def test_ten_million_configurations_stay_under_1_gb():
    """Every output of a 10^7 grid kept (float32), and the search mode, in a fresh process."""
    code = (
        "import resource\n"
        "from trnlab import bench\n"
        "from trnlab.engine.train_grid import evaluate_grid\n"
        "axes = bench.grid_axes()\n"
        "axes['dp'] = list(range(1, 43))\n"
        "ds = evaluate_grid('llama3-405b', axes, global_batch=2048)\n"
        "assert ds.attrs['n_configs'] >= 10**7, ds.attrs['n_configs']\n"
        "del ds\n"
        "best = evaluate_grid('llama3-405b', axes, global_batch=2048, reduce='max_tokens_per_s')\n"
        "assert best.attrs['n_valid'] > 0\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)\n")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert float(run.stdout.split()[-1]) < 1024  # [MB]


# ------------------------------------------------------------------ properties
MODELS = ("llama3-8b", "llama3-70b", "llama3-405b", "mixtral-8x7b", "deepseek-v3")
SYSTEMS = ("trn3-ultraserver", "trn2-ultraserver", "dgx-h100", "gb200-nvl72")


@st.composite
def valid_layouts(draw):
    """A model, a system and a layout that breaks no rule of REASONS 1-6."""
    spec = model(draw(st.sampled_from(MODELS)))
    system = draw(st.sampled_from(SYSTEMS))
    domain = catalog.system(system).n_chips
    layers = spec.dense_layers + spec.moe_layers
    tp = draw(st.sampled_from([t for t in (1, 2, 4, 8, 16, 32, 64) if spec.heads % t == 0 and (
        spec.kv_heads % t == 0 or t % spec.kv_heads == 0) and t <= domain]))
    pp = draw(st.sampled_from(divisors(layers, 32)))
    vpp = draw(st.sampled_from([v for v in (1, 2, 4) if layers % (pp * v) == 0
                                and (v == 1 or pp > 1)]))
    seq = draw(st.sampled_from([2048, 4096, 8192]))
    cp = draw(st.sampled_from([1, 2, 4, 8]))
    dp = draw(st.integers(1, 1024))
    experts = spec.moe_experts or 1
    ep = draw(st.sampled_from([e for e in (1, 2, 4, 8, 16) if dp % e == 0 and experts % e == 0]))
    mb = draw(st.integers(1, 4))
    gb = dp * mb * draw(st.integers(1, 16))
    row = {"tp": tp, "pp": pp, "dp": dp, "cp": cp, "ep": ep, "vpp": vpp,
           "zero": draw(st.integers(0, 3)), "recompute": draw(st.integers(0, 2)),
           "micro_batch": mb, "global_batch": gb, "seq_len": seq}
    cfg = {k: np.array([v]) for k, v in row.items()}
    assert reason_codes(spec, cfg, gb, seq, domain)[0] == 0
    return spec, system, row


def _step(spec, system, row, **hw_changes):
    hw = hardware(catalog.system(system).chip, system)
    hw = replace(hw, **hw_changes)
    lay = Layout(**{k: np.array([float(v)]) for k, v in row.items()})
    return {k: float(v[0]) for k, v in train_step(model_shape(spec), hw, lay,
                                                   train_calibration()).items()}


PROPERTY = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(valid_layouts(), st.sampled_from(["dp", "pp", "tp"]), st.integers(2, 4))
def test_more_chips_never_lower_the_compute_capacity(case, axis, factor):
    spec, system, row = case
    more = {**row, axis: row[axis] * factor}

    def capacity(r: dict) -> float:  # chips x peak [FLOP/s], from the outputs
        out = _step(spec, system, r)
        return out["model_flops_per_chip"] / out["mfu"] * r["tp"] * r["pp"] * r["dp"] * r["cp"]

    assert capacity(more) >= capacity(row) * (1 - 1e-12)


@PROPERTY
@given(valid_layouts(), st.floats(0.5, 2.0), st.floats(1.0, 8.0))
def test_more_hbm_never_turns_a_fitting_layout_into_a_non_fitting_one(case, share, factor):
    spec, system, row = case
    usable = 1.0 - train_calibration().mem_reserve
    mem = _step(spec, system, row)["mem_per_chip"]  # does not depend on the capacity
    cap = mem / usable * share  # about half the cases fit
    fits = _step(spec, system, row, hbm_capacity=cap)["fits"]
    if abs(share - 1.0) > 1e-9:  # (at the boundary itself, rounding decides)
        assert fits == (share > 1.0)
    if fits:
        assert _step(spec, system, row, hbm_capacity=cap * factor)["fits"]


@PROPERTY
@given(valid_layouts())
def test_mfu_stays_in_0_1(case):
    spec, system, row = case
    out = _step(spec, system, row)
    assert 0.0 < out["mfu"] <= 1.0
    assert out["mfu"] <= out["hfu"] <= 1.0


# ---------------------------------------------------------------------- dask
@pytest.mark.slow
def test_dask_cluster_gives_the_same_results():
    distributed = pytest.importorskip("distributed")
    kw = {"system": "trn3-ultraserver", "global_batch": 96, "seq_len": 4096, "chunk": 200}
    local = evaluate_grid("mixtral-8x7b", SMALL_AXES, **kw)
    local_best = training.search("llama3-70b", "trn3-ultraserver", 144, global_batch=256)
    with distributed.LocalCluster(host="127.0.0.1", protocol="tcp://", dashboard_address=None,
                                  processes=False, n_workers=1, threads_per_worker=2) as cluster, \
            distributed.Client(cluster) as client:
        remote = evaluate_grid("mixtral-8x7b", SMALL_AXES, client=client, **kw)
        best = evaluate_grid("mixtral-8x7b", SMALL_AXES, client=client,
                             reduce="max_tokens_per_s", **kw)
        found = training.search("llama3-70b", "trn3-ultraserver", 144, global_batch=256,
                                client=client)
    for key in remote.data_vars:
        np.testing.assert_array_equal(remote[key], local[key], err_msg=key)
    assert json.loads(found.attrs["best"]) == json.loads(local_best.attrs["best"])
    assert float(best["tokens_per_s_per_chip"]) == pytest.approx(
        float(local["tokens_per_s_per_chip"].where(local["reason"] == 0).max()), rel=1e-5)


# ---------------------------------------------------------------------- bench
@pytest.mark.slow
def test_bench_quick_reports_every_key():
    out = bench.run(quick=True)
    for key in ("train_configs_per_s", "grid_size", "search_405b_16k_s", "search_405b_1m_s",
                "peak_rss_mb"):
        assert isinstance(out[key], int | float) and out[key] > 0, key
    assert out["backend"].startswith("numpy")
    assert json.loads(json.dumps(out)) == out  # JSON as it is


def test_the_embedding_and_the_loss_may_fill_two_pipeline_slots():
    """Llama 3.1 405B has 126 decoder layers; NVIDIA's GB200 recipes run 16 stages x 8 virtual
    stages = 128 chunks (the embedding and the loss count as one layer each): valid; 129 slots
    (pp 3 x vpp 43) leave a chunk without a layer: rule 2."""
    spec = model("llama3-405b")
    assert spec.layers == 126
    cfg = {k: np.array(v) for k, v in {"tp": [4, 4], "pp": [16, 3], "dp": [4, 4], "cp": [1, 1],
                                       "ep": [1, 1], "vpp": [8, 43], "micro_batch": [1, 1]}.items()}
    reason = reason_codes(spec, cfg, global_batch=64, seq_len=8192, domain=72)
    assert reason.tolist() == [0, 2]
