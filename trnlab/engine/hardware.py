"""The hardware adapter: catalog records and parameter files -> the core's inputs.

One record, :class:`~trnlab.perf.train.Hardware`, describes a chip in its system for the
training and the serving model alike; :func:`hardware` builds it. The calibrations of the two
models come from ``data/perf/training.toml`` and ``serving.toml``, the sizes of the number
formats from ``data/perf/formats.toml``.
"""

from __future__ import annotations

import math
from typing import Any

from trnlab import catalog
from trnlab.catalog.params import (
    ATTN_FP8_WINDOW_SPAN,
    ATTN_KERNEL_RATE,
    ATTN_LANES,
    ATTN_WINDOW_KEYS,
    CHIP_EFFICIENCY,
    GEMM_FP8,
    MOE_CALIBRATION,
    SERVE_CALIBRATION,
    TRAIN_CALIBRATION,
    ServingParams,
    Stack,
    TrainingParams,
    load_chip_efficiency,
    load_economics,
    load_formats,
    load_moe,
    load_moe_stacks,
    load_serving,
    load_training,
)
from trnlab.errors import ParameterError, bad_value
from trnlab.perf.moe import MoECalibration
from trnlab.perf.power import capped_clock_fraction
from trnlab.perf.serve import ServeCalibration
from trnlab.perf.train import Calibration, Hardware


def precision_bytes() -> dict[str, float]:
    """Bytes per element of each precision or storage format [B], in the order of
    ``data/perf/formats.toml`` (also importable as ``PRECISION_BYTES``)."""
    return {name: f.si for name, f in load_formats().bytes.items()}


def narrow_formats() -> frozenset[str]:
    """The formats of 8 bits or less (``data/perf/formats.toml``; also importable as
    ``NARROW``): their GEMMs take ``fp8_gemm_factor`` of training.toml."""
    return load_formats().narrow


def __getattr__(name: str) -> Any:
    """``PRECISION_BYTES`` (format -> bytes per element [B]) and ``NARROW`` (the narrow
    formats), read from ``data/perf/formats.toml`` when first used, not at import."""
    if name == "PRECISION_BYTES":
        return precision_bytes()
    if name == "NARROW":
        return narrow_formats()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def train_calibration(params: TrainingParams | None = None) -> Calibration:
    """The step model's :class:`~trnlab.perf.train.Calibration` from training.toml."""
    params = params or load_training()
    return Calibration(**{k: params.fields[k].si for k in TRAIN_CALIBRATION},
                       moe=moe_calibration())


def moe_calibration(family: str = "", **values: float) -> MoECalibration:
    """The MoE terms' :class:`~trnlab.perf.moe.MoECalibration` from data/perf/moe.toml: its
    ``[param]`` defaults, the ``[stack.<family>]`` values of a framework family, then
    ``values`` [SI] (a case's own stack)."""
    unknown = sorted(set(values) - set(MOE_CALIBRATION))
    if unknown:
        raise ParameterError(bad_value("moe_calibration", unknown[0], values[unknown[0]],
                                       f"allowed: {', '.join(MOE_CALIBRATION)}"))
    fields = {**load_moe(), **load_moe_stacks().get(family, {})}
    return MoECalibration(**{k: values.get(k, fields[k].si) for k in MOE_CALIBRATION})


def serve_calibration(params: ServingParams | None = None) -> ServeCalibration:
    """The serving model's :class:`~trnlab.perf.serve.ServeCalibration` from serving.toml."""
    params = params or load_serving()
    return ServeCalibration(**{k: params.fields[k].si for k in SERVE_CALIBRATION})


def half_dim(params: TrainingParams | None = None) -> float:
    """The GEMM half-efficiency size shared by training and serving [elements]."""
    return (params or load_training()).fields["gemm_half_dim"].si


def system_of(chip_id: str) -> str:
    """The scale-up system of ``chip_id``: the largest domain built of it in the catalog; among
    equals the first listed (the vendor's reference system: DGX before HGX). The one rule of
    trnlab for a chip given without a system."""
    systems = [s for s in catalog.default().systems.values() if s.chip == chip_id]
    if not systems:
        catalog.chip(chip_id)  # an unknown chip: the catalog's error names the allowed ids
        raise ParameterError(bad_value("hardware", "chip", chip_id,
                                       "no system of data/hardware/systems.toml uses it"))
    return max(systems, key=lambda s: s.n_chips).id


def gemm_kernel_rate(chip_id: str, precision: str = "bf16") -> tuple[Any, str]:
    """The chip's large-GEMM microbenchmark fraction of its peak at ``precision`` [1] and the
    rate's name (``data/perf/chip_efficiency.toml``): ``gemm`` for BF16; for a format of 8 bits
    or less ``gemm_fp8``, or, where the chip has no FP8 measurement, its ``gemm`` x the
    FP8/BF16 ratio of its vendor's reference chip (1 where the reference has none either). The
    field returned is the one whose status and range apply."""
    ce = load_chip_efficiency()
    rates = ce.chips[chip_id]
    if precision not in narrow_formats() or GEMM_FP8 in rates:
        name = GEMM_FP8 if precision in narrow_formats() else "gemm"
        return rates[name].si, name
    ref = ce.chips.get(ce.reference.get(catalog.chip(chip_id).vendor, ""), {})
    ratio = ref[GEMM_FP8].si / ref["gemm"].si if GEMM_FP8 in ref else 1.0
    return rates["gemm"].si * ratio, "gemm"


def chip_gemm_eff(chip_id: str, params: TrainingParams | None = None,
                  precision: str = "bf16") -> float:
    """Large-GEMM efficiency of a chip in training at ``precision`` [1]: the fitted
    ``gemm_eff`` of its vendor (measured on the vendor's reference chip) x the chip's GEMM
    microbenchmark fraction / the reference's at that precision (:func:`gemm_kernel_rate`), and
    for a format of 8 bits or less x ``fp8_gemm_factor`` (training.toml: the framework's FP8
    share on the reference). A vendor without a fitted value borrows the one of its
    ``[proxy]`` vendor (same frameworks), scaled by the same ratio."""
    params = params or load_training()
    ce = load_chip_efficiency()
    vendor = catalog.chip(chip_id).vendor
    if vendor not in params.gemm_eff and vendor in ce.proxy:
        vendor = ce.proxy[vendor]
    ref = ce.reference.get(vendor)
    ratio = gemm_kernel_rate(chip_id, precision)[0] / gemm_kernel_rate(ref, precision)[0] \
        if ref else 1.0
    fp8 = params.fields["fp8_gemm_factor"].si if precision in narrow_formats() else 1.0
    return params.vendor_eff(vendor) * ratio * fp8


def chip_inputs_band(chip_id: str, precision: str = "bf16"
                     ) -> dict[str, tuple[float, float, float]]:
    """The per-chip inputs of ``chip_id`` at ``precision`` that are projected: name -> (value,
    low, high) (``data/perf/chip_efficiency.toml``; ``gemm`` is the GEMM rate of that
    precision, :func:`gemm_kernel_rate`); empty when all are measured."""
    rates = dict(load_chip_efficiency().chips[chip_id])
    rates["gemm"] = rates[gemm_kernel_rate(chip_id, precision)[1]]
    return {k: (f.si, f.range[0], f.range[1]) for k, f in rates.items()
            if k in CHIP_EFFICIENCY and f.status == "projected" and f.range}


def with_stack(params: TrainingParams, stack: Stack) -> TrainingParams:
    """``params`` with a framework family's software stack applied (``data/perf/stacks.toml``):
    no TP overlap sets ``layer_comm_overlap`` to 0 (one of the forward passes only
    ``tp_overlap_backward`` to 0), a per-micro-batch FSDP reshard sets
    ``zero3_regather_per_microbatch`` to 1, materialised attention ``fused_attention`` to 0, a
    stack's attention kernel tile ``attention_block``."""
    values = {}
    if not stack.tp_overlap:
        values["layer_comm_overlap"] = 0.0
    elif stack.tp_overlap_passes == "forward":
        values["tp_overlap_backward"] = 0.0
    if stack.fsdp_reshard == "microbatch":
        values["zero3_regather_per_microbatch"] = 1.0
    if stack.attention == "materialised":
        values["fused_attention"] = 0.0
    if stack.attention_block:
        values["attention_block"] = float(stack.attention_block)
    return params.replace(**values) if values else params


def clock_fraction(chip_id: str, power_cap_w: float | None) -> float:
    """Clock a chip holds under ``power_cap_w`` [W] while tensor-bound (1.0 without a cap),
    from :func:`trnlab.perf.power.capped_clock_fraction` and the measured H100 law of
    data/perf/power.toml: a load draws ``s + (d - s) (f/f0)^e`` of TDP (static fraction ``s``
    = cap_static_fraction, uncapped draw ``d`` = uncapped_draw), so a cap above ``d`` x TDP
    does not bind. H100 at 500 W: ((500/700 - 0.27) / (0.92 - 0.27))^(1/3) = 0.88."""
    if power_cap_w is None:
        return 1.0
    if not power_cap_w > 0:
        raise ParameterError(bad_value("hardware", "power_cap_w", power_cap_w, "must be > 0 W"))
    p = load_economics().power
    static, draw = p["cap_static_fraction"].si, p["uncapped_draw"].si
    return float(capped_clock_fraction(catalog.chip(chip_id).tdp, float(power_cap_w), static,
                                       (draw - static) / (1.0 - static),
                                       p["clock_exponent"].si))


def attention_kernel_rate(chip_id: str, kernel: str) -> float | None:
    """The rate of the named fused attention ``kernel`` (a stack's ``attention_kernel``) over
    the chip's attention rates, where chip_efficiency.toml measures it (``attn_rate_fa3``:
    FlashAttention-3 on Hopper); None for no kernel or a chip without the measurement."""
    rate = load_chip_efficiency().chips[chip_id].get(ATTN_KERNEL_RATE.format(kernel)) \
        if kernel else None
    return None if rate is None else rate.si


def attention_precisions(chip_id: str) -> tuple[str, ...]:
    """The precisions the attention core of ``chip_id`` can run in: BF16, and FP8 on a chip
    with an FP8 rate in the catalog (:func:`hardware` ``attention_precision``)."""
    return ("bf16", "fp8") if "fp8" in catalog.chip(chip_id).peak_flops else ("bf16",)


def format_bytes(fmt: str, field: str = "format") -> float:
    """Bytes per element of a precision or storage format [B] (``int8-weights`` is int8)."""
    fmt = {"int8-weights": "int8"}.get(fmt, fmt)
    sizes = precision_bytes()
    if fmt not in sizes:
        raise ParameterError(bad_value("hardware", field, fmt, f"allowed: {', '.join(sizes)}"))
    return sizes[fmt]


def fp4_training_peak(peak_fp4: float, peak_bf16: float, narrow_factor: float,
                      bf16_fraction: float) -> float:
    """The GEMM peak of training under a 4-bit recipe [FLOP/s], in units of the FP4 peak's
    efficiency: a fraction ``bf16_fraction`` of the linear layers' GEMM work stays in BF16 and
    the rest runs at the FP4 peak, so the time per FLOP is the weighted sum
    ``1/P = (1 - f) / P_fp4 + f x k / P_bf16``, where ``k`` (the narrow-format GEMM factor)
    puts the BF16 share on the same efficiency footing as the FP4 share
    (NVIDIA 2025, "Pretraining Large Language Models with NVFP4", arXiv:2509.25149, sec. 4:
    about 16% of the linear layers in BF16)."""
    return 1.0 / ((1.0 - bf16_fraction) / peak_fp4 + bf16_fraction * narrow_factor / peak_bf16)


def hardware(chip_id: str, system_id: str, precision: str = "bf16",
             params: TrainingParams | None = None, network_id: str | None = None,
             power_cap_w: float | None = None, serving: ServingParams | None = None,
             training: bool = False, attention_precision: str = "bf16",
             attention_kernel: str = "") -> Hardware:
    """The :class:`~trnlab.perf.train.Hardware` of ``chip_id`` in ``system_id`` at ``precision``
    (the GEMM precision of training, the activation format of serving).

    Ring bandwidth per chip and direction = aggregate bidirectional scale-up bandwidth / 2 x the
    topology's ring fraction x the collective efficiency; scale-out = NIC bandwidth x the
    collective efficiency; the host link and memory (offloaded activations) = the chip's
    ``host_bandwidth`` per direction and ``host_memory``, the host's DRAM (an optimizer step
    on the host CPU) = ``host_memory_bandwidth``, 0 for a chip without them. Under
    ``power_cap_w`` [W] the compute peaks scale with the clock the chip can hold
    (:func:`clock_fraction`); memory and link bandwidths do not.
    ``step_overhead`` is the runtime cost per serving step of the chip vendor's serving stack.
    With ``training`` a 4-bit precision (fp4, mxfp4, nvfp4) means the 4-bit training recipe,
    which keeps ``fp4_recipe_bf16_fraction`` (training.toml) of the GEMM work in BF16
    (:func:`fp4_training_peak`); serving quantizes every linear layer.
    ``attention_precision`` "fp8" runs the attention core's two matmuls in FP8 (Transformer
    Engine's fp8_dot_product_attention): at the chip's FP8 peak x ``fp8_attention_factor``
    (training.toml; FlashAttention-3 reaches 0.81 of its BF16 peak fraction in FP8) and the
    chip's attention fractions, i.e. 2 x 0.81 = 1.62x the BF16 attention rate on a chip whose
    FP8 peak is twice its BF16 peak. On a chip whose FP8 kernel computes a sliding-window
    layer's backward over more keys than the window (chip_efficiency.toml
    ``attn_fp8_window_span``: cuDNN 9.22 on Blackwell, the whole ``s x s`` matrix), the FP8
    backward of a windowed query costs that share of the sequence in keys.
    ``attention_kernel`` (a stack's named kernel) scales both attention rates by
    :func:`attention_kernel_rate` where the chip has that measurement.
    """
    params = params or load_training()
    gemm_bytes = format_bytes(precision, "precision")
    cat = catalog.default()
    chip, system = cat.chip(chip_id), cat.system(system_id)
    net = cat.network(network_id or system.scaleout)
    coll = params.fields["collective_eff"].si
    rates = load_chip_efficiency().chips[chip_id]
    eff = chip_gemm_eff(chip_id, params, precision)
    clock = clock_fraction(chip_id, power_cap_w)
    peak_gemm = chip.peak(precision)
    if training and gemm_bytes < 1:  # a 4-bit format: the 4-bit training recipe
        peak_gemm = fp4_training_peak(peak_gemm, chip.peak("bf16"),
                                      params.fields["fp8_gemm_factor"].si,
                                      params.fields["fp4_recipe_bf16_fraction"].si)
    allowed = attention_precisions(chip_id)
    if attention_precision not in allowed:
        raise ParameterError(bad_value("hardware", "attention_precision", attention_precision,
                                       f"allowed on {chip_id}: {', '.join(allowed)}"))
    kernel = attention_kernel_rate(chip_id, attention_kernel) or 1.0
    peak_attn = chip.peak("bf16") if attention_precision == "bf16" else \
        chip.peak("fp8") * params.fields["fp8_attention_factor"].si
    return Hardware(
        peak_gemm=peak_gemm * clock, peak_attn=peak_attn * clock, gemm_eff=eff,
        gemm_bytes=gemm_bytes, attn_fwd_eff=rates["attn_fwd"].si * kernel,
        attn_bwd_eff=rates["attn_bwd"].si * kernel,
        attn_lanes=rates[ATTN_LANES].si if ATTN_LANES in rates else 1.0,
        attn_window_keys=rates[ATTN_WINDOW_KEYS].si if ATTN_WINDOW_KEYS in rates else 0.0,
        attn_window_bwd_span=rates[ATTN_FP8_WINDOW_SPAN].si
        if attention_precision == "fp8" and ATTN_FP8_WINDOW_SPAN in rates else 0.0,
        hbm_bw=chip.hbm_bandwidth, hbm_capacity=chip.hbm_capacity,
        up_bw=system.scaleup_bandwidth / 2 * params.topology[system.scaleup_topology].si * coll,
        up_latency=system.scaleup_latency, domain=float(system.n_chips),
        out_bw=net.bandwidth * coll, out_latency=net.latency,
        ranks_per_chip=float(chip.ranks_per_chip), clock=clock,
        step_overhead=(serving or load_serving()).vendor_step_overhead(chip.vendor),
        host_bw=chip.host_bandwidth if math.isfinite(chip.host_bandwidth) else 0.0,
        host_capacity=chip.host_memory if math.isfinite(chip.host_memory) else 0.0,
        host_mem_bw=chip.host_memory_bandwidth
        if math.isfinite(chip.host_memory_bandwidth) else 0.0)
