"""How this package opens and closes a W&B run - a training job's and the report's alike.

- **Quiet.** W&B's banner, summary and "View run" lines are off (``quiet_settings``); instead, when a run closes,
  one line says where it is and how to upload it (``closing_line``): ``W&B offline run: <dir>; upload with: wandb
  sync <dir>``.
- **Offline unless it can really go online.** A run asked to go online first checks, in at most a few seconds,
  that W&B's server can be reached (``online_or_why_not``); where it cannot (no network on a compute node), the run
  is logged offline instead and one line says so. Online, ``wandb.init`` gives up after ``ONLINE_INIT_TIMEOUT_S``
  rather than W&B's 90 s, and a run that fails to start leaves no stub folder (``no_stub_runs``).
- **One W&B run per thing**, resumed rather than duplicated: its id is kept in a file (``kept_run_id``).

W&B is imported only inside these functions: nothing here costs anything without a W&B logger.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import secrets
import shlex
import shutil
import socket
import string
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from darnet_pl.utils.io import write_text_atomic

REACH_TIMEOUT_S = 3.0
"""How long the server gets to answer a connection before a run asked to go online is logged offline."""
ONLINE_INIT_TIMEOUT_S = 30.0
"""How long ``wandb.init`` may try to start an online run (W&B's default is 90 s)."""
_OFFLINE_MODES = frozenset({"offline", "dryrun", "disabled"})
_ID_CHARACTERS = string.ascii_lowercase + string.digits  # W&B's own run id alphabet


def quiet_settings(online: bool = False) -> Any:
    """``wandb.Settings`` that print nothing of W&B's own; online, a short ``init_timeout``."""
    import wandb

    extra = {"init_timeout": ONLINE_INIT_TIMEOUT_S} if online else {}
    return wandb.Settings(silent=True, show_info=False, show_warnings=False, **extra)


def quiet_process() -> Any:
    """Silence W&B in this process before a run starts (its login line, "Loaded credentials ...", comes before any
    run's settings apply; online, its usage telemetry logs export errors through the ``opentelemetry`` loggers,
    which nothing else here uses); W&B's settings for this process (environment and settings files read)."""
    import wandb

    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)
    return wandb.setup(settings=quiet_settings()).settings


@functools.lru_cache(maxsize=8)
def _unreachable(url: str) -> str | None:
    """Why ``url``'s host cannot be connected to within REACH_TIMEOUT_S (None: it answered). Once per process."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    outcome: list[str | None] = []

    def connect() -> None:  # name lookup has no timeout of its own: run it where it may be abandoned
        try:
            socket.create_connection((host, port), timeout=REACH_TIMEOUT_S).close()
            outcome.append(None)
        except OSError as error:
            outcome.append(f"{host}: {error.strerror or error}")

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(REACH_TIMEOUT_S + 0.5)
    return outcome[0] if outcome else f"{host}: no answer within {REACH_TIMEOUT_S:g} s"


def online_or_why_not() -> str | None:
    """Why a run asked to go online would fail at once (W&B's server unreachable), or None: it may try.

    With ``WANDB_MODE`` set to offline in the environment W&B stays offline anyway: nothing to check."""
    if os.environ.get("WANDB_MODE", "").strip().lower() in _OFFLINE_MODES:
        return None
    return _unreachable(str(quiet_process().base_url))


def fallback_line(why: str) -> str:
    return f"W&B cannot go online ({why}): logging offline instead; upload later with wandb sync"


def _shown(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working folder where it lies below it (as a user would type it), else absolute."""
    absolute = Path(path).resolve()
    try:
        return str(absolute.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(absolute)


def closing_line(run: Any) -> str:
    """The one line a closing run prints: where an offline run is and how to upload it, or an online run's page."""
    if run.offline:
        where = shlex.quote(_shown(run.settings.sync_dir))
        return f"W&B offline run: {where}; upload with: wandb sync {where}"
    return f"W&B run: {run.url}"


def finish(run: Any, exit_code: int | None = None) -> str:
    """Close ``run`` (silently) and return its closing line."""
    line = closing_line(run)
    run.finish(exit_code=exit_code)
    return line


def close_leftover_run() -> str | None:
    """Close a run an earlier job of this process left open (it failed before closing it), so that the next
    ``wandb.init`` starts a run of its own; its closing line, or None when none was open."""
    import wandb

    run = wandb.run
    return finish(run, exit_code=1) if run is not None else None


def kept_run_id(path: str | os.PathLike[str]) -> str:
    """The W&B run id kept in ``path``, made (W&B's form: 8 lowercase letters and digits) and kept there if absent,
    so that every later run of the same job or report continues the same W&B run."""
    path = Path(path)
    kept = path.read_text(encoding="utf-8").strip() if path.is_file() else ""
    if kept:
        return kept
    run_id = "".join(secrets.choice(_ID_CHARACTERS) for _ in range(8))
    write_text_atomic(path, run_id + "\n")
    return run_id


@contextlib.contextmanager
def no_stub_runs(save_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Remove what a ``wandb.init`` inside the block left in ``<save_dir>/wandb`` when it fails: the run folder
    of a run that never started (and the ``wandb`` folder itself if the block created it)."""
    folder = Path(save_dir) / "wandb"
    existed = folder.is_dir()
    before = {p.name for p in folder.iterdir()} if existed else set()
    try:
        yield
    except BaseException:
        if not existed:
            shutil.rmtree(folder, ignore_errors=True)
        elif folder.is_dir():
            for path in [p for p in folder.iterdir() if p.name not in before]:
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
            latest = folder / "latest-run"
            if latest.is_symlink() and not latest.exists():  # it pointed at the run just removed
                latest.unlink()
        raise
