"""The package's import boundaries (README "Layout"): the folders are the architecture, and this keeps them so.

Every import of every module counts, including those inside functions (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
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
