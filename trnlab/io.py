"""Save and load result Datasets: netCDF through h5netcdf, atomic writes, provenance attrs."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import xarray as xr

from trnlab import __version__
from trnlab import units as _units
from trnlab._files import atomic_path
from trnlab._paths import project_dir
from trnlab.errors import TrnlabError, bad_value

ENGINE = "h5netcdf"
REQUIRED_ATTRS = ("units", "long_name")
UNITS_ALLOWED = ("not a unit of trnlab's grammar (pint with FLOP, USD, token, chip, request, "
                 "sequence; e.g. 'B/s', 'token/s', 'USD/(chip*h)', 'chip*h'); use '1' for "
                 "dimensionless numbers, labels and flags, never ''")


def git_commit() -> str:
    """The checkout's HEAD commit (with ``+dirty`` if modified), or ``"unknown"``."""
    try:
        run = lambda *a: subprocess.run(
            ["git", *a], cwd=project_dir(), capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        dirty = run("status", "--porcelain", "--untracked-files=no")
        return commit + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _attr(value: Any) -> Any:
    """netCDF attrs accept str, numbers and lists: JSON-encode everything else."""
    if isinstance(value, bool) or value is None or isinstance(value, dict):
        return json.dumps(value)
    return value


def provenance(parameters: dict[str, Any] | None = None) -> dict[str, str]:
    """Provenance attrs: version, git commit, catalog digest, parameters (JSON), creation time."""
    from trnlab import catalog

    return {
        "trnlab_version": __version__,
        "git_commit": git_commit(),
        "catalog_digest": catalog.default().digest,
        "trnlab_parameters": json.dumps(parameters or {}, sort_keys=True, default=str),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }


def _check_units(kind: str, name: object, unit: object) -> None:
    """``unit`` must parse in :mod:`trnlab.units` (``""`` does not; ``"1"`` is dimensionless)."""
    try:
        _units.parse(unit)  # type: ignore[arg-type]  # a non-str is refused by parse
    except TrnlabError as err:
        raise TrnlabError(bad_value(f"dataset {kind} {name!r}", "units", unit,
                                    UNITS_ALLOWED)) from err


def check_attrs(ds: xr.Dataset) -> None:
    """Every data variable must carry ``units`` and ``long_name``, and every ``units`` attr (of
    a data variable or a coordinate) must parse in :mod:`trnlab.units`.

    Coordinates need no ``units`` (label coordinates such as system ids often have none); one
    that has the attr is held to the grammar like a data variable: ``"1"`` for labels and
    dimensionless numbers, never ``""``.
    """
    for name, var in ds.data_vars.items():
        missing = [a for a in REQUIRED_ATTRS if a not in var.attrs]
        if missing:
            raise TrnlabError(f"dataset variable {name!r}: missing attr {missing[0]!r} "
                              "(every variable needs units and long_name)")
        _check_units("variable", name, var.attrs["units"])
    for name, coord in ds.coords.items():
        if "units" in coord.attrs:
            _check_units("coordinate", name, coord.attrs["units"])


def save(ds: xr.Dataset, path: str | os.PathLike[str],
         parameters: dict[str, Any] | None = None) -> Path:
    """Write ``ds`` to ``path`` as netCDF (h5netcdf), atomically, with provenance attrs.

    The file is written to a temporary name in the same folder and renamed, so an interrupted
    run never leaves a truncated file. Returns the path written.
    """
    path = Path(path)
    check_attrs(ds)
    out = ds.as_numpy().copy()
    out.attrs = {**{k: _attr(v) for k, v in ds.attrs.items()}, **provenance(parameters)}
    for var in out.variables.values():
        var.attrs = {k: _attr(v) for k, v in var.attrs.items()}
    with atomic_path(path) as tmp:
        out.to_netcdf(tmp, engine=ENGINE)
    return path


def load(path: str | os.PathLike[str]) -> xr.Dataset:
    """Read a Dataset written by :func:`save` (into memory; the file is closed).

    A missing file, or one that is not netCDF/HDF5, raises one TrnlabError line naming it.
    """
    if not isinstance(path, str | os.PathLike):
        raise TrnlabError(bad_value("io.load", "path", path, "a file path (str or Path)"))
    path = Path(path)
    if not path.is_file():
        raise TrnlabError(bad_value("io.load", "path", str(path),
                                    "not a file" if path.exists() else "no such file"))
    try:
        with xr.open_dataset(path, engine=ENGINE) as ds:
            return ds.load()
    except (OSError, ValueError, TypeError, KeyError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise TrnlabError(bad_value("io.load", "path", str(path),
                                    f"not a netCDF file written by trnlab.io.save ({reason})")
                          ) from err


def parameters(ds: xr.Dataset) -> dict[str, Any]:
    """The parameters a result was computed with (decoded from ``trnlab_parameters``)."""
    return json.loads(ds.attrs.get("trnlab_parameters", "{}"))
