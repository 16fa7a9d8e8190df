"""The documentation site builds with ``mkdocs build --strict`` (no broken link, anchor, page or API reference),
and its generated reference pages cover every config key of ``conf/`` and every option of every console tool.

The reference pages are generated at build time (scripts/docs_hooks.py), so the strict build is the drift test;
the checks below make sure the generator leaves nothing out.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

import pytest
import yaml

from darnet_pl.config.reference import config_files, read_config_file
from darnet_pl.utils.package_files import CONF_DIR
from tests.helpers.user import REPO_ROOT, explain, run_module

MKDOCS = importlib.util.find_spec("mkdocs") is not None
needs_mkdocs = pytest.mark.skipif(not MKDOCS, reason="mkdocs is not installed: `make install` installs the docs extra")


def leaf_keys(node: object, prefix: str = "") -> set[str]:
    if isinstance(node, dict) and node:
        return set().union(*(leaf_keys(v, f"{prefix}.{k}" if prefix else str(k)) for k, v in node.items()))
    return {prefix}


def test_every_key_of_every_conf_file_is_documented() -> None:
    """The reader finds every key YAML finds, under the package a user types it with."""
    for path in sorted(CONF_DIR.rglob("*.yaml")):
        found = read_config_file(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        data.pop("defaults", None)
        prefix = found.package
        expected = {f"{prefix}.{key}" if prefix else key for key in leaf_keys(data) if key}
        assert expected <= {k.key for k in found.keys}, path


def test_keys_carry_their_defaults_and_comments() -> None:
    model = next(f for f in config_files() if f.path.as_posix() == "model/darnet.yaml")
    keys = {k.key: k for k in model.keys}
    assert keys["model.attention"].default == "dual"
    assert keys["model.scheduler.milestones"].default == "[30, 60]"
    assert "x0.1 every 30 epochs" in keys["model.scheduler.milestones"].meaning
    assert "validation set" in keys["model.temperature_scaling"].meaning
    authors = next(f for f in config_files() if f.path.as_posix() == "data/augment/authors.yaml")
    assert authors.package == "data.augment" and "exactly one flip" in authors.description
    darnet = next(f for f in config_files() if f.path.as_posix() == "experiment/darnet.yaml")
    assert darnet.package == "" and {"depth_interpolation", "data.batch_size"} <= {k.key for k in darnet.keys}


@needs_mkdocs
def test_generated_pages_cover_every_conf_file_and_every_option() -> None:
    sys.path.insert(0, str(REPO_ROOT / "scripts"))
    try:
        hooks = importlib.import_module("docs_hooks")
    finally:
        sys.path.remove(str(REPO_ROOT / "scripts"))
    configuration = hooks.configuration_page()
    for config in config_files():
        assert f"`conf/{config.path.as_posix()}`" in configuration
        for key in config.keys:
            if key.default or key.meaning:
                assert f"| `{key.key}` |" in configuration, key.key
    commands = hooks.commands_page()
    for tool in ("python -m darnet_pl", "darnet-prepare", "darnet-audit", *hooks.CONSOLE_TOOLS):
        assert f"## `{tool}" in commands
    for tool in hooks.CONSOLE_TOOLS:
        module = f"darnet_pl.cli.{tool.removeprefix('darnet-').replace('-', '_')}"
        parser = importlib.import_module(module).build_parser()
        for action in parser._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in commands, (tool, option)


@pytest.mark.slow
@needs_mkdocs
def test_the_site_builds_strict(tmp_path) -> None:
    result = run_module(
        "mkdocs", "build", "--strict", "--config-file", REPO_ROOT / "mkdocs.yml", "--site-dir", tmp_path, cwd=REPO_ROOT
    )
    assert result.returncode == 0, explain(result)
    for page in ("reference/configuration/index.html", "reference/commands/index.html", "reference/api/index.html"):
        assert (tmp_path / page).is_file(), page
    api = (tmp_path / "reference/api/index.html").read_text(encoding="utf-8")
    assert "DARNet" in api and "load_for_inference" in api
