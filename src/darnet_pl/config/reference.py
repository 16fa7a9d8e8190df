"""Every config key of ``conf/`` with its default and meaning, read from the YAML files and their comments.

The docs' configuration reference is generated from this at build time (``scripts/docs_hooks.py``), so it cannot
drift from the files: a key is documented by the comment above it (or beside it) in its file. A file's leading
comment block describes the file. Keys are given as a user types them on the command line: a group file's keys
under the group's package (``conf/data/augment/authors.yaml``: ``data.augment.*``), an ``@package _global_`` file's
at the top level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from darnet_pl.utils.package_files import CONF_DIR

# a key: a name, a quoted string, or "()" (the factory key of Python's logging configs)
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.-]*|\(\)|\"[^\"]+\"|'[^']+'):(?:\s+(?P<rest>.*))?$")
_ITEM = re.compile(r"^(?P<indent> *)- (?P<item>.*)$")
_PACKAGE = re.compile(r"^#\s*@package\s+(\S+)")


@dataclass
class ConfigKey:
    key: str  # as typed on the command line, e.g. data.augment.on_device
    default: str  # as written in the file ("" for a mapping whose keys follow)
    meaning: str  # the comment above or beside it ("" where the file has none)


@dataclass
class ConfigFile:
    path: Path  # relative to conf/
    package: str  # the key prefix ("" for the top level)
    description: str
    keys: list[ConfigKey] = field(default_factory=list)

    @property
    def group(self) -> str:
        """``data/augment`` for conf/data/augment/authors.yaml; "" for a primary config."""
        return self.path.parent.as_posix() if self.path.parent != Path(".") else ""


def _split_comment(text: str) -> tuple[str, str]:
    """``value  # comment`` -> (value, comment); a ``#`` inside quotes or ``${...}`` is part of the value."""
    quote = None
    depth = 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
        elif char == "#" and depth == 0 and (i == 0 or text[i - 1] in " \t"):
            return text[:i].strip(), text[i + 1 :].strip()
    return text.strip(), ""


def _package(relative: Path, header: list[str]) -> str:
    for line in header:
        if match := _PACKAGE.match(line):
            return "" if match.group(1) == "_global_" else match.group(1).replace("/", ".")
    return relative.parent.as_posix().replace("/", ".") if relative.parent != Path(".") else ""


def read_config_file(path: Path, conf_dir: Path = CONF_DIR) -> ConfigFile:
    """The keys of one YAML file of ``conf/``, each with its default and the comment that documents it."""
    relative = path.relative_to(conf_dir)
    lines = path.read_text(encoding="utf-8").splitlines()
    header: list[str] = []
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        header.append(lines[start])
        start += 1
    description = " ".join(line.lstrip("#").strip() for line in header if not _PACKAGE.match(line)).strip()
    result = ConfigFile(relative, _package(relative, header), description)
    stack: list[tuple[int, str]] = []  # (indent, key) of the mappings the current line is inside
    pending: list[str] = []
    last: ConfigKey | None = None
    lists: list[ConfigKey] = []  # keys whose value is a block list ("- a" lines)
    for raw in lines[start:]:
        stripped = raw.strip()
        if not stripped:
            pending = []
            continue
        if stripped.startswith("#"):
            pending.append(stripped.lstrip("#").strip())
            continue
        if item := _ITEM.match(raw):
            value, comment = _split_comment(item.group("item"))
            if last is not None and len(item.group("indent")) >= (stack[-1][0] if stack else 0):
                last.default = f"{last.default}, {value}" if last.default else value
                lists += [] if any(entry is last for entry in lists) else [last]
                extra = " ".join([*pending, comment]).strip()
                if extra:
                    last.meaning = f"{last.meaning} {value}: {extra}".strip()
            pending = []
            continue
        match = _KEY.match(raw)
        if not match:
            continue
        indent = len(match.group("indent"))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key = match.group("key").strip("\"'")
        value, comment = _split_comment(match.group("rest") or "")
        prefix = () if key == "defaults" and not stack else (result.package, *(k for _, k in stack))  # Hydra's own
        dotted = ".".join(part for part in (*prefix, key) if part)
        last = ConfigKey(dotted, value, " ".join([*pending, comment]).strip())
        result.keys.append(last)
        pending = []
        if not value:
            stack.append((indent, key))
    for entry in lists:  # a block list written as "- a" lines reads as [a, b]
        entry.default = f"[{entry.default}]"
    return result


def config_files(conf_dir: Path = CONF_DIR) -> list[ConfigFile]:
    """Every file of ``conf/``: the primary configs first, then each group's options in order."""

    def order(path: Path) -> tuple[bool, str, str]:  # a group before its sub-groups: data, then data/augment
        return path.parent != conf_dir, path.parent.relative_to(conf_dir).as_posix(), path.name

    paths = sorted(conf_dir.rglob("*.yaml"), key=order)
    return [read_config_file(path, conf_dir) for path in paths]
