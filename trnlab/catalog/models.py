"""Model presets: ``data/models/*.toml`` -> :class:`TransformerSpec`.

Each file holds ``[model.<id>]`` tables whose keys are :class:`TransformerSpec` fields (schema:
``data/models/README.md``). ``data/`` is found next to the package in a source checkout
(``<trnlab>/../data``) or inside an installed wheel (``<trnlab>/_data``).
"""

from __future__ import annotations

import re
import tomllib
from functools import cache
from pathlib import Path

from trnlab import checks
from trnlab._paths import data_dir
from trnlab.errors import CatalogError, ParameterError, bad_value
from trnlab.workloads.spec import TransformerSpec

__all__ = ["FIELDS", "data_dir", "load_models", "model", "model_ids", "spec"]

_INT = ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab", "moe_experts",
        "moe_active", "moe_shared_experts", "moe_ffn", "moe_dense_layers", "q_lora_rank",
        "kv_lora_rank", "qk_rope_head_dim", "qk_nope_head_dim", "v_head_dim", "pos_embeddings",
        "sliding_window", "window_layers")
_BOOL = ("gated_mlp", "tied_embeddings", "linear_bias")
_STR = ("norm", "source")
_FLOAT = ("params_published", "active_params_published")
_REQUIRED = ("layers", "hidden", "heads", "vocab", "gated_mlp", "tied_embeddings",
             "params_published", "source")
_ID = re.compile(r"^[a-z0-9][a-z0-9.\-]*$")
FIELDS = _INT + _BOOL + _STR + _FLOAT
"""Keys allowed in a ``[model.<id>]`` table: every :class:`TransformerSpec` field but ``name``."""


def _short(value: object) -> object:
    text = repr(value)
    return value if len(text) <= 60 else text[:57] + "..."


def _check_type(where: str, key: str, value: object) -> None:
    if key in _INT:
        ok, allowed = isinstance(value, int) and not isinstance(value, bool), "an int"
    elif key in _BOOL:
        ok, allowed = isinstance(value, bool), "true or false"
    elif key in _STR:
        ok, allowed = isinstance(value, str), "a string"
    else:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        allowed = "a number [1e9 parameters]"
    if not ok:
        raise CatalogError(bad_value(where, key, _short(value), allowed))


def _entry(path: Path, mid: str, table: object) -> TransformerSpec:
    where = f"{path}: [model.{mid}]"
    if not _ID.match(mid):
        raise CatalogError(bad_value(f"{path}", "model id", mid, "lower-case [a-z0-9.-]"))
    if not isinstance(table, dict):
        raise CatalogError(bad_value(where, "entry", _short(table), "a table of fields"))
    known = FIELDS
    for key, value in table.items():
        if isinstance(value, dict):
            raise CatalogError(bad_value(where, key, "{...}", "a value, not a table (quote an id "
                                         'that contains ".": [model."a-1.5b"])'))
        if key not in known:
            raise CatalogError(bad_value(where, key, _short(value),
                                         f"unknown field; allowed: {', '.join(known)}"))
        _check_type(where, key, value)
    for key in _REQUIRED:
        if key not in table:
            raise CatalogError(bad_value(where, key, None, "required field missing"))
    kw = {k: float(v) if k in _FLOAT else v for k, v in table.items()}
    try:
        return TransformerSpec(name=mid, **kw)
    except ParameterError as err:
        raise CatalogError(f"{path}: {err}") from None


def load_models(path: str | Path) -> dict[str, TransformerSpec]:
    """Load the ``[model.<id>]`` tables of one TOML file.

    Raises
    ------
    CatalogError
        The file is unreadable or not TOML, has other top-level keys, or an entry has an
        unknown, missing, mistyped or invalid field (the message names file, entry, field,
        value).
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except OSError as err:
        raise CatalogError(bad_value(str(path), "file", str(path),
                                     f"a readable TOML file ({err.strerror})")) from None
    except tomllib.TOMLDecodeError as err:
        raise CatalogError(f"{path}: invalid TOML: {err}".replace("\n", " ")) from None
    extra = sorted(set(doc) - {"model"})
    if extra:
        raise CatalogError(bad_value(str(path), "top-level key", extra[0],
                                     "only [model.<id>] tables"))
    models = doc.get("model", {})
    if not isinstance(models, dict):
        raise CatalogError(bad_value(str(path), "model", _short(models), "tables [model.<id>]"))
    return {mid: _entry(path, mid, table) for mid, table in models.items()}


@cache
def _catalog() -> dict[str, TransformerSpec]:
    out: dict[str, TransformerSpec] = {}
    for path in sorted((data_dir() / "models").glob("*.toml")):
        for mid, spec in load_models(path).items():
            if mid in out:
                raise CatalogError(bad_value(str(path), "model id", mid,
                                             "unique across data/models/*.toml (duplicate)"))
            out[mid] = spec
    return out


def model_ids() -> list[str]:
    """Ids of the model presets, sorted."""
    return sorted(_catalog())


def model(model_id: str) -> TransformerSpec:
    """The preset ``model_id`` (e.g. ``"llama3-405b"``).

    Raises
    ------
    CatalogError
        ``model_id`` is unknown (the message lists the allowed ids).
    """
    catalog = _catalog()
    if model_id not in catalog:
        raise CatalogError(bad_value("model", "id", model_id,
                                     f"allowed: {', '.join(sorted(catalog))}"))
    return catalog[model_id]


def spec(model_or_id: TransformerSpec | str, where: str = "model") -> TransformerSpec:
    """``model_or_id`` itself when it is a :class:`TransformerSpec`, else the preset of that id:
    the one way every entry point accepts "a preset id or a spec"."""
    if isinstance(model_or_id, TransformerSpec):
        return model_or_id
    return model(checks.ident(where, "model", model_or_id, CatalogError))
