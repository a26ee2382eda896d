"""The recovery engine stands on the floors below it only (ARCHITECTURE.md): it never imports the
simulator, the power analysis, its sibling engines, the report or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

RECOVERY = Path(__file__).resolve().parents[2] / "src" / "edueffects" / "recovery"
ALLOWED = ("edueffects.core", "edueffects.io", "edueffects.options", "edueffects.recovery")


def imported_modules(path: Path) -> list[str]:
    """Every module an ``import`` or ``from ... import`` names, at any depth (lazy imports included)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            assert node.level == 0, f"{path.name}: relative import"
            found.append(node.module)
            if node.module == "edueffects":  # from edueffects import simulate
                found += [f"edueffects.{alias.name}" for alias in node.names]
    return found


@pytest.mark.parametrize("path", sorted(RECOVERY.glob("*.py")), ids=lambda p: p.name)
def test_recovery_imports_only_lower_floors(path: Path) -> None:
    ours = [m for m in imported_modules(path) if m == "edueffects" or m.startswith("edueffects.")]
    bad = [m for m in ours if not m.startswith(ALLOWED)]
    assert not bad, f"{path.name} imports {bad}"


def test_the_scan_sees_lazy_imports(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    from edueffects.simulate import recovery\n    import edueffects.power\n")
    assert imported_modules(sample) == ["edueffects.simulate", "edueffects.power"]
