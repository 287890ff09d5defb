"""The cost notebook (05) through the report runner: its parameters reach the saved Dataset."""

from __future__ import annotations

import json

import pytest

from trnlab import io, report
from trnlab.studies import cost


@pytest.mark.slow
def test_cost_notebook_runs_with_a_price_scenario_and_an_electricity_price(tmp_path):
    run = report.run(["05"], {"trn3_price": "3.0", "electricity_price": "0.12"}, out=tmp_path,
                     progress=False)
    assert run.ok, run.runs[0].error
    ds = io.load(run.runs[0].result)
    params = io.parameters(ds)
    assert params["trn3_price"] == 3.0 and params["electricity_price"] == 0.12
    assert json.loads(ds.attrs["overrides"]) == {"energy_price": 0.12}  # 0 = catalog: not passed
    assert json.loads(ds.attrs["trn3_price_scenario"]) == 3.0

    trn3 = ds.sel(system="trn3-ultraserver")
    assert float(trn3["cloud_price_per_chip_hour"]) == 3.0
    budget = params["token_budget"]
    assert float(trn3["training_cost_cloud"]) == pytest.approx(
        3.0 / 3600 / float(trn3["tokens_per_s_per_chip"]) * budget)

    # the catalog's electricity (0.08 USD/kWh central) gives a lower TCO for every system
    base = cost.study(params["model"], systems=params["systems"], n_chips=params["n_chips"],
                      precision=params["precision"], token_budget=budget, n_samples=50)
    assert (ds["tco_per_chip_hour_central"] > base["tco_per_chip_hour_central"]).all()
    # GPU list prices and their break-even Trn3 prices do not depend on the Trn3 scenario
    h100 = "dgx-h100"
    assert float(ds["break_even_training_cloud"].sel(system=h100)) == pytest.approx(
        float(base["break_even_training_cloud"].sel(system=h100)))
    assert "data:image/png" in run.runs[0].html.read_text()  # figures reach the HTML report
