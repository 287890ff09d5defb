"""The report runner: refusals before anything runs, failing notebooks, outputs, CLI codes."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
import xarray as xr

from trnlab import __version__, io, report
from trnlab.cli import main
from trnlab.errors import ParameterError, ReportError
from trnlab.report.index import commit, duration_text, headline, question

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


READER_CODE = '''import pandas as pd
import xarray as xr
from trnlab import io
print("printed-marker", n_rows)
hidden_source_marker = 1
ds = xr.Dataset({"x": ((), 1.0, {"units": "1", "long_name": "x"})},
                attrs={"headline": "Trn3 <wins> by 3.8x & more"})
io.save(ds, result_path)'''


def _reader_notebook(folder: Path) -> Path:
    """A notebook as a reader sees it: a heading, printed text, a DataFrame, a result file."""
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell('n_rows: int = 2  # rows\n'
                                       'result_path: str = "01_reader.nc"  # the Dataset')
    params.metadata["tags"] = ["parameters"]
    heading = nbformat.v4.new_markdown_cell("# Does Trn3 beat Trn2 & by how much?\n\nNarrative.")
    nb.cells = [heading, params, nbformat.v4.new_code_cell(READER_CODE),
                nbformat.v4.new_code_cell("pd.DataFrame({'chip': ['trn2', 'trn3'], "
                                          "'pflops': [0.667, 2.52]}).head(n_rows)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = folder / "01_reader.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def reader_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("reader")
    _reader_notebook(folder)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(io, "git_commit", lambda: "0123456789abcdef0123456789abcdef01234567+dirty")
        return report.run(None, {"n_rows": 2}, out=folder / "run", root=folder,
                          progress=False)


def test_html_shows_outputs_and_hides_code_behind_a_toggle(reader_run):
    from bs4 import BeautifulSoup

    (nb,) = reader_run.runs
    assert nb.status == "ok", nb.error
    page = nb.html.read_text()
    soup = BeautifulSoup(page, "html.parser")
    assert soup.h1.get_text().startswith("Does Trn3 beat Trn2 & by how much?")
    assert "Narrative." in soup.select_one(".jp-MarkdownCell").get_text()
    assert "printed-marker 2" in soup.get_text()
    table = soup.select_one(".jp-OutputArea-output table")
    assert table is not None and "trn3" in table.get_text()
    area = table.find_parent(class_="jp-OutputArea")
    assert area.get_text().count("0.667") == 1  # the table only, no text/plain shadow
    assert "0  trn2" not in page
    assert "In&nbsp;[" not in page and "Out[" not in soup.get_text()  # no prompts
    assert not soup.find_all("script", src=True) and "<link" not in page  # nothing fetched
    # the code: present once, inside what the toggle's unchecked state hides
    hidden_rule = ".trn-toggle:not(:checked) ~ .jp-CodeCell .jp-Cell-inputWrapper"
    assert f"{hidden_rule}," in page and "{ display: none; }" in page
    toggle = soup.select_one("input.trn-toggle#trn-show-code")
    assert toggle is not None and not toggle.has_attr("checked")
    assert soup.select_one("label[for=trn-show-code]").get_text() == "show codehide code"
    hidden = soup.select("input.trn-toggle:not(:checked) ~ .jp-CodeCell .jp-Cell-inputWrapper")
    hidden_text = "".join(h.get_text() for h in hidden)
    for source in ("hidden_source_marker", "n_rows = 2", "pd.DataFrame"):  # incl. injected
        assert source in hidden_text and soup.get_text().count(source) == 1
    markdown = soup.select(".jp-MarkdownCell")
    assert markdown and not set(markdown) & {c.find_parent(class_="jp-Cell") for c in hidden}


def test_index_shows_question_headline_commit_and_time(reader_run):
    index = reader_run.index.read_text()
    (nb,) = reader_run.runs
    assert nb.question == "Does Trn3 beat Trn2 & by how much?"
    assert nb.headline == "Trn3 <wins> by 3.8x & more"
    assert "<h2>Does Trn3 beat Trn2 &amp; by how much?</h2>" in index
    assert "Trn3 &lt;wins&gt; by 3.8x &amp; more" in index
    assert reader_run.commit == "0123456789+dirty"
    assert "<dt>commit</dt><dd>0123456789+dirty</dd>" in index
    assert reader_run.duration >= nb.duration > 0
    assert f"<dt>wall time</dt><dd>{duration_text(reader_run.duration)}</dd>" in index
    assert reader_run.started.utcoffset() is not None  # local time, with its offset
    assert f"<dd>{reader_run.started.isoformat(timespec='seconds')}</dd>" in index
    assert f"<dd>{__version__}</dd>" in index
    assert all(f'href="01_reader.{ext}"' in index for ext in ("html", "ipynb", "nc"))
    assert "<code>n_rows = 2</code>" in index
    assert "http" not in index and "<script" not in index


def test_commit_short_dirty_or_unknown(monkeypatch, tmp_path):
    assert re.fullmatch(r"[0-9a-f]{10}(\+dirty)?|unknown", commit())
    monkeypatch.setattr(io, "git_commit", lambda: "abcdef0123456789")
    assert commit() == "abcdef0123"
    monkeypatch.undo()
    monkeypatch.setattr(io, "project_dir", lambda: tmp_path)  # not a repository
    assert commit() == "unknown"
    monkeypatch.setattr(io.subprocess, "run", lambda *a, **k: (_ for _ in ()).throw(OSError()))
    assert commit() == "unknown"  # no git at all


def test_question_and_headline_are_empty_when_absent(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("## a subheading\nno title # here"),
                nbformat.v4.new_markdown_cell("text\n# The question #\n")]
    nbformat.write(nb, tmp_path / "a.ipynb")
    assert question(tmp_path / "a.ipynb") == "The question"
    nb.cells = nb.cells[:1]
    nbformat.write(nb, tmp_path / "b.ipynb")
    assert question(tmp_path / "b.ipynb") == ""
    assert question(tmp_path / "missing.ipynb") == ""
    ds = xr.Dataset({"x": ((), 1.0, {"units": "1", "long_name": "x"})})
    assert headline(io.save(ds, tmp_path / "a.nc")) == ""
    assert headline(None) == "" and headline(tmp_path / "missing.nc") == ""
    assert [duration_text(s) for s in (4.04, 185, 3725)] == ["4.0 s", "3 min 05 s", "1 h 02 min"]
