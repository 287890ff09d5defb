"""Studies: one module per question; each builds its inputs, calls :mod:`trnlab.perf` and
returns an xarray Dataset with named dims, units and provenance."""
