"""The claims, power and cost notebooks (01, 04, 05): their parameters reach the saved Dataset,
and what they say is written from it."""

from __future__ import annotations

import json
import re

import nbformat
import pytest

from trnlab import io, report
from trnlab.studies import cost

#: notebook -> (its study module, the first bullet of its reading)
NOTEBOOKS = {"01": ("claims", "- **Compute.**"), "04": ("energy", "- **Power per chip.**"),
             "05": ("cost", "- **Renting vs owning.**")}
#: a run number typed into prose: $3.56, 1.9 GW, 233 kW, 28.6 GWh, 0.91x, 0.17 tokens/J
TYPED_NUMBER = re.compile(r"\$\d|\d(\.\d+)?\s?(GW|MW|kW|GWh|kWh|tokens/J)\b|\d\.\d+x\b")


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
    html = run.runs[0].html.read_text()
    assert "data:image/png" in html  # figures reach the HTML report
    # the headline and the reading are the run's own, not the default run's
    ratio = float(ds["scenario_cost_ratio"].sel(system=h100))
    assert f"$3.00 per chip-hour scenario costs {ratio:.2f}x dgx-h100" in ds.attrs["headline"]
    assert f"{ratio:.2f}x dgx-h100" in html and "at $3.00 it" in html


@pytest.mark.slow
def test_power_notebook_reads_its_own_numbers(tmp_path):
    run = report.run(["04"], {"pue": "[1.5]", "n_samples": "200"}, out=tmp_path, progress=False)
    assert run.ok, run.runs[0].error
    ds = io.load(run.runs[0].result)
    assert json.loads(ds.attrs["overrides"]) == {"pue": 1.5}
    gw = float(ds["cluster_power"].sel(percentile=50.0, cluster_chips=1_000_000)) / 1e9
    html = run.runs[0].html.read_text()
    assert f"1,000,000 chips (6,945 scale-up systems) need {gw:.3g} GW" in html
    assert f"{gw:.3g} GW" in ds.attrs["headline"]


@pytest.mark.parametrize("number", NOTEBOOKS)
def test_notebook_prose_types_no_run_numbers_and_prints_the_reading(number):
    study, first = NOTEBOOKS[number]
    path = report.select([number])[0]
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            assert not TYPED_NUMBER.search(cell.source), cell.source
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert any(f"{study}.reading(ds)" in c for c in code)
    assert any("ds.attrs['headline']" in c for c in code)
    reading = next(i for i, c in enumerate(nb.cells) if c.source.startswith("## Reading"))
    assert nb.cells[reading + 1].cell_type == "code"
    outputs = nb.cells[reading + 1].outputs
    assert [o.output_type for o in outputs] == ["display_data"]
    assert outputs[0].data["text/markdown"].startswith(first)
