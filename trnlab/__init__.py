"""trnlab: a workbook for studying AI accelerators (AWS Trainium3 first) for LLM training and inference.

Layers (data flows down): ``data/`` facts -> :mod:`trnlab.catalog` -> :mod:`trnlab.perf` (the
vectorized core) -> :mod:`trnlab.studies` (one module per question, returning xarray Datasets)
-> ``notebooks/`` -> :mod:`trnlab.report`.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
