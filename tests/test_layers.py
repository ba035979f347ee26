"""The package is layered (each layer imports only the layers before it), and tests/ mirrors
it file for file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: the layers in order, as docs/CONTRACTS.md lists them
ORDER = ("data", "graph", "sequences", "ops", "nn", "train", "bench", "cli")
PACKAGES = {p.parent.name for p in (ROOT / "brlgraph").glob("*/__init__.py")}
LAYERS = tuple(name for name in ORDER if name in PACKAGES)


def test_every_package_is_a_layer():
    assert PACKAGES <= set(ORDER), f"packages outside the layer order: {sorted(PACKAGES - set(ORDER))}"


@pytest.mark.parametrize("layer", LAYERS[:-1])
def test_a_layer_imports_nothing_after_it(layer):
    later = tuple(f"brlgraph.{name}" for name in LAYERS[LAYERS.index(layer) + 1:])
    code = (f"import sys, brlgraph.{layer}; "
            f"bad = sorted(m for m in sys.modules if m.startswith({later!r})); "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def _mirrored_test(module: Path) -> Path:
    """brlgraph/a/b.py -> tests/a/test_b.py; brlgraph/x.py -> tests/test_x.py."""
    relative = module.relative_to(ROOT / "brlgraph")
    return ROOT / "tests" / relative.parent / f"test_{relative.name}"


def test_every_module_has_its_mirrored_test_file():
    modules = [p for p in sorted((ROOT / "brlgraph").rglob("*.py"))
               if p.name not in ("__init__.py", "__main__.py")]
    assert len(modules) > 40
    missing = [str(_mirrored_test(p).relative_to(ROOT)) for p in modules if not _mirrored_test(p).is_file()]
    assert not missing, f"modules without their test file: {missing}"


def test_every_test_file_has_its_module():
    """The converse: tests/a/test_b.py tests brlgraph/a/b.py, or the package brlgraph/a/b/
    itself (what its __init__.py defines); this file is the one test of the whole package."""
    stray = []
    for test in sorted((ROOT / "tests").rglob("test_*.py")):
        relative = test.relative_to(ROOT / "tests")
        if relative == Path("test_layers.py"):
            continue
        module = ROOT / "brlgraph" / relative.parent / relative.name.removeprefix("test_")
        if not (module.is_file() or (module.with_suffix("") / "__init__.py").is_file()):
            stray.append(str(test.relative_to(ROOT)))
    assert not stray, f"test files without a module: {stray}"
