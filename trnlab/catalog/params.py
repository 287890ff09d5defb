"""The model's parameter files: ``data/perf/training.toml``, ``serving.toml``, ``power.toml``,
``defaults.toml``, ``formats.toml`` and ``data/cost/capex.toml``, validated, each value a
:class:`~trnlab.catalog.fields.Field` with unit, status and source.

The engine (:mod:`trnlab.engine.hardware`) turns them into the core's inputs.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from trnlab import catalog
from trnlab._paths import data_dir
from trnlab.catalog.fields import Field, parse_table, update_tables
from trnlab.catalog.loader import read_toml
from trnlab.errors import CatalogError, bad_value

#: fields of [param] in training.toml that make up the step model's calibration
#: (:class:`trnlab.perf.train.Calibration`): the fitted and estimated efficiencies, then the
#: constants fixed by the algorithms, the number formats and the mixed-precision recipe
TRAIN_CALIBRATION = ("gemm_half_dim", "mem_eff", "layer_overhead", "layer_comm_overlap",
                     "dp_overlap", "step_overhead", "mem_reserve",
                     "attention_backward_factor", "backward_memory_factor", "cp_overlap",
                     "zero3_comm_factor", "activation_bytes", "softmax_stat_bytes",
                     "logits_bytes", "weight_bytes", "grad_bytes", "grad_reduce_bytes",
                     "optimizer_bytes", "optimizer_traffic", "zero3_regather_per_microbatch",
                     "tp_overlap_backward", "fused_attention", "attention_block",
                     "activation_offload", "offload_resident_layers", "optimizer_offload",
                     "host_adam_eff")
#: fields of [param] in serving.toml that make up the serving model's calibration
SERVE_CALIBRATION = ("mem_eff", "mem_reserve", "kv_free_fraction", "decode_half_rows",
                     "per_sequence_overhead", "activation_bytes")
#: what a serving runtime's ``[runtime.<name>]`` table of serving.toml may set: how it sizes
#: its KV cache
RUNTIME_FIELDS = ("mem_reserve", "kv_free_fraction")


def _sources() -> set[str]:
    return set(catalog.default().sources)


def _tables(path: Path, names: tuple[str, ...]) -> tuple[dict[str, Any], dict[str, dict]]:
    doc = read_toml(path)
    sources = _sources()
    return doc, {n: parse_table(doc.get(n, {}), f"{path.name}: [{n}]", sources) for n in names}


def _named_tables(path: Path, doc: dict[str, Any], table: str, allowed: tuple[str, ...]
                  ) -> dict[str, dict[str, Field]]:
    """The ``[<table>.<name>]`` tables of a file: name -> its fields, each key one of
    ``allowed`` (a bad key is named with the table and what is allowed)."""
    sources, out = _sources(), {}
    for name, raw in doc.get(table, {}).items():
        where = f"{path.name}: [{table}.{name}]"
        for key in raw:
            if key not in allowed:
                raise CatalogError(bad_value(where, key, raw[key],
                                             f"allowed: {', '.join(allowed)}"))
        out[name] = parse_table(raw, where, sources)
    return out


def _require(path: Path, table: str, have: dict[str, Field], keys: tuple[str, ...]) -> None:
    for key in keys:
        if key not in have:
            raise CatalogError(f"{path.name}: [{table}]: missing required field '{key}'")


@dataclass(frozen=True)
class TrainingParams:
    """Everything of ``data/perf/training.toml``: the fields keep their provenance."""

    fields: dict[str, Field]
    gemm_eff: dict[str, Field]
    topology: dict[str, Field]
    fit: dict[str, Any]
    path: Path

    def vendor_eff(self, vendor: str) -> float:
        """Large-GEMM BF16 efficiency of a vendor family (``default`` if never calibrated)."""
        return (self.gemm_eff.get(vendor) or self.gemm_eff["default"]).si

    def replace(self, **values: float) -> TrainingParams:
        """A copy with some values changed [SI] (``gemm_eff_<vendor>`` for the vendor table)."""
        t = update_tables({"fields": self.fields, "gemm_eff": self.gemm_eff}, values)
        return TrainingParams(t["fields"], t["gemm_eff"], self.topology, self.fit, self.path)


def load_training(path: Path | None = None) -> TrainingParams:
    """Read and validate ``data/perf/training.toml``."""
    return _load_training(str(path or data_dir() / "perf" / "training.toml"))


@lru_cache(maxsize=8)
def _load_training(path_str: str) -> TrainingParams:
    path = Path(path_str)
    doc, t = _tables(path, ("param", "gemm_eff", "topology"))
    _require(path, "param", t["param"], (*TRAIN_CALIBRATION, "collective_eff", "fp8_gemm_factor",
                                                   "fp4_recipe_bf16_fraction"))
    _require(path, "gemm_eff", t["gemm_eff"], ("default",))
    return TrainingParams(t["param"], t["gemm_eff"], t["topology"], doc.get("fit", {}), path)


@dataclass(frozen=True)
class ServingParams:
    """``data/perf/serving.toml`` with provenance."""

    fields: dict[str, Field]
    step_overhead: dict[str, Field]  # runtime cost per step, per vendor family (+ default)
    fit: dict[str, Any]
    path: Path
    runtimes: dict[str, dict[str, Field]] = dataclasses.field(default_factory=dict)

    def for_runtime(self, runtime: str) -> ServingParams:
        """A copy with a serving runtime's ``[runtime.<name>]`` KV-cache sizing (this one if
        the file has no such table)."""
        table = self.runtimes.get(runtime, {})
        return dataclasses.replace(self, fields={**self.fields, **table}) if table else self

    def vendor_step_overhead(self, vendor: str) -> float:
        """Runtime cost per step of a vendor family's serving stack [s] (``default`` if none)."""
        return (self.step_overhead.get(vendor) or self.step_overhead["default"]).si

    def replace(self, **values: float) -> ServingParams:
        """A copy with values changed [SI] (``step_overhead_<vendor>`` for the vendor table)."""
        t = update_tables({"fields": self.fields, "step_overhead": self.step_overhead}, values)
        return ServingParams(t["fields"], t["step_overhead"], self.fit, self.path, self.runtimes)


def load_serving(path: Path | None = None) -> ServingParams:
    """Read and validate ``data/perf/serving.toml``."""
    return _load_serving(str(path or data_dir() / "perf" / "serving.toml"))


@lru_cache(maxsize=8)
def _load_serving(path_str: str) -> ServingParams:
    path = Path(path_str)
    doc, t = _tables(path, ("param", "step_overhead"))
    _require(path, "param", t["param"], SERVE_CALIBRATION)
    _require(path, "step_overhead", t["step_overhead"], ("default",))
    return ServingParams(t["param"], t["step_overhead"], doc.get("fit", {}), path,
                         _named_tables(path, doc, "runtime", RUNTIME_FIELDS))


#: fields of [param] in moe.toml: the MoE terms of the training step
#: (:class:`trnlab.perf.moe.MoECalibration`)
MOE_CALIBRATION = ("ep_overlap", "a2a_dedup", "node_limit", "dispatch_bytes", "combine_bytes",
                   "load_imbalance", "permute_copies", "router_traffic", "moe_layer_overhead",
                   "einsum_dispatch", "einsum_backward", "group_tile", "consecutive_routing",
                   "expert_tp")


def load_moe(path: Path | None = None) -> dict[str, Field]:
    """Read and validate ``data/perf/moe.toml`` (the MoE terms' constants, with provenance)."""
    return _load_moe(str(path or data_dir() / "perf" / "moe.toml"))


@lru_cache(maxsize=4)
def _load_moe(path_str: str) -> dict[str, Field]:
    path = Path(path_str)
    _, t = _tables(path, ("param",))
    _require(path, "param", t["param"], MOE_CALIBRATION)
    return t["param"]


def load_moe_stacks(path: Path | None = None) -> dict[str, dict[str, Field]]:
    """The ``[stack.<family>]`` tables of ``data/perf/moe.toml``: family -> the MoE constants
    its stack sets differently from ``[param]`` (each a :data:`MOE_CALIBRATION` name)."""
    return _load_moe_stacks(str(path or data_dir() / "perf" / "moe.toml"))


@lru_cache(maxsize=4)
def _load_moe_stacks(path_str: str) -> dict[str, dict[str, Field]]:
    path = Path(path_str)
    return _named_tables(path, read_toml(path), "stack", MOE_CALIBRATION)


@lru_cache(maxsize=2)
def load_defaults(path: Path | None = None) -> dict[str, Field]:
    """Read and validate ``data/perf/defaults.toml``: values the engine uses where a user or a
    measurement leaves one unstated (``tokens_per_step``), and the layout rules' pipeline slack
    (``pipeline_extra_layers``)."""
    path = path or data_dir() / "perf" / "defaults.toml"
    _, t = _tables(path, ("param",))
    _require(path, "param", t["param"], ("tokens_per_step", "pipeline_extra_layers"))
    return t["param"]


@dataclass(frozen=True)
class Economics:
    """Power-model parameters, system capex and TCO economics, with provenance."""

    power: dict[str, Field]
    capex: dict[str, Field]  # system id -> price
    economics: dict[str, Field]

    def system_capex(self, system: str) -> Field:
        if system not in self.capex:
            raise CatalogError(bad_value("data/cost/capex.toml", "system", system,
                                         f"no capex; known: {', '.join(sorted(self.capex))}"))
        return self.capex[system]


@lru_cache(maxsize=2)
def load_power_cap_measurements(root: str | None = None) -> dict[str, dict[str, Any]]:
    """The measured throughput under power caps of ``perf/power.toml`` ``[measured.*]``: name
    -> ``cap_w`` [W] and ratios to the uncapped point [1] (``sm_clock``,
    ``llm_training_speed``) with their ``*_source`` ids (checked against sources.toml)."""
    base = Path(root) if root else data_dir()
    sources, out = _sources(), {}
    for name, t in read_toml(base / "perf" / "power.toml").get("measured", {}).items():
        where = f"power.toml: [measured.{name}]"
        caps = t.get("cap_w")
        if not isinstance(caps, list) or not caps or not all(c > 0 for c in caps):
            raise CatalogError(bad_value(where, "cap_w", caps, "a list of powers > 0 W"))
        for key in ("sm_clock", "llm_training_speed"):
            v = t.get(key)
            if not isinstance(v, list) or len(v) != len(caps) or not all(0 < x <= 1 for x in v):
                raise CatalogError(bad_value(where, key, v, f"{len(caps)} ratios in (0, 1]"))
            if t.get(f"{key}_source") not in sources:
                raise CatalogError(bad_value(where, f"{key}_source", t.get(f"{key}_source"),
                                             "an id of data/hardware/sources.toml"))
        out[name] = t
    return out


@lru_cache(maxsize=2)
def load_economics(root: str | None = None) -> Economics:
    """Read and validate ``perf/power.toml`` and ``cost/capex.toml`` under ``root`` (data/)."""
    base = Path(root) if root else data_dir()
    sources = _sources()
    power = parse_table(read_toml(base / "perf" / "power.toml").get("param", {}),
                        "power.toml: [param]", sources)
    doc = read_toml(base / "cost" / "capex.toml")
    capex = {}
    for system, raw in doc.get("capex", {}).items():
        catalog.default().system(system)  # an unknown system id is an error
        capex[system] = parse_table(raw, f"capex.toml: [capex.{system}]", sources)["price"]
    econ = parse_table(doc.get("economics", {}).get("default", {}),
                       "capex.toml: [economics.default]", sources)
    _require(Path("capex.toml"), "economics.default", econ,
             ("life_years", "energy_price", "network_capex_fraction",
              "facility_capex_per_watt", "facility_life_years"))
    return Economics(power, capex, econ)


@dataclass(frozen=True)
class Formats:
    """``data/perf/formats.toml``: bytes per element of each number format (with provenance)
    and the narrow (8-bit or less) ones, in the file's order."""

    bytes: dict[str, Field]
    narrow: frozenset[str]
    path: Path


def load_formats(path: Path | None = None) -> Formats:
    """Read and validate ``data/perf/formats.toml``."""
    return _load_formats(str(path or data_dir() / "perf" / "formats.toml"))


@lru_cache(maxsize=4)
def _load_formats(path_str: str) -> Formats:
    path = Path(path_str)
    raw = read_toml(path).get("format")
    if not isinstance(raw, dict) or not raw:
        raise CatalogError(f"{path.name}: needs a non-empty [format.<name>] table")
    sources = _sources()
    sizes, narrow = {}, set()
    for name, table in raw.items():
        where = f"{path.name}: [format.{name}]"
        if not isinstance(table, dict) or set(table) != {"bytes", "narrow"}:
            raise CatalogError(bad_value(where, name, table,
                                         "must have exactly the keys bytes and narrow"))
        size = parse_table({"bytes": table["bytes"]}, where, sources)["bytes"]
        if size.si_unit != "B" or not size.si > 0:
            raise CatalogError(bad_value(where, "bytes", size.value,
                                         "must be a positive size in bytes per element"))
        if not isinstance(table["narrow"], bool) or table["narrow"] != (size.si <= 1.0):
            raise CatalogError(bad_value(where, "narrow", table["narrow"],
                                         "must be true for formats of 8 bits or less, "
                                         "false otherwise"))
        sizes[name] = size
        if table["narrow"]:
            narrow.add(name)
    return Formats(sizes, frozenset(narrow), path)


#: the keys of a [stack.<family>] table of data/perf/stacks.toml and their allowed values
STACK_KEYS = {"attention": ("fused", "materialised"), "tp_overlap": (True, False),
              "fsdp_reshard": ("step", "microbatch"), "selective": ("attention", "op", "layer")}
#: memory-bound op kinds a stack may run one PyTorch kernel per operator (``eager`` in
#: data/perf/stacks.toml; their traffic is trnlab.workloads.traffic.EAGER_TRAFFIC)
EAGER_KINDS = ("norm", "rope", "act")


@dataclass(frozen=True)
class Stack:
    """The software stack of a framework family (``data/perf/stacks.toml``)."""

    family: str
    attention: str  # "fused" (FlashAttention-class) or "materialised" (s x s scores in HBM)
    attention_rate: float  # fused kernel's rate / the chip's FlashAttention-2-class rates [1]
    tp_overlap: bool  # TP/SP collectives overlapped with the GEMMs
    fsdp_reshard: str  # ZeRO-3/FSDP gathers: once per "step" or per "microbatch"
    micro_batch: int  # default micro-batch when unstated (0 = search)
    vpp: int  # default interleave when unstated
    selective: str  # what "selective" recompute runs again (trnlab.workloads.flops.SELECTIVE)
    eager: tuple[str, ...]  # memory-bound op kinds run unfused, one kernel per operator
    fp8_cast: bool  # FP8 GEMM inputs cast by kernels of their own (torchao), not fused (TE)
    source: str
    note: str
    attention_block: int = 0  # keys per tile of its attention kernel (0: training.toml's)
    recompute: str = ""  # its recompute when a case leaves it unstated ("": the fastest fitting)
    attention_kernel: str = ""  # its fused kernel by name ("": the chip's rates as they are)
    tp_overlap_passes: str = "all"  # the passes its TP overlap covers: "all" or "forward"


#: a stack's default recompute (``recompute`` in data/perf/stacks.toml; "" = search)
STACK_RECOMPUTE = ("", "none", "selective", "full")
#: the passes whose TP collectives a stack's TP overlap hides (``tp_overlap_passes``): "all",
#: or "forward" only (forward and recomputed forward; the backward's stay exposed)
TP_OVERLAP_PASSES = ("all", "forward")
#: named fused attention kernels a stack may run (``attention_kernel`` in stacks.toml); a chip
#: whose chip_efficiency.toml table has ``attn_rate_<kernel>`` runs it at that multiple of its
#: attention rates, another chip at its rates as they are
ATTENTION_KERNELS = ("", "fa3")
#: optional keys of a [stack.*] table that name one of a few choices: key -> (the choices, the
#: first being the value when absent; what the refusal says is allowed)
STACK_CHOICES = {
    "recompute": (STACK_RECOMPUTE, "none, selective or full (absent: the fastest fitting)"),
    "attention_kernel": (ATTENTION_KERNELS, "fa3 (absent: the chip's attention rates)"),
    "tp_overlap_passes": (TP_OVERLAP_PASSES, "all or forward (absent: all)"),
}


@lru_cache(maxsize=2)
def load_stacks(path: Path | None = None) -> dict[str, Stack]:
    """Read and validate ``data/perf/stacks.toml``: family -> :class:`Stack` (``default``
    always present)."""
    path = path or data_dir() / "perf" / "stacks.toml"
    raw = read_toml(path).get("stack", {})
    out = {}
    for family, t in raw.items():
        where = f"{path.name}: [stack.{family}]"
        for key, allowed in STACK_KEYS.items():
            if t.get(key) not in allowed:
                raise CatalogError(bad_value(where, key, t.get(key),
                                             f"allowed: {', '.join(map(str, allowed))}"))
        for key in ("micro_batch", "vpp"):
            if not isinstance(t.get(key), int) or t[key] < (0 if key == "micro_batch" else 1):
                raise CatalogError(bad_value(where, key, t.get(key), "a small integer"))
        rate = t.get("attention_rate")
        if not isinstance(rate, float | int) or not 0 < rate <= 2:
            raise CatalogError(bad_value(where, "attention_rate", rate, "a number in (0, 2]"))
        eager = t.get("eager", [])
        if not isinstance(eager, list) or not set(eager) <= set(EAGER_KINDS):
            raise CatalogError(bad_value(where, "eager", eager,
                                         f"a list of {', '.join(EAGER_KINDS)}"))
        fp8_cast = t.get("fp8_cast", False)
        if not isinstance(fp8_cast, bool):
            raise CatalogError(bad_value(where, "fp8_cast", fp8_cast, "true or false"))
        block = t.get("attention_block", 0)
        if not isinstance(block, int) or isinstance(block, bool) or block < 0:
            raise CatalogError(bad_value(where, "attention_block", block,
                                         "an integer >= 0 [tokens] (0: training.toml's)"))
        chosen = {}
        for key, (choices, allowed) in STACK_CHOICES.items():
            chosen[key] = t.get(key, choices[0])
            if chosen[key] not in choices:
                raise CatalogError(bad_value(where, key, chosen[key], allowed))
        out[family] = Stack(family, t["attention"], float(rate), t["tp_overlap"],
                            t["fsdp_reshard"], t["micro_batch"], t["vpp"], t["selective"],
                            tuple(eager), fp8_cast, t.get("source", ""), t.get("note", ""),
                            block, **chosen)
    if "default" not in out:
        raise CatalogError(f"{path.name}: needs a [stack.default] table")
    return out


#: per-chip inputs of data/perf/chip_efficiency.toml
CHIP_EFFICIENCY = ("gemm", "attn_fwd", "attn_bwd")
#: optional per-chip rate: the large FP8 GEMM microbenchmark fraction of the FP8 peak
GEMM_FP8 = "gemm_fp8"
#: optional per-chip input: the lanes the attention kernel rounds each head dimension up to
#: (absent: 1, the head dimension as it is)
ATTN_LANES = "attn_head_lanes"
#: optional per-chip input: the fewest keys a query of a sliding-window layer costs the chip's
#: attention kernel (absent: 0, the window's key tiles)
ATTN_WINDOW_KEYS = "attn_window_keys"
#: optional per-chip input: the share of the sequence an FP8 attention backward computes per
#: query of a sliding-window layer (1: the whole s x s matrix; absent: 0, as in BF16)
ATTN_FP8_WINDOW_SPAN = "attn_fp8_window_span"
#: optional per-chip input: a named attention kernel's rate over the chip's attention rates
#: (``attn_rate_fa3``: FlashAttention-3 on Hopper over the FlashAttention-2-class rates)
ATTN_KERNEL_RATE = "attn_rate_{}"


@dataclass(frozen=True)
class ChipEfficiency:
    """``data/perf/chip_efficiency.toml``: per-chip kernel rates with provenance.

    ``chips[chip][name]`` for ``name`` in :data:`CHIP_EFFICIENCY`: ``gemm`` = large BF16 GEMM
    microbenchmark fraction of the dense peak, ``gemm_fp8`` (optional) = the large FP8 GEMM's
    fraction of the FP8 peak, ``attn_fwd`` / ``attn_bwd`` = FlashAttention-class
    forward / backward fraction of the BF16 peak (at head dimension 128), ``attn_head_lanes``
    (optional) = the lanes the kernel pads each head dimension to; ``reference[vendor]`` = the
    chip on which the vendor's fitted ``gemm_eff`` (training.toml) is measured; ``proxy`` = the
    calibrated vendor a vendor without measurements borrows its framework efficiency from."""

    chips: dict[str, dict[str, Field]]
    reference: dict[str, str]
    proxy: dict[str, str]
    path: Path


@lru_cache(maxsize=2)
def load_chip_efficiency(path: Path | None = None) -> ChipEfficiency:
    """Read and validate ``data/perf/chip_efficiency.toml`` (every chip of the catalog needs an
    entry: a chip without measurements carries a projected value with its range)."""
    path = path or data_dir() / "perf" / "chip_efficiency.toml"
    doc = read_toml(path)
    sources = _sources()
    chips = {}
    for chip_id, raw in doc.get("chip", {}).items():
        catalog.chip(chip_id)  # an unknown chip id is an error
        where = f"{path.name}: [chip.{chip_id}]"
        t = parse_table(raw, where, sources)
        _require(path, f"chip.{chip_id}", t, CHIP_EFFICIENCY)
        for name in (*CHIP_EFFICIENCY, *((GEMM_FP8,) if GEMM_FP8 in t else ())):
            if not 0 < t[name].si <= 1:
                raise CatalogError(bad_value(where, name, t[name].value, "a fraction in (0, 1]"))
        lanes = t.get(ATTN_LANES)
        if lanes is not None and not (lanes.si >= 1 and float(lanes.si).is_integer()):
            raise CatalogError(bad_value(where, ATTN_LANES, lanes.value,
                                         "an integer >= 1 [elements]"))
        floor = t.get(ATTN_WINDOW_KEYS)
        if floor is not None and not floor.si >= 0:
            raise CatalogError(bad_value(where, ATTN_WINDOW_KEYS, floor.value,
                                         "a number of keys >= 0 [tokens]"))
        for kernel in filter(None, ATTENTION_KERNELS):
            ratio = t.get(ATTN_KERNEL_RATE.format(kernel))
            if ratio is not None and not 0 < ratio.si <= 3:
                raise CatalogError(bad_value(where, ATTN_KERNEL_RATE.format(kernel),
                                             ratio.value, "a ratio in (0, 3]"))
        span = t.get(ATTN_FP8_WINDOW_SPAN)
        if span is not None and not 0 <= span.si <= 1:
            raise CatalogError(bad_value(where, ATTN_FP8_WINDOW_SPAN, span.value,
                                         "a share of the sequence in [0, 1]"))
        chips[chip_id] = t
    missing = sorted(set(catalog.default().chips) - set(chips))
    if missing:
        raise CatalogError(f"{path.name}: no [chip.<id>] entry for {', '.join(missing)}")
    reference = dict(doc.get("reference", {}))
    for vendor, chip_id in reference.items():
        if chip_id not in chips:
            raise CatalogError(bad_value(f"{path.name}: [reference]", vendor, chip_id,
                                         "a chip of this file"))
    return ChipEfficiency(chips, reference, dict(doc.get("proxy", {})), path)
