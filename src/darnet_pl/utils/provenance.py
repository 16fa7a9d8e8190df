"""Which code ran: the commit of the checkout the package runs from, for the run's W&B config and benchmark records.

A result is only reproducible from the code that made it, so a commit is reported only when this package really
runs from a git checkout's ``src/`` (an editable install), with ``+changes`` when ``src/`` or ``conf/`` differ from
it; an installed copy, or a package copied into some other repository, has no commit to report.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parents[1]
GIT_TIMEOUT_S = 5


def source_commit(short: bool = False) -> str | None:
    """``<commit>`` or ``<commit>+changes`` of the checkout this package runs from; None outside one (or no git)."""
    try:
        toplevel = Path(_git(PACKAGE_DIR, "rev-parse", "--show-toplevel")).resolve()
        if toplevel / "src" / PACKAGE_DIR.name != PACKAGE_DIR:
            return None
        head = _git(toplevel, "rev-parse", *(["--short"] if short else []), "HEAD")
        changes = _git(toplevel, "status", "--porcelain", "--untracked-files=normal", "--", "src", "conf")
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+changes" if changes else "") if head else None


def _git(where: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(where), *args], capture_output=True, text=True, check=True, timeout=GIT_TIMEOUT_S
    ).stdout.strip()
