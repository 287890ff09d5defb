"""The vectorized core: pure array functions that use the array namespace of their inputs.

Rules (enforced by ``trnlab/perf/ruff.toml`` and tests): no NumPy import, no Python loop over
configurations, no xarray, catalog or file system. Units are SI.
"""
