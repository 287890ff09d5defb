"""Transformer workloads: architectures, parameter counts, FLOPs and bytes per token.

Pure arithmetic, no I/O: presets are read from ``data/models/*.toml`` by :mod:`trnlab.catalog`
(``catalog.model(id)``); formulas are array functions (array-api-compat) of the sequence length.

>>> from trnlab import catalog
>>> spec = catalog.model("llama3-70b")
>>> round(spec.total_params / 1e9, 1)
70.6
"""

from __future__ import annotations

from trnlab.workloads import conventions
from trnlab.workloads.flops import (
    RECOMPUTE,
    attention_flops_per_token,
    decode_flops_per_token,
    forward_flops_per_token,
    hardware_flops_per_token,
    model_flops_per_token,
)
from trnlab.workloads.gemms import Gemm, gemms, layer_gemms
from trnlab.workloads.spec import ParamCounts, TransformerSpec
from trnlab.workloads.traffic import (
    ElementwiseOp,
    activation_bytes_per_token_per_layer,
    memory_bound_ops,
    weight_bytes_per_layer,
)

__all__ = [
    "RECOMPUTE",
    "ElementwiseOp",
    "Gemm",
    "ParamCounts",
    "TransformerSpec",
    "activation_bytes_per_token_per_layer",
    "attention_flops_per_token",
    "conventions",
    "decode_flops_per_token",
    "forward_flops_per_token",
    "gemms",
    "hardware_flops_per_token",
    "layer_gemms",
    "memory_bound_ops",
    "model_flops_per_token",
    "weight_bytes_per_layer",
]
