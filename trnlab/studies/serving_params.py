"""Serving-model inputs: the model shape, ``data/perf/serving.toml`` and the hardware dict."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from trnlab import catalog
from trnlab._paths import data_dir
from trnlab.catalog.fields import Field, parse_table, update_tables
from trnlab.catalog.loader import read_toml
from trnlab.errors import CatalogError, ParameterError, bad_value
from trnlab.perf.serve import ServeCalibration, ServeShape
from trnlab.studies.training_params import PRECISION_BYTES, hardware, load_params
from trnlab.workloads import TransformerSpec

_FIELDS = ("mem_eff", "mem_reserve", "decode_half_rows", "per_sequence_overhead")


@dataclass(frozen=True)
class ServingParams:
    """``data/perf/serving.toml`` with provenance."""

    fields: dict[str, Field]
    step_overhead: dict[str, Field]  # runtime cost per step, per vendor family (+ default)
    fit: dict[str, Any]
    path: Path

    @property
    def calibration(self) -> ServeCalibration:
        return ServeCalibration(**{k: self.fields[k].si for k in _FIELDS})

    def vendor_step_overhead(self, vendor: str) -> float:
        """Runtime cost per step of a vendor family's serving stack [s] (``default`` if none)."""
        return (self.step_overhead.get(vendor) or self.step_overhead["default"]).si

    def replace(self, **values: float) -> ServingParams:
        """A copy with values changed [SI] (``step_overhead_<vendor>`` for the vendor table)."""
        t = update_tables({"fields": self.fields, "step_overhead": self.step_overhead}, values)
        return ServingParams(t["fields"], t["step_overhead"], self.fit, self.path)


def load_serving(path: Path | None = None) -> ServingParams:
    return _load(str(path or data_dir() / "perf" / "serving.toml"))


@lru_cache(maxsize=8)
def _load(path_str: str) -> ServingParams:
    path = Path(path_str)
    doc = read_toml(path)
    sources = set(catalog.default().sources)
    tables = {table: parse_table(doc.get(table, {}), f"{path.name}: [{table}]", sources)
              for table in ("param", "step_overhead")}
    for table, key in [*(("param", k) for k in _FIELDS), ("step_overhead", "default")]:
        if key not in tables[table]:
            raise CatalogError(f"{path.name}: [{table}]: missing required field '{key}'")
    return ServingParams(tables["param"], tables["step_overhead"], doc.get("fit", {}), path)


@lru_cache(maxsize=64)
def serve_shape(spec: TransformerSpec) -> ServeShape:
    """The :class:`~trnlab.perf.serve.ServeShape` of ``spec``."""
    pc = spec.param_counts()
    experts = spec.moe_layers * spec.expert_params if spec.moe_experts else 0.0
    latent = (spec.kv_lora_rank + spec.qk_rope_head_dim) if spec.is_mla else 0.0
    return ServeShape(
        name=spec.name, layers=spec.layers, moe_layers=spec.moe_layers, hidden=spec.hidden,
        heads=spec.heads, qk_dim=spec.qk_head_dim, v_dim=spec.v_dim,
        kv_heads=0.0 if spec.is_mla else spec.kv_heads, kv_latent=latent,
        moe_experts=spec.moe_experts, moe_active=spec.moe_active,
        attn_params=spec.layers * spec.attention_params_per_layer,
        dense_params=pc.total - pc.experts + (0 if spec.lm_head_params else
                                              spec.vocab * spec.hidden),
        expert_params=experts, flop_params=spec.flop_params)


def serving_hardware(chip: str, system: str, activations: str = "bf16",
                     params: ServingParams | None = None,
                     power_cap_w: float | None = None) -> dict[str, Any]:
    """Chip, networks and serving runtime as the serving model sees them; GEMMs run at the
    activation format; ``step_overhead`` is the runtime cost per step of the chip's family."""
    if activations not in PRECISION_BYTES:
        raise ParameterError(bad_value("serving", "activations", activations,
                                       f"allowed: {', '.join(PRECISION_BYTES)}"))
    hw = hardware(chip, system, activations, power_cap_w=power_cap_w)
    return {"peak": hw.peak_gemm, "gemm_eff": hw.gemm_eff, "hbm_bw": hw.hbm_bw,
            "hbm_capacity": hw.hbm_capacity, "up_bw": hw.up_bw, "up_latency": hw.up_latency,
            "domain": hw.domain, "out_bw": hw.out_bw, "out_latency": hw.out_latency,
            "step_overhead": (params or load_serving()).vendor_step_overhead(
                catalog.chip(chip).vendor)}


def half_dim() -> float:
    """The GEMM half-efficiency size shared with training [elements]."""
    return load_params().fields["gemm_half_dim"].si


def format_bytes(fmt: str) -> float:
    """Bytes per element of a storage format (``int8-weights`` counts as int8)."""
    fmt = {"int8-weights": "int8"}.get(fmt, fmt)
    if fmt not in PRECISION_BYTES:
        raise ParameterError(bad_value("serving", "format", fmt,
                                       f"allowed: {', '.join(PRECISION_BYTES)}"))
    return PRECISION_BYTES[fmt]
