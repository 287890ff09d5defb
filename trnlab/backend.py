"""Array backend: NumPy (default) or CuPy, plus array-api-strict for tests.

The core (:mod:`trnlab.perf`) never imports NumPy: it takes the array namespace of its inputs
(``array_api_compat.array_namespace``). This module decides which namespace *new* arrays are
created in, e.g. when a study builds a grid.

Choose the backend with, in order of precedence:

- ``set_backend("cupy")`` (also usable as a context manager: ``with set_backend("cupy"): ...``),
- the environment variable ``TRNLAB_BACKEND`` (read on first use),
- the default, ``"numpy"``.

Asking for CuPy on a machine without a CUDA device raises :class:`~trnlab.errors.BackendError`:
``import cupy`` succeeds without a GPU, so the check is ``cupy.is_available()``.
"""

from __future__ import annotations

import importlib
import os
from types import TracebackType
from typing import Any, Self

from trnlab.errors import BackendError

BACKENDS = ("numpy", "cupy", "array_api_strict")
_ENV = "TRNLAB_BACKEND"
_current: str | None = None


def _check(name: str, where: str) -> str:
    if name not in BACKENDS:
        raise BackendError(f"{where} = {name!r}: unknown backend; allowed: {', '.join(BACKENDS)}")
    if name == "cupy":
        try:
            cupy = importlib.import_module("cupy")
        except ImportError as err:
            raise BackendError(
                f"{where} = 'cupy': CuPy is not installed; install trnlab[cuda12] or trnlab[cuda13]"
            ) from err
        if not cupy.is_available():
            raise BackendError(
                f"{where} = 'cupy': no CUDA device (cupy.is_available() is False); use 'numpy'"
            )
    if name == "array_api_strict":
        try:
            importlib.import_module("array_api_strict")
        except ImportError as err:
            raise BackendError(f"{where} = 'array_api_strict': not installed") from err
    return name


def get_backend() -> str:
    """Name of the active backend (``numpy``, ``cupy`` or ``array_api_strict``)."""
    global _current
    if _current is None:
        _current = _check(os.environ.get(_ENV, "numpy").strip().lower() or "numpy", _ENV)
    return _current


class set_backend:
    """Select the array backend; as a context manager, restore the previous one on exit.

    Parameters
    ----------
    name : str
        ``"numpy"``, ``"cupy"`` (needs a CUDA device) or ``"array_api_strict"`` (tests).
    """

    def __init__(self, name: str) -> None:
        global _current
        self.previous = get_backend()
        _current = _check(str(name).strip().lower(), "backend")
        self.name = _current

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        global _current
        _current = self.previous


def namespace(name: str | None = None) -> Any:
    """The array-API namespace of backend ``name`` (default: the active backend)."""
    name = _check(name, "backend") if name else get_backend()
    if name == "array_api_strict":
        return importlib.import_module("array_api_strict")
    return importlib.import_module(f"array_api_compat.{name}")


def asarray(x: Any, dtype: Any = None) -> Any:
    """Convert ``x`` (scalar, list, NumPy array) to an array of the active backend."""
    xp = namespace()
    if dtype is None:
        return xp.asarray(x)
    return xp.asarray(x, dtype=getattr(xp, dtype) if isinstance(dtype, str) else dtype)


def to_numpy(x: Any) -> Any:
    """Return ``x`` as a NumPy array (copying from the GPU for CuPy); scalars pass through."""
    import numpy as np

    if isinstance(x, int | float | bool | np.generic | np.ndarray):
        return x
    if type(x).__module__.split(".")[0] == "cupy":
        return x.get()
    return np.asarray(x)
