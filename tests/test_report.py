"""The report runner: refusals before anything runs, failing notebooks, outputs, CLI codes."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from trnlab import io, report
from trnlab.cli import main
from trnlab.errors import ParameterError, ReportError

pytestmark = pytest.mark.slow

PARAMS = '''n_chips: int = 4  # number of chips
scale: float = 1.5  # a factor
label: str = "x"  # a label
result_path: str = "{stem}.nc"  # where the Dataset is written'''

BODY = '''import xarray as xr
from trnlab import io
{extra}
ds = xr.Dataset({{"total": ((), n_chips * scale, {{"units": "1", "long_name": "total"}})}})
io.save(ds, result_path, parameters={{"n_chips": n_chips, "scale": scale, "label": label}})
print(n_chips * scale)'''


def _notebook(folder: Path, stem: str, extra: str = "") -> Path:
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell(PARAMS.format(stem=stem))
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, nbformat.v4.new_code_cell(BODY.format(extra=extra))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = folder / f"{stem}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    folder = tmp_path / "nbs"
    folder.mkdir()
    _notebook(folder, "01_good")
    _notebook(folder, "02_broken", extra="raise ValueError('broken on purpose')")
    return folder


def test_refusals_happen_before_anything_runs(notebooks, tmp_path):
    out = tmp_path / "run"
    with pytest.raises(ReportError, match="notebook '09_nope': unknown; available: 01_good"):
        report.run(["09_nope"], out=out, root=notebooks, progress=False)
    with pytest.raises(ParameterError, match="parameter 'n_chipz': unknown.*n_chips"):
        report.run(["01"], {"n_chipz": "8"}, out=out, root=notebooks, progress=False)
    with pytest.raises(ParameterError, match="01_good.ipynb: parameter n_chips = 'eight': "
                                             "must be int"):
        report.run(["01"], {"n_chips": "eight"}, out=out, root=notebooks, progress=False)
    with pytest.raises(ParameterError, match="scale = True: must be float"):
        report.run(["01"], {"scale": True}, out=out, root=notebooks, progress=False)
    assert not out.exists()


def test_run_writes_outputs_and_reports_failures(notebooks, tmp_path):
    out = tmp_path / "run"
    result = report.run(None, {"n_chips": "8"}, out=out, root=notebooks, progress=False)
    good, broken = result.runs
    assert not result.ok
    assert (good.status, broken.status) == ("ok", "failed")
    assert "ValueError: broken on purpose" in broken.error
    assert good.ipynb.exists() and good.html.exists() and broken.html.exists()
    ds = io.load(good.result)
    assert float(ds["total"]) == 12.0  # the injected n_chips=8 was used, as an int
    assert io.parameters(ds)["n_chips"] == 8
    index = (out / "index.html").read_text()
    assert "01_good" in index and "02_broken" in index and "broken on purpose" in index
    assert not list(out.glob(".*"))  # no temporary files left


def test_cli_exit_codes(notebooks, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(report.runner, "notebooks_dir", lambda: notebooks)
    assert main(["report", "01_good", "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert main(["report", "--out", str(tmp_path / "b"), "--no-progress"]) == 1
    capsys.readouterr()
    assert main(["report", "nope", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trnlab: error: notebook 'nope'")
    assert main(["report", "01", "-p", "n_chipz", "3", "--out", str(tmp_path / "d")]) == 2
    assert "n_chipz" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
