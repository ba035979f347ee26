"""The package is layered: each layer imports only the layers before it."""

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
