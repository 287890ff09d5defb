"""Notebook parameters: discover them (papermill), check names, types and bounds before
anything runs.

papermill only *warns* about unknown parameter names and never checks types; a typo'd
``-p n_chipz 8`` would silently run the defaults, and ``-p cluster_chips -5`` would fail inside
the kernel minutes later. trnlab refuses all three up front: names and types come from the
notebook's ``parameters`` cell, the allowed values from :data:`BOUNDS` (one entry per
parameter of every notebook; ``tests/test_notebooks.py`` checks that none is missing and that
every default is allowed). ``result_path`` must name a ``.nc`` file in the run folder.
"""

from __future__ import annotations

import ast
import itertools
import json
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import nbformat
import papermill

from trnlab import checks
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


# ------------------------------------------------------------------------------- bounds
def _catalog_ids(kind: str) -> tuple[str, ...]:
    """The ids of :data:`CATALOG_IDS` ``kind``, read from the catalog (only when a value of
    such a parameter is given: the catalog takes a moment to load)."""
    from trnlab import catalog
    from trnlab.catalog.params import load_economics, load_formats

    ids = {"models": lambda: catalog.model_ids(),
           "systems": lambda: catalog.default().systems,
           "chips": lambda: catalog.default().chips,
           "precisions": lambda: catalog.PRECISIONS,
           "formats": lambda: load_formats().bytes,
           "capex systems": lambda: load_economics().capex}[kind]
    return tuple(ids())


#: the catalog lists a ``choices`` may name: name -> how the message calls it
CATALOG_IDS: dict[str, str] = {
    "models": "a model id of the catalog (data/models)",
    "systems": "a system id of the catalog (data/hardware/systems.toml)",
    "chips": "a chip id of the catalog (data/hardware/chips.toml)",
    "precisions": "a precision of the catalog",
    "formats": "a number format of the catalog (data/perf/formats.toml)",
    "capex systems": "a system with a capex (data/cost/capex.toml)",
}


def _num(x: float) -> str:
    if float(x).is_integer() and abs(x) < 1e12:
        return f"{int(x):_}"
    return f"{x:g}".replace("e+", "e")


@dataclass(frozen=True)
class Bounds:
    """The values a notebook parameter may take; for a list, what each element may be and what
    the list may be.

    ``low`` / ``high``: the range (``low_open``: ``low`` itself excluded); ``zero``: 0 is also
    allowed and means this; ``choices``: the allowed strings, or a key of :data:`CATALOG_IDS`;
    ``lengths``: the allowed list lengths (empty: any), ``shape`` their meaning in words;
    ``nonempty``, ``unique``, ``increasing`` (``[low, central, high]``): what a list must be.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    zero: str = ""
    choices: tuple[str, ...] | str = ()
    lengths: tuple[int, ...] = ()
    shape: str = ""
    nonempty: bool = False
    unique: bool = False
    increasing: bool = False

    def allowed(self) -> tuple[str, ...]:
        if isinstance(self.choices, str):
            return _catalog_ids(self.choices)
        return self.choices

    def describe(self) -> str:
        """What one value (one element of a list) may be, e.g. ``in [1, 10_000_000]``."""
        if self.choices:
            label = (CATALOG_IDS[self.choices] if isinstance(self.choices, str)
                     else "one of")
            return f"{label}: {', '.join(self.allowed())}"
        lo = "(" if self.low_open else "["
        text = f"in {lo}{_num(self.low)}, {_num(self.high)}]" if self.high is not None \
            else f"{'>' if self.low_open else '>='} {_num(self.low)}"
        return f"0 ({self.zero}) or {text}" if self.zero else text

    def _ok(self, v: Any) -> bool:
        if self.choices:
            return v in self.allowed()
        if self.zero and v == 0:
            return True
        above = v > self.low if self.low_open else v >= self.low
        return bool(above and (self.high is None or v <= self.high))  # False for NaN

    def problem(self, value: Any) -> str:
        """Why ``value`` is not allowed (``""`` if it is)."""
        if not isinstance(value, list):
            return "" if self._ok(value) else f"must be {self.describe()}"
        if self.lengths and len(value) not in self.lengths:
            if self.shape:
                return f"must be {self.shape}"
            counts = [str(n) for n in self.lengths]
            return (f"must have {', '.join(counts[:-1])} or {counts[-1]} elements"
                    if len(counts) > 1 else f"must have {counts[0]} elements")
        if self.nonempty and not value:
            return "must not be empty"
        if self.unique and len(set(value)) != len(value):
            return "must not repeat an element"
        for v in value:
            if not self._ok(v):
                return f"{v!r} is not allowed: each element must be {self.describe()}"
        if self.increasing and any(a > b for a, b in itertools.pairwise(value)):
            return "must be in increasing order ([low, central, high])"
        return ""


# The numeric limits are those the studies themselves check (trnlab.checks) or tighter where
# the physics says so (a chip's power, a PUE).
CHIP_COUNT = Bounds(1, checks.MAX_CHIPS)           # chips in a job
CHIP_COUNTS = Bounds(1, checks.MAX_CHIPS, nonempty=True, unique=True)
TOKENS = Bounds(1, checks.MAX_TOKENS)              # tokens of a sequence, prompt or output
TOKEN_BUDGET = Bounds(1, 1e16)                     # training tokens
MODEL = Bounds(choices="models")
MODELS = Bounds(choices="models", nonempty=True, unique=True)
SYSTEM = Bounds(choices="systems")
SYSTEMS = Bounds(choices="systems", nonempty=True, unique=True)
CHIPS = Bounds(choices="chips", nonempty=True, unique=True)
PRECISION = Bounds(choices="precisions")
FORMAT = Bounds(choices="formats")
SAMPLES = Bounds(1, checks.MAX_SAMPLES)            # Monte-Carlo samples
SEED = Bounds(0, 2**32 - 1)


def _ranged(low: float, high: float, lengths: tuple[int, ...]) -> Bounds:
    """A list: ``[]`` (the catalog), ``[value]`` (if 1 in ``lengths``) or ``[low, central,
    high]``, each element in ``[low, high]``."""
    shape = ", ".join(["[] (the catalog)", *(["[value]"] if 1 in lengths else [])])
    return Bounds(low, high, lengths=lengths, increasing=True,
                  shape=f"{shape} or [low, central, high]")


@dataclass(frozen=True)
class CaseFile(Bounds):
    """A case file: ``""`` (the committed one) or a path ending in ``.csv``."""

    def problem(self, value: Any) -> str:
        ok = isinstance(value, str) and (value == "" or value.endswith(".csv"))
        return "" if ok else "must be empty (data/measurements/cases.csv) or a path ending in .csv"


#: notebook -> parameter -> allowed values (``result_path`` is checked apart: RESULT_PATH)
BOUNDS: dict[str, dict[str, Bounds]] = {
    "00_model_accuracy": {"cases": CaseFile()},
    "01_trainium3_claims": {
        "cluster_chips": Bounds(1, checks.MAX_CLUSTER_CHIPS),
        "chip_power_w": _ranged(30, 5000, (0, 3)),  # W, the catalog's sane range of a TDP
        "system_overhead": _ranged(0, 3, (0, 3)),   # fraction of chip power
        "pue": _ranged(1, 3, (0, 3)),
        "trn2_power_w": _ranged(30, 5000, (0, 3)),  # W
        "trn3_mfu": _ranged(0.01, 5, (0, 3)),       # Trn3 delivered / modelled throughput
        "trn3_scaleup_gbps": _ranged(1, 100_000, (0, 3)),  # GB/s per chip
        "trn2_price": _ranged(0.01, 1000, (0, 3)),  # USD per chip-hour
        "gpu_price": _ranged(0.01, 10, (0, 3)),     # fraction of the on-demand price
    },
    "08_rack_peer_table": {
        "systems": SYSTEMS, "dense_model": MODEL, "moe_model": MODEL,
        "precision": PRECISION, "input_len": TOKENS, "output_len": TOKENS,
        "tpot_ms": Bounds(0, 60_000, low_open=True),
        "ttft_ms": Bounds(0, 3_600_000, low_open=True),
        "n_samples": SAMPLES, "seed": SEED,
    },
    "02_trainium3_training": {
        "model": MODEL, "systems": SYSTEMS, "system": SYSTEM, "heatmap_chips": CHIP_COUNT,
        "scales": CHIP_COUNTS, "precision": PRECISION, "token_budget": TOKEN_BUDGET,
        "seq_len": TOKENS, "roofline_chips": CHIPS,
    },
    "03_trainium3_memory_inference": {
        "models": MODELS, "chips": CHIPS,
        "contexts": Bounds(1, checks.MAX_TOKENS, nonempty=True, unique=True),
        "input_len": TOKENS, "output_len": TOKENS,
        "tpot_ms": Bounds(0, 60_000, low_open=True),
        "ttft_ms": Bounds(0, 3_600_000, low_open=True),
        "weights": FORMAT, "kv": FORMAT,
        "concurrency": Bounds(1, checks.MAX_BATCH), "fit_context": TOKENS,
    },
    "04_trainium3_power_energy": {
        "model": MODEL, "systems": SYSTEMS, "n_chips": CHIP_COUNT, "precision": PRECISION,
        "token_budget": TOKEN_BUDGET, "pue": _ranged(1, 3, (0, 1, 3)),
        "system_overhead": _ranged(0, 3, (0, 1, 3)), "n_samples": SAMPLES, "seed": SEED,
    },
    "05_trainium3_cost": {
        "model": MODEL, "systems": Bounds(choices="capex systems", nonempty=True, unique=True),
        "n_chips": CHIP_COUNT, "precision": PRECISION, "token_budget": TOKEN_BUDGET,
        "electricity_price": Bounds(0, 10),          # USD/kWh; 0 takes the catalog
        "pue": Bounds(1, 3, zero="the catalog"),
        "amortization_years": Bounds(1, 30, zero="the catalog"),
        "trn3_price": Bounds(0, 1000),               # USD/(chip*h); 0: no price scenario
        "n_samples": SAMPLES, "seed": SEED,
    },
    "06_trainium4_nvlink_fusion": {
        "model": MODEL, "moe_model": MODEL, "input_len": TOKENS, "output_len": TOKENS,
        "tpot_ms": Bounds(0, 60_000, low_open=True), "ttft_ms": Bounds(0, 3_600_000, low_open=True),
        "precision": Bounds(choices=("bf16", "fp8", "fp4")),
        "workloads": Bounds(choices=("serving", "afd", "training", "rl"), nonempty=True,
                            unique=True),
        "trn4_price": _ranged(0.01, 1000, (0, 1, 3)),   # USD per chip-hour
        "rubin_price": _ranged(0.01, 1000, (0, 1, 3)),  # USD per GPU-hour
        "trn4_tdp": _ranged(30, 5000, (0, 1, 3)),       # W, the catalog's sane range of a TDP
        "rubin_tdp": _ranged(30, 5000, (0, 1, 3)),
        "fabric_efficiency": _ranged(0.01, 1, (0, 1, 3)),
        "n_samples": SAMPLES, "seed": SEED,
    },
    "07_trainium3_scale": {
        "model": MODEL, "systems": SYSTEMS, "chips": CHIP_COUNTS, "train_tokens": TOKEN_BUDGET,
        "weak_tokens_per_chip": Bounds(1, 1e9),     # tokens per chip of the weak-scaling batch
        "seq_len": TOKENS, "n_trials": SAMPLES, "seed": SEED,
        "intervals_min": Bounds(0, 1e6, low_open=True, nonempty=True, unique=True),
    },
}

#: the parameter naming the result file, a ``.nc`` file in the run folder (the notebook's cwd)
RESULT_PATH = "result_path"


def _result_problem(value: str) -> str:
    path = PurePath(value)
    if path.is_absolute() or len(path.parts) != 1 or value in ("", ".", "..") \
            or value.startswith(".") or "\\" in value or not value.endswith(".nc"):
        return "must be a file name ending in .nc, in the run folder (no directory, no '..')"
    return ""


def check_bounds(notebook: Path, name: str, value: Any) -> None:
    """Raise a one-line ParameterError if ``value`` is outside the bounds of ``name``."""
    bounds = BOUNDS.get(notebook.stem, {}).get(name)
    why = (_result_problem(value) if name == RESULT_PATH
           else bounds.problem(value) if bounds else "")
    if why:
        raise ParameterError(f"{notebook.name}: parameter {name} = {value!r}: {why}")


def result_name(notebook: Path, values: dict[str, Any]) -> str:
    """The file name of the notebook's result: ``result_path`` as given or its default
    (``<notebook>.nc`` if the notebook has no such parameter)."""
    if RESULT_PATH in values:
        return str(values[RESULT_PATH])
    default = papermill.inspect_notebook(str(notebook)).get(RESULT_PATH, {}).get("default")
    try:
        return str(ast.literal_eval(default)) if default else f"{notebook.stem}.nc"
    except (ValueError, SyntaxError):
        return f"{notebook.stem}.nc"


def resolve(notebooks: list[Path], given: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """Check ``given`` against every notebook's declared parameters; return per-notebook values.

    A parameter must be declared by at least one of ``notebooks``; it is passed to those that
    declare it, converted to the declared type and checked against its bounds. No two
    notebooks may write the same result file.
    """
    decl = {nb: declared(nb) for nb in notebooks}
    for name in given:
        if not any(name in d for d in decl.values()):
            allowed = sorted({n for d in decl.values() for n in d})
            raise ParameterError(f"parameter {name!r}: unknown; the selected notebooks take: "
                                 f"{', '.join(allowed)}")
    values = {nb: {name: coerce(nb.name, name, value, d[name]["inferred_type_name"])
                   for name, value in given.items() if name in d}
              for nb, d in decl.items()}
    for nb, vals in values.items():
        for name, value in vals.items():
            check_bounds(nb, name, value)
    writers: dict[str, Path] = {}
    for nb, vals in values.items():
        name = result_name(nb, vals)
        if name in writers:
            raise ParameterError(f"{nb.name}: parameter {RESULT_PATH} = {name!r}: "
                                 f"{writers[name].stem} writes it too; each notebook needs "
                                 "its own result file")
        writers[name] = nb
    return values
