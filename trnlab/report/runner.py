"""Run notebooks through papermill into ``reports/<run>/`` with HTML and an index."""

from __future__ import annotations

import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import papermill
from tqdm.auto import tqdm

from trnlab._paths import project_dir
from trnlab.errors import ReportError
from trnlab.report.index import commit, headline, question, write_index
from trnlab.report.params import resolve
from trnlab.report.render import to_html

KERNEL = "python3"


@dataclass
class NotebookRun:
    """Outcome of one notebook: status ``ok`` or ``failed``, duration [s], files written."""

    name: str
    status: str
    duration: float
    error: str
    ipynb: Path
    html: Path | None
    result: Path | None
    parameters: dict[str, Any]
    question: str = ""
    headline: str = ""


@dataclass
class ReportRun:
    """All notebooks of one ``trnlab report`` call: start time (local), wall time [s], commit."""

    out: Path
    runs: list[NotebookRun]
    index: Path
    started: dt.datetime | None = None
    duration: float = 0.0
    commit: str = "unknown"

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.runs)


def notebooks_dir() -> Path:
    return project_dir() / "notebooks"


def available(root: Path | None = None) -> list[Path]:
    """The notebooks ``trnlab report`` knows: ``<root>/NN_*.ipynb`` (default ``notebooks/``)."""
    return sorted((root or notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))


def select(names: list[str] | None, root: Path | None = None) -> list[Path]:
    """Resolve names (``01_trainium3_claims``, its ``.ipynb`` file name, or ``01``)."""
    known = available(root)
    if not names:
        return known
    chosen = []
    for name in names:
        stem = Path(name).name.removesuffix(".ipynb")
        hits = [p for p in known if p.stem == stem or p.stem.split("_", 1)[0] == stem]
        if len(hits) != 1:
            raise ReportError(f"notebook {name!r}: unknown; available: "
                              f"{', '.join(p.stem for p in known)}")
        chosen.append(hits[0])
    return chosen


def _to_html(ipynb: Path) -> Path:
    """The reader's HTML page of an executed notebook (code hidden behind a toggle)."""
    return to_html(ipynb)


def _run_one(nb: Path, out: Path, params: dict[str, Any], timeout: float) -> NotebookRun:
    ipynb = out / nb.name
    partial = out / f".{nb.stem}.running.ipynb"
    start = time.perf_counter()
    error = ""
    try:
        papermill.execute_notebook(str(nb), str(partial), parameters=params,
                                   kernel_name=KERNEL, language="python", cwd=str(out),
                                   progress_bar=False, execution_timeout=timeout)
    except papermill.PapermillExecutionError as err:
        error = f"{err.ename}: {err.evalue}"
    except Exception as err:  # noqa: BLE001 - a dead kernel or timeout must not stop the others
        error = f"{type(err).__name__}: {err}"
    duration = time.perf_counter() - start
    if partial.exists():
        partial.replace(ipynb)
    html = _to_html(ipynb) if ipynb.exists() else None
    result: Path | None = out / f"{nb.stem}.nc"
    if not result.exists():
        result = None
    return NotebookRun(nb.stem, "failed" if error else "ok", duration, error, ipynb, html,
                       result, params, question(ipynb), headline(result))


def run(names: list[str] | None = None, parameters: dict[str, Any] | None = None,
        out: Path | str | None = None, timeout: float = 600, jobs: int = 2,
        progress: bool = True, root: Path | None = None) -> ReportRun:
    """Run notebooks with papermill and write ``out`` (default ``reports/<timestamp>/``).

    Names, parameter names and parameter types are all checked before anything runs. A failing
    notebook is recorded with its error; the others still run. ``ReportRun.ok`` says whether all
    passed.

    Parameters
    ----------
    names : list of str, optional
        Notebooks to run (default: all of ``notebooks/``).
    parameters : dict, optional
        Parameter values (strings from the CLI are converted to the declared types).
    out : path, optional
        The run directory.
    timeout : float
        Per-cell execution timeout [s].
    jobs : int
        Notebooks run at once (each is a kernel process).
    root : path, optional
        Folder of the notebooks (default ``notebooks/``).
    """
    started = dt.datetime.now().astimezone()
    clock = time.perf_counter()
    notebooks = select(names, root)
    per_nb = resolve(notebooks, parameters or {})
    if out is None:
        stamp = started.strftime("%Y%m%d-%H%M%S")
        out = project_dir() / "reports" / stamp
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    runs: dict[Path, NotebookRun] = {}
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(notebooks)))) as pool, \
            tqdm(total=len(notebooks), desc="notebooks", unit="nb", disable=not progress) as bar:
        futures = {pool.submit(_run_one, nb, out, per_nb[nb], timeout): nb for nb in notebooks}
        for fut in as_completed(futures):
            runs[futures[fut]] = r = fut.result()
            bar.set_postfix_str(f"{r.name}: {r.status}")
            bar.update()
    ordered = [runs[nb] for nb in notebooks]
    duration = time.perf_counter() - clock
    commit_id = commit()
    index = write_index(out, ordered, started=started, duration=duration, commit_id=commit_id)
    return ReportRun(out, ordered, index, started, duration, commit_id)
