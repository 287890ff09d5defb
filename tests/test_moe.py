"""The MoE terms of the training step (trnlab/perf/moe.py), checked against configurations
worked by hand: a two-expert MoE layer (grouped GEMM, all-to-all bytes and time, fixed cost),
top-k routing bytes, de-duplicated node-limited dispatch, expert-parallel folding over
tp x dp x cp, and the constants of data/perf/moe.toml."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from trnlab._paths import data_dir
from trnlab.calibration import validate
from trnlab.catalog.params import MOE_CALIBRATION, load_moe, load_moe_stacks, load_training
from trnlab.engine.hardware import moe_calibration, train_calibration
from trnlab.engine.layouts import REASONS, reason_codes
from trnlab.engine.shape import model_shape
from trnlab.errors import ParameterError
from trnlab.perf import moe
from trnlab.perf.train import Hardware, Layout, operator_terms, step_terms, train_step
from trnlab.workloads import TransformerSpec

# ------------------------------------------------------------------ a hand-sized configuration
H, F, E, K = 256, 512, 2, 1  # hidden, expert width, experts, top-k
SPEC = TransformerSpec(name="moe2", layers=1, hidden=H, heads=4, kv_heads=4, vocab=512,
                       gated_mlp=True, moe_experts=E, moe_active=K, moe_ffn=F)
PEAK, EFF, HBM, MEM_EFF, D0 = 1e15, 0.5, 4e12, 0.8, 128.0
UP_BW, UP_LAT, OUT_BW, OUT_LAT = 400e9, 2e-6, 40e9, 10e-6
#: the MoE constants of the hand configuration (not data/, which may change)
MOE = moe.MoECalibration(ep_overlap=0.25, a2a_dedup=0.0, node_limit=0.0, dispatch_bytes=2.0,
                         combine_bytes=2.0, load_imbalance=1.0, permute_copies=8.0,
                         router_traffic=16.0, moe_layer_overhead=50e-6, einsum_dispatch=0.0,
                         einsum_backward=1.5, group_tile=0.0, consecutive_routing=0.0,
                         expert_tp=1.0)


def _hw(domain: float = 8.0, gemm_bytes: float = 2.0) -> Hardware:
    """The hand chip; fields the core may add later (per-chip attention rates) get 0.5."""
    given = {"peak_gemm": PEAK, "peak_attn": PEAK, "gemm_eff": EFF, "gemm_bytes": gemm_bytes,
             "hbm_bw": HBM, "hbm_capacity": 80e9, "up_bw": UP_BW, "up_latency": UP_LAT,
             "domain": domain, "out_bw": OUT_BW, "out_latency": OUT_LAT}
    names = {f.name for f in dataclasses.fields(Hardware)
             if f.default is dataclasses.MISSING}
    return Hardware(**given, **{n: 0.5 for n in names - set(given)})


def _cal(**moe_values: float):
    return dataclasses.replace(train_calibration(), gemm_half_dim=D0, mem_eff=MEM_EFF,
                               moe=dataclasses.replace(MOE, **moe_values))


def _layout(tp: float = 1.0, dp: float = 2.0, ep: float = 2.0, recompute: float = 0.0
            ) -> Layout:
    return Layout(tp=tp, pp=1.0, dp=dp, cp=1.0, ep=ep, vpp=1.0, zero=1.0, recompute=recompute,
                  micro_batch=1.0, global_batch=8.0, seq_len=1024.0)


def _shape(m: float, n: float, k: float) -> float:
    return (m / (m + D0)) * (n / (n + D0)) * (k / (k + D0))


def _gemm(m: float, n: float, k: float, b: float = 2.0) -> float:
    """One GEMM on the roofline, by hand [s]."""
    return max(2 * m * n * k / (PEAK * EFF * _shape(m, n, k)),
               b * (m * k + k * n + m * n) / (HBM * MEM_EFF))


# ------------------------------------------------------------------ grouped GEMM
@pytest.mark.parametrize(("ep", "tp"), [(2.0, 1.0), (1.0, 1.0), (2.0, 2.0)])
def test_two_expert_grouped_gemm_by_hand(ep, tp):
    """T = 1024 tokens per chip, tp splits them (sequence parallelism, expert-TP 1): each
    local expert gets rows = (T/tp) k ep / E; the chip runs E/ep of them, unsplit by TP."""
    got = operator_terms(model_shape(SPEC), _hw(), _layout(tp=tp, ep=ep), _cal())
    rows = 1024 / tp * K * ep / E  # ep=2, tp=1: 1024; ep=1: 512; ep=2, tp=2: 512
    local = E / ep
    up_flops, up_time = got["expert_up"]
    assert up_time == pytest.approx(local * _gemm(rows, 2 * F, H), rel=1e-12)  # SwiGLU: 2F
    assert up_flops == pytest.approx(local * 2 * rows * 2 * F * H, rel=1e-12)
    down_time = got["expert_down"][1]
    assert down_time == pytest.approx(local * _gemm(rows, H, F), rel=1e-12)


def test_load_imbalance_pads_the_busiest_rank():
    """Capacity factor 1.25: the busiest rank's experts get 1.25 x the mean rows."""
    got = operator_terms(model_shape(SPEC), _hw(), _layout(), _cal(load_imbalance=1.25))
    assert got["expert_down"][1] == pytest.approx(_gemm(1280.0, H, F), rel=1e-12)


def test_grouped_gemm_efficiency_falls_with_fewer_tokens_per_expert():
    rows = np.array([16.0, 64.0, 256.0, 1024.0, 4096.0])
    eff = moe.grouped_gemm_efficiency(rows, 2048.0, 7168.0, 0.7, 128.0)
    assert np.all(np.diff(eff) > 0)
    assert eff[0] < 0.15 * 0.7 and eff[-1] > 0.9 * 0.7 * _shape(1e9, 2048, 7168)
    # fine-grained (E = 256, k = 8, DeepSeek-V3) against coarse (E = 8, k = 2, Mixtral) at the
    # same 4096 tokens x ep 8: 4096 x 8 x 8 / 256 = 1024 against 4096 x 2 x 8 / 8 = 8192 rows
    fine = moe.expert_rows(4096.0, 8.0, 256.0, 8.0, 1.0)
    coarse = moe.expert_rows(4096.0, 2.0, 8.0, 8.0, 1.0)
    assert (fine, coarse) == (1024.0, 8192.0)
    assert moe.grouped_gemm_efficiency(fine, 2048.0, 7168.0, 0.7, 128.0) < \
        moe.grouped_gemm_efficiency(coarse, 14336.0, 4096.0, 0.7, 128.0)


# ------------------------------------------------------------------ all-to-all
def test_two_expert_all_to_all_inside_a_domain_by_hand():
    """ep = 2 in one 8-chip domain: half of each token's k = 1 copies go to the peer over
    scale-up. Per MoE layer: dispatch + combine forward, two gradient all-to-alls backward,
    4 x (T h b / 2 / up_bw + alpha_up); exposed (1 - ep_overlap) of it, per micro-batch."""
    lay, cal = _layout(), _cal()
    one = 1024 * H * 2.0 * 0.5 / UP_BW + 1 * UP_LAT  # 1 peer message
    per_mb = 4 * one
    n_mb = 8 / 2  # global batch / (dp x micro-batch)
    out = train_step(model_shape(SPEC), _hw(), lay, cal, outputs=("t_ep",))
    assert float(out["t_ep"]) == pytest.approx(n_mb * 0.75 * per_mb, rel=1e-12)
    # full recompute dispatches the forward again: 6 all-to-alls
    out = train_step(model_shape(SPEC), _hw(), _layout(recompute=2.0), cal, outputs=("t_ep",))
    assert float(out["t_ep"]) == pytest.approx(n_mb * 0.75 * 6 * one, rel=1e-12)


def test_two_expert_all_to_all_across_domains_and_fp8_dispatch_by_hand():
    """Each chip its own domain (domain = 1): the peer's copies go over the NIC; an FP8
    dispatch (1 + 4/128 B) shrinks the forward dispatch only (combine and gradients BF16).
    No overlap: the four all-to-alls of each of the 4 micro-batches are all exposed."""
    t = 1024 * H * 0.5  # elements sent per all-to-all
    bf16 = t * 2.0 / OUT_BW + 1 * OUT_LAT
    fp8 = t * (1 + 4 / 128) / OUT_BW + 1 * OUT_LAT
    for cal, per_mb in ((_cal(ep_overlap=0.0), 4 * bf16),
                        (_cal(ep_overlap=0.0, dispatch_bytes=1 + 4 / 128), fp8 + 3 * bf16)):
        out = train_step(model_shape(SPEC), _hw(domain=1.0), _layout(), cal,
                         outputs=("t_ep",))
        assert float(out["t_ep"]) == pytest.approx(4 * per_mb, rel=1e-12)
    parts = moe.layer_all_to_all_parts(1024.0, H, 1.0, 2.0, 1.0, UP_BW, UP_LAT, OUT_BW, OUT_LAT,
                                       _cal(dispatch_bytes=1 + 4 / 128).moe, 0.0, E)
    assert [float(x) for x in parts] == pytest.approx([fp8, bf16, bf16, bf16], rel=1e-12)
    # the time of one all-to-all: both tiers at once, the slower sets it
    assert moe.all_to_all_time(4.0, 2.0, 1.0, 100.0, 4.0, 2.0, 1e3, 0.0, 1e2, 0.0) == \
        pytest.approx(max(100 * 4 * 2 / 1e3 + 0.0, 100 * 4 * 1 / 1e2 + 0.0))
    # latency: a message to each of the n_in - 1 = 7 peers and the 32/8 - 1 = 3 other domains
    assert moe.all_to_all_time(0.0, 0.0, 0.0, 1.0, 32.0, 8.0, 1.0, 1e-6, 1.0, 1e-5) == \
        pytest.approx(max(7e-6, 3e-5))


def test_top_k_routing_copies_by_hand():
    """Without de-duplication every (token, expert) pair is a copy: k (n_in - 1)/ep inside the
    domain, k (ep - n_in)/ep outside (ep = 32 over 4 domains of 8)."""
    for k in (1.0, 2.0, 8.0):
        inside, outside = moe.dispatch_copies(k, 32.0, 8.0, 0.0, 0.0)
        assert (inside, outside) == (k * 7 / 32, k * 24 / 32)


def test_deduplicated_node_limited_dispatch_by_hand():
    """De-duplicated (DeepEP / DeepSeek-V3): a token crosses the scale-out network once per
    remote domain it targets. k = 8 over D = 4 domains: 4 (1 - (3/4)^8) = 3.5995 distinct
    domains, 3/4 of them remote = 2.6997 copies (against 6 without); node-limited to M = 2
    domains: 2 x 3/4 = 1.5. Inside the destination domain the copies are forwarded:
    8 x 7/8 = 7 per token over scale-up."""
    inside, outside = moe.dispatch_copies(8.0, 32.0, 8.0, 1.0, 0.0)
    assert outside == pytest.approx(4 * (1 - 0.75**8) * 0.75, rel=1e-12)
    assert outside == pytest.approx(2.69966, rel=1e-5)
    assert inside == 7.0
    assert moe.dispatch_copies(8.0, 32.0, 8.0, 1.0, 2.0)[1] == pytest.approx(1.5)
    # one domain: nothing crosses the scale-out network either way
    assert moe.dispatch_copies(8.0, 8.0, 8.0, 1.0, 4.0)[1] == 0.0
    assert moe.dispatch_copies(8.0, 8.0, 8.0, 0.0, 0.0)[1] == 0.0


def test_consecutive_routing_by_hand():
    """NeMo AutoModel's balanced gate gives token i the experts 8i ... 8i + 7 (mod E). DeepSeek-V3
    (E = 256) over ep = 64 ranks in domains of 8: 4 experts per rank, so the 8 experts sit on 2
    neighbouring ranks of one domain: 1 distinct domain, 7/8 of the time remote = 0.875
    scale-out copies per token, against 8 (1 - (7/8)^8) x 7/8 = 4.59 under uniform routing.
    Inside the domain the copies go to their experts' ranks as before: 8 x 7/8 = 7. Kimi-K2
    (E = 384) over ep = 32 in 4 domains: 8 x 32 / 384 = 0.67 ranks -> 1 domain, 3/4 remote.
    Wide spans reach several domains: E = 64 over ep = 64: 8 ranks = 1 domain; E = 16 over
    ep = 64: 32 ranks = 4 domains of the 8, 4 x 7/8 = 3.5 (uniform: 4.59); the node limit still
    caps them (M = 2: 1.75). Without de-duplication the routing changes nothing."""
    inside, outside = moe.dispatch_copies(8.0, 64.0, 8.0, 1.0, 0.0, 256.0, 1.0)
    assert (inside, outside) == (7.0, 0.875)
    uniform = moe.dispatch_copies(8.0, 64.0, 8.0, 1.0, 0.0, 256.0, 0.0)[1]
    assert uniform == pytest.approx(8 * (1 - (7 / 8) ** 8) * 7 / 8, rel=1e-12)
    assert moe.dispatch_copies(8.0, 32.0, 8.0, 1.0, 0.0, 384.0, 1.0)[1] == 0.75
    assert moe.dispatch_copies(8.0, 64.0, 8.0, 1.0, 0.0, 64.0, 1.0)[1] == 0.875
    assert moe.dispatch_copies(8.0, 64.0, 8.0, 1.0, 0.0, 16.0, 1.0)[1] == 3.5
    assert moe.dispatch_copies(8.0, 64.0, 8.0, 1.0, 2.0, 16.0, 1.0)[1] == 1.75
    assert moe.dispatch_copies(8.0, 64.0, 8.0, 0.0, 0.0, 256.0, 1.0) == \
        moe.dispatch_copies(8.0, 64.0, 8.0, 0.0, 0.0, 256.0, 0.0)
    # no expert count: uniform routing, not a division by zero
    assert moe.dispatch_copies(8.0, 64.0, 8.0, 1.0, 0.0, 0.0, 1.0)[1] == uniform


# ------------------------------------------------------------------ fixed cost per MoE layer
def test_fixed_bytes_by_hand():
    """T = 1024 tokens, h = 256, f = 512, k = 1 of E = 2, BF16 (2 B):
    router 1024 x 2 x 16 B = 32768 B; permutations 8 x 1024 x 1 x 256 x 2 B = 4194304 B."""
    assert moe.fixed_bytes(1024.0, H, F, K, E, 2.0, 2.0, MOE) == 32768 + 4194304
    # FP8 GEMMs: the expert up input (h) and down input (f) of each routed token are cast,
    # read at 2 B and written at 1 B: 3 x 1024 x (256 + 512) = 2359296 B
    assert moe.fixed_bytes(1024.0, H, F, K, E, 2.0, 1.0, MOE) == 32768 + 4194304 + 2359296
    # FP8 dispatch: the tokens are cast once before the dispatch, 1024 x 256 x (2 + 1.03125) B,
    # and the up-projection's input arrives in FP8 already (only the down input is cast)
    fp8 = dataclasses.replace(MOE, dispatch_bytes=1.03125)
    assert moe.fixed_bytes(1024.0, H, F, K, E, 2.0, 1.0, fp8) == pytest.approx(
        32768 + 4194304 + 1024 * 256 * 3.03125 + 3 * 1024 * 512)
    # top-k: twice the routed copies, twice the permutation traffic
    assert moe.fixed_bytes(1024.0, H, F, 2, E, 2.0, 2.0, MOE) == 32768 + 2 * 4194304


def test_two_expert_fixed_cost_in_the_step_by_hand():
    """The MoE layer's fixed cost enters the micro-batch forward once, the backward
    backward_memory_factor times: (1 + bmf) x (bytes / (HBM mem_eff) + overhead)."""
    m, hw, lay = model_shape(SPEC), _hw(), _layout()
    with_fixed = step_terms(m, hw, lay, _cal())["mb_compute"]
    without = step_terms(m, hw, lay, _cal(permute_copies=0.0, router_traffic=0.0,
                                          moe_layer_overhead=0.0))["mb_compute"]
    bmf = train_calibration().backward_memory_factor
    fixed = (32768 + 4194304) / (HBM * MEM_EFF) + 50e-6
    assert float(with_fixed - without) == pytest.approx((1 + bmf) * fixed, rel=1e-9)


# ------------------------------------------------------------------ one-hot einsum dispatch
def test_einsum_dispatch_by_hand():
    """GShard / MaxText dense_matmul, Mixtral 8x7B's numbers: s = 4096 tokens per sequence,
    top-2 at capacity factor 1.25, h = 4096: E C = 4096 x 2 x 1.25 = 10240 slots per sequence,
    4 x 10240 x 4096 = 167.8 MFLOP per token; one sequence = two masks of 4096 x 10240
    elements written at 2 B, then [10240, 4096] @ [4096, 4096] and [4096, 10240] @ [10240,
    4096]."""
    flops, t = moe.einsum_dispatch_time(4096.0, 4096.0, 4096.0, 2.0, 1.25, PEAK, EFF, D0, HBM,
                                        MEM_EFF, 2.0)
    assert flops / 4096 == 4 * 10240 * 4096 == pytest.approx(167.8e6, rel=1e-3)
    masks = 2 * 4096 * 10240 * 2.0 / (HBM * MEM_EFF)
    assert t == pytest.approx(masks + _gemm(10240, 4096, 4096) + _gemm(4096, 4096, 10240),
                              rel=1e-12)
    # two sequences of half the length: half the slots each, half the work per token
    f2, _ = moe.einsum_dispatch_time(4096.0, 2048.0, 4096.0, 2.0, 1.25, PEAK, EFF, D0, HBM,
                                     MEM_EFF, 2.0)
    assert f2 == pytest.approx(flops / 2, rel=1e-12)


def test_einsum_dispatch_in_the_step_by_hand():
    """The hand layer (T = 1024 tokens in one sequence, top-1 of 2 experts, factor 1.25) with
    the einsums on: the micro-batch gains their forward once, einsum_backward (1.5) times in the
    backward and once more per recomputed forward; nothing else moves."""
    m, hw = model_shape(SPEC), _hw()
    _, t = moe.einsum_dispatch_time(1024.0, 1024.0, H, K, 1.25, PEAK, EFF, D0, HBM, MEM_EFF,
                                    2.0)
    for recompute, passes in ((0.0, 2.5), (2.0, 3.5)):  # none; full: one more forward
        lay = _layout(recompute=recompute)
        off = step_terms(m, hw, lay, _cal(load_imbalance=1.25))["mb_compute"]
        on = step_terms(m, hw, lay, _cal(load_imbalance=1.25, einsum_dispatch=1.0))
        assert float(on["mb_compute"] - off) == pytest.approx(passes * t, rel=1e-9)


def test_capacity_padding_without_expert_parallelism_by_hand():
    """ep = 1: the chip runs every expert, so a dropless stack's imbalance changes nothing (the
    experts see the T k / E routed rows each), while GShard's capacity-padded buffers make each
    expert's GEMM 1.25 x those rows (T = 1024, k = 1 of E = 2: 512 -> 640)."""
    lay = _layout(ep=1.0)
    dropless = operator_terms(model_shape(SPEC), _hw(), lay, _cal(load_imbalance=1.25))
    assert dropless["expert_up"][1] == pytest.approx(E * _gemm(512, 2 * F, H), rel=1e-12)
    padded = operator_terms(model_shape(SPEC), _hw(), lay,
                            _cal(load_imbalance=1.25, einsum_dispatch=1.0))
    assert padded["expert_up"][1] == pytest.approx(E * _gemm(640, 2 * F, H), rel=1e-12)
    assert padded["expert_down"][0] == pytest.approx(E * 2 * 640 * H * F, rel=1e-12)


def test_a_tiled_grouped_gemm_revisits_the_tiles_two_experts_share_by_hand():
    """MaxText's megablox tiles the sorted rows by 512 and computes a tile once per expert that
    has rows in it: ceil(m/512) + G - 1 tiles. DeepSeek-V3 on one chip (no expert parallelism):
    49,152 tokens x 8 / 256 experts = 1,536 rows each, plus 512 x 255/256 = 510 = 2,046 rows of
    work; the hand MoE at ep 1 (2 local experts, 512 rows each) does 512 + 256 = 768."""
    assert moe.tiled_rows(1536.0, 256.0, 512.0) == pytest.approx(1536 + 510, rel=1e-12)
    assert moe.tiled_rows(1536.0, 256.0, 0.0) == 1536.0  # no tile: the rows themselves
    assert moe.tiled_rows(700.0, 1.0, 512.0) == 700.0  # one expert: nothing is shared
    lay = _layout(ep=1.0, dp=1.0)
    up = operator_terms(model_shape(SPEC), _hw(), lay, _cal(group_tile=512.0))["expert_up"]
    assert up[1] == pytest.approx(E * _gemm(512 + 256, 2 * F, H), rel=1e-12)
    assert up[0] == 2 * 512 * 2 * F * H * E  # the FLOPs stay those of the routed rows
    # with expert parallelism the busiest rank's local experts: ep 2, one local expert, none
    one = operator_terms(model_shape(SPEC), _hw(), _layout(), _cal(group_tile=512.0))
    assert one["expert_up"] == operator_terms(model_shape(SPEC), _hw(), _layout(), _cal())[
        "expert_up"]


def test_a_maxtext_recipe_states_its_grouped_gemm_tiles():
    """MaxText's family tiles by 512 rows (base.yml); a recipe's six wi/wo tiles replace it by
    their mean (unstated ones at 512), the older tile_batch_seq by itself; the dense-matmul
    path has no grouped GEMM; a Megatron stack none."""
    def tile(text: str, family: str = "maxtext") -> float:
        row = {"metric_note": "", "notes": f"[trust A] {text} || Normalization: x || Original: z"}
        return validate._moe_stack(row, family)[0].group_tile

    assert tile("megablox=True, sparse_matmul=True") == 512.0
    fp8 = ("wi_tile_fwd_batch_seq=128 wi_tile_dlhs_batch_seq=256 wi_tile_drhs_batch_seq=256 "
           "wo_tile_fwd_batch_seq=256 wo_tile_dlhs_batch_seq=256 wo_tile_drhs_batch_seq=256")
    assert tile(fp8) == pytest.approx((128 + 5 * 256) / 6, rel=1e-12)
    assert tile("wi_tile_drhs_batch_seq=1024") == pytest.approx((1024 + 5 * 512) / 6, rel=1e-12)
    assert tile('"tile_batch_seq": 256, "tile_embed_dim": 1024') == 256.0
    assert tile("sparse_matmul False, tile_batch_seq 256") == 0.0
    assert tile(fp8, "megatron") == 0.0


def test_a_maxtext_dense_matmul_recipe_sets_the_einsum_dispatch():
    """A MaxText recipe with sparse_matmul False runs the one-hot einsums and no permutation
    (data/perf/moe.toml [stack.maxtext-dense-matmul]); sparse_matmul True does not."""
    def stack(text: str):
        row = {"metric_note": "", "notes": f"[trust A] {text} || Normalization: moe: "
                                           "load_imbalance=1.25 || Original: z"}
        return validate._moe_stack(row, "maxtext")[0]

    dense = stack("megablox False, sparse_matmul False, capacity_factor 1.25")
    assert (dense.einsum_dispatch, dense.permute_copies, dense.load_imbalance) == (1.0, 0.0, 1.25)
    assert stack('"sparse_matmul": False').einsum_dispatch == 1.0
    sparse = stack("megablox=True, sparse_matmul=True")
    assert (sparse.einsum_dispatch, sparse.permute_copies) == (0.0, 8.0)


def test_expert_parameters_with_expert_tp_one():
    """Expert-TP 1: a chip holds E/ep whole experts whatever tp is; their gradients are
    reduced over the tp x dp x cp / ep ranks of the expert-data-parallel group."""
    m = model_shape(SPEC)
    for tp in (1.0, 2.0):
        terms = step_terms(m, _hw(), _layout(tp=tp), _cal())
        assert float(terms["p_expert"]) == m.params_experts / 2  # ep = 2
    # without expert parallelism (ep = 1) the experts stay TP-sharded like a dense MLP
    # (Megatron's default expert-TP = tp): P/tp per chip, and each expert's GEMM splits its
    # width over tp on all T tokens routed to it: m = T k/E = 512, n = 2F/2 = 512, k = H
    lay = _layout(tp=2.0, ep=1.0)
    assert float(step_terms(m, _hw(), lay, _cal())["p_expert"]) == m.params_experts / 2
    up = operator_terms(m, _hw(), lay, _cal())["expert_up"][1]
    assert up == pytest.approx(E * _gemm(1024 * K / E, 2 * F / 2, H), rel=1e-12)


def test_expert_tp_by_hand():
    """Expert-TP 2 with tp = 2, ep = 2 on 4 chips (ep x etp = tp x dp x cp), T = 1024 tokens per
    micro-batch, 512 per chip: each chip runs its half of E/ep = 1 expert on the tokens of the
    ep x etp = 4 ranks routed to it, rows = 512 k 4 / E = 1024, the up projection's columns
    (2F/2) and the down projection's rows (F/2) split; the FLOPs stay those of expert-TP 1
    (512 rows at full width). Per pass the dispatcher all-gathers the received tokens over the
    pair and reduce-scatters the outputs, one all-reduce of 2 x 512 x k x H x 2 B, exposed;
    the MoE layer's own TP pair is gone (its tokens leave by all-to-all); a chip keeps the
    pair's expert inputs for the backward, (2 - 1) k H x 2 B more per token."""
    m, hw = model_shape(SPEC), _hw()
    lay = _layout(tp=2.0, dp=2.0, ep=2.0)
    one, two = _cal(ep_overlap=0.0), _cal(ep_overlap=0.0, expert_tp=2.0)
    got, ref = operator_terms(m, hw, lay, two), operator_terms(m, hw, lay, one)
    assert got["expert_up"][1] == pytest.approx(_gemm(1024, 2 * F / 2, H), rel=1e-12)
    assert got["expert_down"][1] == pytest.approx(_gemm(1024, H, F / 2), rel=1e-12)
    assert got["expert_up"][0] == pytest.approx(ref["expert_up"][0], rel=1e-12)
    assert ref["expert_up"][1] == pytest.approx(_gemm(512, 2 * F, H), rel=1e-12)
    n_mb = 8 / 2  # global batch / (dp x micro-batch)
    nbytes = 2 * 512 * K * H * 2.0
    gathers = 2 * (UP_LAT + nbytes / UP_BW)  # forward + backward, recursive doubling over 2
    t_ep = [float(train_step(m, hw, lay, c, outputs=("t_ep",))["t_ep"]) for c in (one, two)]
    assert t_ep[1] - t_ep[0] == pytest.approx(n_mb * gathers, rel=1e-12)
    # 0 takes the TP size: the same as 2 here
    zero = float(train_step(m, hw, lay, _cal(ep_overlap=0.0, expert_tp=0.0),
                            outputs=("t_ep",))["t_ep"])
    assert zero == pytest.approx(t_ep[1], rel=1e-12)
    # the EP ranks sit etp apart: with 2-chip domains the pair's EP peers are in other domains
    dom = _hw(domain=2.0)
    parts = moe.layer_all_to_all_parts(512.0, H, K, 2.0, 1.0, UP_BW, UP_LAT, OUT_BW, OUT_LAT,
                                       two.moe, 0.0, E)
    a2a = float(train_step(m, dom, lay, two, outputs=("t_ep",))["t_ep"])
    assert a2a == pytest.approx(n_mb * (sum(float(p) for p in parts) + gathers), rel=1e-12)
    # one TP pair per MoE layer with expert parallelism (SPEC: one MoE layer, no shared expert)
    tp_ep = float(step_terms(m, hw, lay, one)["t_tp"])
    tp_dense = float(step_terms(m, hw, _layout(tp=2.0, dp=2.0, ep=1.0), one)["t_tp"])
    assert tp_ep == pytest.approx(tp_dense / 2, rel=1e-12)
    saved = [float(step_terms(m, hw, lay, c)["saved"]) for c in (one, two)]
    assert saved[1] - saved[0] == pytest.approx((2 - 1) * K * H * 2.0, rel=1e-12)
    # without expert parallelism the experts are TP-sharded like a dense MLP: expert_tp moves
    # nothing (no gathers, no extra inputs, the dense layer's two TP pairs)
    dense = _layout(tp=2.0, dp=2.0, ep=1.0)
    for key in ("t_ep", "t_tp", "saved", "mb_compute"):
        a, b = (float(step_terms(m, hw, dense, c)[key]) for c in (one, two))
        assert a == pytest.approx(b, rel=1e-12), key


def test_a_case_states_its_expert_tp():
    """The DGX Cloud Grok-1 rows of NeMo 24.12 (Megatron-Core 0.10: expert-TP defaults to TP =
    4) state it: their prediction carries it and is slower than the same row at expert-TP 1."""
    rows = {r["case_id"]: r for r in validate.read_cases(data_dir() / "measurements"
                                                         / "cases.csv")}
    row = rows["T-DGXC-NEMO-2502-H100-GROK1-314B-BF16-512G"]
    assert "moe: expert_tp=4" in row["notes"]
    pred = validate.predict([row])[0]
    assert "expert_tp=4" in pred.why
    plain = dict(row, notes=row["notes"].replace("moe: expert_tp=4", "moe: (none)"))
    base = validate.predict([plain])[0]
    assert pred.predicted > base.predicted * 1.05  # step time: slower by the gathers
    # ep 8 x expert-TP 16 = 128 ranks do not tile tp x dp x cp = 4 x 8 x 2 = 64: refused
    wide = dict(row, notes=row["notes"].replace("moe: expert_tp=4", "moe: expert_tp=16"))
    refused = validate.predict([wide])[0]
    assert math.isnan(refused.predicted) and "divisibility" in refused.why


# ------------------------------------------------------------------ the layout rule
def test_expert_parallel_folded_over_tp_dp_cp():
    """EP may span tp x dp x cp (Megatron-Core folding): ep = 8 with tp = 2, dp = 4 is valid
    (the old rule, ep | dp, rejected it); ep = 8 over tp x dp x cp = 4 ranks is not, nor an ep
    that does not divide the experts."""
    spec = TransformerSpec(name="moe8", layers=4, hidden=256, heads=4, kv_heads=4, vocab=512,
                           gated_mlp=True, moe_experts=8, moe_active=2, moe_ffn=512)
    cols = {"tp": [2, 2, 1, 1], "pp": [1, 1, 1, 1], "dp": [4, 2, 8, 6], "cp": [1, 1, 1, 1],
            "ep": [8, 8, 8, 3], "vpp": [1, 1, 1, 1], "micro_batch": [1, 1, 1, 1]}
    cfg = {k: np.array(v) for k, v in cols.items()}
    reason = reason_codes(spec, cfg, global_batch=48, seq_len=1024, domain=8)
    assert list(reason) == [0, 5, 0, 5]
    assert "tp x dp x cp" in REASONS[5]


# ------------------------------------------------------------------ the data
def test_the_moe_constants_of_the_data():
    """data/perf/moe.toml: each constant and its derivation (a change fails here first)."""
    f = load_moe()
    assert set(f) >= set(MOE_CALIBRATION)
    cal = moe_calibration()
    assert cal == train_calibration().moe
    assert cal.ep_overlap == 0.0  # Megatron-Core: the all-to-all on the critical path
    assert cal.a2a_dedup == 0.0  # alltoall dispatcher: a copy per (token, expert)
    assert cal.node_limit == 0.0  # no node-limited routing by default
    assert cal.dispatch_bytes == 16 / 8 and cal.combine_bytes == 16 / 8  # BF16
    assert f["dispatch_bytes"].range[0] == 1 + 4 / 128  # FP8 + an fp32 scale per 128
    assert cal.load_imbalance == 1.0  # force-balanced / capacity factor 1
    assert cal.permute_copies == 4 * 2  # 4 permutations, each reads and writes
    assert cal.router_traffic == 4 + 4 + 4 + 4  # fp32 logits, scores, top-k
    assert cal.moe_layer_overhead == pytest.approx(40e-6 + 20e-6)
    assert cal.einsum_dispatch == 0.0  # permutations and grouped GEMMs
    assert cal.group_tile == 0.0  # Megatron-Core's grouped GEMMs: one GEMM per expert
    assert moe_calibration("maxtext").group_tile == 512  # base.yml wi/wo_tile_*_batch_seq
    assert cal.einsum_backward == (1 + 2) / 2  # dispatch: the tokens' gradient; combine: two
    assert cal.consecutive_routing == 0.0  # learned (or randomly forced) routing: uniform
    assert cal.expert_tp == 1.0  # --expert-tensor-parallel-size 1: whole experts per chip
    gate = load_moe_stacks()["automodel-fake-balanced-gate"]
    assert gate["consecutive_routing"].si == 1.0  # arange(T k).view(-1, k) % E
    assert all(f[k].sources for k in MOE_CALIBRATION)


@pytest.mark.parametrize("name", MOE_CALIBRATION)
def test_every_moe_constant_moves_the_step(name):
    """Each constant of the MoE terms changes the step time of a configuration it acts on:
    ep = 32 over 4 domains of 8 (tp = 2: room for an expert-TP of 2), FP8 GEMMs,
    de-duplication on (the node limit acts), GShard's einsums on (their backward factor
    acts)."""
    spec = TransformerSpec(name="moe32", layers=2, hidden=1024, heads=8, kv_heads=8,
                           vocab=1024, gated_mlp=True, moe_experts=64, moe_active=8,
                           moe_ffn=512)
    lay = Layout(tp=2.0, pp=1.0, dp=32.0, cp=1.0, ep=32.0, vpp=1.0, zero=1.0, recompute=0.0,
                 micro_batch=1.0, global_batch=64.0, seq_len=2048.0)
    base = {"a2a_dedup": 1.0, "node_limit": 2.0, "dispatch_bytes": 2.0, "einsum_dispatch": 1.0}
    changed = {"ep_overlap": 0.5, "a2a_dedup": 0.0, "node_limit": 0.0, "dispatch_bytes": 1.0,
               "combine_bytes": 1.0, "load_imbalance": 1.2, "permute_copies": 4.0,
               "router_traffic": 8.0, "moe_layer_overhead": 1e-4, "einsum_dispatch": 0.0,
               "einsum_backward": 2.0, "group_tile": 512.0, "consecutive_routing": 1.0,
               "expert_tp": 2.0}
    hw = _hw(domain=8.0, gemm_bytes=1.0)
    t0 = float(train_step(model_shape(spec), hw, lay, _cal(**base),
                          outputs=("step_time",))["step_time"])
    t1 = float(train_step(model_shape(spec), hw, lay, _cal(**{**base, name: changed[name]}),
                          outputs=("step_time",))["step_time"])
    assert math.isfinite(t0) and abs(t1 / t0 - 1) > 1e-6, name


def test_a_published_ep_folded_over_tp_dp_is_predicted():
    """Megatron-Core Qwen3-235B on 256 H100, TP 2 x DP 16 with EP 32 (EDP 1, ETP 1): the old
    rule (ep | dp) rejected it; it is predicted now, with the all-to-all in its breakdown."""
    rows = {r["case_id"]: r for r in validate.read_cases(data_dir() / "measurements"
                                                          / "cases.csv")}
    row = rows["T-MOE-ZOO-H100-QWEN3-235B-EP32-PP8"]
    assert (row["tp"], row["dp"], row["ep"]) == ("2", "16", "32")
    conv = validate.load_conventions()
    value, why, layout = validate.predict_training(
        row, conv.get(validate.source_of(row["case_id"], conv), {}), load_training())
    assert math.isfinite(value) and value > 0, why
    assert (layout["tp"], layout["dp"], layout["ep"]) == (2, 16, 32)


def test_neuron_expert_parallel_counts_cores():
    """On Neuron a published rank is a NeuronCore (Trainium1: 2 per chip): EP 8 over ranks is
    EP 4 over chips, as TP 8 is 4 chips (the chip's two cores share its E/ep experts)."""
    row = dict(validate.read_cases(data_dir() / "measurements" / "cases.csv")[0])
    row.update({"case_id": "T-TRN1-MOE-HAND", "chip": "trn1", "system": "trn1-32xl",
                "scaleout": "", "n_chips": "512", "model": "moe-hand", "layers": "8",
                "hidden": "4096", "heads": "32", "kv_heads": "8", "head_dim": "", "ffn": "",
                "vocab": "32000", "seq_len": "4096", "moe_experts": "8", "moe_active": "2",
                "moe_ffn": "14336", "gated_mlp": "true", "tp": "8", "pp": "1", "dp": "128",
                "cp": "1", "ep": "8", "vpp": "1", "zero": "1", "global_batch": "1024",
                "micro_batch": "1", "precision": "bf16", "recompute": "full",
                "metric": "tokens_per_s_per_chip", "value": "1000", "notes": ""})
    value, why, layout = validate.predict_training(row, {}, load_training())
    assert math.isfinite(value), why
    assert (layout["tp"], layout["ep"]) == (4, 4)


def test_a_family_or_a_case_sets_its_moe_stack():
    """DeepSeek-V3's stack (data/perf/moe.toml [stack.deepseek]: DualPipe, de-duplicated
    node-limited FP8 dispatch) and a case's own `moe:` entries override the defaults."""
    ds = moe_calibration("deepseek")
    assert (ds.ep_overlap, ds.a2a_dedup, ds.node_limit) == (1.0, 1.0, 4.0)
    assert ds.dispatch_bytes == 1 + 4 / 128 and ds.combine_bytes == 2.0
    assert moe_calibration("megatron") == moe_calibration()  # no MoE stack of its own
    with pytest.raises(ParameterError, match="dedup"):
        moe_calibration(dedup=1.0)
    row = {"notes": "[trust A] x || Normalization: moe: a2a_dedup=1, ep_overlap=1 (DeepEP); "
                    "arch: no shared experts || Original: moe: ep_overlap=0.5"}
    cal, note = validate._moe_stack(row, "megatron")
    assert (cal.a2a_dedup, cal.ep_overlap) == (1.0, 1.0)  # Original is not read
    assert "a2a_dedup=1" in note
    # the DeepSeek-V3 report's own runs are recognised as that family
    fams = validate.load_families()
    assert validate.family_of({"source": "DeepSeek-V3 Technical Report (arXiv 2412.19437)",
                               "metric_note": "", "notes": ""}, fams) == "deepseek"


def test_each_all_to_all_hides_behind_its_paired_compute_chunk_by_hand():
    """An overlapped schedule pairs the backward combine with the forward attention, the
    forward dispatch with the backward MLP, the backward dispatch with the forward MLP and the
    forward combine with the backward attention (DeepSeek-V3, Fig. 4): all-to-alls of (2, 0.1,
    0.1, 3) s (forward dispatch, forward combine, backward dispatch, backward combine) beside
    chunks of (1, 0.5, 0.2, 5) s (forward attention, forward MLP, backward attention, backward
    MLP) hide min(3, 1) + min(2, 5) + min(0.1, 0.5) + min(0.1, 0.2) = 3.2 of 5.2 s."""
    parts, chunks = (2.0, 0.1, 0.1, 3.0), (1.0, 0.5, 0.2, 5.0)
    full = dataclasses.replace(MOE, ep_overlap=1.0)
    assert moe.exposed(parts, chunks, full) == pytest.approx(2.0)
    assert moe.exposed(parts, chunks, MOE) == pytest.approx(5.2 - 0.25 * 3.2)
    assert moe.exposed(parts, chunks, dataclasses.replace(MOE, ep_overlap=0.0)) == 5.2
    arr = moe.exposed(tuple(np.array([x, x]) for x in parts), tuple(np.array([c, 10.0 * c])
                                                                   for c in chunks), full)
    assert arr.tolist() == pytest.approx([2.0, 5.2 - (3.0 + 2.0 + 0.1 + 0.1)])
    # in the step: every chip its own domain, a slow NIC: each all-to-all outlasts its chunk,
    # so full overlap hides the MoE layer's compute (less than the micro-batch's, which also
    # holds the logits) and the rest stays exposed
    hw, t = _hw(domain=1.0), 1024 * H * 0.5
    slow = dataclasses.replace(hw, out_bw=1e8)
    per_mb = 4 * (t * 2.0 / 1e8 + OUT_LAT)
    out = train_step(model_shape(SPEC), slow, _layout(), _cal(ep_overlap=1.0),
                     outputs=("t_ep", "t_compute"))
    n_mb = 8 / 2
    assert n_mb * per_mb - float(out["t_compute"]) < float(out["t_ep"]) < n_mb * per_mb


def test_the_mlp_chunk_is_megatrons_moe_module():
    """The GEMMs an all-to-all pairs with as the MLP chunk are those of Megatron-Core's "moe"
    module (the recompute table of trnlab.workloads.flops), every other GEMM of a MoE layer is
    the attention chunk."""
    from trnlab.perf.train import MOE_MLP
    from trnlab.workloads.flops import MEGATRON_MODULES

    assert MEGATRON_MODULES["moe"][0] == MOE_MLP
    names = {g.name for g in model_shape(SPEC).gemms_moe}
    assert names - MOE_MLP == {"qkv", "attn_out"}


def test_a_case_recipe_sets_the_all_to_all_overlap_and_the_deduplicating_dispatcher():
    """Megatron-Bridge recipes state moe_a2a_overlap (Megatron-Core's
    --overlap-moe-expert-parallel-comm) and the flex dispatcher (DeepEP / HybridEP)."""
    def stack(text: str):
        row = {"metric_note": "", "notes": f"[trust A] x || Normalization: y || Original: z "
                                           f"|| MoE settings: {text}"}
        return validate._moe_stack(row, "nemo")[0]

    base = moe_calibration("nemo")
    assert (base.ep_overlap, base.a2a_dedup) == (0.0, 0.0)
    on = stack("moe_token_dispatcher_type=flex, moe_flex_dispatcher_backend=hybridep; "
               "moe_a2a_overlap=True")
    assert (on.ep_overlap, on.a2a_dedup) == (1.0, 1.0)
    off = stack("moe_token_dispatcher_type=alltoall; overlap_moe_expert_parallel_comm=false")
    assert (off.ep_overlap, off.a2a_dedup) == (0.0, 0.0)
    assert stack("overlap_moe_expert_parallel_comm=true").ep_overlap == 1.0
    assert stack("moe_enable_deepep=True").a2a_dedup == 1.0
    # a case's own `moe:` entry wins over what its recipe's flags imply
    row = {"metric_note": "", "notes": "x || Normalization: moe: ep_overlap=0.5 || Original: "
                                       "moe_a2a_overlap=True"}
    assert validate._moe_stack(row, "nemo")[0].ep_overlap == 0.5
