"""Layout search, validation against published measurements, calibration, and their CLIs."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from trnlab import catalog
from trnlab._paths import data_dir
from trnlab.calibration import fit, validate
from trnlab.cli import main
from trnlab.engine import layouts, training
from trnlab.engine.hardware import train_calibration
from trnlab.engine.layouts import REASONS, enumerate_layouts
from trnlab.errors import CatalogError, ParameterError, TrnlabError

CASES = data_dir() / "measurements" / "cases.csv"


@pytest.fixture(scope="module")
def search_405b():
    return training.search("llama3-405b", "trn3-ultraserver", 16384, global_batch=2048, top=10)


def test_search_is_ranked_valid_and_accounts_for_every_layout(search_405b):
    ds = search_405b
    speed = ds["tokens_per_s_per_chip"].values
    assert np.all(np.diff(speed) <= 0)
    assert (ds["reason"] == 0).all() and ds["fits"].all()
    assert (ds["tp"] * ds["pp"] * ds["dp"] * ds["cp"] == 16384).all()
    invalid = json.loads(ds.attrs["invalid_by_reason"])
    assert ds.attrs["n_valid"] + sum(invalid.values()) == ds.attrs["n_evaluated"]
    assert set(invalid) <= set(REASONS.values())
    assert json.loads(ds.attrs["best"])["tokens_per_s_per_chip"] == pytest.approx(speed[0])
    assert ((ds["mfu"] > 0) & (ds["mfu"] <= 1)).all()
    for name, var in ds.data_vars.items():
        assert "units" in var.attrs and "long_name" in var.attrs, name


def test_pareto_front_is_not_dominated(search_405b):
    ds = search_405b
    front = ds.where(ds["pareto"], drop=True)
    assert front.sizes["config"] >= 1
    mem, speed = ds["mem_per_chip"].values, ds["tokens_per_s_per_chip"].values
    for m, s in zip(front["mem_per_chip"].values, front["tokens_per_s_per_chip"].values,
                    strict=True):
        assert not np.any((mem <= m) & (speed > s) & ((mem < m) | (speed > s)))


def test_tp_stays_in_the_scale_up_domain_unless_allowed():
    ds = training.search("llama3-70b", "dgx-h100", 64, global_batch=256, top=500)
    assert int(ds["tp"].max()) <= 8
    assert "tp spans more than one scale-up domain" in ds.attrs["invalid_by_reason"]
    free = training.search("llama3-70b", "dgx-h100", 64, global_batch=256, top=500,
                           tp_outside_domain=True)
    assert "tp spans" not in free.attrs["invalid_by_reason"]


def test_enumeration_is_complete():
    spec = catalog.model("llama3-8b")
    cfg = enumerate_layouts(spec, 64, micro_batches=[1], zeros=[1], recomputes=[0], vpps=[1])
    triples = {(int(a), int(b), int(c)) for a, b, c in zip(cfg["tp"], cfg["pp"], cfg["cp"],
                                                            strict=True)}
    expected = {(t, p, c) for t in (1, 2, 4, 8, 16, 32, 64) for p in (1, 2, 4, 8, 16, 32)
                for c in (1, 2, 4, 8, 16, 32, 64) if 64 % (t * p * c) == 0}
    assert triples == expected


def test_more_memory_or_smaller_models_never_slow_the_best_layout():
    small = training.search("llama3-8b", "dgx-h100", 64, global_batch=256)
    big = training.search("llama3-70b", "dgx-h100", 64, global_batch=256)
    assert small["tokens_per_s_per_chip"][0] > 5 * big["tokens_per_s_per_chip"][0]


def test_search_refuses_bad_input():
    with pytest.raises(CatalogError, match="llama9"):
        training.search("llama9", "trn3-ultraserver", 144)
    with pytest.raises(CatalogError, match="system id = 'trn9-pod'"):
        training.search("llama3-8b", "trn9-pod", 144)
    with pytest.raises(ParameterError, match="precision = 'fp7'"):
        training.search("llama3-8b", "trn3-ultraserver", 144, precision="fp7")
    with pytest.raises(ParameterError, match="n_chips = 0"):
        training.search("llama3-8b", "trn3-ultraserver", 0)


def test_cli_search(capsys):
    assert main(["search", "--model", "llama3-70b", "--system", "trn3-ultraserver",
                 "--chips", "1152", "--top", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["layouts"]) == 3
    assert out["layouts"][0]["tokens_per_s_per_chip"] >= out["layouts"][1]["tokens_per_s_per_chip"]
    assert main(["search", "--model", "nope", "--system", "trn3-ultraserver", "--chips", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope" in err
    assert main(["search", "--model", "llama3-8b", "--system", "trn3-ultraserver", "--chips", "8",
                 "--optimizer-offload"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "optimizer_offload = True: not on chip trn3" in err


def test_search_with_the_optimizer_on_the_host_cpu():
    """Llama 3 8B on 8 H200, ZeRO-1: with the Adam update on the host CPU the step grows by the
    update in host DRAM and the weights' return over the host link (less the update in HBM),
    memory falls by the gradients and the Adam states; a chip without a host DRAM figure is
    refused with one line, as is the flag from the CLI (exit code 2)."""
    kw = {"global_batch": 8, "seq_len": 8192, "top": 1, "micro_batches": (1,), "zeros": (1,),
          "vpps": (1,), "recomputes": ("none",)}
    chip = training.search("llama3-8b", "dgx-h200", 8, **kw)
    host = training.search("llama3-8b", "dgx-h200", 8, optimizer_offload=True, **kw)
    assert (chip.attrs["optimizer_offload"], host.attrs["optimizer_offload"]) == (0, 1)
    assert int(host["tp"][0]) == int(chip["tp"][0]) == 1  # the same layout: dp 8
    params = catalog.spec("llama3-8b", "test").total_params / 8  # ZeRO-1 shard per chip
    h200, cal = catalog.chip("h200"), train_calibration()
    added = params * 32 / (cal.host_adam_eff * h200.host_memory_bandwidth) \
        + params * 2 / h200.host_bandwidth - params * 32 / (h200.hbm_bandwidth * cal.mem_eff)
    assert float(host["step_time"][0] - chip["step_time"][0]) == pytest.approx(added, rel=1e-6)
    freed = catalog.spec("llama3-8b", "test").total_params * 4 + params * 12
    assert float(chip["mem_per_chip"][0] - host["mem_per_chip"][0]) == pytest.approx(freed,
                                                                                      rel=1e-6)
    with pytest.raises(ParameterError, match="optimizer_offload = True: not on chip trn3"):
        training.search("llama3-8b", "trn3-ultraserver", 8, optimizer_offload=True)


def test_search_with_fp8_attention_speeds_only_the_attention_core():
    """Llama 3 70B at 8K on 64 H100: the same layouts, each at least as fast with the attention
    core in FP8; the best one gains less than the attention core's share of its step."""
    kw = {"precision": "fp8", "top": 1, "micro_batches": (1,), "zeros": (1,), "vpps": (1,)}
    bf16 = training.search("llama3-70b", "dgx-h100", 64, **kw)
    fp8 = training.search("llama3-70b", "dgx-h100", 64, attention_precision="fp8", **kw)
    assert fp8.attrs["attention_precision"] == "fp8"
    assert bf16.attrs["n_valid"] == fp8.attrs["n_valid"]
    gain = float(fp8["tokens_per_s_per_chip"][0] / bf16["tokens_per_s_per_chip"][0])
    assert 1.0 < gain < 1.0 / (1.0 - 0.5)  # attention is well under half of a 70B 8K step


# ---------------------------------------------------------------------------- validation
#: the sources the first calibration was built on (dense models, published layouts)
FIRST_SOURCES = ("T-MLM21", "T-MCORE-H100", "T-NEMO2407", "T-MAXTEXT-V5P-", "T-TRN1")


def test_validation_meets_the_accuracy_target_with_the_committed_parameters():
    preds = validate.predict(validate.read_cases(CASES))
    training_preds = [p for p in preds if p.case_id.startswith("T-")]
    predicted = [p for p in training_preds if np.isfinite(p.predicted)]
    assert len(predicted) >= 0.95 * len(training_preds)
    assert all(p.why for p in training_preds if not np.isfinite(p.predicted))  # a reason
    assert validate.mape(training_preds) <= 0.20
    conv = validate.load_conventions()  # (held-out rows with those prefixes, e.g. T-TRN1H, are
    # measurements the first calibration never saw)
    first = [p for p in training_preds if p.case_id.startswith(FIRST_SOURCES)
             and not validate.held_out(validate.source_of(p.case_id, conv), conv)]
    assert all(np.isfinite(p.predicted) for p in first)
    assert validate.mape(first) <= 0.15
    inference_preds = [p for p in preds if p.case_id.startswith("I-")]
    assert all(np.isfinite(p.predicted) for p in inference_preds)
    assert validate.mape(inference_preds) <= 0.15


def test_sources_flop_conventions_are_applied():
    rows = {r["case_id"]: r for r in validate.read_cases(CASES)}
    conv = validate.load_conventions()
    row = rows["T-MLM21-05"]  # Megatron 2021 counts the recompute forward: HFU-like
    hw_value, _, layout = validate.predict_training(row, conv["T-MLM21"],
                                                      training.load_training())
    model_row = {**row, "metric": "model_tflops_per_chip"}
    model_value, _, _ = validate.predict_training(model_row, {**conv["T-MLM21"],
                                                               "flops": "megatron_core"},
                                                    training.load_training())
    assert layout["recompute"] == 2
    # 96 B s L h^2 (1 + s/6h + V/16Lh) vs 72 B s L h^2 (1 + s/6h + V/12Lh): about 4/3
    assert hw_value / model_value == pytest.approx(4 / 3, rel=0.02)


def test_cli_validate_writes_all_columns(tmp_path, capsys):
    out = tmp_path / "pred.csv"
    assert main(["validate", str(CASES), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "overall" in printed and "MAPE" in printed
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[-3:] == ["predicted", "rel_error", "why"]
    assert len(rows) == len(validate.read_cases(CASES))
    first = rows[0]
    assert float(first["rel_error"]) == pytest.approx(
        float(first["predicted"]) / float(first["value"]) - 1, abs=1e-4)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: t.replace("case_id,kind", "case,kind", 1), "header: missing column 'case_id'"),
    (lambda t: t.replace(",512,,fp16,full,", ",512x,,fp16,full,", 1), "global_batch = '512x'"),
    (lambda t: t.replace(",a100-sxm-80gb,dgx-a100,ib-hdr-200,32,", ",a100-sxm-80gb,dgx-a100,"
                         "ib-hdr-200,thirty-two,", 1), "n_chips = 'thirty-two'"),
])
def test_malformed_case_file_is_one_line_exit_2_no_output(tmp_path, capsys, edit, message):
    bad = tmp_path / "bad.csv"
    bad.write_text(edit(CASES.read_text()))
    out = tmp_path / "pred.csv"
    assert main(["validate", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not out.exists()
    with pytest.raises(TrnlabError):
        validate.read_cases(bad)


# ---------------------------------------------------------------------------- calibration
@pytest.mark.slow
def test_fit_improves_a_subset_and_writes_provenance(tmp_path):
    rows = [r for r in validate.read_cases(CASES) if r["case_id"].startswith("T-MCORE-H100-0")]
    params = training.load_training()
    start = params.replace(gemm_eff_nvidia=0.9, layer_comm_overlap=0.2)
    before = validate.mape(validate.predict(rows, start))
    fitted, names = fit.fit(rows, start)
    after_preds = validate.predict(rows, fitted)
    assert validate.mape(after_preds) < before / 2
    assert "gemm_eff_nvidia" in names and "gemm_eff_google" not in names
    copy = tmp_path / "training.toml"
    shutil.copy(params.path, copy)
    path = fit.write_params(fitted, names, after_preds, path=copy)
    reloaded = training.load_training(path)
    assert reloaded.gemm_eff["nvidia"].value == pytest.approx(fitted.gemm_eff["nvidia"].value,
                                                              rel=1e-3)
    assert reloaded.gemm_eff["nvidia"].status == "derived"
    assert reloaded.gemm_eff["nvidia"].sources == ("FIT-TRAIN",)
    assert reloaded.fit["cases"] == len(rows)


def test_uncalibrated_vendor_borrows_its_proxys_framework_efficiency():
    """A training.toml without AMD's fitted efficiency: data/perf/chip_efficiency.toml sends
    it to NVIDIA's (the same PyTorch/Megatron stacks), scaled by the chips' large-GEMM
    microbenchmark fractions, MI300X 0.511 over H100 0.803 (MAMF)."""
    import dataclasses

    from trnlab.catalog.params import load_chip_efficiency

    fitted, ce = training.load_training(), load_chip_efficiency()
    params = dataclasses.replace(fitted, gemm_eff={k: v for k, v in fitted.gemm_eff.items()
                                                   if k != "amd"})
    assert params.vendor_eff("amd") == params.gemm_eff["default"].si  # the table's fallback
    hw = training.hardware("mi300x", "mi300x-8", "bf16", params)
    ratio = ce.chips["mi300x"]["gemm"].si / ce.chips["h100-sxm"]["gemm"].si
    assert ratio == pytest.approx(0.511 / 0.803)
    assert hw.gemm_eff == pytest.approx(params.gemm_eff["nvidia"].si * ratio, rel=1e-12)
    assert catalog.chip("mi300x").vendor == "amd"


def test_default_global_batch_admits_odd_chip_counts():
    assert layouts.default_global_batch(16384, 8192) == 2048
    assert layouts.default_global_batch(1152, 8192) == 9 * 256
    assert layouts.default_global_batch(3 * 2**12, 8192) == 3 * 512
    assert layouts.default_global_batch(1_000_000, 8192) == 15625


def test_search_with_an_expert_tp():
    """Mixtral 8x7B on 16 H100: with expert-TP 2 every kept expert-parallel layout has
    ep x 2 tiling tp x dp x cp (rule 5 marks more layouts), and a
    layout valid under both runs at another speed (the experts split, the dispatcher's
    gathers); 0 takes the TP size; a dense model or a negative size is refused with one line,
    exit 2 from the CLI, whose JSON carries the size."""
    kw = {"global_batch": 64, "seq_len": 4096, "top": 400, "micro_batches": (1,),
          "zeros": (1,), "vpps": (1,), "recomputes": ("none", "full")}
    one = training.search("mixtral-8x7b", "dgx-h100", 16, **kw)
    two = training.search("mixtral-8x7b", "dgx-h100", 16, expert_tp=2, **kw)
    tp_size = training.search("mixtral-8x7b", "dgx-h100", 16, expert_tp=0, **kw)
    assert (one.attrs["expert_tp"], two.attrs["expert_tp"], tp_size.attrs["expert_tp"]) == (1, 2, 0)
    rule5 = [json.loads(ds.attrs["invalid_by_reason"]).get(REASONS[5], 0) for ds in (one, two)]
    assert rule5[1] > rule5[0]  # (memory may admit more: a chip holds 1/etp of its experts)
    for ds, etp in ((two, 2), (tp_size, None)):
        ep, tp, dp, cp = (ds[k].values for k in ("ep", "tp", "dp", "cp"))
        size = tp if etp is None else etp
        folded = ep > 1
        assert folded.any() and ((tp * dp * cp)[folded] % (ep * size)[folded] == 0).all()
    key = ("tp", "pp", "dp", "cp", "ep", "recompute")

    def speeds(ds):
        return {tuple(int(ds[k].values[i]) for k in key): float(ds["step_time"].values[i])
                for i in range(ds.sizes["config"])}

    common = {c: t for c, t in speeds(two).items()
              if c in speeds(one) and c[1] == 1 and c[0] == 2 and c[4] > 1}
    assert common and all(t != speeds(one)[c] for c, t in common.items())
    with pytest.raises(ParameterError, match="expert_tp = 2: 1 for a dense model"):
        training.search("llama3-8b", "dgx-h100", 16, expert_tp=2)
    with pytest.raises(ParameterError, match="expert_tp = -1"):
        training.search("mixtral-8x7b", "dgx-h100", 16, expert_tp=-1)


def test_cli_search_expert_tp(capsys):
    assert main(["search", "--model", "llama3-8b", "--system", "dgx-h100", "--chips", "8",
                 "--expert-tp", "2"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expert_tp = 2" in err
    assert main(["search", "--model", "mixtral-8x7b", "--system", "dgx-h100", "--chips", "16",
                 "--global-batch", "64", "--seq", "4096", "--top", "2", "--expert-tp", "2",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["expert_tp"] == 2 and len(out["layouts"]) == 2
    assert main(["search", "--model", "mixtral-8x7b", "--system", "dgx-h100", "--chips", "16",
                 "--global-batch", "64", "--seq", "4096", "--top", "1", "--expert-tp", "0"]) == 0
    assert ", expert-TP = TP:" in capsys.readouterr().out
