"""The shell commands of the documentation's ```bash blocks, as a user would copy them.

The documentation is the README, CONTRIBUTING.md and every page of the docs site (``docs/``); each command is run
as typed by tests/e2e/test_readme.py.
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def documentation_files(repo: Path = REPO) -> list[Path]:
    """README.md, CONTRIBUTING.md, then the docs pages in path order."""
    return [repo / "README.md", repo / "CONTRIBUTING.md", *sorted((repo / "docs").rglob("*.md"))]


def readme_commands(path: Path = README) -> list[str]:
    """Every command line of every ```bash block, continuation lines joined, comments dropped, in order."""
    commands: list[str] = []
    for block in _BLOCK.findall(path.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(" ".join(command.split()))
    return list(dict.fromkeys(commands))


def documented_commands(repo: Path = REPO) -> dict[str, Path]:
    """Every command of the documentation, in reading order, with the first file that shows it."""
    found: dict[str, Path] = {}
    for path in documentation_files(repo):
        for command in readme_commands(path):
            found.setdefault(command, path)
    return found
