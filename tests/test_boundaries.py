"""Every public entry point checks its values once, at the boundary (trnlab/checks.py): a bad
value is one TrnlabError line naming the parameter, the value and what is allowed; the CLI
prints that line and exits 2. One test per failure of the robustness issue."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from _cli import run

from trnlab import catalog, checks, io
from trnlab.engine import economics, sampling, serving, training
from trnlab.errors import CatalogError, ParameterError, TrnlabError
from trnlab.studies import claims, cost, energy, memory

SEARCH = ["search", "--model", "llama3-8b", "--system", "trn3-ultraserver", "--chips", "64"]
SERVE = ["serve", "--model", "llama3-8b", "--system", "trn3-ultraserver"]




def test_trnlab_error_is_a_value_error():
    assert issubclass(TrnlabError, ValueError)
    assert issubclass(ParameterError, ValueError) and issubclass(CatalogError, ValueError)


# ------------------------------------------------------------------------------------- CLI
@pytest.mark.parametrize(("argv", "message"), [
    ([*SEARCH, "--seq", "0"], "search: seq_len = 0: an integer in 1..16,777,216"),
    ([*SERVE, "--input", "-1"], "frontier: input_len = -1: an integer in 1..16,777,216"),
    ([*SERVE, "--output", "0"], "frontier: output_len = 0: an integer in 1..16,777,216"),
    ([*SERVE, "--price", "-4"], "frontier: price_per_chip_hour = -4.0: a finite number > 0"),
    ([*SERVE, "--tpot-ms", "nan"], "frontier: tpot_ms = nan: a finite number > 0 [ms]"),
    ([*SERVE, "--ttft-ms", "inf"], "frontier: ttft_ms = inf"),
    ([*SEARCH, "--power-cap", "5000"], "power_cap_w = 5000.0: must be > 0 and <= trn3's TDP "
                                       "1000 W"),
    ([*SERVE, "--power-cap", "1001"], "trn3's TDP 1000 W"),
    ([*SEARCH, "--power-cap", "-1"], "power_cap_w = -1.0"),
    ([*SEARCH, "--attention", "int4"], "search: attention_precision = 'int4': allowed: bf16, fp8"),
    (["search", "--model", "llama3-8b", "--system", "dgx-a100", "--chips", "8", "--attention",
      "fp8"], "attention_precision = 'fp8': allowed on a100-sxm-80gb: bf16"),
    ([*SEARCH, "--top", "0"], "search: top = 0: an integer >= 1"),
    ([*SEARCH, "--global-batch", "0"], "global_batch = 0"),
    ([*SEARCH[:-1], "0"], "n_chips = 0"),
    ([*SEARCH, "--seq", str(10**30)], "seq_len = 1000000000000000000000000000000"),
    ([*SEARCH, "--precision", "fp7"], "precision = 'fp7': allowed: fp32"),
    ([*SERVE, "--kv", "fp7"], "kv = 'fp7': allowed: fp32"),
    (["search", "--model", "llama3-8b", "--system", "trn3-ultraserver", "--chips", "x"],
     "argument --chips: invalid int value: 'x'"),
    (["catalog", "trn9"], "id = 'trn9': unknown"),
])
def test_cli_bad_value_is_one_line_and_exit_2(argv, message):
    rc, out, err = run(argv)
    assert rc == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("trnlab: error: "), err
    assert message in err
    assert "Traceback" not in err


def test_serve_without_a_list_price_says_how_to_give_one():
    rc, out, err = run([*SERVE, "--tpot-ms", "50"])
    assert rc == 0 and err == ""
    lines = out.splitlines()
    assert "SLO: tpot <= 50 ms" in lines[0] and "None" not in out
    assert lines[1] == "no list price for trn3-ultraserver; pass --price USD/chip-hour"
    assert "nan" not in out and "USD / M tok" not in out
    rc, out, _ = run([*SERVE, "--price", "2.5"])
    assert rc == 0 and "no list price" not in out and "USD / M tok" in out
    assert "2.5 USD/chip-hour" in out.splitlines()[0]
    assert "SLO: none (pass --ttft-ms, --tpot-ms)" in out.splitlines()[0]


def test_serve_json_without_a_price_is_valid_json_with_null():
    rc, out, _ = run([*SERVE, "--json"])
    assert rc == 0
    doc = json.loads(out)
    assert doc["price_per_chip_hour"] is None and doc["best"]["usd_per_m_tokens"] is None
    assert all(r["usd_per_m_tokens"] is None for r in doc["frontier"])


def test_search_top_one_shows_one_layout():
    rc, out, _ = run([*SEARCH, "--top", "1"])
    assert rc == 0 and "no valid layout" not in out
    assert len(out.splitlines()) == 4  # the summary, the header, the rule, one layout


# ---------------------------------------------------------------------- serving tp rule
@pytest.mark.parametrize(("model", "system"), [
    ("llama3-70b", "trn3-ultraserver"), ("llama3-8b", "gb200-nvl72"),
    ("deepseek-v3", "trn3-ultraserver"), ("llama2-13b", "tpu-v5p-pod"),
])
def test_frontier_enumerates_only_tp_whose_attention_share_divides_the_heads(model, system):
    spec = catalog.model(model)
    ds = serving.frontier(model, system, batches=(1, 64), pps=(1,))
    tp, adp = ds["tp"].values, ds["adp"].values
    assert tp.size and np.all(tp % adp == 0)
    assert np.all(spec.heads % (tp // adp) == 0)
    if model == "llama3-70b":  # 64 heads on 144 chips: no tp = 72 or 144
        assert set(np.unique(tp)) == {1, 2, 4, 8, 16}


# ------------------------------------------------------------------------------ Python API
def test_peak_of_an_unknown_precision_is_a_catalog_error_naming_the_allowed():
    with pytest.raises(CatalogError, match=r"chip trn3: precision = 'fp7': allowed: fp32, "
                                           r"tf32, bf16, .*nvfp4"):
        catalog.chip("trn3").peak("fp7")
    assert catalog.chip("trn3").peak("fp4") == catalog.chip("trn3").peak("mxfp8")


@pytest.mark.parametrize("ident", [["trn3"], None, 3])
def test_catalog_ids_must_be_strings(ident):
    with pytest.raises(CatalogError, match="chip id"):
        catalog.chip(ident)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"global_batch": 16384.5}, "global_batch = 16384.5: an integer in 1..1,073,741,824"),
    ({"global_batch": "16384"}, "global_batch = '16384'"),
    ({"global_batch": math.nan}, "global_batch = nan"),
    ({"global_batch": True}, "global_batch = True"),
    ({"seq_len": 0}, "seq_len = 0"),
    ({"top": 0}, "top = 0"),
    ({"power_cap_w": math.inf}, "power_cap_w = inf"),
    ({"power_cap_w": 1500.0}, "trn3's TDP 1000 W"),
    ({"micro_batches": []}, "micro_batches"),
    ({"zeros": [4]}, "zeros = 4"),
    ({"recomputes": ["some"]}, "recompute = 'some'"),
    ({"chip": "trn9"}, "chip id = 'trn9'"),
])
def test_search_checks_its_arguments(kwargs, message):
    with pytest.raises(TrnlabError, match=message.replace("(", r"\(").replace(".", r"\.")):
        training.search("llama3-8b", "trn3-ultraserver", 64, **kwargs)


def test_search_accepts_integral_numbers_of_any_type():
    a = training.search("llama3-8b", "trn3-ultraserver", np.int64(64), global_batch=512.0,
                        top=1)
    b = training.search("llama3-8b", "trn3-ultraserver", 64, global_batch=512, top=1)
    assert a.attrs["best"] == b.attrs["best"] and a.attrs["global_batch"] == 512


def test_io_load_of_a_file_that_is_not_netcdf_is_one_line(tmp_path):
    bad = tmp_path / "notes.nc"
    bad.write_text("not netCDF\n")
    with pytest.raises(TrnlabError, match=r"io.load: path = '.*notes.nc': not a netCDF file") \
            as err:
        io.load(bad)
    assert "\n" not in str(err.value)
    with pytest.raises(TrnlabError, match="missing.nc': no such file"):
        io.load(tmp_path / "missing.nc")
    with pytest.raises(TrnlabError, match="not a file"):
        io.load(tmp_path)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"input_len": -5}, "frontier: input_len = -5"),
    ({"output_len": 0}, "output_len = 0"),
    ({"ttft_ms": -1.0}, "ttft_ms = -1.0"),
    ({"tpot_ms": math.nan}, "tpot_ms = nan"),
    ({"price_per_chip_hour": 0.0}, "price_per_chip_hour = 0.0"),
    ({"batches": [0, 1]}, "batches = 0"),
    ({"pps": []}, "pps"),
    ({"weights": "fp6"}, "weights = 'fp6'"),
    ({"activations": "int8-weights"}, "activations = 'int8-weights'"),
    ({"chip": 7}, "chip = 7"),
])
def test_frontier_checks_its_arguments(kwargs, message):
    with pytest.raises(TrnlabError, match=message.replace("(", r"\(").replace(".", r"\.")):
        serving.frontier("llama3-8b", "trn3-ultraserver", **kwargs)


def test_other_serving_entry_points_check_their_arguments():
    with pytest.raises(ParameterError, match="offline_throughput: tp = 0"):
        serving.offline_throughput("llama3-8b", "trn3", "trn3-ultraserver", tp=0,
                                   input_len=128, output_len=128)
    with pytest.raises(ParameterError, match="disaggregated: decode_batch = -1"):
        serving.disaggregated("llama3-8b", "trn3-ultraserver", "trn3-ultraserver",
                              decode_batch=-1)
    with pytest.raises(ParameterError, match="steady_state: request_rate"):
        serving.steady_state("llama3-8b", "trn3", "trn3-ultraserver", tp=1,
                             request_rate=[1.0, math.nan], input_len=128, output_len=128)


def test_energy_study_needs_samples():
    with pytest.raises(ParameterError, match=r"energy: n_samples = 0: an integer in 1\.\."):
        energy.study(n_samples=0)


@pytest.mark.parametrize(("study", "kwargs", "message"), [
    (energy.study, {"cluster_chips": [144, -5]}, "cluster_chips = -5"),
    (energy.study, {"token_budget": math.inf}, "token_budget = inf"),
    (energy.study, {"tpot_ms": 0}, "tpot_ms = 0"),
    (energy.study, {"systems": []}, "systems"),
    (energy.study, {"systems": ["trn9-pod"]}, "trn9-pod"),
    (energy.study, {"model": "llama9"}, "llama9"),
    (energy.study, {"seed": -1}, "seed = -1"),
    (cost.study, {"trn3_price": math.nan}, "cost: trn3_price = nan"),
    (cost.study, {"mfu_values": [0.5, 1.5]}, "mfu_values = 1.5"),
    (cost.study, {"trn3_prices": []}, "trn3_prices"),
    (cost.study, {"target_ratio": -0.5}, "target_ratio = -0.5"),
    (cost.study, {"n_samples": 2.5}, "n_samples = 2.5"),
])
def test_energy_and_cost_studies_check_their_arguments(study, kwargs, message):
    with pytest.raises(TrnlabError, match=message.replace(".", r"\.")):
        study(**kwargs)


def test_a_typo_in_an_override_key_is_an_error_listing_the_allowed_keys():
    with pytest.raises(ParameterError, match=r"cost: overrides key = 'energy_prize': allowed: "
                                             r"idle_fraction, .*energy_price"):
        cost.study(overrides={"energy_prize": 0.1})
    with pytest.raises(ParameterError, match=r"energy: overrides key = 'pue_': allowed: "
                                             r"idle_fraction, memory_weight, system_overhead, pue"):
        energy.study(overrides={"pue_": 1.2})
    # the energy study uses no price: an economics key there would be silently ignored
    with pytest.raises(ParameterError, match="'energy_price'"):
        energy.study(overrides={"energy_price": 0.1})


@pytest.mark.parametrize(("overrides", "message"), [
    ({"pue": 0.5}, "pue = 0.5: a finite number >= 1"),
    ({"pue": [1.3, 1.2, 1.1]}, "increasing order"),
    ({"idle_fraction": math.nan}, "idle_fraction = nan"),
    ({"system_overhead": [0.1, 0.2]}, "[low, central, high]"),
    ({"life_years": 0}, "life_years = 0"),
    ({"energy_price": "cheap"}, "energy_price = 'cheap'"),
])
def test_override_values_are_checked(overrides, message):
    with pytest.raises(ParameterError, match=message.replace("[", r"\[").replace(".", r"\.")):
        economics.check_overrides("cost", overrides)


def test_override_and_draw_refuse_non_finite_values():
    field = catalog.facility().fields["pue"]
    with pytest.raises(ParameterError, match="override: pue = nan"):
        sampling.override(field, math.nan)
    with pytest.raises(ParameterError, match="override: pue = inf"):
        sampling.override(field, [1.1, 1.2, math.inf])
    with pytest.raises(ParameterError, match="draw: n = 0"):
        sampling.draw(field, 0, np.random.default_rng(0))


@pytest.mark.parametrize("chips", [-5, 0, 2.5, math.nan])
def test_claims_cluster_chips_must_be_positive(chips):
    with pytest.raises(ParameterError, match=f"claims: cluster_chips = {chips}"):
        claims.assumptions(cluster_chips=chips)
    with pytest.raises(ParameterError, match="claims: cluster_chips"):
        claims.ledger(claims.Assumptions(cluster_chips=chips))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"chip_power_w": [900, 1000, math.nan]}, "chip_power_w = nan"),
    ({"chip_power_w": [-1, 0, 1]}, "chip_power_w = -1"),
    ({"pue": [0.9, 1.0, 1.1]}, "pue = 0.9"),
    ({"trn3_mfu": [1.1, 1.0, 0.9]}, "trn3_mfu = \\[1.1, 1.0, 0.9\\]"),
    ({"n_chipz": 5}, "assumption = 'n_chipz'"),
])
def test_claims_assumptions_are_checked(kwargs, message):
    with pytest.raises(ParameterError, match=message):
        claims.assumptions(**kwargs)


def test_memory_study_refuses_non_finite_values_in_one_line():
    with pytest.raises(ParameterError, match="memory: input_len = nan"):
        memory.study(input_len=math.nan)
    with pytest.raises(ParameterError, match="memory: ttft_ms = inf"):
        memory.study(ttft_ms=math.inf)
    with pytest.raises(ParameterError, match="memory: models"):
        memory.study(models=[["llama3-8b"]])


# --------------------------------------------------------------------------- the helpers
def test_checks_helpers():
    assert checks.positive_int("w", "n", np.int64(3)) == 3
    assert checks.positive_int("w", "n", 3.0) == 3
    for bad in (0, -1, 2.5, "3", True, None, math.nan, math.inf, [3]):
        with pytest.raises(ParameterError, match="w: n = "):
            checks.positive_int("w", "n", bad)
    assert checks.finite("w", "x", np.float32(0.5), 0, 1) == 0.5
    with pytest.raises(ParameterError, match=r"w: x = 1\.5: a finite number >= 0 and <= 1"):
        checks.finite("w", "x", 1.5, 0, 1)
    with pytest.raises(ParameterError, match=r"w: x = 0: a finite number > 0 \[W\]"):
        checks.positive("w", "x", 0, unit="W")
    with pytest.raises(ParameterError, match="w: p = 'fp7': allowed: a, b"):
        checks.choice("w", "p", "fp7", ("a", "b"))
    with pytest.raises(ParameterError, match="w: overrides key = 'c': allowed: a, b"):
        checks.known_keys("w", {"a": 1, "c": 2}, ("a", "b"))
    assert checks.known_keys("w", None, ("a",)) == {}
    with pytest.raises(ParameterError, match=r"w: n = 1000000000000000000.*\.\.\.: an integer"):
        checks.positive_int("w", "n", 10**100, 5)
