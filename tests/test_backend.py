from __future__ import annotations

import subprocess
import sys
import types

import numpy as np
import pytest

from trnlab import backend
from trnlab.errors import BackendError
from trnlab.perf import power


def test_default_is_numpy_and_context_manager_restores():
    assert backend.get_backend() == "numpy"
    with backend.set_backend("array_api_strict") as sel:
        assert sel.name == "array_api_strict"
        assert type(backend.asarray([1.0])).__module__.startswith("array_api_strict")
    assert backend.get_backend() == "numpy"


def test_environment_variable_selects_backend(monkeypatch):
    monkeypatch.setattr(backend, "_current", None)
    monkeypatch.setenv("TRNLAB_BACKEND", "array_api_strict")
    assert backend.get_backend() == "array_api_strict"
    monkeypatch.setattr(backend, "_current", None)
    monkeypatch.setenv("TRNLAB_BACKEND", "tensorflow")
    with pytest.raises(BackendError, match="TRNLAB_BACKEND = 'tensorflow'.*allowed: numpy"):
        backend.get_backend()


def test_unknown_backend_is_refused_in_one_line():
    with pytest.raises(BackendError) as err:
        backend.set_backend("jax")
    assert "\n" not in str(err.value) and "numpy, cupy" in str(err.value)


def test_cupy_without_device_is_a_clear_error(monkeypatch):
    fake = types.ModuleType("cupy")
    fake.is_available = lambda: False  # what cupy says on a machine without a GPU
    monkeypatch.setitem(sys.modules, "cupy", fake)
    with pytest.raises(BackendError, match=r"no CUDA device \(cupy.is_available\(\) is False\)"):
        backend.set_backend("cupy")
    assert backend.get_backend() == "numpy"


def test_to_numpy_round_trip(xp_name):
    x = backend.asarray([1.5, 2.5])
    out = backend.to_numpy(x)
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, [1.5, 2.5])


def test_core_uses_the_namespace_of_its_inputs(xp_name):
    n = backend.asarray([1.0, 144.0, 1e6])
    it = power.it_power(n, 1000.0, 0.5)
    assert type(it) is type(n)  # no silent conversion to NumPy
    got = backend.to_numpy(power.facility_power(it, 1.2))
    np.testing.assert_allclose(got, np.array([1.0, 144.0, 1e6]) * 1000 * 1.5 * 1.2, rtol=1e-6)
    np.testing.assert_array_equal(backend.to_numpy(power.units_needed(n, 144.0)), [1, 1, 6945])


def test_backends_agree(xp_name):
    rng = np.random.default_rng(0)
    a, b, c = rng.uniform(1, 2, (3, 1000))
    ref = power.facility_power(power.it_power(a, b, c), a)
    got = power.facility_power(power.it_power(*(backend.asarray(v) for v in (a, b, c))),
                               backend.asarray(a))
    np.testing.assert_allclose(backend.to_numpy(got), ref, rtol=1e-6)


def test_lint_bans_numpy_in_the_core():
    """The ruff rule for trnlab/perf must reject a numpy call on arrays."""
    code = "import numpy as np\n\n\ndef f(x):\n    return np.sum(x)\n"
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--stdin-filename",
                          "trnlab/perf/example.py", "-"], input=code, capture_output=True,
                         text=True, check=False)
    assert run.returncode == 1 and "TID251" in run.stdout
    ok = subprocess.run([sys.executable, "-m", "ruff", "check", "--stdin-filename",
                         "trnlab/studies/example.py", "-"], input=code, capture_output=True,
                        text=True, check=False)
    assert ok.returncode == 0, ok.stdout
