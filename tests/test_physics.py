"""Tests pin the physics: every constant of the core comes from data/perf and reaches the core,
and the step is checked against configurations worked by hand (one chip; tp = 2; pp = 2 with one
layer per stage; ZeRO 0-3; recompute none / selective / full; cp = 2).

The hand formulas below write the moved constants as literals (2.5, 1.5, 2 B, 4 B, ...): a
change of a data value or of a formula of the core fails a test here. Fitted parameters
(efficiencies, overheads) are read from the calibration, as a calibration run may move them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace

import numpy as np
import pytest
from _files import stacks_file

from trnlab.calibration.validate import _SA_BLOCK
from trnlab.catalog import model
from trnlab.catalog.params import (
    SERVE_CALIBRATION,
    TRAIN_CALIBRATION,
    load_formats,
    load_serving,
    load_stacks,
    load_training,
)
from trnlab.engine.hardware import (
    NARROW,
    PRECISION_BYTES,
    format_bytes,
    hardware,
    serve_calibration,
    train_calibration,
    with_stack,
)
from trnlab.engine.shape import model_shape, serve_shape
from trnlab.errors import CatalogError, ParameterError
from trnlab.perf import serve as serve_core
from trnlab.perf.compute import attended_keys, kv_tokens, padded_head_work
from trnlab.perf.serve import ServeCalibration
from trnlab.perf.train import (
    RECOMPUTE,
    Calibration,
    Hardware,
    LayerGemm,
    Layout,
    ModelShape,
    _attention_times,
    operator_terms,
    step_terms,
    train_step,
)
from trnlab.workloads import TransformerSpec
from trnlab.workloads import flops as wf
from trnlab.workloads.traffic import stored_activation_bytes_per_token_per_layer

# ------------------------------------------------------------------ a chip and a model by hand
HW = Hardware(peak_gemm=1e15, peak_attn=5e14, gemm_eff=0.5, gemm_bytes=2.0, attn_fwd_eff=0.4,
              attn_bwd_eff=0.25, hbm_bw=4e12,
              hbm_capacity=100e9, up_bw=1e11, up_latency=1e-6, domain=64.0, out_bw=1e10,
              out_latency=1e-5)
H, HEADS, D, V, FFN = 1024.0, 8.0, 128.0, 2048.0, 4096.0
GEMMS = (LayerGemm("qkv", 1.0, H, 3 * H), LayerGemm("attn_out", 1.0, H, H),
         LayerGemm("mlp_up", 1.0, H, FFN), LayerGemm("mlp_down", 1.0, FFN, H))
P_LAYER = H * 3 * H + H * H + 2 * H * FFN  # weights of one layer [1]
P_EMB = 2 * V * H  # input embedding + output layer [1]
GEMM_IN = H + H + H + FFN  # inputs of the four GEMMs per token [elements]
ATTN_IN, ATTN_OUT, ELEM, ELEM_TRAFFIC = 3 * H, H, 6000.0, 10000.0  # [elements]


def shape(layers: int = 1) -> ModelShape:
    """A dense MHA transformer of ``layers`` layers, hidden 1024, 8 heads of 128, vocab 2048."""
    none, selective, full = (wf.RECOMPUTED[mode] for mode in RECOMPUTE)
    return ModelShape(
        name="hand", dense_layers=float(layers), moe_layers=0.0, hidden=H, heads=HEADS,
        kv_heads=HEADS, qk_dim=D, v_dim=D, vocab=V, moe_active=0.0, gemms_dense=GEMMS,
        gemms_moe=(), elem_traffic_dense=ELEM_TRAFFIC, elem_traffic_moe=0.0,
        act_gemm_in_dense=GEMM_IN, act_gemm_in_moe=0.0, act_attn_in_dense=ATTN_IN,
        act_attn_in_moe=0.0, act_attn_out_dense=ATTN_OUT, act_attn_out_moe=0.0,
        act_elem_dense=ELEM, act_elem_moe=0.0, softmax_stats_dense=HEADS,
        softmax_stats_moe=0.0, params_dense_layer=P_LAYER, params_moe_shared=0.0,
        params_experts=0.0, params_embedding=P_EMB, flop_params=layers * P_LAYER + V * H,
        layer_flop_params=layers * P_LAYER,
        recompute_gemms=(none.gemms, selective.gemms, full.gemms),
        recompute_attention=(none.attention, selective.attention, full.attention),
        recompute_elementwise=(none.elementwise, selective.elementwise, full.elementwise))


CAL = train_calibration()
S, GB = 2048.0, 4.0  # sequence length, global batch [sequences]


def step(m: ModelShape = None, cal: Calibration = CAL, hw: Hardware = HW, **layout) -> dict:
    """The step of one configuration (tp = pp = dp = cp = ep = vpp = 1, micro-batch 1, ZeRO 0,
    no recompute unless given) as plain floats."""
    lay = {"tp": 1, "pp": 1, "dp": 1, "cp": 1, "ep": 1, "vpp": 1, "zero": 0, "recompute": 0,
           "micro_batch": 1, "global_batch": GB, "seq_len": S, **layout}
    out = train_step(m or shape(), hw, Layout(**{k: np.array([float(v)]) for k, v in lay.items()}),
                     cal)
    return {k: float(v[0]) for k, v in out.items()}


def mem_time(nbytes: float) -> float:
    return nbytes / (HW.hbm_bw * CAL.mem_eff)


def gemm(m: float, n: float, k: float, nbytes: float = 2.0) -> float:
    """The roofline of one GEMM, written out: max(2mnk / (peak eff(m, n, k)), bytes / bw)."""
    d0 = CAL.gemm_half_dim
    eff = HW.gemm_eff * m / (m + d0) * n / (n + d0) * k / (k + d0)
    return max(2 * m * n * k / (HW.peak_gemm * eff), mem_time(nbytes * (m * k + k * n + m * n)))


def attention(tokens: float, heads: float, rate: float = HW.attn_fwd_eff) -> float:
    """Forward time of the causal attention core of one layer [s]: the causal FLOPs at the
    chip's forward attention rate x the shape factors of T query rows and s/2 keys."""
    ctx, d0 = S / 2, CAL.gemm_half_dim
    eff = rate * tokens / (tokens + d0) * ctx / (ctx + d0)
    return 2 * tokens * ctx * heads * 2 * D / (HW.peak_attn * eff)


def attention_bwd(tokens: float, heads: float) -> float:
    """Backward time of the attention core: 2.5x the forward work at the backward rate."""
    return 2.5 * attention(tokens, heads, HW.attn_bwd_eff)


def parts(tp: float = 1.0, cp: float = 1.0) -> dict[str, float]:
    """Forward times of one layer on one chip and of the logits, by hand [s]."""
    t = S / cp  # tokens per chip per micro-batch
    return {"gemm": gemm(t, 3 * H / tp, H) + gemm(t, H, H / tp) + gemm(t, FFN / tp, H)
            + gemm(t, H, FFN / tp),
            "attn": attention(t, HEADS / tp),
            "attn_bwd": attention_bwd(t, HEADS / tp),
            "elem": mem_time(2 * ELEM_TRAFFIC * t / tp),  # 2 B per activation element
            "fixed": CAL.layer_overhead,
            "logits_gemm": gemm(t, V / tp, H),
            "logits_mem": mem_time(2 * 4 * t * V / tp)}  # fp32 read + write


def mb_compute(p: dict[str, float], recompute: str = "none", layers: int = 1) -> float:
    """Forward + backward (+ recompute) of ``layers`` layers and the logits, one micro-batch
    [s]."""
    fwd = p["gemm"] + p["attn"] + p["elem"] + p["fixed"]
    bwd = 2 * p["gemm"] + 2 * (p["elem"] + p["fixed"]) + p["attn_bwd"]
    redo = {"none": 0.0, "selective": p["attn"], "full": fwd}[recompute]
    return layers * (fwd + bwd + redo) + 3 * p["logits_gemm"] + 3 * p["logits_mem"]


#: stored activations of one layer per token without recompute: 2 B per element, 4 B per
#: softmax statistic [B]
KEPT = 2 * (GEMM_IN + ATTN_IN + ATTN_OUT + ELEM) + 4 * HEADS


# ------------------------------------------------------------------- the data reach the core
def test_every_calibration_value_comes_from_data_without_a_default():
    params, serving = load_training(), load_serving()
    cal, scal = train_calibration(), serve_calibration()
    for cls, names in ((Calibration, TRAIN_CALIBRATION), (ServeCalibration, SERVE_CALIBRATION)):
        # the MoE constants are one nested record, from data/perf/moe.toml (tests/test_moe.py)
        fields = [f for f in dataclasses.fields(cls) if f.name != "moe"]
        assert {f.name for f in fields} == set(names)
        assert all(f.default is dataclasses.MISSING for f in fields), cls
    for name in TRAIN_CALIBRATION:
        assert getattr(cal, name) == params.fields[name].si, name
    assert cal.moe is not None
    for name in SERVE_CALIBRATION:
        assert getattr(scal, name) == serving.fields[name].si, name


def test_the_constants_of_the_data():
    """The moved constants and their formulas (a change of data/perf fails here first)."""
    cal = train_calibration()
    assert cal.attention_backward_factor == 5 / 2  # FA2 backward: 5 matmuls against 2
    assert cal.zero3_comm_factor == 3 / 2  # ZeRO-3: 3 parameter-sized passes against 2
    assert cal.cp_overlap == 1.0
    assert cal.backward_memory_factor == 2.0
    assert cal.activation_bytes == 16 / 8  # bf16
    assert cal.softmax_stat_bytes == cal.logits_bytes == cal.grad_bytes == 32 / 8  # fp32
    assert cal.weight_bytes == cal.grad_reduce_bytes == 16 / 8  # bf16
    assert cal.optimizer_bytes == 3 * 4  # fp32 master weights, Adam m and v
    assert cal.optimizer_traffic == 32.0
    assert cal.fused_attention == 1.0  # the default stack: a FlashAttention-class kernel
    assert cal.activation_offload == 0.0  # the frameworks' default: activations stay in HBM
    assert cal.offload_resident_layers == 2.0  # the layer computed and the one in transit
    assert cal.optimizer_offload == 0.0  # the frameworks' default: the update on the chip
    # DeepSpeed's CPU-Adam: 11.6B parameters x 32 B in 8.2 s on 2 x 6 channels of DDR4-2666
    assert cal.host_adam_eff == pytest.approx(11.6e9 * 32 / 8.2 / (2 * 6 * 2666e6 * 8), abs=0.005)
    assert serve_calibration().activation_bytes == 16 / 8
    fields = load_training().fields
    for name in TRAIN_CALIBRATION[7:]:
        assert fields[name].status in ("derived", "projected") and fields[name].note, name
        assert fields[name].unit == ("B" if name.endswith(("_bytes", "_traffic")) else "1")


def test_formats_come_from_data():
    sizes = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "mxfp8": 1.0,
             "int8": 1.0, "fp4": 0.5, "mxfp4": 0.5, "nvfp4": 0.5}
    formats = load_formats()
    assert PRECISION_BYTES == sizes == {k: f.si for k, f in formats.bytes.items()}
    assert list(PRECISION_BYTES) == list(sizes)  # the file's order, the error messages' order
    assert NARROW == formats.narrow == {k for k, b in sizes.items() if b <= 1}
    assert all(f.unit == "B" and f.status == "derived" for f in formats.bytes.values())
    assert format_bytes("int8-weights") == 1.0
    with pytest.raises(ParameterError, match="allowed: fp32, tf32, bf16"):
        format_bytes("fp6")
    params = load_training().replace(fp8_gemm_factor=0.9)
    fp8, bf16 = (hardware("trn3", "trn3-ultraserver", p, params) for p in ("fp8", "bf16"))
    assert (fp8.gemm_bytes, bf16.gemm_bytes) == (1.0, 2.0)
    assert fp8.gemm_eff == pytest.approx(0.9 * bf16.gemm_eff, rel=1e-12)  # narrow: the factor


def test_a_format_whose_narrow_flag_contradicts_its_size_is_refused(tmp_path):
    text = load_formats().path.read_text(encoding="utf-8")
    bad = tmp_path / "formats.toml"  # fp32 (4 B) marked narrow
    bad.write_text(text.replace("narrow = false", "narrow = true", 1), encoding="utf-8")
    with pytest.raises(CatalogError, match=r"\[format.fp32\].*narrow"):
        load_formats(bad)


#: each moved constant, a new value and a configuration where it matters
MOVED = {
    "attention_backward_factor": (5.0, {}),
    "backward_memory_factor": (3.0, {}),
    "cp_overlap": (0.5, {"cp": 2}),
    "zero3_comm_factor": (3.0, {"dp": 4, "zero": 3}),
    "activation_bytes": (4.0, {"tp": 2}),
    "softmax_stat_bytes": (8.0, {}),
    "logits_bytes": (8.0, {}),
    "weight_bytes": (4.0, {}),
    "grad_bytes": (8.0, {}),
    "grad_reduce_bytes": (4.0, {"dp": 4, "zero": 3}),
    "optimizer_bytes": (16.0, {}),
    "optimizer_traffic": (64.0, {}),
    "zero3_regather_per_microbatch": (1.0, {"dp": 4, "zero": 3, "pp": 2, "global_batch": 4 * GB}),
    "tp_overlap_backward": (0.0, {"tp": 2}),
    "fused_attention": (0.0, {}),
    "attention_block": (512.0, {}),  # on the hand model with a 128-key window (below)
    "activation_offload": (1.0, {}),
    "offload_resident_layers": (3.0, {}),  # on a 4-layer model that offloads (below)
    "optimizer_offload": (1.0, {}),
    "host_adam_eff": (0.36, {}),  # where the optimizer runs on the host (below)
}


def test_every_moved_constant_is_tested():
    assert set(MOVED) == set(TRAIN_CALIBRATION[7:])


@pytest.mark.parametrize("name", MOVED)
def test_a_data_value_reaches_the_step(name):
    value, layout = MOVED[name]
    # communication that compute does not hide; a host with its link and DRAM
    slow = replace(HW, up_bw=1e9, host_bw=50e9, host_mem_bw=80e9)
    base = {"dp_overlap": 0.0}  # (2/3 in the data; no overlap, so that DP traffic shows)
    if name == "offload_resident_layers":  # matters only where activations are offloaded
        base["activation_offload"] = 1.0
    if name == "host_adam_eff":  # matters only where the optimizer runs on the host CPU
        base["optimizer_offload"] = 1.0
    cal = train_calibration(load_training().replace(**base))
    changed = train_calibration(load_training().replace(**base, **{name: value}))
    assert getattr(changed, name) == value
    # the tile of the attention kernel matters where a layer attends over a window
    m = replace(shape(), window=128.0, window_share=0.5) if name == "attention_block" else \
        shape(4) if name in ("offload_resident_layers", "zero3_regather_per_microbatch") else None
    before, after = (step(m, cal=cal, hw=slow, **layout),
                     step(m, cal=changed, hw=slow, **layout))
    assert any(after[k] != before[k] for k in before), name


def test_the_serving_activation_bytes_reach_the_tp_traffic():
    m = serve_shape(model("llama3-8b"))
    batch = 64.0
    scal = serve_calibration(load_serving().replace(activation_bytes=4.0))
    assert scal.activation_bytes == 4.0
    for cal, nbytes in ((serve_calibration(), 2.0), (scal, 4.0)):
        lay = serve_core.ServeLayout(tp=2.0, pp=1.0, ep=1.0, adp=1.0, wbytes=2.0, kvbytes=2.0)
        t = serve_core.decode_terms(m, HW, lay, batch, 1024.0, cal, CAL.gemm_half_dim)
        # 2 all-reduces per layer of batch x hidden activations over 2 chips: one exchange
        ar = HW.up_latency + nbytes * batch * 4096 / HW.up_bw
        assert float(t["traffic"]) == pytest.approx(2 * 32 * ar, rel=1e-12)


# -------------------------------------------------------------------- one chip, by hand
def test_one_chip_step_by_hand():
    p, n_mb = parts(), GB
    got = step()
    params = P_LAYER + P_EMB
    t_opt = mem_time(32 * params)  # Adam moves 32 B per parameter
    assert got["t_compute"] == pytest.approx(n_mb * mb_compute(p), rel=1e-12)
    assert got["t_optimizer"] == pytest.approx(t_opt, rel=1e-12)
    for zero in ("t_tp", "t_ep", "t_cp", "t_pp", "t_dp", "t_bubble"):
        assert got[zero] == 0.0, zero
    assert got["step_time"] == pytest.approx(n_mb * mb_compute(p) + t_opt + CAL.step_overhead,
                                             rel=1e-12)
    model_flops = GB * S * (6 * (P_LAYER + V * H) + 3 * 2 * (S / 2) * HEADS * 2 * D)
    assert got["mfu"] == pytest.approx(model_flops / (HW.peak_gemm * got["step_time"]),
                                       rel=1e-12)
    assert got["hfu"] == got["mfu"]
    # weights 2 B + gradients 4 B + Adam 12 B per parameter, one micro-batch's activations,
    # fp32 logits
    assert got["mem_per_chip"] == pytest.approx(18 * params + KEPT * S + 4 * S * V, rel=1e-12)


@pytest.mark.parametrize("zero", [1, 3])
def test_an_optimizer_on_the_host_cpu_by_hand(zero):
    """DeepSpeed ZeRO-Offload (optimizer_offload = 1): the chip's share of the parameters is
    updated in the host's DRAM, 32 B each at host_adam_eff of the host's peak per chip, and its
    BF16 weights (2 B) return over the host link; HBM keeps only the weights, 16 B per
    parameter less (ZeRO-1: the unsharded 4 B gradients and the sharded 12 B Adam states)."""
    dp, params = 8.0, P_LAYER + P_EMB
    hw = replace(HW, host_bw=50e9, host_mem_bw=80e9)
    cal = replace(CAL, optimizer_offload=1.0, host_adam_eff=0.2)
    layout = {"dp": dp, "zero": zero, "global_batch": dp * GB}
    chip, host = step(hw=hw, **layout), step(cal=cal, hw=hw, **layout)
    share = params / dp  # ZeRO >= 1: each chip updates its shard
    assert chip["t_optimizer"] == pytest.approx(mem_time(32 * share), rel=1e-12)
    assert host["t_optimizer"] == pytest.approx(32 * share / (0.2 * 80e9) + 2 * share / 50e9,
                                                rel=1e-12)
    assert host["step_time"] - chip["step_time"] == pytest.approx(
        host["t_optimizer"] - chip["t_optimizer"], rel=1e-9)
    freed = params * (4 + 12 / dp) if zero == 1 else params * 16 / dp
    assert chip["mem_per_chip"] - host["mem_per_chip"] == pytest.approx(freed, rel=1e-9)


@pytest.mark.parametrize(("host_bw", "share"), [(1e9, 0.5), (1e13, 0.5), (1e9, 1.0)])
def test_offloaded_activations_by_hand(host_bw, share):
    """A share of the saved activations waits in host memory: HBM keeps the rest and two
    layers in transit; the copies leave in the forward and return in the backward over the host
    link, each hidden behind its pass."""
    p, layers, n_mb = parts(), 4, GB
    got = step(shape(layers), cal=replace(CAL, activation_offload=share),
               hw=replace(HW, host_bw=host_bw))
    saved = layers * KEPT * S  # one micro-batch's activations of the 4 layers [B]
    copy = share * saved / host_bw  # each way [s]
    fwd = layers * (p["gemm"] + p["attn"] + p["elem"] + p["fixed"])
    bwd = layers * (2 * p["gemm"] + 2 * (p["elem"] + p["fixed"]) + p["attn_bwd"])
    exposed = max(copy - fwd, 0.0) + max(copy - bwd, 0.0)
    assert got["t_offload"] == pytest.approx(n_mb * exposed, rel=1e-12)
    assert (got["t_offload"] > 0) == (host_bw < 1e12)  # a fast link hides the copies
    params = layers * P_LAYER + P_EMB
    assert got["step_time"] == pytest.approx(
        n_mb * (mb_compute(p, layers=layers) + exposed) + mem_time(32 * params)
        + CAL.step_overhead, rel=1e-12)
    # HBM: the rest of the micro-batch, the fp32 logits, two of the four layers (the one
    # computed, the one in transit)
    assert got["mem_per_chip"] == pytest.approx(
        18 * params + (1 - share) * saved + 4 * S * V + share * saved / 2, rel=1e-12)
    # the host must hold the offloaded share (of its memory, the usable part): a chip whose
    # host memory is 1% short does not fit, one with the room does
    room = share * saved / (1 - CAL.mem_reserve)
    for capacity, fits in ((0.99 * room, False), (1.01 * room, True)):
        hw = replace(HW, host_bw=host_bw, host_capacity=capacity)
        assert step(shape(layers), cal=replace(CAL, activation_offload=share), hw=hw)["fits"] \
            == fits


def test_a_policy_that_names_its_tensors_keeps_them_and_the_input_by_hand():
    """Selective recompute as a named-output policy (the layer input and Q, K, V: 4 x 1024
    elements per token): HBM keeps 2 B x 4096 per token and layer, plus one layer's full
    activations while its backward rebuilds it, where the per-part accounting keeps KEPT."""
    named = replace(shape(2), kept_selective_dense=4 * H)
    got, plain = step(named, recompute=1), step(shape(2), recompute=1)
    params, logits = 2 * P_LAYER + P_EMB, 4 * S * V
    assert got["mem_per_chip"] == pytest.approx(
        18 * params + 2 * 2 * 4 * H * S + logits + KEPT * S, rel=1e-12)
    # the per-part accounting: selective drops the attention core's output and statistics
    assert plain["mem_per_chip"] == pytest.approx(
        18 * params + 2 * (KEPT - 2 * ATTN_OUT - 4 * HEADS) * S + logits, rel=1e-12)
    assert got["step_time"] == plain["step_time"]  # what runs again is the recompute factors'


def test_the_flashattention_backward_factor_sets_the_attention_backward():
    t_attn = parts()["attn"]
    base = step()["t_compute"]
    doubled = step(cal=replace(CAL, attention_backward_factor=5.0))["t_compute"]
    assert doubled - base == pytest.approx(GB * 2.5 * t_attn * 0.4 / 0.25, rel=1e-9)


def test_the_backward_memory_factor_sets_the_backward_of_memory_bound_work():
    p = parts()
    base = step()["t_compute"]
    more = step(cal=replace(CAL, backward_memory_factor=3.0))["t_compute"]
    assert more - base == pytest.approx(GB * (p["elem"] + p["fixed"] + p["logits_mem"]),
                                        rel=1e-9)


# ------------------------------------------------------------------------------- tp = 2
def test_tp2_by_hand():
    p, n_mb = parts(tp=2.0), GB
    got = step(tp=2)
    assert got["t_compute"] == pytest.approx(n_mb * mb_compute(p), rel=1e-12)
    # 2 all-reduces per layer, forward and backward, of 2 B x S x H over 2 chips (one
    # exchange: latency + bytes / bandwidth)
    ar = HW.up_latency + 2 * S * H / HW.up_bw
    assert got["t_tp"] == pytest.approx(n_mb * (1 - CAL.layer_comm_overlap) * 2 * 2 * ar,
                                        rel=1e-12)
    full = step(tp=2, recompute=2)  # the recomputed forward runs its all-reduces again
    assert full["t_tp"] == pytest.approx(n_mb * (1 - CAL.layer_comm_overlap) * 3 * 2 * ar,
                                         rel=1e-12)
    # an overlap of the forward passes only (async TP): the forward's half of the collectives
    # hides as before, the backward's half is exposed whole; under full recompute the two
    # forward passes' two thirds hide
    fwd_only = replace(CAL, tp_overlap_backward=0.0)
    ov = CAL.layer_comm_overlap
    assert step(tp=2, cal=fwd_only)["t_tp"] == pytest.approx(
        n_mb * (1 - ov / 2) * 2 * 2 * ar, rel=1e-12)
    assert step(tp=2, recompute=2, cal=fwd_only)["t_tp"] == pytest.approx(
        n_mb * (1 - ov * 2 / 3) * 3 * 2 * ar, rel=1e-12)
    params = (P_LAYER + P_EMB) / 2
    assert got["mem_per_chip"] == pytest.approx(18 * params + (KEPT * S + 4 * S * V) / 2,
                                                rel=1e-12)


# -------------------------------------------------------------- pp = 2, one layer per stage
def test_pp2_with_one_layer_per_stage_by_hand():
    n_mb = 8.0
    got = step(shape(2), pp=2, global_batch=n_mb)
    one = step(shape(1), global_batch=n_mb)
    t_mb = mb_compute(parts())  # a stage holds one layer (and the logits of the last)
    assert got["t_compute"] == pytest.approx(n_mb * t_mb, rel=1e-12) == one["t_compute"]
    assert got["t_bubble"] == pytest.approx(t_mb, rel=1e-12)  # (pp - 1) / vpp = 1 micro-batch
    # activations forward and gradients backward over the one hop: 2 B x S x H each way
    t_pp = 2 * (2 * S * H / HW.up_bw + HW.up_latency)
    assert got["t_pp"] == pytest.approx(t_pp, rel=1e-12)
    params = P_LAYER + P_EMB / 2  # the first stage: one layer and the input embedding
    assert got["t_optimizer"] == pytest.approx(mem_time(32 * params), rel=1e-12)
    assert got["step_time"] == pytest.approx(
        t_mb * (n_mb + 1) + t_pp + mem_time(32 * params) + CAL.step_overhead, rel=1e-12)
    # 1F1B without interleaving: min(n_mb, pp) = 2 micro-batches in flight on the first stage;
    # the last stage holds one and the fp32 logits: the worse of the two
    first, last = 2 * KEPT * S, KEPT * S + 4 * S * V
    assert got["mem_per_chip"] == pytest.approx(18 * params + max(first, last), rel=1e-12)
    # interleaved (vpp = 2 chunks of half a layer each is not possible: use the formula's
    # factor on a two-layer stage): (1 + (pp - 1) / (pp vpp)) = 1.25 times as many
    two = step(shape(4), pp=2, vpp=2, global_batch=n_mb)
    assert two["mem_per_chip"] == pytest.approx(
        18 * (2 * P_LAYER + P_EMB / 2) + max(2 * 1.25 * 2 * KEPT * S, 2 * KEPT * S + 4 * S * V),
        rel=1e-12)


# ----------------------------------------------------------------------------- ZeRO
@pytest.mark.parametrize(("zero", "sharded"), [(0, 0.0), (1, 12.0), (2, 16.0), (3, 18.0)])
def test_zero_memory_per_chip_is_params_x_bytes_over_dp(zero, sharded):
    dp, params = 8.0, P_LAYER + P_EMB
    cal = replace(CAL, zero3_regather_per_microbatch=1.0)  # ZeRO-3 regathers per micro-batch
    got = step(cal=cal, dp=dp, zero=zero, global_batch=dp * GB)["mem_per_chip"]
    states = params * (18 - sharded) + params * sharded / dp  # 2 + 4 + 12 B per parameter
    assert got == pytest.approx(states + KEPT * S + 4 * S * V, rel=1e-12)
    if zero == 3:  # ZeRO-3: every state byte of a parameter divided over the dp chips
        assert got - KEPT * S - 4 * S * V == pytest.approx(params * 18 / dp, rel=1e-12)


def test_zero3_communicates_one_and_a_half_all_reduces_per_micro_batch():
    dp, n_mb, params = 4.0, GB, P_LAYER + P_EMB
    cal = replace(CAL, dp_overlap=0.0, zero3_regather_per_microbatch=1.0)
    nbytes = 2 * params  # bf16 gradients / parameters
    bw, alpha = HW.up_bw, HW.up_latency
    ring = 2 * (3 / 4 * nbytes / bw + 3 * alpha)
    doubling = math.log2(dp) * (alpha + nbytes / bw)
    # + the all-reduce of the (here empty) expert gradients, which pays its latency: 2 alpha
    ar = min(ring, doubling) + math.log2(dp) * alpha
    kw = {"dp": dp, "global_batch": dp * n_mb}
    assert step(cal=cal, zero=1, **kw)["t_dp"] == pytest.approx(ar, rel=1e-12)
    assert step(cal=cal, zero=3, **kw)["t_dp"] == pytest.approx(n_mb * 1.5 * ar, rel=1e-12)
    twice = replace(cal, zero3_comm_factor=3.0)
    assert step(cal=twice, zero=3, **kw)["t_dp"] == pytest.approx(n_mb * 3.0 * ar, rel=1e-12)


@pytest.mark.parametrize("regather", [0.0, 1.0])
def test_zero3_without_pipelining_regathers_every_micro_batch(regather):
    """One stage, dp = 4, ZeRO-3, 4 micro-batches, half a micro-batch hides DP traffic: without
    pipelining both reshard policies gather and reduce-scatter in every micro-batch (gradient
    accumulation reshards after each forward and backward), every state byte over dp."""
    dp, n_mb, params = 4.0, 4.0, P_LAYER + P_EMB  # 16 777 216 parameters
    cal = replace(CAL, dp_overlap=0.5, zero3_regather_per_microbatch=regather)
    nbytes, bw, alpha = 2 * params, HW.up_bw, HW.up_latency
    ar = min(2 * (3 / 4 * nbytes / bw + 3 * alpha), math.log2(dp) * (alpha + nbytes / bw)) \
        + math.log2(dp) * alpha  # = 5.1131648e-4 s (+ the empty expert all-reduce's latency)
    window = 0.5 * mb_compute(parts())  # (depends on the fitted GEMM curve)
    got = step(cal=cal, dp=dp, zero=3, global_batch=dp * n_mb)
    assert got["n_microbatches"] == n_mb
    assert got["t_dp"] == pytest.approx(n_mb * (1.5 * ar - window), rel=1e-12)
    assert got["mem_per_chip"] == pytest.approx(params * 18 / dp + KEPT * S + 4 * S * V,
                                                rel=1e-12)
    assert got["mem_per_chip"] == pytest.approx(163053568.0, rel=1e-9)


def test_zero3_under_pipelining_keeps_the_stage_gathered_for_the_step():
    """Two stages of a four-layer model, dp = 4, ZeRO-3, 4 micro-batches: under the once-per-step
    policy (PyTorch's pipeline schedules defer the reshard and the gradient reduce-scatter to
    the last micro-batch) one gather round per step and the stage's bf16 weights and fp32
    gradients resident (2 + 4 + 12/dp B per parameter); per micro-batch: n_mb rounds, 18/dp."""
    dp, n_mb, stage = 4.0, 4.0, 2 * P_LAYER + P_EMB / 2  # the first stage's parameters
    m = shape(4)
    kw = {"pp": 2, "dp": dp, "zero": 3}
    once, each = (replace(CAL, dp_overlap=0.5, zero3_regather_per_microbatch=r) for r in (0, 1))
    one_round = step(m, cal=once, global_batch=dp, **kw)["t_dp"]  # one micro-batch: one round
    assert one_round > 0.0
    assert step(m, cal=once, global_batch=dp * n_mb, **kw)["t_dp"] == pytest.approx(
        one_round, rel=1e-12)
    assert step(m, cal=each, global_batch=dp * n_mb, **kw)["t_dp"] == pytest.approx(
        n_mb * one_round, rel=1e-12)
    kept = step(m, cal=once, global_batch=dp * n_mb, **kw)["mem_per_chip"]
    sharded = step(m, cal=each, global_batch=dp * n_mb, **kw)["mem_per_chip"]
    assert kept - sharded == pytest.approx(stage * (2 + 4 + 12 / dp - 18 / dp), rel=1e-9)


# ---------------------------------------------------------------------- context parallel
@pytest.mark.parametrize("overlap", [1.0, 0.5, 0.0])
def test_ring_attention_hides_behind_the_attention_core(overlap):
    cp = 2.0
    slow = replace(HW, up_bw=2e9)
    tokens = S / cp
    kv = 2 * tokens * 2 * HEADS * D  # K and V of the local chunk, 2 B per element
    raw = 3 * (cp - 1) * (kv / slow.up_bw + slow.up_latency)  # forward KV, backward KV + dKV
    # forward + backward of the core
    window = overlap * (attention(tokens, HEADS) + attention_bwd(tokens, HEADS))
    got = step(hw=slow, cal=replace(CAL, cp_overlap=overlap), cp=cp)
    assert got["t_cp"] == pytest.approx(GB * max(raw - window, 0.0), rel=1e-12, abs=1e-15)
    if overlap == 0.0:
        assert got["t_cp"] > 0


# ---------------------------------------------------------------- selective recompute
def test_the_one_definition_of_recompute():
    assert wf.RECOMPUTED["none"] == (0.0, 0.0, 0.0, 0.0, 0.0)  # kept: the parts' accounting
    assert wf.RECOMPUTED["selective"] == wf.Recompute(gemms=0.0, attention=1.0,
                                                      elementwise=0.0)
    assert wf.RECOMPUTED["full"] == (1.0, 1.0, 1.0, 0.0, 0.0)
    m = model_shape(model("llama3-8b"))
    for i, mode in enumerate(RECOMPUTE):
        r = wf.RECOMPUTED[mode]
        assert (m.recompute_gemms[i], m.recompute_attention[i], m.recompute_elementwise[i]) \
            == r[:3]


def test_selective_recompute_flops_by_hand():
    spec = model("llama3-8b")  # 32 layers, 32 heads of 128
    s = 4096.0
    attn = 2 * 32 * 32 * (128 + 128) * s / 2  # one causal forward of the attention core
    assert attn == 2**30
    extra = wf.hardware_flops_per_token(spec, s, "selective") - wf.model_flops_per_token(spec, s)
    assert extra == attn == wf.recompute_flops_per_token(spec, s, "selective")
    full = wf.recompute_flops_per_token(spec, s, "full")
    assert full == 2 * (spec.flop_params - 128256 * 4096) + attn  # the logits are not redone
    assert wf.recompute_flops_per_token(spec, s, "none") == 0.0
    with pytest.raises(ParameterError, match="recompute"):
        wf.recompute_flops_per_token(spec, s, "some")


def test_selective_recompute_time_and_memory_by_hand():
    p = parts()
    none, sel, full = (step(recompute=r) for r in (0, 1, 2))
    assert sel["t_compute"] - none["t_compute"] == pytest.approx(GB * p["attn"], rel=1e-9)
    assert sel["t_compute"] == pytest.approx(GB * mb_compute(p, "selective"), rel=1e-12)
    assert full["t_compute"] == pytest.approx(GB * mb_compute(p, "full"), rel=1e-12)
    # selective drops what the attention core keeps beside Q, K, V: its output (2 B per
    # element) and the softmax statistics (4 B per head)
    assert none["mem_per_chip"] - sel["mem_per_chip"] == pytest.approx(
        (2 * ATTN_OUT + 4 * HEADS) * S, rel=1e-12)
    # full keeps the layer input (2 B x H per token) and one layer's activations while its
    # backward runs
    states, logits = 18 * (P_LAYER + P_EMB), 4 * S * V
    assert full["mem_per_chip"] == pytest.approx(states + 2 * H * S + KEPT * S + logits,
                                                 rel=1e-12)


@pytest.mark.parametrize("policy", ["op", "layer"])
def test_a_frameworks_selective_policy_by_hand(policy):
    """torchtitan's op-level policy recomputes every second weight GEMM (with its share of the
    fixed cost) and every memory-bound op, not the attention core; its layer-level option '2'
    recomputes every second layer whole."""
    r = wf.SELECTIVE[policy]
    sel = replace(shape(), recompute_gemms=(0.0, r.gemms, 1.0),
                  recompute_attention=(0.0, r.attention, 1.0),
                  recompute_elementwise=(0.0, r.elementwise, 1.0))
    p = parts()
    fwd = p["gemm"] + p["attn"] + p["elem"] + p["fixed"]
    redo = {"op": 0.5 * (p["gemm"] + p["fixed"]) + p["elem"], "layer": 0.5 * fwd}[policy]
    none, got = step(sel, recompute=0), step(sel, recompute=1)
    assert got["t_compute"] - none["t_compute"] == pytest.approx(GB * redo, rel=1e-9)
    assert wf.SELECTIVE["attention"] == wf.RECOMPUTED["selective"]
    built = model_shape(model("llama3-8b"), policy)
    assert built.recompute_gemms == (0.0, r.gemms, 1.0)
    assert built.recompute_attention == (0.0, r.attention, 1.0)


def test_torchtitan_selective_is_its_op_policy_and_a_case_may_name_the_layer_one():
    from trnlab.calibration.validate import _selective_policy
    from trnlab.catalog.params import STACK_KEYS, load_stacks

    assert set(STACK_KEYS["selective"]) == set(wf.SELECTIVE)  # the data names the policies
    stacks = load_stacks()
    assert stacks["torchtitan"].selective == "op"
    assert stacks["megatron"].selective == stacks["default"].selective == "attention"
    row = {"metric_note": "", "notes": "recompute 'selective layer' -> selective"}
    assert _selective_policy(row, "op") == "layer"
    assert _selective_policy({"metric_note": "", "notes": "no AC"}, "op") == "op"


def test_a_policy_that_keeps_named_outputs_recomputes_the_rest_by_hand():
    """Llama 3 8B, GEMM widths per layer [M multiply-adds per token]: qkv 4096 x (32 + 2x8) x
    128 = 25.17, attn_out 4096^2 = 16.78, mlp_up 4096 x 2 x 14336 = 117.44, mlp_down 58.72;
    total 218.10. MaxText's custom policy keeping q, k, v and attn_out recomputes
    1 - 41.94/218.10 = 0.8077 of the GEMMs, the attention core and the memory-bound ops."""
    from trnlab.calibration.validate import _selective_policy

    spec = model("llama3-8b")
    total = 4096 * 48 * 128 + 4096**2 + 4096 * 2 * 14336 + 14336 * 4096
    assert total == 218_103_808
    kept = wf.saving_recompute(spec, frozenset({"q", "k", "v", "attn_out"}))
    assert kept.gemms == pytest.approx(1 - (4096 * 48 * 128 + 4096**2) / total, rel=1e-12)
    assert kept.gemms == pytest.approx(0.8077, abs=1e-4)
    assert (kept.attention, kept.elementwise) == (1.0, 1.0)
    q_only = wf.saving_recompute(spec, frozenset({"q"}))  # q is 32 of the 48 qkv heads
    assert q_only.gemms == pytest.approx(1 - 4096 * 32 * 128 / total, rel=1e-12)
    assert wf.saving_recompute(spec, frozenset())[:3] == wf.RECOMPUTED["full"][:3]
    # it keeps the layer input and the saved outputs: 4096 + q 4096 + k, v 2 x 1024 + 4096
    assert kept.kept_dense == 4096 + 32 * 128 + 2 * 8 * 128 + 4096 == 14336
    assert wf.saving_recompute(spec, frozenset()).kept_dense == 4096  # the input alone
    assert wf.saving_recompute(spec, frozenset({"attention"})).attention == 0.0
    note = ("remat_policy custom (offload decoder_layer_input, out_proj, query_proj, key_proj, "
            "value_proj; the rest recomputed)")
    assert _selective_policy({"metric_note": "", "notes": note}, "attention", spec) == kept
    named = _selective_policy({"metric_note": "", "notes": "remat_policy 'qkv_proj_offloaded'"},
                              "attention", spec)
    assert named == wf.saving_recompute(spec, frozenset({"q", "k", "v"}))
    assert _selective_policy({"metric_note": "", "notes": "remat_policy full"}, "attention",
                             spec) == "attention"


def test_maxtexts_mlpwo_keeps_the_routed_experts_output_of_an_moe_layer_by_hand():
    """MaxText names the routed experts' grouped-GEMM output ``mlpwo`` too (moe.py), top-k
    rows per token: gpt-oss-120b (hidden 2880, top-4) keeps its layer input and 4 x 2880 per
    token and MoE layer, 14,400 elements (before: the input alone, 2,880)."""
    from trnlab.calibration.validate import _selective_policy

    spec = model("gpt-oss-120b")
    note = "remat_policy custom (offload decoder_layer_input, mlpwo)"
    got = _selective_policy({"metric_note": "", "notes": note}, "attention", spec)
    assert got.kept_moe == 2880 + 4 * 2880 == 14_400
    assert got == wf.saving_recompute(spec, frozenset({"mlp_down", "expert_down", "shared_down"}))
    assert got.gemms < wf.saving_recompute(spec, frozenset()).gemms  # the down GEMMs not rerun


def test_megatron_module_and_block_recompute_by_hand():
    """Llama 3 8B, memory-bound traffic per layer and token [elements, read + write]: attn_norm
    8192, rope (q 4096 + k 1024) 10240, attn_residual 12288, mlp_norm 8192, mlp_act (SwiGLU:
    reads 2 x 14336, writes 14336) 43008, mlp_residual 12288; total 94208. Megatron's
    ``layernorm`` module recomputes the two norms: 16384 / 94208 = 0.1739 of it; ``mlp`` the MLP
    GEMMs (176.16 of 218.10 M multiply-adds, 0.8077) and its activation (43008 / 94208);
    ``core_attn`` the attention core. Block recompute of 5 layers per chunk: 5 x 2 chunks / 32
    layers of full recompute."""
    from trnlab.calibration.validate import _selective_policy
    from trnlab.errors import ParameterError

    spec = model("llama3-8b")
    norms = wf.module_recompute(spec, frozenset({"layernorm"}))
    assert norms[:3] == pytest.approx((0.0, 0.0, 16384 / 94208), rel=1e-12)
    mlp = wf.module_recompute(spec, frozenset({"mlp", "core_attn"}))
    assert mlp[:3] == pytest.approx(((117_440_512 + 58_720_256) / 218_103_808, 1.0, 43008 / 94208),
                                rel=1e-12)
    assert wf.block_recompute(spec, 5, 2)[:3] == pytest.approx((10 / 32,) * 3)
    assert wf.block_recompute(spec, 40, 1) == wf.RECOMPUTED["full"]
    with pytest.raises(ParameterError, match="modules"):
        wf.module_recompute(spec, frozenset({"attention"}))
    row = {"metric_note": "", "recompute": "selective", "pp": "", "vpp": "",
           "notes": "recompute_modules=[layernorm, mlp, core_attn] (selective)"}
    assert _selective_policy(row, "attention", spec) == wf.module_recompute(
        spec, frozenset({"layernorm", "mlp", "core_attn"}))
    row = {"metric_note": "", "recompute": "selective", "pp": "", "vpp": "",
           "notes": "recompute_modules=[layernorm, mhc]"}  # an unknown module is not counted
    assert _selective_policy(row, "attention", spec) == norms
    row = {"metric_note": "", "recompute": "full", "pp": "2", "vpp": "",
           "notes": "recompute_num_layers=5 (block)"}
    assert _selective_policy(row, "attention", spec) == wf.block_recompute(spec, 5, 2)
    moe = model("deepseek-v3")
    act = wf.module_recompute(moe, frozenset({"moe_act"}))
    assert act.gemms == 0.0 and 0.0 < act.elementwise < 1.0


@pytest.mark.parametrize("mid", ["llama3-8b", "mixtral-8x7b", "deepseek-v3"])
def test_hfu_counts_the_hardware_flops_of_each_recompute_mode(mid):
    spec = model(mid)
    hw = hardware("trn3", "trn3-ultraserver")
    s, gb = 4096.0, 64.0
    for code, mode in enumerate(RECOMPUTE):
        got = step(model_shape(spec), hw=hw, recompute=code, tp=4, dp=64, global_batch=gb,
                   seq_len=s)
        executed = got["hfu"] * 256 * hw.peak_gemm * got["step_time"] / hw.clock
        assert executed == pytest.approx(
            gb * s * wf.hardware_flops_per_token(spec, s, mode), rel=1e-12), mode


def test_narrow_gemms_keep_their_inputs_at_the_gemm_precision():
    bf16 = step()["mem_per_chip"]
    fp8 = step(hw=replace(HW, gemm_bytes=1.0))["mem_per_chip"]
    assert bf16 - fp8 == pytest.approx((2 - 1) * GEMM_IN * S, rel=1e-12)


# ------------------------------------------------------- stored activations, counted by hand
# Bytes one layer keeps per token for its backward pass (workloads.traffic.stored_activations,
# Korthikanti et al. 2022 table 2 with FlashAttention and no dropout): BF16 activations (2 B),
# fp32 statistics (4 B); FP8 GEMMs keep a 1 B cast of their input per GEMM.
GQA = TransformerSpec(name="gqa-hand", layers=2, hidden=256, heads=8, kv_heads=2, head_dim=32,
                      ffn=512, gated_mlp=True, vocab=1024)
#   attn_norm input            256 x 2 =  512
#   attn_norm 1/rms              1 x 4 =    4
#   qkv GEMM input             256 x 2 =  512   (the norm's output)
#   Q (after RoPE)          8 x 32 x 2 =  512
#   K (after RoPE)          2 x 32 x 2 =  128   (kv_heads, not heads)
#   V                       2 x 32 x 2 =  128   (kv_heads x v_dim)
#   O = out-proj input      8 x 32 x 2 =  512   (once: FlashAttention's output is that input)
#   log-sum-exp                  8 x 4 =   32
#   mlp_norm input             256 x 2 =  512
#   mlp_norm 1/rms               1 x 4 =    4
#   mlp_up GEMM input          256 x 2 =  512
#   SwiGLU input (gate, up) 2 x 512 x 2 = 2048
#   mlp_down GEMM input        512 x 2 = 1024
#   (residual-add inputs, RoPE inputs: nothing)                   total 6440
GQA_NONE = 512 + 4 + 512 + 512 + 128 + 128 + 512 + 32 + 512 + 4 + 512 + 2048 + 1024
GQA_GEMM_IN = 512 + 512 + 512 + 1024  # the four GEMM inputs at 2 B


def test_stored_activations_of_a_gqa_layer_by_hand():
    assert GQA_NONE == 6440
    got = {mode: stored_activation_bytes_per_token_per_layer(GQA, 2.0, 2.0, 4.0, mode)
           for mode in RECOMPUTE}
    # selective recomputes the attention core: only its log-sum-exp goes (Q, K, V are the
    # recompute's inputs, O the output projection's); full keeps the layer's input
    assert got == {"none": 6440.0, "selective": 6440.0 - 32, "full": 256 * 2.0}
    # FP8 GEMMs: each keeps a 1 B cast, and FlashAttention its own BF16 O (dropped by selective)
    fp8 = {mode: stored_activation_bytes_per_token_per_layer(GQA, 2.0, 1.0, 4.0, mode)
           for mode in RECOMPUTE}
    assert fp8 == {"none": 6440.0 - GQA_GEMM_IN / 2 + 512,
                   "selective": 6440.0 - GQA_GEMM_IN / 2 - 32, "full": 512.0}


def test_the_step_keeps_the_stored_activations_of_a_gqa_layer():
    m = model_shape(GQA)
    assert (m.act_gemm_in_dense, m.act_attn_in_dense, m.act_attn_out_dense, m.act_elem_dense,
            m.softmax_stats_dense) == (256 + 256 + 256 + 512, 256 + 64 + 64, 0.0,
                                       256 + 256 + 1024, 8)
    none, sel, full = (step(m, recompute=r) for r in (0, 1, 2))
    states = 18 * (2 * m.params_dense_layer + m.params_embedding)
    logits = 4 * S * 1024  # fp32 logits
    # the step's 6432 B are the hand count less the norms' statistics (2 x 4 B), for which
    # ModelShape has no field
    kept = GQA_NONE - 2 * 4
    assert none["mem_per_chip"] == pytest.approx(states + 2 * kept * S + logits, rel=1e-12)
    assert none["mem_per_chip"] - sel["mem_per_chip"] == pytest.approx(2 * 32 * S, rel=1e-12)
    # full: both layers' inputs, and one layer's activations while its backward runs
    assert full["mem_per_chip"] == pytest.approx(states + (2 * 512 + kept) * S + logits,
                                                 rel=1e-12)


MLA = TransformerSpec(name="mla-hand", layers=2, hidden=256, heads=4, ffn=512, gated_mlp=True,
                      vocab=1024, q_lora_rank=64, kv_lora_rank=32, qk_rope_head_dim=16,
                      qk_nope_head_dim=32, v_head_dim=32)
#   attn_norm input 512, 1/rms 4, its output 512 (read by q_down and kv_down: one tensor)
#   q latent norm input 64 x 2 = 128, 1/rms 4, q_up input 128
#   kv latent norm input 32 x 2 = 64, 1/rms 4, kv_up input 64
#   Q 4 x (32 + 16) x 2 = 384, K 4 x 48 x 2 = 384 (the rope part broadcast to each head),
#   V 4 x 32 x 2 = 256, O = out-proj input 4 x 32 x 2 = 256, log-sum-exp 4 x 4 = 16
#   MLP as above: 512 + 4 + 512 + 2048 + 1024                     total 6816
MLA_NONE = (512 + 4 + 512 + 128 + 4 + 128 + 64 + 4 + 64 + 384 + 384 + 256 + 256 + 16
            + 512 + 4 + 512 + 2048 + 1024)


def test_stored_activations_of_an_mla_layer_by_hand():
    assert MLA_NONE == 6816
    got = [stored_activation_bytes_per_token_per_layer(MLA, 2.0, 2.0, 4.0, mode)
           for mode in RECOMPUTE]
    assert got == [6816.0, 6816.0 - 16, 512.0]
    # FP8: casts of 1 B per GEMM (the norm output twice: q_down and kv_down), + BF16 O
    casts = 256 * 2 + 64 + 32 + 128 + 256 + 512
    bf16_inputs = 2 * (256 + 64 + 32 + 128 + 256 + 512)
    assert stored_activation_bytes_per_token_per_layer(MLA, 2.0, 1.0, 4.0) == \
        6816.0 - bf16_inputs + casts + 256
    m = model_shape(MLA)
    assert (m.act_gemm_in_dense, m.act_attn_in_dense, m.act_elem_dense,
            m.softmax_stats_dense) == (1248, 192 + 192 + 128, 256 + 64 + 32 + 256 + 1024, 4)


MOE = TransformerSpec(name="moe-hand", layers=2, hidden=256, heads=8, kv_heads=2, head_dim=32,
                      gated_mlp=True, vocab=1024, moe_experts=8, moe_active=2, moe_ffn=128,
                      moe_shared_experts=1)
#   attention as GQA above: 512 + 4 + 512 + 512 + 128 + 128 + 512 + 32 = 2340
#   mlp_norm input 512, 1/rms 4, its output 512 (router and shared up read it: one tensor)
#   router scores 8 x 2 = 16
#   dispatched tokens (expert up input) k x h = 2 x 256 x 2 = 1024
#   expert SwiGLU input 2 x k x 128 x 2 = 1024, expert down input k x 128 x 2 = 512
#   combine: expert outputs k x h x 2 = 1024, routing weights k x 2 = 4
#   shared SwiGLU input 2 x 128 x 2 = 512, shared down input 128 x 2 = 256      total 7740
MOE_NONE = 2340 + 512 + 4 + 512 + 16 + 1024 + 1024 + 512 + 1024 + 4 + 512 + 256


def test_stored_activations_of_an_moe_layer_by_hand():
    assert MOE_NONE == 7740
    got = [stored_activation_bytes_per_token_per_layer(MOE, 2.0, 2.0, 4.0, mode, "moe")
           for mode in RECOMPUTE]
    assert got == [7740.0, 7740.0 - 32, 512.0]
    casts = 256 + 256 + 2 * 256 + 512 + 256 + 128  # the mlp norm output cast twice
    bf16_inputs = 2 * (256 + 256 + 256 + 512 + 256 + 128)
    assert stored_activation_bytes_per_token_per_layer(MOE, 2.0, 1.0, 4.0, "none", "moe") == \
        7740.0 - bf16_inputs + casts + 512
    m = model_shape(MOE)
    assert (m.act_gemm_in_moe, m.act_attn_in_moe, m.act_elem_moe, m.softmax_stats_moe) == \
        (1664, 384, 256 + 256 + 8 + 512 + 512 + 2 + 256, 8)
    assert (m.act_gemm_in_dense, m.act_elem_dense) == (0.0, 0.0)  # no dense layer


def test_stored_activations_are_korthikanti_without_dropout_and_the_s2_term():
    """MHA, ffn = 4h, GeLU, LayerNorm, 2 B: table 2's 34·h bytes per token less the two
    ``h``-byte dropout masks, plus fp32 statistics (a log-sum-exp per head, mean and 1/σ per
    norm)."""
    spec = TransformerSpec(name="gpt-hand", layers=2, hidden=1024, heads=16, ffn=4096,
                           vocab=1024, norm="layernorm")
    assert stored_activation_bytes_per_token_per_layer(spec, 2.0, 2.0, 4.0) == \
        32 * 1024 + 4 * 16 + 4 * 4


# ------------------------------------------------------- attention implementations, by hand
def test_materialised_attention_by_hand():
    """fused_attention = 0 (Megatron-LM 2021): per (sequence, head) two batched GEMMs over the
    full s x s scores, Q K^T [s, 128] @ [128, s] and P V [s, s] @ [s, 128], at the GEMM
    roofline; softmax and dropout read and write every score once (2 x 2 x 2 B); the backward
    is twice the GEMMs and 2x the memory passes (backward_memory_factor)."""
    cal = replace(CAL, fused_attention=0.0)
    pairs = HEADS  # one sequence of S tokens, 8 heads
    d0 = CAL.gemm_half_dim

    def bf16_gemm(m: float, n: float, k: float) -> float:  # at the 16-bit peak (5e14)
        eff = HW.gemm_eff * m / (m + d0) * n / (n + d0) * k / (k + d0)
        return max(2 * m * n * k / (HW.peak_attn * eff), mem_time(2 * (m * k + k * n + m * n)))

    gemms = pairs * (bf16_gemm(S, S, D) + bf16_gemm(S, D, S))
    passes = mem_time(2 * 2 * 2 * pairs * S * S)
    p = {**parts(), "attn": gemms + passes, "attn_bwd": 2 * gemms + 2 * passes}
    got = step(cal=cal)
    assert got["t_compute"] == pytest.approx(GB * mb_compute(p), rel=1e-12)
    # the full score matrix: not halved by the causal mask, so slower than half of a fused
    # kernel at the same GEMM efficiency
    assert p["attn"] > 2 * pairs * bf16_gemm(S, S / 2, D)


def test_fused_attention_runs_at_the_chips_forward_and_backward_rates():
    """Forward: causal FLOPs 2 T (s/2) a (d_qk + d_v) at peak_bf16 x attn_fwd_eff x shape;
    backward 2.5x that work at attn_bwd_eff: halving the backward rate doubles the backward."""
    base = step()["t_compute"]
    slow = step(hw=replace(HW, attn_bwd_eff=HW.attn_bwd_eff / 2))["t_compute"]
    assert slow - base == pytest.approx(GB * attention_bwd(S, HEADS), rel=1e-9)
    fast = step(hw=replace(HW, attn_fwd_eff=2 * HW.attn_fwd_eff))["t_compute"]
    assert base - fast == pytest.approx(GB * attention(S, HEADS) / 2, rel=1e-9)
    ctx, d0 = S / 2, CAL.gemm_half_dim  # 2 x 2048 x 1024 x 8 x 256 FLOPs at 0.4 x 5e14
    hand = 2 * S * ctx * HEADS * 2 * D / (5e14 * 0.4 * S / (S + d0) * ctx / (ctx + d0))
    assert attention(S, HEADS) == pytest.approx(hand, rel=1e-12)


@pytest.mark.parametrize(("d_qk", "d_v", "padded"), [(64.0, 64.0, 256.0), (192.0, 128.0, 384.0),
                                                       (128.0, 128.0, 256.0), (256.0, 256.0, 512.0)])
def test_a_kernel_on_128_lanes_pads_the_head_dimensions_by_hand(d_qk, d_v, padded):
    """TPU splash attention pads each head dimension to a multiple of 128 lanes: gpt-oss's
    64 + 64 runs as 128 + 128 (twice the forward and backward work), DeepSeek-V3's 192 + 128 as
    256 + 128 (1.2x); head dimensions of 128 and 256 are not padded."""
    m = replace(shape(), qk_dim=d_qk, v_dim=d_v)
    lanes = replace(HW, attn_lanes=128.0)
    plain, tpu = step(m)["t_compute"], step(m, hw=lanes)["t_compute"]
    ctx, d0 = S / 2, CAL.gemm_half_dim
    shp = S / (S + d0) * ctx / (ctx + d0)
    work = 2 * S * ctx * HEADS * (padded - (d_qk + d_v))  # the padded lanes' FLOPs, one layer
    hand = GB * work * (1 / (5e14 * 0.4 * shp) + 2.5 / (5e14 * 0.25 * shp))
    assert tpu - plain == pytest.approx(hand, rel=1e-9, abs=1e-15)
    assert padded_head_work(d_qk, d_v, 128.0) == pytest.approx(padded / (d_qk + d_v), rel=1e-12)
    assert padded_head_work(d_qk, d_v, 1.0) == 1.0  # a kernel without lanes: as it is
    assert lanes_of("tpu-v7") == 128.0 and lanes_of("h100-sxm") == 1.0


def lanes_of(chip: str) -> float:
    """The lanes the training core's Hardware of ``chip`` pads head dimensions to."""
    system = {"tpu-v7": "tpu-v7-pod", "h100-sxm": "dgx-h100"}[chip]
    return hardware(chip, system, "bf16", load_training()).attn_lanes


def test_lanes_that_are_not_a_whole_number_and_a_negative_window_floor_are_refused(tmp_path):
    from trnlab._paths import data_dir
    from trnlab.catalog.params import load_chip_efficiency

    text = (data_dir() / "perf" / "chip_efficiency.toml").read_text()
    bad = tmp_path / "chip_efficiency.toml"
    bad.write_text(text.replace("attn_head_lanes = { value = 128", "attn_head_lanes = { value = 12.8", 1))
    with pytest.raises(CatalogError, match=r"attn_head_lanes = 12\.8: an integer >= 1"):
        load_chip_efficiency(bad)
    bad.write_text(text.replace("attn_window_keys = { value = 800", "attn_window_keys = { value = -800", 1))
    with pytest.raises(CatalogError, match=r"\[chip\.b200\]: attn_window_keys = -800(\.0)?: a number of keys >= 0"):
        load_chip_efficiency(bad)
    bad.write_text(text.replace("attn_fp8_window_span = { value = 1.0", "attn_fp8_window_span = { value = 1.5", 1))
    with pytest.raises(CatalogError, match=r"\[chip\.b200\]: attn_fp8_window_span = 1\.5: a share of the sequence in \[0, 1\]"):
        load_chip_efficiency(bad)


# ------------------------------------------------------------------ embedding placement
def test_the_embedding_sits_on_the_first_and_the_output_layer_on_the_last_stage():
    """pp = 1: one chip holds the input embedding and the output layer (2 V H); pp > 1: the
    input embedding on the first stage, the output layer on the last, V H on each."""
    m = shape(2)
    for pp, emb in ((1, 2 * V * H), (2, V * H)):
        lay = Layout(**{k: np.array([float(v)]) for k, v in {
            "tp": 1, "pp": pp, "dp": 1, "cp": 1, "ep": 1, "vpp": 1, "zero": 0, "recompute": 0,
            "micro_batch": 1, "global_batch": GB, "seq_len": S}.items()})
        terms = step_terms(m, HW, lay, CAL)
        assert float(terms["p_dense"][0]) == pytest.approx(2 / pp * P_LAYER + emb, rel=1e-12)


# ---------------------------------------------------------------- serving mean context
def test_the_serving_mean_context_is_the_prompt_and_half_the_output():
    """A request's decode steps attend to its prompt plus 1, 2, ..., output tokens: on average
    input + output / 2 (1000 + 500 / 2 = 1250)."""
    assert float(serve_core.mean_context(1000.0, 500.0)) == 1250.0
    assert float(serve_core.mean_context(0.0, 2.0)) == 1.0


# ------------------------------------------------------------------ sliding-window attention
#: gpt-oss-like: every other layer of 36 attends over the last 128 keys
WINDOWED = TransformerSpec(name="windowed", layers=36, hidden=2880, heads=64, kv_heads=8,
                           head_dim=64, ffn=2880, gated_mlp=True, vocab=1000,
                           sliding_window=128, window_layers=18)


def test_a_sliding_window_bounds_the_keys_a_query_attends_to_by_hand():
    """s = 4096: a full layer's query sees s/2 = 2048 keys on average; a 128-key window
    min(i, 128) of them, 128 - 128² / (2 x 4096) = 126; half the layers each: 1087. A sequence
    shorter than the window sees s/2 everywhere (64 -> 32). The KV cache of a 4096-token
    sequence keeps 4096 tokens in a full layer and 128 in a windowed one: 2112 on average."""
    assert float(WINDOWED.mean_attended_keys(4096)) == pytest.approx(1087.0, rel=1e-12)
    assert float(WINDOWED.mean_attended_keys(64)) == pytest.approx(32.0, rel=1e-12)
    assert float(serve_shape(WINDOWED).kv_tokens(4096.0)) == pytest.approx(2112.0, rel=1e-12)
    assert float(serve_shape(WINDOWED).kv_tokens(100.0)) == pytest.approx(100.0, rel=1e-12)
    # a kernel of 128-key tiles computes the band: 126 + 128 = 254 keys of a windowed layer;
    # never more than the causal s/2 (s = 200: 100)
    assert float(attended_keys(4096.0, 128.0, 0.5, 128.0)) == pytest.approx(1151.0, rel=1e-12)
    assert float(attended_keys(200.0, 128.0, 1.0, 128.0)) == pytest.approx(100.0, rel=1e-12)
    # MaxText's 512-key splash blocks: the band [512i - 128, 512(i+1)) touches two whole key
    # blocks, 1,024 keys, where the window needs 126: 126 + 512 - 128 + 512 = 1022 per query
    assert float(attended_keys(4096.0, 128.0, 1.0, 512.0)) == pytest.approx(1022.0, rel=1e-12)
    seqs = np.array([1.0, 64.0, 128.0, 129.0, 4096.0, 131072.0])
    for share in (0.0, 0.5, 5 / 6, 1.0):  # the core's copy of the formula is the spec's
        spec = replace(WINDOWED, window_layers=round(36 * share)) if share else replace(
            WINDOWED, sliding_window=0, window_layers=0)
        w = float(spec.sliding_window)
        np.testing.assert_allclose(attended_keys(seqs, w, spec.windowed_layers / 36),
                                   spec.mean_attended_keys(seqs), rtol=1e-12)
        share = spec.windowed_layers / 36  # a windowed layer keeps min(c, w) of c tokens
        np.testing.assert_allclose(kv_tokens(seqs, w, share), (1 - share) * seqs + share
                                   * (np.minimum(seqs, w) if w else seqs), rtol=1e-12)
    full = replace(WINDOWED, sliding_window=0, window_layers=0)
    # model FLOPs: the attention term counts the attended keys, 1087 of 2048
    att = wf.attention_flops_per_token(WINDOWED, 4096)
    assert att == pytest.approx(2 * 36 * 64 * (64 + 64) * 1087.0, rel=1e-12)
    assert wf.attention_flops_per_token(full, 4096) == pytest.approx(att * 2048 / 1087,
                                                                     rel=1e-12)
    # a framework's non-causal formula keeps its full s²
    assert wf.attention_flops_per_token(WINDOWED, 4096, causal=False) == pytest.approx(
        2 * 36 * 64 * 128 * 4096.0, rel=1e-12)


def test_the_step_and_the_serving_core_attend_over_the_window_by_hand():
    """Training: the attention core of a layer does 2 T keys a (d_qk + d_v) FLOPs with the
    layers' mean keys (1087 at s = 4096); its kernel computes whole tiles of 128 keys
    (training.toml attention_block), the window's band plus one tile, 126 + 128 = 254 keys
    per query of a windowed layer: (2048 + 254) / 2 = 1151 keys of work, the shape factor
    over them. Serving: a decode step reads the KV cache of kv_tokens(context) per sequence
    and the KV cache that fits holds requests of kv_tokens(context) tokens."""
    m = model_shape(WINDOWED)
    assert (m.window, m.window_share) == (128.0, 0.5)
    lay = Layout(**{k: np.array([float(v)]) for k, v in {
        "tp": 1, "pp": 1, "dp": 1, "cp": 1, "ep": 1, "vpp": 1, "zero": 0, "recompute": 0,
        "micro_batch": 1, "global_batch": GB, "seq_len": 4096.0}.items()})
    flops, t = operator_terms(m, HW, lay, CAL)["attention_core"]
    d0 = CAL.gemm_half_dim
    assert CAL.attention_block == 128.0
    assert float(flops[0]) == pytest.approx(2 * 4096 * 1087.0 * 64 * 128, rel=1e-12)
    eff = HW.attn_fwd_eff * 4096 / (4096 + d0) * 1151.0 / (1151.0 + d0)
    work = 2 * 4096 * 1151.0 * 64 * 128
    assert float(t[0]) == pytest.approx(work / (HW.peak_attn * eff), rel=1e-12)
    # a full-attention model computes what it needs: no tile term
    full = model_shape(replace(WINDOWED, sliding_window=0, window_layers=0))
    flops, t = operator_terms(full, HW, lay, CAL)["attention_core"]
    eff = HW.attn_fwd_eff * 4096 / (4096 + d0) * 2048.0 / (2048.0 + d0)
    assert float(t[0]) == pytest.approx(float(flops[0]) / (HW.peak_attn * eff), rel=1e-12)
    sm = serve_shape(WINDOWED)
    one = serve_core.ServeLayout(tp=1.0, pp=1.0, ep=1.0, adp=1.0, wbytes=2.0, kvbytes=2.0)
    cal = serve_calibration()
    hw = hardware("h100-sxm", "dgx-h100", "bf16", serving=load_serving())
    per_token = 2 * 36 * 8 * 64 * 2.0  # K and V, 8 heads of 64, 2 B [B]
    terms = serve_core.decode_terms(sm, hw, one, 4.0, 4096.0, cal, 64.0)
    assert float(terms["kv"]) == pytest.approx(4 * 2112.0 * per_token
                                               / (hw.hbm_bw * cal.mem_eff), rel=1e-12)
    free = cal.kv_free_fraction * (hw.hbm_capacity * (1 - cal.mem_reserve)
                                   - float(serve_core.weight_bytes_per_chip(sm, 1.0, 1.0, 1.0,
                                                                            2.0)))
    conc = serve_core.max_concurrency(sm, hw.hbm_capacity, 1.0, 1.0, 1.0, 2.0, 2.0, 4096.0,
                                      cal)
    assert float(conc) == math.floor(free / (per_token * 2112.0))


def test_a_narrow_window_costs_the_kernels_floor_of_keys_per_query_by_hand():
    """A kernel floor of 1,600 keys per windowed query (chip_efficiency.toml attn_window_keys),
    where a 128-key window and its tile are 254:
    half the layers windowed at s = 4096 cost (2048 + 1600) / 2 = 1824 keys of work per query,
    not 1151; a full layer and a chip without the floor are unchanged; the floor never lowers
    a wide window (s = 131072, w = 4096: 4096 - 4096²/262144 + 128 = 4160 keys)."""
    assert float(attended_keys(4096.0, 128.0, 0.5, 128.0, 1600.0)) == pytest.approx(
        1824.0, rel=1e-12)
    assert float(attended_keys(4096.0, 128.0, 0.5, 128.0, 0.0)) == pytest.approx(1151.0,
                                                                                rel=1e-12)
    assert float(attended_keys(4096.0, 0.0, 0.0, 128.0, 1600.0)) == 2048.0
    assert float(attended_keys(131072.0, 4096.0, 1.0, 128.0, 1600.0)) == pytest.approx(
        4160.0, rel=1e-12)
    m = model_shape(WINDOWED)
    lay = Layout(**{k: np.array([float(v)]) for k, v in {
        "tp": 1, "pp": 1, "dp": 1, "cp": 1, "ep": 1, "vpp": 1, "zero": 0, "recompute": 0,
        "micro_batch": 1, "global_batch": GB, "seq_len": 4096.0}.items()})
    floored = replace(HW, attn_window_keys=1600.0)
    _, t = operator_terms(m, floored, lay, CAL)["attention_core"]
    d0 = CAL.gemm_half_dim
    eff = HW.attn_fwd_eff * 4096 / (4096 + d0) * 1824.0 / (1824.0 + d0)
    assert float(t[0]) == pytest.approx(2 * 4096 * 1824.0 * 64 * 128 / (HW.peak_attn * eff),
                                        rel=1e-12)


@pytest.mark.parametrize(("chip", "t_fwd", "t_bwd"), [("gb200", 0.210e-3, 0.465e-3),
                                                       ("gb300", 0.202e-3, 0.442e-3)])
def test_the_window_floor_is_the_kernel_benchmarks_time_at_the_chips_rates(chip, t_fwd, t_bwd):
    """The cuDNN 9.22 GPT-OSS benchmark (128 + 128 heads of 64, window 128, batch 2 x 4,096
    tokens) times the forward and backward; at the chip's attention rates that time is the
    work of (t_fwd + t_bwd) / (2 T a (d_qk + d_v) (1/(P f) + 2.5/(P b))) keys per query: the
    catalog's floor, within its rounding to 100 keys. A changed attention rate fails here
    until the floor follows."""
    from trnlab import catalog
    from trnlab.catalog.params import load_chip_efficiency

    rates, peak = load_chip_efficiency().chips[chip], catalog.chip(chip).peak("bf16")
    work = 2 * (2 * 4096) * 128 * (64 + 64)  # configs/gpt_oss.py: 128 query heads of 64
    per_key = work * (1 / (peak * rates["attn_fwd"].si) + 2.5 / (peak * rates["attn_bwd"].si))
    assert rates["attn_window_keys"].si == pytest.approx((t_fwd + t_bwd) / per_key, abs=50)


def test_an_fp8_backward_computes_the_whole_matrix_of_a_windowed_layer_by_hand():
    """cuDNN 9.22's FP8 backward of a 128-token window takes as long as the unmasked backward
    (chip_efficiency.toml attn_fp8_window_span = 1): half the layers windowed at s = 4096 cost
    the backward (2048 + 4096) / 2 = 3072 keys per query where the forward costs the floor's
    (2048 + 1600) / 2 = 1824; a BF16 backward costs the forward's keys, and a model without
    windows is unchanged by the span."""
    assert float(attended_keys(4096.0, 128.0, 0.5, 128.0, 4096.0)) == 3072.0
    m = model_shape(WINDOWED)
    bf16 = replace(HW, attn_window_keys=1600.0)
    fp8 = replace(bf16, attn_window_bwd_span=1.0)
    d0 = CAL.gemm_half_dim
    rows = 4096 / (4096 + d0) * 1824.0 / (1824.0 + d0)  # the kernel's shape factor
    flops = 2 * 4096 * 1087.0 * 64 * 128  # the window's FLOPs (1087 keys without tiles)
    for hw, keys in ((bf16, 1824.0), (fp8, 3072.0)):
        f, t_fwd, t_bwd = _attention_times(m, 4096.0, 4096.0, 1.0, hw, CAL)
        assert float(f) == pytest.approx(flops, rel=1e-12)
        assert float(t_fwd) == pytest.approx(2 * 4096 * 1824.0 * 64 * 128
                                             / (HW.peak_attn * HW.attn_fwd_eff * rows), rel=1e-12)
        assert float(t_bwd) == pytest.approx(CAL.attention_backward_factor * 2 * 4096 * keys * 64
                                             * 128 / (HW.peak_attn * HW.attn_bwd_eff * rows),
                                             rel=1e-12)
    dense = shape()
    assert float(_attention_times(dense, 4096.0, 4096.0, 1.0, fp8, CAL)[2]) == pytest.approx(
        float(_attention_times(dense, 4096.0, 4096.0, 1.0, HW, CAL)[2]), rel=1e-12)


@pytest.mark.parametrize(("chip", "windowed", "unmasked"), [("gb200", 2.080e-3, 2.046e-3),
                                                            ("gb300", 1.871e-3, 1.871e-3)])
def test_the_fp8_window_span_is_the_benchmarks_windowed_over_unmasked_backward(chip, windowed,
                                                                               unmasked):
    """The cuDNN 9.22 benchmark's MXFP8 backward at 4,096 tokens: the 128-token window
    (128 heads of 64) against the unmasked llama3.1 shape of the same work (64 heads of 128).
    Their ratio is the share of the s x s matrix the windowed backward computes; it reaches
    the FP8 hardware only, not BF16 and not a chip without the measurement."""
    from trnlab.catalog.params import load_chip_efficiency

    span = load_chip_efficiency().chips[chip]["attn_fp8_window_span"].si
    assert span == pytest.approx(windowed / unmasked, abs=0.05)
    system = {"gb200": "gb200-nvl72", "gb300": "gb300-nvl72"}[chip]
    assert hardware(chip, system, "fp8", training=True,
                    attention_precision="fp8").attn_window_bwd_span == span
    assert hardware(chip, system, "fp8", training=True).attn_window_bwd_span == 0.0
    assert hardware("h100-sxm", "dgx-h100", "fp8", training=True,
                    attention_precision="fp8").attn_window_bwd_span == 0.0


def test_maxtext_tiles_attention_by_512_and_a_recipe_by_its_sa_block_kv(tmp_path):
    """MaxText's splash attention tiles keys by sa_block_kv (512 in base.yml, data/perf/stacks.toml);
    a case whose recipe sets sa_block_kv 1024 runs that tile; the default stack FlashAttention's
    128. A negative tile in a stacks file is refused with its name."""
    stacks = load_stacks()
    assert stacks["maxtext"].attention_block == 512
    assert with_stack(load_training(), stacks["maxtext"]).fields["attention_block"].si == 512.0
    assert with_stack(load_training(), stacks["default"]).fields["attention_block"].si == 128.0
    assert _SA_BLOCK.search("splash attention, sa_block_q 1024, sa_block_kv 1024)").group(1) \
        == "1024"
    assert _SA_BLOCK.search("local_sa_block_kv_dkv 4096") is None
    with pytest.raises(CatalogError, match="attention_block"):
        load_stacks(stacks_file(tmp_path, "attention_block = -128"))


def test_a_window_without_a_span_or_wider_than_the_model_is_refused():
    with pytest.raises(ParameterError, match="window_layers"):
        replace(WINDOWED, window_layers=37)
    with pytest.raises(ParameterError, match="window_layers"):
        replace(WINDOWED, sliding_window=0)
    with pytest.raises(ParameterError, match="sliding_window"):
        replace(WINDOWED, sliding_window=-1)
    assert model("gpt-oss-120b").windowed_layers == 18


# ------------------------------------------------------------------ per-chip inputs
def test_per_chip_gemm_efficiency_and_attention_rates_come_from_the_chip_file():
    from trnlab.catalog.params import load_chip_efficiency
    from trnlab.engine.hardware import chip_gemm_eff, chip_inputs_band

    ce, params = load_chip_efficiency(), load_training()
    nvidia = params.gemm_eff["nvidia"].si
    rate = {c: ce.chips[c]["gemm"].si for c in ("h100-sxm", "a100-sxm-80gb", "mi300x",
                                                  "mi325x", "mi355x")}
    assert ce.reference["nvidia"] == "h100-sxm"
    assert chip_gemm_eff("h100-sxm", params) == pytest.approx(nvidia, rel=1e-12)
    # A100: the vendor's fitted value x 0.869 / 0.803 (its microbenchmark over H100's)
    assert chip_gemm_eff("a100-sxm-80gb", params) == pytest.approx(
        nvidia * rate["a100-sxm-80gb"] / rate["h100-sxm"], rel=1e-12)
    # AMD is fitted on its reference MI325X; MI355X x 0.622 / 0.600 (its microbenchmark ratio)
    amd = params.gemm_eff["amd"].si
    assert ce.reference["amd"] == "mi325x"
    assert chip_gemm_eff("mi325x", params) == pytest.approx(amd, rel=1e-12)
    assert chip_gemm_eff("mi355x", params) == pytest.approx(
        amd * rate["mi355x"] / rate["mi325x"], rel=1e-12)
    # FP8: the chips' FP8 microbenchmark ratio (B200 76.3% of its FP8 peak, H100 70.9%) x the
    # FP8 factor fitted on the reference
    fp8 = params.fields["fp8_gemm_factor"].si
    assert (ce.chips["b200"]["gemm_fp8"].si, ce.chips["h100-sxm"]["gemm_fp8"].si) == (0.763, 0.709)
    assert chip_gemm_eff("b200", params, "fp8") == pytest.approx(nvidia * 0.763 / 0.709 * fp8,
                                                                 rel=1e-12)
    assert hardware("b200", "dgx-b200", "mxfp8", params).gemm_eff == pytest.approx(
        nvidia * 0.763 / 0.709 * fp8, rel=1e-12)
    # a chip without an FP8 measurement: its BF16 fraction x the reference's FP8/BF16 ratio
    # (0.709 / 0.803), over the reference's 0.709: its BF16 ratio again
    assert "gemm_fp8" not in ce.chips["a100-sxm-80gb"]
    assert chip_gemm_eff("a100-sxm-80gb", params, "fp8") == pytest.approx(
        nvidia * rate["a100-sxm-80gb"] / rate["h100-sxm"] * fp8, rel=1e-12)
    # a projected chip's band is the range of the GEMM rate of the case's precision
    assert chip_inputs_band("gb300", "mxfp8")["gemm"] == (0.756, 0.671, 0.786)
    assert chip_inputs_band("gb300")["gemm"] == (0.756, 0.708, 0.786)
    assert "gemm" not in chip_inputs_band("b200", "fp8")  # measured: no band
    hw = hardware("a100-sxm-80gb", "dgx-a100", "bf16", params)
    assert (hw.attn_fwd_eff, hw.attn_bwd_eff) == (ce.chips["a100-sxm-80gb"]["attn_fwd"].si,
                                                  ce.chips["a100-sxm-80gb"]["attn_bwd"].si)


@pytest.mark.parametrize("rate", ["gemm", "gemm_fp8"])
def test_gb300_gemm_rate_is_gb200s_at_its_power_limit_by_the_b200_gb200_elasticity(rate):
    """GB300 has no microbenchmark: its GEMM rate is GB200's TFLOP/s at 1,400 W instead of
    1,200 W, by the elasticity of the rate to the power limit that the same die shows between
    HGX B200 (1,000 W) and GB200 (1,200 W): T = T_gb200 (1400/1200)^e, e = ln(T_gb200/T_b200) /
    ln(1200/1000) (BF16: 1,822.0 / 1,745.0 -> e = 0.237, 1,890 TFLOP/s = 0.756 of 2,500).
    The test recomputes it from the catalog, so a changed B200 or GB200 rate, peak or power
    limit fails until GB300's derived value follows; the law must also hold for HGX B300
    (1,100 W) within 6%."""
    from trnlab import catalog
    from trnlab.catalog.params import load_chip_efficiency

    ce, precision = load_chip_efficiency(), {"gemm": "bf16", "gemm_fp8": "fp8"}[rate]
    chips = {c: catalog.chip(c) for c in ("b200", "gb200", "b300", "gb300")}
    tflops = {c: ce.chips[c][rate].si * chip.peak(precision) for c, chip in chips.items()}
    watts = {c: chip.tdp for c, chip in chips.items()}
    e = math.log(tflops["gb200"] / tflops["b200"]) / math.log(watts["gb200"] / watts["b200"])
    assert 0.2 < e < 0.3  # far below 1: the GEMM clock is not simply power-limited
    gb300 = tflops["gb200"] * (watts["gb300"] / watts["gb200"]) ** e
    assert tflops["gb300"] == pytest.approx(gb300, rel=2e-3)
    b300 = tflops["b200"] * (watts["b300"] / watts["b200"]) ** e
    assert b300 == pytest.approx(tflops["b300"], rel=0.06)


def test_a_chip_rate_outside_0_1_is_refused_with_its_name(tmp_path):
    """An FP8 GEMM fraction of 1.763 (a typo for 0.763) stops the load with one line naming the
    chip, the field, the value and what is allowed."""
    from trnlab._paths import data_dir
    from trnlab.catalog.params import load_chip_efficiency

    text = (data_dir() / "perf" / "chip_efficiency.toml").read_text()
    bad = tmp_path / "chip_efficiency.toml"
    bad.write_text(text.replace("gemm_fp8 = { value = 0.763", "gemm_fp8 = { value = 1.763", 1))
    with pytest.raises(CatalogError, match=r"\[chip\.b200\]: gemm_fp8 = 1\.763: a fraction in "
                                           r"\(0, 1\]"):
        load_chip_efficiency(bad)


def test_a_power_cap_lowers_the_clock_of_the_compute_peaks_by_hand():
    """H100 SXM (700 W) capped at 500 W: a load draws 0.27 + (0.92 - 0.27) (f/f0)^3 of TDP
    (power.toml: cap_static_fraction, uncapped_draw, clock_exponent), so the clock held is
    ((500/700 - 0.27) / 0.65)^(1/3) = 0.68352^(1/3) = 0.88088; a cap of 650 W, above the
    uncapped draw of 644 W, does not bind; memory and links keep theirs."""
    from trnlab.engine.hardware import clock_fraction

    free = hardware("h100-sxm", "dgx-h100")
    capped = hardware("h100-sxm", "dgx-h100", power_cap_w=500.0)
    clock = ((500 / 700 - 0.27) / (0.92 - 0.27)) ** (1 / 3)
    assert clock == pytest.approx(0.88088, abs=1e-5)
    assert capped.clock == pytest.approx(clock, rel=1e-12)
    assert clock_fraction("h100-sxm", 650.0) == 1.0
    assert capped.peak_gemm == pytest.approx(free.peak_gemm * clock, rel=1e-12)
    assert capped.peak_attn == pytest.approx(free.peak_attn * clock, rel=1e-12)
    assert capped.hbm_bw == free.hbm_bw and capped.up_bw == free.up_bw


def test_a_4bit_training_recipe_keeps_its_bf16_share_by_hand():
    """GB200 (10 PF NVFP4, 2.5 PF BF16 dense), 16% of the GEMM work in BF16, narrow factor k:
    1/P = 0.84/10 PF + 0.16 k/2.5 PF; at k = 0.87 P = 7.159 PF. Serving keeps the FP4 peak."""
    from trnlab import catalog

    chip = catalog.chip("gb200")
    params = load_training().replace(fp8_gemm_factor=0.87, fp4_recipe_bf16_fraction=0.16)
    train = hardware("gb200", "gb200-nvl72", "nvfp4", params, training=True)
    serve = hardware("gb200", "gb200-nvl72", "nvfp4", params)
    by_hand = 1 / (0.84 / chip.peak("nvfp4") + 0.16 * 0.87 / chip.peak("bf16"))
    assert chip.peak("nvfp4") == pytest.approx(4 * chip.peak("bf16"))
    assert train.peak_gemm == pytest.approx(by_hand, rel=1e-12)
    assert by_hand == pytest.approx(0.7159 * chip.peak("nvfp4"), rel=1e-3)
    assert serve.peak_gemm == chip.peak("nvfp4")
    fp8 = hardware("gb200", "gb200-nvl72", "fp8", params, training=True)
    assert fp8.peak_gemm == chip.peak("fp8")  # the recipe concerns 4-bit formats only
    all_fp4 = load_training().replace(fp4_recipe_bf16_fraction=0.0)
    assert hardware("gb200", "gb200-nvl72", "nvfp4", all_fp4,
                    training=True).peak_gemm == pytest.approx(chip.peak("nvfp4"))


def test_a_framework_stack_sets_overlap_reshard_and_attention():
    from trnlab.catalog.params import load_stacks
    from trnlab.engine.hardware import with_stack

    params, stacks = load_training(), load_stacks()
    old = with_stack(params, stacks["megatron2021"])
    assert old.fields["layer_comm_overlap"].si == 0.0  # no TP overlap in 2021
    assert old.fields["fused_attention"].si == 0.0  # materialised scores
    titan = with_stack(params, stacks["torchtitan"])
    assert titan.fields["zero3_regather_per_microbatch"].si == 1.0  # FSDP2 reshards
    assert titan.fields["fused_attention"].si == 1.0
    assert with_stack(params, stacks["default"]) is params
    # torchtitan's async TP, turned on by a case, hides the forward passes' collectives only;
    # Megatron's userbuffers every pass
    async_tp = with_stack(params, replace(stacks["torchtitan"], tp_overlap=True))
    assert async_tp.fields["tp_overlap_backward"].si == 0.0
    assert async_tp.fields["layer_comm_overlap"].si == params.fields["layer_comm_overlap"].si
    assert with_stack(params, stacks["megatron"]).fields["tp_overlap_backward"].si == 1.0
    # NeMo AutoModel: FSDP2 as torchtitan, Transformer Engine's fused norm, no checkpointing
    # unless a config turns it on
    auto = stacks["automodel"]
    assert (auto.fsdp_reshard, auto.eager, auto.recompute, auto.tp_overlap) == (
        "microbatch", ("rope", "act"), "none", False)


def test_eager_pytorch_moves_the_unfused_bytes_of_norm_rope_and_swiglu_by_hand():
    """Llama 3 8B (h 4096, q 4096 + k 1024 RoPE'd, SwiGLU ffn 14336), forward elements per
    token per layer, fused: two norms 2 x 2h, RoPE 2 x 1.25h, two residuals 2 x 3h, SwiGLU
    2 x 3.5h + 3.5h = 10.5h: 23h. Eager (torchtitan's modules, bf16 with fp32 upcasts):
    RMSNorm 36 B per element = 18 elements (9x), RoPE 20 B = 10 (5x), SwiGLU 10 B per output
    element (5/3x): 2 x 18h + 12.5h + 6h + 17.5h = 72h; a fused RMSNorm kernel: 40h.
    A LayerNorm model with a plain GELU (F.layer_norm, one kernel each) keeps only RoPE's."""
    from trnlab.workloads.traffic import EAGER_TRAFFIC, elementwise_traffic

    spec, h = model("llama3-8b"), 4096
    every = frozenset(EAGER_TRAFFIC)
    assert elementwise_traffic(spec) == 23 * h
    assert elementwise_traffic(spec, "dense", every) == pytest.approx(72 * h, rel=1e-12)
    assert elementwise_traffic(spec, "dense", every - {"norm"}) == pytest.approx(40 * h,
                                                                                 rel=1e-12)
    gpt = replace(spec, norm="layernorm", gated_mlp=False)
    fused_gpt = elementwise_traffic(gpt)
    assert elementwise_traffic(gpt, "dense", every) == pytest.approx(
        fused_gpt + (5 - 1) * 2 * 1.25 * h, rel=1e-12)
    with pytest.raises(ParameterError, match="eager"):
        elementwise_traffic(spec, "dense", frozenset({"softmax"}))
    eager = model_shape(spec, "attention", every)
    assert eager.elem_traffic_dense == pytest.approx(72 * h, rel=1e-12)
    assert model_shape(spec).elem_traffic_dense == 23 * h


def _unfused_growth(spec, precision: str, kinds: frozenset[str], extra_elems: float
                    ) -> tuple[float, float]:
    """One H100, one micro-batch of 4096 tokens, no recompute: (how much the step's compute
    grows when ``kinds`` run unfused [s], the memory time of ``extra_elems`` more activation
    elements per token and layer, forward plus backward_memory_factor times it backward [s])."""
    from trnlab.engine.training import evaluate

    hw = hardware("h100-sxm", "dgx-h100", precision, load_training(), training=True)
    one = {"tp": 1, "pp": 1, "dp": 1, "cp": 1, "ep": 1, "vpp": 1, "micro_batch": 1, "zero": 1,
           "recompute": 0}
    cfg = {k: np.array([v]) for k, v in one.items()}
    fused = evaluate(spec, hw, cfg, 1, 4096, selective="attention")
    unfused = evaluate(spec, hw, cfg, 1, 4096, selective="attention", eager=kinds)
    cal = train_calibration(load_training())
    extra = extra_elems * cal.activation_bytes * 4096 * spec.layers
    want = extra / (hw.hbm_bw * cal.mem_eff) * (1 + cal.backward_memory_factor)
    return float(unfused["t_compute"][0] - fused["t_compute"][0]), want


def test_the_unfused_bytes_reach_the_step_as_memory_time():
    """One chip, one micro-batch, no recompute: the step grows by the extra bytes' memory time
    in the forward and backward_memory_factor times it in the backward."""
    got, want = _unfused_growth(model("llama3-8b"), "bf16", frozenset({"norm", "rope", "act"}),
                                (72 - 23) * 4096)
    assert got == pytest.approx(want, rel=1e-6)


def test_a_compiled_case_runs_fused_and_a_fused_rmsnorm_case_fuses_the_norm():
    from trnlab.calibration.validate import eager_kinds
    from trnlab.catalog.params import EAGER_KINDS, load_stacks
    from trnlab.workloads.traffic import EAGER_TRAFFIC

    assert set(EAGER_KINDS) == set(EAGER_TRAFFIC)
    titan = load_stacks()["torchtitan"]
    assert set(titan.eager) == {"norm", "rope", "act"}  # training.compile = false by default
    assert load_stacks()["megatron"].eager == ()
    row = {"metric_note": "", "notes": "Verbatim row: | FSDP | 5762 |; eager"}
    assert eager_kinds(row, titan) == {"norm", "rope", "act"}
    row["notes"] = "Verbatim row: | FSDP + torch.compile | 6667 |"
    assert eager_kinds(row, titan) == frozenset()
    row["notes"] = "norm_type = 'fused_rmsnorm' and compile = false (eager PyTorch)"
    assert eager_kinds(row, titan) == {"rope", "act"}
    assert eager_kinds(row, titan, "fp8") == {"rope", "act", "fp8_cast"}
    row["notes"] = "Verbatim row: | FSDP + torch.compile | 6667 |"
    assert eager_kinds(row, titan, "mxfp8") == {"fp8_cast"}  # compiled, the casts stay
    assert eager_kinds(row, titan, "nvfp4") == frozenset()  # no 8-bit casts
    assert eager_kinds(row, load_stacks()["megatron"], "fp8") == frozenset()  # fused in TE


def test_a_stack_with_an_unknown_eager_kind_is_refused(tmp_path):
    with pytest.raises(CatalogError, match="eager.*softmax"):
        load_stacks(stacks_file(tmp_path, 'eager = ["softmax"]'))
    with pytest.raises(CatalogError, match="fp8_cast = 'yes': true or false"):
        load_stacks(stacks_file(tmp_path, 'fp8_cast = "yes"'))


# ------------------------------------------------------------------ attention in FP8
def test_fp8_attention_runs_at_the_fp8_peak_times_the_flashattention3_ratio():
    """H100: BF16 attention at 989.4 TFLOP/s; FP8 attention (fp8_dot_product_attention) at the
    FP8 peak 1,978.9 x fp8_attention_factor 0.81 = 1,602.9 TFLOP/s (FlashAttention-3: 740 of
    989 in BF16, ~1,200 of 1,979 in FP8). GEMMs and everything else unchanged."""
    assert load_training().fields["fp8_attention_factor"].si == 0.81
    bf16 = hardware("h100-sxm", "dgx-h100", "fp8", training=True)
    fp8 = hardware("h100-sxm", "dgx-h100", "fp8", training=True, attention_precision="fp8")
    assert bf16.peak_attn == pytest.approx(989.4e12, rel=1e-12)
    assert fp8.peak_attn == pytest.approx(1978.9e12 * 0.81, rel=1e-12)
    assert replace(fp8, peak_attn=bf16.peak_attn) == bf16
    capped = hardware("h100-sxm", "dgx-h100", "fp8", training=True, attention_precision="fp8",
                      power_cap_w=500.0)
    assert capped.peak_attn == pytest.approx(fp8.peak_attn * capped.clock, rel=1e-12)


def test_fp8_attention_is_refused_on_a_chip_without_an_fp8_rate():
    with pytest.raises(ParameterError, match="attention_precision.*allowed on a100-sxm-80gb: bf16"):
        hardware("a100-sxm-80gb", "dgx-a100", "bf16", training=True, attention_precision="fp8")
    with pytest.raises(ParameterError, match="attention_precision.*'int8'"):
        hardware("h100-sxm", "dgx-h100", "bf16", training=True, attention_precision="int8")


def test_an_hbm_bound_decode_draws_what_the_h200_measurement_shows_by_hand():
    """Decode with HBM saturated (compute share 0, memory share 1) on a 700 W H200: idle 0.2 +
    0.8 x memory_weight 0.3 = 0.44 of TDP = 308 W, at the top of the 137-300 W measured across
    four attention types (Ma et al. 2026, arXiv 2605.11999); tensor-bound work draws TDP."""
    from trnlab.catalog.params import load_economics
    from trnlab.perf import power

    p = load_economics().power
    assert (p["idle_fraction"].si, p["memory_weight"].si) == (0.2, 0.3)
    decode = float(power.chip_power(700.0, 0.2, 0.0, 1.0, p["memory_weight"].si))
    assert decode == pytest.approx(700 * (0.2 + 0.8 * 0.3), rel=1e-12)
    assert 137.0 < decode < 1.05 * 300.0
    assert float(power.chip_power(700.0, 0.2, 1.0, 0.0, p["memory_weight"].si)) == 700.0


# ------------------------------------------------------------------ FP8 casts (torchao)
def test_separate_fp8_casts_move_one_and_a_half_elements_per_gemm_input_by_hand():
    """torchao Float8Linear under torch.compile: each distinct GEMM input (Llama 3 8B: the
    normed x for Q/K/V, the attention output, the normed x for gate/up, the SwiGLU output:
    3h + ffn = 26,624 per token) is cast by a kernel of its own, R2 W1 = 1.5 elements of 2 B;
    the step grows by that memory time, forward and backward (backward_memory_factor)."""
    from trnlab.workloads.traffic import (
        FP8_CAST,
        FP8_CAST_TRAFFIC,
        elementwise_traffic,
        fp8_cast_elements,
    )

    spec, h = model("llama3-8b"), 4096
    assert FP8_CAST_TRAFFIC == 1.5
    assert fp8_cast_elements(spec) == 3 * h + 14336
    casts = frozenset({FP8_CAST})
    assert elementwise_traffic(spec, "dense", casts) == pytest.approx(
        23 * h + 1.5 * (3 * h + 14336), rel=1e-12)
    moe = model("mixtral-8x7b")  # routed experts: top-2 copies of h in, 2 x ffn out
    assert fp8_cast_elements(moe, "moe") == pytest.approx(
        2 * moe.hidden + 2 * moe.hidden + 2 * moe.moe_ffn, rel=1e-12)
    got, want = _unfused_growth(spec, "fp8", casts, 1.5 * (3 * h + 14336))
    assert got == pytest.approx(want, rel=1e-6)


def test_torchtitan_fp8_cases_cast_separately_and_transformer_engine_ones_do_not():
    from trnlab._paths import data_dir
    from trnlab.calibration import validate
    from trnlab.catalog.params import load_stacks

    stacks = load_stacks()
    assert stacks["torchtitan"].fp8_cast and not stacks["megatron"].fp8_cast
    rows = {r["case_id"]: r for r in validate.read_cases(
        data_dir() / "measurements" / "cases.csv")}
    preds = {p.case_id: p for p in validate.predict(
        [rows["T-TTAN-H100-8B-G8-FP8"], rows["T-TTAN-H100-8B-G8-COMPILE"],
         rows["T-MCORE-H100-06"]])}
    assert "FP8 GEMM inputs cast by kernels of their own" in preds["T-TTAN-H100-8B-G8-FP8"].why
    for bf16_or_te in ("T-TTAN-H100-8B-G8-COMPILE", "T-MCORE-H100-06"):
        assert "cast by kernels of their own" not in preds[bf16_or_te].why


def test_the_clock_law_follows_the_measured_h100_under_power_caps():
    """Ujeniya et al. 2026 (H100, caps 200-700 W): the SM clock falls to 0.959, 0.879, 0.762,
    0.575, 0.317 of its 700 W value; Mayr et al. 2026 (Llama 3 8B pre-training on 4 H100):
    tokens/s to 0.966, 0.915, 0.821, 0.594, 0.320 (power.toml [measured.h100-caps]). The law's
    clock and the model's step follow both within 0.06 (the memory-bound share keeps the step
    above the clock at mild caps); the f^3 law at idle 0.2 and full TDP had read 0.50 at
    200 W."""
    from trnlab.catalog.params import load_power_cap_measurements
    from trnlab.engine import training
    from trnlab.engine.hardware import clock_fraction

    m = load_power_cap_measurements()["h100-caps"]
    assert m["cap_w"] == [200, 300, 400, 500, 600, 700]
    assert m["llm_training_speed"][0] == 0.320 and m["sm_clock"][0] == 0.317
    for cap, clock in zip(m["cap_w"], m["sm_clock"], strict=True):
        assert clock_fraction("h100-sxm", float(cap)) == pytest.approx(clock, abs=0.06), cap
    speed = [float(training.search("llama3-8b", "dgx-h100", 4, seq_len=4096, global_batch=64,
                                   top=1, power_cap_w=float(cap))["tokens_per_s_per_chip"][0])
             for cap in m["cap_w"]]
    for s_cap, measured in zip(speed, m["llm_training_speed"], strict=True):
        assert s_cap / speed[-1] == pytest.approx(measured, abs=0.06)


def test_a_measured_cap_table_with_a_bad_ratio_or_source_is_refused(tmp_path):
    from trnlab.catalog.params import load_power_cap_measurements

    (tmp_path / "perf").mkdir()
    good = ('[measured.x]\ncap_w = [300, 700]\nsm_clock = [0.5, 1.0]\n'
            'sm_clock_source = "UJENIYA-H100CAP"\nllm_training_speed = [0.5, 1.0]\n'
            'llm_training_speed_source = "MAYR-AIBENCH"\n')
    (tmp_path / "perf" / "power.toml").write_text(good.replace("[0.5, 1.0]\nsm", "[1.5, 1.0]\nsm")
                                                  .replace("sm_clock = [0.5", "sm_clock = [1.5"))
    with pytest.raises(CatalogError, match="sm_clock = \\[1.5, 1.0\\]: 2 ratios in"):
        load_power_cap_measurements(str(tmp_path))
    (tmp_path / "perf" / "power.toml").write_text(good.replace('"MAYR-AIBENCH"', '"NOPE"'))
    with pytest.raises(CatalogError, match="llm_training_speed_source = 'NOPE'"):
        load_power_cap_measurements(str(tmp_path / "."))
