"""Notebook parameters: discover them (papermill), check names and types before anything runs.

papermill only *warns* about unknown parameter names and never checks types; a typo'd
``-p n_chipz 8`` would silently run the defaults. trnlab refuses both up front.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import nbformat
import papermill

from trnlab.errors import ParameterError

_SCALARS: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


def _assigned(notebook: Path) -> list[str]:
    """Names assigned in the notebook's ``parameters`` cell, read with Python's own parser."""
    nb = nbformat.read(notebook, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ParameterError(f"{notebook.name}: {len(cells)} cells tagged 'parameters' "
                             "(papermill needs exactly one)")
    tree = ast.parse(cells[0].source)
    return [n.target.id for n in tree.body
            if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]


def declared(notebook: Path) -> dict[str, dict[str, str]]:
    """Parameters of ``notebook``: name -> {inferred_type_name, default, help} (papermill).

    Every annotated assignment of the parameters cell must be understood by papermill, which
    silently skips a line it cannot parse (e.g. a comment containing ``=``).
    """
    params = papermill.inspect_notebook(str(notebook))
    for name in _assigned(notebook):
        if name not in params:
            raise ParameterError(f"{notebook.name}: parameter {name!r} is not understood by "
                                 "papermill (one '=' per line: no '=' in its comment)")
    if not params:
        raise ParameterError(f"{notebook.name}: no typed parameters in the 'parameters' cell")
    return params


def _parse_text(text: str, type_name: str) -> Any:
    """Turn a CLI string into a value of ``type_name`` (int, float, str, bool, list[...])."""
    if type_name == "str":
        return text
    if type_name == "bool":
        low = text.strip().lower()
        if low in ("true", "1", "yes"):
            return True
        if low in ("false", "0", "no"):
            return False
        raise ValueError(text)
    if type_name in ("int", "float"):
        return _SCALARS[type_name](text)
    if type_name.startswith("list"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = [t.strip() for t in text.split(",") if t.strip()]
        return list(value) if isinstance(value, list | tuple) else [value]
    return text


def _matches(value: Any, type_name: str) -> bool:
    if type_name == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if type_name in _SCALARS:
        return isinstance(value, _SCALARS[type_name]) and (
            type_name == "bool" or not isinstance(value, bool))
    if type_name.startswith("list["):
        inner = type_name[5:-1]
        return isinstance(value, list) and all(_matches(v, inner) for v in value)
    return True


def coerce(notebook: str, name: str, value: Any, type_name: str) -> Any:
    """Return ``value`` as ``type_name``; strings from the CLI are parsed first."""
    if isinstance(value, str) and type_name != "str":
        try:
            value = _parse_text(value, type_name)
        except (ValueError, TypeError):
            raise ParameterError(f"{notebook}: parameter {name} = {value!r}: "
                                 f"must be {type_name}") from None
    if type_name.startswith("list[") and type_name[5:-1] in ("int", "float"):
        try:
            value = [_SCALARS[type_name[5:-1]](v) for v in value]
        except (ValueError, TypeError):
            raise ParameterError(f"{notebook}: parameter {name} = {value!r}: "
                                 f"must be {type_name}") from None
    if type_name == "float" and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not _matches(value, type_name):
        raise ParameterError(f"{notebook}: parameter {name} = {value!r}: must be {type_name}")
    return value


def resolve(notebooks: list[Path], given: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """Check ``given`` against every notebook's declared parameters; return per-notebook values.

    A parameter must be declared by at least one of ``notebooks``; it is passed to those that
    declare it, converted to the declared type.
    """
    decl = {nb: declared(nb) for nb in notebooks}
    for name in given:
        if not any(name in d for d in decl.values()):
            allowed = sorted({n for d in decl.values() for n in d})
            raise ParameterError(f"parameter {name!r}: unknown; the selected notebooks take: "
                                 f"{', '.join(allowed)}")
    return {nb: {name: coerce(nb.name, name, value, d[name]["inferred_type_name"])
                 for name, value in given.items() if name in d}
            for nb, d in decl.items()}
