"""The package's layers: data flows downward; no module imports a layer above its own (docs/design.md)."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from .conftest import ROOT

PKG = ROOT / "src" / "qianyi"
#: Bottom to top. Shared helpers (errors, _io, _report, schedules) sit below everything.
LAYERS = ["errors", "_io", "_report", "schedules", "data", "nn", "distances", "shallow", "methods", "select", "train",
          "measure", "proxy", "proxy_table", "bench", "cli", "__main__"]


def _layer(module: str) -> int:
    part = module.split(".")[1] if module.count(".") >= 1 else module
    return LAYERS.index(part)


def _imports(path: Path) -> list[str]:
    rel = path.relative_to(PKG.parent).with_suffix("")
    pkg_parts = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg_parts[:len(pkg_parts) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
                if not node.module:  # "from . import x" / "from .. import x"
                    found += [f"{name}.{a.name}" for a in node.names]
                    continue
            else:
                name = node.module or ""
            found.append(name)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [f for f in found if f.startswith("qianyi.") and f != "qianyi.__version__"]


def _modules() -> list[Path]:
    return [p for p in PKG.rglob("*.py") if p != PKG / "__init__.py"]


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PKG)))
def test_no_module_imports_a_higher_layer(path):
    own = _layer("qianyi." + ".".join(path.relative_to(PKG).with_suffix("").parts))
    for name in _imports(path):
        if name in ("qianyi", "qianyi.__version__") or name.split(".")[1] == "__version__":
            continue
        assert _layer(name) <= own, f"{path.relative_to(PKG)} (layer {LAYERS[own]}) imports {name} from above"


def test_every_subpackage_has_a_layer():
    tops = {p.relative_to(PKG).parts[0].removesuffix(".py") for p in _modules()}
    assert tops <= set(LAYERS), tops - set(LAYERS)


def test_library_code_never_picks_a_matplotlib_backend():
    offenders = [str(p.relative_to(PKG)) for p in PKG.rglob("*.py") if "matplotlib.use(" in p.read_text()
                 or "import matplotlib.pyplot" in p.read_text()]
    assert not offenders
