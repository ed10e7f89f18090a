"""The layers hold: nothing below the HTTP layer knows about requests.

Services, storage, providers, product types and the jobs must never import Flask, Werkzeug,
waitress or the `web` package, so the API, the storefront, the dashboard, the command line
and the jobs can all call them. Only the HTTP layer itself and the modules that run the
process may: `server.py` builds the app, `cli.py` and `__main__.py` start it, and
`blockpn_sim.py` is an HTTP server of its own (`sellix-lite blockpn-sim`).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sellix_lite"
HTTP_LIBRARIES = ("flask", "werkzeug", "waitress", "jinja2", "markupsafe")
PROCESS_MODULES = {"server.py", "cli.py", "__main__.py", "blockpn_sim.py"}


def imported_modules(path: Path, root: Path = PACKAGE) -> set[str]:
    """Every module `path` (a file of the package at `root`) imports, anywhere in it, as
    absolute names."""
    package = ".".join(("sellix_lite", *path.relative_to(root).parent.parts))
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def below_the_web_layer() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py")
                  if "web" not in path.relative_to(PACKAGE).parts[:1]
                  and path.relative_to(PACKAGE).as_posix() not in PROCESS_MODULES)


def breaks_the_layers(module: str) -> bool:
    return (module.split(".")[0] in HTTP_LIBRARIES or module == "sellix_lite.web"
            or module.startswith("sellix_lite.web."))


@pytest.mark.parametrize("path", below_the_web_layer(),
                         ids=lambda path: path.relative_to(PACKAGE).as_posix())
def test_no_module_below_the_web_layer_imports_it(path):
    wrong = sorted(module for module in imported_modules(path) if breaks_the_layers(module))
    assert not wrong, f"{path.name} imports {', '.join(wrong)}"


def test_the_check_sees_what_it_looks_for(tmp_path):
    """A service importing Flask, or `web` relatively inside a function, is caught."""
    (tmp_path / "services").mkdir()
    bad = tmp_path / "services" / "bad.py"
    bad.write_text("import flask\n\ndef view():\n    from ..web.context import runtime\n")
    wrong = {module for module in imported_modules(bad, tmp_path) if breaks_the_layers(module)}
    assert wrong == {"flask", "sellix_lite.web.context", "sellix_lite.web.context.runtime"}


def test_the_web_layer_is_where_flask_is():
    """The list of checked modules is not empty and leaves out exactly the HTTP layer."""
    checked = {path.relative_to(PACKAGE).as_posix() for path in below_the_web_layer()}
    assert {"services/checkout.py", "db.py", "providers/sandbox.py",
            "product_types/license_key.py", "jobs.py"} <= checked
    assert not any(name.startswith("web/") for name in checked)
