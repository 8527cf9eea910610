"""Imports go one way: `api`, `steps` and `phoenix` use `creations`; `localcloud` uses nothing of
production; production never imports the local runtime; `devstack` is the only place that joins
them. Read from the source (every import statement, at any depth), so a lazy import counts too."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("creations", "api", "steps", "phoenix", "localcloud", "devstack", "tools")

# package -> the project packages it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "creations": set(),
    "api": {"creations"},
    "steps": {"creations"},
    "phoenix": {"creations"},
    "localcloud": set(),
    "devstack": {"creations", "steps", "api", "localcloud", "phoenix"},
    "tools": set(PACKAGES),
}


def imported_packages(path: Path) -> set[str]:
    """The project packages a module imports (absolute imports; relative ones stay inside)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(name.split(".")[0] for name in names if name.split(".")[0] in PACKAGES)
    return found


def modules() -> list[tuple[str, Path]]:
    return [(pkg, path) for pkg in PACKAGES if (ROOT / pkg).is_dir()
            for path in sorted((ROOT / pkg).rglob("*.py"))]


@pytest.mark.parametrize(
    "package, path", modules(), ids=lambda v: str(v.relative_to(ROOT)) if isinstance(v, Path) else v
)
def test_each_module_imports_only_what_its_package_may_use(package, path):
    wrong = imported_packages(path) - ALLOWED[package] - {package}
    assert not wrong, (
        f"{path.relative_to(ROOT)} imports {sorted(wrong)}; {package} may use only {sorted(ALLOWED[package])}"
    )


def test_the_checker_sees_a_lazy_import_against_the_direction(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from localcloud.workflows import Engine\n    import steps.job\n")
    assert imported_packages(module) == {"localcloud", "steps"}
