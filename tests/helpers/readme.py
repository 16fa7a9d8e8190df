"""The shell commands of the README's ```bash blocks, as a user would copy them."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"
_BLOCK = re.compile(r"^```bash\n(.*?)^```", re.S | re.M)


def readme_commands(path: Path = README) -> list[str]:
    """Every command line of every ```bash block, continuation lines joined, comments dropped, in order."""
    commands: list[str] = []
    for block in _BLOCK.findall(path.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            command = re.sub(r"\s+#.*$", "", line).strip()
            if command and not command.startswith("#"):
                commands.append(" ".join(command.split()))
    return list(dict.fromkeys(commands))
