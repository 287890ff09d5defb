"""xarray-aware figure helpers: axes from ``long_name [units]``, vendor colours, bands.

Every function takes ``ax=`` (a matplotlib Axes; a new figure when None), labels its axes from
the variables' ``long_name`` and ``units`` attrs, converts to a display unit only here
(``units=``, any unit of :mod:`trnlab.units` of the same dimension as the variable's ``units``)
and returns the artists it drew. Values along ``percentile_dim`` are percentiles in percent:
5, 50 and 95 give the median and the p5–p95 band.

Colours: one per vendor (:data:`VENDOR_COLORS`), from a ``vendor`` coordinate along the plotted
dimension, else from the catalog when the dimension holds chip or system ids. Bars whose status
(a ``<var>_status``, ``<dim>_status`` or ``status`` variable along the dimension) is
``projected`` are hatched ``//``.

>>> ax = bars(ds, "chip_power_training", dim="system", units="kW")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np
import pandas as pd
import xarray as xr

from trnlab import catalog
from trnlab.errors import CatalogError, ParameterError, bad_value
from trnlab.units import convert

#: one colour per vendor; any other vendor (or an unknown id) is :data:`OTHER_COLOR`
VENDOR_COLORS = {"aws": "#ff9900", "nvidia": "#76b900", "google": "#4285f4", "amd": "#ed1c24"}
OTHER_COLOR = "#888888"
PROJECTED_HATCH = "//"
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D")


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt  # only to create a figure

        _, ax = plt.subplots()
    return ax


def _fail(field: str, value: object, allowed: str):
    raise ParameterError(bad_value("plot", field, value, allowed))


def _label(da: xr.DataArray, unit: str | None = None) -> str:
    """``long_name [unit]`` (the ``units`` attr when ``unit`` is None); no brackets if none."""
    name = da.attrs.get("long_name", da.name)
    unit = unit if unit is not None else da.attrs.get("units")
    return f"{name} [{unit}]" if unit else str(name)


def _dim_label(obj, dim: str) -> str:
    """The label of a dimension: its coordinate's long_name, with units unless categorical."""
    if dim not in obj.coords:
        return dim
    c = obj.coords[dim]
    return str(c.attrs.get("long_name", dim)) if c.dtype.kind in "OUS" else _label(c)


def _ticks(obj, dim: str) -> list[str]:
    return [str(v) for v in obj[dim].values]


def _display(das: list, units: str | None) -> tuple[list, str | None]:
    """``das`` (the first one's ``units`` attr applies to all; None kept) in ``units``."""
    src = das[0].attrs.get("units")
    if units is None or units == src:
        return das, src
    if src is None:
        _fail(f"{das[0].name}.units", None, f"needed to convert to {units!r}")
    return [None if d is None else d.copy(data=convert(d.values, src, units))
            .assign_attrs(units=units) for d in das], units


def _along(obj, dim: str, names) -> list[str] | None:
    """Values of the first variable of ``names`` (coordinate or data) that lies along ``dim``."""
    pool = {**obj.coords, **(obj.data_vars if isinstance(obj, xr.Dataset) else {})}
    for name in names:
        v = pool.get(name) if name else None
        if v is not None and v.dims == (dim,):
            return [str(s) for s in v.values]
    return None


def _vendor(item_id: str) -> str:
    """The vendor of a chip or system id from the catalog ('' when unknown)."""
    with contextlib.suppress(CatalogError):
        return catalog.chip(item_id).vendor
    with contextlib.suppress(CatalogError):
        return catalog.chip(catalog.system(item_id).chip).vendor
    return ""


def _colors(obj, dim: str) -> list[str]:
    vendors = _along(obj, dim, ("vendor",))
    if vendors is None:
        vendors = [_vendor(i) for i in _ticks(obj, dim)] if dim in obj.coords else []
    vendors += [""] * (obj.sizes[dim] - len(vendors))
    return [VENDOR_COLORS.get(v.lower(), OTHER_COLOR) for v in vendors]


def _pct(name) -> float:
    return float(str(name).removeprefix("p"))


def _median_band(obj, var, band, pdim: str):
    """(median, low, high) DataArrays; low and high are None without a band.

    The band comes from the ``pdim`` dimension (``band`` names like ``"p5"`` select
    percentile 5), else from Dataset variables ``<var>_<band[0]>`` and ``<var>_<band[1]>``.
    """
    da = obj[var] if isinstance(obj, xr.Dataset) else obj
    if pdim in da.dims:
        def pick(p):
            return da.sel({pdim: _pct(p)}, drop=True)
        return (pick(50), *((pick(b) for b in band) if band else (None, None)))
    names = [f"{var}_{b}" for b in band] if band and isinstance(obj, xr.Dataset) else []
    if names and all(n in obj for n in names):
        return da, obj[names[0]], obj[names[1]]
    return da, None, None


def bars(da_or_ds, var: str | None = None, *, dim: str, band=("p5", "p95"),
         percentile_dim: str = "percentile", units: str | None = None, ax=None,
         offset: float = 0.0, width: float = 0.8, label: str | None = None,
         color: str | None = None, status: str | None = None):
    """Bars of the median of ``var`` along ``dim`` [``units``, default the variable's].

    Bars whose status is ``projected`` are hatched: the status is the coordinate or variable
    named ``status`` when given (e.g. ``"price_status"``), else ``<var>_status``,
    ``<dim>_status`` or ``status``.

    The median is percentile 50 of ``percentile_dim`` when the variable has it (error bars from
    percentiles ``band``), else the variable itself (error bars from Dataset variables
    ``<var>_p5`` and ``<var>_p95`` when present). ``band=None``: no error bars. ``offset`` and
    ``width`` [bar slots] place groups of bars. Returns (BarContainer, ErrorbarContainer|None).
    """
    if isinstance(da_or_ds, xr.Dataset) and var not in da_or_ds:
        _fail("var", var, "a variable of the Dataset")
    name = var if var is not None else da_or_ds.name
    med, lo, hi = _median_band(da_or_ds, var, band, percentile_dim)
    if med.dims != (dim,):
        _fail("dim", dim, f"the only dim besides {percentile_dim!r}; got {med.dims}")
    (med, lo, hi), unit = _display([med, lo, hi], units)
    ax, x, y = _axes(ax), np.arange(med.sizes[dim]) + offset, med.values
    colors = [color] * len(x) if color else _colors(da_or_ds, dim)
    drawn = ax.bar(x, y, width=width, color=colors, label=label, edgecolor="black", linewidth=0.5)
    names = (status,) if status else (f"{name}_status" if name else None, f"{dim}_status",
                                      "status")
    for patch, s in zip(drawn.patches, _along(da_or_ds, dim, names) or [""] * len(x),
                        strict=True):
        patch.set_hatch(PROJECTED_HATCH if s == "projected" else None)
    err = None if lo is None else ax.errorbar(
        x, y, yerr=[y - lo.values, hi.values - y], fmt="none", ecolor="black", capsize=3)
    ax.set_xticks(np.arange(len(x)), _ticks(med, dim))
    ax.set_xlabel(_dim_label(med, dim))
    ax.set_ylabel(_label(med, unit))
    return drawn, err


def heatmap(da: xr.DataArray, *, x: str, y: str, units: str | None = None, ax=None,
            fmt: str = ".2f", cmap: str = "viridis"):
    """A 2-D DataArray [``units``] as an image, ``x`` across and ``y`` up, cells annotated.

    NaN cells are left blank (no text). The colourbar is labelled ``long_name [units]``.
    Returns the AxesImage.
    """
    if set(da.dims) != {x, y}:
        _fail("dims", da.dims, f"exactly {x!r} and {y!r}")
    (da,), unit = _display([da.transpose(y, x)], units)
    ax = _axes(ax)
    values = np.asarray(da.values, dtype=float)
    image = ax.imshow(values, origin="lower", aspect="auto", cmap=cmap)
    for (i, j), v in np.ndenumerate(values):
        if np.isfinite(v):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize="small",
                    color="white" if image.norm(v) < 0.5 else "black")
    ax.set_xticks(np.arange(da.sizes[x]), _ticks(da, x))
    ax.set_yticks(np.arange(da.sizes[y]), _ticks(da, y))
    ax.set_xlabel(_dim_label(da, x))
    ax.set_ylabel(_dim_label(da, y))
    ax.figure.colorbar(image, ax=ax, label=_label(da, unit))
    return image


def stacked(da: xr.DataArray, *, dim: str, component_dim: str = "component",
            units: str | None = None, ax=None) -> list:
    """Stacked bars of a breakdown [``units``] along ``dim``, one layer per ``component_dim``.

    NaN components add nothing to the stack. Returns the BarContainers, one per component.
    """
    if set(da.dims) != {dim, component_dim}:
        _fail("dims", da.dims, f"exactly {dim!r} and {component_dim!r}")
    (da,), unit = _display([da.transpose(component_dim, dim)], units)
    ax = _axes(ax)
    x, bottom, drawn = np.arange(da.sizes[dim]), np.zeros(da.sizes[dim]), []
    for comp, row in zip(_ticks(da, component_dim), da.values, strict=True):
        drawn.append(ax.bar(x, row, bottom=bottom, label=comp))
        bottom = bottom + np.nan_to_num(row)
    ax.set_xticks(x, _ticks(da, dim))
    ax.set_xlabel(_dim_label(da, dim))
    ax.set_ylabel(_label(da, unit))
    ax.legend(title=_dim_label(da, component_dim), fontsize="small")
    return drawn


def roofline(ds: xr.Dataset, *, ax=None) -> tuple[list, list]:
    """Log-log roofline: per chip, min(``peak`` [FLOP/s], intensity × ``hbm_bandwidth`` [B/s]).

    Operators along ``op`` are points at ``intensity`` [FLOP/B] and ``modelled`` [FLOP/s] (dims
    ``chip`` and ``op``). Each line has a vertex at its ridge point, peak / bandwidth.
    Returns (lines, points): one Line2D and one PathCollection per chip.
    """
    peak, bw = ds["peak"].values, ds["hbm_bandwidth"].values
    intensity, modelled = ds["intensity"].values, ds["modelled"].transpose("chip", "op").values
    ridge = peak / bw
    span = np.r_[intensity, ridge][np.isfinite(np.r_[intensity, ridge])]
    grid = np.geomspace(span.min() / 4, span.max() * 4, 64)
    ax, lines, points, seen = _axes(ax), [], [], []
    for i, (chip, color) in enumerate(zip(_ticks(ds, "chip"), _colors(ds, "chip"), strict=True)):
        k = seen.count(color) % len(_LINESTYLES)
        seen.append(color)
        xs = np.unique(np.r_[grid, ridge[i]] if np.isfinite(ridge[i]) else grid)
        lines.append(ax.plot(xs, np.minimum(peak[i], xs * bw[i]), _LINESTYLES[k], color=color,
                             label=chip)[0])
        points.append(ax.scatter(intensity, modelled[i], color=color, marker=_MARKERS[k],
                                 edgecolors="black", zorder=3))
    for name, xi, yi in zip(_ticks(ds, "op"), intensity, modelled[0], strict=True):
        ax.annotate(name, (xi, yi), fontsize="x-small", xytext=(3, 3), textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlabel=_label(ds["intensity"]),
           ylabel=_label(ds["modelled"]))
    ax.legend(fontsize="small")
    return lines, points


def power_caps(ds: xr.Dataset, *, ax=None) -> tuple[list, list]:
    """The power-cap panel of :func:`trnlab.studies.energy.power_caps`: along ``cap_fraction``
    the law's clock and the modelled training throughput (lines), and the measured H100 points
    at ``h100_cap_fraction`` of its TDP (SM clock, Llama 3 8B training), all relative to no cap.
    Returns (lines, points)."""
    ax, f = _axes(ax), ds["cap_fraction"].values
    lines = [ax.plot(f, ds[v].values, label=f"{ds[v].attrs['long_name']} (model)")[0]
             for v in ("capped_clock", "capped_training_speed")]
    h = ds["h100_cap_fraction"].values
    points = [ax.scatter(h, ds[v].values, marker=m, zorder=3, label=ds[v].attrs["long_name"])
              for v, m in (("h100_measured_clock", "o"), ("h100_measured_training_speed", "s"))]
    ax.set(xlabel=_label(ds["cap_fraction"]), ylabel="relative to no cap [1]")
    ax.legend(fontsize="x-small")
    return lines, points


def band(da: xr.DataArray, *, x: str, percentile_dim: str = "percentile",
         units: str | None = None, ax=None, label: str | None = None,
         color: str | None = None):
    """The median line of ``da`` [``units``] along ``x`` with a shaded p5–p95 band.

    ``da`` has dims ``x`` and ``percentile_dim`` (values 5, 50, 95 [percent]).
    Returns (Line2D, PolyCollection).
    """
    if set(da.dims) != {x, percentile_dim}:
        _fail("dims", da.dims, f"exactly {x!r} and {percentile_dim!r}")
    (med, lo, hi), unit = _display(list(_median_band(da, None, ("p5", "p95"), percentile_dim)),
                                   units)
    ax = _axes(ax)
    xs = da[x].values
    (line,) = ax.plot(xs, med.values, color=color, label=label)
    poly = ax.fill_between(xs, lo.values, hi.values, color=line.get_color(), alpha=0.25,
                           linewidth=0)
    ax.set_xlabel(_dim_label(da, x))
    ax.set_ylabel(_label(med, unit))
    return line, poly


def number(v: float, digits: int = 3) -> str:
    """``v`` to ``digits`` significant digits, without an exponent between 1e-3 and 1e7
    (1,020 not 1.02e+03; 0.0123 not 1.23e-02); NaN as "—"."""
    if not np.isfinite(v):
        return "—"
    if v == 0 or not 1e-3 <= abs(v) < 1e7:
        return format(v, f".{digits}g")
    decimals = max(0, digits - 1 - int(np.floor(np.log10(abs(v)))))
    return format(round(v, decimals), f",.{decimals}f")


def _cell(m: float, lo: float | None, hi: float | None, fmt: str | None) -> str:
    if not np.isfinite(m):
        return "—"
    f = (lambda v: format(v, fmt)) if fmt else number
    return f(m) if lo is None else f"{f(m)} [{f(lo)}–{f(hi)}]"


def summary(da, *, dim: str, percentile_dim: str = "percentile",
            units: str | Mapping[str, str] | None = None, fmt: str | None = None
            ) -> pd.DataFrame:
    """A table: one row per ``dim`` value, one column ``name [unit]`` per variable.

    Numbers have three significant digits (:func:`number`) unless ``fmt`` (a format spec) is
    given.
    Cells read ``p50 [p5–p95]`` for variables with ``percentile_dim``, else the value; ``—``
    for NaN. ``da`` is a DataArray or a Dataset (its numeric variables with dims ``dim`` and at
    most ``percentile_dim``); ``units`` is one display unit or a mapping variable -> unit.
    """
    obj = da if isinstance(da, xr.Dataset) else da.to_dataset(name=da.name or "value")
    cols = {}
    for name, v in obj.data_vars.items():
        if dim not in v.dims or not {*v.dims} <= {dim, percentile_dim} or v.dtype.kind not in "iuf":
            continue
        want = units.get(name) if isinstance(units, Mapping) else units
        (med, lo, hi), unit = _display(list(_median_band(v, None, ("p5", "p95"), percentile_dim)),
                                       want)
        parts = [p.values if p is not None else [None] * med.size for p in (med, lo, hi)]
        cols[f"{name} [{unit}]" if unit else str(name)] = [
            _cell(*c, fmt) for c in zip(*parts, strict=True)]
    return pd.DataFrame(cols, index=pd.Index(_ticks(obj, dim), name=dim))


def tornado(low: xr.DataArray, high: xr.DataArray, *, dim: str, center: float,
            reference: float | None = None, labels: xr.DataArray | None = None,
            verdict_low: xr.DataArray | None = None, verdict_high: xr.DataArray | None = None,
            ax=None, xlabel: str | None = None):
    """Tornado of a one-at-a-time sensitivity: for each entry of ``dim`` a horizontal bar from
    ``center`` (the value at the central inputs) to the value with that input at its low end
    (``low``) and at its high end (``high``), widest swing on top; entries with NaN are
    skipped. ``reference`` draws a dashed line (e.g. the published number); ``verdict_low`` /
    ``verdict_high`` label the bar ends; ``labels`` names the entries (default the coordinate
    values). Returns the list of BarContainers (low, high)."""
    for name, da in (("low", low), ("high", high)):
        if da.dims != (dim,):
            _fail(name, da.dims, f"a DataArray with the single dim {dim!r}")
    lo, hi = np.asarray(low.values, dtype=float), np.asarray(high.values, dtype=float)
    names = [str(v) for v in (labels.values if labels is not None else low[dim].values)]
    keep = [i for i in range(lo.size) if np.isfinite(lo[i]) and np.isfinite(hi[i])]
    keep.sort(key=lambda i: abs(hi[i] - lo[i]))
    ax = _axes(ax)
    y = np.arange(len(keep))
    drawn = []
    for values, color, verdicts in ((lo, "#4c72b0", verdict_low), (hi, "#dd8452", verdict_high)):
        v = values[keep]
        drawn.append(ax.barh(y, v - center, left=center, color=color, edgecolor="black",
                             linewidth=0.5, label="input at its low end" if values is lo
                             else "input at its high end"))
        if verdicts is not None:
            for yy, i in zip(y, keep, strict=True):
                # the side of the bar's tip; a bar of no width: low end left, high end right
                right = values[i] > center or (values[i] == center and values is hi)
                ax.annotate(str(verdicts.values[i]), (values[i], yy), fontsize="x-small",
                            va="center", ha="left" if right else "right",
                            xytext=(3 if right else -3, 0), textcoords="offset points")
    ax.axvline(center, color="black", linewidth=0.8)
    if reference is not None:
        ax.axvline(reference, color="grey", linestyle="--", label="published")
    ax.set_yticks(y, [names[i] for i in keep])
    ax.set_xlabel(xlabel if xlabel is not None else _label(low))
    if verdict_low is not None or verdict_high is not None:
        ax.margins(x=0.18)  # room for the verdict labels at the bar tips
    return drawn
