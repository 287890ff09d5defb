"""Batch reports: papermill runs notebooks into ``reports/<run>/`` (ipynb, html, .nc, index)."""

from __future__ import annotations

from trnlab.report.runner import (
    NotebookRun,
    ReportInterrupted,
    ReportRun,
    available,
    run,
    select,
)

__all__ = ["NotebookRun", "ReportInterrupted", "ReportRun", "available", "run", "select"]
