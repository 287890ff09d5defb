"""Mixed scale-up domains: the catalog schema, the core worked by hand, the reduction to one chip
type, the Trainium4 study, its claims and the ``trnlab hetero`` command."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from tests._cli import run
from trnlab import catalog
from trnlab.engine import hetero as eng
from trnlab.engine.hardware import half_dim, hardware, serve_calibration
from trnlab.errors import CatalogError
from trnlab.perf import hetero
from trnlab.studies import trainium4

CAT = catalog.default()


# ------------------------------------------------------------------------------ catalog
def test_new_entries_are_listed_and_sourced():
    assert {"rubin"} <= set(CAT.chips)
    assert {"vera-rubin-nvl72", "trn4-rubin-nvl72", "trn4-ualink"} <= set(CAT.systems)
    mixed = CAT.system("trn4-rubin-nvl72")
    assert mixed.mixed and mixed.chip_counts == {"trn4": 36, "rubin": 36}
    assert mixed.chip == "trn4" and mixed.n_chips == 72  # single-chip callers still work
    assert not CAT.system("trn4-nvl72").mixed
    assert CAT.system("trn4-nvl72").chip_counts == {"trn4": 72}
    fab = CAT.fabric("nvlink6-fusion")
    assert fab.bandwidth == pytest.approx(3.6e12) and fab.domain == 72
    for name in ("rdma", "loadstore", "reduction"):  # the swept assumption, each with a range
        f = fab.fields[f"cross_vendor_{name}"]
        assert f.status == "projected" and f.range == (0.0, 1.0) and f.note
    # every unknown of Trainium4 and Rubin carries a range
    for chip, keys in (("trn4", ("peak_bf16", "tdp", "scaleup_bandwidth", "hbm_bandwidth")),
                       ("rubin", ("peak_bf16", "peak_fp8", "tdp", "hbm_bandwidth"))):
        for key in keys:
            f = CAT.chip(chip).fields[key]
            assert f.status == "projected" and f.range and f.range[0] < f.range[1], (chip, key)
    for price in ("trn4-nvl72-projected", "vera-rubin-nvl72-projected"):
        f = CAT.price(price).fields["usd_per_hour"]
        assert f.status == "projected" and f.range[0] < f.value < f.range[1]


def test_catalog_cli_lists_the_mixed_domain():
    rc, out, _ = run(["catalog"])
    assert rc == 0
    assert "vera-rubin-nvl72" in out and "rubin" in out
    assert "36 trn4 + 36 rubin" in out


MIXED = """
[system.test-mixed]
name = "test"
chip = "trn4"
members = { trn4 = 8, rubin = 8 }
fabric = "nvlink6-fusion"
scaleup_topology = "switched"
scaleout = "efa-400"
n_chips = { value = 16, unit = "1", status = "announced", source = "DERIVED" }
scaleup_latency = { value = 2, unit = "us", status = "announced", source = "DERIVED" }
"""


@pytest.mark.parametrize(("old", "new", "pattern"), [
    ("rubin = 8 }", "rubin = 9 }", r"counts must add up to n_chips = 16"),
    ("rubin = 8 }", "h900 = 8 }", r"members = 'h900': unknown chip id"),
    ('chip = "trn4"', 'chip = "b200"', r"chip = 'b200': must be one of the members"),
    ('fabric = "nvlink6-fusion"', 'fabric = "nvlink9"', r"fabric = 'nvlink9': unknown fabric"),
    ("rubin = 8 }", "rubin = 0 }", r"members.rubin = 0: must be a whole number >= 1"),
])
def test_bad_mixed_domain_is_refused(hardware_copy, old, new, pattern):
    path = hardware_copy / "systems.toml"
    path.write_text(path.read_text() + MIXED.replace(old, new))
    with pytest.raises(CatalogError, match=pattern):
        catalog.load(hardware_copy)


def test_mixed_aggregate_is_checked_against_each_member(hardware_copy):
    # 8 x 288 GiB (trn4) + 8 x 288 GB (rubin) = 2473.9 GB + 2304 GB = 4.778 TB
    path = hardware_copy / "systems.toml"
    good = MIXED + 'hbm_capacity = { value = 4.778, unit = "TB", status = "derived", ' \
                   'source = "DERIVED", note = "sum" }\n'
    path.write_text(path.read_text() + good)
    assert catalog.load(hardware_copy).system("test-mixed").chip_counts == {"trn4": 8,
                                                                           "rubin": 8}
    path.write_text(path.read_text().replace("value = 4.778", "value = 4.6"))  # = 16 x trn4
    with pytest.raises(CatalogError, match="inconsistent"):
        catalog.load(hardware_copy)


def test_a_mixed_domain_of_one_type_is_the_homogeneous_system(hardware_copy):
    path = hardware_copy / "systems.toml"
    one = MIXED.replace("members = { trn4 = 8, rubin = 8 }", "members = { trn4 = 16 }")
    path.write_text(path.read_text() + one)
    s = catalog.load(hardware_copy).system("test-mixed")
    assert not s.mixed and s.chip_counts == {"trn4": 16} and s.chip == "trn4"


# ------------------------------------------------------------------------------ core by hand
def test_disaggregated_rate_worked_by_hand():
    # prefill 10 requests/s per chip on A, decode 2 requests/s per chip on B, 1 GB of KV each.
    # 12 A + 60 B: pools give 12 x 10 = 120 and 60 x 2 = 120 req/s; a 50 GB/s link carries
    # 12 x 50 / 1 = 600 req/s out of A and 60 x 50 = 3000 into B: 120 req/s.
    assert float(hetero.disaggregated_rate(10.0, 2.0, 12.0, 60.0, 1e9, 50e9)) == \
        pytest.approx(120.0)
    # at 5 GB/s the 12 prefill chips send only 12 x 5 / 1 = 60 req/s
    assert float(hetero.disaggregated_rate(10.0, 2.0, 12.0, 60.0, 1e9, 5e9)) == \
        pytest.approx(60.0)
    # balance: n_p / n = d / (p + d) = 2 / 12, i.e. 12 of 72 chips
    assert float(hetero.balanced_prefill_share(10.0, 2.0)) * 72 == pytest.approx(12.0)


def test_two_type_serving_rack_by_hand():
    # prefill on A takes 0.1 s per 2,048-token prompt at tp = 1 -> 10 req/s per chip; decode on
    # B holds 64 sequences at 40 ms per step -> 1,600 tokens/s per chip = 3.125 req/s of 512
    # output tokens. KV of a prompt: 2,048 x 320 KiB... here 0.5 GB, over 1.8 TB/s x 0.6 =
    # 1.08e12 B/s per direction (the slower end of 3.6 and 1.8 TB/s aggregate links is 1.8 ->
    # 0.9 TB/s per direction x 0.6 = 0.54 TB/s). Rack of 72, 16 prefill + 56 decode:
    # min(16 x 10 = 160, 56 x 3.125 = 175, 16 x 0.54e12 / 0.5e9 = 17,280) = 160 req/s
    # -> 160 x 512 = 81,920 output tokens/s per rack.
    link = float(hetero.link_bandwidth(3.6e12, 1.8e12, 0.6))
    assert link == pytest.approx(0.54e12)
    req = float(hetero.disaggregated_rate(1 / 0.1, 64 / 0.04 / 512, 16.0, 56.0, 0.5e9, link))
    assert req * 512 == pytest.approx(81_920.0)
    # TTFT: 0.1 s prefill + 0.5e9 / 0.54e12 s + 3 us + one 40 ms step = 0.140929 s
    ttft = 0.1 + float(hetero.transfer_time(0.5e9, link, 3e-6)) + 0.04
    assert ttft == pytest.approx(0.1 + 0.000925926 + 3e-6 + 0.04, rel=1e-6)


def test_cross_path_and_spanning_collective_by_hand():
    bw, lat = hetero.cross_path(np.array([1.0, 0.0]), 1e12, 3e-6, 50e9, 12e-6)
    assert list(bw) == [1e12, 50e9] and list(lat) == [3e-6, 12e-6]
    # ring over 4 chips at the slower 1e11 B/s: 2 x 3/4 x 1e9 / 1e11 = 0.015 s
    ring = float(hetero.spanning_all_reduce(1e9, 4.0, 1e11, 2e11, 0.0, 0.0))
    assert ring == pytest.approx(0.015)
    # in-switch reduction: each byte once per direction, 1e9 / 1e11 = 0.01 s
    assert float(hetero.spanning_all_reduce(1e9, 4.0, 1e11, 2e11, 0.0, 1.0)) == \
        pytest.approx(0.010)
    # two members: the ring already moves each byte once, a switch buys nothing
    assert float(hetero.spanning_all_reduce(1e9, 2.0, 1e11, 1e11, 0.0, 1.0)) == \
        float(hetero.spanning_all_reduce(1e9, 2.0, 1e11, 1e11, 0.0, 0.0))


def test_pipeline_split_by_hand():
    # 36 chips at 100 and 36 at 300 tokens/s: 3,600 and 10,800. 80 layers split 20 / 60 ->
    # both groups run 3,600 x 80 / 20 = 10,800 x 80 / 60 = 14,400 tokens/s (= the sum)
    assert float(hetero.pipeline_split(100.0, 300.0, 36.0, 36.0, 80.0)) == pytest.approx(14_400)
    # 10 layers: the ideal 2.5 rounds to 2 -> A runs 3,600 x 10 / 2 = 18,000, B 10,800 x 10 / 8
    # = 13,500: B sets the rate
    assert float(hetero.pipeline_split(100.0, 300.0, 36.0, 36.0, 10.0)) == pytest.approx(13_500)
    # one type only: exactly n x s
    assert float(hetero.pipeline_split(100.0, 300.0, 72.0, 0.0, 80.0)) == pytest.approx(7_200)
    # the boundary: 4 links of 1e11 B/s, 8,192 x 2 B per token each way -> 4e11 / 16,384
    assert float(hetero.pipeline_boundary_limit(1e11, 4.0, 8192.0, 2.0)) == \
        pytest.approx(4e11 / 16_384)


def test_afd_and_rl_steps_by_hand():
    # the slowest of 10 / 20 / 5 ms, plus 2 x 58 layers x 3 us = 0.348 ms
    assert float(hetero.afd_step(0.010, 0.020, 0.005, 58.0, 3e-6)) == pytest.approx(0.020348)
    # 100 tokens, hidden 7,168, top-8, 58 layers, 1 B dispatch + 2 B combine
    assert float(hetero.afd_exchange_bytes(100.0, 7168.0, 8.0, 58.0, 1.0, 2.0)) == \
        100 * 7168 * 8 * 58 * 3
    # 1e6 tokens at 1e5/s = 10 s, 5e6 at 1e6/s = 5 s, sync 1 s: 11 s overlapped, 16 s in turn
    assert float(hetero.rl_step_time(1e6, 1e5, 5e6, 1e6, 1.0, 1.0)) == pytest.approx(11.0)
    assert float(hetero.rl_step_time(1e6, 1e5, 5e6, 1e6, 1.0, 0.0)) == pytest.approx(16.0)


def test_afd_baseline_is_a_wide_ep_pool_worked_by_hand():
    # two micro-batches: terms of one, doubled (weights read once each): 2 x (max(1, 2) + 0.5) ms
    assert float(hetero.pingpong_time(1e-3, 2e-3, 0.5e-3)) == pytest.approx(5e-3)
    # co-located: attention and experts add on the chip, the all-to-all hides behind them
    assert float(hetero.colocated_ep_step(6e-3, 5e-3, 3e-3, 58.0, 2.5e-6)) == \
        pytest.approx(11e-3 + 2 * 58 * 2.5e-6)
    # DeepSeek-V3 decode on 72 Rubin (central inputs), the wide-EP decode pool: every chip runs
    # attention on its own 512 sequences (attention-DP) and holds 1/72 of the experts; context
    # 2,048 + 512 / 2 = 2,304; two micro-batches of 256 sequences.
    x, _ = eng.design("fp8", 0)
    x = {k: v[:1] for k, v in x.items()}
    hw = eng.member_hardware("rubin", "vera-rubin-nvl72", "fp8", x)
    cal, hd = serve_calibration(), half_dim()
    peak, hbm = float(np.ravel(hw.peak_gemm)[0]), float(np.ravel(hw.hbm_bw)[0]) * cal.mem_eff
    assert peak == pytest.approx(16.7e15) and hbm == pytest.approx(22e12 * cal.mem_eff)
    r, ov, ps = cal.decode_half_rows, hw.step_overhead, cal.per_sequence_overhead
    attn_w, ffn_dense, expert = 11.413547e9, 5.704087e9, 2.554331e9  # params (1 B in FP8)
    kv_seq = 2304 * 61 * 576  # MLA latent + rope, 61 layers, 1 B: 80.95 MB read per sequence
    # attention, per chip: weights twice + the KV of 512 sequences = 64.3 GB -> 4.22 ms
    a_stream = (2 * attn_w + 512 * kv_seq) / hbm
    eff_a = hw.gemm_eff * 256 / (256 + r) * (7168 / (7168 + hd)) ** 2
    # absorbed MLA decode: 128 heads score the 576-wide latent and sum its 512 values
    a_flops = 512 * (2 * attn_w + 2 * 2304 * 128 * (576 + 512) * 61)  # 31.7 TFLOP, > stream
    t_attn = max(a_stream, a_flops / (peak * eff_a)) + 2 * ov + 512 * ps  # + 2.6 ms runtime
    # experts: 72 x 512 = 36,864 tokens over 72 chips, 2 x 25.2 GFLOP each -> 25.8 TFLOP/chip
    eff_e = hw.gemm_eff * 18432 / (18432 + r) * (7168 / 72) / (7168 / 72 + hd) \
        * 7168 / (7168 + hd)
    e_flops = 36864 * 2 * (36.624597e9 - attn_w) / 72
    e_stream = 2 * (ffn_dense + 256 * expert) / 72 / hbm  # 2 x 9.16 GB -> 1.2 ms
    t_exp = max(e_flops / (peak * eff_e), e_stream) + 2 * ov
    # all-to-all: 512 x 7,168 x top-8 x 58 layers x (1 + 2) B, 71/72 off-chip, at 3.6/2 x 0.8
    t_a2a = 512 * 7168 * 8 * 58 * 3 * 71 / 72 / (3.6e12 / 2 * 0.8)  # 3.5 ms, hidden
    assert t_a2a < t_attn + t_exp
    step = t_attn + t_exp + 2 * 58 * 2.5e-6  # about 15 ms, within the 50 ms TPOT
    assert 0.012 < step < 0.02  # about 15 ms: attention compute-bound
    p = trainium4._check("llama3-70b", "deepseek-v3", "llama3-70b", 2048, 512, 50.0, 2000.0,
                         "fp8", 1, 0, 4e6, 4e6, 100.0, ["afd"])
    rows = {r["label"]: float(np.ravel(r["tokens_per_s_per_rack"])[0])
            for r in trainium4.evaluate(x, p, ["afd"])}
    # 36,864 / 15 ms = 2.4 M tokens/s per rack, 34 k per GPU (was 0.45 M: a TP-attention
    # pool re-reading every sequence's MLA latent on each of its TP ranks, un-overlapped)
    assert rows["rubin decode pool (EP)"] == pytest.approx(72 * 512 / step, rel=1e-3)
    # AFD moves the same KV cache, weights and tokens on the same chips: no 7x, at most the
    # 1.5-2x reported for AFD over EP (MegaScale-Infer, StepMesh)
    for chip in ("rubin", "trn4"):
        gain = rows[f"attention {chip} / experts {chip}"] / rows[f"{chip} decode pool (EP)"]
        assert 0.8 < gain < 2.0, chip


# ------------------------------------------------------------------------------ reduction
def test_member_hardware_in_the_mixed_rack_reduces_to_the_homogeneous_one():
    x, _ = eng.design("fp8", 0)
    for chip in ("trn4", "rubin"):
        a = eng.member_hardware(chip, eng.MIXED, "fp8", {k: v[:1] for k, v in x.items()})
        b = hardware(chip, eng.HOMOGENEOUS[chip], "fp8")
        for f in ("peak_gemm", "hbm_bw", "hbm_capacity", "up_bw", "gemm_eff"):
            assert float(np.ravel(getattr(a, f))[0]) == pytest.approx(float(getattr(b, f))), f
    kw = {"input_len": 2048, "output_len": 512, "tpot_s": 0.05, "ttft_s": 2.0}
    one = {k: v[:1] for k, v in x.items()}
    mixed = eng.serving_rates("llama3-70b", "trn4", eng.MIXED, one, **kw)
    homog = eng.serving_rates("llama3-70b", "trn4", "trn4-nvl72", one, **kw)
    for key in mixed:
        assert mixed[key] == pytest.approx(homog[key], nan_ok=True), key


def test_same_type_on_both_sides_is_the_homogeneous_option():
    x, _ = eng.design("fp8", 0)
    x = {k: v[:1] for k, v in x.items()}
    p = trainium4._check("llama3-70b", "deepseek-v3", "llama3-70b", 2048, 512, 50.0, 2000.0,
                         "fp8", 1, 0, 4e6, 4e6, 100.0, ["training"])
    rows = {r["label"]: r for r in trainium4.evaluate(x, p, ["training"])}
    speed = eng.training_speed("llama3-70b", "trn4", x, "fp8")
    # a pipeline whose two groups are the same type runs at the homogeneous rate
    assert float(hetero.pipeline_split(speed, speed, 36.0, 36.0, 80.0)[0]) == \
        pytest.approx(float(rows["trn4-nvl72"]["tokens_per_s_per_rack"][0]))


# ------------------------------------------------------------------------------ study
@pytest.fixture(scope="module")
def ds():
    return trainium4.study(n_samples=24, workloads=["serving", "afd"])


def test_study_holds_both_kinds_side_by_side_with_bands(ds):
    assert set(ds["kind"].values) == {"heterogeneous", "homogeneous"}
    labels = set(ds["label"].values)
    for system in ("trn4-nvl72", "vera-rubin-nvl72", "gb300-nvl72", "trn3-ultraserver"):
        assert f"{system} co-located" in labels
    assert "prefill rubin / decode trn4 (rdma)" in labels
    assert "prefill trn4 / decode rubin (rdma)" in labels
    v = ds["usd_per_m_tokens"].dropna("option", how="any")
    assert (v.sel(percentile=5.0) <= v.sel(percentile=50.0)).all()
    assert (v.sel(percentile=50.0) <= v.sel(percentile=95.0)).all()
    assert ds["tornado_gain"].dims == ("conclusion", "metric", "input", "end")
    assert "trn4_price" in list(ds["input"].values)
    assert ds.attrs["headline"] in trainium4.reading(ds)
    # USD per million tokens = rack price / tokens/s x 1e6 at the central inputs: trn4 rack
    # 72 x 12 USD/h
    i = int(np.flatnonzero(ds["label"].values == "trn4-nvl72 co-located")[0])
    rate = float(ds["tokens_per_s_per_rack_central"][i])
    assert float(ds["usd_per_m_tokens_central"][i]) == pytest.approx(72 * 12 / 3600 / rate * 1e6)


def test_mixed_rack_cost_is_its_members_price_over_its_rate(ds):
    # prefill on Rubin, decode on Trainium4: share x 72 Rubins at 28 USD/h and the rest
    # Trainium4 at 12 USD/h (central prices), over the rack's output tokens/s
    i = int(np.flatnonzero(ds["label"].values == "prefill rubin / decode trn4 (rdma)")[0])
    n_rubin = float(ds["share_central"][i]) * 72
    assert n_rubin == pytest.approx(round(n_rubin / 4) * 4)  # whole trays of 4
    usd_per_s = (n_rubin * 28 + (72 - n_rubin) * 12) / 3600
    rate = float(ds["tokens_per_s_per_rack_central"][i])
    assert float(ds["usd_per_m_tokens_central"][i]) == pytest.approx(usd_per_s / rate * 1e6)


def test_tornado_of_an_input_no_best_option_uses_is_flat(ds):
    # GB300's price moves only the GB300 rack, which is never the cheapest here: the gain
    # stays at its central value at both ends of that range
    hom = ds["usd_per_m_tokens_central"].where((ds["workload"] == "serving")
                                                & (ds["kind"] == "homogeneous"))
    assert "gb300" not in str(ds["label"].values[int(np.nanargmin(hom.values))])
    t = ds["tornado_gain"].sel(conclusion="serving", metric="usd_per_m_tokens",
                               input="gb300_price")
    central = float(ds["gain_central"].sel(conclusion="serving", metric="usd_per_m_tokens"))
    assert list(t.values) == pytest.approx([central, central])
    # while Rubin's price, which the mixed rack pays, moves it
    r = ds["tornado_gain"].sel(conclusion="serving", metric="usd_per_m_tokens",
                               input="rubin_price")
    assert float(r.sel(end="low")) != pytest.approx(float(r.sel(end="high")))


def test_study_rejects_bad_input():
    with pytest.raises(ValueError, match="workloads"):
        trainium4.study(workloads=["baking"])
    with pytest.raises(ValueError, match="moe_model"):
        trainium4.study(moe_model="llama3-70b", workloads=["afd"], n_samples=2)


# ------------------------------------------------------------------------------ claims
def test_claims_shape_and_verdicts(ds):
    rows = [r.to_dict() for r in trainium4.claims(ds)]
    ids = [r["id"] for r in rows]
    assert ids == ["fp4-vs-trn3", "fp8-vs-trn3", "bandwidth-vs-trn3", "capacity-vs-trn3",
                   "nvlink-fusion"]
    for r in rows:  # the Trainium3 ledger's row shape (tests/test_claims.py checks equality)
        assert {"id", "claim", "source", "published", "computed", "verdict", "reason",
                "decided_by", "bases", "sensitivity", "flips", "status"} <= set(r)
        assert r["verdict"] in ("holds", "partly", "inconsistent", "not-checkable")
        assert r["bases"] and all({"basis", "computed", "verdict"} <= set(b) for b in r["bases"])
    fp4 = rows[0]
    # 6 x 2,517 = 15,102 TFLOP/s, and 6x FP4 with 3x FP8 means FP4 = 2 x FP8 on Trainium4
    assert "15,102 TFLOP/s" in fp4["reason"]
    implied = next(b for b in fp4["bases"] if b["basis"].startswith("Trainium4 FP4 / FP8"))
    assert implied["computed"] == pytest.approx(2.0) and implied["verdict"] == "not-checkable"
    # per rack: 72 Trainium4 against a 144-chip Trn3 UltraServer halves the multiple: 6 x 72/144
    rack = next(b for b in fp4["bases"] if b["basis"].startswith("per rack"))
    assert rack["computed"] == pytest.approx(3.0) and rack["verdict"] == "inconsistent"
    # the interoperability claim: one basis per workload of the study
    inter = rows[-1]
    assert [b["basis"].split(":")[0] for b in inter["bases"]] == ["serving", "afd"]


def test_claim_reasons_move_with_inputs(ds):
    before = {r.id: r for r in trainium4.claims(ds)}
    # Trainium4 at half its catalog bandwidth: 9.8 / 4.9 TB/s = 2x, not 4x, at every corner
    after = {r.id: r for r in trainium4.claims(ds, overrides={
        "trn4_hbm_bandwidth": [9.4, 9.8, 9.8]})}
    assert before["bandwidth-vs-trn3"].verdict == "holds"
    assert after["bandwidth-vs-trn3"].verdict == "inconsistent"
    assert after["bandwidth-vs-trn3"].reason != before["bandwidth-vs-trn3"].reason
    assert "per chip, Trainium4 / Trainium3 HBM bandwidth: 2x" in after["bandwidth-vs-trn3"].reason
    # the interoperability claim reads the study: a better mixed rack changes reason and verdict
    worse, better = ds.copy(deep=True), ds.copy(deep=True)
    for v in ("gain", "gain_central", "tornado_gain"):
        better[v][:] = 1.5
        worse[v][:] = 0.5
    inter = {r.id: r for r in trainium4.claims(better)}["nvlink-fusion"]
    assert inter.verdict == "holds" and "1.5x" in inter.reason
    low = {r.id: r for r in trainium4.claims(worse)}["nvlink-fusion"]
    assert low.verdict == "inconsistent" and "0.5x" in low.reason
    # no number at all (no mixed option meets the SLOs): not checkable
    none = ds.copy(deep=True)
    for v in ("gain", "gain_central", "tornado_gain"):
        none[v][:] = np.nan
    assert {r.id: r for r in trainium4.claims(none)}["nvlink-fusion"].verdict == "not-checkable"


# ------------------------------------------------------------------------------ CLI
def test_cli_hetero_json_and_errors():
    rc, out, _ = run(["hetero", "--workload", "serving", "--samples", "8", "--json"])
    assert rc == 0
    doc = json.loads(out)
    assert doc["members"] == {"trn4": 36, "rubin": 36}
    assert {o["kind"] for o in doc["options"]} == {"heterogeneous", "homogeneous"}
    g = doc["gains"]["serving"]["gain_usd_p5_p50_p95"]
    assert len(g) == 3 and all(v is None or math.isfinite(v) for v in g)
    rc, _, err = run(["hetero", "--system", "trn4-nvl72"])
    assert rc == 2 and err.count("\n") == 1 and "not a mixed domain" in err
    rc, _, err = run(["hetero", "--samples", "0"])
    assert rc == 2 and "n_samples" in err


def test_dataclass_replace_keeps_single_chip_systems():
    s = CAT.system("gb300-nvl72")
    assert dataclasses.replace(s).chip_counts == {"gb300": 72}


# --------------------------------------------------------------------- power by pool role
def test_a_pool_draws_the_power_of_its_compute_share_by_hand():
    """Facility power per chip = TDP (idle 0.2 + 0.8 min(1, c + 0.3 (1 - c))) x (1 + overhead)
    x PUE: a busy chip (c = 1) at TDP, an HBM-bound one (c = 0) at 0.44 TDP, c = 0.5 at 0.72."""
    x, _ = eng.design("fp8", 0)
    x = {k: v[:1] for k, v in x.items()}
    fac, tdp = catalog.facility(), float(x["trn4_tdp"][0])
    on_top = (1.0 + fac.system_overhead) * fac.pue
    for c, frac in ((1.0, 1.0), (0.0, 0.44), (0.5, 0.72), (np.nan, 1.0)):
        got = float(eng.facility_power_per_chip("trn4", x, np.array([c]))[0])
        assert got == pytest.approx(tdp * frac * on_top, rel=1e-12), c
    assert float(eng.facility_power_per_chip("trn4", x)[0]) == pytest.approx(tdp * on_top)


def test_serving_pools_report_their_compute_share_and_the_rack_its_pools_power():
    """Decode pool: 2 N x (output tokens/s per chip) over peak x GEMM efficiency; the
    disaggregated rack draws n_prefill P(prefill share) + n_decode P(decode share), below a
    rack of busy chips."""
    x, _ = eng.design("fp8", 0)
    x = {k: v[:1] for k, v in x.items()}
    kw = {"input_len": 2048, "output_len": 512, "tpot_s": 0.05, "ttft_s": 2.0}
    r = eng.serving_rates("llama3-70b", "trn4", "trn4-nvl72", x, **kw)
    hw = eng.member_hardware("trn4", "trn4-nvl72", "fp8", x)
    n = catalog.spec("llama3-70b").flop_params
    by_hand = 2.0 * n * r["decode"][0] / float(np.ravel(hw.peak_gemm * hw.gemm_eff)[0])
    assert r["decode_compute_share"][0] == pytest.approx(by_hand, rel=1e-9)
    assert 0.0 < r["decode_compute_share"][0] < r["prefill_compute_share"][0] <= 1.0
    p = trainium4._check("llama3-70b", "deepseek-v3", "llama3-70b", 2048, 512, 50.0, 2000.0,
                         "fp8", 1, 0, 4e6, 4e6, 100.0, ["serving"])
    rows = {row["label"]: row for row in trainium4.evaluate(x, p, ["serving"])}
    row = rows["trn4-nvl72 co-located"]
    share = r["colocated_compute_share"]
    power = 72 * eng.facility_power_per_chip("trn4", x, share)
    assert row["tokens_per_joule"][0] == pytest.approx(
        row["tokens_per_s_per_rack"][0] / power[0], rel=1e-9)
    assert power[0] < 72 * eng.facility_power_per_chip("trn4", x)[0]
