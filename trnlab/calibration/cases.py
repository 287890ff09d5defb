"""Read a transformer architecture from a calibration case row (``data/measurements/SCHEMA.md``).

Columns ``layers, hidden, heads, kv_heads, head_dim, ffn, vocab, moe_experts, moe_active,
moe_ffn, gated_mlp``; extra facts (shared experts, leading dense layers, MLA ranks) come from
``arch:`` entries in the ``Normalization:`` part of ``notes``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields

from trnlab.errors import CatalogError, ParameterError, bad_value
from trnlab.workloads import TransformerSpec

__all__ = ["parse_arch_notes", "spec_from_case"]

_ARCH_ALIASES = {
    "shared_experts": "moe_shared_experts", "n_shared_experts": "moe_shared_experts",
    "moe_shared_experts": "moe_shared_experts", "dense_layers": "moe_dense_layers",
    "moe_dense_layers": "moe_dense_layers", "first_k_dense_replace": "moe_dense_layers",
    "first_num_dense_layers": "moe_dense_layers", "q_lora_rank": "q_lora_rank",
    "kv_lora_rank": "kv_lora_rank", "qk_rope_head_dim": "qk_rope_head_dim",
    "qk_nope_head_dim": "qk_nope_head_dim", "v_head_dim": "v_head_dim",
    "sliding_window": "sliding_window", "window_layers": "window_layers",
}


_CASE_COLUMNS = ("layers", "hidden", "heads", "kv_heads", "head_dim", "ffn", "vocab",
                 "moe_experts", "moe_active", "moe_ffn", "gated_mlp")


def parse_arch_notes(notes: str) -> dict[str, int]:
    """Architecture facts from the ``arch:`` entries of a case's ``notes`` [spec field -> int]."""
    norm = notes.split("|| Normalization:", 1)[-1].split("|| Original:", 1)[0]
    out: dict[str, int] = {}
    for entry in re.findall(r"arch:\s*([^;|]*)", norm):
        text = entry.strip().lower()
        for key, val in re.findall(r"([a-z_]+)\s*[=:]\s*(\d+)", text):
            if key in _ARCH_ALIASES:
                out[_ARCH_ALIASES[key]] = int(val)
        if re.search(r"\bno shared experts?\b", text):
            out["moe_shared_experts"] = 0
        if m := re.search(r"(\d+)\s+shared experts?\b", text):
            out["moe_shared_experts"] = int(m.group(1))
        if m := re.search(r"(\d+)\s+(?:leading\s+|first\s+)?dense layers?\b", text):
            out["moe_dense_layers"] = int(m.group(1))
    return out


def spec_from_case(row: Mapping[str, str], defaults: Mapping[str, object] | None = None
                   ) -> TransformerSpec:
    """Build a spec from a row of a case file (``data/measurements/SCHEMA.md``).

    Empty cells mean "not stated". This reader's defaults, written into ``source``:
    ``kv_heads = heads`` (MHA), ``head_dim = hidden/heads``, ``gated_mlp = false``,
    ``ffn = 4·hidden`` for dense layers (the GPT default), MoE fields 0. ``vocab`` has no
    default: pass ``defaults={"vocab": ...}``. ``defaults`` fills any other empty column and
    sets spec fields that have no column (e.g. ``{"tied_embeddings": True}`` for the MaxText
    synthetic models).
    Shared experts, leading dense layers, MLA ranks and sliding windows come from ``arch:``
    entries in ``notes`` (``key=value`` with a spec field name, ``N shared experts``,
    ``no shared experts``, ``N dense layers``).

    Raises
    ------
    CatalogError
        A required column is missing, empty or not an int, or the architecture is invalid.
    """
    defaults = defaults or {}
    case = row.get("case_id") or "?"
    where = f"case {case}"
    used: list[str] = []

    def cell(col: str) -> str:
        if col not in row:
            raise CatalogError(bad_value(where, col, None, "column missing from the case row"))
        return (row[col] or "").strip()

    def integer(col: str, fallback: int | None = None, note: str = "") -> int:
        text = cell(col)
        if not text:
            if col in defaults:
                used.append(f"{col}={defaults[col]} (caller)")
                return defaults[col]  # type: ignore[return-value]
            if fallback is None:
                raise CatalogError(bad_value(where, col, text, "an int (not stated by the case; "
                                             "pass defaults={...})"))
            if note:
                used.append(note)
            return fallback
        try:
            return int(text)
        except ValueError:
            raise CatalogError(bad_value(where, col, text, "an int")) from None

    heads, hidden = integer("heads"), integer("hidden")
    kw: dict[str, object] = {"layers": integer("layers"), "hidden": hidden, "heads": heads}
    kw["kv_heads"] = integer("kv_heads", heads, "kv_heads=heads")
    kw["head_dim"] = integer("head_dim") if cell("head_dim") else defaults.get("head_dim")
    kw["vocab"] = integer("vocab")
    kw["moe_experts"] = integer("moe_experts", 0)
    kw["moe_active"] = integer("moe_active", 0)
    kw["moe_ffn"] = integer("moe_ffn", 0)
    gated = cell("gated_mlp").lower()
    if gated not in ("", "true", "false"):
        raise CatalogError(bad_value(where, "gated_mlp", gated, "true, false or empty"))
    if gated:
        kw["gated_mlp"] = gated == "true"
    elif "gated_mlp" in defaults:
        kw["gated_mlp"] = bool(defaults["gated_mlp"])
        used.append(f"gated_mlp={kw['gated_mlp']} (caller)")
    else:
        kw["gated_mlp"] = False
        used.append("gated_mlp=false")
    kw.update(parse_arch_notes(row.get("notes") or ""))
    allowed = {f.name for f in fields(TransformerSpec)} - {"name", "source", "params_published"}
    for key, value in defaults.items():
        if key not in allowed:
            raise ParameterError(bad_value("from_case", "defaults", key,
                                           f"spec fields only: {', '.join(sorted(allowed))}"))
        if key not in _CASE_COLUMNS and key not in kw:
            kw[key] = value
            used.append(f"{key}={value} (caller)")
    dense = kw["moe_experts"] == 0 or int(kw.get("moe_dense_layers", 0)) > 0  # type: ignore[arg-type]
    kw["ffn"] = integer("ffn", 4 * hidden if dense else 0, "ffn=4*hidden" if dense else "")
    pub = cell("params_b") if "params_b" in row else ""
    try:
        kw["params_published"] = float(pub) if pub else None
    except ValueError:
        raise CatalogError(bad_value(where, "params_b", pub, "a number")) from None
    src = f"calibration case {case}: {row.get('source', '')}"
    if used:
        src += "; reader defaults: " + ", ".join(used)
    name = (row.get("model") or case).strip()
    try:
        return TransformerSpec(name=name, source=src, **kw)  # type: ignore[arg-type]
    except ParameterError as err:
        raise CatalogError(f"{where}: {err}") from None
