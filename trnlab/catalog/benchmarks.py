"""Standard inference benchmarks: ``data/perf/benchmarks.toml``, validated.

A published inference measurement often names its benchmark (ShareGPT, MLPerf Llama 2 70B, ...)
instead of stating its request lengths; the benchmark's data set defines them. Each
:class:`Benchmark` holds the data set's mean prompt and output [tokens] where published and the
server scenario's latency limits [s] with their percentile, each number a
:class:`~trnlab.catalog.fields.Field` with unit, status and source.

>>> from trnlab.catalog.benchmarks import find
>>> find("vLLM benchmark_serving, ShareGPT dataset").input_len.value
161.31
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from trnlab import catalog
from trnlab._paths import data_dir
from trnlab.catalog.fields import Field, parse_table
from trnlab.catalog.loader import read_toml
from trnlab.errors import CatalogError, bad_value

__all__ = ["Benchmark", "benchmarks", "find"]

#: the number fields a [benchmark.<id>] table may hold, and their dimension
_FIELDS = {"input_len": "count", "output_len": "count", "ttft_limit": "time",
           "tpot_limit": "time", "latency_percentile": "count"}


@dataclass(frozen=True)
class Benchmark:
    """One standard benchmark: ``pattern`` (case-insensitive regular expression) names it in a
    case's text; ``input_len`` / ``output_len`` [tokens] the data set's mean lengths (None: not
    published); ``ttft_limit`` / ``tpot_limit`` [s] and ``latency_percentile`` [%] its server
    scenario's limits (None: none)."""

    id: str
    name: str
    pattern: str
    input_len: Field | None = None
    output_len: Field | None = None
    ttft_limit: Field | None = None
    tpot_limit: Field | None = None
    latency_percentile: Field | None = None

    def matches(self, text: str) -> bool:
        """Whether ``text`` names this benchmark."""
        return re.search(self.pattern, text, re.IGNORECASE) is not None

    @property
    def has_limits(self) -> bool:
        """Whether the benchmark defines both server latency limits."""
        return self.ttft_limit is not None and self.tpot_limit is not None


def benchmarks(path: Path | None = None) -> tuple[Benchmark, ...]:
    """Every benchmark of ``data/perf/benchmarks.toml``, in file order (most specific first)."""
    return _load(str(path or data_dir() / "perf" / "benchmarks.toml"))


@lru_cache(maxsize=4)
def _load(path_str: str) -> tuple[Benchmark, ...]:
    path = Path(path_str)
    doc = read_toml(path)
    tables = doc.get("benchmark")
    if not isinstance(tables, dict) or not tables:
        raise CatalogError(f"{path.name}: needs [benchmark.<id>] tables")
    sources = set(catalog.default().sources)
    out = []
    for bid, raw in tables.items():
        where = f"{path.name}: [benchmark.{bid}]"
        if not isinstance(raw, dict):
            raise CatalogError(bad_value(where, "table", raw, "a table"))
        for key in ("name", "pattern"):
            if not isinstance(raw.get(key), str) or not raw[key].strip():
                raise CatalogError(bad_value(where, key, raw.get(key), "non-empty text"))
        try:
            re.compile(raw["pattern"])
        except re.error as err:
            raise CatalogError(bad_value(where, "pattern", raw["pattern"],
                                         f"a regular expression ({err})")) from None
        unknown = set(raw) - {"name", "pattern", *_FIELDS}
        if unknown:
            raise CatalogError(bad_value(where, min(unknown), "", "unknown key; allowed: name, "
                                         f"pattern, {', '.join(_FIELDS)}"))
        fields = parse_table({k: raw[k] for k in _FIELDS if k in raw}, where, sources)
        for key, field in fields.items():
            if field.si <= 0:
                raise CatalogError(bad_value(where, key, field.value, "a positive number"))
        if ("ttft_limit" in fields) != ("tpot_limit" in fields):
            raise CatalogError(f"{where}: ttft_limit and tpot_limit come together")
        out.append(Benchmark(bid, raw["name"], raw["pattern"], **fields))
    return tuple(out)


def find(text: str, path: Path | None = None) -> Benchmark | None:
    """The first benchmark ``text`` names, or None."""
    return next((b for b in benchmarks(path) if b.matches(text)), None)
