"""The report runner: refusals before anything runs, failing notebooks, outputs, CLI codes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
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


def test_cli_exit_codes(notebooks, tmp_path, monkeypatch, capfd):
    monkeypatch.setattr(report.runner, "notebooks_dir", lambda: notebooks)
    assert main(["report", "01_good", "--out", str(tmp_path / "a"), "--no-progress"]) == 0
    assert main(["report", "--out", str(tmp_path / "b"), "--no-progress"]) == 1
    out, err = capfd.readouterr()  # the kernels' own output too (file descriptors)
    assert err == "" and "IPKernelApp" not in out and "KeyboardInterrupt" not in out
    assert "Kernel is running over TCP" in (tmp_path / "a" / "01_good.log").read_text()
    assert main(["report", "nope", "--out", str(tmp_path / "c")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("trnlab: error: notebook 'nope'")
    assert main(["report", "01", "-p", "n_chipz", "3", "--out", str(tmp_path / "d")]) == 2
    assert "n_chipz" in capfd.readouterr().err
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()


def _unwritable_folder(tmp_path: Path) -> Path:
    """A folder in which no file can be created (root ignores modes: then sysfs, if it is so)."""
    for folder in (tmp_path / "read-only", Path("/sys")):
        if folder.parent == tmp_path:
            folder.mkdir()
            folder.chmod(0o555)
        try:
            fd, probe = tempfile.mkstemp(dir=folder)
        except OSError:
            return folder
        os.close(fd)
        Path(probe).unlink()
    pytest.skip("every folder is writable here")


def test_unusable_run_folders_and_limits_are_refused_before_anything_runs(notebooks, tmp_path,
                                                                         monkeypatch, capfd):
    monkeypatch.setattr(report.runner, "notebooks_dir", lambda: notebooks)
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    locked = _unwritable_folder(tmp_path)
    cases = [
        ([a_file], f"--out {a_file}: exists and is not a directory"),
        ([a_file / "run"], f"--out {a_file / 'run'}: cannot create the run folder: "
                           "Not a directory"),
        ([locked], f"--out {locked}: cannot write into the run folder: "),
        ([locked / "run"], f"--out {locked / 'run'}: cannot create the run folder: "),
        ([tmp_path / "t", "--timeout", "0"],
         "report: timeout = 0.0: must be a per-cell time limit >= 1 s"),
        ([tmp_path / "j", "--jobs", "0"],
         "report: jobs = 0: must be an integer >= 1 (notebooks run at once)"),
    ]
    for (out, *extra), message in cases:
        assert main(["report", "01", "--out", str(out), *extra, "--no-progress"]) == 2
        err = capfd.readouterr().err
        assert err.startswith(f"trnlab: error: {message}") and err.count("\n") == 1, err
    assert not list(tmp_path.glob("[tj]")) and not (locked / "run").exists()
    assert sorted(p.name for p in a_file.parent.glob("a-file*")) == ["a-file"]
    nested = report.runner.prepare_out(tmp_path / "new" / "run")  # a missing folder: created
    assert nested.is_dir() and not list(nested.iterdir())


SLEEPER = """import os, time
from pathlib import Path
Path({pid_file!r}).write_text(str(os.getpid()))
time.sleep(300)"""

#: ``trnlab report`` on a folder of test notebooks, in a process of its own
#: the CLI on a folder of test notebooks, with Python's own SIGINT handler as from a terminal
#: (tests started in the background of a non-interactive shell inherit SIGINT ignored, and the
#: runner rightly leaves an ignored signal ignored)
DRIVER = """import signal, sys
signal.signal(signal.SIGINT, signal.default_int_handler)
from pathlib import Path
from trnlab.report import runner
runner.notebooks_dir = lambda: Path(sys.argv[1])
from trnlab.cli import main
sys.exit(main(sys.argv[2:]))"""


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"
    except FileNotFoundError:
        return False


def test_sigint_stops_the_report_within_seconds(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    pid_file = tmp_path / "kernel.pid"
    _notebook(folder, "01_good")
    _notebook(folder, "02_sleeps", extra=SLEEPER.format(pid_file=str(pid_file)))
    _notebook(folder, "03_queued")
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(folder), "report", "--out",
                             str(out), "--jobs", "1", "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not (pid_file.exists() and pid_file.read_text()):  # 02's kernel is running
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the kernel of 02_sleeps never started"
            time.sleep(0.05)
        kernel = int(pid_file.read_text())
        assert _alive(kernel)
        sent = time.monotonic()
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, stderr
    assert stderr == f"interrupted: 1 of 3 notebooks finished; see {out / 'index.html'}\n"
    assert stdout == ""
    assert took < 15, f"{took:.1f} s from SIGINT to exit"
    assert not _alive(kernel)  # shut down, not orphaned
    index = (out / "index.html").read_text()
    assert re.findall(r"<span class='status [\w-]+'>([\w ]+)</span>", index) == [
        "ok", "interrupted", "not run"]
    assert "<dd>1 of 3 ok, 1 interrupted, 1 not run</dd>" in index
    assert not list(out.glob(".*"))  # no .running.ipynb, status or temporary files
    assert sorted(p.name for p in out.iterdir()) == [
        "01_good.html", "01_good.ipynb", "01_good.log", "01_good.nc", "02_sleeps.log",
        "index.html"]


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
