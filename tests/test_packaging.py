"""What the daemon imports when it starts must be declared, or a device install crashes."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata

from tests.data import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        _normalise(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]
    }


def _module_level_imports() -> dict[str, str]:
    """Top-level package -> a file importing it at module level (not inside functions)."""
    found: dict[str, str] = {}
    for path in sorted((ROOT / "firmware" / "intentcam").rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                found.setdefault(name.split(".")[0], str(path.relative_to(ROOT)))
    return found


def test_every_module_level_import_is_a_declared_dependency() -> None:
    declared = _declared()
    distributions = metadata.packages_distributions()
    missing = []
    for package, where in _module_level_imports().items():
        if package in sys.stdlib_module_names or package in ("intentcam", "__future__"):
            continue
        providers = {_normalise(d) for d in distributions.get(package, [package])}
        if not providers & declared:
            missing.append(f"{package} ({where})")
    assert not missing, f"imported at module level but not in [project] dependencies: {missing}"
