"""Each layer of the package imports only the layers below it (docs/design.md), checked twice:
by reading every module's imports, and by the ruff rule of each folder rejecting an import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "trnlab"
UPPER = ("trnlab.studies", "trnlab.calibration", "trnlab.report", "trnlab.plot", "trnlab.cli")
#: folder -> module prefixes it must never import
FORBIDDEN = {
    "perf": (*UPPER, "trnlab.engine", "trnlab.catalog", "trnlab.workloads", "numpy", "cupy",
             "xarray"),
    "workloads": (*UPPER, "trnlab.engine", "trnlab.perf", "trnlab.catalog", "trnlab._paths",
                  "tomllib"),
    "catalog": (*UPPER, "trnlab.engine", "trnlab.perf"),
    "engine": UPPER,
    "studies": UPPER,
    "calibration": tuple(m for m in UPPER if m != "trnlab.calibration"),
}


def _imports(path: Path) -> list[str]:
    """Absolute module names imported anywhere in ``path`` (``from a import b`` gives a.b too)."""
    names = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def _hits(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_no_module_imports_a_layer_above_it(folder):
    bad = [f"{path.relative_to(PACKAGE.parent)} imports {name}"
           for path in sorted((PACKAGE / folder).glob("*.py"))
           for name in _imports(path) if _hits(name, FORBIDDEN[folder])]
    assert not bad, bad


def test_the_import_reader_sees_a_forbidden_import(tmp_path):
    """The check above can fail: a study importing another study is caught."""
    module = tmp_path / "x.py"
    module.write_text("from trnlab.studies import energy\nimport numpy as np\n")
    assert [n for n in _imports(module) if _hits(n, FORBIDDEN["studies"])] == [
        "trnlab.studies", "trnlab.studies.energy"]


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_ruff_rule_of_each_folder_rejects_an_upper_layer(folder):
    banned = FORBIDDEN[folder][0]
    code = f"from {banned} import something\n"
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--stdin-filename",
                          f"trnlab/{folder}/example.py", "-"], input=code, capture_output=True,
                         text=True, cwd=PACKAGE.parent, check=False)
    assert run.returncode == 1
    assert "TID251" in run.stdout and banned in run.stdout
    ok = subprocess.run([sys.executable, "-m", "ruff", "check", "--stdin-filename",
                         f"trnlab/{folder}/example.py", "-"],
                        input="from trnlab.errors import TrnlabError\n\nTrnlabError()\n",
                        capture_output=True, text=True, cwd=PACKAGE.parent, check=False)
    assert ok.returncode == 0, ok.stdout
