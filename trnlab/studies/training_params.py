"""The step model's parameters (``data/perf/training.toml``) and the hardware adapter."""

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
from trnlab.perf.train import Calibration, Hardware

#: GEMM operand size per precision [B]
PRECISION_BYTES = {"fp32": 4.0, "tf32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "mxfp8": 1.0,
                   "int8": 1.0, "fp4": 0.5, "mxfp4": 0.5, "nvfp4": 0.5}
NARROW = frozenset({"fp8", "mxfp8", "int8", "fp4", "mxfp4", "nvfp4"})
_CAL_FIELDS = ("gemm_half_dim", "mem_eff", "layer_overhead", "layer_comm_overlap", "dp_overlap",
               "step_overhead", "mem_reserve", "attention_eff")


@dataclass(frozen=True)
class TrainingParams:
    """Everything of ``data/perf/training.toml``: the fields keep their provenance."""

    fields: dict[str, Field]
    gemm_eff: dict[str, Field]
    topology: dict[str, Field]
    fit: dict[str, Any]
    path: Path

    @property
    def calibration(self) -> Calibration:
        return Calibration(**{k: self.fields[k].si for k in _CAL_FIELDS})

    def vendor_eff(self, vendor: str) -> float:
        """Large-GEMM BF16 efficiency of a vendor family (``default`` if never calibrated)."""
        return (self.gemm_eff.get(vendor) or self.gemm_eff["default"]).si

    def replace(self, **values: float) -> TrainingParams:
        """A copy with some values changed [SI] (``gemm_eff_<vendor>`` for the vendor table)."""
        t = update_tables({"fields": self.fields, "gemm_eff": self.gemm_eff}, values)
        return TrainingParams(t["fields"], t["gemm_eff"], self.topology, self.fit, self.path)


def _table(doc: dict, name: str, where: str, sources: set[str]) -> dict[str, Field]:
    return parse_table(doc.get(name, {}), f"{where}: [{name}]", sources)


def load_params(path: Path | None = None) -> TrainingParams:
    """Read and validate ``data/perf/training.toml``."""
    return _load(str(path or data_dir() / "perf" / "training.toml"))


@lru_cache(maxsize=8)
def _load(path_str: str) -> TrainingParams:
    path = Path(path_str)
    doc = read_toml(path)
    sources = set(catalog.default().sources)
    fields = _table(doc, "param", path.name, sources)
    for key in (*_CAL_FIELDS, "collective_eff", "fp8_gemm_factor"):
        if key not in fields:
            raise CatalogError(f"{path.name}: [param]: missing required field '{key}'")
    eff = _table(doc, "gemm_eff", path.name, sources)
    if "default" not in eff:
        raise CatalogError(f"{path.name}: [gemm_eff]: missing required field 'default'")
    topo = _table(doc, "topology", path.name, sources)
    return TrainingParams(fields, eff, topo, doc.get("fit", {}), path)


def clock_fraction(chip_id: str, power_cap_w: float | None) -> float:
    """Clock a chip holds under ``power_cap_w`` [W] while tensor-bound (1.0 without a cap),
    from :func:`trnlab.perf.power.capped_clock_fraction` and data/perf/power.toml."""
    if power_cap_w is None:
        return 1.0
    if not power_cap_w > 0:
        raise ParameterError(bad_value("hardware", "power_cap_w", power_cap_w, "must be > 0 W"))
    from trnlab.perf.power import capped_clock_fraction
    from trnlab.studies.economics import load_economics

    p = load_economics().power
    return float(capped_clock_fraction(catalog.chip(chip_id).tdp, float(power_cap_w),
                                       p["idle_fraction"].si, 1.0, p["clock_exponent"].si))


def hardware(chip_id: str, system_id: str, precision: str = "bf16",
             params: TrainingParams | None = None, network_id: str | None = None,
             power_cap_w: float | None = None) -> Hardware:
    """The :class:`~trnlab.perf.train.Hardware` of ``chip_id`` in ``system_id`` at ``precision``.

    Ring bandwidth per chip and direction = aggregate bidirectional scale-up bandwidth / 2 x the
    topology's ring fraction x the collective efficiency; scale-out = NIC bandwidth x the
    collective efficiency. Under ``power_cap_w`` [W] the compute peaks scale with the clock the
    chip can hold (:func:`clock_fraction`); memory and link bandwidths do not.
    """
    params = params or load_params()
    if precision not in PRECISION_BYTES:
        raise ParameterError(bad_value("training", "precision", precision,
                                       f"allowed: {', '.join(PRECISION_BYTES)}"))
    cat = catalog.default()
    chip, system = cat.chip(chip_id), cat.system(system_id)
    net = cat.network(network_id or system.scaleout)
    coll = params.fields["collective_eff"].si
    eff = params.vendor_eff(chip.vendor) * (
        params.fields["fp8_gemm_factor"].si if precision in NARROW else 1.0)
    clock = clock_fraction(chip_id, power_cap_w)
    return Hardware(
        peak_gemm=chip.peak(precision) * clock, peak_attn=chip.peak("bf16") * clock, gemm_eff=eff,
        gemm_bytes=PRECISION_BYTES[precision], hbm_bw=chip.hbm_bandwidth,
        hbm_capacity=chip.hbm_capacity,
        up_bw=system.scaleup_bandwidth / 2 * params.topology[system.scaleup_topology].si * coll,
        up_latency=system.scaleup_latency, domain=float(system.n_chips),
        out_bw=net.bandwidth * coll, out_latency=net.latency,
        ranks_per_chip=float(chip.ranks_per_chip), clock=clock)
