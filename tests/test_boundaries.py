"""The package's import boundaries (README "Layout"): the folders are the architecture, and this keeps them so.

Every import of every module counts, including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "darnet_pl"
THIRD_PARTY_FRAMEWORKS = ("pytorch_lightning", "lightning", "hydra", "omegaconf")

# package -> what it must never import (prefixes of module names)
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "models": (*THIRD_PARTY_FRAMEWORKS, "darnet_pl.data", "darnet_pl.training", "darnet_pl.runs", "monai"),
    "data": ("darnet_pl.models", "darnet_pl.training", "darnet_pl.distributed", "darnet_pl.inference"),
    "metrics": ("pytorch_lightning", "lightning", "hydra", "darnet_pl.data", "darnet_pl.training", "darnet_pl.stats"),
    # statistics on predictions: plain numpy on the metrics, below everything that reports numbers
    "stats": (
        *THIRD_PARTY_FRAMEWORKS,
        "darnet_pl.data",
        "darnet_pl.training",
        "darnet_pl.report",
        "darnet_pl.inference",
        "darnet_pl.evaluation",
        "darnet_pl.audit",
        "darnet_pl.runs",
        "darnet_pl.models",
    ),
    "runs": (
        "pytorch_lightning",
        "lightning",
        "hydra",
        "darnet_pl.training",
        "darnet_pl.report",
        "darnet_pl.inference",
    ),
    "distributed": ("darnet_pl.data", "darnet_pl.models", "darnet_pl.training", "darnet_pl.report"),
    "explain": ("pytorch_lightning", "lightning", "hydra", "darnet_pl.training"),
    "inference": ("pytorch_lightning", "lightning", "hydra", "darnet_pl.training", "darnet_pl.report"),
    "report": ("darnet_pl.training", "darnet_pl.models", "darnet_pl.inference", "pytorch_lightning"),
    "config": ("darnet_pl.training", "darnet_pl.data", "darnet_pl.models", "darnet_pl.report"),
    "training": ("darnet_pl.inference", "darnet_pl.report"),
    "audit": ("darnet_pl.models", "darnet_pl.training"),
    "evaluation": (*THIRD_PARTY_FRAMEWORKS, "darnet_pl.training"),
}
# utils/ is the bottom layer: it imports nothing of ours but itself
FORBIDDEN["utils"] = tuple(f"darnet_pl.{p}" for p in (*FORBIDDEN, "cli", "bench", "explain") if p != "utils")
# nobody outside them imports these (entry points and benchmarks sit on top of everything)
TOP_ONLY = ("darnet_pl.cli", "darnet_pl.bench")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def matches(name: str, prefix: str) -> bool:
    return name == prefix.rstrip(".") or name.startswith(prefix if prefix.endswith(".") else prefix + ".")


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if "conf" not in p.relative_to(PACKAGE).parts[:1])


def package_of(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def test_every_module_is_covered() -> None:
    """A new top-level package gets its rule here (or is deliberately free, like cli/ and bench/)."""
    packages = {package_of(module_name(p)) for p in MODULES} - {""}
    free = {"cli", "bench", "__main__", "resources"}
    assert packages - set(FORBIDDEN) - free == set()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: module_name(p))
def test_imports_respect_the_layout(path: Path) -> None:
    module = module_name(path)
    imported = imports_of(path)
    forbidden = FORBIDDEN.get(package_of(module), ())
    wrong = sorted(name for name in imported for prefix in forbidden if matches(name, prefix))
    top = sorted(
        name for name in imported for prefix in TOP_ONLY if matches(name, prefix) and not matches(module, prefix)
    )
    if module == "darnet_pl.__main__":
        top = []
    assert not wrong, f"{module} imports {wrong}, which its layer must not"
    assert not top, f"{module} imports {top}: nothing imports the command-line or benchmark layer"


def test_no_module_is_over_600_lines() -> None:
    long = {module_name(p): n for p in MODULES if (n := len(p.read_text(encoding="utf-8").splitlines())) > 600}
    assert not long, f"split these by concern: {long}"


def test_package_init_files_only_document_or_re_export() -> None:
    """One convention for ``__init__.py``: a docstring, and at most imports plus ``__all__`` (no logic)."""
    for path in PACKAGE.rglob("__init__.py"):
        if path.parent == PACKAGE:  # the root also registers the config resolvers: importing darnet_pl is enough
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
        allowed = (ast.Import, ast.ImportFrom)
        for node in body:
            is_all = isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["__all__"]
            assert isinstance(node, allowed) or is_all, f"{path}: {ast.dump(node)[:80]} is more than a re-export"
        assert ast.get_docstring(tree), f"{path}: say in a docstring what the package is for"


# --- no import cycles ----------------------------------------------------------------------------------------------

MODULE_NAMES = {module_name(p): p for p in MODULES}


def imported_modules(path: Path) -> set[str]:
    """The package's modules ``path`` imports, anywhere in it: ``from a.b import c`` is ``a.b.c`` when that is a
    module, else ``a.b``."""
    found = set()
    for name in imports_of(path):
        while name and name not in MODULE_NAMES:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found - {module_name(path)}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_import_cycles() -> None:
    """Modules import each other one way only, lazy imports included: a cycle means two modules share a concept that
    belongs in a third (as ScanError did in data/readers/ before data/readers/scans.py held it alone)."""
    graph = {name: imported_modules(path) for name, path in MODULE_NAMES.items()}
    assert import_cycles(graph) == []


def test_the_cycle_finder_finds_cycles() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_cycles(graph) == [["a", "b", "c"]]


# --- one home for the classes --------------------------------------------------------------------------------------

RECORDS = PACKAGE / "data" / "records.py"


def class_name_collections(path: Path, names: frozenset[str]) -> list[int]:
    """Lines of tuples, lists, sets and dict keys holding two or more of the class names (``__all__`` aside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    exported = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "__all__" for t in node.targets)
    }
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Tuple | ast.List | ast.Set) and id(node) not in exported:
            items = node.elts
        elif isinstance(node, ast.Dict):
            items = [key for key in node.keys if key is not None]
        else:
            continue
        strings = {item.value for item in items if isinstance(item, ast.Constant) and isinstance(item.value, str)}
        if len(strings & names) >= 2:
            lines.append(node.lineno)
    return lines


def test_class_names_and_their_order_are_written_only_in_records() -> None:
    from darnet_pl.data.records import CLASS_NAMES

    names = frozenset(CLASS_NAMES)
    found = {module_name(p): lines for p in MODULES if p != RECORDS if (lines := class_name_collections(p, names))}
    assert found == {}, "use darnet_pl.data.records.CLASS_NAMES (or CLASS_TITLES) instead of writing the classes"
    assert class_name_collections(RECORDS, names), "records.py writes them"


# --- docstrings name what exists -----------------------------------------------------------------------------------

REPO = PACKAGE.parents[1]
DOTTED = re.compile(r"\bdarnet_pl(?:\.[A-Za-z_]\w*)+")
FILE_PATH = re.compile(r"(?<![\w./-])((?:[\w.-]+/)+[\w.-]+\.py)\b")
# a path into this repository starts with one of its folders (data/..., readers/..., tests/...); others, such as the
# authors' data_utils/transform.py, are another project's
OUR_FOLDERS = {p.name for p in PACKAGE.rglob("*") if p.is_dir()} | {"darnet_pl", "src", "tests", "scripts", "conf"}


def docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    kinds = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    return [text for node in ast.walk(tree) if isinstance(node, kinds) if (text := ast.get_docstring(node))]


def top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((alias.asname or alias.name).split(".")[0] for alias in node.names)
    return names


def unknown_reference(dotted: str) -> str | None:
    """Why ``darnet_pl.a.b.name`` names nothing (no such module, or no such name in the module), else None."""
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        module = ".".join(parts[:n])
        if module in MODULE_NAMES:
            rest = parts[n:]
            if rest and rest[0] not in top_level_names(MODULE_NAMES[module]):
                return f"{dotted}: {module} has no {rest[0]}"
            return None
    return f"{dotted}: no such module"


def missing_path(text_path: str, module_path: Path) -> str | None:
    if text_path.split("/", 1)[0] not in OUR_FOLDERS:
        return None
    bases = [REPO, REPO / "src", PACKAGE, *[p for p in module_path.parents if PACKAGE in (p, *p.parents)]]
    return None if any((base / text_path).exists() for base in bases) else f"{text_path}: no such file"


def test_docstrings_name_modules_and_files_that_exist() -> None:
    wrong = []
    for path in MODULES:
        for text in docstrings(path):
            problems = [unknown_reference(m.group(0)) for m in DOTTED.finditer(text)]
            problems += [missing_path(m.group(1), path) for m in FILE_PATH.finditer(text)]
            wrong += [f"{module_name(path)}: {problem}" for problem in problems if problem]
    assert wrong == []


def test_the_reference_check_sees_what_moved() -> None:
    assert unknown_reference("darnet_pl.data.readers.scans.ScanError") is None
    assert unknown_reference("darnet_pl.data.readers.scans.load_volume") is not None
    assert unknown_reference("darnet_pl.data.readers.ccii") is not None
    assert missing_path("data/inplane.py", PACKAGE / "metrics.py") is None
    assert missing_path("readers/volumes.py", PACKAGE / "data" / "cache.py") is None
    assert missing_path("data/readers/ccii.py", PACKAGE / "metrics.py") is not None
    assert missing_path("data_utils/transform.py", PACKAGE / "metrics.py") is None
