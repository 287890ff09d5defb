"""Notebook hygiene and the real notebooks through the report runner (outputs are nbval's job)."""

from __future__ import annotations

import nbformat
import papermill
import pytest

from trnlab import io, report

NOTEBOOKS = report.available()


def test_there_are_notebooks():
    assert [nb.stem for nb in NOTEBOOKS][:1] == ["01_trainium3_claims"]


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
