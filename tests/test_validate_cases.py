"""`trnlab validate` on imperfect case files (empty fields, unknown ids, malformed cells, bad
output paths) and the reproducibility of `trnlab calibrate` (fit.run on a small subset)."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import re
import shutil
from pathlib import Path

import pytest
from _files import stacks_file

from trnlab import catalog
from trnlab._paths import data_dir
from trnlab.calibration import defaults, fit, validate
from trnlab.catalog.params import load_chip_efficiency, load_serving, load_stacks, load_training
from trnlab.cli import main
from trnlab.engine import hardware as engine_hardware
from trnlab.engine.layouts import default_global_batch
from trnlab.errors import CatalogError, ParameterError
from trnlab.workloads import TransformerSpec, conventions

CASES = data_dir() / "measurements" / "cases.csv"
ROWS = {r["case_id"]: r for r in validate.read_cases(CASES)}


def _write(rows: list[dict[str, str]], path: Path) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=validate.SCHEMA_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    path.write_text(buf.getvalue(), encoding="utf-8")
    return path


def _edited(tmp_path: Path, case_id: str, **cells: str) -> Path:
    """A copy of the committed case file with some cells of one row changed."""
    rows = [dict(r) for r in ROWS.values()]
    row = next(r for r in rows if r["case_id"] == case_id)
    row.update(cells)
    return _write(rows, tmp_path / "cases.csv")


_BASELINE: dict[str, bool] = {}


def _predicted_ids() -> dict[str, bool]:
    """Whether each committed row is predicted (computed once)."""
    if not _BASELINE:
        _BASELINE.update({p.case_id: math.isfinite(p.predicted)
                          for p in validate.predict(ROWS.values())})
    return _BASELINE


def _predict(path: Path, case_id: str) -> validate.Prediction:
    preds = validate.predict(validate.read_cases(path))
    before = _predicted_ids()
    assert all(math.isfinite(p.predicted) == before[p.case_id] for p in preds
               if p.case_id != case_id), \
        "a changed row must not change whether the others are predicted"
    return next(p for p in preds if p.case_id == case_id)


# ------------------------------------------------------------------ one test per empty field
@pytest.mark.parametrize(("case_id", "blank", "expected"), [
    ("T-MLM21-01", ("global_batch",),
     f"global_batch: default {default_global_batch(32, 2048)} (rule: the engine's default"),
    ("T-NEMO2407-11", ("seq_len",), "seq_len: default 8192 (rule: pre-training context of "
                                    "preset llama3-8b"),
    ("T-NEMO2407-01", ("seq_len",), "seq_len: default 2048 (rule: no preset of the same shape"),
    ("T-MAXTEXT-V5P-L2-70B", ("vocab",), "vocab: default 32000 (rule: preset llama2-70b"),
    ("T-MAXTEXT-V5P-32B-64", ("vocab",), "vocab: default 51200 (rule: no declared vocab"),
    ("T-NEMO2407-05", ("vocab",), "vocab: default 51200 (rule: declared by the source"),
    ("T-MLM21-05", ("tp", "pp", "dp"), "dp: default "),
    ("T-MLM21-05", ("pp", "dp"), "pp: default 1 (rule: 1, tp is stated)"),
    ("T-MLM21-05", ("pp",), "pp: default 2 (rule: n_chips / (tp x dp x cp), tp and dp are stated"),
    ("T-NEMO2407-11", ("cp", "dp"), "cp: default 1 (rule: 1 unless stated"),
    ("T-NEMO2407-11", ("cp",), "cp: default 2 (rule: n_chips / (tp x pp x dp), they are stated"),
    ("T-MLM21-05", ("n_chips",), "n_chips: default 512 (rule: parallel degrees 512"),
    ("T-MLM21-05", ("precision",), "precision: default bf16"),
    ("T-MLM21-05", ("system",), "system: default dgx-a100"),
    ("T-MLM21-05", ("kind",), "kind: default training (rule: case_id prefix T-"),
    ("T-MLM21-05", ("kv_heads", "ffn", "gated_mlp"), "ffn: default 32768 (rule: 4 x hidden)"),
    ("I-TRTLLM-H100-Llama318B-TP1-128-128", ("input_len",),
     "input_len: default 2048 (rule: no standard benchmark named"),
    ("I-TRTLLM-H100-Llama318B-TP1-128-128", ("output_len",), "output_len: default 512"),
    ("I-TRTLLM-H100-Llama3370B-TP2-2048-128", ("tp",), "tp: default 2 (rule: the fastest tp of"),
    ("I-TRN1-L3-70B-B4-128-1024", ("concurrency",), "concurrency: default offline"),
    ("I-TRN1-L3-70B-B4-128-1024", ("tp",), "tp: default 32 (rule: one TP group"),
])
def test_an_empty_field_takes_its_rule_and_why_says_so(tmp_path, case_id, blank, expected):
    pred = _predict(_edited(tmp_path, case_id, **dict.fromkeys(blank, "")), case_id)
    assert math.isfinite(pred.predicted) and pred.predicted > 0, pred.why
    assert expected in pred.why
    assert expected in "; ".join(pred.defaults)
    for col in blank:
        assert re.search(rf"\b{col}: default ", pred.why), col
    if "tp" in blank and case_id.startswith("T-"):
        assert re.search(r"\btp: default \d+ \(rule: fastest fitting layout\)", pred.why)
        assert re.search(r"\bpp: default \d+ \(rule: fastest fitting layout\)", pred.why)


def test_a_named_benchmark_gives_its_published_lengths(tmp_path):
    case = "I-TRTLLM-H100-Llama318B-TP1-128-128"
    path = _edited(tmp_path, case, input_len="", output_len="",
                   metric_note="output tokens/s, LLMPerf leaderboard run")
    pred = _predict(path, case)
    assert "input_len: default 550 (rule: LLMPerf leaderboard" in pred.why
    assert "output_len: default 150 (rule: LLMPerf leaderboard" in pred.why


def test_every_optional_field_empty_at_once_is_still_predicted(tmp_path):
    keep = {"case_id", "kind", "source", "trust", "chip", "model", "layers", "hidden", "heads",
            "metric", "value", "metric_note", "notes", "n_chips", "params_b",
            "moe_experts", "moe_active", "moe_ffn"}  # an MoE's notes name its shared experts
    rows = [{c: (v if c in keep else "") for c, v in r.items()} for r in ROWS.values()
            if r["metric"]]
    preds = validate.predict(validate.read_cases(_write(rows, tmp_path / "cases.csv")))
    assert all(math.isfinite(p.predicted) for p in preds), [p.why for p in preds
                                                           if not math.isfinite(p.predicted)]


def test_committed_rows_are_predicted_as_before_and_name_their_defaults():
    preds = {p.case_id: p for p in validate.predict(ROWS.values())}
    # a row the source could not normalise (schema: metric and value empty) carries that reason
    unnormalised = {c for c, r in ROWS.items() if not r["metric"]}
    assert unnormalised == {"T-TPURV5P-GPT3-175B-INT8-512C", "T-TPURV6E-GPT3-175B-INT8-256C"}
    assert all(math.isfinite(p.predicted) for c, p in preds.items() if c not in unnormalised)
    assert all(not math.isfinite(preds[c].predicted)
               and "the case has no normalised metric" in preds[c].why for c in unnormalised)
    assert "vocab: default 51200 (rule: declared by the source" in preds["T-NEMO2407-03"].why
    assert "global_batch" not in preds["T-NEMO2407-03"].why  # stated by the case


def test_a_published_dp_is_honoured():
    # pure FSDP: dp = n_chips = 512 leaves tp = pp = cp = 1 (tp and pp are not published)
    row = ROWS["T-MAXTEXT-V5P-L2-70B"]
    assert (row["tp"], row["pp"], row["dp"], row["n_chips"]) == ("", "", "512", "512")
    pred = next(p for p in validate.predict([row]))
    assert math.isfinite(pred.predicted)
    assert {k: pred.layout[k] for k in ("tp", "pp", "dp", "cp")} == \
        {"tp": 1, "pp": 1, "dp": 512, "cp": 1}


def test_a_published_dp_leaves_n_chips_over_dp_to_tp_pp_cp(tmp_path):
    pred = _predict(_edited(tmp_path, "T-MLM21-05", tp="", pp=""), "T-MLM21-05")
    lay = pred.layout
    assert lay["dp"] == 32 and lay["tp"] * lay["pp"] * lay["cp"] == 512 // 32


# ------------------------------------------------------------------ rows that cannot be predicted
@pytest.mark.parametrize(("cells", "reason"), [
    ({"chip": "xpu-9000"}, "chip 'xpu-9000' is not in the hardware catalog"),
    ({"chip": ""}, "chip is empty"),
    ({"metric": "tpot_s"}, "metric 'tpot_s' is not in the schema"),
    ({"system": "dgx-z9"}, "system 'dgx-z9' is not in the hardware catalog"),
    ({"kind": "finetune"}, "kind 'finetune' is not training or inference"),
    ({"layers": ""}, "layers is empty: the architecture is needed"),
    ({"n_chips": "", "dp": ""}, "n_chips is empty"),
])
def test_an_unpredictable_row_is_left_empty_with_its_reason(tmp_path, capsys, cells, reason):
    path = _edited(tmp_path, "T-MLM21-05", **cells)
    out = tmp_path / "pred.csv"
    assert main(["validate", str(path), "--out", str(out)]) == 0
    before = _predicted_ids()  # the committed rows a source could not normalise stay empty
    assert f"{1 + sum(not ok for ok in before.values())} not predicted" in \
        capsys.readouterr().out
    with out.open(encoding="utf-8") as fh:
        rows = {r["case_id"]: r for r in csv.DictReader(fh)}
    assert rows["T-MLM21-05"]["predicted"] == "" and rows["T-MLM21-05"]["rel_error"] == ""
    assert reason in rows["T-MLM21-05"]["why"]
    assert all(bool(r["predicted"]) == before[cid] for cid, r in rows.items()
               if cid != "T-MLM21-05")


@pytest.mark.parametrize(("column", "value"), [
    ("global_batch", "12x"), ("n_chips", "-4"), ("seq_len", "2,048"), ("value", "137%"),
    ("gated_mlp", "yes"), ("zero", "4"), ("concurrency", "many"), ("tp", "0"),
])
def test_a_malformed_cell_is_one_line_naming_file_case_column_value(tmp_path, capsys, column,
                                                                     value):
    path = _edited(tmp_path, "T-MLM21-05", **{column: value})
    out = tmp_path / "pred.csv"
    assert main(["validate", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert str(path) in err and "T-MLM21-05" in err and f"{column} = {value!r}" in err
    assert not out.exists()


# ------------------------------------------------------------------ output paths
def test_out_refuses_a_directory_a_missing_folder_and_the_case_file(tmp_path, capsys):
    for out, message in ((tmp_path, "is a directory"),
                         (tmp_path / "no" / "such" / "pred.csv", "does not exist"),
                         (CASES, "is the case file itself")):
        assert main(["validate", str(CASES), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "no").exists()


def test_out_refuses_a_read_only_folder(tmp_path, capsys, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.access(folder, os.W_OK):  # root ignores permissions: simulate the check
            real = os.access
            monkeypatch.setattr(validate.os, "access", lambda p, mode: False if Path(p) == folder
                                else real(p, mode))
        assert main(["validate", str(CASES), "--out", str(folder / "pred.csv")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is not writable" in err
        assert not any(folder.iterdir())
    finally:
        folder.chmod(0o755)


# ------------------------------------------------------------------ the rules table
def test_schema_lists_every_default_rule():
    schema = (data_dir() / "measurements" / "SCHEMA.md").read_text(encoding="utf-8")
    table = schema.split("## Defaults of trnlab's reader", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `(\w+)` \| (training|inference|both) \|", table, re.MULTILINE))
    assert listed == {(r.field, r.kinds) for r in defaults.RULES}


def test_an_unstated_recompute_takes_the_framework_default_and_not_the_fastest_layout(tmp_path):
    """Neuron NxD checkpoints the core attention by default (stacks.toml ``recompute =
    "selective"``): a Trainium1 case with recompute unknown is predicted with selective
    recompute, slower than the no-recompute layout the search would pick, and says so; a stack
    with an unknown recompute mode is refused with one line."""
    assert load_stacks()["neuron"].recompute == "selective"
    row = ROWS["T-TRN1-221-L31-8B"]
    assert row["recompute"] == "unknown"
    (pred,) = validate.predict([row])
    (fastest,) = validate.predict([{**row, "recompute": "none"}])
    assert pred.layout["recompute"] == 1  # selective, which fits
    assert pred.predicted < fastest.predicted  # the recomputed attention costs time
    assert "recompute: default selective (rule: the neuron stack's default" in pred.why
    with pytest.raises(CatalogError, match="recompute = 'some': none, selective or full"):
        load_stacks(stacks_file(tmp_path, 'recompute = "some"'))


def test_the_seq_len_rule_recovers_most_published_lengths():
    rows = [r for r in ROWS.values() if r["kind"] == "training"]
    conv = validate.load_conventions()
    same = 0
    for row in rows:
        filled, _ = defaults.fill({**row, "seq_len": ""},
                                  conv.get(validate.source_of(row["case_id"], conv), {}))
        same += filled["seq_len"] == row["seq_len"]
    assert same >= 0.75 * len(rows)


# ------------------------------------------------------------------ calibrate
SUBSET = ("T-MCORE-H100-01", "T-MCORE-H100-02", "I-INF2-L3-70B-B1-128-1024")


@pytest.fixture
def subset_copy(tmp_path: Path) -> Path:
    """A small case file and writable copies of data/perf/training.toml and serving.toml."""
    _write([ROWS[c] for c in SUBSET], tmp_path / "cases.csv")
    for name in ("training.toml", "serving.toml"):
        shutil.copy(data_dir() / "perf" / name, tmp_path / name)
    return tmp_path


def _run(folder: Path, write: bool, lines: list[str] | None = None) -> dict[str, fit.Fitted]:
    return fit.run(folder / "cases.csv", with_loso=False, write=write,
                   progress=lines.append if lines is not None else None,
                   training_path=folder / "training.toml", serving_path=folder / "serving.toml")


def test_calibrate_is_reproducible_and_prints_the_digits_it_writes(subset_copy):
    committed = {n: (subset_copy / n).read_text() for n in ("training.toml", "serving.toml")}
    lines: list[str] = []
    dry = _run(subset_copy, write=False, lines=lines)
    assert {n: (subset_copy / n).read_text() for n in committed} == committed  # nothing written
    assert sum(line.startswith("[") for line in lines) == 4 and "nothing written" in lines[-1]
    again = _run(subset_copy, write=False)
    for kind in ("training", "inference"):
        assert dry[kind].rows() == again[kind].rows()
        assert all(float(f"{new:.4g}") == new for _, _, new, _ in dry[kind].rows())
    _run(subset_copy, write=True)
    written = {n: (subset_copy / n).read_text() for n in committed}
    reloaded = {"training": load_training(subset_copy / "training.toml"),
                "inference": load_serving(subset_copy / "serving.toml")}
    for kind, params in reloaded.items():
        for name, _, new, _ in dry[kind].rows():
            assert fit._field(params, name).value == new, name
    _run(subset_copy, write=True)  # a second write starts from the written file: same digits
    assert {n: (subset_copy / n).read_text() for n in committed} == written


def test_cli_calibrate_writes_nothing_without_write(tmp_path, capsys, monkeypatch):
    _write([ROWS[c] for c in SUBSET[:1]], tmp_path / "cases.csv")

    def refuse(*_args, **_kw):
        raise AssertionError("calibrate without --write must not write data/perf")

    monkeypatch.setattr(fit, "write_params", refuse)
    assert main(["calibrate", str(tmp_path / "cases.csv"), "--no-loso"]) == 0
    captured = capsys.readouterr()
    assert "[1/3]" in captured.err and "nothing written" in captured.out
    assert "gemm_eff_nvidia" in captured.out and "committed" in captured.out


def test_inference_rows_use_the_training_parameters_passed_and_only_while_predicting():
    rows = [ROWS["I-TRTLLM-H100-Llama318B-TP1-128-128"]]
    params = load_training()
    before = validate.predict(rows)[0].predicted
    slower = validate.predict(rows, params.replace(gemm_eff_nvidia=0.45))[0].predicted
    assert slower < before  # the GEMM efficiency is shared with serving
    assert validate.predict(rows)[0].predicted == before  # the file's values again


# ------------------------------------------------------- conventions by framework family
def _family_row(**cells: str) -> dict[str, str]:
    row = dict(ROWS["T-MCORE-H100-01"])
    row.update({"case_id": "T-NEWSRC-01", "source": "", "metric_note": "", "notes": "",
                **cells})
    return row


@pytest.mark.parametrize(("text", "family", "flops"), [
    ("pytorch/torchtitan@abc docs/performance.md", "torchtitan", "palm"),
    ("NVIDIA/NeMo docs/performance_summary.md", "nemo", "megatron_core"),
    ("NVIDIA/Megatron-LM README", "megatron", "megatron_core"),
    ("microsoft/Megatron-DeepSpeed examples", "deepspeed", "megatron_deepspeed"),
    ("AI-Hypercomputer/maxtext configs", "maxtext", "maxtext"),
    ("mosaicml/llm-foundry benchmarking README", "llm-foundry", "palm"),
    ("PyTorch FSDP on 64 GPUs", "fsdp", "palm"),
    ("aws-neuron/aws-neuron-sdk benchmarks", "neuron", ""),
])
def test_a_new_source_takes_its_framework_familys_convention(text, family, flops):
    conv, fams = validate.load_conventions(), validate.load_families()
    got = validate.training_conventions(_family_row(source=text), conv, fams)
    assert (got["family"], got["flops"]) == (family, flops)
    assert validate.training_conventions(_family_row(source="a blog post"), conv, fams) == {}


def test_a_flop_metric_of_an_unknown_convention_says_so_and_uses_palm():
    spec = TransformerSpec(name="hand", layers=2, hidden=1024, heads=8, ffn=4096, vocab=1000)
    flops, why = validate._flops_per_iteration("", spec, 4, 2048, 8)
    assert "FLOP convention unknown" in why and "PaLM" in why
    assert flops == conventions.flops_per_iteration("palm", spec, 4, 2048, 8)
    row = _family_row(source="an unknown lab's blog", metric="mfu", value="0.4")
    pred = validate.predict([row])[0]
    assert math.isfinite(pred.predicted) and "FLOP convention unknown" in pred.why
    assert "framework family unknown" in pred.why


def test_the_palm_count_by_hand():
    """6 N + 12 L H Q T per token: 2 layers of hidden 1024, 8 heads of 128, MLP 4096 (GeLU),
    vocab 1000, untied. N = 2 x (4 x 1024^2 + 2 x 1024 x 4096 + norms 2 x 2 x 1024) + final
    norm 2 x 1024 + output layer 1000 x 1024 (the input embedding excluded)."""
    spec = TransformerSpec(name="hand", layers=2, hidden=1024, heads=8, ffn=4096, vocab=1000)
    n = spec.active_params - spec.embedding_params
    assert n == spec.total_params - 1000 * 1024
    assert conventions.palm_flops_per_token(spec, 2048) == 6 * n + 12 * 2 * 8 * 128 * 2048
    assert conventions.flops_per_iteration("palm", spec, 3, 2048, 4) == \
        3 * 2048 * (6 * n + 12 * 2 * 8 * 128 * 2048)


def test_the_megatron_deepspeed_count_by_hand():
    """24 c B s L h^2 (1 + s/(6h) + V/(16 L h)), c = 4 with activation checkpointing, else 3."""
    spec = TransformerSpec(name="hand", layers=2, hidden=1024, heads=8, ffn=4096, vocab=1024)
    base = 2 * 2048 * 2 * 1024 ** 2 * (1 + 2048 / 6144 + 1024 / (16 * 2 * 1024))
    assert conventions.megatron_deepspeed_flops_per_iteration(spec, 2, 2048, True) == \
        pytest.approx(96 * base, rel=1e-12)
    assert conventions.megatron_deepspeed_flops_per_iteration(spec, 2, 2048, False) == \
        pytest.approx(72 * base, rel=1e-12)
    assert conventions.megatron_deepspeed_flops_per_iteration(spec, 2, 2048, True) == \
        pytest.approx(conventions.megatron2021_flops_per_iteration(spec, 2, 2048), rel=1e-12)
    with pytest.raises(ParameterError, match="allowed: megatron2021"):
        conventions.flops_per_iteration("hfu", spec, 2, 2048, 1)


@pytest.mark.parametrize(("chip", "note", "cap"), [
    ("h100-sxm", "Grand Teton hosts, default 500W power limit.", 500.0),
    ("h100-sxm", "GPUs power-capped at 400 W for the run", 400.0),
    ("h100-sxm", "power limit: 450 W", 450.0),
    ("h100-sxm-96gb", "default 500W power limit", None),  # the part's own TDP: nominal clock
    ("h100-sxm", "8x 700 W GPUs", None),
])
def test_a_stated_power_limit_below_tdp_is_read_from_the_notes(chip, note, cap):
    assert validate.power_cap_of({"chip": chip, "notes": note, "metric_note": ""}) == cap


def test_a_power_limited_case_is_predicted_at_the_capped_clock(tmp_path):
    case = "T-MCORE-H100-01"
    free = _predict(_edited(tmp_path, case), case)
    capped = _predict(_edited(tmp_path, case, notes=ROWS[case]["notes"]
                              + " GPUs power-capped at 400 W."), case)
    assert "power limit 400 W" in capped.why
    assert capped.predicted < 0.95 * free.predicted


def test_an_unstated_interleave_and_micro_batch_take_the_family_default(tmp_path):
    case = "T-MCORE-H100-06"  # pp = 4, vpp and micro_batch unstated
    pred = _predict(_edited(tmp_path, case), case)
    assert pred.layout["vpp"] == 1 and pred.layout["micro_batch"] == 1
    assert "vpp: default 1 (rule: the megatron stack's default" in pred.why
    said = _predict(_edited(tmp_path, case, notes="interleaved 1F1B schedule"), case)
    assert said.layout["vpp"] > 1 and "the notes say interleaved" in said.why


def test_a_case_that_turns_tp_overlap_on_overrides_its_familys_default():
    """torchtitan's stack runs TP without overlap; '2D + AsyncTP' says it overlapped: the same
    layout then exposes only (1 - layer_comm_overlap) of its TP traffic and predicts faster."""
    preds = {p.case_id: p for p in validate.predict(
        [ROWS["T-TTAN-H100-70B-G256-2D"], ROWS["T-TTAN-H100-70B-G256-ASYNCTP"]])}
    plain, overlapped = preds["T-TTAN-H100-70B-G256-2D"], preds["T-TTAN-H100-70B-G256-ASYNCTP"]
    assert plain.layout == overlapped.layout
    assert overlapped.predicted > plain.predicted


def test_a_held_out_source_is_predicted_but_never_fitted():
    rows = validate.read_cases(data_dir() / "measurements" / "cases.csv")
    fitted = {r["case_id"] for r in fit._fitted_rows(rows, "inference")}
    mlperf = {r["case_id"] for r in rows if r["case_id"].startswith("I-MLPERF50")}
    assert mlperf and not mlperf & fitted  # conventions.toml: [source.I-MLPERF50] fit = false
    assert any(c.startswith("I-TRTLLM") for c in fitted)
    preds = {p.case_id: p for p in validate.predict([r for r in rows if r["case_id"] in mlperf])}
    assert all(math.isfinite(p.predicted) for p in preds.values())


def test_a_recipe_with_fp8_attention_runs_the_attention_core_in_fp8(tmp_path):
    """fp8_dot_product_attention=True in a case's recipe: the same layout, the attention core at
    the FP8 rate (hardware attention_precision "fp8"), so a faster step; said in why. A chip
    without an FP8 rate keeps BF16 and says so."""
    case = "T-MOE-MBRG2606-GB300-QWEN3-235B-256G-EP32"
    notes = ROWS[case]["notes"]
    assert "fp8_dot_product_attention=True" in notes
    fp8 = _predict(_edited(tmp_path, case), case)
    bf16 = _predict(_edited(tmp_path, case, notes=notes.replace(
        "fp8_dot_product_attention=True", "fp8_dot_product_attention unset")), case)
    assert fp8.layout == bf16.layout
    assert fp8.predicted > 1.02 * bf16.predicted
    assert "attention core in FP8" in fp8.why and "attention core in FP8" not in bf16.why
    a100 = "T-TTAN-A100-L3-8B-SELOP"
    said = _predict(_edited(tmp_path, a100, notes=ROWS[a100]["notes"]
                            + " fp8_dot_product_attention=True"), a100)
    assert "has no FP8 rate: BF16" in said.why
    assert said.predicted == pytest.approx(_predict(_edited(tmp_path, a100), a100).predicted)


def test_a_recipe_offloading_activations_to_host_memory():
    """Megatron-Core's cpu_offloading_num_layers=N of L layers keeps N/L of the saved
    activations in host memory; MaxText rows state the share (offload: share=X). With the share
    a Trillium recipe fits its 32 GB where the same row without it does not."""
    row = ROWS["T-MBRG2604-GB200-L3-70B-FP8-CS"]
    assert "cpu_offloading_num_layers=40" in row["notes"] and row["layers"] == "80"
    assert validate.offload_share(row) == 0.5
    assert validate.offload_share(ROWS["T-TPURV6E-L31-8B-BF16-16C"]) == 1.0
    assert validate.offload_share(ROWS["T-TPUR7X-L31-405B-BF16-256C"]) == 0.94
    assert validate.offload_share(ROWS["T-MLM21-05"]) is None
    case = "T-TPURV6E-L31-8B-BF16-16C"
    assert "does not fit" not in next(p for p in validate.predict([ROWS[case]])).why
    on_device = dict(ROWS[case], notes=ROWS[case]["notes"].replace("offload: share=1 ", ""))
    assert validate.offload_share(on_device) is None
    assert "does not fit in memory" in next(p for p in validate.predict([on_device])).why
    bad = dict(ROWS[case], notes=ROWS[case]["notes"].replace("share=1 ", "share=1.5 "))
    pred = next(p for p in validate.predict([bad]))
    assert not math.isfinite(pred.predicted) and "offload share = 1.5" in pred.why


def test_validate_prints_the_fitted_and_held_out_split(tmp_path, capsys):
    """`trnlab validate` ends with the cases `calibrate` fits and those conventions.toml holds
    out (fit = false), each with its MAPE and median |error|, from the predictions written."""
    ids = ["T-MLM21-01", "T-MLM21-02", "T-TRN1H-216-L2-7B", "T-TPURV6E-MIXTRAL-8X22B-BF16-256C"]
    cases = _write([ROWS[c] for c in ids], tmp_path / "cases.csv")
    out = tmp_path / "pred.csv"
    assert main(["validate", str(cases), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    errs = {r["case_id"]: abs(float(r["rel_error"])) for r in csv.DictReader(out.open())}
    fitted, held = [errs[c] for c in ids[:2]], [errs[c] for c in ids[2:]]
    assert (f"fitted sources         2 cases  MAPE {sum(fitted) / 2:6.1%}   "
            f"median {sum(fitted) / 2:.1%}") in printed
    assert f"held-out sources       2 cases  MAPE {sum(held) / 2:6.1%}" in printed
    split = validate.fit_split(validate.predict(validate.read_cases(cases)))
    assert [n for n, _, _ in split.values()] == [2, 2]


def test_validate_counts_the_published_layouts_our_memory_model_lets_fit(tmp_path, capsys):
    """Every published run fitted in its chips' memory: `trnlab validate` prints how many of the
    training layouts the memory model lets fit. Megatron-FSDP without pipelining reshards every
    micro-batch, so Llama 3 70B under FSDP over 64 GB300 (2 micro-batches) fits; the 256K-token
    Hugging Face row does not (its fp32 logits alone are 134 GB: Liger's fused loss is not
    modelled)."""
    ids = ["T-MLM21-01", "T-MBRG2602-GB300-L3-70B-FP8-CS", "T-MLENG-H200-L31-8B-Z3-S256K"]
    cases = _write([ROWS[c] for c in ids], tmp_path / "cases.csv")
    preds = validate.predict(validate.read_cases(cases))
    fits = {p.case_id: validate.NO_FIT not in p.why for p in preds}
    assert fits == {ids[0]: True, ids[1]: True, ids[2]: False}
    assert validate.layouts_that_fit(preds) == (2, 3)
    assert main(["validate", str(cases), "--out", str(tmp_path / "pred.csv")]) == 0
    assert "memory                 2 of 3 training layouts fit our memory model" in \
        capsys.readouterr().out


def test_a_stack_that_runs_flashattention3_gets_the_hopper_kernel_rate_and_blackwell_its_own(
        tmp_path, monkeypatch):
    """The Hugging Face + DeepSpeed stack runs FlashAttention-3 (stacks.toml ``attention_kernel
    = "fa3"``): on H200, whose chip_efficiency.toml table has ``attn_rate_fa3`` = 1.75 (the FA3
    paper's FA3 / FA2 speed), a 256K-token case is predicted faster than with the FA2-class
    rates, by less than 1.75x (the GEMMs do not change), and says so; on B200, without the
    entry, the rates are the chip's. An unknown kernel name is refused with one line."""
    stack = load_stacks()["hf-deepspeed"]
    assert stack.attention_kernel == "fa3"
    assert load_chip_efficiency().chips["h200"]["attn_rate_fa3"].si == 1.75
    assert "attn_rate_fa3" not in load_chip_efficiency().chips["b200"]
    row = ROWS["T-MLENG-H200-L31-8B-Z3-S256K"]
    (fa3,) = validate.predict([row])
    rates = load_chip_efficiency()
    without = {c: {k: v for k, v in t.items() if k != "attn_rate_fa3"}
               for c, t in rates.chips.items()}
    monkeypatch.setattr(engine_hardware, "load_chip_efficiency",
                        lambda: type(rates)(without, rates.reference, rates.proxy, rates.path))
    (fa2,) = validate.predict([row])
    assert 1.3 < fa3.predicted / fa2.predicted < 1.75
    assert "attention kernel" not in fa2.why
    monkeypatch.undo()
    assert "attention kernel fa3: 1.75x the chip's attention rates" in fa3.why
    (b200,) = validate.predict([ROWS["T-MLENG-B200-L31-8B-Z3-S256K"]])
    assert "attention kernel" not in b200.why
    with pytest.raises(CatalogError, match="attention_kernel = 'fa9': fa3"):
        load_stacks(stacks_file(tmp_path, 'attention_kernel = "fa9"'))


def test_liger_kernel_fuses_the_eager_ops():
    """Hugging Face modeling code runs RMSNorm, RoPE and SwiGLU as eager PyTorch operators
    (the hf-deepspeed stack's ``eager``); the ml-engineering sweep sets USE_LIGER=1, whose fused
    kernels replace them, so its rows run none unfused and are faster than the same row without
    it."""
    stack = load_stacks()["hf-deepspeed"]
    liger = ROWS["T-MLENG-B200-L31-8B-Z3-S8K"]
    assert validate.eager_kinds(liger, stack) == frozenset()
    plain = {**liger, "notes": liger["notes"].replace("USE_LIGER=1", "USE_LIGER=0")}
    assert validate.eager_kinds(plain, stack) == frozenset({"norm", "rope", "act"})
    (fused,), (eager,) = validate.predict([liger]), validate.predict([plain])
    assert fused.predicted > eager.predicted


def test_an_optimizer_on_the_host_cpu_adds_its_update_in_host_dram():
    """The ml-engineering sweep keeps AdamW on the host CPU (OFFLOAD_OPTIMIZER=1: DeepSpeed
    ZeRO-Offload). Its step is the same row's step with the update on the chip, plus each
    chip's 1/8 of Llama 3.1 8B's parameters x 32 B at host_adam_eff of the B200 host's DRAM
    per chip, plus their BF16 weights back over the host link, less the update in HBM. A chip
    without a host DRAM figure in the catalog says the prediction leaves the update out."""
    row = ROWS["T-MLENG-B200-L31-8B-Z3-S8K"]
    on_chip = {**row, "notes": re.sub(r"offload_optimizer\s*(=\s*1|device\s*cpu)", "",
                                      row["notes"], flags=re.IGNORECASE)}
    (host,), (chip,) = validate.predict([row]), validate.predict([on_chip])
    assert "the optimizer on the host CPU (DeepSpeed ZeRO-Offload)" in host.why
    assert "ZeRO-Offload" not in chip.why
    tokens, chips = int(row["global_batch"]) * int(row["seq_len"]), int(row["n_chips"])
    t_host, t_chip = (tokens / (chips * p.predicted) for p in (host, chip))  # step times [s]
    params = validate._spec(row, {}).total_params / chips  # the chip's ZeRO-3 shard
    b200, cal = catalog.chip("b200"), engine_hardware.train_calibration()
    added = params * 32 / (cal.host_adam_eff * b200.host_memory_bandwidth) \
        + params * 2 / b200.host_bandwidth - params * 32 / (b200.hbm_bandwidth * cal.mem_eff)
    assert t_host - t_chip == pytest.approx(added, rel=0.01)
    (missing,) = validate.predict([{**row, "chip": "rubin", "system": "vera-rubin-nvl72"}])
    assert "is not modelled: rubin has no host_memory_bandwidth" in missing.why
    (right_sized,) = validate.predict([ROWS["T-MLENG-B200-L31-8B-Z2-S8K"]])
    assert "ZeRO-Offload" not in right_sized.why


def test_a_benchmark_gate_that_routes_to_consecutive_experts_crosses_fewer_nodes():
    """NeMo AutoModel's benchmarks route token i to the experts 8i ... 8i + 7 (fake_balanced_gate
    true, moe.toml [stack.automodel-fake-balanced-gate]): DeepSeek-V3 over ep = 64 on 8-GPU
    H100 nodes reaches one node per token instead of ~5.3, so its de-duplicated (DeepEP)
    all-to-all crosses InfiniBand 0.875 times per token, not 4.6 times: the row is predicted
    faster than with uniform routing, and its why names the gate. A row without the gate
    (Megatron-Bridge's force-balancing draws random scores) keeps uniform routing."""
    row = ROWS["T-AUTOMODEL-H100-DSV3-256G"]
    assert "fake_balanced_gate true" in row["notes"]
    uniform = {**row, "notes": row["notes"].replace("fake_balanced_gate true",
                                                    "fake_balanced_gate false")}
    (gate,), (plain,) = validate.predict([row]), validate.predict([uniform])
    assert "consecutive_routing=1" in gate.why and "consecutive_routing" not in plain.why
    assert gate.predicted > 1.2 * plain.predicted
    (megatron,) = validate.predict([ROWS["T-MOE-MBRG2602-GB200-DSV3-256G-EP64"]])
    assert "consecutive_routing" not in megatron.why
    # AutoModel's enable_deepep runs Megatron-Core's flex dispatcher (vendored): de-duplicated
    # even where the row states no `moe:` entry of its own
    unstated = {**row, "notes": row["notes"].replace("moe: a2a_dedup=1", "moe dispatcher")}
    assert "moe: a2a_dedup" not in unstated["notes"]
    (deepep,) = validate.predict([unstated])
    assert "a2a_dedup=1" in deepep.why and deepep.predicted == pytest.approx(gate.predicted)


def test_torchtitans_async_tp_overlaps_the_forward_passes_only(tmp_path, monkeypatch):
    """torchtitan's async TP (stacks.toml ``tp_overlap_passes = "forward"``) hides the forward
    passes' TP collectives and leaves the backward's exposed, as PyTorch's post reads (a
    ~29% forward speed-up giving its ~8% end-to-end one): its async-TP row is predicted slower
    than with Transformer Engine's overlap of every pass, faster than with no overlap, and the
    vanilla-TP row of the same table is untouched. A stack value outside all / forward is
    refused in one line."""
    stacks = load_stacks()
    assert stacks["torchtitan"].tp_overlap_passes == "forward"
    assert stacks["default"].tp_overlap_passes == "all"
    rows = [ROWS["T-TTANB-H100-70B-BF16-ASYNCTP"], ROWS["T-TTANB-H100-70B-BF16-TP"]]
    forward, vanilla = validate.predict(rows)
    every = {**stacks, "torchtitan": dataclasses.replace(stacks["torchtitan"],
                                                         tp_overlap_passes="all")}
    monkeypatch.setattr(validate, "load_stacks", lambda: every)
    (all_passes,), (vanilla_again,) = validate.predict(rows[:1]), validate.predict(rows[1:])
    assert vanilla.predicted < forward.predicted < all_passes.predicted
    assert vanilla_again.predicted == vanilla.predicted
    with pytest.raises(CatalogError, match="tp_overlap_passes = 'backward': all or forward"):
        load_stacks(stacks_file(tmp_path, 'tp_overlap_passes = "backward"'))
