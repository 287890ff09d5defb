"""A notebook as a self-contained HTML page for readers: code hidden until asked for.

nbconvert's ``lab`` template, extended in memory: no input/output prompts
(``exclude_input_prompt``, ``exclude_output_prompt``), no scripts fetched from the internet
(require.js, MathJax and mermaid are dropped; images are embedded), and every code cell's input
hidden by CSS until the reader ticks "show code" (a checkbox and its label: no JavaScript).
Markdown, printed text, HTML tables (pandas, xarray) and figures show as they are; each output
shows one representation (nbconvert's display priority puts ``text/html`` before
``text/plain``), so a table is not followed by its plain-text shadow.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import nbformat

from trnlab._files import write_text

if TYPE_CHECKING:
    from nbconvert import HTMLExporter

TEMPLATE = "trnlab_report.html.j2"

_CSS = """
main { max-width: 1150px; margin: 0 auto; padding-top: 2.5em; }
.trn-bar { position: fixed; top: 0; right: 0; z-index: 10; padding: 6px 12px;
  font: 14px/1.4 var(--jp-ui-font-family, sans-serif); background: #f4f6f8;
  border: 1px solid #ccd; border-top: 0; border-right: 0; border-radius: 0 0 0 6px; }
.trn-bar a, .trn-bar label { color: #0645ad; text-decoration: underline; }
.trn-bar a { margin-right: 1em; }
.trn-bar label { cursor: pointer; user-select: none; }
.trn-toggle { position: absolute; opacity: 0; width: 1px; height: 1px; }
.trn-toggle:focus-visible ~ .trn-bar label { outline: 2px solid #0645ad; }
.trn-toggle:checked ~ .trn-bar .trn-off, .trn-toggle:not(:checked) ~ .trn-bar .trn-on {
  display: none; }
.trn-toggle:not(:checked) ~ .jp-CodeCell .jp-Cell-inputWrapper,
.trn-toggle:not(:checked) ~ .jp-CodeCell.jp-mod-noOutputs { display: none; }
.jp-RenderedHTMLCommon table { font-size: 13px; }
@media print { .trn-bar { display: none; } }
"""

_SOURCE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block extra_css -%}<style type="text/css">""" + _CSS + """</style>{%- endblock extra_css -%}
{%- block body_header -%}
{{ super() }}
<input type="checkbox" id="trn-show-code" class="trn-toggle">
<div class="trn-bar"><a href="index.html">index</a><label for="trn-show-code">{#
#}<span class="trn-off">show code</span><span class="trn-on">hide code</span></label></div>
{%- endblock body_header -%}
"""


def exporter() -> HTMLExporter:
    """The HTML exporter for report pages (nbconvert is imported here: it is slow to import)."""
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name="lab", template_file=TEMPLATE,
        extra_loaders=[jinja2.DictLoader({TEMPLATE: _SOURCE})],
        exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True)


def to_html(ipynb: Path) -> Path:
    """Write ``<ipynb>.html`` beside the executed notebook (atomically) and return its path."""
    nb = nbformat.read(ipynb, as_version=4)
    body, _ = exporter().from_notebook_node(nb, resources={"metadata": {
        "name": ipynb.stem, "path": str(ipynb.parent)}})
    return write_text(ipynb.with_suffix(".html"), body)
