"""Figure helpers (trnlab.plot) on small synthetic Datasets: values, bands, colours, hatches."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
import xarray as xr
from matplotlib.colors import to_rgba

from trnlab import plot
from trnlab.errors import ParameterError

matplotlib.use("Agg")
import matplotlib.pyplot as plt

SYSTEMS = ["trn3-ultraserver", "dgx-h100", "gb200-nvl72"]
P5, P50, P95 = [1000.0, 600.0, 1100.0], [1200.0, 700.0, 1250.0], [1500.0, 800.0, 1400.0]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture
def ds() -> xr.Dataset:
    """Chip power [W] with p5/p50/p95 along ``percentile``, per system, with a status."""
    out = xr.Dataset(coords={"system": SYSTEMS, "percentile": [5.0, 50.0, 95.0]})
    out["system"].attrs.update(long_name="scale-up system", units="1")
    out["power"] = (("percentile", "system"), np.array([P5, P50, P95]),
                    {"units": "W", "long_name": "chip power"})
    out["mfu"] = ("system", np.array([0.4, np.nan, 0.5]), {"units": "1", "long_name": "MFU"})
    out["system_status"] = ("system", ["projected", "announced", "measured"])
    return out


def _rgba(vendor: str):
    return to_rgba(plot.VENDOR_COLORS[vendor])


def test_bars_medians_band_units_label(ds):
    drawn, err = plot.bars(ds, "power", dim="system", units="kW")
    np.testing.assert_allclose([p.get_height() for p in drawn.patches], np.array(P50) / 1000)
    segments = err.lines[2][0].get_segments()
    np.testing.assert_allclose([s[0][1] for s in segments], np.array(P5) / 1000)
    np.testing.assert_allclose([s[1][1] for s in segments], np.array(P95) / 1000)
    ax = drawn.patches[0].axes
    assert ax.get_ylabel() == "chip power [kW]"
    assert [t.get_text() for t in ax.get_xticklabels()] == SYSTEMS
    assert ax.get_xlabel() == "scale-up system"


def test_bars_hatch_projected_only(ds):
    drawn, _ = plot.bars(ds, "power", dim="system")
    assert [p.get_hatch() for p in drawn.patches] == ["//", None, None]


def test_bars_colour_by_vendor_from_catalog(ds):
    drawn, _ = plot.bars(ds["power"], dim="system")
    colours = [p.get_facecolor() for p in drawn.patches]
    assert colours == [_rgba("aws"), _rgba("nvidia"), _rgba("nvidia")]
    assert colours[0] != colours[1]


def test_bars_colour_from_vendor_coordinate_and_grey_for_unknown():
    da = xr.DataArray([1.0, 2.0, 3.0], dims="system",
                      coords={"system": ["x", "y", "z"], "vendor": ("system", ["google", "amd",
                                                                               "acme"])},
                      attrs={"units": "s", "long_name": "time"})
    drawn, err = plot.bars(da, dim="system", units="ms")
    assert err is None
    assert [p.get_facecolor() for p in drawn.patches] == [
        _rgba("google"), _rgba("amd"), to_rgba(plot.OTHER_COLOR)]
    np.testing.assert_allclose([p.get_height() for p in drawn.patches], [1000, 2000, 3000])
    unknown, _ = plot.bars(da.drop_vars("vendor"), dim="system")
    assert {p.get_facecolor() for p in unknown.patches} == {to_rgba(plot.OTHER_COLOR)}


def test_bars_band_from_separate_variables_and_none(ds):
    flat = xr.Dataset({"power": ds["power"].sel(percentile=50.0, drop=True),
                       "power_p5": ds["power"].sel(percentile=5.0, drop=True),
                       "power_p95": ds["power"].sel(percentile=95.0, drop=True)})
    drawn, err = plot.bars(flat, "power", dim="system")
    np.testing.assert_allclose([p.get_height() for p in drawn.patches], P50)
    segments = err.lines[2][0].get_segments()
    np.testing.assert_allclose([s[0][1] for s in segments], P5)
    np.testing.assert_allclose([s[1][1] for s in segments], P95)
    _, none = plot.bars(ds, "power", dim="system", band=None)
    assert none is None


def test_bars_offset_colour_override_and_shared_axes(ds):
    _, ax = plt.subplots()
    first, _ = plot.bars(ds, "power", dim="system", ax=ax, offset=-0.2, width=0.4, label="a")
    second, _ = plot.bars(ds, "power", dim="system", ax=ax, offset=0.2, width=0.4, color="k")
    np.testing.assert_allclose([p.get_x() + p.get_width() / 2 for p in first.patches],
                               [-0.2, 0.8, 1.8])
    assert {p.get_facecolor() for p in second.patches} == {to_rgba("k")}
    assert first.patches[0].axes is ax


def test_bars_bad_input(ds):
    with pytest.raises(ParameterError, match="var"):
        plot.bars(ds, "nope", dim="system")
    with pytest.raises(ParameterError, match="'B'"):
        plot.bars(ds, "power", dim="system", units="B")
    with pytest.raises(ParameterError, match="dim"):
        plot.bars(ds, "power", dim="chip")


def test_heatmap_nan_cells_blank():
    values = np.array([[1.0, np.nan, 3.0], [4.0, 5.0, np.nan]])
    da = xr.DataArray(values, dims=("pp", "tp"), coords={"pp": [1, 2], "tp": [1, 2, 4]},
                      attrs={"units": "s", "long_name": "step time"})
    image = plot.heatmap(da, x="tp", y="pp", units="ms", fmt=".0f")
    ax = image.axes
    texts = {(t.get_position(), t.get_text()) for t in ax.texts}
    assert texts == {((0, 0), "1000"), ((2, 0), "3000"), ((0, 1), "4000"), ((1, 1), "5000")}
    np.testing.assert_allclose(image.get_array(), values * 1000)
    colourbar = image.colorbar
    assert colourbar.ax.get_ylabel() == "step time [ms]"
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1", "2", "4"]


def test_heatmap_wrong_dims():
    with pytest.raises(ParameterError, match="dims"):
        plot.heatmap(xr.DataArray(np.ones((2, 2)), dims=("a", "b")), x="a", y="c")


def test_stacked_tops_equal_sum():
    values = np.array([[1.0, 2.0, 0.5], [0.5, np.nan, 0.25], [2.0, 1.0, 1.0]])
    da = xr.DataArray(values, dims=("component", "system"),
                      coords={"component": ["compute", "comm", "bubble"], "system": SYSTEMS},
                      attrs={"units": "s", "long_name": "time per step"})
    drawn = plot.stacked(da.transpose("system", "component"), dim="system", units="ms")
    assert len(drawn) == 3
    tops = [p.get_y() + p.get_height() for p in drawn[-1].patches]
    np.testing.assert_allclose(tops, np.nansum(values, axis=0) * 1000)
    assert drawn[0].patches[0].axes.get_ylabel() == "time per step [ms]"


@pytest.fixture
def roof() -> xr.Dataset:
    out = xr.Dataset(coords={"chip": ["trn3", "h100-sxm"], "op": ["qkv", "norm"]})
    out["peak"] = ("chip", [2.0e15, 1.0e15], {"units": "FLOP/s", "long_name": "peak"})
    out["hbm_bandwidth"] = ("chip", [4.0e12, 3.35e12], {"units": "B/s", "long_name": "HBM"})
    out["intensity"] = ("op", [800.0, 1.0], {"units": "FLOP/B", "long_name": "intensity"})
    out["modelled"] = (("chip", "op"), [[1.5e15, 3.0e12], [0.8e15, 2.5e12]],
                       {"units": "FLOP/s", "long_name": "modelled rate"})
    return out


def test_roofline_bends_at_ridge(roof):
    lines, points = plot.roofline(roof)
    assert len(lines) == len(points) == 2
    for line, peak, bw in zip(lines, [2.0e15, 1.0e15], [4.0e12, 3.35e12], strict=True):
        x, y = line.get_xdata(), line.get_ydata()
        ridge = peak / bw
        assert np.any(np.isclose(x, ridge, rtol=1e-12))
        np.testing.assert_allclose(y[x <= ridge], x[x <= ridge] * bw)
        np.testing.assert_allclose(y[x >= ridge], peak)
        assert x.min() < ridge < x.max()
    np.testing.assert_allclose(points[0].get_offsets(), [[800.0, 1.5e15], [1.0, 3.0e12]])
    assert lines[0].get_color() == plot.VENDOR_COLORS["aws"]
    assert lines[1].get_color() == plot.VENDOR_COLORS["nvidia"]
    ax = lines[0].axes
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert ax.get_xlabel() == "intensity [FLOP/B]"


def test_band_spans_p5_p95():
    x = np.array([1.0, 2.0, 4.0])
    da = xr.DataArray(np.array([[1.0, 2.0, 3.0], [2.0, 3.0, 5.0], [4.0, 4.0, 8.0]]),
                      dims=("percentile", "n_chips"),
                      coords={"percentile": [5, 50, 95], "n_chips": x},
                      attrs={"units": "MW", "long_name": "facility power"})
    da["n_chips"].attrs.update(long_name="chips", units="1")
    line, poly = plot.band(da, x="n_chips", units="kW", label="p50")
    np.testing.assert_allclose(line.get_ydata(), [2000.0, 3000.0, 5000.0])
    vertices = poly.get_paths()[0].vertices
    for xi, lo, hi in zip(x, [1000.0, 2000.0, 3000.0], [4000.0, 4000.0, 8000.0], strict=True):
        ys = vertices[np.isclose(vertices[:, 0], xi), 1]
        assert ys.min() == pytest.approx(lo) and ys.max() == pytest.approx(hi)
    assert line.axes.get_ylabel() == "facility power [kW]"
    assert line.axes.get_xlabel() == "chips [1]"


def test_summary_strings(ds):
    ds["power"] = (("percentile", "system"), [[1200.0, 1, 1], [1500.0, 2, np.nan],
                                              [1900.0, 3, 3]],
                   {"units": "W", "long_name": "chip power"})
    table = plot.summary(ds, dim="system", units={"power": "kW"})
    assert list(table.columns) == ["power [kW]", "mfu [1]"]
    assert list(table.index) == SYSTEMS and table.index.name == "system"
    assert table.loc["trn3-ultraserver", "power [kW]"] == "1.50 [1.20–1.90]"
    assert table.loc["gb200-nvl72", "power [kW]"] == "—"
    assert table.loc["trn3-ultraserver", "mfu [1]"] == "0.400"
    assert table.loc["dgx-h100", "mfu [1]"] == "—"
    single = plot.summary(ds["power"], dim="system", fmt=".0f")
    assert single.loc["trn3-ultraserver", "power [W]"] == "1500 [1200–1900]"


def test_bars_hatch_by_a_named_status_coordinate():
    """``status=`` picks the coordinate that decides the hatching (a price's, not a TDP's)."""
    systems = ["trn3-ultraserver", "dgx-h100"]
    ds = xr.Dataset({"price": ("system", [4.0, 3.0], {"units": "USD/(chip*h)",
                                                      "long_name": "price"})},
                    coords={"system": systems,
                            "system_status": ("system", ["projected", "projected"]),
                            "price_status": ("system", ["projected", "announced"])})
    drawn, _ = plot.bars(ds, "price", dim="system", band=None, status="price_status")
    assert [p.get_hatch() for p in drawn.patches] == [plot.PROJECTED_HATCH, None]
    drawn, _ = plot.bars(ds, "price", dim="system", band=None, status="system_status")
    assert [p.get_hatch() for p in drawn.patches] == [plot.PROJECTED_HATCH] * 2
    drawn, _ = plot.bars(ds, "price", dim="system", band=None)  # <var>_status comes first
    assert [p.get_hatch() for p in drawn.patches] == [plot.PROJECTED_HATCH, None]
    plt.close("all")


@pytest.mark.parametrize(("value", "text"), [(1020.4, "1,020"), (1.19e3, "1,190"), (0.0123, "0.0123"),
                                             (2.5, "2.50"), (3.2e8, "3.2e+08"), (float("nan"), "—")])
def test_table_numbers_have_three_significant_digits_without_exponents(value, text):
    assert plot.number(value) == text
