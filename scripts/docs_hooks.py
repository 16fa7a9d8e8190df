"""mkdocs hook (mkdocs.yml ``hooks:``): the reference pages generated at build time, so they cannot drift.

- ``reference/configuration.md``: every key of ``conf/`` with its default and meaning
  (``darnet_pl.config.reference``: the YAML files and their comments);
- ``reference/commands.md``: every console tool's options, from its argparse parser (``build_parser``), and the
  Hydra apps' ``--help`` (``darnet_pl.config.help``; ``darnet-audit`` prints its module docstring).

Nothing generated is written into ``docs/``: the pages exist only in the build, which ``make docs`` and
``tests/e2e/test_docs_site.py`` run with ``--strict``.
"""

from __future__ import annotations

import argparse
import importlib
from typing import Any

from mkdocs.structure.files import File, Files

# the console tools with an argparse parser (``build_parser``)
CONSOLE_TOOLS = ("darnet-report", "darnet-predict", "darnet-evaluate", "darnet-export", "darnet-model-card")


def _cell(text: object, prose: bool = True) -> str:
    """A table cell; in prose, ``[a] [b]`` would read as a Markdown reference link."""
    text = str(text).replace("|", "\\|").replace("\n", " ").strip()
    return text.replace("[", "\\[").replace("<", "&lt;") if prose else text


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


def configuration_page() -> str:
    from darnet_pl.config.reference import config_files

    lines = [
        "# Configuration keys",
        "",
        "Generated from `conf/` when the site is built: every key of every file, its default as the file writes it,",
        "and the comment that documents it there. Keys are written as you type them on the command line",
        "(`python -m darnet_pl data.batch_size=4`); a config group's option is chosen with `group=option`",
        "(`trainer=gpu`, `data/augment=authors`). `python -m darnet_pl --cfg job` prints the composed config of a",
        "command. `???` marks a value you must give; `${...}` is an interpolation (another key, an environment",
        "variable through `darnet_env`, a file shipped with the package through `darnet_packaged`).",
        "",
    ]
    files = config_files()
    primary = [f for f in files if not f.group]
    groups: dict[str, list[Any]] = {}
    for config in files:
        if config.group:
            groups.setdefault(config.group, []).append(config)
    sections = [("Primary configs", primary)] + [(f"Group `{g}`", members) for g, members in groups.items()]
    for title, members in sections:
        lines += [f"## {title}", ""]
        for config in members:
            name = config.path.as_posix()
            choose = f" (`{config.group}={config.path.stem}`)" if config.group else ""
            lines += [f"### `conf/{name}`{choose}", ""]
            if config.description:
                lines += [_cell(config.description), ""]
            rows = [k for k in config.keys if k.default or k.meaning]
            if rows:
                lines += ["| key | default | meaning |", "|---|---|---|"]
                lines += [f"| `{k.key}` | {_code(_cell(k.default, prose=False))} | {_cell(k.meaning)} |" for k in rows]
                lines.append("")
    return "\n".join(lines)


def _option_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = ["| option | default | meaning |", "|---|---|---|"]
    for action in parser._actions:  # argparse keeps its actions here; there is no public accessor
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += f" {action.metavar or action.dest.upper()}"
        else:
            name = action.metavar or action.dest
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        default = "" if unset or action.nargs == 0 else action.default
        choices = f" (one of {', '.join(map(str, action.choices))})" if action.choices else ""
        meaning = _cell((action.help or "") + choices)
        rows.append(f"| `{_cell(name, prose=False)}` | {_code(_cell(default, prose=False))} | {meaning} |")
    return rows


def commands_page() -> str:
    from darnet_pl.config.help import prepare_help, train_help

    lines = [
        "# Console tools",
        "",
        "Generated when the site is built: the Hydra apps' `--help` text, and every option of the other tools from",
        "their argparse parsers. Every tool exits with the codes of [Exit codes](exit-codes.md).",
        "",
        "## `python -m darnet_pl` (`darnet-train`)",
        "",
        "Hydra app: options are config keys ([Configuration keys](configuration.md)).",
        "",
        "```text",
        train_help(),
        "```",
        "",
        "## `darnet-prepare`",
        "",
        "Hydra app, the data keys of training ([Configuration keys](configuration.md), `conf/prepare.yaml`).",
        "",
        "```text",
        prepare_help(),
        "```",
        "",
        "## `darnet-audit`",
        "",
        "The data keys of `darnet-prepare` and `audit.*` (`conf/audit.yaml`), plus `--ckpt` (repeatable).",
        "",
        "```text",
        (importlib.import_module("darnet_pl.cli.audit").__doc__ or "").strip(),
        "```",
        "",
    ]
    for tool in CONSOLE_TOOLS:
        module = importlib.import_module(f"darnet_pl.cli.{tool.removeprefix('darnet-').replace('-', '_')}")
        parser = module.build_parser()
        lines += [f"## `{tool}`", "", _cell(parser.description or ""), "", "```text", parser.format_usage().strip()]
        lines += ["```", "", *_option_rows(parser), ""]
    return "\n".join(lines)


GENERATED = {"reference/configuration.md": configuration_page, "reference/commands.md": commands_page}


def on_files(files: Files, config: Any) -> Files:
    for path, render in GENERATED.items():
        files.append(File.generated(config, path, content=render()))
    return files
