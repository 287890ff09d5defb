"""Tests of trnlab.workloads: specs, presets, FLOP/byte formulas and the sources' conventions."""

from __future__ import annotations

import csv
import math
import re
from dataclasses import fields, replace
from pathlib import Path

import array_api_strict as xs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trnlab import catalog
from trnlab import workloads as wl
from trnlab._paths import data_dir
from trnlab.calibration.cases import spec_from_case
from trnlab.catalog.models import FIELDS
from trnlab.errors import CatalogError, ParameterError
from trnlab.workloads import conventions as conv
from trnlab.workloads import traffic

ROOT = Path(__file__).resolve().parents[1]

# Published totals / active counts [1e9], from the model cards and papers (not from our data).
PUBLISHED = {
    "gpt3-175b": (175.0, None),
    "llama3-8b": (8.03, None),
    "llama3-70b": (70.6, None),
    "llama3-405b": (405.9, None),
    "mixtral-8x7b": (46.7, 12.9),
    "mixtral-8x22b": (141.0, 39.0),
    "deepseek-v3": (671.0, 37.0),
}
REQUIRED_IDS = {
    "gpt3-175b", "llama2-7b", "llama2-70b", "llama3-8b", "llama3-70b", "llama3-405b",
    "mixtral-8x7b", "mixtral-8x22b", "deepseek-v3",
    *(f"megatron-gpt-{t}" for t in ("1.7b", "3.6b", "7.5b", "18b", "39b", "76b", "145b",
                                     "310b", "530b", "1t")),
    *(f"megatron-core-gpt-{t}" for t in ("1.7b", "7.1b", "16b", "32b", "70b", "119b", "177b",
                                          "314b", "462b")),
}
DENSE_IDS = [m for m in catalog.model_ids() if not catalog.model(m).is_moe]
FLOP_FUNCS = [
    lambda sp, s: wl.model_flops_per_token(sp, s),
    lambda sp, s: wl.model_flops_per_token(sp, s, causal=False),
    lambda sp, s: wl.forward_flops_per_token(sp, s),
    lambda sp, s: wl.hardware_flops_per_token(sp, s, "selective"),
    lambda sp, s: wl.hardware_flops_per_token(sp, s, "full"),
    lambda sp, s: wl.decode_flops_per_token(sp, s),
    lambda sp, s: conv.megatron_core_flops_per_iteration(sp, s, s),
    lambda sp, s: conv.megatron2021_flops_per_iteration(sp, 8, s),
    lambda sp, s: conv.maxtext_legacy_tflops_per_device(sp, 2, s),
    lambda sp, s: conv.maxtext_flops_per_token(sp, s),
    lambda sp, s: wl.weight_bytes_per_layer(sp, 2, "moe" if sp.is_moe else "dense", s),
]


def _tolerance(published: float) -> float:
    """2 %, or half a unit of the published label's last digit (e.g. 1.7B = [1.65, 1.75))."""
    decimals = len(repr(published).split(".")[1]) if "." in repr(published) else 0
    return max(0.02 * published, 0.5 * 10.0**-decimals)


def _one_line(err: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


# ---------------------------------------------------------------------- presets
def test_required_presets_present():
    assert set(catalog.model_ids()) >= REQUIRED_IDS


@pytest.mark.parametrize("mid", catalog.model_ids())
def test_params_match_published(mid):
    spec = catalog.model(mid)
    assert spec.source.strip()
    total = spec.total_params / 1e9
    assert abs(total - spec.params_published) <= _tolerance(spec.params_published), total
    if spec.active_params_published is not None:
        active = spec.active_params / 1e9
        assert abs(active - spec.active_params_published) <= _tolerance(
            spec.active_params_published), active


@pytest.mark.parametrize(("mid", "published"), PUBLISHED.items())
def test_params_match_brief_values(mid, published):
    total, active = published
    spec = catalog.model(mid)
    assert spec.total_params / 1e9 == pytest.approx(total, rel=0.02)
    if active is not None:
        assert spec.active_params / 1e9 == pytest.approx(active, rel=0.02)
    else:
        assert spec.active_params == spec.total_params


@pytest.mark.parametrize("mid", catalog.model_ids())
def test_param_counts_split_sums_to_total(mid):
    spec = catalog.model(mid)
    counts = spec.param_counts()
    assert counts.total == spec.total_params
    assert (counts.experts > 0) == spec.is_moe
    assert (counts.lm_head == 0) == spec.tied_embeddings


def test_moe_structure_deepseek_v3():
    spec = catalog.model("deepseek-v3")
    assert (spec.dense_layers, spec.moe_layers) == (3, 58)
    assert spec.is_mla
    assert (spec.qk_head_dim, spec.v_dim) == (192, 128)


def test_loader_fields_cover_spec():
    assert set(FIELDS) == {f.name for f in fields(wl.TransformerSpec)} - {"name"}
    assert (data_dir() / "models").is_dir()


def test_unknown_model_id():
    with pytest.raises(CatalogError) as err:
        catalog.model("llama9-1t")
    msg = _one_line(err)
    assert "'llama9-1t'" in msg
    assert "llama3-405b" in msg


# ---------------------------------------------------------------------- TOML errors
GOOD = """
[model.tiny]
layers = 2
hidden = 64
heads = 4
ffn = 256
gated_mlp = true
vocab = 1000
tied_embeddings = false
params_published = 0.00026
source = "test"
"""


def _write(tmp_path, text):
    path = tmp_path / "models.toml"
    path.write_text(text)
    return path


def test_load_models_good(tmp_path):
    specs = catalog.load_models(_write(tmp_path, GOOD))
    spec = specs["tiny"]
    assert spec.kv_heads == 4
    assert spec.head_dim == 16
    assert spec.total_params == 2 * (4 * 64 * 64 + 3 * 64 * 256 + 2 * 64) + 2 * 1000 * 64 + 64


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("heads = 4\n", "heads = 4\nkv_heads = 3\n", "kv_heads"),
        ("layers = 2", "layers = 2.0", "layers"),
        ("layers = 2", "layers = -2", "layers"),
        ("gated_mlp = true", 'gated_mlp = "yes"', "gated_mlp"),
        ("vocab = 1000\n", "", "vocab"),
        ("ffn = 256", "ffn = 256\nffn_size = 3", "ffn_size"),
        ("ffn = 256", "ffn = 256\nmoe_experts = 8\nmoe_active = 9\nmoe_ffn = 32", "moe_active"),
        ("ffn = 256", "ffn = 0", "ffn"),
        ('source = "test"', "source = 3", "source"),
        ("hidden = 64", 'hidden = 64\nnorm = "batchnorm"', "norm"),
    ],
)
def test_load_models_bad_field(tmp_path, old, new, field):
    assert old in GOOD
    path = _write(tmp_path, GOOD.replace(old, new))
    with pytest.raises(CatalogError) as err:
        catalog.load_models(path)
    msg = _one_line(err)
    assert str(path) in msg
    assert "tiny" in msg
    assert field in msg


def test_load_models_syntax_error(tmp_path):
    path = _write(tmp_path, GOOD.replace("layers = 2", "layers = = 2"))
    with pytest.raises(CatalogError) as err:
        catalog.load_models(path)
    assert str(path) in _one_line(err)


def test_load_models_dotted_id_unquoted(tmp_path):
    path = _write(tmp_path, GOOD.replace("[model.tiny]", "[model.tiny-1.5b]"))
    with pytest.raises(CatalogError) as err:
        catalog.load_models(path)
    assert "quote" in _one_line(err)


def test_load_models_missing_file(tmp_path):
    with pytest.raises(CatalogError) as err:
        catalog.load_models(tmp_path / "nope.toml")
    assert "nope.toml" in _one_line(err)


# ---------------------------------------------------------------------- spec validation
@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kv_heads": 5}, "kv_heads"),
        ({"layers": 0}, "layers"),
        ({"hidden": 100, "heads": 3}, "head_dim"),
        ({"moe_experts": 8, "moe_active": 9, "moe_ffn": 64}, "moe_active"),
        ({"moe_experts": 8, "moe_active": 2}, "moe_ffn"),
        ({"moe_active": 2}, "moe_active"),
        ({"moe_experts": 8, "moe_active": 2, "moe_ffn": 64, "moe_dense_layers": 4}, "moe_dense_layers"),
        ({"kv_lora_rank": 64}, "qk_rope_head_dim"),
        ({"v_head_dim": 64}, "v_head_dim"),
        ({"gated_mlp": 1}, "gated_mlp"),
        ({"params_published": -1.0}, "params_published"),
    ],
)
def test_spec_validation(kwargs, field):
    base = {"name": "t", "layers": 4, "hidden": 256, "heads": 8, "ffn": 1024, "vocab": 1000}
    with pytest.raises(ParameterError) as err:
        wl.TransformerSpec(**{**base, **kwargs})
    msg = _one_line(err)
    assert field in msg
    assert "'t'" in msg


# ---------------------------------------------------------------------- FLOPs
def _mha_attention_term(spec, s):
    """12·L·a·d·s per token for fwd+bwd, written from the spec fields independently."""
    return 12 * spec.layers * spec.heads * spec.head_dim * s


@pytest.mark.parametrize("mid", ["llama3-70b", "gpt3-175b", "mixtral-8x7b"])
def test_causal_halves_the_seq_term(mid):
    spec = catalog.model(mid)
    s = np.array([512, 2048, 8192])
    full = wl.model_flops_per_token(spec, s, causal=False)
    half = wl.model_flops_per_token(spec, s, causal=True)
    zero = wl.model_flops_per_token(spec, 0)
    assert zero == wl.model_flops_per_token(spec, 0, causal=False) == 6 * spec.flop_params
    np.testing.assert_allclose(full - zero, _mha_attention_term(spec, s), rtol=1e-12)
    np.testing.assert_allclose(full - zero, 2 * (half - zero), rtol=1e-12)


@pytest.mark.parametrize("mid", catalog.model_ids())
def test_full_recompute_adds_one_forward(mid):
    spec = catalog.model(mid)
    s = np.array([1024.0, 4096.0])
    model = wl.model_flops_per_token(spec, s)
    assert np.all(wl.hardware_flops_per_token(spec, s, "none") == model)
    full = wl.hardware_flops_per_token(spec, s, "full")
    # one more forward of the decoder layers; the logit layer is not recomputed
    np.testing.assert_allclose(full - model,
                               wl.forward_flops_per_token(spec, s) - 2 * spec.vocab * spec.hidden,
                               rtol=1e-12)
    sel = wl.hardware_flops_per_token(spec, s, "selective")
    np.testing.assert_allclose(sel - model, wl.attention_flops_per_token(spec, s), rtol=1e-12)
    assert np.all(model < sel)
    assert np.all(sel < full)


def test_bad_recompute():
    with pytest.raises(ParameterError) as err:
        wl.hardware_flops_per_token(catalog.model("llama3-8b"), 4096, "partial")
    assert "recompute" in _one_line(err)


@pytest.mark.parametrize("mid", catalog.model_ids())
def test_gemms_sum_to_flop_params(mid):
    spec = catalog.model(mid)
    assert sum(g.flops_per_token for g in wl.gemms(spec)) == pytest.approx(2 * spec.flop_params)
    names = {g.name for g in wl.gemms(spec)}
    assert "logits" in names
    assert ("expert_up" in names) == spec.is_moe


def test_gemm_shapes_llama3_70b():
    spec = catalog.model("llama3-70b")
    shapes = {g.name: (g.k, g.n) for g in wl.layer_gemms(spec, "dense")}
    assert shapes["qkv"] == (8192, (64 + 2 * 8) * 128)
    assert shapes["attn_out"] == (64 * 128, 8192)
    assert shapes["mlp_up"] == (8192, 2 * 28672)
    assert shapes["mlp_down"] == (28672, 8192)
    with pytest.raises(ParameterError):
        wl.layer_gemms(spec, "sparse")


def test_expert_gemms_mixtral():
    spec = catalog.model("mixtral-8x7b")
    up = next(g for g in wl.layer_gemms(spec, "moe") if g.name == "expert_up")
    assert (up.m_per_token, up.count, up.layers) == (2 / 8, 8, 32)


def test_kv_bytes():
    assert catalog.model("llama3-70b").kv_bytes_per_token(2) == 2 * 80 * 8 * 128 * 2 == 327_680
    ds = catalog.model("deepseek-v3")
    for b in (1, 2):
        assert ds.kv_bytes_per_token(b) == 61 * (512 + 64) * b


def test_weight_bytes_moe_expected_experts():
    spec = catalog.model("mixtral-8x7b")
    attn = spec.attention_matmul_params_per_layer
    expert = 3 * spec.hidden * spec.moe_ffn
    one = wl.weight_bytes_per_layer(spec, 1, "moe", 1)
    assert one == pytest.approx(attn + spec.hidden * 8 + 2 * expert)
    everything = wl.weight_bytes_per_layer(spec, 1, "moe")
    assert everything == pytest.approx(attn + spec.hidden * 8 + 8 * expert)
    many = wl.weight_bytes_per_layer(spec, 1, "moe", np.array([1, 4, 64, 4096]))
    assert np.all(np.diff(many) > 0)
    assert many[-1] == pytest.approx(everything)


def test_activation_bytes():
    spec = catalog.model("llama3-8b")
    ops = {op.name: op for op in wl.memory_bound_ops(spec)}
    assert ops["mlp_act"].read == 2 * 14336
    assert ops["mlp_act"].write == 14336
    assert wl.activation_bytes_per_token_per_layer(spec, 2) == 2 * sum(
        op.read + op.write for op in ops.values())


@pytest.mark.parametrize("mid", ["llama3-70b", "deepseek-v3", "mixtral-8x7b", "gpt3-175b",
                                 "qwen3-235b-a22b"])
def test_stored_activations_keep_each_gemm_input_once(mid):
    spec = catalog.model(mid)
    for kind in ("dense", "moe"):
        if not (spec.dense_layers if kind == "dense" else spec.moe_layers):
            continue
        kept = traffic.stored_activations(spec, kind)
        names = [t.name for t in kept]
        assert len(names) == len(set(names))
        assert {t.store for t in kept} <= set(traffic.STORES)
        # every GEMM reads one kept tensor; the casts of all GEMMs' inputs are the GEMMs' k·m
        gemm_in = [t for t in kept if t.store == "gemm_input"]
        assert sum(t.elems * t.readers for t in gemm_in) == sum(
            g.k * g.m_per_token * g.count for g in wl.layer_gemms(spec, kind))
        assert {traffic.GEMM_INPUT[g.name] for g in wl.layer_gemms(spec, kind)} == \
            {t.name for t in gemm_in}
        # nothing a backward does not need: residual-add inputs, RoPE inputs, dispatch copies
        assert not any(re.search("residual|rope|dispatch_in", n) for n in names)
        by = {t.name: t.elems for t in kept}
        assert by["v"] == spec.kv_heads * spec.v_dim  # GQA/MQA: V at its own head count
        assert by["k"] == spec.kv_heads * spec.qk_head_dim
        assert by["attn_core_out"] == spec.heads * spec.v_dim
        assert [t.name for t in kept if t.attention_core] == ["attn_core_out", "lse"]


def test_stored_activation_bytes_refuse_bad_input():
    spec = catalog.model("llama3-8b")
    with pytest.raises(ParameterError, match="recompute"):
        traffic.stored_activation_bytes_per_token_per_layer(spec, 2, 2, 4, "some")
    with pytest.raises(ParameterError, match="layer_kind"):
        traffic.stored_activations(spec, "mlp")
    with pytest.raises(ParameterError, match="numbers"):
        traffic.stored_activation_bytes_per_token_per_layer(spec, np.array([2.0]), 2, 4)


@pytest.mark.parametrize("mid", ["llama3-405b", "deepseek-v3", "mixtral-8x22b", "gpt3-175b"])
@pytest.mark.parametrize("func", FLOP_FUNCS)
def test_numpy_and_array_api_strict_agree(mid, func):
    spec = catalog.model(mid)
    seq = [1, 128, 2048, 32768]
    got_np = func(spec, np.asarray(seq))
    got_xs = func(spec, xs.asarray(seq))
    assert isinstance(got_xs, type(xs.asarray(1.0)))
    np.testing.assert_array_equal(np.asarray(got_np), np.asarray(xs.asarray(got_xs, copy=True)))
    scalar = func(spec, seq[2])
    assert isinstance(scalar, float)
    assert scalar == got_np[2]


def test_bad_array_argument():
    with pytest.raises(ParameterError):
        wl.model_flops_per_token(catalog.model("llama3-8b"), "4096")
    with pytest.raises(ParameterError):
        wl.model_flops_per_token(catalog.model("llama3-8b"), True)


@settings(max_examples=60, deadline=None)
@given(mid=st.sampled_from(catalog.model_ids()), causal=st.booleans(),
       seqs=st.lists(st.integers(1, 1 << 20), min_size=2, max_size=8, unique=True))
def test_model_flops_increase_with_seq_len(mid, causal, seqs):
    spec = catalog.model(mid)
    s = np.sort(np.asarray(seqs))
    flops = wl.model_flops_per_token(spec, s, causal=causal)
    assert np.all(np.diff(flops) > 0)
    assert np.all(flops > 6 * spec.flop_params)


# ---------------------------------------------------------------------- conventions
@settings(max_examples=40, deadline=None)
@given(L=st.integers(1, 128), heads=st.sampled_from([8, 16, 32, 96]),
       d=st.sampled_from([64, 128]), V=st.integers(1000, 300_000),
       s=st.integers(128, 65536), B=st.integers(1, 4096))
def test_megatron_core_mha_identity(L, heads, d, V, s, B):
    h = heads * d
    spec = wl.TransformerSpec(name="mha", layers=L, hidden=h, heads=heads, ffn=4 * h, vocab=V)
    got = conv.megatron_core_flops_per_iteration(spec, B, s)
    want = 72 * B * s * L * h**2 * (1 + s / (6 * h) + V / (12 * L * h))
    assert got == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("mid", DENSE_IDS)
def test_megatron_core_is_noncausal_model_flops(mid):
    """Dense GQA/SwiGLU: Megatron-Core's formula = 6·N + 12·L·a·d·s (no causal halving)."""
    spec = catalog.model(mid)
    s = np.array([2048, 4096])
    per_token = conv.megatron_core_flops_per_iteration(spec, 3, s) / (3 * s)
    np.testing.assert_allclose(per_token, wl.model_flops_per_token(spec, s, causal=False),
                               rtol=1e-12)


@pytest.mark.parametrize("mid", [m for m in catalog.model_ids() if m.startswith("megatron-gpt-")])
def test_megatron2021_is_full_recompute_hw_flops(mid):
    spec = catalog.model(mid)
    s = np.array([2048.0])
    got = conv.megatron2021_flops_per_iteration(spec, 512, s)
    hw = wl.hardware_flops_per_token(spec, s, "full", causal=False) * 512 * s
    np.testing.assert_allclose(got, hw, rtol=1e-12)


@pytest.mark.parametrize("mid", catalog.model_ids())
def test_maxtext_matches_causal_model_flops(mid):
    spec = catalog.model(mid)
    s = np.array([2048, 8192])
    np.testing.assert_allclose(conv.maxtext_flops_per_token(spec, s),
                               wl.model_flops_per_token(spec, s, causal=True), rtol=1e-12)


def test_maxtext_legacy_attention_term():
    spec = catalog.model("llama2-70b")
    b, s = 4, np.array([2048.0, 4096.0])
    tflops = conv.maxtext_legacy_tflops_per_device(spec, b, s)
    weights = 6 * spec.total_params * s * b
    attn = 3 * wl.attention_flops_per_token(spec, s, causal=True) * s * b
    np.testing.assert_allclose(tflops * 1e12, weights + attn, rtol=1e-12)
    assert conv.nemo_flops_per_iteration(spec, 2, 4096) == conv.megatron_core_flops_per_iteration(
        spec, 2, 4096)


# ---------------------------------------------------------------------- calibration cases
@pytest.fixture(scope="module")
def cases():
    with (data_dir() / "measurements" / "cases.csv").open(newline="", encoding="utf-8") as fh:
        return {row["case_id"]: row for row in csv.DictReader(fh)}


def test_from_case_megatron_rows_match_presets(cases):
    for cid, row in cases.items():
        if cid.startswith("T-MLM21-"):
            family = "megatron-gpt"
        elif cid.startswith("T-MCORE-H100-0"):
            family = "megatron-core-gpt"
        else:
            continue
        spec = spec_from_case(row)
        preset = next(catalog.model(m) for m in catalog.model_ids() if m.startswith(family + "-")
                      and (catalog.model(m).layers, catalog.model(m).hidden) == (spec.layers, spec.hidden))
        # the case row knows no biases/norm type/positions; the matmul weights must agree
        assert spec.flop_params == preset.flop_params, cid
        assert spec.heads == preset.heads
        assert "reader defaults" in spec.source or family == "megatron-gpt"


def test_from_case_moe_row(cases):
    row = cases["I-TRTLLM-H100-Qwen3-235B-A22B-TP8-1000-1000"]
    spec = spec_from_case(row)
    preset = catalog.model("qwen3-235b-a22b")
    assert spec.moe_shared_experts == 0  # from "arch: no shared experts"
    assert spec.total_params == preset.total_params
    assert spec.active_params == preset.active_params


def test_from_case_missing_vocab(cases):
    row = cases["T-NEMO2407-03"]
    with pytest.raises(CatalogError) as err:
        spec_from_case(row)
    assert "vocab" in _one_line(err)
    spec = spec_from_case(row, {"vocab": 50257})
    assert spec.vocab == 50257
    assert "vocab=50257" in spec.source


def test_nemo_tflops_column_matches_megatron_core(cases):
    """The calibration README's check: NeMo TFLOP/s ÷ tokens/s = the Megatron-Core formula."""
    for cid, row in cases.items():
        if not cid.startswith("T-NEMO2407-"):
            continue
        spec = spec_from_case(row, {} if row["vocab"] else {"vocab": 50257})
        s = int(row["seq_len"])
        published = float(re.search(r"model TFLOP/s/GPU = ([\d.]+)", row["notes"]).group(1))
        per_token = conv.nemo_flops_per_iteration(spec, 1, s) / s
        assert per_token * float(row["value"]) / 1e12 == pytest.approx(published, rel=2e-3), cid


def test_maxtext_llama2_70b_mfu(cases):
    """README: 692 tok/s/device gives 64.6 % of 459 TF with causal halving, 67.0 % without."""
    row = cases["T-MAXTEXT-V5P-L2-70B"]
    spec = spec_from_case(row)
    s = int(row["seq_len"])
    causal = 692 * conv.maxtext_flops_per_token(spec, s) / 459e12
    noncausal = 692 * wl.model_flops_per_token(spec, s, causal=False) / 459e12
    assert round(causal, 3) == 0.646
    assert round(noncausal, 3) == 0.670


def test_parse_arch_notes_formats():
    row = {
        "case_id": "X-1", "model": "toy-moe", "layers": "6", "hidden": "512", "heads": "8",
        "kv_heads": "", "head_dim": "", "ffn": "2048", "vocab": "1000", "moe_experts": "16",
        "moe_active": "2", "moe_ffn": "256", "gated_mlp": "true",
        "notes": "[trust A] x || Normalization: foo; arch: 2 shared experts; arch: dense_layers=1;"
                 " arch: kv_lora_rank=128, qk_rope_head_dim=32, qk_nope_head_dim=64, "
                 "v_head_dim=64 || Original: arch: 9 shared experts",
    }
    spec = spec_from_case(row)
    assert (spec.moe_shared_experts, spec.moe_dense_layers) == (2, 1)
    assert spec.is_mla
    assert spec.head_dim == 96
    assert spec.kv_bytes_per_token(1) == 6 * (128 + 32)
    bad = {**row, "layers": "six"}
    with pytest.raises(CatalogError) as err:
        spec_from_case(bad)
    assert "layers" in _one_line(err)
    assert "X-1" in str(err.value)


def test_replace_revalidates():
    spec = catalog.model("llama3-8b")
    assert replace(spec, kv_heads=4).kv_bytes_per_token(2) == spec.kv_bytes_per_token(2) / 2
    with pytest.raises(ParameterError):
        replace(spec, kv_heads=5)
    assert math.isclose(replace(spec, vocab=1).total_params,
                        spec.total_params - 2 * (128256 - 1) * 4096)


def test_memory_bound_op_flops_follow_their_arithmetic():
    """An RMSNorm does 4 FLOPs per element it reads, a residual add 1 per two read, a dispatch
    copy none; every op of every preset has a kind."""
    from trnlab.workloads.traffic import ElementwiseOp

    assert ElementwiseOp("attn_norm", 4096, 4096).flops == 4 * 4096
    assert ElementwiseOp("mlp_residual", 2 * 4096, 4096).flops == 4096
    assert ElementwiseOp("moe_dispatch", 8 * 4096, 8 * 4096).flops == 0
    with pytest.raises(ParameterError):
        _ = ElementwiseOp("mystery", 1, 1).flops
    for mid in catalog.model_ids():
        spec = catalog.model(mid)
        for kind in ("dense", "moe"):
            assert all(op.flops >= 0 for op in wl.memory_bound_ops(spec, kind))
