"""The ``index.html`` of a report run: when, from which commit, and each notebook's answer.

For every notebook: its question (the first ``# heading`` of the executed notebook), its
headline (the ``headline`` attr of its result Dataset), status (``ok``, ``failed``,
``interrupted``, ``not run``), duration, links, parameters and error. Everything is escaped;
the page has no external resources.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import re
from pathlib import Path
from typing import Any

import nbformat

from trnlab import __version__
from trnlab._files import write_text

_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


def question(ipynb: Path) -> str:
    """Text of the first level-1 markdown heading (``# ...``) of a notebook, or ``""``."""
    try:
        nb = nbformat.read(ipynb, as_version=4)
    except Exception:  # noqa: BLE001 - a summary must never break a report
        return ""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and (m := _HEADING.search(cell.source)):
            return m.group(1)
    return ""


def headline(result: Path | None) -> str:
    """The ``headline`` attr of a result Dataset (netCDF, h5netcdf), or ``""``."""
    if result is None or not result.exists():
        return ""
    import xarray as xr

    from trnlab.io import ENGINE

    try:
        with xr.open_dataset(result, engine=ENGINE) as ds:
            return str(ds.attrs.get("headline", ""))
    except Exception:  # noqa: BLE001 - a summary must never break a report
        return ""


def commit() -> str:
    """The project's git commit, short, with ``+dirty`` if modified; ``"unknown"`` without git."""
    from trnlab.io import git_commit

    try:
        full = git_commit()
    except Exception:  # noqa: BLE001 - provenance must never break a report
        return "unknown"
    sha, plus, dirty = full.partition("+")
    if not re.fullmatch(r"[0-9a-f]{7,64}", sha):
        return "unknown"
    return sha[:10] + plus + dirty


def duration_text(seconds: float) -> str:
    """``42.1 s``, ``3 min 05 s`` or ``1 h 02 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _link(path: Path | None, out: Path, label: str) -> str:
    if path is None or not path.exists():
        return ""
    return f'<a href="{html.escape(path.relative_to(out).as_posix())}">{label}</a>'


def _params(parameters: dict[str, Any]) -> str:
    return "<br>".join(f"<code>{html.escape(k)} = {html.escape(json.dumps(v, default=str))}"
                       "</code>" for k, v in parameters.items())


def _css_class(status: str) -> str:
    return html.escape(status.replace(" ", "-"))


def _card(r: Any, out: Path) -> str:
    links = " · ".join(s for s in (_link(r.html, out, "report"), _link(r.ipynb, out, "notebook"),
                                   _link(r.result, out, "dataset (.nc)"),
                                   _link(getattr(r, "log", None), out, "log")) if s)
    q = getattr(r, "question", "") or r.name
    head = getattr(r, "headline", "")
    rows = [f"<p class='headline'>{html.escape(head)}</p>" if head else "",
            f"<p class='meta'><span class='status {_css_class(r.status)}'>"
            f"{html.escape(r.status)}</span> · {duration_text(r.duration)} · "
            f"<code>{html.escape(r.name)}</code> · {links or 'no files'}</p>",
            f"<p class='params'>{_params(r.parameters)}</p>" if r.parameters else "",
            f"<pre class='error'>{html.escape(r.error)}</pre>" if r.error else ""]
    return (f"<section class='nb {_css_class(r.status)}'>\n<h2>{html.escape(q)}</h2>\n"
            + "\n".join(x for x in rows if x) + "\n</section>")


_CSS = """body { font: 16px/1.5 system-ui, sans-serif; color: #222; max-width: 60em;
  margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.6em; margin-bottom: .2em; }
.run { color: #555; margin-top: 0; }
.run dt { float: left; clear: left; width: 8em; color: #777; }
.run dd { margin-left: 8em; }
section.nb { border: 1px solid #ddd; border-left: 5px solid #3a7; border-radius: 4px;
  padding: .4em 1em; margin: 1em 0; }
section.nb.failed { border-left-color: #c33; background: #fff6f6; }
section.nb.interrupted { border-left-color: #d80; background: #fffaf0; }
section.nb.not-run { border-left-color: #aaa; color: #666; }
section.nb h2 { font-size: 1.15em; margin: .4em 0; }
.headline { font-size: 1.05em; margin: .3em 0; }
.meta, .params { color: #555; font-size: .9em; margin: .3em 0; }
.status.ok { color: #070; font-weight: bold; }
.status.failed { color: #b00; font-weight: bold; }
.status.interrupted { color: #a50; font-weight: bold; }
.status.not-run { color: #666; font-weight: bold; }
pre.error { white-space: pre-wrap; color: #900; font-size: .85em; margin: .3em 0; }
code { font-size: .95em; }"""


def write_index(out: Path, runs: list[Any], *, started: dt.datetime | None = None,
                duration: float | None = None, commit_id: str | None = None,
                interrupted: bool = False) -> Path:
    """Write ``out/index.html`` (atomically) and return its path.

    ``started`` is the run's start time (local), ``duration`` its total wall time [s],
    ``commit_id`` the project's git commit (looked up when not given) and ``interrupted``
    whether a signal stopped the run.
    """
    started = started or dt.datetime.now().astimezone()
    total = sum(r.duration for r in runs) if duration is None else duration
    commit_id = commit() if commit_id is None else commit_id
    counts = {s: sum(r.status == s for r in runs) for s in dict.fromkeys(r.status for r in runs)}
    title = f"trnlab report {out.name}"
    summary = ", ".join([f"{counts.pop('ok', 0)} of {len(runs)} ok",
                         *(f"{n} {s}" for s, n in counts.items())])
    facts = [("date", started.isoformat(timespec="seconds")), ("commit", commit_id),
             ("wall time", duration_text(total)), ("trnlab", __version__),
             ("notebooks", summary)]
    if interrupted:
        facts.append(("run", "interrupted (SIGINT or SIGTERM) before all notebooks finished"))
    run_info = "\n".join(f"<dt>{k}</dt><dd>{html.escape(v)}</dd>" for k, v in facts)
    cards = "\n".join(_card(r, out) for r in runs)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<dl class="run">
{run_info}
</dl>
{cards}
</body></html>
"""
    return write_text(out / "index.html", page)
