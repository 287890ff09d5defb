from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr

from trnlab import __version__, catalog, io
from trnlab.errors import TrnlabError


def _dataset() -> xr.Dataset:
    ds = xr.Dataset(coords={"chip": ["trn2", "trn3"]})
    ds["hbm_bandwidth"] = ("chip", np.array([2.9e12, 4.9e12]),
                           {"units": "B/s", "long_name": "HBM bandwidth"})
    ds["fits"] = ("chip", np.array([True, False]), {"units": "1", "long_name": "fits"})
    ds.attrs["title"] = "test"
    return ds


def test_round_trip_keeps_values_attrs_and_provenance(tmp_path):
    path = io.save(_dataset(), tmp_path / "r.nc", parameters={"n_chips": 144, "cupy": False})
    back = io.load(path)
    xr.testing.assert_equal(back[["hbm_bandwidth", "fits"]], _dataset()[["hbm_bandwidth", "fits"]])
    assert back["hbm_bandwidth"].attrs["units"] == "B/s"
    assert back.attrs["title"] == "test"
    assert back.attrs["trnlab_version"] == __version__
    assert back.attrs["catalog_digest"] == catalog.default().digest
    assert io.parameters(back) == {"n_chips": 144, "cupy": False}
    assert back.attrs["created"].startswith("20")
    assert back.attrs["git_commit"]


def test_variable_without_units_is_refused(tmp_path):
    ds = _dataset()
    del ds["fits"].attrs["units"]
    with pytest.raises(TrnlabError, match="'fits': missing attr 'units'"):
        io.save(ds, tmp_path / "r.nc")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(("unit", "match"), [
    ("", r"^dataset coordinate 'chip': units = '': .*never ''"),
    ("chips of trn", r"^dataset coordinate 'chip': units = 'chips of trn': not a unit"),
])
def test_coordinate_units_must_parse(tmp_path, unit, match):
    ds = _dataset()
    ds["chip"].attrs["units"] = unit
    with pytest.raises(TrnlabError, match=match):
        io.save(ds, tmp_path / "r.nc")
    assert not list(tmp_path.iterdir())


def test_coordinates_need_no_units_and_labels_may_carry_one(tmp_path):
    ds = _dataset().assign_coords(percentile=("percentile", [5.0, 95.0], {"units": "percent"}))
    io.save(ds, tmp_path / "a.nc")  # 'chip' has no attrs at all
    ds["chip"].attrs.update(units="1", long_name="chip id")
    assert io.load(io.save(ds, tmp_path / "b.nc"))["chip"].attrs["units"] == "1"


def test_interrupted_write_leaves_old_file_and_no_debris(tmp_path, monkeypatch):
    path = io.save(_dataset(), tmp_path / "r.nc")
    before = path.read_bytes()

    def crash(self, target, **kw):
        with open(target, "wb") as fh:  # a truncated file, then the crash
            fh.write(b"\x89HDF")
        raise KeyboardInterrupt

    monkeypatch.setattr(xr.Dataset, "to_netcdf", crash)
    with pytest.raises(KeyboardInterrupt):
        io.save(_dataset(), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.nc"]


def test_engine_is_explicit_h5netcdf(tmp_path):
    path = io.save(_dataset(), tmp_path / "r.nc")
    assert path.read_bytes()[:4] == b"\x89HDF"
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        assert json.loads(ds.attrs["trnlab_parameters"]) == {}


def test_atomic_write_gives_plain_file_permissions(tmp_path):
    """Written files are readable by others as a plain open() would make them, not 0600."""
    import os

    from trnlab._files import write_text

    umask = os.umask(0o022)
    try:
        path = write_text(tmp_path / "page.html", "<p>x</p>")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
