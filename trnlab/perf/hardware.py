"""The hardware record of the core: one chip in its scale-up system and scale-out network."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hardware:
    """The chip and its networks as the training and serving models see them (floats or
    arrays).

    ``up_bw`` and ``out_bw`` are per chip, per direction, achieved (topology and collective
    efficiency applied). ``domain`` is the scale-up domain size [chips].
    """

    peak_gemm: Any  # dense peak at the GEMM precision [FLOP/s]
    peak_attn: Any  # dense BF16 peak, for the attention core [FLOP/s]
    gemm_eff: Any  # large-GEMM efficiency at that precision [1]
    gemm_bytes: Any  # GEMM operand size [B]
    attn_fwd_eff: Any  # FlashAttention-class forward rate / BF16 peak [1]
    attn_bwd_eff: Any  # ... of the backward, on its attention_backward_factor x work [1]
    hbm_bw: Any  # [B/s]
    hbm_capacity: Any  # [B]
    up_bw: Any  # [B/s]
    up_latency: Any  # [s]
    domain: Any  # [chips]
    out_bw: Any  # [B/s]
    out_latency: Any  # [s]
    ranks_per_chip: Any = 1.0  # ranks per chip (Neuron cores); TP splits GEMMs over them too
    clock: Any = 1.0  # clock held / nominal (power cap); peaks above are already scaled [1]
    step_overhead: Any = 0.0  # serving runtime cost per decode/prefill step [s]
    host_bw: Any = 0.0  # link to the host's memory per chip and direction [B/s]; 0: none
    host_capacity: Any = 0.0  # the host's memory per chip [B]; 0: none
    host_mem_bw: Any = 0.0  # the host's DRAM peak bandwidth per chip [B/s]; 0: not known
    attn_lanes: Any = 1.0  # the attention kernel pads each head dimension to a multiple [1]
    attn_window_keys: Any = 0.0  # fewest keys a sliding-window query costs the kernel [tokens]
    attn_window_bwd_span: Any = 0.0  # fewest keys a windowed query's backward costs, share of s [1]

    @property
    def can_offload_optimizer(self) -> bool:
        """Whether the host's DRAM and link are known, so the optimizer can run on the host."""
        return bool(self.host_mem_bw) and bool(self.host_bw)
