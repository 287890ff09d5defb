"""Typed catalog records. Numeric attributes are SI; ``fields`` keeps units and provenance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from trnlab.catalog.fields import Field
from trnlab.checks import choice
from trnlab.errors import CatalogError

#: precisions with a ``peak_<precision>`` field, widest first
PRECISIONS = ("fp32", "tf32", "bf16", "fp16", "fp8", "mxfp8", "int8", "fp4", "mxfp4", "nvfp4")

#: when a chip has no native peak for a precision, it runs it in the next format of this chain
PRECISION_FALLBACK = {
    "nvfp4": "fp4", "mxfp4": "fp4", "fp4": "mxfp8", "mxfp8": "fp8", "fp8": "bf16",
    "int8": "fp8", "fp16": "bf16", "tf32": "fp32", "fp32": None, "bf16": None,
}


@dataclass(frozen=True)
class Record:
    """Common part of every catalog entry."""

    id: str
    name: str
    fields: dict[str, Field]
    file: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: plain attributes and fields in data-file units."""
        plain = {k: v for k, v in self.__dict__.items() if k not in ("fields", "file")}
        plain = {k: (v if not isinstance(v, float) or math.isfinite(v) else None)
                 for k, v in plain.items() if not isinstance(v, dict)}
        return {**plain, "fields": {k: f.to_dict() for k, f in self.fields.items()},
                "file": self.file}


@dataclass(frozen=True)
class Chip(Record):
    """An accelerator chip. Peaks are dense [FLOP/s]; memory [B]; bandwidths [B/s]; power [W]."""

    vendor: str
    year: int
    process: str
    peak_flops: dict[str, float]
    hbm_capacity: float
    hbm_bandwidth: float
    scaleup_bandwidth: float
    scaleout_bandwidth: float
    sram: float
    tdp: float
    tdp_range: tuple[float, float]
    ranks_per_chip: int  # framework ranks per chip (NeuronCores per logical core group), else 1
    host_bandwidth: float = math.nan  # link to the host's memory, per direction
    host_memory: float = math.nan  # the host's memory per chip (offloaded activations)
    host_memory_bandwidth: float = math.nan  # the host's DRAM peak per chip (host optimizer)

    def peak(self, precision: str) -> float:
        """Dense peak [FLOP/s] for ``precision``, falling back along :data:`PRECISION_FALLBACK`.

        Trainium3's MXFP4 is listed at its MXFP8 rate, so ``peak("fp4")`` is 2.517e15.
        An unknown precision raises CatalogError naming the allowed ones (:data:`PRECISIONS`).
        """
        p: str | None = choice(f"chip {self.id}", "precision", precision, PRECISIONS,
                               CatalogError)
        while p is not None:
            if p in self.peak_flops:
                return self.peak_flops[p]
            p = PRECISION_FALLBACK[p]
        return self.peak_flops["bf16"]


@dataclass(frozen=True)
class System(Record):
    """A scale-up domain of ``n_chips`` chips. Bandwidth per chip [B/s]; latency [s]; power [W]."""

    chip: str
    n_chips: int
    chips_per_node: int
    scaleup_topology: str
    scaleup_bandwidth: float
    scaleup_latency: float
    scaleout: str
    power: float
    members: tuple[tuple[str, int], ...] = ()  # (chip id, count) of a mixed domain, else ()
    fabric: str = ""  # fabric id (fabrics.toml) of the scale-up network, if named

    @property
    def chip_counts(self) -> dict[str, int]:
        """Chips per chip type: ``members`` of a mixed domain, else ``{chip: n_chips}``."""
        return dict(self.members) if self.members else {self.chip: self.n_chips}

    @property
    def mixed(self) -> bool:
        """Whether the domain holds more than one chip type."""
        return len(self.chip_counts) > 1


@dataclass(frozen=True)
class Fabric(Record):
    """A scale-up fabric that may join chips of several vendors: aggregate bidirectional
    bandwidth per chip [B/s], latency per step [s], domain size [chips], and which operations
    cross between vendors (1 yes, 0 no) with the achieved fraction of the link [1]."""

    kind: str
    bandwidth: float
    latency: float
    domain: int
    cross_vendor_rdma: float
    cross_vendor_loadstore: float
    cross_vendor_reduction: float
    cross_vendor_efficiency: float


@dataclass(frozen=True)
class Network(Record):
    """A scale-out fabric: bandwidth per chip, one direction [B/s]; small-message latency [s]."""

    kind: str
    bandwidth: float
    latency: float


@dataclass(frozen=True)
class Price(Record):
    """A dated price of an instance: per instance and per chip [USD/s]."""

    system: str
    instance: str
    instance_chips: int
    kind: str
    region: str
    date: str
    usd_per_hour: float
    usd_per_chip_hour: float


@dataclass(frozen=True)
class Facility(Record):
    """Data-centre factors: system overhead [fraction of chip power] and PUE [1]."""

    system_overhead: float
    pue: float
