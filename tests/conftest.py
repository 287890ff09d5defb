"""Shared fixtures: the array-backend fixture (numpy, array_api_strict, cupy if a GPU is present)."""

from __future__ import annotations

import importlib
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("MPLBACKEND", "agg")

from trnlab import backend
from trnlab._paths import data_dir


def _cupy_available() -> bool:
    try:
        return bool(importlib.import_module("cupy").is_available())
    except Exception:  # noqa: BLE001 - any import or driver failure means "no GPU"
        return False


BACKENDS = [
    "numpy",
    "array_api_strict",
    pytest.param("cupy", marks=[pytest.mark.gpu,
                                pytest.mark.skipif(not _cupy_available(),
                                                   reason="no CUDA device")]),
]


@pytest.fixture(params=BACKENDS)
def xp_name(request: pytest.FixtureRequest) -> str:
    """Each backend in turn, active for the test; the previous backend is restored after."""
    with backend.set_backend(request.param):
        yield request.param


@pytest.fixture
def hardware_copy(tmp_path: Path) -> Path:
    """A writable copy of data/hardware, for tests that break it on purpose."""
    dest = tmp_path / "hardware"
    shutil.copytree(data_dir() / "hardware", dest)
    return dest
