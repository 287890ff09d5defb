"""The scale sweep: streamed into zarr, the same on a dask LocalCluster as run locally."""

from __future__ import annotations

import numpy as np
import pytest

from trnlab.engine import scale, sweep
from trnlab.errors import TrnlabError

GRID = {"models": ["llama3-8b"], "systems": ["trn3-ultraserver", "gb200-nvl72"],
        "chips": [144, 1152], "precisions": ["bf16", "fp8"]}


def test_sweep_on_a_local_cluster_gives_the_local_numbers(tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    local = sweep.sweep(tmp_path / "local.zarr", **GRID, n_trials=100).load()
    with distributed.LocalCluster(host="127.0.0.1", protocol="tcp://", dashboard_address=None,
                                  processes=False, n_workers=1, threads_per_worker=2) as cluster, \
            distributed.Client(cluster) as client:
        remote = sweep.sweep(tmp_path / "remote.zarr", **GRID, n_trials=100,
                             client=client).load()
    assert np.isfinite(local["mfu"]).all()
    for key in local.data_vars:
        np.testing.assert_array_equal(remote[key].values, local[key].values, err_msg=key)
    # every cell is the point evaluated alone (its seed: seed + flat index; (0, 1, 1, 1) is 7)
    alone = scale.evaluate_run("llama3-8b", "gb200-nvl72", 1152, precision="fp8",
                               n_trials=100, seed=7)
    cell = local.sel(model="llama3-8b", system="gb200-nvl72", n_chips=1152, precision="fp8")
    assert float(cell["mfu"]) == alone["mfu"]
    assert float(cell["goodput"].sel(percentile=50)) == alone["goodput_band"]["p50"]
    assert float(cell["job_mtbf"]) == pytest.approx(alone["job_mtbf_h"] * 3600)
    assert local["facility_power"].attrs["units"] == "W"


def test_a_point_that_does_not_fit_is_nan_and_bad_lists_are_errors(tmp_path) -> None:
    ds = sweep.sweep(tmp_path / "s.zarr", ["llama3-405b"], ["trn3-ultraserver"], [8], ["bf16"],
                     n_trials=10).load()
    assert np.isnan(ds["mfu"]).all()
    with pytest.raises(TrnlabError, match="systems"):
        sweep.sweep(tmp_path / "t.zarr", ["llama3-8b"], [], [144], ["bf16"])
