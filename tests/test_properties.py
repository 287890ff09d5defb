"""Property tests of the boundaries: whatever values a user gives (negative, zero, NaN, inf,
huge, not a number), a public entry point either returns a result or raises one TrnlabError
line (the CLI: exit 0, or exit 2 with one stderr line and no traceback), never another
exception, and a result never has a NaN where it says a row is valid.

Each example draws every argument from its plausible range (edges included: 1 token, 2^24
tokens, a 1 W power cap) and then makes up to two of them nasty, so that both results and
errors are exercised. Each call stays small (llama3-8b, at most 160 chips)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from _cli import run
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from trnlab import catalog
from trnlab.engine import serving, training
from trnlab.errors import TrnlabError
from trnlab.studies import energy

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

#: numbers a user might pass: negative, zero, NaN, inf, huge, tiny, fractions
NASTY_FLOATS = st.one_of(st.sampled_from([0.0, -0.0, -1.0, math.nan, math.inf, -math.inf,
                                          1e308, 1e-308, 5e-324, 0.5]),
                         st.floats(allow_nan=True, allow_infinity=True))
NASTY_INTS = st.one_of(st.sampled_from([0, -1, -(2**63), 2**63, 10**30, 1 << 25]),
                       st.integers(-10, -1))
NASTY = st.one_of(NASTY_INTS, NASTY_FLOATS, st.booleans(), st.none(),
                  st.sampled_from(["16384", "abc", "", "nan", [64], {"n": 1}]))
#: CLI argument values that are not plausible: numbers out of range, words, odd spellings
NASTY_TEXT = st.one_of(NASTY_INTS.map(str), NASTY_FLOATS.map(repr),
                       st.sampled_from(["nan", "inf", "-inf", "1e400", "abc", "", "-", "0x10",
                                        "1_000", " 7", "٣", "1e3"]),
                       st.text(max_size=6))


def draw_args(data: st.DataObject, plausible: dict[str, Any], nasty: dict[str, Any]
              ) -> dict[str, Any]:
    """Every argument from its plausible strategy, then up to two from their nasty one."""
    bad = data.draw(st.sets(st.sampled_from(sorted(nasty)), max_size=2), label="nasty")
    return {k: data.draw(nasty[k] if k in bad else plausible[k], label=k) for k in plausible}


def attempt(call: Callable[[], Any]) -> Any:
    """``call()``, or None when it raises a TrnlabError, which must be one line; any other
    exception fails the test."""
    try:
        result = call()
    except TrnlabError as err:
        message = str(err)
    else:
        event("result")
        return result
    assert message and "\n" not in message
    event("error")
    return None




def _finite(obj: object) -> None:
    """Every float in a JSON document is finite."""
    if isinstance(obj, dict):
        for v in obj.values():
            _finite(v)
    elif isinstance(obj, list):
        for v in obj:
            _finite(v)
    elif isinstance(obj, float):
        assert math.isfinite(obj)


def _check_cli(argv: list[str], as_json: bool) -> None:
    rc, out, err = run([*argv, *(["--json"] if as_json else [])])
    assert rc in (0, 2), (argv, rc, err)
    assert "Traceback" not in err
    event(f"exit {rc}")
    if rc == 2:
        assert out == ""
        assert err.count("\n") == 1 and err.startswith("trnlab: error: "), err
        return
    assert err == "", err
    if as_json:
        _finite(json.loads(out))  # and json.dumps refuses NaN: nothing non-finite got out
    else:
        assert not {"nan", "inf", "-inf", "None"} & set(out.split()), out


def _options(args: dict[str, Any]) -> list[str]:
    """``--flag=value`` for each argument that is not None (a value may start with '-')."""
    return [f"{flag}={value}" for flag, value in args.items() if value is not None]


def _ms(low: float = 1e-3, high: float = 1e5) -> st.SearchStrategy[float]:
    return st.floats(low, high, allow_nan=False, allow_infinity=False)


# -------------------------------------------------------------------------------- the CLI
SEARCH_CLI = {"--chips": st.integers(1, 160).map(str),
              "--seq": st.one_of(st.sampled_from([1, 2048, 8192, 1 << 24]),
                                 st.integers(1, 1 << 24)).map(str),
              "--global-batch": st.one_of(st.none(), st.integers(1, 1 << 30).map(str)),
              "--top": st.one_of(st.none(), st.integers(1, 30).map(str)),
              "--power-cap": st.one_of(st.none(), _ms(1.0, 1000.0).map(repr))}


@SETTINGS
@given(data=st.data(), as_json=st.booleans())
def test_cli_search_is_a_result_or_one_error_line(data, as_json):
    nasty = dict.fromkeys(SEARCH_CLI, NASTY_TEXT)
    nasty["--chips"] = st.sampled_from(["0", "-3", str(10**7 + 1), str(2**63), str(10**30),
                                        "nan", "abc", "", "64.0", "-"])
    args = draw_args(data, SEARCH_CLI, nasty)
    _check_cli(["search", "--model", "llama3-8b", "--system", "trn3-ultraserver",
                *_options(args)], as_json)


SERVE_CLI = {"--input": st.integers(1, 1 << 24).map(str),
             "--output": st.integers(1, 1 << 24).map(str),
             "--ttft-ms": st.one_of(st.none(), _ms().map(repr)),
             "--tpot-ms": st.one_of(st.none(), _ms().map(repr)),
             "--price": st.one_of(st.none(), _ms(1e-3, 1e6).map(repr)),
             "--power-cap": st.one_of(st.none(), _ms(1.0, 700.0).map(repr)),
             "--kv": st.sampled_from(["bf16", "fp8", "int8-weights", "fp4"])}


@SETTINGS
@given(data=st.data(), system=st.sampled_from(["trn3-ultraserver", "dgx-h100"]),
       as_json=st.booleans())
def test_cli_serve_is_a_result_or_one_error_line(data, system, as_json):
    nasty = dict.fromkeys(SERVE_CLI, NASTY_TEXT)
    nasty["--kv"] = st.sampled_from(["fp7", "", "BF16", "int8-weight"])
    args = draw_args(data, SERVE_CLI, nasty)
    _check_cli(["serve", "--model", "llama3-8b", "--system", system, *_options(args)], as_json)


# ------------------------------------------------------------------------- the Python API
SEARCH_API = {"n_chips": st.integers(1, 160),
              "seq_len": st.one_of(st.sampled_from([1, 8192, 1 << 24]), st.integers(1, 1 << 24)),
              "global_batch": st.one_of(st.none(), st.integers(1, 1 << 30)),
              "top": st.integers(1, 30),
              "power_cap_w": st.one_of(st.none(), st.sampled_from([1.0, 1000.0]),
                                       _ms(1.0, 1000.0))}


@SETTINGS
@given(data=st.data())
def test_search_is_a_result_or_a_trnlab_error(data):
    args = draw_args(data, SEARCH_API, dict.fromkeys(SEARCH_API, NASTY))
    ds = attempt(lambda: training.search("llama3-8b", "trn3-ultraserver", **args))
    if ds is None:
        return
    valid = ds["reason"].values == 0
    assert ds.attrs["n_valid"] == 0 or valid.any()
    for key in ("step_time", "tokens_per_s_per_chip", "mfu", "mem_per_chip"):
        assert np.all(np.isfinite(ds[key].values[valid])), key
    if valid.any():
        row = training.best_row(ds)
        assert all(math.isfinite(v) for v in row.values() if isinstance(v, float)), row


FRONTIER_API = {"input_len": st.one_of(st.sampled_from([1, 1 << 24]), st.integers(1, 1 << 24)),
                "output_len": st.one_of(st.sampled_from([1, 1 << 24]), st.integers(1, 1 << 24)),
                "ttft_ms": st.one_of(st.none(), _ms()), "tpot_ms": st.one_of(st.none(), _ms()),
                "price_per_chip_hour": st.one_of(st.none(), _ms(1e-3, 1e6)),
                "power_cap_w": st.one_of(st.none(), st.sampled_from([1.0, 700.0]),
                                         _ms(1.0, 700.0))}


@SETTINGS
@given(data=st.data())
def test_frontier_is_a_result_or_a_trnlab_error(data):
    args = draw_args(data, FRONTIER_API, dict.fromkeys(FRONTIER_API, NASTY))
    ds = attempt(lambda: serving.frontier("llama3-8b", "dgx-h100", batches=(1, 16, 256),
                                          pps=(1, 2), **args))
    if ds is None:
        return
    ok = ds["reason"].values == 0
    for key in ("ttft", "tpot", "output_tokens_per_s_per_chip", "chip_s_per_m_tokens",
                "usd_per_m_tokens"):  # dgx-h100 has a list price
        assert np.all(np.isfinite(ds[key].values[ok])), key
    best = serving.best(ds)
    assert all(math.isfinite(v) for v in best.values()), best


OVERRIDE_KEYS = st.sampled_from(["pue", "idle_fraction", "memory_weight", "system_overhead"])
ENERGY_API = {
    "n_samples": st.integers(1, 8), "token_budget": _ms(1.0, 1e15),
    "cluster_chips": st.lists(st.integers(1, 10**7), min_size=1, max_size=3, unique=True),
    "overrides": st.one_of(st.none(), st.dictionaries(
        OVERRIDE_KEYS, st.one_of(st.just(1.2), st.just([1.1, 1.2, 1.3])), max_size=2)),
    "seed": st.integers(0, 5)}
ENERGY_NASTY = {
    **dict.fromkeys(("n_samples", "token_budget", "seed"), NASTY),
    "cluster_chips": st.one_of(NASTY, st.lists(NASTY, max_size=2)),
    "overrides": st.one_of(NASTY, st.dictionaries(
        st.sampled_from(["pue", "energy_price", "pue_", ""]),
        st.one_of(NASTY_FLOATS, st.lists(NASTY_FLOATS, max_size=4), st.just("x")),
        min_size=1, max_size=2))}


@SETTINGS
@given(data=st.data())
def test_energy_study_is_a_result_or_a_trnlab_error(data):
    args = draw_args(data, ENERGY_API, ENERGY_NASTY)
    ds = attempt(lambda: energy.study(model="llama3-8b", systems=("trn3-ultraserver",),
                                      n_chips=64, serve_model="llama3-8b", **args))
    if ds is None:
        return
    for key in ("chip_power_training", "energy_per_token_training", "cluster_power"):
        assert np.all(np.isfinite(ds[key].values)), key
        assert np.all(np.isfinite(ds[f"{key}_central"].values)), key


CHIPS = sorted(catalog.default().chips)


PEAK_API = {"chip": st.sampled_from(CHIPS), "precision": st.sampled_from(catalog.PRECISIONS)}
PEAK_NASTY = {"chip": st.one_of(st.sampled_from(["trn9", "", "TRN3"]), NASTY),
              "precision": st.one_of(st.sampled_from(["fp7", "BF16", ""]), st.text(max_size=5),
                                     NASTY)}


@SETTINGS
@given(data=st.data())
def test_peak_is_a_number_or_a_trnlab_error(data):
    args = draw_args(data, PEAK_API, PEAK_NASTY)
    peak = attempt(lambda: catalog.chip(args["chip"]).peak(args["precision"]))
    if peak is None:
        return
    assert math.isfinite(peak) and peak > 0
