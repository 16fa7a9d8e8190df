"""Where the package keeps its own files: the Hydra configs and the packaged metadata (one home for both paths)."""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
CONF_DIR = PACKAGE_DIR / "conf"
"""A link to the repository's conf/ in a checkout; a real folder in a wheel."""
RESOURCES_DIR = PACKAGE_DIR / "resources"
