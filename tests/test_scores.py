"""Honest scores: chip families, features, leave-one-group-out, parameter correlations."""

from __future__ import annotations

import math

import numpy as np
import pytest

from trnlab._paths import data_dir
from trnlab.calibration import fit as fitmod
from trnlab.calibration import scores, validate
from trnlab.calibration.validate import read_cases


@pytest.fixture(scope="module")
def rows():
    return read_cases(data_dir() / "measurements" / "cases.csv")


def _by_id(rows, *ids):
    found = {r["case_id"]: r for r in rows}
    return [found[i] for i in ids]


# a few training rows of four sources: A100 (pp > 1), H100 FP8, TPU v5p FSDP, Trainium1
SUBSET = ("T-MLM21-01", "T-MLM21-06", "T-NEMO2407-01", "T-NEMO2407-03",
          "T-MAXTEXT-V5P-32B-64", "T-MAXTEXT-V5P-L2-70B", "T-TRN1-216-L2-13B")


@pytest.mark.parametrize(("chip", "fam"), [
    ("a100-sxm-80gb", "nvidia-ampere"), ("h100-sxm", "nvidia-hopper"), ("h200", "nvidia-hopper"),
    ("b200", "nvidia-blackwell"), ("gb200", "nvidia-blackwell"), ("tpu-v5p", "google-tpu-v5p"),
    ("trn1", "aws-trainium1"), ("trn2", "aws-trainium2"), ("inf2", "aws-inferentia2")])
def test_family(chip, fam):
    assert scores.family(chip) == fam


def test_groups_of_known_rows(rows):
    g = scores.groups(rows)
    assert g["T-MLM21-01"] == ("nvidia-ampere", frozenset())
    assert g["T-MLM21-06"] == ("nvidia-ampere", frozenset({"pipeline"}))
    assert g["T-NEMO2407-01"] == ("nvidia-hopper", frozenset({"fp8"}))
    assert g["T-NEMO2407-03"] == ("nvidia-hopper", frozenset({"fp8", "pipeline"}))
    assert g["T-MAXTEXT-V5P-32B-64"] == ("google-tpu-v5p", frozenset({"fsdp"}))
    assert g["T-TRN1-216-L2-13B"] == ("aws-trainium1", frozenset({"pipeline"}))
    assert g["I-TRTLLM-H200-Llama318B-TP1-1000-1000"][0] == "nvidia-hopper"
    assert "moe" in g["I-TRTLLM-H100-Qwen3-235B-A22B-TP8-1000-1000"][1]


def test_features_from_fields():
    base = {"moe_experts": "", "seq_len": "", "zero": "", "notes": "", "precision": "bf16",
            "pp": ""}
    assert scores.features(base) == frozenset()
    assert scores.features({**base, "moe_experts": "8", "seq_len": "32768", "zero": "3",
                            "precision": "mxfp8", "pp": "2"}) == set(scores.FEATURES)
    # the zero field says FSDP, or the source's declared stage for an empty cell; a page's
    # text naming FSDP ("FSDP = 0: use DDP") does not
    assert scores.features({**base, "zero": "fsdp"}) == {"fsdp"}
    assert scores.features(base, declared_zero=3) == {"fsdp"}
    assert scores.features({**base, "zero": "1"}, declared_zero=3) == frozenset()
    assert scores.features({**base, "notes": "FSDP = 0: use DDP"}) == frozenset()
    assert scores.features({**base, "notes": "fsdpx", "pp": "1", "seq_len": "32767"}) == set()


@pytest.fixture
def recorded_fit(monkeypatch):
    """fit.fit replaced by a stub that records the case ids it was given."""
    calls: list[set[str]] = []

    def stub(rows, params=None, progress=None, label="", info=None):
        calls.append({r["case_id"] for r in rows})
        return params or fitmod.load_training(), []

    monkeypatch.setattr(fitmod, "fit", stub)
    return calls


@pytest.mark.parametrize("key", ["family", "feature", "source"])
def test_held_out_rows_never_fitted(rows, recorded_fit, key):
    subset = _by_id(rows, *SUBSET)
    sc = scores.leave_one_group_out(subset, key)
    assert len(recorded_fit) == len(sc.preds)
    for fitted_ids, (group, preds) in zip(recorded_fit, sc.preds.items(), strict=True):
        held = {p.case_id for p in preds}
        assert held and not held & fitted_ids, group
        assert held | fitted_ids == set(SUBSET)  # every other row is fitted
        assert sc.by_group[group][0] == sum(math.isfinite(p.rel_error) for p in preds)
    if key == "family":
        assert sorted(sc.preds) == ["aws-trainium1", "google-tpu-v5p", "nvidia-ampere",
                                    "nvidia-hopper"]
    if key == "feature":
        assert sorted(sc.preds) == ["fp8", "fsdp", "pipeline"]
        assert {p.case_id for p in sc.preds["pipeline"]} == {
            "T-MLM21-06", "T-NEMO2407-03", "T-TRN1-216-L2-13B"}
    assert math.isfinite(sc.mape)


def test_a_vendor_whose_fitted_source_is_left_out_takes_the_default(rows, recorded_fit):
    """Leaving out the only fitted Trainium source leaves AWS uncalibrated, although a
    held-out Trainium source remains (held-out rows are never fitted): its rows take the
    default efficiency, not the committed one fitted on them."""
    subset = _by_id(rows, "T-MLM21-01", "T-TRN1-216-L2-13B", "T-TRN1H-217-L2-13B")
    out = fitmod.leave_out(subset, lambda r: r["case_id"].split("-")[1])
    params = fitmod.load_training()
    default = params.replace(gemm_eff_aws=params.gemm_eff["default"].value)
    assert params.gemm_eff["aws"].value != params.gemm_eff["default"].value
    (left_out,) = out["TRN1"]
    assert left_out.predicted == pytest.approx(
        validate.predict([subset[1]], default)[0].predicted, rel=1e-12)
    assert left_out.predicted != pytest.approx(validate.predict([subset[1]], params)[0].predicted)


def test_loso_unchanged_by_refactor(rows, recorded_fit):
    subset = _by_id(rows, *SUBSET)
    ids = [p.case_id for p in fitmod.loso(subset)]
    assert sorted(ids) == sorted(SUBSET) and len(recorded_fit) == 5  # MaxText: 2 sources


def test_collinear_parameters_correlate():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, 50)
    # residual r = a*x + b*x + c*x**2: a and b enter only through a + b
    col = np.column_stack([x, x * (1 + 1e-6 * rng.standard_normal(50)), x**2])
    c = scores.correlations_of(col, ["a", "b", "c"], x=np.array([0.5, 0.5, 1.0]),
                               lo=np.array([1.0, 0, 0]), hi=np.array([2.0, 1, 1]))
    assert abs(c.matrix[0, 1]) > 0.99
    assert c.strong[0][:2] == ("a", "b")
    assert c.at_bounds == [("c", "upper", 1.0)]
    assert np.isnan(c.matrix[2]).all()  # held at its bound: no correlation
    # a parameter at a bound with a (near) zero column once gave |r| = 2 through the
    # pseudo-inverse of an ill-conditioned JᵀJ: the free ones stay within [-1, 1]
    tiny = np.column_stack([x, 1e-12 * x**3, x**2 + 0.1 * x])
    t = scores.correlations_of(tiny, ["p", "q", "r"], x=np.array([0.5, 0.0, 0.5]))
    finite = t.matrix[np.isfinite(t.matrix)]
    assert finite.size == 4 and np.all(np.abs(finite) <= 1.0)
    assert t.at_bounds == [("q", "lower", 0.0)]
    independent = scores.correlations_of(rng.standard_normal((50, 2)), ["p", "q"])
    assert abs(independent.matrix[0, 1]) < 0.5 and not independent.strong


@pytest.mark.slow
def test_real_fit_correlations_and_group_scores(rows, monkeypatch):
    monkeypatch.setattr(fitmod, "MAX_NFEV", 5)
    subset = _by_id(rows, *SUBSET)
    c = scores.parameter_correlations(subset)
    n = len(c.names)
    assert c.matrix.shape == (n, n) and "gemm_eff_aws" in c.names
    finite = np.isfinite(np.diag(c.matrix))
    assert np.allclose(np.diag(c.matrix)[finite], 1.0)
    sc = scores.leave_one_group_out(subset, "family")
    assert set(sc.by_group) == {"aws-trainium1", "google-tpu-v5p", "nvidia-ampere",
                                "nvidia-hopper"}
    assert math.isfinite(sc.mape)


def test_a_fold_that_removes_only_held_out_rows_reuses_the_fit(rows, monkeypatch):
    """Leaving out a held-out source (conventions.toml fit = false) leaves the fitted rows as
    they are: the fold is fitted once, not again."""
    subset = _by_id(rows, "T-MLM21-01", "T-MLM21-06", "T-MOE-ZOO-H100-QWEN3-235B-EP32-PP8",
                    "T-MOE-MBR2511-GB200-DSV3-256G-EP32")
    calls = []

    def counting_fit(fit_rows, params=None, progress=None, label="", info=None):
        calls.append(sorted(r["case_id"] for r in fitmod._fitted_rows(fit_rows, "training")))
        return fitmod.load_training(), []

    monkeypatch.setattr(fitmod, "fit", counting_fit)
    out = fitmod.leave_out(subset, lambda r: r["case_id"].rsplit("-", 1)[0])
    assert set(out) == {"T-MLM21", "T-MOE-ZOO-H100-QWEN3-235B-EP32",
                        "T-MOE-MBR2511-GB200-DSV3-256G"}
    assert sorted(calls) == [[], ["T-MLM21-01", "T-MLM21-06"]]  # the two MoE folds share one fit
    assert sum(len(p) for p in out.values()) == 4


def test_a_fold_leaving_a_vendor_without_a_fitted_value_takes_the_default(rows, monkeypatch):
    """An inference fold whose held rows name a vendor the serving tables have no entry for
    (AMD) predicts them at the default per-step cost instead of failing."""
    from trnlab.catalog.params import load_serving

    subset = _by_id(rows, "I-TRTLLM-H100-Llama318B-TP1-128-128",
                    "I-MLPERF50-AMD-MI325XX8-L2-70B-OFFLINE")
    monkeypatch.setattr(fitmod, "fit_serving",
                        lambda fit_rows, serving=None, params=None, progress=None, label="",
                        info=None: (load_serving(), []))
    out = fitmod.leave_out(subset, lambda r: r["case_id"].split("-")[1], kind="inference")
    assert set(out) == {"TRTLLM", "MLPERF50"}
    assert all(math.isfinite(p.predicted) for group in out.values() for p in group)


# ------------------------------------------------------------------ the stored record
def _fake_result(tmp_path):
    """A scores.run result of two cases, with hand-set group scores (nothing fitted)."""
    cases = tmp_path / "cases.csv"
    cases.write_text("case_id\nT-A\nT-B\n", encoding="utf-8")
    preds = [validate.Prediction("T-A", "S1", 100.0, 110.0),
             validate.Prediction("T-B", "S2", 100.0, math.nan, why="no metric")]
    def group(key, by, m):
        return scores.GroupScores(key, by, m, {g: preds[:1] for g in by})

    corr = scores.Correlations(["a", "b"], np.eye(2), [("a", "b", 0.91)],
                               [("layer_overhead", "lower", 0.0)])
    result = {"cases": [{}, {}], "preds": preds, "mape": 0.1, "correlations": corr,
              "source": group("source", {"S1": (1, 0.2), "S2": (0, math.nan)}, 0.2),
              "family": group("family", {"nvidia-hopper": (1, 0.3)}, 0.3),
              "feature": group("feature", {"moe": (1, 0.25)}, 0.25)}
    return result, cases


def test_the_scores_record_round_trips_and_knows_its_case_file(tmp_path):
    """`calibrate --scores --write` keeps every score with the case file's digest: the record
    reads back as written, and an edited case file makes it stale."""
    result, cases = _fake_result(tmp_path)
    path = scores.write_record(result, cases, tmp_path / "scores.toml")
    rec = scores.load_record(path, cases)
    assert rec["meta"]["cases"] == 2 and rec["meta"]["predicted"] == 1
    assert rec["meta"]["in_sample_mape"] == 0.1 and rec["meta"]["case_file"] == "cases.csv"
    assert rec["held_out"] == {"source": 0.2, "family": 0.3, "feature": 0.25}
    assert rec["source"]["S1"] == {"cases": 1, "mape": 0.2}
    assert math.isnan(rec["source"]["S2"]["mape"])
    assert rec["parameters"]["strongly_correlated"] == [{"a": "a", "b": "b", "r": 0.91}]
    assert rec["parameters"]["at_bounds"][0]["name"] == "layer_overhead"
    assert rec["stale"] is False
    cases.write_text("case_id\nT-A\n", encoding="utf-8")
    assert scores.load_record(path, cases)["stale"] is True
    assert scores.load_record(tmp_path / "none.toml", cases) is None
    from trnlab.errors import CatalogError

    bad = tmp_path / "bad.toml"
    for text, name in (("[meta\n", "TOMLDecodeError"), ("[other]\n", "KeyError")):
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(CatalogError, match=f"bad.toml: scores record = '{name}'"):
            scores.load_record(bad, cases)
    bad.write_text('[meta]\ncases_sha256 = "x"\n', encoding="utf-8")
    with pytest.raises(CatalogError, match="tables = 'held_out, parameters, source"):
        scores.load_record(bad, cases)


def test_notebook_00_shows_the_stored_scores_and_says_when_they_are_stale(tmp_path):
    """The accuracy study carries the record; its table and reading print its numbers, and a
    changed case file is named, as is a missing record."""
    import json

    import xarray as xr

    from trnlab.calibration import accuracy

    result, cases = _fake_result(tmp_path)
    rec = scores.load_record(scores.write_record(result, cases, tmp_path / "s.toml"), cases)
    ds = xr.Dataset(attrs={"held_out_scores": json.dumps(rec),
                           "mape_by_family": json.dumps({"nvidia-hopper": [1, 0.05]})})
    table = accuracy.held_out_table(ds)
    assert {"held out": "family", "group": "nvidia-hopper", "cases": 1,
            "in-sample MAPE [%]": 5.0, "held-out MAPE [%]": 30.0} in table
    assert math.isnan(next(r for r in table if r["group"] == "moe")["in-sample MAPE [%]"])
    text = accuracy.held_out_reading(ds)
    assert "leave-one-chip-family-out 30.0%" in text and "MAPE 10.0%" in text
    assert "layer_overhead (lower bound)" in text and "a/b r = +0.91" in text
    assert "stale" not in text
    ds.attrs["held_out_scores"] = json.dumps({**rec, "stale": True})
    assert "stale" in accuracy.held_out_reading(ds)
    ds.attrs["held_out_scores"] = ""
    assert accuracy.held_out_table(ds) == [] and "No held-out scores" in \
        accuracy.held_out_reading(ds)


def test_the_committed_scores_belong_to_the_committed_case_file():
    """data/perf/scores.toml was computed on the case file as committed (rerun `trnlab
    calibrate --scores --write` after editing cases.csv), and covers every training case with a
    metric."""
    rec = scores.load_record()
    assert rec is not None and not rec["stale"]
    rows = read_cases(data_dir() / "measurements" / "cases.csv")
    assert rec["meta"]["cases"] == len(fitmod._kind(rows, "training"))
    assert set(rec["held_out"]) == set(scores.KEYS)


def test_cli_scores_write_keeps_the_record(tmp_path, capsys, monkeypatch):
    """`trnlab calibrate --scores --write` writes the record where scores points (after the usual
    calibration); without --write nothing is kept."""
    from trnlab.cli import main

    result, cases = _fake_result(tmp_path)
    monkeypatch.setattr(scores, "run", lambda *_a, **_k: result)
    monkeypatch.setattr(fitmod, "run", lambda *_a, **_k: {})
    monkeypatch.setattr(fitmod, "summary", lambda _r: "fit summary")
    target = tmp_path / "perf" / "scores.toml"
    monkeypatch.setattr(scores, "default_record_path", lambda: target)
    monkeypatch.setattr(validate, "read_cases", lambda _p: [])
    assert main(["calibrate", str(cases), "--scores", "--quiet"]) == 0
    assert not target.exists()
    assert main(["calibrate", str(cases), "--scores", "--write", "--quiet"]) == 0
    assert target.exists() and f"written: {target}" in capsys.readouterr().out
    assert scores.load_record(target, cases)["held_out"]["family"] == 0.3
