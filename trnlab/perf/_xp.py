"""Array-namespace helper shared by the core modules."""

from __future__ import annotations

from typing import Any

import array_api_compat

from trnlab import backend


def xp_of(*values: Any) -> Any:
    """The array namespace of the array arguments; the active backend's for plain scalars."""
    arrays = [v for v in values if array_api_compat.is_array_api_obj(v)
              and not isinstance(v, int | float | complex)]
    if not arrays:
        return backend.namespace()
    return array_api_compat.array_namespace(*arrays)
