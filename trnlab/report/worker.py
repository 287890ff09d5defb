"""One notebook in a process of its own: papermill, then the reader's HTML page.

:mod:`trnlab.report.runner` starts ``python -c BOOT <spec>`` per notebook, in a session of its
own and with stdout and stderr going to ``<run>/<notebook>.log`` (the kernel inherits them, so
its log lines never reach the terminal). SIGTERM or SIGINT stop the worker: the kernel, whose
manager this process holds, is killed, the hidden ``.<notebook>.running.ipynb`` is removed and
the status ``interrupted`` is reported. The worker also stops when its parent goes away.

The outcome goes to ``.<notebook>.status.json`` (``status``: ``ok``, ``failed`` or
``interrupted``; ``error``), which the runner reads and deletes.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

KERNEL = "python3"
#: seconds a finished kernel gets to shut down by itself before it is killed
SHUTDOWN_WAIT = 2.0
_STOP = (signal.SIGINT, signal.SIGTERM)

#: what the runner runs with ``python -c``: the worker, imported from the runner's trnlab
BOOT = ("import sys; sys.path.insert(0, sys.argv[1]); "
        "from trnlab.report.worker import main; main(sys.argv[2])")


def partial_path(out: Path, stem: str) -> Path:
    """The notebook papermill writes while it runs (renamed when the run ends)."""
    return out / f".{stem}.running.ipynb"


def status_path(out: Path, stem: str) -> Path:
    return out / f".{stem}.status.json"


def _watch_parent(parent: int) -> None:
    """Stop (as if sent SIGTERM) when the runner that started this worker is gone."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="trnlab-parent-watch", daemon=True).start()


@contextlib.contextmanager
def _held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back in the block; one that came is raised at its end."""
    came = []
    old = {s: signal.signal(s, lambda signum, _: came.append(signum)) for s in _STOP}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    if came:
        raise KeyboardInterrupt


def _ignore_stop_signals() -> None:
    for s in _STOP:
        signal.signal(s, signal.SIG_IGN)


def _shutdown(km: Any, now: bool) -> None:
    """Stop the kernel (kill it if ``now``), with the stop signals held back meanwhile."""
    from jupyter_core.utils import run_sync

    with _held():
        if km.has_kernel:
            try:
                km.shutdown_wait_time = SHUTDOWN_WAIT
                run_sync(km.shutdown_kernel)(now=now)
            except Exception:  # noqa: BLE001 - whatever the manager says, the kernel must go
                pid = getattr(getattr(km, "provisioner", None), "pid", None)
                if pid:
                    with contextlib.suppress(OSError):
                        os.killpg(pid, signal.SIGKILL)


def _execute(spec: dict[str, Any], partial: Path) -> str:
    """Run the notebook into ``partial``; return ``""`` or the error (cell, kernel, timeout)."""
    import papermill
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name=KERNEL)
    error = "interrupted"
    try:
        papermill.execute_notebook(spec["notebook"], str(partial), parameters=spec["parameters"],
                                   kernel_name=KERNEL, language="python", cwd=spec["out"],
                                   progress_bar=False, execution_timeout=spec["timeout"], km=km)
        error = ""
    except papermill.PapermillExecutionError as err:
        error = f"{err.ename}: {err.evalue}"
    except Exception as err:  # noqa: BLE001 - a dead kernel or a timeout is the notebook's failure
        error = f"{type(err).__name__}: {err}"
    finally:
        _shutdown(km, now=bool(error))
    return error


def run(spec: dict[str, Any]) -> dict[str, str]:
    """Execute one notebook as ``spec`` says; return ``{"status": ..., "error": ...}``."""
    from trnlab.report.render import to_html

    out, stem = Path(spec["out"]), spec["stem"]
    ipynb, partial = out / f"{stem}.ipynb", partial_path(out, stem)
    status, error = "interrupted", ""
    try:
        for stale in (ipynb, ipynb.with_suffix(".html"), out / spec["result"]):
            stale.unlink(missing_ok=True)  # outputs of an earlier run into the same folder
        error = _execute(spec, partial)
        status = "failed" if error else "ok"
        if partial.exists():
            partial.replace(ipynb)
        if ipynb.exists():
            try:
                to_html(ipynb)
            except Exception as err:  # noqa: BLE001 - the notebook ran; its page did not render
                status, error = "failed", error or f"HTML page: {type(err).__name__}: {err}"
    except KeyboardInterrupt:  # SIGINT or SIGTERM from the runner
        status, error = "interrupted", ""
    finally:
        _ignore_stop_signals()  # from here on the worker only reports and exits
        partial.unlink(missing_ok=True)
    return {"status": status, "error": error}


def main(spec_json: str) -> None:
    """Entry point of the worker process (see :data:`BOOT`); never returns."""
    for signum in _STOP:
        signal.signal(signum, signal.default_int_handler)
    code = 1
    try:
        spec = json.loads(spec_json)
        _watch_parent(spec["parent"])
        result = run(spec)
        from trnlab._files import write_text

        if os.getppid() == spec["parent"]:  # else nobody would read (and delete) it
            write_text(status_path(Path(spec["out"]), spec["stem"]), json.dumps(result))
        code = 0
    except BaseException as err:  # noqa: BLE001 - the runner reports a missing status file
        print(f"trnlab report worker: {type(err).__name__}: {err}", file=sys.stderr)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # no atexit hooks: the kernel is gone, nothing is left to wait for
