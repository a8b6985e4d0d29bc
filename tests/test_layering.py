"""The import rules each module states are true (issue 12.2).

Each module's docstring has an "May import:" paragraph.  Two checks hold it to it: importing the
module in a fresh interpreter loads none of the heavy libraries it rules out (``sys.modules``),
and only the modules that own a library import it anywhere, lazily inside a function included.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import poolcli

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "PIL", "rich", "click", "tifffile", "zarr", "dask", "distributed", "fsspec", "s3fs",
         "imagecodecs", "torch")


def _but(*allowed: str) -> tuple[str, ...]:
    return tuple(name for name in HEAVY if name not in allowed)


# What importing each module must not load.
IMPORT_TIME = {
    "poolcli": HEAVY,
    "poolcli.exits": HEAVY,
    "poolcli.params": HEAVY,
    "poolcli.formats": HEAVY,
    "poolcli.paths": HEAVY,
    "poolcli.cli": _but("click"),
    "poolcli.engine": _but("numpy"),
    "poolcli.arrays": _but("numpy"),
    "poolcli.results": _but("numpy"),
    "poolcli.pixels": _but("numpy"),
    "poolcli.nodata": _but("numpy"),
    "poolcli.placement": HEAVY,
    "poolcli.geo": HEAVY,
    "poolcli.ome": HEAVY,
    "poolcli.frames": _but("numpy"),
    "poolcli.png": _but("numpy"),
    "poolcli.inflate": HEAVY,
    "poolcli.pillowcore": _but("numpy", "PIL"),
    "poolcli.report": _but("numpy", "rich"),
    "poolcli.images": ("rich", "click"),
    "poolcli.pipeline": ("rich", "click"),
    "poolcli.strips": _but("numpy"),
    "poolcli.chunked": _but("numpy"),
    "poolcli.tiff_io": _but("numpy"),
    "poolcli.zarr_io": _but("numpy"),
    "poolcli.giant": _but("numpy"),
    "poolcli.pyramid": _but("numpy"),
    "poolcli.batch": ("rich", "click", "dask", "distributed", "fsspec", "s3fs"),
    "poolcli.storage": HEAVY,  # fsspec only when a URL is used
    "poolcli.listing": HEAVY,  # fsspec only when a URL is listed, through storage
    "poolcli.errors": HEAVY,
    "poolcli.version": HEAVY,
    "poolcli.executors": ("rich", "click", "dask", "distributed", "fsspec", "s3fs"),
    "poolcli.cluster": ("rich", "click", "dask", "distributed", "fsspec", "s3fs"),  # Dask only when used
    "poolcli.explain": HEAVY,
    "poolcli.explain.model": _but("numpy"),
    "poolcli.explain.matrix": _but("numpy"),
    "poolcli.explain.picture": _but("numpy"),
    "poolcli.explain.render": _but("numpy", "rich"),
    "poolcli.brief": _but("numpy"),
    "poolcli.api": HEAVY,
    "poolcli.manpage": _but("click"),
}

# The only modules that may import these libraries at all.
OWNERS = {
    "rich": {"poolcli.report", "poolcli.explain.render"},
    "click": {"poolcli.cli", "poolcli.manpage"},  # manpage: the man page is generated from the commands
    # cli: ImageColor for --background; pillowcore: the Pillow internals the readers use
    "PIL": {"poolcli.images", "poolcli.pillowcore", "poolcli.explain.picture", "poolcli.cli"},
    "tifffile": {"poolcli.tiff_io"},
    "zarr": {"poolcli.zarr_io"},
    "fsspec": {"poolcli.storage"},
    "dask": {"poolcli.cluster"},
    "distributed": {"poolcli.cluster"},
}

# Rules broken today in code that other work is changing; strict=False turns green when it lands.
KNOWN_BREAKS: dict[tuple[str, str], str] = {}


def _modules() -> list[str]:
    found = ["poolcli"] + [m.name for m in pkgutil.walk_packages(poolcli.__path__, "poolcli.")]
    return sorted(m for m in found if m != "poolcli.__main__")  # importing __main__ runs the CLI


def _source(module: str) -> Path:
    relative = Path(*module.split("."))
    package = ROOT / relative / "__init__.py"
    return package if package.exists() else ROOT / relative.with_suffix(".py")


def _mark(module: str, rule: str) -> list[pytest.MarkDecorator]:
    reason = KNOWN_BREAKS.get((module, rule))
    return [pytest.mark.xfail(reason=reason, strict=False)] if reason else []


def test_every_module_states_its_import_rule():
    docstrings = {m: ast.get_docstring(ast.parse(_source(m).read_text())) or "" for m in IMPORT_TIME}
    missing = [m for m, text in docstrings.items() if "May import:" not in text]
    assert missing == []
    assert set(IMPORT_TIME) <= set(_modules())


@pytest.fixture(scope="module")
def loaded_by() -> dict[str, set[str]]:
    """For each module, the top-level modules loaded by importing it in a fresh interpreter (all
    interpreters started at once: most of their time is NumPy's import)."""
    code = "import sys, json, {}; print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    running = {m: subprocess.Popen([sys.executable, "-c", code.format(m)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env) for m in IMPORT_TIME}
    loaded = {}
    for module, process in running.items():
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        loaded[module] = set(json.loads(out))
    return loaded


@pytest.mark.parametrize("module", [pytest.param(m, marks=_mark(m, "import")) for m in IMPORT_TIME])
def test_importing_loads_no_forbidden_library(module, loaded_by):
    assert sorted(loaded_by[module] & set(IMPORT_TIME[module])) == []


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


@functools.cache
def _imported(module: str) -> frozenset[str]:
    """Top-level names of every library the module imports, at the top or inside functions
    (imports for type checkers only, under ``if TYPE_CHECKING:``, load nothing and do not count)."""
    names: set[str] = set()
    pending: list[ast.AST] = [ast.parse(_source(module).read_text())]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif _is_type_checking(node):
            pending.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        pending.extend(ast.iter_child_nodes(node))
    return frozenset(names)


@pytest.mark.parametrize("library", sorted(OWNERS))
@pytest.mark.parametrize("module", _modules())
def test_only_owners_import_a_library(module, library, request):
    if (module, library) in KNOWN_BREAKS:
        request.applymarker(pytest.mark.xfail(reason=KNOWN_BREAKS[(module, library)], strict=False))
    if module not in OWNERS[library]:
        assert library not in _imported(module)


def _poolcli_imports(module: str) -> set[str]:
    """The poolcli modules that ``module`` imports, at the top or inside functions (type-checking
    imports load nothing and do not count)."""
    found: set[str] = set()
    known = set(_modules())
    pending: list[ast.AST] = [ast.parse(_source(module).read_text())]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("poolcli."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "poolcli":  # a submodule, or a name of the package's face
                found.update(f"poolcli.{a.name}" if f"poolcli.{a.name}" in known else "poolcli" for a in node.names)
            elif node.module.startswith("poolcli."):
                found.add(node.module)
        elif _is_type_checking(node):
            pending.extend(node.orelse)  # type: ignore[attr-defined]
            continue
        pending.extend(ast.iter_child_nodes(node))
    return {m for m in found if m in known and m != module}


def test_poolcli_imports_run_one_way():
    """Issue 16: no circle of imports among poolcli's own modules, lazy imports included, so
    every module stands on a floor above all it imports (the package's face, ``poolcli``, which
    only hands names on lazily, is left out)."""
    imports = {m: _poolcli_imports(m) for m in _modules() if m != "poolcli"}
    # The face stands above the modules it hands names on from: none of them reaches up to it.
    assert [m for m, found in imports.items() if "poolcli" in found] == []
    graph = {m: found - {"poolcli"} for m, found in imports.items()}
    floors: dict[str, int] = {}
    visiting: list[str] = []

    def floor(module: str) -> int:
        if module in floors:
            return floors[module]
        assert module not in visiting, f"import circle: {' -> '.join(visiting[visiting.index(module):] + [module])}"
        visiting.append(module)
        floors[module] = 1 + max((floor(m) for m in graph.get(module, ())), default=0)
        visiting.pop()
        return floors[module]

    for module in graph:
        floor(module)
    # The seams of issue 16 sit where they should: executors and the cluster above the one-job
    # pipeline, the pipeline above the giant-image code, storage and paths on the ground.
    assert floors["poolcli.cluster"] > floors["poolcli.pipeline"] > floors["poolcli.pyramid"] > floors["poolcli.giant"]
    assert floors["poolcli.executors"] > floors["poolcli.pipeline"]
    assert "poolcli.cluster" not in graph["poolcli.batch"] and "poolcli.cluster" not in graph["poolcli.giant"]
    assert graph["poolcli.storage"] <= {"poolcli.errors", "poolcli.paths", "poolcli.formats"}
