"""Run notebooks through papermill into ``reports/<run>/`` with HTML and an index.

Each notebook runs in a worker process of its own (:mod:`trnlab.report.worker`), at most
``jobs`` at once. SIGINT (Ctrl-C) or SIGTERM stop the run within seconds: running workers are
told to stop (each kills its kernel and removes its temporary notebook), queued notebooks are
not started, ``index.html`` is written with every notebook's status (``ok``, ``failed``,
``interrupted``, ``not run``) and :class:`ReportInterrupted` is raised.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from trnlab._paths import PACKAGE_DIR, project_dir
from trnlab.errors import ParameterError, ReportError, bad_value
from trnlab.report.index import commit, headline, question, write_index
from trnlab.report.params import resolve, result_name
from trnlab.report.worker import BOOT, partial_path, status_path

#: statuses of a notebook in a run
OK, FAILED, INTERRUPTED, NOT_RUN = "ok", "failed", "interrupted", "not run"
#: seconds a stopped worker gets to kill its kernel and clean up before it is killed itself
STOP_GRACE = 5.0
_POLL = 0.05  # [s]


@dataclass
class NotebookRun:
    """Outcome of one notebook: status (``ok``, ``failed``, ``interrupted``, ``not run``),
    duration [s], the error, and the files written (None when absent)."""

    name: str
    status: str
    duration: float
    error: str
    ipynb: Path | None
    html: Path | None
    result: Path | None
    parameters: dict[str, Any]
    question: str = ""
    headline: str = ""
    log: Path | None = None


@dataclass
class ReportRun:
    """All notebooks of one ``trnlab report`` call: start time (local), wall time [s], commit."""

    out: Path
    runs: list[NotebookRun]
    index: Path
    started: dt.datetime | None = None
    duration: float = 0.0
    commit: str = "unknown"
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return all(r.status == OK for r in self.runs)

    @property
    def finished(self) -> int:
        """Notebooks that ran to their end (``ok`` or ``failed``)."""
        return sum(r.status in (OK, FAILED) for r in self.runs)


class ReportInterrupted(KeyboardInterrupt):
    """The run was stopped by a signal; ``result`` holds what was done (index written)."""

    def __init__(self, result: ReportRun, signum: int) -> None:
        super().__init__(f"interrupted: {result.finished} of {len(result.runs)} notebooks "
                         f"finished; see {result.index}")
        self.result = result
        self.signum = signum


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


def _check_limits(timeout: float, jobs: int) -> None:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) \
            or not (math.isfinite(timeout) and timeout >= 1):
        raise ParameterError(bad_value("report", "timeout", timeout,
                                       "must be a per-cell time limit >= 1 s"))
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ParameterError(bad_value("report", "jobs", jobs,
                                       "must be an integer >= 1 (notebooks run at once)"))


def prepare_out(out: Path) -> Path:
    """Create the run folder if missing and check that files can be written into it."""
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: exists and is not a directory")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ReportError(f"--out {out}: cannot create the run folder: "
                          f"{err.strerror or err}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".trnlab-probe.", dir=out)
        os.close(fd)
        Path(probe).unlink()
    except OSError as err:
        raise ReportError(f"--out {out}: cannot write into the run folder: "
                          f"{err.strerror or err}") from None
    return out


# --------------------------------------------------------------------------- stop signals
@dataclass
class _Stop:
    """The stop signals seen during a run (SIGINT, SIGTERM): the first stops, a second hurries."""

    signals: list[int] = field(default_factory=list)

    @property
    def signum(self) -> int | None:
        return self.signals[0] if self.signals else None


@contextmanager
def _catch_stop_signals() -> Iterator[_Stop]:
    """Turn SIGINT and SIGTERM into a flag while notebooks run (main thread only; a signal
    the process ignores, as ``nohup`` or a background job of a shell set it, stays ignored)."""
    stop = _Stop()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = {s: signal.signal(s, lambda signum, _: stop.signals.append(signum))
           for s in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(s) is not signal.SIG_IGN}
    try:
        yield stop
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)


# ------------------------------------------------------------------------------- workers
@dataclass
class _Worker:
    """A notebook's worker process and what the runner needs to collect its outcome."""

    nb: Path
    out: Path
    parameters: dict[str, Any]
    result: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    error: str = ""

    @property
    def log(self) -> Path:
        return self.out / f"{self.nb.stem}.log"

    def start(self, timeout: float) -> _Worker:
        spec = {"notebook": str(self.nb), "stem": self.nb.stem, "out": str(self.out),
                "parameters": self.parameters, "result": self.result.name, "timeout": timeout,
                "parent": os.getpid()}
        self.started = time.perf_counter()
        try:
            with open(self.log, "wb") as log:
                self.proc = subprocess.Popen(
                    [sys.executable, "-c", BOOT, str(PACKAGE_DIR.parent), json.dumps(spec)],
                    cwd=self.out, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)  # no terminal Ctrl-C: the runner stops it
        except OSError as err:
            self.error = f"could not start the notebook's process: {err}"
        return self

    def done(self) -> bool:
        return self.proc is None or self.proc.poll() is not None

    def stop(self) -> None:
        if not self.done():
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the worker and whatever of its session is left (not the kernel: its own)."""
        if self.proc is not None and not self.done():
            with suppress(OSError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def collect(self, stopped: bool) -> NotebookRun:
        """The outcome, from the worker's status file; temporary files are removed."""
        duration = time.perf_counter() - self.started
        status, error = FAILED, self.error
        state = status_path(self.out, self.nb.stem)
        try:
            reported = json.loads(state.read_text())
            status, error = reported["status"], reported["error"]
        except (OSError, ValueError, KeyError):
            if stopped:
                status, error = INTERRUPTED, ""
            elif not error:
                code = self.proc.returncode if self.proc else None
                error = (f"the notebook's process ended with status {code} "
                         f"(see {self.log.name})")
        for tmp in (state, partial_path(self.out, self.nb.stem)):
            tmp.unlink(missing_ok=True)
        for base in (self.nb.stem + ".ipynb", self.nb.stem + ".html", self.result.name):
            for tmp in self.out.glob(f".{_glob_escape(base)}.*.tmp"):  # atomic writes cut short
                tmp.unlink(missing_ok=True)
        ipynb = self.out / f"{self.nb.stem}.ipynb"
        html = ipynb.with_suffix(".html")
        ipynb_, html_, result = (p if p.exists() else None for p in (ipynb, html, self.result))
        return NotebookRun(self.nb.stem, status, duration, error, ipynb_, html_, result,
                           self.parameters, question(ipynb) if ipynb_ else "",
                           headline(result), self.log if self.log.exists() else None)


def _glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _execute(work: list[_Worker], timeout: float, jobs: int, bar: tqdm,
             stop: _Stop) -> dict[Path, NotebookRun]:
    """Run the workers, ``jobs`` at once, until all are done or a stop signal came."""
    queue, running, runs = list(work), [], {}

    def finish(w: _Worker, stopped: bool) -> None:
        runs[w.nb] = r = w.collect(stopped)
        bar.set_postfix_str(f"{r.name}: {r.status}")
        bar.update()

    while (queue or running) and stop.signum is None:
        while queue and len(running) < jobs:
            running.append(queue.pop(0).start(timeout))
        for w in [w for w in running if w.done()]:
            running.remove(w)
            finish(w, stopped=False)
        time.sleep(_POLL)
    if stop.signum is not None:
        for w in running:
            w.stop()
        deadline = time.monotonic() + STOP_GRACE
        while any(not w.done() for w in running) and time.monotonic() < deadline \
                and len(stop.signals) < 2:  # a second Ctrl-C: no more waiting
            time.sleep(_POLL)
        for w in running:
            w.kill()
            finish(w, stopped=True)
        for w in queue:
            runs[w.nb] = NotebookRun(w.nb.stem, NOT_RUN, 0.0, "", None, None, None,
                                     w.parameters)
    return runs


def run(names: list[str] | None = None, parameters: dict[str, Any] | None = None,
        out: Path | str | None = None, timeout: float = 600, jobs: int = 2,
        progress: bool = True, root: Path | None = None) -> ReportRun:
    """Run notebooks with papermill and write ``out`` (default ``reports/<timestamp>/``).

    Names, parameter names, types and bounds, ``timeout``, ``jobs`` and the run folder are all
    checked before anything runs. A failing notebook is recorded with its error; the others
    still run. ``ReportRun.ok`` says whether all passed. SIGINT or SIGTERM stop the run: the
    index is written and :class:`ReportInterrupted` (a ``KeyboardInterrupt``) is raised.

    Parameters
    ----------
    names : list of str, optional
        Notebooks to run (default: all of ``notebooks/``).
    parameters : dict, optional
        Parameter values (strings from the CLI are converted to the declared types).
    out : path, optional
        The run directory (created if missing).
    timeout : float
        Per-cell execution timeout [s], >= 1.
    jobs : int
        Notebooks run at once (each is a process with its kernel), >= 1.
    root : path, optional
        Folder of the notebooks (default ``notebooks/``).
    """
    started = dt.datetime.now().astimezone()
    clock = time.perf_counter()
    _check_limits(timeout, jobs)
    notebooks = select(names, root)
    per_nb = resolve(notebooks, parameters or {})
    if out is None:
        out = project_dir() / "reports" / started.strftime("%Y%m%d-%H%M%S")
    out = prepare_out(Path(out))
    work = [_Worker(nb, out, per_nb[nb], out / result_name(nb, per_nb[nb])) for nb in notebooks]
    with _catch_stop_signals() as stop, \
            tqdm(total=len(notebooks), desc="notebooks", unit="nb", disable=not progress) as bar:
        runs = _execute(work, timeout, min(jobs, len(notebooks)) or 1, bar, stop)
        ordered = [runs[nb] for nb in notebooks]
        duration = time.perf_counter() - clock
        commit_id = commit()
        interrupted = stop.signum is not None
        index = write_index(out, ordered, started=started, duration=duration,
                            commit_id=commit_id, interrupted=interrupted)
        result = ReportRun(out, ordered, index, started, duration, commit_id, interrupted)
        if interrupted:
            raise ReportInterrupted(result, stop.signals[0])
    return result
