"""Notebook hygiene and the real notebooks through the report runner (outputs are nbval's job)."""

from __future__ import annotations

import ast

import nbformat
import papermill
import pytest

from trnlab import io, report
from trnlab.cli import main
from trnlab.errors import ParameterError
from trnlab.report.params import BOUNDS, RESULT_PATH, check_bounds, coerce, declared

NOTEBOOKS = report.available()


def test_there_are_notebooks():
    assert [nb.stem for nb in NOTEBOOKS][:1] == ["00_model_accuracy"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_typed_parameters_cell_and_committed_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1
    params = papermill.inspect_notebook(str(path))
    assert params, "papermill sees no parameters"
    for name, p in params.items():
        assert p["inferred_type_name"] not in (None, "None"), f"{name} has no type annotation"
        assert p["help"], f"{name} has no comment"
    assert "result_path" in params
    assert all(c.execution_count is not None for c in code if c.source.strip()), \
        "commit the notebook with the outputs of its default run"
    assert nb.metadata.kernelspec.name == "python3"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_parameter_has_bounds_that_its_default_meets(path):
    decl = declared(path)
    assert set(BOUNDS[path.stem]) == set(decl) - {RESULT_PATH}
    for name, p in decl.items():
        value = coerce(path.name, name, ast.literal_eval(p["default"]), p["inferred_type_name"])
        check_bounds(path, name, value)  # raises if the default is out of bounds


def test_bounds_are_for_notebooks_that_exist():
    assert set(BOUNDS) <= {p.stem for p in NOTEBOOKS}


@pytest.mark.parametrize(("number", "name", "value", "allowed"), [
    ("01", "cluster_chips", "-5", "cluster_chips = -5: must be in [1, 100_000_000]"),
    ("01", "cluster_chips", "0", "cluster_chips = 0: must be in [1, 100_000_000]"),
    ("01", "chip_power_w", "[900, 1000]",
     "chip_power_w = [900.0, 1000.0]: must be [] (the catalog) or [low, central, high]"),
    ("01", "pue", "[1.3, 1.2, 1.1]", "must be in increasing order ([low, central, high])"),
    ("01", "pue", "[0.9, 1.1, 1.2]", "0.9 is not allowed: each element must be in [1, 3]"),
    ("02", "precision", "fp7", "precision = 'fp7': must be a precision of the catalog: "
                               "fp32, tf32, bf16"),
    ("02", "scales", "[1024, 0]",
     "scales = [1024, 0]: 0 is not allowed: each element must be in [1, 10_000_000]"),
    ("02", "scales", "[1024, 1024]", "must not repeat an element"),
    ("02", "systems", '["trn3-ultraserver", "trn9"]',
     "'trn9' is not allowed: each element must be a system id of the catalog"),
    ("02", "model", "llama9", "must be a model id of the catalog (data/models): "),
    ("03", "tpot_ms", "0", "tpot_ms = 0.0: must be in (0, 60_000]"),
    ("03", "kv", "fp5", "must be a number format of the catalog"),
    ("04", "token_budget", "nan", "token_budget = nan: must be in [1, 1e16]"),
    ("04", "pue", "[1.1, 1.2]", "must be [] (the catalog), [value] or [low, central, high]"),
    ("04", "seed", "-1", "seed = -1: must be in [0, 4_294_967_295]"),
    ("05", "systems", '["dgx-a100"]', "each element must be a system with a capex"),
    ("05", "pue", "0.9", "pue = 0.9: must be 0 (the catalog) or in [1, 3]"),
    ("05", RESULT_PATH, "../x.nc", "must be a file name ending in .nc, in the run folder"),
    ("07", "intervals_min", "[0, 5]", "0.0 is not allowed: each element must be in (0, "),
    ("07", "chips", "[]", "chips = []: must not be empty"),
    ("05", RESULT_PATH, "/tmp/x.nc", "must be a file name ending in .nc, in the run folder"),
    ("05", RESULT_PATH, "sub/x.nc", "must be a file name ending in .nc, in the run folder"),
    ("05", RESULT_PATH, "index.html", "must be a file name ending in .nc, in the run folder"),
])
def test_out_of_bounds_values_are_refused_before_anything_runs(tmp_path, number, name, value,
                                                              allowed):
    stem = report.select([number])[0].stem
    with pytest.raises(ParameterError, match=rf"^{stem}\.ipynb: parameter {name} = ") as err:
        report.run([number], {name: value}, out=tmp_path / "run", progress=False)
    assert allowed in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists()


def test_cli_names_notebook_parameter_value_and_bounds_in_one_line(tmp_path, capsys):
    assert main(["report", "01", "-p", "cluster_chips", "-5", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == ("trnlab: error: 01_trainium3_claims.ipynb: parameter "
                                       "cluster_chips = -5: must be in [1, 100_000_000]\n")
    assert main(["report", "04", "05", "-p", RESULT_PATH, "x.nc", "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "trnlab: error: 05_trainium3_cost.ipynb: parameter result_path = 'x.nc': "
        "04_trainium3_power_energy writes it too; each notebook needs its own result file\n")
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_claims_notebook_runs_with_parameters(tmp_path):
    run = report.run(["01"], {"cluster_chips": "500000", "chip_power_w": "[900, 1000, 1100]"},
                     out=tmp_path, progress=False)
    assert run.ok, run.runs[0].error
    ds = io.load(run.runs[0].result)
    assert io.parameters(ds)["cluster_chips"] == 500000
    cluster = ds.sel(claim="cluster-size")
    assert float(cluster["low"]) < float(cluster["value"]) < float(cluster["high"])
    assert "data:image/png" in run.runs[0].html.read_text()  # figures reach the HTML report


def test_unparseable_parameter_line_is_caught(tmp_path):
    from trnlab.errors import ParameterError
    from trnlab.report.params import declared

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("a: int = 1  # fine\nb: list[float] = []  # [] = default")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(ParameterError, match="'b' is not understood by papermill"):
        declared(path)


def _code(path):
    nb = nbformat.read(path, as_version=4)
    return nb, [c for c in nb.cells if c.cell_type == "code"
                and "parameters" not in c.metadata.get("tags", [])]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_thin(path):
    """A question, one study call, one-line plots and a reading: no function or class defined,
    at most 60 code lines outside the parameters cell."""
    import ast

    nb, code = _code(path)
    lines = [ln for c in code for ln in c.source.splitlines()
             if ln.strip() and not ln.lstrip().startswith(("#", "%"))]
    assert len(lines) <= 60, f"{len(lines)} code lines"
    for cell in code:
        tree = ast.parse("\n".join(ln for ln in cell.source.splitlines()
                                   if not ln.lstrip().startswith("%")))
        defined = [type(n).__name__ for n in ast.walk(tree)
                   if isinstance(n, ast.FunctionDef | ast.ClassDef | ast.Lambda)]
        assert not defined, f"defines {defined}"
    first = next(c for c in nb.cells if c.cell_type == "markdown")
    assert first.source.startswith("# "), "the question comes first, as a heading"
