"""The ``index.html`` of a report run: every notebook with status, duration and links."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from trnlab import __version__
from trnlab._files import write_text


def _link(path: Path | None, out: Path, label: str) -> str:
    if path is None:
        return "&ndash;"
    return f'<a href="{html.escape(str(path.relative_to(out)))}">{label}</a>'


def write_index(out: Path, runs: list[Any]) -> Path:
    """Write ``out/index.html`` (atomically) and return its path."""
    rows = "\n".join(
        f"<tr class='{r.status}'><td>{html.escape(r.name)}</td><td>{r.status}</td>"
        f"<td>{r.duration:.1f} s</td><td>{_link(r.html, out, 'html')}</td>"
        f"<td>{_link(r.ipynb if r.ipynb.exists() else None, out, 'ipynb')}</td>"
        f"<td>{_link(r.result, out, 'result .nc')}</td>"
        f"<td><code>{html.escape(str(r.parameters) if r.parameters else '')}</code></td>"
        f"<td>{html.escape(r.error)}</td></tr>"
        for r in runs)
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>trnlab report {html.escape(out.name)}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px}} tr.failed{{background:#fdd}}
tr.ok td:nth-child(2){{color:#070}}</style></head><body>
<h1>trnlab report {html.escape(out.name)}</h1>
<p>trnlab {__version__}: {sum(r.status == 'ok' for r in runs)} of {len(runs)} notebooks ok.</p>
<table><tr><th>notebook</th><th>status</th><th>duration</th><th>report</th><th>notebook</th>
<th>dataset</th><th>parameters</th><th>error</th></tr>
{rows}
</table></body></html>
"""
    return write_text(out / "index.html", page)
