"""The package layout reads as the data flows: the model never imports the layers that drive it."""

import ast
from pathlib import Path

import loger3d

PACKAGE = Path(loger3d.__file__).parent
DRIVERS = ("inference", "sources", "sinks", "run", "eval", "train", "cli", "viewer", "demo")


def _imported_packages(path: Path) -> set[str]:
    """The first-level loger3d packages a module imports (relative imports resolved)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level >= 2 and node.module:  # from ..x import y
                found.add(node.module.split(".")[0])
            elif node.level == 0 and node.module and node.module.startswith("loger3d."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("loger3d.")}
    return found


def test_model_package_imports_no_driver():
    modules = sorted((PACKAGE / "model").glob("*.py"))
    assert len(modules) > 10
    for module in modules:
        bad = _imported_packages(module) & set(DRIVERS)
        assert not bad, f"{module.name} imports {sorted(bad)}"


def test_checker_sees_relative_and_absolute_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("from ..inference.x import y\nimport loger3d.sinks.base\nfrom loger3d.run import job\n"
                     "from .blocks import Block\n")
    assert _imported_packages(probe) == {"inference", "sinks", "run"}
