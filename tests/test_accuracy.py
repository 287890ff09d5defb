"""trnlab.calibration.accuracy: every case row predicted, errors and scores from the Dataset."""

from __future__ import annotations

import re

import numpy as np
import pytest

from trnlab import io
from trnlab.calibration import accuracy, validate


@pytest.fixture(scope="module")
def ds():
    return accuracy.study()


def test_every_case_row_is_in_the_dataset(ds):
    rows = validate.read_cases(accuracy.default_cases())
    assert list(ds["case"].values) == [r["case_id"] for r in rows]
    assert set(ds["kind"].values) == {"training", "inference"}


def test_rel_error_is_predicted_over_measured_minus_one(ds):
    p, m = ds["predicted"].values, ds["measured"].values
    ok = np.isfinite(p) & np.isfinite(m)
    assert ok.any()
    np.testing.assert_allclose(ds["rel_error"].values[ok], p[ok] / m[ok] - 1, rtol=1e-12)


def test_training_mape_is_the_mean_absolute_training_error(ds):
    err = ds["rel_error"].values[ds["kind"].values == "training"]
    assert ds.attrs["training_mape"] == pytest.approx(np.nanmean(np.abs(err)))
    assert f"{100 * ds.attrs['training_mape']:.1f}%" in ds.attrs["headline"]


def test_the_headline_splits_fitted_and_held_out_rows(ds):
    conv = validate.load_conventions()
    held = np.array([validate.held_out(str(s), conv) for s in ds["source"].values])
    train = ds["kind"].values == "training"
    err = np.abs(ds["rel_error"].values)
    for part, mask in (("fitted", train & ~held), ("held_out", train & held)):
        assert ds.attrs[f"training_{part}_cases"] == int(mask.sum()) > 0
        assert ds.attrs[f"training_{part}_mape"] == pytest.approx(np.nanmean(err[mask]))
    assert ds.attrs["training_fitted_mape"] < ds.attrs["training_mape"]
    assert (f"{int((train & ~held).sum())} fitted {100 * ds.attrs['training_fitted_mape']:.1f}%"
            in ds.attrs["headline"])


def _training_mape(text: str) -> str:
    return re.search(r"\*\*Training\.\*\* MAPE ([0-9.]+)%", text).group(1)


def test_an_edited_prediction_changes_the_reading(ds):
    edited = ds.copy(deep=True)
    i = int(np.flatnonzero((ds["kind"].values == "training")
                           & np.isfinite(ds["predicted"].values))[0])
    edited["predicted"].values[i] *= 2
    assert _training_mape(accuracy.reading(edited)) != _training_mape(accuracy.reading(ds))
    assert accuracy.headline(edited) != accuracy.headline(ds)


def test_the_reading_names_the_sources_held_out_of_the_fit(ds):
    conv = validate.load_conventions()
    held = {src for src, entry in conv.items() if entry.get("fit", True) is False}
    text = accuracy.reading(ds)
    assert held and all(src in text for src in held)
    fitted = {str(s) for s in ds["source"].values} - held
    line = next(x for x in text.splitlines() if "held-out sources" in x)
    assert not any(f" {src}," in line or f" {src} " in line for src in fitted)


def test_units_parse_and_the_dataset_saves(ds, tmp_path):
    path = io.save(ds, tmp_path / "acc.nc", parameters={"cases": ""})
    back = io.load(path)
    assert back.sizes["case"] == ds.sizes["case"]
    assert back["seq_len"].attrs["units"] == "token"
