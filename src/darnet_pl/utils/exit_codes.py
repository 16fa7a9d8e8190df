"""Every exit code of every command, in one place (README "Exit codes" documents the same table)."""

from __future__ import annotations

import signal

EXIT_OK = 0
EXIT_JOBS_FAILED = 1
"""A sweep whose jobs ran but some failed (listed at the end, each with its ``failed.json``)."""
EXIT_USER_ERROR = 2
"""A mistake the user can fix: one line ``error: <file or key>: <problem>``."""
EXIT_SCAN_ERRORS = 3
"""``darnet-predict``: some scans could not be read; the others were predicted."""
EXIT_SIGINT = 128 + signal.SIGINT
EXIT_SIGTERM = 128 + signal.SIGTERM
