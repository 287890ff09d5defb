"""Where trnlab's data and notebooks live: a source checkout or an installed wheel."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir() -> Path:
    """``<checkout>/data`` in a source checkout, else the copy shipped in the wheel."""
    checkout = PACKAGE_DIR.parent / "data"
    return checkout if checkout.is_dir() else PACKAGE_DIR / "_data"


def project_dir() -> Path:
    """The checkout root (holds ``notebooks/`` and ``reports/``)."""
    return PACKAGE_DIR.parent
