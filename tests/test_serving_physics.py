"""Serving physics pinned by hand: a decode step of one chip, the mean context, replica
scaling of whole-system results, the server-scenario queueing formulas and FP4 on Blackwell.

Every expected number is worked in the test from round inputs, so a change of a constant of
trnlab/perf/serve.py (the mean context, the prefill interruption, the M/D/1 tail) fails here.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math

import numpy as np
import pytest

from trnlab._paths import data_dir
from trnlab.calibration import validate
from trnlab.catalog import model
from trnlab.catalog.benchmarks import find
from trnlab.engine import serving
from trnlab.engine.hardware import format_bytes, hardware
from trnlab.engine.shape import serve_shape
from trnlab.errors import CatalogError
from trnlab.perf import serve as core
from trnlab.perf.hardware import Hardware
from trnlab.workloads import TransformerSpec

#: a toy transformer with round numbers: 2 layers, hidden 1000, 10 heads of 100, MHA
SHAPE = core.ServeShape(name="toy", layers=2.0, moe_layers=0.0, hidden=1000.0, heads=10.0,
                        qk_dim=100.0, v_dim=100.0, kv_heads=10.0, kv_latent=0.0,
                        moe_experts=0.0, moe_active=0.0, attn_params=8e6, dense_params=1e9,
                        expert_params=0.0, flop_params=1e9)
#: one chip: 1 PFLOP/s at 50% GEMM efficiency, 1 TB/s HBM, 10 us per step, no network
HW = Hardware(peak_gemm=1e15, peak_attn=1e15, gemm_eff=0.5, gemm_bytes=2.0, attn_fwd_eff=1.0,
              attn_bwd_eff=1.0, hbm_bw=1e12, hbm_capacity=100e9, up_bw=1e11, up_latency=0.0,
              domain=8.0, out_bw=1e10, out_latency=0.0, step_overhead=1e-5)
CAL = core.ServeCalibration(mem_eff=0.5, mem_reserve=0.0, kv_free_fraction=1.0,
                            decode_half_rows=0.0, per_sequence_overhead=0.0,
                            activation_bytes=2.0)
LAY = core.ServeLayout(tp=1.0, pp=1.0, ep=1.0, adp=1.0, wbytes=1.0, kvbytes=2.0)


def test_a_decode_step_of_one_chip_worked_by_hand():
    # batch 4 at context 1000, half_dim 0 (no size penalty), decode_half_rows 0 (full rows)
    t = core.decode_terms(SHAPE, HW, LAY, 4.0, 1000.0, CAL, 0.0)
    # weight GEMMs: 2 FLOP x 1e9 params x 4 tokens = 8e9 at 1e15 x 0.5 FLOP/s = 16 us
    assert float(t["compute"]) == pytest.approx(8e9 / 5e14, rel=1e-12)
    # weights: 1e9 B (1 B each) at 1e12 x 0.5 B/s = 2 ms
    assert float(t["stream"]) == pytest.approx(1e9 / 5e11, rel=1e-12)
    # attention kernels: KV 4 seq x 1000 tok x (2 x 2 layers x 10 heads x 100 x 2 B = 8000 B)
    # = 3.2e7 B at 5e11 B/s = 64 us, against 2 x 1000 keys x 10 heads x (100 + 100) x 2 layers
    # = 8e6 FLOP per token x 4 = 3.2e7 FLOP at 5e14 FLOP/s = 64 ns: the KV read sets it
    assert float(t["kv"]) == pytest.approx(3.2e7 / 5e11, rel=1e-12)
    assert float(t["attention_compute"]) == pytest.approx(3.2e7 / 5e14, rel=1e-12)
    assert float(t["attention"]) == float(t["kv"])
    assert float(t["traffic"]) == 0.0  # tp = 1: no all-reduce
    assert float(t["overhead"]) == pytest.approx(1e-5)
    # the weight GEMMs' roofline (stream 2 ms > compute 16 us), then the attention kernels,
    # which do not hide behind the GEMMs (64 us), plus 10 us
    step = core.decode_step(SHAPE, HW, LAY, 4.0, 1000.0, CAL, 0.0)
    assert float(step) == pytest.approx(2e-3 + 6.4e-5 + 1e-5, rel=1e-12)


def test_the_mean_context_is_the_prompt_plus_half_the_output():
    assert core.mean_context(1000.0, 500.0) == 1250.0
    # serve() decodes at that context: its TPOT is the decode step at input + output / 2
    res = core.serve(SHAPE, HW, LAY, 1.0, 1000.0, 500.0, CAL, 0.0)
    # batch 1: weights 1e9 B / 5e11 B/s = 2 ms (above the 4 us of GEMMs), then the KV read
    # 1250 x 8000 B / 5e11 B/s = 20 us; + 10 us
    assert float(res["tpot"]) == pytest.approx(1e9 / 5e11 + 1250 * 8000 / 5e11 + 1e-5,
                                               rel=1e-12)
    # a runtime compiled for 4096 tokens reads its whole KV buffer every step
    fixed = core.serve(SHAPE, HW, LAY, 1.0, 1000.0, 500.0, CAL, 0.0, context=4096.0)
    assert float(fixed["tpot"]) == pytest.approx(1e9 / 5e11 + 4096 * 8000 / 5e11 + 1e-5,
                                                 rel=1e-12)


def test_poisson_and_md1_quantiles_by_hand():
    # normal approximation of a Poisson count: 100 + 2.326 x 10
    assert float(core.poisson_quantile(100.0, 2.326)) == pytest.approx(123.26)
    # M/D/1 at rho 0.5, service 1 s: W = 0.5 x 1 / (2 x 0.5) = 0.5 s; the conditional wait
    # W / rho = 1 s; p99: ln(0.5 / 0.01) = ln 50 = 3.912 s
    assert float(core.md1_wait_quantile(0.5, 1.0, 0.99)) == pytest.approx(math.log(50.0))
    # at rho <= 1 - q at least q of the requests find the server idle: no wait at that quantile
    assert float(core.md1_wait_quantile(0.005, 1.0, 0.99)) == 0.0
    assert math.isinf(float(core.md1_wait_quantile(1.0, 1.0, 0.99)))


def test_the_server_rate_keeps_littles_law_with_prefill_interruptions():
    b = np.array([1.0, 8.0, 64.0])
    res = core.server_scenario(SHAPE, HW, LAY, b, 1000.0, 500.0, CAL, 0.0, 2.326, 0.99)
    t = core.serve(SHAPE, HW, LAY, b, 1000.0, 500.0, CAL, 0.0)["tpot"]
    p1 = core.prefill_time(SHAPE, HW, LAY, 1.0, 1000.0, CAL, 0.0)
    pb = core.prefill_time(SHAPE, HW, LAY, b, 1000.0, CAL, 0.0) / b  # batched, per prompt
    rate = res["rate"]
    rho = rate * pb
    # Little's law: B = rate x (TTFT + output x TPOT), decode stretched by 1 / (1 - rho)
    np.testing.assert_allclose(b, rate * (p1 + t + 500.0 * t / (1.0 - rho)), rtol=1e-9)
    np.testing.assert_allclose(res["tpot"], t / (1.0 - rho), rtol=1e-12)
    np.testing.assert_allclose(res["ttft_q"] - res["ttft"],
                               core.md1_wait_quantile(rho, p1, 0.99), rtol=1e-12)
    assert np.all(np.diff(rate) > 0)
    assert np.all(pb <= p1)  # a batched prompt costs at most a prompt alone


def test_the_server_scenario_is_below_offline_and_tighter_limits_lower_it():
    common = {"tp": 2, "input_len": 222, "output_len": 294, "weights": "fp8",
              "activations": "fp8", "kv": "fp8"}
    off = serving.offline_throughput("llama2-70b", "h100-sxm", "dgx-h100", **common)
    srv = serving.server_throughput("llama2-70b", "h100-sxm", "dgx-h100", ttft_limit_s=2.0,
                                    tpot_limit_s=0.2, **common)
    fast = serving.server_throughput("llama2-70b", "h100-sxm", "dgx-h100", ttft_limit_s=0.45,
                                     tpot_limit_s=0.04, **common)
    assert 0 < fast["output_tokens_per_s"] < srv["output_tokens_per_s"] \
        < off["output_tokens_per_s"]
    assert srv["tpot_q"] <= 0.2 and srv["ttft_q"] <= 2.0
    assert fast["tpot_q"] <= 0.04 and fast["ttft_q"] <= 0.45
    none = serving.server_throughput("llama2-70b", "h100-sxm", "dgx-h100", ttft_limit_s=2.0,
                                     tpot_limit_s=1e-4, **common)
    assert none["batch"] == 0 and none["limited_by"] == "tpot"


def _row(**cells: str) -> dict[str, str]:
    rows = validate.read_cases(data_dir() / "measurements" / "cases.csv")
    row = dict(next(r for r in rows if r["case_id"] == "I-TRTLLM-H100-Llama3370B-TP2-2048-128"))
    row.update(cells)
    return row


def _predict(rows, tmp_path):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=validate.SCHEMA_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    (tmp_path / "c.csv").write_text(buf.getvalue(), encoding="utf-8")
    return validate.predict(validate.read_cases(tmp_path / "c.csv"))


def test_a_whole_system_throughput_is_the_replica_times_the_replicas(tmp_path):
    one = _row(case_id="I-X-1", n_chips="2", tp="2")
    four = _row(case_id="I-X-4", n_chips="8", tp="2")
    lat1 = _row(case_id="I-X-L1", n_chips="2", tp="2", metric="tpot_ms", value="20")
    lat4 = _row(case_id="I-X-L4", n_chips="8", tp="2", metric="tpot_ms", value="20")
    p = _predict([one, four, lat1, lat4], tmp_path)
    assert p[1].predicted == pytest.approx(4 * p[0].predicted, rel=1e-12)  # 8 / (2 x 1)
    assert "4 replicas of tp 2" in p[1].why
    assert p[3].predicted == pytest.approx(p[2].predicted, rel=1e-12)  # latency: one replica


def test_a_named_server_scenario_uses_the_benchmark_limits(tmp_path):
    note = "MLPerf Inference v5.0 Llama 2 70B, Server scenario"
    srv = _row(case_id="I-X-S", input_len="", output_len="", concurrency="", metric_note=note)
    off = _row(case_id="I-X-O", input_len="", output_len="", concurrency="offline",
               metric_note="MLPerf Inference v5.0 Llama 2 70B, Offline")
    p = _predict([srv, off], tmp_path)
    assert "server scenario" in p[0].why and "2000 ms, 200 ms" in p[0].why
    assert "input_len: default 222" in p[0].why and "output_len: default 294" in p[0].why
    assert 0 < p[0].predicted < p[1].predicted
    bench = find(note)
    assert bench.ttft_limit.si == 2.0 and bench.tpot_limit.si == pytest.approx(0.2)


def test_fp4_on_blackwell_halves_the_weights_and_doubles_the_fp8_peak():
    fp8 = hardware("b200", "dgx-b200", "fp8")
    fp4 = hardware("b200", "dgx-b200", "nvfp4")
    mx = hardware("gb200", "gb200-nvl72", "mxfp4")
    # B200 dense: FP8 4,500 TFLOP/s, FP4 9,000; GB200: FP4 10,000 (data/hardware/chips.toml)
    assert fp4.peak_gemm / fp8.peak_gemm == pytest.approx(2.0)
    assert mx.peak_gemm / hardware("gb200", "gb200-nvl72", "fp8").peak_gemm == pytest.approx(2.0)
    assert format_bytes("nvfp4") == format_bytes("mxfp4") == format_bytes("fp4") == 0.5
    m = SHAPE
    w4 = core.weight_bytes_per_chip(m, 1.0, 1.0, 1.0, format_bytes("nvfp4"))
    w8 = core.weight_bytes_per_chip(m, 1.0, 1.0, 1.0, format_bytes("fp8"))
    assert float(w4) == pytest.approx(0.5e9) and float(w8) == pytest.approx(1e9)
    r4 = serving.offline_throughput("llama2-70b", "b200", "dgx-b200", tp=1, input_len=222,
                                    output_len=294, weights="nvfp4", activations="nvfp4",
                                    kv="fp8")
    r8 = serving.offline_throughput("llama2-70b", "b200", "dgx-b200", tp=1, input_len=222,
                                    output_len=294, weights="fp8", activations="fp8", kv="fp8")
    assert r4["batch"] > r8["batch"]  # 35 GB less of weights leaves room for more KV
    assert r4["output_tokens_per_s"] > r8["output_tokens_per_s"]


def test_a_stated_max_num_seqs_caps_the_offline_batch(tmp_path):
    free = _row(case_id="I-X-F", n_chips="2", tp="2")
    capped = _row(case_id="I-X-C", n_chips="2", tp="2",
                  notes=free["notes"].replace("[trust A]", "[trust A] vLLM max_num_seqs=16;"))
    p = _predict([free, capped], tmp_path)
    assert p[1].layout["batch"] == 16 < p[0].layout["batch"]
    assert p[1].predicted < p[0].predicted


def test_a_stated_request_rate_sets_the_throughput_until_the_replica_saturates(tmp_path):
    slow = _row(case_id="I-X-R", n_chips="4", tp="2", concurrency="",
                metric_note="output tokens/s, vLLM benchmark_serving --request-rate 2")
    fast = _row(case_id="I-X-RF", n_chips="4", tp="2", concurrency="",
                metric_note="output tokens/s, vLLM benchmark_serving --request-rate 5000")
    off = _row(case_id="I-X-RO", n_chips="4", tp="2", concurrency="offline")
    p = _predict([slow, fast, off], tmp_path)
    # 2 requests/s over 2 replicas of tp 2, 128 output tokens each: 2 x 128 tokens/s in all
    assert p[0].predicted == pytest.approx(2 * 128)
    assert "Poisson arrivals at the stated request rate, 1/s per replica" in p[0].why
    assert p[1].predicted == pytest.approx(p[2].predicted)  # saturated: offline capacity
    assert "above what a replica sustains" in p[1].why


def test_mla_decodes_with_absorbed_attention_by_hand():
    """DeepSeek-V3 decode: 128 heads score the 512 + 64 latent and sum the 512 values in each
    of 61 layers: 2 x 1000 keys x 128 x (576 + 512) x 61 = 1.699e10 FLOP per token at 1,000
    keys, 3.4x the decompressed (192 + 128) count that prefill uses."""
    from trnlab.catalog import model

    m = serve_shape(model("deepseek-v3"))
    assert (m.kv_latent, m.kv_rank, m.heads, m.layers) == (576.0, 512.0, 128, 61)
    assert float(m.decode_attention_flops(1000.0)) == pytest.approx(
        2 * 1000 * 128 * (576 + 512) * 61, rel=1e-12)
    assert float(m.attention_flops(1000.0)) == pytest.approx(2 * 1000 * 128 * (192 + 128) * 61)
    assert float(SHAPE.decode_attention_flops(1000.0)) == float(SHAPE.attention_flops(1000.0))


def test_attention_dp_groups_exchange_their_own_sequences():
    """Eight attention-DP groups of one chip each (tp = adp = 8) exchange in a MoE layer what
    one chip serving an eighth of the batch exchanges: the EP all-to-all of B / 8 tokens, and
    no TP all-reduce (each group is one chip)."""
    moe = core.ServeShape(name="moe", layers=2.0, moe_layers=2.0, hidden=1000.0, heads=8.0,
                          qk_dim=100.0, v_dim=100.0, kv_heads=8.0, kv_latent=0.0,
                          moe_experts=8.0, moe_active=2.0, attn_params=8e6, dense_params=1e8,
                          expert_params=1e8, flop_params=1e9)
    wide = core.ServeLayout(tp=8.0, pp=1.0, ep=8.0, adp=8.0, wbytes=1.0, kvbytes=2.0)
    one = core.ServeLayout(tp=1.0, pp=1.0, ep=8.0, adp=1.0, wbytes=1.0, kvbytes=2.0)
    t_wide = core.decode_terms(moe, HW, wide, 64.0, 1000.0, CAL, 0.0)["traffic"]
    t_one = core.decode_terms(moe, HW, one, 8.0, 1000.0, CAL, 0.0)["traffic"]
    assert float(t_wide) == pytest.approx(float(t_one), rel=1e-12)
    # by hand: 8 tokens x 1000 x 2 B x 2 experts = 32 kB per chip per all-to-all, 7/8 of it
    # leaves the chip at 1e11 B/s; dispatch and combine in each of 2 MoE layers
    assert float(t_one) == pytest.approx(4 * 32e3 * 7 / 8 / 1e11, rel=1e-12)


def test_the_kv_cache_gets_the_runtime_share_of_what_the_weights_leave_by_hand():
    """Llama 3 70B at FP8 on one 80 GB chip, 8K context: weights 70.55 GB (serve_shape), KV
    2 x 80 layers x 8 heads x 128 x 1 B = 163,840 B per token. TensorRT-LLM: 0.9 x (80 GB x
    (1 - 0.03) - W); vLLM at gpu_memory_utilization 0.9: 80 GB x 0.9 - W."""
    m = serve_shape(model("llama3-70b"))
    w = float(core.weight_bytes_per_chip(m, 1.0, 1.0, 1.0, 1.0))
    per_req = 2 * 80 * 8 * 128 * 1.0 * 8192
    trt = dataclasses.replace(CAL, mem_reserve=0.03, kv_free_fraction=0.9)
    vllm = dataclasses.replace(CAL, mem_reserve=0.1, kv_free_fraction=1.0)
    for cal, free in ((trt, 0.9 * (80e9 * 0.97 - w)), (vllm, 80e9 * 0.9 - w)):
        got = core.max_concurrency(m, 80e9, 1.0, 1.0, 1.0, 1.0, 1.0, 8192.0, cal)
        assert float(got) == math.floor(free / per_req)


def test_a_case_naming_tensorrt_llm_takes_its_kv_sizing_and_a_stated_utilization_holds(
        tmp_path):
    from trnlab.calibration.validate import serving_runtime
    from trnlab.catalog.params import load_serving

    base = load_serving()
    assert (base.fields["mem_reserve"].si, base.fields["kv_free_fraction"].si) == (0.1, 1.0)
    row = {"source": "x", "metric_note": "", "notes": "vLLM 0.6.4 + FlashInfer"}
    assert serving_runtime(row, base) == (base, "")  # vLLM's rule is the default
    row["notes"] = "NVIDIA/TensorRT-LLM perf-overview (trtllm-bench)"
    params, note = serving_runtime(row, base)
    assert params.fields["kv_free_fraction"].si == 0.9 and "runtime.tensorrt-llm" in note
    assert params.fields["mem_reserve"].si == 0.03
    row["notes"] = "vLLM 0.6.5; llm_config gpu_memory_utilization: 0.98"
    params, note = serving_runtime(row, base)
    assert params.fields["mem_reserve"].si == pytest.approx(0.02)
    assert "0.98 from the case" in note
    bad = tmp_path / "serving.toml"
    text = (base.path.read_text(encoding="utf-8")
            + '\n[runtime.sglang]\nmem_fraction = { value = 0.9, unit = "1", '
              'status = "announced", source = "VLLM-ENGINE-ARGS" }\n')
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(CatalogError, match="mem_fraction"):
        load_serving(bad)


def test_a_runtime_compiled_for_a_length_decodes_over_all_of_it():
    """Transformers NeuronX rows (conventions.toml kv_context = "compiled"): Llama 3 8B at
    batch 8 on inf2, 128/8064 and 4096/4096 tokens, both compiled for 8192, are published at
    15.22 and 15.31 ms; the model reads the same 8192-token KV buffer for both."""
    rows = [r for r in validate.read_cases(data_dir() / "measurements" / "cases.csv")
            if r["case_id"] in ("I-NEURON-INF2-L3-8B-B8-128-8064",
                                "I-NEURON-INF2-L3-8B-B8-4096-4096")]
    assert [r["seq_len"] for r in rows] == ["8192", "8192"]
    a, b = validate.predict(rows)
    assert a.predicted == pytest.approx(b.predicted, rel=1e-12)
    assert "decode attends the compiled 8192 tokens" in a.why


def test_kv_heads_are_whole_per_rank_and_a_chip_holds_its_ranks_copies_by_hand():
    """Llama 3 8B (8 KV heads, 32 layers, d 128, BF16): 2 x 32 x 128 x 2 B = 16,384 B per head
    per token. On 16 GPUs (one rank each) every chip still holds one head: 16,384 B. On 16
    Trainium1 chips of 2 NeuronCores (32 ranks) each core holds a replica: 32,768 B per chip.
    Llama 2 13B (40 KV heads) on 32 ranks: 40 / 32 = 1.25 pads to 2 heads per rank."""
    l3 = serve_shape(model("llama3-8b"))
    per_head = 2 * 32 * 128 * 2.0
    assert float(core.kv_bytes_per_token(l3, 16.0, 1.0, 1.0, 2.0)) == per_head
    assert float(core.kv_bytes_per_token(l3, 16.0, 1.0, 1.0, 2.0, 2.0)) == 2 * per_head
    assert float(core.kv_bytes_per_token(l3, 1.0, 1.0, 1.0, 2.0, 2.0)) == 8 * per_head
    assert float(core.kv_bytes_per_token(l3, 2.0, 1.0, 1.0, 2.0)) == 4 * per_head
    l2 = TransformerSpec(name="l2-13b", layers=40, hidden=5120, heads=40, kv_heads=40,
                         ffn=13824, gated_mlp=True, vocab=32000)
    m = serve_shape(l2)
    per_head_13b = 2 * 40 * 128 * 2.0
    assert float(core.kv_bytes_per_token(m, 16.0, 1.0, 1.0, 2.0, 2.0)) == 2 * 2 * per_head_13b
    assert float(core.kv_bytes_per_token(m, 8.0, 1.0, 1.0, 2.0)) == 5 * per_head_13b


def test_an_unknown_kv_context_is_named():
    row = next(r for r in validate.read_cases(data_dir() / "measurements" / "cases.csv")
               if r["case_id"] == "I-NEURON-INF2-L3-8B-B8-128-8064")
    conv = {**validate.load_conventions()["I-NEURON"], "kv_context": "bucketed"}
    with pytest.raises(CatalogError, match="kv_context.*bucketed.*compiled"):
        validate.predict_inference(row, conv)


def test_the_weight_gemm_share_is_the_delivered_over_the_achievable_flops_by_hand():
    """Llama 3 70B (70.6e9 FLOP params): 1,000 tokens/s per chip at 989.4e12 x 0.6 achievable
    FLOP/s keeps the tensor units 2 x 70.6e9 x 1000 / 593.6e12 = 0.23785 of the time busy;
    a rate past the achievable peak counts as fully busy."""
    from trnlab.perf.serve import weight_gemm_share

    n, ach = 70.6e9, 989.4e12 * 0.6
    assert float(weight_gemm_share(n, 1000.0, ach)) == pytest.approx(2 * n * 1000 / ach,
                                                                      rel=1e-12)
    assert float(weight_gemm_share(n, 1000.0, ach)) == pytest.approx(0.23785, abs=1e-5)
    assert float(weight_gemm_share(n, 1e7, ach)) == 1.0
